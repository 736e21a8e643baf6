"""The config model writers, appliers and namespace files of one WAL share, and what the caller
declares about the log's durability."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prism_testkit.config.units import Duration

from .errors import NonDurableLog, WalConfigurationError

if TYPE_CHECKING:
    from prism_testkit.registry.backends import BackendSpec

Clock = Callable[[], float]


class WalConfig(BaseModel):
    """Config of a WAL, shared by writers, appliers and namespace files.

    Names left empty derive from ``log``: the dead-letter log ``<log>-dead-letter`` and the key
    prefix of applied offsets in the target ``<log>-applied/``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    log: str = Field(default="wal", min_length=1, description="the write-ahead log")
    group: str = Field(default="wal-applier", min_length=1, description="applier group: its checkpoint")
    retention: Duration | None = Field(
        default=None, gt=0, description="how long the log keeps entries (seconds; set on the log backend)"
    )
    apply_mode: Literal["sync", "async", "hybrid"] = Field(
        default="async", description="return after the append (async), after the apply (sync), or either (hybrid)"
    )
    sync_timeout: Duration = Field(default=0.05, gt=0, description="hybrid: how long a write waits for its apply")
    batch_size: int = Field(default=1000, ge=1, description="records read per applier batch")
    batch_timeout: Duration = Field(default=0.1, gt=0, description="how long an applier waits for a batch")
    checkpoint_interval: Duration = Field(default=60.0, ge=0, description="seconds between checkpoint commits")
    max_attempts: int = Field(default=5, ge=1, description="apply attempts before the dead-letter log")
    backoff_initial: Duration = Field(default=0.05, gt=0, description="wait before the second attempt")
    backoff_max: Duration = Field(default=5.0, gt=0, description="longest wait between attempts")
    dead_letter_log: str | None = Field(default=None, min_length=1, description="where failed mutations go")
    guard_prefix: str | None = Field(default=None, min_length=1, description="target key prefix of applied offsets")
    compaction: Literal["none", "keep_latest"] = Field(default="none", description="compaction strategy")
    group_commit: bool = Field(
        default=True, description="concurrent writes share one log transaction (one fsync) when the log has them"
    )
    group_commit_max: int = Field(default=256, ge=1, description="most mutations committed together")

    @model_validator(mode="after")
    def _backoff_order(self) -> WalConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(f"backoff_max ({self.backoff_max}) is below backoff_initial ({self.backoff_initial})")
        return self

    @property
    def dead_letter(self) -> str:
        return self.dead_letter_log or f"{self.log}-dead-letter"

    def guard_key(self, key: str) -> str:
        return f"{self.guard_prefix or f'{self.log}-applied/'}{key}"

    def backoff(self, attempts: int) -> float:
        """Wait after ``attempts`` failed attempts: doubling from ``backoff_initial``."""
        return float(min(self.backoff_max, self.backoff_initial * 2 ** (attempts - 1)))


def _checked_config(config: object) -> WalConfig:
    if not isinstance(config, WalConfig):
        raise WalConfigurationError(f"config must be a WalConfig, not {type(config).__name__}")
    return config


@dataclass(frozen=True)
class LogDurability:
    """What the caller knows about the provisioned log: its backend and whether it is durable
    (from the backend's registration, or the operator's declaration for a server given by URL)."""

    backend: str
    durable: bool
    detail: str = ""  # why, e.g. "JetStream 2.9 fsyncs every two minutes"

    @classmethod
    def of(cls, spec: BackendSpec) -> LogDurability:
        return cls(spec.name, spec.properties.durable, spec.description)

    def require(self) -> None:
        if not self.durable:
            raise NonDurableLog(self.backend, self.detail)
