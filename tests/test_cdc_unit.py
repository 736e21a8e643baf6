"""Unit tests of the CDC pattern (connector, events, replica) and of the pgoutput decoder, on
memstore and sqlite (the suites run it over every change-feed source and sink)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from pydantic import ValidationError

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.backends.postgres.pgoutput import PG_EPOCH_MS, DecodeError, Decoder
from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.errors import NotSupported
from prism_testkit.interfaces import KeyChange, Message
from prism_testkit.patterns.cdc import (
    CdcConfig,
    CdcConnector,
    ChangeEvent,
    EventDecodeError,
    Replica,
    decode,
    encode,
)
from tests._scenarios import Runner as ScenarioRunner

Scenario = Callable[[Driver], Coroutine[Any, Any, None]]
Runner = ScenarioRunner[Driver]


class RecordingEventSink:
    """A CDC connector's sink (``publish(topic, message)``) that collects what was published;
    ``fail_after`` makes the n-th and later publishes raise."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.published: list[tuple[str, Message]] = []
        self.fail_after = fail_after

    async def publish(self, topic: str, message: Message) -> None:
        if self.fail_after is not None and len(self.published) >= self.fail_after:
            raise ConnectionError("sink down")
        self.published.append((topic, message))

    @property
    def events(self) -> list[ChangeEvent]:
        return [decode(m) for _, m in self.published]


def config(**overrides: Any) -> CdcConfig:
    base: dict[str, Any] = {
        "capture": "cap",
        "prefix": "app/",
        "topic_prefix": "cdc",
        "poll_interval": 0.01,
        "snapshot": "never",
    }
    return CdcConfig(**{**base, **overrides})


def connector(driver: Driver, sink: RecordingEventSink, **overrides: Any) -> CdcConnector:
    return CdcConnector(driver.changefeed(), driver.keyvalue(), sink, config(**overrides))


async def source_state(driver: Driver, prefix: str = "app/") -> dict[str, bytes]:
    kv = driver.keyvalue()
    state = {}
    async for key in kv.scan(prefix):
        value = await kv.get(key)
        if value is not None:
            state[key] = value
    return state


def test_events_carry_the_debezium_envelope_and_route_by_table(on_backend: Runner) -> None:
    async def scenario(driver: Driver) -> None:
        sink = RecordingEventSink()
        c = connector(driver, sink)
        await c.start()
        kv = driver.keyvalue()
        await kv.put("app/users/1", b"ann")
        await kv.put("app/users/1", b"bob")
        await kv.put("app/orders/9", b"o")
        await kv.delete("app/users/1")
        await c.drain()
        events = sink.events
        assert [(e.op, e.table, e.key, e.before, e.after) for e in events] == [
            ("c", "users", "app/users/1", None, b"ann"),
            ("u", "users", "app/users/1", b"ann", b"bob"),
            ("c", "orders", "app/orders/9", None, b"o"),
            ("d", "users", "app/users/1", b"bob", None),
        ]
        assert [t for t, _ in sink.published] == ["cdc.users", "cdc.users", "cdc.orders", "cdc.users"]
        assert len({e.event_id for e in events}) == 4
        assert all(m.key == e.key for (_, m), e in zip(sink.published, events, strict=True))
        assert c.metrics.events_published == 4
        assert "prism_cdc_events_published_total" in c.metrics.samples()
        assert 'prism_cdc_replication_lag_seconds{namespace="cap"}' in c.metrics.exposition("cap")

    on_backend(scenario)


def test_a_transaction_is_published_whole_with_its_size(on_backend: Runner) -> None:
    async def scenario(driver: Driver) -> None:
        sink = RecordingEventSink()
        c = connector(driver, sink)
        await c.start()
        async with driver.transactions().transaction() as t:
            for i in range(4):
                await t.put(f"app/t/{i}", b"v")
        await c.drain()
        events = sink.events
        assert {e.txid for e in events} == {events[0].txid}
        assert [(e.total_order, e.total) for e in events] == [(i, 4) for i in range(1, 5)]

    on_backend(scenario)


