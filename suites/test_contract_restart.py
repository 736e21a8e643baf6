"""Restart contract: clients reconnect after a restart, and a backend declared durable keeps
every acknowledged write across SIGKILL + restart of the server the harness started.

Embedded backends and servers given by URL have no process control: for them the reconnect
test closes and reopens the driver, and the kill test is skipped with that reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from prism_testkit import Capability, Driver, Message, PrismEnv, Slot, prism_suite
from prism_testkit.isolation import Namespace

pytestmark = prism_suite("restart", backend=Slot.one_of("keyvalue", "queue", "log", "objects"))

WRITES = 20
Check = Callable[[Driver], Awaitable[None]]


async def write_keyvalue(driver: Driver, ns: Namespace) -> Check:
    keys = [ns.name(f"k{i}") for i in range(WRITES)]
    for i, key in enumerate(keys):
        await driver.keyvalue().put(key, f"v{i}".encode())

    async def check(after: Driver) -> None:
        assert [await after.keyvalue().get(k) for k in keys] == [f"v{i}".encode() for i in range(WRITES)]

    return check


async def write_queue(driver: Driver, ns: Namespace) -> Check:
    queue = ns.name("q")
    for i in range(WRITES):
        await driver.queue().send(queue, Message(f"m{i}".encode()))

    async def check(after: Driver) -> None:
        got = []
        while (delivery := await after.queue().receive(queue, wait=1.0)) is not None:
            got.append(delivery.message.payload)
            await after.queue().ack(queue, delivery)
        assert sorted(got) == sorted(f"m{i}".encode() for i in range(WRITES))

    return check


async def write_log(driver: Driver, ns: Namespace) -> Check:
    log = ns.name("log")
    offsets = [await driver.log().append(log, Message(f"r{i}".encode())) for i in range(WRITES)]
    await driver.log().commit(log, "readers", offsets[-1] + 1)

    async def check(after: Driver) -> None:
        records = await after.log().read(log, 0, limit=WRITES * 2)
        assert [(r.offset, r.message.payload) for r in records] == [
            (offset, f"r{i}".encode()) for i, offset in enumerate(offsets)
        ]
        assert await after.log().committed(log, "readers") == offsets[-1] + 1

    return check


async def write_objects(driver: Driver, ns: Namespace) -> Check:
    bucket = ns.name("bucket")
    await driver.objects().create_bucket(bucket)
    for i in range(WRITES):
        await driver.objects().put(bucket, f"o{i}", bytes([i]) * 1000)

    async def check(after: Driver) -> None:
        for i in range(WRITES):
            assert await after.objects().get(bucket, f"o{i}") == bytes([i]) * 1000

    return check


WRITERS = {
    Capability.KEYVALUE: write_keyvalue,
    Capability.QUEUE: write_queue,
    Capability.LOG: write_log,
    Capability.OBJECTS: write_objects,
}


async def write_everything(env: PrismEnv) -> list[Check]:
    driver = env.driver("backend")
    return [await write(driver, env.ns) for cap, write in WRITERS.items() if driver.supports(cap)]


async def test_clients_reconnect_after_an_orderly_restart(prism_env: PrismEnv) -> None:
    checks = await write_everything(prism_env)
    after = await prism_env.restart("backend", kill=False)
    if prism_env.control("backend") is None or prism_env.spec("backend").properties.durable:
        for check in checks:
            await check(after)
    # whatever survived, the reconnected client must work
    assert await write_everything(prism_env)


async def test_acknowledged_writes_survive_kill_and_restart(prism_env: PrismEnv) -> None:
    name = prism_env.combination["backend"]
    if prism_env.control("backend") is None:
        pytest.skip(f"{name}: no process control (embedded, or given by URL)")
    if not prism_env.spec("backend").properties.durable:
        pytest.skip(f"{name}: the provisioned instance is declared not durable across restart")
    checks = await write_everything(prism_env)
    after = await prism_env.restart("backend", kill=True)
    for check in checks:
        await check(after)


async def test_a_non_durable_backend_works_again_after_a_kill(prism_env: PrismEnv) -> None:
    name = prism_env.combination["backend"]
    if prism_env.control("backend") is None:
        pytest.skip(f"{name}: no process control (embedded, or given by URL)")
    await write_everything(prism_env)
    after = await prism_env.restart("backend", kill=True)
    assert after is prism_env.driver("backend")
    assert await write_everything(prism_env)
