"""How a producer publishes: the config model code and namespace files share."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prism_testkit.config.units import Duration
from prism_testkit.pattern_sdk.lifecycle import DEFAULT_GRACEFUL_TIMEOUT

# --- config --------------------------------------------------------------------------------


class ProducerConfig(BaseModel):
    """How a producer publishes. Durations accept seconds or strings like ``"100ms"``, ``"5m"``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    destination: str = Field(default="events", min_length=1, description="queue, topic or log published to")
    batch_size: int = Field(default=1, ge=1, description="messages per batch (1: publish each at once)")
    batch_interval: Duration = Field(
        default=0.1, ge=0, description="seconds a batch that is not full waits for more after its first message"
    )
    max_retries: int = Field(default=3, ge=0, description="retries of a failed send before the message fails")
    retry_backoff: Duration = Field(default=0.05, ge=0, description="seconds before the first retry (then doubled)")
    retry_backoff_max: Duration = Field(default=2.0, ge=0, description="longest wait between retries")
    deduplication: bool = Field(default=False, description="drop content published within dedup_window (needs state)")
    dedup_window: Duration = Field(default=300.0, gt=0, description="seconds a published content stays a duplicate")
    state_prefix: str = Field(default="producer-dedup/", description="prefix of the dedup marks' keys in state")
    graceful_timeout: Duration = Field(
        default=DEFAULT_GRACEFUL_TIMEOUT, ge=0, description="stop(): seconds to flush before the forced stop"
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.retry_backoff_max < self.retry_backoff:
            raise ValueError("retry_backoff_max must be at least retry_backoff")
        return self