def test_position_is_confirmed_only_after_the_sink_acknowledged(on_backend: Runner) -> None:
    async def scenario(driver: Driver) -> None:
        kv = driver.keyvalue()
        failing = RecordingEventSink(fail_after=2)
        c = connector(driver, failing)
        await c.start()
        for i in range(4):
            await kv.put(f"app/k/{i}", str(i).encode())
        with pytest.raises(ConnectionError):
            await c.run_once()
        assert len(failing.published) == 2
        # a new connector (the old one crashed) republishes from the confirmed position
        healthy = RecordingEventSink()
        again = connector(driver, healthy)
        await again.drain()
        assert [e.key for e in healthy.events] == [f"app/k/{i}" for i in range(4)]
        assert [e.event_id for e in healthy.events][:2] == [decode(m).event_id for _, m in failing.published]

    on_backend(scenario)


def test_operations_and_tables_filter_what_is_published(on_backend: Runner) -> None:
    async def scenario(driver: Driver) -> None:
        kv, sink = driver.keyvalue(), RecordingEventSink()
        c = connector(driver, sink, operations=["INSERT"], tables=["users"], include_old_value=False)
        await c.start()
        await kv.put("app/users/1", b"a")
        await kv.put("app/users/1", b"b")
        await kv.put("app/orders/1", b"x")
        await c.drain()
        assert [(e.op, e.key) for e in sink.events] == [("c", "app/users/1")]

    on_backend(scenario)


def test_snapshot_hands_over_to_streaming_while_writers_write(on_backend: Runner) -> None:
    async def scenario(driver: Driver) -> None:
        kv = driver.keyvalue()
        for i in range(30):
            await kv.put(f"app/s/{i:03}", b"old")
        sink = RecordingEventSink()
        c = connector(driver, sink, snapshot="initial", snapshot_chunk_size=7)
        await c.start()

        async def writer() -> None:
            for i in range(0, 40, 3):
                await kv.put(f"app/s/{i:03}", b"new")
                if i % 2:
                    await kv.delete(f"app/s/{i + 1:03}")
                await asyncio.sleep(0)

        await asyncio.gather(writer(), c.drain())
        await c.drain()
        replica = Replica()
        for event in sink.events:
            replica.apply(event)
        assert replica.rows == await source_state(driver)
        assert c.metrics.snapshot_rows > 0
        ids = [e.event_id for e in sink.events]
        assert len(ids) == len(set(ids)), "an event was published twice without a crash"
        assert await kv.get("cap.snapshot") is not None

    on_backend(scenario)


def test_a_finished_snapshot_is_not_repeated_after_a_restart(on_backend: Runner) -> None:
    async def scenario(driver: Driver) -> None:
        await driver.keyvalue().put("app/a/1", b"x")
        first = RecordingEventSink()
        await connector(driver, first, snapshot="initial").drain()
        assert [e.op for e in first.events] == ["r"]
        second = RecordingEventSink()
        await connector(driver, second, snapshot="initial").drain()
        assert second.events == []

    on_backend(scenario)


def test_an_idle_capture_confirms_heartbeats(on_backend: Runner) -> None:
    async def scenario(driver: Driver) -> None:
        sink = RecordingEventSink()
        c = connector(driver, sink, heartbeat_interval=0.01)
        await c.start()
        await asyncio.sleep(0.02)
        await c.run_once()  # idle: writes a heartbeat
        assert c.metrics.heartbeats == 1
        await c.run_once()  # reads and confirms it, publishing nothing
        assert c.metrics.position > 0
        assert sink.published == []

    on_backend(scenario)


def test_replica_skips_redelivered_older_events() -> None:
    def event(key: str, position: int, after: bytes | None) -> ChangeEvent:
        return ChangeEvent(f"c:{position}:1", "u", "t", key, None, after, position, "x", 1, 1, 0, 0)

    replica = Replica()
    for e in [event("k", 1, b"1"), event("k", 2, b"2"), event("k", 1, b"1"), event("j", 3, None)]:
        replica.apply(encode(e, "c"))
    assert replica.rows == {"k": b"2"}
    assert replica.skipped == 1


