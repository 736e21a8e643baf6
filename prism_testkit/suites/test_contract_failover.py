"""Failover contract: a backend declared ``survives_failover`` keeps every acknowledged write when
its primary is lost and a replica promoted; one that does not is run too, and what it loses is
counted as tolerated (``lost-in-failover``), so the report shows what asynchronous replication
costs.

Every backend whose instance is a primary with replicas the harness started (a
:class:`~prism_testkit.provision.cluster.FailoverCluster`: ``postgres-ha``, ``postgres-ha-async``,
``redis-sentinel``, ``redis-sentinel-wait``) gets writes on every interface it offers, then
:data:`WRITERS` concurrent key-value writers under load, and while they write the primary is
lost: killed (``kill``), or cut off from every other node and left running, reachable from the
harness (``isolate``, where the cluster supports it: the split-brain window), or killed while a
replica lags, stopped since before the loss and through the promotion (``lagging``, where the
cluster can hold a replica back: it must then follow the new primary). Once a replica is
promoted the cluster is restored (the partition healed, the old primary back as a replica) and a
new client counts which acknowledged writes are gone. A write whose call failed is not
acknowledged (its outcome is unknown). Other backends have no failover: their rows are skipped.

A client that was connected before the failover, and that nothing reconnects, must find the new
primary by itself (``test_a_client_from_before_the_failover_writes_to_the_new_primary``): its
first operations may fail (their outcome unknown), but once the cluster settled its writes must
succeed and be read by everyone. A client that resolved the primary once, at connect, keeps
writing to the demoted node and fails here.
"""

from __future__ import annotations

import asyncio

import pytest

from prism_testkit import Capability, Driver, PrismEnv, Slot, patience, prism_suite
from prism_testkit.provision.cluster import FailoverCluster
from prism_testkit.simulation import clock

from ._durability import missing_writes, write_everything
from ._helpers import own_client, replay_command

pytestmark = prism_suite("failover", backend=Slot.one_of("keyvalue", "queue", "log", "objects"))

LOST = "lost-in-failover"
WRITERS = 8  # concurrent key-value writers while the primary is lost
LOAD_SECONDS = 1.0  # of writes before the primary is lost
WRITE_BOUND = 15.0  # s: a write to a lost primary must fail, not hang the test


class _Load:
    """Key-value writers that put fresh keys until their first failure, or until stopped."""

    def __init__(self, driver: Driver, prefix: str) -> None:
        self.driver = driver
        self.prefix = prefix
        self.acknowledged: list[str] = []
        self.errors: list[str] = []
        self._next = 0
        self._stop = asyncio.Event()
        self._tasks = [asyncio.ensure_future(self._writer()) for _ in range(WRITERS)]

    async def _writer(self) -> None:
        while not self._stop.is_set():
            key = f"{self.prefix}{self._next}"
            self._next += 1
            try:
                await asyncio.wait_for(self.driver.keyvalue().put(key, b"acknowledged"), WRITE_BOUND)
            except Exception as exc:  # the primary went away under this write: outcome unknown
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                return
            self.acknowledged.append(key)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def missing(self, after: Driver) -> list[str]:
        if after.supports(Capability.KEYVALUE_SCAN):
            kept = {key async for key in after.keyvalue().scan(self.prefix)}
            return [f"keyvalue: key {k}" for k in self.acknowledged if k not in kept]
        return [f"keyvalue: key {k}" for k in self.acknowledged if await after.keyvalue().get(k) is None]


