"""The CDC connector's configuration: the model namespace files and code share.

RFC-009's relational vocabulary maps onto the key-value data our backends capture: the source
is every key under ``prefix``; a *table* is the first segment of a key after the prefix
(``app/users/42`` under ``app/`` is row ``42`` of table ``users``); the sink topic of a table is
``<topic_prefix>.<table>``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.config.units import Duration

Operation = Literal["INSERT", "UPDATE", "DELETE"]


def _every_operation() -> list[Operation]:
    return ["INSERT", "UPDATE", "DELETE"]


class CdcConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    capture: str = Field(default="prism-cdc", min_length=1, description="capture name (one slot + publication)")
    prefix: str = Field(default="", description="captured key space: every key starting with it")
    tables: list[str] = Field(
        default_factory=list, description="publish only these tables (first key segment); empty: all"
    )
    table_separator: str = Field(default="/", min_length=1, description="ends a key's table segment")
    operations: list[Operation] = Field(default_factory=_every_operation, description="operations published")
    include_old_value: bool = Field(default=True, description="put the before-image into updates and deletes")
    message_format: Literal["json"] = Field(default="json", description="event encoding")
    topic_prefix: str = Field(default="cdc", min_length=1, description="table T is published to '<prefix>.T'")
    batch_size: int = Field(default=100, ge=1, description="transactions read, published and confirmed per batch")
    poll_interval: Duration = Field(default=0.05, gt=0, description="how long a read waits for new commits")
    heartbeat_interval: Duration = Field(
        default=5.0, gt=0, description="an idle capture confirms a heartbeat this often, so it pins no WAL"
    )
    snapshot: Literal["initial", "never"] = Field(
        default="initial", description="emit existing rows (op 'r') before, and while, streaming"
    )
    snapshot_chunk_size: int = Field(default=256, ge=1, description="rows per snapshot chunk (one watermark window)")
    on_capture_lost: Literal["raise", "resnapshot"] = Field(
        default="raise",
        description="a capture whose position the source lost (a failover): raise CaptureLost, or start a "
        "new capture with a watermark snapshot that the replica converges on (changes in the gap arrive "
        "only as their final rows)",
    )
    state_key: str | None = Field(
        default=None, min_length=1, description="key-value key of the snapshot progress; default '<capture>.snapshot'"
    )

    @property
    def snapshot_state_key(self) -> str:
        return self.state_key or f"{self.capture}.snapshot"
