"""The consumer's counters and its position gauge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class ConsumerMetrics:
    GAUGES: ClassVar[frozenset[str]] = frozenset({"position"})

    received: int = 0  # messages and records taken from the source (redeliveries included)
    processed: int = 0  # handler calls that returned
    duplicates_skipped: int = 0  # redeliveries whose processed mark was found: acked, not handled
    handler_errors: int = 0  # handler calls that raised
    failed: int = 0  # messages given up after the retries (queue: nacked; pub/sub: dropped)
    state_saves: int = 0  # positions and marks written
    acks_lost: int = 0  # queue acks refused (the delivery expired): the mark makes its redelivery a duplicate
    position: int = -1  # log: the saved position (the next offset to handle); -1 before any

    def summary(self) -> dict[str, float]:
        return {name: float(value) for name, value in vars(self).items() if isinstance(value, int)}
