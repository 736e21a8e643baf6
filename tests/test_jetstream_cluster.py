"""A JetStream cluster on one machine, and proof that its faults are real: an isolated node
loses its quorum (a write through it fails while the majority's succeed), a killed node leaves
the others serving, the leader is known, and a crash of every node keeps acknowledged writes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prism_testkit.backends.nats.cluster import NatsClusterProvisioner
from prism_testkit.patience import bound, slowness, until
from prism_testkit.provision.base import Endpoint
from prism_testkit.provision.cluster import Cluster
from prism_testkit.provision.netns import Host, namespaces_unavailable_reason
from prism_testkit.stateful.history import History
from prism_testkit.stateful.nemesis import FILE_KINDS, FaultTarget, Nemesis
from tests.conftest import context_for

nats = pytest.importorskip("nats")
STREAM = "prism-cluster-test"
# Publishes this worker sent whose answer never came. Each may still be stored at any later
# moment (a timed-out client's message can sit in its node's queue while a retry overtakes it),
# so "no node holds more than was written" counts them as written.
UNANSWERED = Counter[str]()


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop that outlives the cluster, as the worker's does: a node the nemesis restarts from
    one of its executor's threads gets its parent-death signal when that thread exits."""
    made = asyncio.new_event_loop()
    yield made
    made.close()


@pytest.fixture(scope="module")
def endpoint(
    tmp_path_factory: pytest.TempPathFactory, loop: asyncio.AbstractEventLoop, prism_binaries: Mapping[str, Path]
) -> Iterator[Endpoint]:
    if (reason := namespaces_unavailable_reason()) is not None:
        pytest.fail(f"this project's run needs network namespaces: {reason}")
    provisioner = NatsClusterProvisioner(nodes=3, sync_always=True)
    ctx = context_for("jetstream-r3", tmp_path_factory.mktemp("cluster"), prism_binaries)
    if not provisioner.probe(ctx).available:
        pytest.fail(f"no nats-server >= 2.10 here: {provisioner.probe(ctx).detail}")
    made = provisioner.start(ctx)
    yield made
    assert made.teardown is not None
    made.teardown()


def node_urls(endpoint: Endpoint) -> list[str]:
    return endpoint.url.split(",")


async def publish_through(url: str, payload: bytes, replicas: int = 3) -> bool:
    """Publish to the stream (one replica per node) through one node only; True when JetStream
    acknowledged it. A publish sent but never answered is counted in ``UNANSWERED``. Each request
    waits 2 s x slowness: an R3 commit under load (or a SIGSTOP burst) outlasts a fixed 2 s every
    time, and then no retry within the "publish" bound could succeed."""
    wait = 2.0 * slowness()
    client = await nats.connect(url, connect_timeout=wait, allow_reconnect=False)
    stream = {"name": STREAM, "subjects": [f"{STREAM}.>"], "num_replicas": replicas, "storage": "file"}
    sent = False
    try:
        await client.request(f"$JS.API.STREAM.CREATE.{STREAM}", json.dumps(stream).encode(), timeout=wait)
        sent = True
        answer = await client.request(f"{STREAM}.x", payload, timeout=wait)
        return "error" not in json.loads(answer.data)
    except nats.errors.TimeoutError:
        UNANSWERED["publishes"] += sent
        return False
    except nats.errors.NoRespondersError:
        return False
    finally:
        await client.close()


async def eventually_published(url: str, payload: bytes, bound_name: str = "publish", replicas: int = 3) -> bool:
    """Published within the bound ``bound_name`` (15 s x slowness by default): after a kill, the
    streams elect leaders anew. Past it: Unsettled."""

    async def attempt() -> bool:
        return await publish_through(url, payload, replicas=replicas)

    what = f"a publish through {url} to be acknowledged"
    return await until(attempt, bool, what=what, stall=bound_name, ceiling=bound_name, every=0.2)


