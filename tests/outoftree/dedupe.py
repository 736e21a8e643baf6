"""An out-of-tree pattern, as a third party would write it in its own package.

``dedupe``: a producer-side idempotency filter over a queue. A message carrying an idempotency
key is sent only if no message with that key was sent within ``window`` seconds; the keys are
claimed with compare-and-set in a key-value store, so concurrent producers cannot both send.
It registers through the ``prism_testkit`` entry-point group with its own config model and
its own suite (``dedupe_suite``), and nothing in prism-testkit knows about it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit import KeyValue, Message, Queue, Slot, hookimpl
from prism_testkit.config.units import Duration
from prism_testkit.registry.patterns import Complexity, PatternSlot, PatternSpec, Priority


class DedupeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_header: str = Field(default="idempotency-key", min_length=1)
    prefix: str = Field(default="dedupe/", description="key-value prefix of claimed idempotency keys")
    window: Duration = Field(default=3600.0, gt=0, description="how long a key suppresses duplicates")


class DedupeQueue:
    def __init__(self, queue: Queue, seen: KeyValue, config: DedupeConfig) -> None:
        self.queue, self.seen, self.config = queue, seen, config

    async def send(self, queue: str, message: Message) -> str | None:
        """Send unless the message's idempotency key was already sent; ``None`` when dropped."""
        key = message.headers.get(self.config.key_header)
        if key is not None and not await self.seen.compare_and_set(f"{self.config.prefix}{queue}/{key}", None, b"1"):
            return None
        return await self.queue.send(queue, message)


SPEC = PatternSpec(
    name="dedupe",
    title="Idempotent publish",
    priority=Priority.P2,
    complexity=Complexity.LOW,
    slots={
        "messaging": PatternSlot(Slot.needs("queue"), ("messaging",), "queue the messages go to", messaging=True),
        "seen": PatternSlot(Slot.needs("keyvalue", "keyvalue.cas"), ("seen",), "claimed idempotency keys"),
    },
    config=DedupeConfig,
    client_apis=frozenset({"queue"}),
    summary="a message whose idempotency key was already sent is dropped",
    suites=("dedupe",),
)


@hookimpl
def prism_register_patterns() -> list[PatternSpec]:
    return [SPEC]