@pytest.mark.parametrize("how", ["kill", "isolate", "lagging"])
async def test_acknowledged_writes_survive_a_failover(
    prism_env: PrismEnv, request: pytest.FixtureRequest, how: str
) -> None:
    name = prism_env.combination["backend"]
    cluster = prism_env.control("backend")
    if not isinstance(cluster, FailoverCluster):
        pytest.skip(f"{name}: no failover (not a primary with replicas the harness started)")
    if how == "isolate" and not cluster.can_isolate:
        pytest.skip(f"{name}: its failover fences the primary by killing it; a partition alone is not tried")
    if how == "lagging" and not cluster.can_lag:
        pytest.skip(f"{name}: its cluster cannot hold a replica back through a failover")
    props = prism_env.spec("backend").properties
    driver = prism_env.driver("backend")
    written = await write_everything(driver, prism_env.ns)
    acknowledged = sum(w.acknowledged for w in written)
    load = _Load(driver, prism_env.ns.name("load-")) if driver.supports(Capability.KEYVALUE) else None
    await asyncio.sleep(LOAD_SECONDS)
    old = cluster.primary
    started = clock.monotonic()
    try:
        after = await prism_env.failover("backend", isolate=how == "isolate", lagging=how == "lagging")
    finally:
        if load is not None:
            await load.stop()
    seconds = clock.monotonic() - started
    missing = await missing_writes(written, after)
    if load is not None:
        acknowledged += len(load.acknowledged)
        missing += await load.missing(after)
    replay = replay_command(__name__, name, how)
    request.node.user_properties.append(
        (
            "failover",
            {
                "backend": name,
                "how": how,
                "from": old,
                "to": cluster.primary,
                "failover_seconds": round(cluster.failover_seconds[-1], 3),
                "with_restore_seconds": round(seconds, 3),
                "acknowledged": acknowledged,
                "lost": len(missing),
                "writers_stopped_by": sorted(set(load.errors))[:3] if load is not None else [],
                "replay": replay,
            },
        )
    )
    assert acknowledged > 0, f"{name}: nothing was written, so nothing could be lost"
    assert cluster.primary != old, f"{name}: the failover left n{old} the primary"
    if not props.survives_failover:
        prism_env.tolerated[LOST] += len(missing)
        return
    prism_env.anomalies["lost"] += len(missing)
    assert not missing, (
        f"{name} declares survives_failover but lost {len(missing)} of {acknowledged} acknowledged writes "
        f"when its primary n{old} was lost ({how}) and n{cluster.primary} promoted: {missing[:10]}\nreplay: {replay}"
    )


async def _put(driver: Driver, key: str, value: bytes) -> str:
    """``put``'s outcome in one word: ``ok``, or the error's type (its outcome unknown)."""
    try:
        await asyncio.wait_for(driver.keyvalue().put(key, value), WRITE_BOUND)
    except Exception as exc:  # the connection to the lost primary broke under it
        return type(exc).__name__
    return "ok"


async def test_a_client_from_before_the_failover_writes_to_the_new_primary(prism_env: PrismEnv) -> None:
    name = prism_env.combination["backend"]
    cluster = prism_env.control("backend")
    if not isinstance(cluster, FailoverCluster):
        pytest.skip(f"{name}: no failover (not a primary with replicas the harness started)")
    if not prism_env.driver("backend").supports(Capability.KEYVALUE):
        pytest.skip(f"{name}: no key-value interface to write through")
    before, after = prism_env.ns.name("before"), prism_env.ns.name("after")
    async with own_client(prism_env, "backend") as client:
        await client.keyvalue().put(before, b"before")  # its connections now lead to the primary
        old = cluster.primary
        fresh = await prism_env.failover("backend")  # reconnects the harness's driver, not this one
        assert cluster.primary != old, f"{name}: the failover left n{old} the primary"
        outcomes: list[str] = []

        async def put() -> str:
            outcomes.append(await _put(client, after, b"after"))
            return outcomes[-1]

        what = f"failover: a client from before it to write to n{cluster.primary}"
        await patience.until(put, lambda outcome: outcome == "ok", what=what)
        assert await client.keyvalue().get(after) == b"after", f"{name}: the client does not read its own write"
        assert await fresh.keyvalue().get(after) == b"after", (
            f"{name}: a write the old client was told succeeded is not on the new primary n{cluster.primary} "
            f"(its tries: {outcomes})\nreplay: {replay_command(__name__, name, 'client_from_before')}"
        )
        assert await fresh.keyvalue().get(before) == b"before"