def test_a_truncate_voids_earlier_epochs_in_any_arrival_order() -> None:
    """Epoch 1 opens with a truncate: rows of epoch 0 go, late epoch-0 events are void, and
    epoch-1 rows that another topic delivered before the truncate stay, whatever the order.
    Epoch 1's positions may be lower than epoch 0's (a promoted standby's WAL forks below)."""

    def event(key: str, epoch: int, position: int, after: bytes | None, op: str = "u") -> ChangeEvent:
        return ChangeEvent(f"c{epoch}:{position}", op, "t", key, None, after, position, "x", 1, 1, 0, 0, epoch=epoch)  # type: ignore[arg-type]

    truncate = event("", 1, 5, None, op="t")
    old = [event("gone", 0, 10, b"old"), event("kept", 0, 11, b"old")]
    new = [event("kept", 1, 6, b"new"), event("fresh", 1, 7, b"new")]
    late = event("gone", 0, 12, b"late")
    for order in ([*old, truncate, *new, late], [*old, *new, truncate, late], [*new, late, *old, truncate]):
        replica = Replica()
        for e in order:
            replica.apply(encode(e, "c"))
        assert replica.rows == {"kept": b"new", "fresh": b"new"}, f"arrival order {[e.event_id for e in order]}"


def test_bad_input_is_refused_with_typed_errors() -> None:
    with pytest.raises(EventDecodeError):
        decode(Message(b"not json"))
    with pytest.raises(ValidationError):
        CdcConfig(batch_size=0)
    with pytest.raises(ValidationError):
        CdcConfig(message_format="avro")  # type: ignore[arg-type]


# --- the pgoutput decoder ------------------------------------------------------------------


def _cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def _tuple(*values: str | None) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        out += b"n" if value is None else b"t" + struct.pack("!i", len(value.encode())) + value.encode()
    return out


RELATION = (
    b"R"
    + struct.pack("!i", 7)
    + _cstr("prism")
    + _cstr("kv")
    + b"f"
    + struct.pack("!h", 3)
    + b"".join(b"\x01" + _cstr(name) + struct.pack("!ii", 25, -1) for name in ("key", "value", "expires_at"))
)


def _begin(xid: int) -> bytes:
    return b"B" + struct.pack("!qqi", 100, 5_000_000, xid)


def _commit(end: int) -> bytes:
    return b"C" + struct.pack("!bqqq", 0, 90, end, 5_000_000)


def test_pgoutput_decoder_reads_changes_marks_and_drops_lock_placeholders() -> None:
    placeholder = ("app/a", "\\x", "-infinity")
    messages = [
        _begin(42),
        RELATION,
        b"I" + struct.pack("!i", 7) + b"N" + _tuple(*placeholder),
        b"U" + struct.pack("!i", 7) + b"O" + _tuple(*placeholder) + b"N" + _tuple("app/a", "\\x6869", None),
        b"M" + struct.pack("!bq", 1, 95) + _cstr("prism-cdc:cap") + struct.pack("!i", 3) + b"low",
        b"M" + struct.pack("!bq", 1, 96) + _cstr("prism-cdc:other") + struct.pack("!i", 2) + b"no",
        b"D" + struct.pack("!i", 7) + b"O" + _tuple("app/b", "\\x01", None),
        _commit(123),
    ]
    (change_set,) = Decoder("prism-cdc:cap").feed_all(messages)
    assert change_set.position == 123
    assert change_set.txid == "42"
    assert change_set.commit_ts_ms == PG_EPOCH_MS + 5_000
    assert change_set.changes == (KeyChange("app/a", None, b"hi"), KeyChange("app/b", b"\x01", None))
    assert change_set.marks == ("low",)


def test_pgoutput_decoder_refuses_what_it_cannot_read() -> None:
    with pytest.raises(DecodeError):
        Decoder("p").feed(b"Zxyz")
    with pytest.raises(DecodeError):
        Decoder("p").feed(b"I" + struct.pack("!i", 7) + b"N" + _tuple("k"))  # outside a transaction


def test_a_capability_the_instance_lacks_is_withheld_with_its_reason() -> None:
    """What the postgres driver does on a server given by URL without wal_level=logical."""
    driver = open_memstore()
    driver.withhold(Capability.CHANGEFEED, "the server runs with wal_level=replica")
    assert not driver.supports(Capability.CHANGEFEED)
    with pytest.raises(NotSupported, match="wal_level=replica"):
        driver.changefeed()
    with pytest.raises(NotSupported, match="wal_level=replica"):
        driver.facet(Capability.CHANGEFEED)
    assert driver.supports(Capability.KEYVALUE)
