"""The event store's configuration: one model for code and namespace files."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from prism_testkit.config.units import Duration, Size


class EventSourcingConfig(BaseModel):
    """``name`` prefixes every key of the store and names its notification log, so several
    stores (or tests) share one backend without seeing each other."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="events", min_length=1, description="prefix of the store's keys and log")
    snapshot_interval: int | None = Field(
        default=100, ge=1, description="snapshot an aggregate every N events (None: never)"
    )
    retention: Duration | None = Field(
        default=None, description="events are the source of truth and are kept forever: only None or infinite"
    )
    max_event_size: Size | None = Field(default=None, ge=1, description="reject event data larger than this (bytes)")

    @field_validator("retention")
    @classmethod
    def _kept_forever(cls, value: float | None) -> float | None:
        # Full history and time travel need every event; a store that forgets is not one.
        if value is not None and math.isfinite(value):
            raise ValueError(f"an event store keeps every event; retention must be unset or infinite, got {value}")
        return None

    @property
    def notifications(self) -> str:
        return f"{self.name}-notifications"

    def head_key(self, stream: str) -> str:
        return f"{self.name}/head/{stream}"

    def event_key(self, stream: str, position: int) -> str:
        # Fixed-width position last: (stream, position) -> key is injective even for streams
        # containing '/'.
        return f"{self.name}/event/{stream}/{position:012d}"

    def snapshot_key(self, stream: str) -> str:
        return f"{self.name}/snapshot/{stream}"