async def stored(url: str) -> int:
    """The stream's message count. Asked again while the cluster answers with an error (a stream
    whose leader an earlier test killed may be leaderless for a few seconds: "no state"), for the
    "recovery" bound (30 s x slowness); past it: Unsettled, with the last answer."""
    client = await nats.connect(url, connect_timeout=2)

    async def info() -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(
            (await client.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=bound("calm-op"))).data
        )
        return answer

    try:
        what = "STREAM.INFO to answer with the stream's state"
        answer = await until(info, lambda a: "state" in a, what=what, stall="recovery", ceiling="recovery", every=0.5)
        return int(answer["state"]["messages"])
    finally:
        await client.close()


def test_a_three_node_cluster_is_ready_in_seconds(endpoint: Endpoint) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    assert cluster.size == 3
    assert endpoint.options["replicas"] == 3
    assert endpoint.options["start_seconds"] < 15  # the goal is 5 s; shared CI machines are slower
    assert cluster.leader() in {0, 1, 2}
    assert asyncio.run(publish_through(node_urls(endpoint)[0], b"hello"))


def test_an_isolated_node_loses_its_quorum_and_the_majority_keeps_it(endpoint: Endpoint) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    urls = node_urls(endpoint)
    leader = cluster.leader()
    alone = next(n for n in range(3) if n != leader)  # a follower: the majority keeps its leader
    cluster.partition([[alone], [n for n in range(3) if n != alone]])
    try:
        assert not asyncio.run(publish_through(urls[alone], b"from the minority"))
        majority = next(n for n in range(3) if n != alone)
        assert asyncio.run(eventually_published(urls[majority], b"from the majority"))
    finally:
        cluster.restore()
    assert asyncio.run(eventually_published(urls[alone], b"healed"))


def test_a_killed_node_leaves_the_others_serving_and_comes_back(endpoint: Endpoint) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    urls = node_urls(endpoint)
    victim = 2
    cluster.kill_node(victim)
    try:
        assert not cluster.servers[victim].alive
        assert asyncio.run(eventually_published(urls[0], b"while one is down"))
    finally:
        cluster.restore_node(victim)
    cluster.wait_settled()
    assert asyncio.run(eventually_published(urls[victim], b"back"))


def test_a_crash_of_every_node_keeps_acknowledged_writes(endpoint: Endpoint) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    urls = node_urls(endpoint)
    # Its own stream: under xdist this module's tests spread over workers, each with a cluster
    # of its own, so no earlier test may have made it ("stream not found").
    assert asyncio.run(eventually_published(urls[0], b"before"))
    before = asyncio.run(stored(urls[0]))
    assert asyncio.run(publish_through(urls[1], b"synced"))
    cluster.kill()
    cluster.start()  # its own waits are bounded and scaled: a start that does not settle raises
    assert before + 1 <= asyncio.run(stored(urls[2])) <= before + 1 + UNANSWERED["publishes"]


def test_every_node_runs_in_its_own_namespace(endpoint: Endpoint) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    for host, server in zip(cluster.network.hosts, cluster.servers, strict=True):
        assert server.pid is not None
        assert isinstance(host, Host)  # a namespace's host, not a loopback one
        inside = subprocess.run(["ip", "netns", "pids", host.namespace], capture_output=True, text=True).stdout.split()
        assert str(server.pid) in inside


@pytest.mark.parametrize("mode", ["bitflip", "truncate"])
def test_a_damaged_replica_never_costs_the_undamaged_majority_a_write(
    endpoint: Endpoint, mode: str, record_property: Callable[[str, object], None]
) -> None:
    """Jepsen's class 3 (nats-server #7549: bit flips in a minority's .blk files lost records
    from the middle of the stream): one non-leader node's blocks are damaged. The two undamaged
    nodes must keep every acknowledged message and no node may hold more than was written. The
    damaged node itself does not always get back what it lost (docs/findings.md: 1 of 56 and 3
    of 106 stayed missing for 90 s on a loaded machine): its shortfall is recorded, not failed."""
    cluster: Cluster = endpoint.options["cluster"]
    urls = node_urls(endpoint)
    for i in range(50):
        assert asyncio.run(eventually_published(urls[0], b"m%03d" % i))
    acked = asyncio.run(stored(urls[0]))
    carried = carried_gaps(cluster, acked)
    damaged = next(n for n in range(3) if n != cluster.leader())
    damage = cluster.corrupt(damaged, "*.blk", mode=mode, flips=10, seed=7)
    assert damage, "no message block was found to corrupt"
    cluster.wait_settled()
    record_property("damaged_replica_missing", shortfall_of_the_damaged(cluster, acked, damaged, damage, carried))


