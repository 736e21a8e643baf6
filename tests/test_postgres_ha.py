"""postgres-ha on one machine: a primary and two streaming standbys in their own network
namespaces. Proof that replication is real (a commit shows on the standbys; a synchronous
commit waits while the standbys are cut off and completes after the heal), that the failover
runbook moves the primary (the multi-host URL follows it; the fenced primary never takes a
write again), how many acknowledged commits an asynchronous failover loses under load, and
that teardown leaves nothing behind."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.backends.postgres.ha import PORT, PostgresHaCluster, PostgresHaProvisioner
from prism_testkit.patience import bound, describe, until_sync
from prism_testkit.provision.base import Endpoint
from prism_testkit.provision.netns import NAME_PREFIX
from prism_testkit.provision.processes import port_open
from tests.conftest import cluster_in_a_temp_dir, provision_cluster

asyncpg = pytest.importorskip("asyncpg")

WRITERS = 8  # concurrent connections committing during the loss measurement
LOAD_SECONDS = 1.5  # of commits before the primary is killed


def _provision(tmp: Path, binaries: Mapping[str, Path], *, synchronous: bool, nodes: int = 3) -> Endpoint:
    provisioner = PostgresHaProvisioner(nodes=nodes, synchronous=synchronous)
    return provision_cluster("postgres-ha", provisioner, tmp, binaries)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A work dir the ``postgres`` user can reach. Not under pytest's basetemp: every pytest
    session that starts on this machine resets /tmp/pytest-of-<user> to 0700, which locks
    the servers out of their data dirs in the middle of a run."""
    made = Path(tempfile.mkdtemp(prefix="prism-pgha-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _module_endpoint(binaries: Mapping[str, Path], synchronous: bool) -> Iterator[Endpoint]:
    yield from cluster_in_a_temp_dir("prism-pgha-", lambda where: _provision(where, binaries, synchronous=synchronous))


@pytest.fixture(scope="module")
def sync_endpoint(prism_binaries: Mapping[str, Path]) -> Iterator[Endpoint]:
    yield from _module_endpoint(prism_binaries, synchronous=True)


@pytest.fixture(scope="module")
def async_endpoint(prism_binaries: Mapping[str, Path]) -> Iterator[Endpoint]:
    yield from _module_endpoint(prism_binaries, synchronous=False)


def _restored(endpoint: Endpoint) -> Iterator[Endpoint]:
    yield endpoint
    cluster: PostgresHaCluster = endpoint.options["cluster"]
    cluster.restore()  # heal, and bring a fenced primary back as a standby


@pytest.fixture
def sync_ha(sync_endpoint: Endpoint) -> Iterator[Endpoint]:
    yield from _restored(sync_endpoint)


@pytest.fixture
def async_ha(async_endpoint: Endpoint) -> Iterator[Endpoint]:
    yield from _restored(async_endpoint)


def cluster_of(endpoint: Endpoint) -> PostgresHaCluster:
    cluster: PostgresHaCluster = endpoint.options["cluster"]
    return cluster


def node_url(cluster: PostgresHaCluster, node: int) -> str:
    return f"postgresql://postgres@{cluster.address(node)}:{PORT}/postgres"


def table() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


async def execute(url: str, query: str, *args: object) -> None:
    conn = await asyncpg.connect(url, timeout=5, command_timeout=30)
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


async def fetchval(url: str, query: str) -> object:
    conn = await asyncpg.connect(url, timeout=5, command_timeout=30)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def eventually_count(url: str, name: str, expected: int, bound_name: str = "calm-op") -> int:
    """The row count of ``name`` on the node at ``url`` once it is ``expected``; past the bound
    ``bound_name``: Unsettled, naming the last count seen."""

    def count() -> int:
        try:
            return int(str(asyncio.run(fetchval(url, f"SELECT count(*) FROM {name}"))))
        except (OSError, asyncpg.PostgresError):
            return -1  # not replayed yet (the table itself), or the node is restarting

    return until_sync(
        count,
        lambda seen: seen == expected,
        what=f"{expected} rows of {name} on {url}",
        stall=bound_name,
        ceiling=bound_name,
        every=0.1,
    )


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_the_cluster_starts_with_one_primary(variant: str, request: pytest.FixtureRequest) -> None:
    endpoint: Endpoint = request.getfixturevalue(f"{variant}_ha")
    cluster = cluster_of(endpoint)
    seconds = endpoint.options["start_seconds"]
    print(f"\npostgres-ha ({variant}): 3 nodes ready in {seconds:.2f}s")  # timed in benchmarks, never asserted
    assert cluster.leader() == 0
    assert [cluster.in_recovery(n) for n in range(3)] == [False, True, True]
    expected = "ANY 1 (n0, n1, n2)" if variant == "sync" else ""
    assert cluster.sql(0, "SHOW synchronous_standby_names") == expected
    assert asyncio.run(fetchval(endpoint.url, "SELECT pg_is_in_recovery()")) is False


def test_a_commit_on_the_primary_shows_on_every_standby(sync_ha: Endpoint) -> None:
    cluster = cluster_of(sync_ha)
    name = table()
    asyncio.run(execute(sync_ha.url, f"CREATE TABLE {name} (x int)"))
    asyncio.run(execute(sync_ha.url, f"INSERT INTO {name} VALUES (1), (2)"))
    for node in cluster.standbys():
        assert eventually_count(node_url(cluster, node), name, 2) == 2
        with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
            asyncio.run(execute(node_url(cluster, node), f"INSERT INTO {name} VALUES (3)"))


async def _commit_while_cut(url: str, name: str, cluster: PostgresHaCluster, wait: float) -> tuple[bool, bool]:
    """Start a commit while the primary is cut off from its standbys; whether it completed
    within ``wait`` seconds of the cut, and whether it completed within 30 s of the heal."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        commit = asyncio.ensure_future(conn.execute(f"INSERT INTO {name} VALUES (42)"))
        await asyncio.sleep(wait)
        before_heal = commit.done()
        await asyncio.to_thread(cluster.heal)
        try:
            await asyncio.wait_for(asyncio.shield(commit), 30)
        except TimeoutError:
            return before_heal, False
        return before_heal, True
    finally:
        await conn.close(timeout=5)


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_a_synchronous_commit_waits_while_the_standbys_are_cut_off(
    variant: str, request: pytest.FixtureRequest
) -> None:
    endpoint: Endpoint = request.getfixturevalue(f"{variant}_ha")
    cluster = cluster_of(endpoint)
    name = table()
    asyncio.run(execute(endpoint.url, f"CREATE TABLE {name} (x int)"))
    cluster.wait_settled()
    primary = cluster.leader()
    assert primary is not None
    cluster.partition([[primary], cluster.standbys()])  # proved: a TCP probe across the cut fails
    assert all(not cluster.network.reaches(primary, n, PORT) for n in cluster.standbys())
    before_heal, after_heal = asyncio.run(_commit_while_cut(endpoint.url, name, cluster, wait=2.0))
    if variant == "sync":
        assert not before_heal, "a synchronous commit returned while no standby could confirm it"
    else:
        assert before_heal, "an asynchronous commit waited for the standbys"
    assert after_heal
    for node in cluster.standbys():
        assert eventually_count(node_url(cluster, node), name, 1, "recovery") == 1


def test_failover_promotes_a_standby_and_the_url_follows_it(sync_ha: Endpoint) -> None:
    cluster = cluster_of(sync_ha)
    name = table()
    asyncio.run(execute(sync_ha.url, f"CREATE TABLE {name} (x int)"))
    asyncio.run(execute(sync_ha.url, f"INSERT INTO {name} VALUES (1)"))
    old = cluster.leader()
    assert old is not None
    started = time.monotonic()
    new = cluster.failover()
    print(f"\npostgres-ha failover n{old} -> n{new} in {time.monotonic() - started:.2f}s")
    assert new != old
    assert cluster.leader() == new
    assert not cluster.in_recovery(new)
    # the multi-host URL reaches the new primary, which has the commit and takes writes
    assert asyncio.run(fetchval(sync_ha.url, "SELECT host(inet_server_addr())")) == cluster.address(new)
    asyncio.run(execute(sync_ha.url, f"INSERT INTO {name} VALUES (2)"))
    assert eventually_count(node_url(cluster, new), name, 2) == 2
    # the fenced primary takes nothing: it is not even listening
    assert not port_open(cluster.address(old), PORT)
    # the other standby follows the new primary (it sees the write made after the promotion)
    (other,) = [n for n in cluster.standbys() if n != old]
    assert cluster.in_recovery(other)
    assert eventually_count(node_url(cluster, other), name, 2, "recovery") == 2
    # restored, the old primary is a standby of the new one: it reads the new write, refuses its own
    cluster.restore()
    assert cluster.in_recovery(old)
    assert eventually_count(node_url(cluster, old), name, 2, "recovery") == 2
    with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
        asyncio.run(execute(node_url(cluster, old), f"INSERT INTO {name} VALUES (3)"))
    # and a synchronous commit is confirmed again by the standbys of the new primary
    cluster.wait_settled()
    replicas = cluster.sql(new, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
    assert set(replicas.split()) == {f"n{n}" for n in cluster.standbys()}


def test_waiting_for_a_cluster_whose_primary_is_down_fails_at_once(sync_ha: Endpoint) -> None:
    """Nothing but a restore starts a lost primary again: a wait for the cluster to settle
    says so at once instead of running out its bound (16 min, seen on a loaded machine)."""
    from prism_testkit.errors import ProvisioningError

    cluster = cluster_of(sync_ha)
    primary = cluster.primary
    cluster.kill_node(primary)
    try:
        started = time.monotonic()
        with pytest.raises(ProvisioningError, match=f"the primary n{primary} is not running"):
            cluster.wait_settled()
        assert time.monotonic() - started < bound("calm-op")
    finally:
        cluster.restore()
    assert cluster.primary == primary
    assert not cluster.in_recovery(primary)


def test_repeated_failovers_keep_every_commit_and_the_cluster_heals(sync_ha: Endpoint) -> None:
    cluster = cluster_of(sync_ha)
    name = table()
    asyncio.run(execute(sync_ha.url, f"CREATE TABLE {name} (x int)"))
    first = cluster.leader()
    assert first is not None
    primaries = [first]
    for round_ in range(2):  # the second promotes the standby the first re-pointed
        asyncio.run(execute(sync_ha.url, f"INSERT INTO {name} VALUES ($1)", round_))
        primaries.append(cluster.failover())
    assert len(set(primaries)) == 3  # each node has been the primary once
    assert cluster.fenced == set(primaries[:2])
    assert eventually_count(node_url(cluster, primaries[-1]), name, 2) == 2
    # the last node alone cannot confirm a synchronous commit: it waits for a standby
    cluster.restore()  # both former primaries come back as standbys of the last one
    assert cluster.fenced == set()
    asyncio.run(execute(sync_ha.url, f"INSERT INTO {name} VALUES (2)"))
    assert [cluster.in_recovery(n) for n in primaries] == [True, True, False]
    for node in primaries[:2]:
        assert eventually_count(node_url(cluster, node), name, 3, "recovery") == 3


async def _write_until_killed(url: str, name: str, cluster: PostgresHaCluster, first: int = 0) -> tuple[set[int], int]:
    """``WRITERS`` connections commit one row each per statement (ids from ``first`` on); after
    ``LOAD_SECONDS`` the primary is fenced (SIGKILL) and a standby promoted. Returns the
    acknowledged ids and the new primary."""
    acknowledged: set[int] = set()
    counter = iter(range(first, first + 10**9))
    stop = asyncio.Event()

    async def writer() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            while not stop.is_set():
                value = next(counter)
                await conn.execute(f"INSERT INTO {name} VALUES ($1)", value)
                acknowledged.add(value)  # only after the commit returned
        except Exception:  # lost connection, server error, protocol state after a reset
            return  # the primary died under this commit: its outcome is unknown, not acknowledged
        finally:
            conn.terminate()

    tasks = [asyncio.ensure_future(writer()) for _ in range(WRITERS)]
    await asyncio.sleep(LOAD_SECONDS)
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # fence() kills at once; the writers keep committing until it lands
        new = await loop.run_in_executor(pool, cluster.failover)
    stop.set()
    await asyncio.gather(*tasks)
    return acknowledged, new


def _lost_in_failover(endpoint: Endpoint) -> tuple[int, int]:
    cluster = cluster_of(endpoint)
    name = table()
    asyncio.run(execute(endpoint.url, f"CREATE TABLE {name} (x bigint PRIMARY KEY)"))
    cluster.wait_settled()
    acknowledged, new = asyncio.run(_write_until_killed(endpoint.url, name, cluster))
    conn_url = node_url(cluster, new)
    kept = asyncio.run(rows(conn_url, name))
    return len(acknowledged), len(acknowledged - kept)


async def rows(url: str, name: str) -> set[int]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return {row[0] for row in await conn.fetch(f"SELECT x FROM {name}")}
    finally:
        await conn.close()


def test_a_synchronous_failover_loses_no_acknowledged_commit(sync_ha: Endpoint) -> None:
    acknowledged, lost = _lost_in_failover(sync_ha)
    print(f"\npostgres-ha (sync): {lost} of {acknowledged} acknowledged commits lost in a failover under load")
    assert acknowledged > 100  # the load was real
    assert lost == 0


def test_an_asynchronous_failover_loss_is_measured(
    async_ha: Endpoint, record_property: Callable[[str, object], None]
) -> None:
    acknowledged, lost = _lost_in_failover(async_ha)
    print(f"\npostgres-ha-async: {lost} of {acknowledged} acknowledged commits lost in a failover under load")
    record_property("acknowledged", acknowledged)
    record_property("lost", lost)
    assert acknowledged > 100
    assert 0 <= lost <= acknowledged


def _streams_from(cluster: PostgresHaCluster, node: int) -> str:
    """Whom standby ``node``'s WAL receiver streams from (its sender's address), once it
    streams from the current primary and the primary lists it as streaming; past the
    "recovery" bound (30 s x slowness, more than the 20 s it had): Unsettled, with the last seen."""

    def look() -> tuple[str, str]:
        seen = cluster.sql(node, "SELECT status || ' ' || sender_host FROM pg_stat_wal_receiver", timeout=5)
        senders = cluster.sql(
            cluster.primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'", timeout=5
        )
        return seen, senders

    until_sync(
        look,
        lambda seen: seen[0] == f"streaming {cluster.address(cluster.primary)}" and f"n{node}" in seen[1].split(),
        what=f"standby n{node} to stream from the primary n{cluster.primary}",
        stall="recovery",
        ceiling="recovery",
        every=0.1,
    )
    return cluster.address(cluster.primary)


@pytest.mark.parametrize("resume", ["restore_node", "restore"])
def test_a_lagging_standby_misses_the_promotion_and_then_follows_the_new_primary(
    sync_ha: Endpoint, resume: str
) -> None:
    cluster = cluster_of(sync_ha)
    name = table()
    asyncio.run(execute(sync_ha.url, f"CREATE TABLE {name} (x int PRIMARY KEY)"))
    cluster.wait_settled()
    old = cluster.primary
    running, lagging = cluster.standbys()
    cluster.pause_node(lagging)
    acknowledged = set()
    # Straight to the primary while a node is paused: asyncpg tries the URL's hosts in order,
    # and a stopped one before the primary eats the whole connect timeout.
    for value in range(20):  # synchronous (ANY 1): the running standby confirms each commit
        asyncio.run(execute(node_url(cluster, old), f"INSERT INTO {name} VALUES ($1)", value))
        acknowledged.add(value)
    # the pause is real: the lagging standby flushed none of those commits
    behind = cluster.sql(
        old, f"SELECT flush_lsn < pg_current_wal_lsn() FROM pg_stat_replication WHERE application_name = 'n{lagging}'"
    )
    assert behind in ("t", ""), f"n{lagging} kept streaming while paused"
    pid = cluster.servers[lagging].pid
    new = cluster.failover()
    assert new == running, "a paused standby was promoted, or none"
    assert rows_on(cluster, new, name) == acknowledged
    # Rejoining is a recovering action: bounded by the derived patience, never a fixed number
    # of seconds (a loaded machine re-points slower; a re-clone takes a base backup on top).
    patience = bound("recovery")
    resumed = time.monotonic()
    if resume == "restore":
        cluster.restore()  # the old primary comes back too
        assert cluster.in_recovery(old)
        cluster.pause_node(old)  # so that only the resumed standby can confirm the next commit
    else:
        cluster.restore_node(lagging)  # the old primary stays down: it is the only standby
    assert cluster.paused == ({old} if resume == "restore" else set())
    assert cluster.in_recovery(lagging)
    assert _streams_from(cluster, lagging) == cluster.address(new)
    took = time.monotonic() - resumed
    # What the registration promises (PostgresHaCluster): a standby whose WAL ends at or before
    # the fork is re-pointed, its process kept; only one holding WAL the new timeline never had
    # is cloned afresh. This one flushed none of the commits past its pause (checked above).
    assert cluster.servers[lagging].pid == pid, (
        f"the lagging standby n{lagging}, which held no WAL past the fork, was killed and cloned afresh, "
        "not re-pointed at the new primary"
    )
    assert took < patience, f"n{lagging} took {took:.1f}s to stream from the new primary ({describe('recovery')})"
    try:  # synchronous: the resumed standby, streaming on the new timeline, confirms this commit
        insert = execute(node_url(cluster, new), f"INSERT INTO {name} VALUES (100)")
        asyncio.run(asyncio.wait_for(insert, bound("calm-op")))
    finally:
        if resume == "restore":
            cluster.restore_node(old)
    expected = len(acknowledged) + 1
    assert eventually_count(node_url(cluster, lagging), name, expected, "recovery") == expected


def test_a_standby_down_during_the_failover_streams_from_the_new_primary_once_started(sync_ha: Endpoint) -> None:
    # Its settings still name the old primary: started as it was, it would never stream, and the
    # cluster would never settle (CI's postgres-ha-lagging heal that waited 315 s).
    cluster = cluster_of(sync_ha)
    cluster.wait_settled()
    down, survivor = cluster.standbys()
    cluster.kill_node(down)
    new = cluster.failover()
    assert new == survivor
    cluster.restore_node(down)  # raises if the cluster never settles with it
    assert cluster.in_recovery(down)
    assert _streams_from(cluster, down) == cluster.address(new)


def rows_on(cluster: PostgresHaCluster, node: int, name: str) -> set[int]:
    return asyncio.run(rows(node_url(cluster, node), name))


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_with_only_paused_standbys_left_the_failover_resumes_and_promotes_one(
    variant: str, request: pytest.FixtureRequest
) -> None:
    endpoint: Endpoint = request.getfixturevalue(f"{variant}_ha")
    cluster = cluster_of(endpoint)
    name = table()
    asyncio.run(execute(endpoint.url, f"CREATE TABLE {name} (x int PRIMARY KEY)"))
    for value in range(10):
        asyncio.run(execute(endpoint.url, f"INSERT INTO {name} VALUES ($1)", value))
    cluster.wait_settled()
    before = set(range(10))
    for node in cluster.standbys():
        cluster.pause_node(node)
    after: set[int] = set()
    if variant == "async":  # the primary alone acknowledges: these may be lost
        for value in range(10, 30):
            asyncio.run(execute(node_url(cluster, cluster.primary), f"INSERT INTO {name} VALUES ($1)", value))
            after.add(value)
    new = cluster.failover()
    assert cluster.paused == set()
    assert not cluster.in_recovery(new)
    kept = rows_on(cluster, new, name)
    assert before <= kept, f"lost {sorted(before - kept)}, acknowledged before every standby paused"
    lost = len(after - kept)
    print(f"\npostgres-ha ({variant}): {lost} of {len(after)} commits acknowledged while every standby was paused lost")
    cluster.restore()
    assert [cluster.in_recovery(n) for n in cluster.standbys()] == [True, True]
    for node in cluster.standbys():
        assert _streams_from(cluster, node) == cluster.address(new)


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_three_failovers_in_a_row_under_load(
    variant: str, request: pytest.FixtureRequest, record_property: Callable[[str, object], None]
) -> None:
    endpoint: Endpoint = request.getfixturevalue(f"{variant}_ha")
    cluster = cluster_of(endpoint)
    name = table()
    asyncio.run(execute(endpoint.url, f"CREATE TABLE {name} (x bigint PRIMARY KEY)"))
    acknowledged: set[int] = set()
    primaries = [cluster.primary]
    for round_ in range(3):
        cluster.wait_settled()
        acked, new = asyncio.run(_write_until_killed(endpoint.url, name, cluster, first=round_ * 10**6))
        assert acked, f"round {round_}: no commit was acknowledged"
        acknowledged |= acked
        primaries.append(new)
        cluster.restore()  # the fenced primary comes back as a standby of the new one
        assert cluster.fenced == set()
        assert cluster.leader() == new
        assert [cluster.in_recovery(n) for n in range(3)] == [n != new for n in range(3)]
        for node in cluster.standbys():
            assert _streams_from(cluster, node) == cluster.address(new)
    lost = len(acknowledged - rows_on(cluster, cluster.primary, name))
    print(f"\npostgres-ha ({variant}): {lost} of {len(acknowledged)} acknowledged commits lost in 3 failovers")
    record_property("acknowledged", len(acknowledged))
    record_property("lost", lost)
    if variant == "sync":
        assert lost == 0


def _processes_inside(directory: Path) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(f"/proc/{entry.name}/cwd")).is_relative_to(directory):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _namespaces(token: str) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(f"{NAME_PREFIX}{token}")]


def _links(prefix: str) -> list[str]:
    listed = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return [line for line in listed.splitlines() if prefix in line]


def test_teardown_leaves_nothing_behind(workdir: Path, prism_binaries: Mapping[str, Path]) -> None:
    workdir = workdir / "pgha"
    endpoint = _provision(workdir, prism_binaries, synchronous=False, nodes=2)
    cluster = cluster_of(endpoint)
    token = cluster.network.token
    postmasters = [s.pid for s in cluster.servers]
    assert all(pid is not None for pid in postmasters)
    assert len(_processes_inside(workdir)) >= 2 * 4  # postmasters, their helpers and walsender/receiver
    assert len(_namespaces(token)) == 2
    assert _links(f"pk{token[:8]}")
    cluster.failover()  # a fenced node and a promoted one: teardown copes with either
    assert endpoint.teardown is not None
    endpoint.teardown()
    until_sync(
        lambda: _processes_inside(workdir),
        lambda left: not left,
        what="the torn-down cluster's processes to end",
        stall="calm-op",
        ceiling="calm-op",
    )
    assert _processes_inside(workdir) == []
    assert _namespaces(token) == []
    assert _links(f"pk{token[:8]}") == []
    assert not list(workdir.rglob(".prism-testkit-network-*"))
    shutil.rmtree(workdir)  # nothing holds the work dir: the harness removes it whole
    assert not workdir.exists()


class _Draws:
    """A stand-in for Hypothesis's ``data``: hands out the given values in order."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)

    def draw(self, strategy: object, label: str | None = None) -> object:
        return self.values.pop(0)


def test_the_nemesis_fails_over_with_a_lagging_replica_only_where_the_cluster_can_hold_one_back() -> None:
    """The kill rule aimed at the primary: a drawn flag makes a replica lag through the failover
    (``failover-lagging``, the op naming it), a replica already paused counts as lagging (no
    longer a reason to skip the failover), a cluster that cannot hold a replica back draws
    nothing, and nodes cut off still rule a failover out."""
    from prism_testkit.provision.cluster import FailoverCluster
    from prism_testkit.provision.netns import Network
    from prism_testkit.stateful.nemesis import FaultTarget, Nemesis

    class Lagging(FailoverCluster):
        can_lag = True

    injected: list[tuple[str, object]] = []
    nemesis = Nemesis.__new__(Nemesis)  # the choice only: no environment, no servers
    nemesis.inject = lambda f, target, action, detail=None, **kw: injected.append((f, detail))  # type: ignore[method-assign]

    def kill_leader(cluster: FailoverCluster, data: _Draws | None) -> None:
        target = FaultTarget("a", "x", cluster, True, True, None, cluster=cluster, survives_failover=True)
        nemesis.kill_node(target, 1, data)  # type: ignore[arg-type]

    nodes: list = [None] * 3  # three nodes, never started
    lagging = Lagging(nodes, Network(3), PORT)
    lagging.setup_failover()
    kill_leader(lagging, _Draws(True, 2))
    kill_leader(lagging, _Draws(False))
    lagging.paused.add(1)  # paused before the rule ran: a failover all the same, n1 lagging
    kill_leader(lagging, _Draws())
    plain = FailoverCluster(nodes, Network(3), PORT)
    plain.setup_failover()
    kill_leader(plain, _Draws())  # draws nothing: would raise IndexError
    lagging.network.cuts.add((0, 1))
    kill_leader(lagging, _Draws())
    assert injected == [
        ("failover-lagging", {"node": 0, "lagging": [2]}),
        ("failover", {"node": 0}),
        ("failover-lagging", {"node": 0, "lagging": [1]}),
        ("failover", {"node": 0}),
        ("kill-leader", {"node": 0}),
    ]
