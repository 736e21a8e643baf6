"""The producer's counters and gauges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

# --- metrics -------------------------------------------------------------------------------


@dataclass
class ProducerMetrics:
    GAUGES: ClassVar[frozenset[str]] = frozenset({"pending"})

    published: int = 0  # messages the sink accepted (each once, however many attempts)
    failed: int = 0  # messages that failed for good (PublishFailed) or were abandoned by a stop
    deduplicated: int = 0  # messages not published: their content was published within the window
    bytes_published: int = 0  # payload bytes of the published messages
    batches_published: int = 0  # batches of which at least one message was published
    retries: int = 0  # sends attempted again after an error
    state_errors: int = 0  # dedup state unreadable or unwritable (the message was published anyway)
    pending: int = 0  # handed over, not yet published nor failed
    publish_latency_last_seconds: float = 0.0
    publish_latency_max_seconds: float = 0.0
    publish_latency_sum_seconds: float = 0.0  # divide by published for the mean

    def summary(self) -> dict[str, float]:
        return {
            name: float(value)
            for name, value in vars(self).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
