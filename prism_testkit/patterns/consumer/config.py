"""How a consumer consumes and where it keeps its state: the config model code and namespace files share."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.config.units import Duration
from prism_testkit.pattern_sdk.lifecycle import DEFAULT_GRACEFUL_TIMEOUT


class ConsumerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    source: str = Field(default="events", min_length=1, description="queue, topic or log consumed")
    name: str = Field(
        default="consumer", min_length=1, description="the consumer's name: instances sharing it share the state"
    )
    start: Literal["earliest", "latest"] = Field(
        default="earliest", description="where a log consumer with no saved position begins"
    )
    batch_size: int = Field(default=100, ge=1, description="log records read per poll")
    commit_every: int = Field(default=1, ge=1, description="log: save the position after this many handled records")
    poll_wait: Duration = Field(default=0.2, gt=0, description="seconds one receive or read waits for a message")
    visibility_timeout: Duration = Field(default=30.0, gt=0, description="queue: seconds a received message is hidden")
    max_retries: int = Field(default=3, ge=0, description="handler retries before a message is given up")
    retry_backoff: Duration = Field(default=0.05, ge=0, description="seconds before the first handler retry")
    retry_backoff_max: Duration = Field(default=2.0, ge=0, description="longest wait between handler retries")
    processed_ttl: Duration = Field(default=86400.0, gt=0, description="seconds a processed mark is kept")
    state_prefix: str = Field(default="consumer/", description="prefix of the consumer's keys in state")
    graceful_timeout: Duration = Field(
        default=DEFAULT_GRACEFUL_TIMEOUT, ge=0, description="stop(): seconds to finish the message in hand"
    )

    def position_key(self) -> str:
        return f"{self.state_prefix}{self.name}/{self.source}/position"

    def mark_key(self, message_id: str) -> str:
        return f"{self.state_prefix}{self.name}/{self.source}/done/{message_id}"
