"""Patterns of RFC-009 that are specified but not built yet (``implemented=False``).

They are registered so namespace files that use them validate today, with config models that
follow RFC-009's examples. When a pattern is built, its registration moves into its own module
with the config model its code takes, and its entry leaves this file.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.combinations import Slot
from prism_testkit.hookspecs import hookimpl
from prism_testkit.pattern_registry import MESSAGING, Complexity, PatternSlot, PatternSpec, Priority


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Operation = Literal["INSERT", "UPDATE", "DELETE"]


def _every_operation() -> list[Operation]:
    return ["INSERT", "UPDATE", "DELETE"]


class CdcSettings(_Settings):
    tables: list[str] = Field(default_factory=list)
    operations: list[Operation] = Field(default_factory=_every_operation)
    include_old_value: bool = True
    message_format: Literal["json", "avro", "protobuf"] = "json"


CDC = PatternSpec(
    name="cdc",
    title="Change Data Capture",
    priority=Priority.P1,
    complexity=Complexity.MEDIUM,
    slots={
        "source": PatternSlot(
            Slot.needs("transactions", "keyvalue", "log"), ("store",), "database whose changes are captured"
        ),
        "sink": PatternSlot(MESSAGING, ("messaging",), "where change events are published", messaging=True),
    },
    config=CdcSettings,
    client_apis=frozenset({"reader", "keyvalue", "transact"}),
    summary="changes of a database are streamed as events, without dual writes",
    implemented=False,
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [CDC]
