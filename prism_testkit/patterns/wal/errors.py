"""The write-ahead log's errors."""

from __future__ import annotations

from prism_testkit.errors import ConfigurationError, PrismError
from prism_testkit.registry.patterns import DURABLE_LOG_HINT


class WalError(PrismError):
    """Base of the write-ahead log's errors."""


class WalConfigurationError(WalError, ConfigurationError):
    """The WAL was set up with values or interfaces that cannot work."""


class NonDurableLog(WalConfigurationError):
    """The log given to a WAL is not declared durable: an acknowledged mutation could be lost."""

    def __init__(self, backend: str, detail: str = "") -> None:
        self.backend = backend
        why = f" ({detail})" if detail else ""
        super().__init__(
            f"backend {backend!r} does not declare its log durable across a crash{why}; a WAL acknowledges "
            f"a mutation as soon as the log has it: {DURABLE_LOG_HINT}"
        )


class WalCorruptEntry(WalError):
    """A log record is not a WAL mutation (missing or unknown headers)."""


class MutationDeadLettered(WalError):
    """In ``sync`` mode: the mutation is durable in the log but could not be applied; it went to
    the dead-letter log after its last attempt."""

    def __init__(self, offset: int, key: str, error: str) -> None:
        self.offset = offset
        self.key = key
        super().__init__(f"mutation at offset {offset} of key {key!r} was dead-lettered: {error}")
