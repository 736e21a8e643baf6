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
from collections.abc import Iterator
from pathlib import Path

import pytest
from prism_testkit.backends.postgres.ha import PORT, PostgresHaCluster, PostgresHaProvisioner

from prism_testkit.provision.base import Endpoint, ProvisionContext
from prism_testkit.provision.netns import NAME_PREFIX, namespaces_unavailable_reason
from prism_testkit.provision.processes import port_open

asyncpg = pytest.importorskip("asyncpg")

WRITERS = 8  # concurrent connections committing during the loss measurement
LOAD_SECONDS = 1.5  # of commits before the primary is killed


def _provision(tmp: Path, *, synchronous: bool, nodes: int = 3) -> Endpoint:
    if (reason := namespaces_unavailable_reason()) is not None:
        pytest.fail(f"this project's run needs network namespaces: {reason}")
    provisioner = PostgresHaProvisioner(nodes=nodes, synchronous=synchronous)
    ctx = ProvisionContext("postgres-ha", None, tmp, "test", "test")
    availability = provisioner.probe(ctx)
    if not availability.available:
        pytest.fail(f"postgres-ha cannot run here: {availability.detail}")
    return provisioner.start(ctx)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A work dir the ``postgres`` user can reach. Not under pytest's basetemp: every pytest
    session that starts on this machine resets /tmp/pytest-of-<user> to 0700, which locks
    the servers out of their data dirs in the middle of a run."""
    made = Path(tempfile.mkdtemp(prefix="prism-pgha-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def _module_endpoint(synchronous: bool) -> Iterator[Endpoint]:
    base = Path(tempfile.mkdtemp(prefix="prism-pgha-"))
    try:
        made = _provision(base / "cluster", synchronous=synchronous)
        yield made
        assert made.teardown is not None
        made.teardown()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def sync_endpoint() -> Iterator[Endpoint]:
    yield from _module_endpoint(synchronous=True)


@pytest.fixture(scope="module")
def async_endpoint() -> Iterator[Endpoint]:
    yield from _module_endpoint(synchronous=False)


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


def eventually_count(url: str, name: str, expected: int, within: float = 10.0) -> int:
    """The row count of ``name`` on the node at ``url`` once it is ``expected`` (or the last seen)."""
    deadline = time.monotonic() + within
    seen = -1
    while time.monotonic() < deadline:
        try:
            seen = int(str(asyncio.run(fetchval(url, f"SELECT count(*) FROM {name}"))))
        except (OSError, asyncpg.PostgresError):
            seen = -1  # not replayed yet (the table itself), or the node is restarting
        if seen == expected:
            return seen
        time.sleep(0.1)
    return seen


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_the_cluster_starts_in_seconds_with_one_primary(variant: str, request: pytest.FixtureRequest) -> None:
    endpoint: Endpoint = request.getfixturevalue(f"{variant}_ha")
    cluster = cluster_of(endpoint)
    seconds = endpoint.options["start_seconds"]
    print(f"\npostgres-ha ({variant}): 3 nodes ready in {seconds:.2f}s")
    assert seconds < 20  # the goal is a few seconds; a shared CI machine is slower
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
        assert eventually_count(node_url(cluster, node), name, 1, within=20) == 1


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
    assert eventually_count(node_url(cluster, other), name, 2, within=20) == 2
    # restored, the old primary is a standby of the new one: it reads the new write, refuses its own
    cluster.restore()
    assert cluster.in_recovery(old)
    assert eventually_count(node_url(cluster, old), name, 2, within=20) == 2
    with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
        asyncio.run(execute(node_url(cluster, old), f"INSERT INTO {name} VALUES (3)"))
    # and a synchronous commit is confirmed again by the standbys of the new primary
    cluster.wait_settled()
    replicas = cluster.sql(new, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
    assert set(replicas.split()) == {f"n{n}" for n in cluster.standbys()}


def test_repeated_failovers_keep_every_commit_and_the_cluster_heals(sync_ha: Endpoint) -> None:
    cluster = cluster_of(sync_ha)
    name = table()
    asyncio.run(execute(sync_ha.url, f"CREATE TABLE {name} (x int)"))
    primaries = [cluster.leader()]
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
        assert eventually_count(node_url(cluster, node), name, 3, within=20) == 3


async def _write_until_killed(url: str, name: str, cluster: PostgresHaCluster) -> tuple[set[int], int]:
    """``WRITERS`` connections commit one row each per statement; after ``LOAD_SECONDS`` the
    primary is fenced (SIGKILL) and a standby promoted. Returns the acknowledged ids and the new primary."""
    acknowledged: set[int] = set()
    counter = iter(range(10**9))
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

    async def survivors() -> set[int]:
        conn = await asyncpg.connect(conn_url, timeout=5)
        try:
            return {row[0] for row in await conn.fetch(f"SELECT x FROM {name}")}
        finally:
            await conn.close()

    kept = asyncio.run(survivors())
    return len(acknowledged), len(acknowledged - kept)


def test_a_synchronous_failover_loses_no_acknowledged_commit(sync_ha: Endpoint) -> None:
    acknowledged, lost = _lost_in_failover(sync_ha)
    print(f"\npostgres-ha (sync): {lost} of {acknowledged} acknowledged commits lost in a failover under load")
    assert acknowledged > 100  # the load was real
    assert lost == 0


def test_an_asynchronous_failover_loss_is_measured(async_ha: Endpoint, record_property: pytest.RecordProperty) -> None:
    acknowledged, lost = _lost_in_failover(async_ha)
    print(f"\npostgres-ha-async: {lost} of {acknowledged} acknowledged commits lost in a failover under load")
    record_property("acknowledged", acknowledged)
    record_property("lost", lost)
    assert acknowledged > 100
    assert 0 <= lost <= acknowledged


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


def test_teardown_leaves_nothing_behind(workdir: Path) -> None:
    workdir = workdir / "pgha"
    endpoint = _provision(workdir, synchronous=False, nodes=2)
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
    deadline = time.monotonic() + 5
    while _processes_inside(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_inside(workdir) == []
    assert _namespaces(token) == []
    assert _links(f"pk{token[:8]}") == []
    assert not list(workdir.rglob(".prism-testkit-network-*"))
    shutil.rmtree(workdir)  # nothing holds the work dir: the harness removes it whole
    assert not workdir.exists()