def counts_until_equal(cluster: Cluster, acked: int, within: float) -> list[tuple[float, dict[int, int | None]]]:
    """Each node's message count (None: the node does not report the stream), polled until every
    node holds the same count, at least ``acked``, or ``within`` seconds pass. A damaged follower
    first truncates what it cannot read and then catches up from the leader, which takes longer on
    a loaded machine: the verdict is on where it ends, and the trajectory (seconds, counts) goes in
    the failure message. The count may end above ``acked``: an unanswered publish stored late."""
    started = time.monotonic()
    seen: list[tuple[float, dict[int, int | None]]] = []
    while True:
        counts = {n: messages_on(cluster, n) for n in range(cluster.size)}
        if not seen or counts != seen[-1][1]:
            seen.append((round(time.monotonic() - started, 1), counts))
        (agreed, *others) = set(counts.values())
        equal = not others and agreed is not None and agreed >= acked
        if equal or time.monotonic() - started > within:  # hand-rolled: the caller judges where it ends
            return seen
        time.sleep(0.5)


def carried_gaps(cluster: Cluster, acked: int) -> dict[int, int]:
    """What each replica misses before a test damages anything: the tests of this module share
    one cluster, and a replica an earlier test damaged may keep its gap (docs/findings.md)."""
    final = counts_until_equal(cluster, acked, within=10)[-1][1]
    return {n: acked - (count or 0) for n, count in final.items()}


def shortfall_of_the_damaged(
    cluster: Cluster, acked: int, damaged: int, context: object, carried: dict[int, int]
) -> int:
    """How many acknowledged messages the ``damaged`` node's replica still misses once the cluster
    has had 60 s to heal it, after checking what must hold whatever the damage: every other node
    has every acknowledged message (but the gap an earlier test's damage left it, ``carried``),
    and no node ever holds more than was written: ``acked`` (read after the test's writes) and
    every publish whose answer never came. The damaged replica itself may keep a gap
    (docs/findings.md: seen under load, never idle), which is a finding to record."""
    written = acked + UNANSWERED["publishes"]
    wanted = {n: acked - carried.get(n, 0) for n in range(cluster.size) if n != damaged}
    seen = counts_until_equal(cluster, acked, within=60)
    assert all(c is None or c <= written for _, counts in seen for c in counts.values()), (context, written, seen)
    final = seen[-1][1]
    assert all((final[n] or 0) >= count for n, count in wanted.items()), (context, carried, seen)
    return max(0, max(final[n] or 0 for n in wanted) - (final[damaged] or 0))


def messages_on(cluster: Cluster, node: int) -> int | None:
    """The messages of the test stream in ``node``'s own replica (its monitoring endpoint), or
    None when the node does not report the stream (not yet caught up, or missing it)."""
    from prism_testkit.backends.nats.cluster import monitor_jsz

    for account in (monitor_jsz(cluster.network.hosts[node].address) or {}).get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            if stream["name"] == STREAM:
                return int(stream["state"]["messages"])
    return None


