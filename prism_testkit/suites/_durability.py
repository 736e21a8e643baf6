"""Acknowledged writes on every interface a backend offers, and what is missing of them later:
shared by the restart suite (process crash) and the power-loss suite (power cut)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prism_testkit import Capability, Driver, Message
from prism_testkit.isolation import Namespace

WRITES = 20
WRITE_BOUND = 15.0  # s: a write to a crashed machine fails, it must not hang the test
Missing = Callable[[Driver], Awaitable[list[str]]]


@dataclass
class Written:
    """Writes the backend acknowledged, and how to find which of them a later driver misses."""

    interface: str
    acknowledged: int
    missing: Missing
    error: str = ""  # until_error: why the writes stopped (a crashed machine)


class _Stop(Exception):
    pass


class _Acks:
    """Counts acknowledged writes; with ``until_error``, the first failure ends the interface's
    writes (a machine crashed under it) instead of the test."""

    def __init__(self, until_error: bool) -> None:
        self.until_error = until_error
        self.count = 0
        self.error = ""

    async def __call__(self, write: Awaitable[object]) -> object:
        if self.error:
            raise _Stop
        try:
            result = await asyncio.wait_for(write, WRITE_BOUND) if self.until_error else await write
        except Exception as exc:
            if not self.until_error:
                raise
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            raise _Stop from exc
        self.count += 1
        return result


async def write_keyvalue(driver: Driver, ns: Namespace, until_error: bool = False, again: str = "") -> Written:
    keys = [ns.name(f"k{i}") for i in range(WRITES)]
    ack = _Acks(until_error)
    for i, key in enumerate(keys):
        try:
            await ack(driver.keyvalue().put(key, f"v{i}{again}".encode()))
        except _Stop:
            break
    done = keys[: ack.count]

    async def missing(after: Driver) -> list[str]:
        return [f"key {k}" for i, k in enumerate(done) if await after.keyvalue().get(k) != f"v{i}{again}".encode()]

    return Written("keyvalue", ack.count, missing, ack.error)


async def write_queue(driver: Driver, ns: Namespace, until_error: bool = False, again: str = "") -> Written:
    queue = ns.name("q")
    ack = _Acks(until_error)
    for i in range(WRITES):
        try:
            await ack(driver.queue().send(queue, Message(f"m{i}{again}".encode())))
        except _Stop:
            break

    async def missing(after: Driver) -> list[str]:
        got = set()
        while (delivery := await after.queue().receive(queue, wait=1.0)) is not None:
            got.add(delivery.message.payload)
            await after.queue().ack(queue, delivery)
        return [f"message m{i}{again}" for i in range(ack.count) if f"m{i}{again}".encode() not in got]

    return Written("queue", ack.count, missing, ack.error)


async def write_log(driver: Driver, ns: Namespace, until_error: bool = False, again: str = "") -> Written:
    log = ns.name("log")
    ack = _Acks(until_error)
    offsets: list[int] = []
    committed = False
    try:
        for i in range(WRITES):
            offset = await ack(driver.log().append(log, Message(f"r{i}{again}".encode())))
            assert isinstance(offset, int)
            offsets.append(offset)
        await ack(driver.log().commit(log, "readers", offsets[-1] + 1))
        committed = True
    except _Stop:
        pass

    async def missing(after: Driver) -> list[str]:
        # a second round follows the first's records: read from its own first offset
        start = offsets[0] if offsets else 0
        found = {r.offset: r.message.payload for r in await after.log().read(log, start, limit=WRITES * 2)}
        lost = [f"record r{i}{again} at {o}" for i, o in enumerate(offsets) if found.get(o) != f"r{i}{again}".encode()]
        if committed and await after.log().committed(log, "readers") != offsets[-1] + 1:
            lost.append("the consumer group's commit")
        return lost

    return Written("log", ack.count, missing, ack.error)  # the appends and the commit


async def write_objects(driver: Driver, ns: Namespace, until_error: bool = False, again: str = "") -> Written:
    bucket = ns.name("bucket")
    ack = _Acks(until_error)
    try:
        if not again:  # a second round writes into the bucket the first created
            await ack(driver.objects().create_bucket(bucket))
        for i in range(WRITES):
            await ack(driver.objects().put(bucket, f"o{i}{again}", bytes([i]) * 1000))
    except _Stop:
        pass
    stored = max(0, ack.count - (0 if again else 1))

    async def missing(after: Driver) -> list[str]:
        lost = []
        for i in range(stored):
            try:
                intact = await after.objects().get(bucket, f"o{i}{again}") == bytes([i]) * 1000
            except Exception:  # not found, or its bucket is gone
                intact = False
            if not intact:
                lost.append(f"object o{i}{again}")
        return lost

    return Written("objects", stored, missing, ack.error)


WRITERS = {
    Capability.KEYVALUE: write_keyvalue,
    Capability.QUEUE: write_queue,
    Capability.LOG: write_log,
    Capability.OBJECTS: write_objects,
}


async def write_everything(driver: Driver, ns: Namespace, until_error: bool = False, again: str = "") -> list[Written]:
    """Every interface's writes; ``until_error``: a failure stops the writes (counted as not
    acknowledged) instead of the test, for a machine that crashes under them. ``again``: a
    second round into the keys, queue, log and bucket a first call made, its values marked
    with it (a queue then holds both rounds: its check drains both and judges this one)."""
    written: list[Written] = []
    for cap, write in WRITERS.items():
        if driver.supports(cap):
            if until_error and any(w.error for w in written):
                written.append(Written(cap.value, 0, _nothing, "not tried: the machine crashed"))
                continue
            written.append(await write(driver, ns, until_error, again))
    return written


async def _nothing(after: Driver) -> list[str]:
    return []


async def missing_writes(written: list[Written], after: Driver) -> list[str]:
    return [f"{w.interface}: {m}" for w in written for m in await w.missing(after)]
