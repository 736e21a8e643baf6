"""Acknowledged writes on every interface a backend offers, and what is missing of them later:
shared by the restart suite (process crash) and the power-loss suite (power cut)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prism_testkit import Capability, Driver, Message
from prism_testkit.isolation import Namespace

WRITES = 20
Missing = Callable[[Driver], Awaitable[list[str]]]


@dataclass
class Written:
    """Writes the backend acknowledged, and how to find which of them a later driver misses."""

    interface: str
    acknowledged: int
    missing: Missing


async def write_keyvalue(driver: Driver, ns: Namespace) -> Written:
    keys = [ns.name(f"k{i}") for i in range(WRITES)]
    for i, key in enumerate(keys):
        await driver.keyvalue().put(key, f"v{i}".encode())

    async def missing(after: Driver) -> list[str]:
        return [f"key {k}" for i, k in enumerate(keys) if await after.keyvalue().get(k) != f"v{i}".encode()]

    return Written("keyvalue", WRITES, missing)


async def write_queue(driver: Driver, ns: Namespace) -> Written:
    queue = ns.name("q")
    for i in range(WRITES):
        await driver.queue().send(queue, Message(f"m{i}".encode()))

    async def missing(after: Driver) -> list[str]:
        got = set()
        while (delivery := await after.queue().receive(queue, wait=1.0)) is not None:
            got.add(delivery.message.payload)
            await after.queue().ack(queue, delivery)
        return [f"message m{i}" for i in range(WRITES) if f"m{i}".encode() not in got]

    return Written("queue", WRITES, missing)


async def write_log(driver: Driver, ns: Namespace) -> Written:
    log = ns.name("log")
    offsets = [await driver.log().append(log, Message(f"r{i}".encode())) for i in range(WRITES)]
    await driver.log().commit(log, "readers", offsets[-1] + 1)

    async def missing(after: Driver) -> list[str]:
        found = {r.offset: r.message.payload for r in await after.log().read(log, 0, limit=WRITES * 2)}
        lost = [f"record r{i} at {o}" for i, o in enumerate(offsets) if found.get(o) != f"r{i}".encode()]
        if await after.log().committed(log, "readers") != offsets[-1] + 1:
            lost.append("the consumer group's commit")
        return lost

    return Written("log", WRITES + 1, missing)  # the appends and the commit


async def write_objects(driver: Driver, ns: Namespace) -> Written:
    bucket = ns.name("bucket")
    await driver.objects().create_bucket(bucket)
    for i in range(WRITES):
        await driver.objects().put(bucket, f"o{i}", bytes([i]) * 1000)

    async def missing(after: Driver) -> list[str]:
        lost = []
        for i in range(WRITES):
            try:
                intact = await after.objects().get(bucket, f"o{i}") == bytes([i]) * 1000
            except Exception:  # not found, or its bucket is gone
                intact = False
            if not intact:
                lost.append(f"object o{i}")
        return lost

    return Written("objects", WRITES, missing)


WRITERS = {
    Capability.KEYVALUE: write_keyvalue,
    Capability.QUEUE: write_queue,
    Capability.LOG: write_log,
    Capability.OBJECTS: write_objects,
}


async def write_everything(driver: Driver, ns: Namespace) -> list[Written]:
    return [await write(driver, ns) for cap, write in WRITERS.items() if driver.supports(cap)]


async def missing_writes(written: list[Written], after: Driver) -> list[str]:
    return [f"{w.interface}: {m}" for w in written for m in await w.missing(after)]
