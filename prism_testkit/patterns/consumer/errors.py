"""The consumer's errors: all are :class:`ConsumerError`, itself a :class:`~prism_testkit.errors.PrismError`."""

from __future__ import annotations

from prism_testkit.errors import ConfigurationError, PrismError


class ConsumerError(PrismError):
    """Base class of the consumer's errors."""


class ConsumerConfigurationError(ConsumerError, ConfigurationError):
    pass


class ConsumerStateError(ConsumerError):
    """The saved state cannot be read as a consumer's state (corrupt, or another program's)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"consumer state {key!r}: {detail}")
        self.key = key