def test_a_new_logs_first_appends_and_reads_are_answered(endpoint: Endpoint) -> None:
    """Six writers and a waiting reader of a log that does not exist yet. On an R3 stream a
    request sent while the stream is being created is never answered, and the reader's
    subscription to the log's subject hides the publishers' "no responders": appends and reads
    waited out their timeouts (ConnectionLost) until the driver created each stream once and
    asked reads again (docs/findings.md)."""
    from prism_testkit.backends.nats import CAPABILITIES
    from prism_testkit.backends.nats.driver import NatsDriver
    from prism_testkit.interfaces import Message

    async def scenario() -> tuple[int, int]:
        driver = await NatsDriver.connect("jetstream-r3", CAPABILITIES, endpoint)
        try:
            log, name, stop = driver.log(), f"fresh-{time.monotonic_ns()}", asyncio.Event()

            async def reader() -> int:
                seen = 0
                while not stop.is_set() or seen < 60:
                    seen += len(await log.read(name, seen, limit=7, wait=0.05))
                return seen

            async def writer(w: int) -> int:
                return len(
                    [await log.append(name, Message(b"w%d-%d" % (w, n), {"w": str(w)}, None)) for n in range(10)]
                )

            reading = asyncio.ensure_future(reader())
            await asyncio.sleep(0.05)
            written = sum(await asyncio.gather(*(writer(w) for w in range(6))))
            stop.set()
            return written, await asyncio.wait_for(reading, 30)
        finally:
            await driver.close()

    assert asyncio.run(scenario()) == (60, 60)


def nemesis_on(
    cluster: Cluster, loop: asyncio.AbstractEventLoop, backend: str = "jetstream-r3"
) -> tuple[Nemesis, FaultTarget]:
    """The nemesis of one example, on this module's cluster, without a combination around it:
    its environment only counts the faults (what a report row shows)."""
    nemesis = Nemesis.__new__(Nemesis)
    nemesis.env = SimpleNamespace(faults=Counter())  # type: ignore[assignment]
    nemesis.history = History()
    nemesis.run_on_loop = loop.run_until_complete
    nemesis.faulted = False
    nemesis.paused = set()
    nemesis.settles = []
    target = FaultTarget("backend", backend, cluster, True, False, None, cluster=cluster)
    nemesis.targets = {"backend": target}
    return nemesis, target


def digests(paths: list[Path]) -> dict[Path, str]:
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


@pytest.mark.parametrize("kind", list(FILE_KINDS))
def test_the_corrupt_rule_damages_a_followers_files_records_it_and_leaves_every_node_serving(
    endpoint: Endpoint,
    loop: asyncio.AbstractEventLoop,
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Callable[[str, object], None],
) -> None:
    """The nemesis's corruption, proved from outside: the files of the kind on the chosen node
    differ when it is started again, the op names a node other than the leader and what was
    done, the row's count says ``corrupt``, and the cluster ends with every node serving, the
    undamaged ones with every message (the damaged replica's gap, if any, is recorded)."""
    cluster: Cluster = endpoint.options["cluster"]
    urls = node_urls(endpoint)
    for i in range(20):
        assert asyncio.run(eventually_published(urls[0], b"c%03d" % i))
    acked = asyncio.run(stored(urls[0]))
    carried = carried_gaps(cluster, acked)
    pattern = FILE_KINDS[kind]
    before = {node: digests(cluster.files(node, pattern)) for node in range(cluster.size)}
    seen: dict[int, dict[Path, str]] = {}
    restore = cluster.restore_node

    def seeing_the_damage(node: int) -> None:
        seen.setdefault(node, digests([p for p in before[node] if p.exists()]))  # as the node finds them
        restore(node)

    monkeypatch.setattr(cluster, "restore_node", seeing_the_damage)
    nemesis, target = nemesis_on(cluster, loop)
    nemesis.corrupt(target, which=1, kind=kind, mode="bitflip", seed=3)

    (invoke, done) = [op for op in nemesis.history if op.process == "nemesis"]
    node = invoke.value["node"]
    assert node != invoke.value["leader"]
    assert invoke.f == "corrupt"
    assert done.value["damaged"], done
    assert done.value["outcome"] in ("restarted", "refused to start")
    assert nemesis.env.faults == {"corrupt": 1}
    assert list(seen) == [node]
    assert before[node], f"node {node} had no {pattern} file"
    intact = [str(path) for path, digest in before[node].items() if seen[node][path] == digest]
    assert not intact, (intact, done.value)
    print(kind, done.value["outcome"], len(done.value["damaged"]), "file(s)")

    assert all(server.alive for server in cluster.servers)
    cluster.wait_settled()
    record_property("damaged_replica_missing", shortfall_of_the_damaged(cluster, acked, node, done.value, carried))


