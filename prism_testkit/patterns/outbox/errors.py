"""The outbox's errors: all are :class:`OutboxError`, itself a
:class:`~prism_testkit.errors.PrismError`."""

from __future__ import annotations

from prism_testkit.errors import ConfigurationError, PrismError


class OutboxError(PrismError):
    """Base of the outbox's errors."""


class OutboxConfigurationError(OutboxError, ConfigurationError):
    """The outbox or relay was set up with values or interfaces that cannot work."""


class ReservedHeader(OutboxError):
    """Caller headers tried to set one of the outbox's own headers (event id, sequence...)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(f"headers {', '.join(names)} are set by the outbox and cannot be given")


class LeaseLost(OutboxError):
    """This relay no longer holds the relay lease (it expired and another relay took it, or a
    newer epoch committed the offset). It published nothing after noticing."""

    def __init__(self, relay_id: str, detail: str) -> None:
        self.relay_id = relay_id
        super().__init__(f"relay {relay_id!r} lost its lease: {detail}")


class OutboxRecordError(OutboxError):
    """A row under the outbox's record prefix is not an outbox record (one ``encode_record`` wrote)."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        super().__init__(f"outbox row {key!r} is not an outbox record: {detail}")
