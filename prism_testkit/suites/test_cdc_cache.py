"""Composite: cached reads invalidated by CDC (RFC-014 pattern 6), over (change-feed source x
sink x cache with compare-and-set).

The connector publishes the source's changes to the sink; a consumer of the sink invalidates a
look-aside cache. Guarantee: once a write's invalidation has been applied, no read returns an
older value, also when a reader's fill races with the invalidation; the commit-to-invalidation
lag is measured.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.interfaces import CaptureLoss
from prism_testkit.patterns.cdc import CdcConfig, CdcConnector, InvalidatedCache, LogEventSink, QueueEventSink

from ._helpers import drain_queue

pytestmark = prism_suite(
    "cdc",  # a composite of the cdc pattern: its rows belong to --prism-pattern=cdc
    source=Slot.needs("changefeed", "keyvalue.scan"),
    sink=Slot.one_of("queue", "log"),
    cache=Slot.needs("keyvalue.cas"),
)

KEYS = 6
ROUNDS = 15


class Pipeline:
    """Connector -> sink -> invalidating consumer, stepped by the test."""

    def __init__(self, prism_env: PrismEnv, **options: Any) -> None:  # more CdcConfig fields
        ns = prism_env.ns
        self.source, sink = prism_env.driver("source"), prism_env.driver("sink")
        self.prefix = ns.name("data/")
        topic_prefix = ns.name("cdc")
        self.topic = f"{topic_prefix}.t"
        self.kind = "log" if sink.supports(Capability.LOG) else "queue"
        event_sink = LogEventSink(sink.log()) if self.kind == "log" else QueueEventSink(sink.queue())
        config = CdcConfig(
            capture=ns.name("capture"),
            prefix=self.prefix,
            topic_prefix=topic_prefix,
            snapshot="never",
            poll_interval=patience.handed("poll"),
            **options,
        )
        self.connector = CdcConnector(self.source.changefeed(), self.source.keyvalue(), event_sink, config)
        self.sink = sink
        self.offset = 0
        self.cache = InvalidatedCache(
            self.source.keyvalue(), prism_env.driver("cache").keyvalue(), cache_prefix=ns.name("cache/")
        )

    def key(self, i: int) -> str:
        return f"{self.prefix}t/{i}"

    async def deliver(self) -> int:
        """Publish what committed and apply every invalidation the sink holds."""
        await self.connector.drain()
        messages: list[Message]
        if self.kind == "log":
            records = await self.sink.log().read(self.topic, self.offset, limit=1000)
            if records:
                self.offset = records[-1].offset + 1
            messages = [r.message for r in records]
        else:
            messages = [d.message for d in await drain_queue(self.sink.queue(), self.topic, wait=0.05)]
        for message in messages:
            await self.cache.invalidate(message)
        return len(messages)


async def test_reads_see_every_write_once_its_invalidation_is_applied(prism_env: PrismEnv) -> None:
    p = Pipeline(prism_env)
    await p.connector.start()
    kv, rnd = p.source.keyvalue(), random.Random(7)
    latest: dict[str, bytes | None] = {}
    for round_ in range(ROUNDS):
        readers = [p.cache.get(p.key(rnd.randrange(KEYS))) for _ in range(4)]
        writes = []
        for i in rnd.sample(range(KEYS), 2):
            value = f"{round_}-{i}".encode()
            latest[p.key(i)] = value
            writes.append(kv.put(p.key(i), value))
        await asyncio.gather(*readers, *writes)  # fills race with writes
        await p.deliver()
        for key, expected in latest.items():
            assert await p.cache.get(key) == expected, f"{key}: a stale value outlived its invalidation"
    assert p.cache.metrics.hits > 0, "the cache never served a read"
    assert p.cache.metrics.invalidations >= len(latest)
    assert p.cache.metrics.samples()["prism_cdc_cache_invalidation_lag_seconds"] >= 0


async def test_a_fill_that_races_with_an_invalidation_caches_nothing_stale(prism_env: PrismEnv) -> None:
    p = Pipeline(prism_env)
    await p.connector.start()
    kv, key = p.source.keyvalue(), p.key(0)
    await kv.put(key, b"old")
    await p.deliver()

    class SlowStore:
        """The reader's store read returns the old value after the write and its invalidation."""

        async def get(self, k: str) -> bytes | None:
            old = await kv.get(k)
            await kv.put(k, b"new")
            await p.deliver()
            return old

    racing = InvalidatedCache(SlowStore(), p.cache.cache, cache_prefix=p.cache.cache_prefix)  # type: ignore[arg-type]
    assert await racing.get(key) == b"old"  # a read that began before the write may see it
    assert racing.metrics.fills_lost == 1, "the invalidation did not take the racing fill's lease"
    assert await p.cache.get(key) == b"new", "the racing fill cached the old value after its invalidation"


async def test_a_deleted_row_is_gone_from_the_cache_once_its_invalidation_is_applied(prism_env: PrismEnv) -> None:
    p = Pipeline(prism_env)
    await p.connector.start()
    kv, key = p.source.keyvalue(), p.key(0)
    await kv.put(key, b"alive")
    await p.deliver()
    assert await p.cache.get(key) == b"alive"  # a miss that fills the cache
    hits = p.cache.metrics.hits
    assert await p.cache.get(key) == b"alive"
    assert p.cache.metrics.hits == hits + 1, "the second read was not served from the cache"
    await kv.delete(key)
    assert await p.deliver() >= 1, "the delete was not published"
    found = await p.cache.get(key)
    assert found is None, f"{key} was deleted and its delete event applied, yet the cache still returns {found!r}"


async def test_a_row_deleted_while_the_capture_was_lost_is_gone_from_the_cache(prism_env: PrismEnv) -> None:
    """A connector that lost its capture re-snapshots (``on_capture_lost="resnapshot"``): the
    snapshot republishes the rows that exist, so a row deleted in the gap has no event of its
    own. The truncate that opens the new epoch must drop the cached copies, or the cache serves
    the deleted row for ever; a row that still exists is invalidated and read anew."""
    feed = prism_env.driver("source").changefeed()
    if not isinstance(feed, CaptureLoss):
        pytest.skip(f"{prism_env.spec('source').name}: a capture's position is stored with its data")
    p = Pipeline(prism_env, on_capture_lost="resnapshot")
    await p.connector.start()
    kv, gone, kept = p.source.keyvalue(), p.key(0), p.key(1)
    await kv.put(gone, b"deleted in the gap")
    await kv.put(kept, b"old")
    await p.deliver()
    assert await p.cache.get(gone) == b"deleted in the gap"
    assert await p.cache.get(kept) == b"old"  # both cached now
    await feed.lose_capture(p.connector.config.capture)
    await kv.delete(gone)
    await kv.put(kept, b"changed in the gap")
    await p.connector.run_once()  # meets the loss: a truncate, then a snapshot in epoch 1
    assert p.connector.metrics.captures_lost == 1
    while not p.connector.snapshot_done:
        await p.deliver()
    await p.deliver()
    found = await p.cache.get(gone)
    assert found is None, f"{gone} was deleted while the capture was lost, yet the cache still returns {found!r}"
    assert await p.cache.get(kept) == b"changed in the gap"
    assert p.cache.metrics.flushes >= 1, "the cache counted no truncate"