def test_the_corrupt_rule_records_nothing_where_no_file_of_its_kind_exists(
    endpoint: Endpoint, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    pids = [server.pid for server in cluster.servers]
    monkeypatch.setitem(FILE_KINDS, "none", "*.no-such-kind")
    nemesis, target = nemesis_on(cluster, loop)
    nemesis.corrupt(target, which=0, kind="none", mode="truncate", seed=0)
    assert list(nemesis.history) == []
    assert not nemesis.env.faults
    assert not nemesis.faulted
    assert [server.pid for server in cluster.servers] == pids  # nobody was killed for nothing


def test_the_replica_check_reads_each_node_and_fails_while_a_follower_is_behind(
    endpoint: Endpoint, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-node check after an example: a follower cut off while the majority takes writes
    holds fewer of them in its own replica, so the check fails naming it (the stream leader's
    STREAM.INFO would have answered for every node); healed, it catches up and the check passes."""
    from prism_testkit.stateful import nemesis as nemesis_module

    cluster: Cluster = endpoint.options["cluster"]
    urls = node_urls(endpoint)
    nemesis, _ = nemesis_on(cluster, loop)
    assert asyncio.run(eventually_published(urls[0], b"before"))
    cluster.wait_settled()
    (before,) = nemesis.replica_verdicts()
    assert before.valid, before.explain()
    leader = cluster.leader()
    alone = next(n for n in range(3) if n != leader)
    majority = next(n for n in range(3) if n != alone)
    monkeypatch.setattr(nemesis_module, "REPLICAS_CONVERGE", 0.5)
    cluster.partition([[alone], [n for n in range(3) if n != alone]])
    try:
        for n in range(3):
            assert asyncio.run(eventually_published(urls[majority], b"apart %d" % n))
        (apart,) = nemesis.replica_verdicts()
    finally:
        cluster.restore()
    assert not apart.valid
    (found,) = apart.anomalies[nemesis_module.DIVERGED]
    copies = found.data["streams"][STREAM]
    assert copies[f"n{alone}"][1] < copies[f"n{majority}"][1], copies
    monkeypatch.setattr(nemesis_module, "REPLICAS_CONVERGE", 30.0)
    (healed,) = nemesis.replica_verdicts()
    assert healed.valid, healed.explain()


def test_slots_sharing_a_paused_cluster_take_no_fault_that_would_restart_a_node_of_it(
    endpoint: Endpoint, loop: asyncio.AbstractEventLoop
) -> None:
    """A combination may put one cluster in several slots (tiered storage's hot, cold and
    reference tiers): paused through one slot, the cluster is paused for every slot, so no
    other slot's kill restarts a node whose peers are stopped (it would wait for routes that
    never come), and a resume through any slot resumes it."""
    cluster: Cluster = endpoint.options["cluster"]
    nemesis, _ = nemesis_on(cluster, loop)
    hot, cold = (
        FaultTarget(slot, "jetstream-r3", cluster, True, True, None, cluster=cluster) for slot in ("hot", "cold")
    )
    nemesis.targets = {"hot": hot, "cold": cold}
    nemesis.pause(hot)
    try:
        assert nemesis.is_paused(cold)
        assert not nemesis.can_crash(cold)
        assert not nemesis.can_pause(cold)
        assert not nemesis.any(nemesis.can_crash)
    finally:
        nemesis.resume(cold)
    assert not cluster.paused
    assert nemesis.can_crash(hot)
    assert nemesis.can_crash(cold)
    assert asyncio.run(eventually_published(node_urls(endpoint)[0], b"resumed"))
