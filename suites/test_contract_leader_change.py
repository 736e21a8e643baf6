"""Writes across a leader change (#41 kind 2): operations issued exactly while a new leader is
being elected must succeed once it exists, never end in an error, and never as an unknown
outcome while the election ended within the bound a client waits for one.

Both tests run on clusters whose streams elect their own leaders (JetStream): the key-value
stream's leader node is killed, and at once a client issues overwrites, a compare-and-set and a
read of one key, new keys, a log append and read, and one more put every 0.2 s until the new
leader is seen. The client has written to each stream before the kill, so no operation waits
behind a stream's create (sent to a metadata leader that may have died with the stream's) and
each is issued at once. The nodes are watched (``stream_leaders``) for when they still name no living
leader: every operation issued at once must have been issued while they did, or the test proves
nothing and fails saying so (an election that outran the operations is not a pass). Between the
kill and the new leader the stream has no responder for a publish ("no responders") and drops
reads unanswered, so each of the driver's paths that waits a leader out is on the way of every
operation: removing one turns the operations into errors or unknown outcomes, which fail the
test. An election longer than the "stall" bound is a liveness verdict (UNSETTLED), not a pass.
The killed node is then restored and every acknowledged write must be read back.

``test_operations_issued_while_a_stream_elects_a_leader_succeed``: the client is connected to a
surviving node alone. Proves the publish "no responders" wait
(``tests/mutants/nats_publish_no_responders_not_retried``) and the unanswered read asked again
(``tests/mutants/nats_cluster_read_not_asked_again``).

``test_a_client_whose_node_is_killed_moves_to_a_survivor``: the client is given every node and
connected to the very node killed (the leader), so its connection closes under it during the
election: it must reconnect to a survivor and its operations succeed there. Proves the
reconnect (``tests/mutants/nats_client_does_not_reconnect``) besides the two paths above.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.provision.cluster import Cluster, FailoverCluster
from prism_testkit.simulation import clock

from ._helpers import client_of_node, client_on_node

pytestmark = prism_suite("leader_change", backend=Slot.one_of("keyvalue", "log"))

KEYS = 4  # new keys written concurrently during the election
PACE = 0.2  # seconds between the steady puts issued until a new leader is elected


async def _stream_of_key(prism_env: PrismEnv, cluster: Cluster, write: Callable[[], Awaitable[Any]]) -> str:
    """The one stream whose copies grew when ``write`` was acknowledged (where a key lives)."""
    assert cluster.stream_states is not None
    states = cluster.stream_states

    def last(found: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        for held in found.values():
            for stream, (_first, last_seq, _held) in (held or {}).items():
                out[stream] = max(out.get(stream, 0), last_seq)
        return out

    before = last(await asyncio.to_thread(states))
    await write()
    grown = await patience.until(
        lambda: asyncio.to_thread(states),
        lambda now: any(seq > before.get(stream, 0) for stream, seq in last(now).items()),
        what="replica: a node to report the stream the write went to",
    )
    streams = [stream for stream, seq in last(grown).items() if seq > before.get(stream, 0)]
    assert len(streams) == 1, f"one write grew {streams}: which stream holds the key is unclear"
    return streams[0]


async def test_operations_issued_while_a_stream_elects_a_leader_succeed(prism_env: PrismEnv) -> None:
    await _writes_across_a_leader_change(prism_env, on_the_killed_node=False)


async def test_a_client_whose_node_is_killed_moves_to_a_survivor(prism_env: PrismEnv) -> None:
    await _writes_across_a_leader_change(prism_env, on_the_killed_node=True)


async def _writes_across_a_leader_change(prism_env: PrismEnv, *, on_the_killed_node: bool) -> None:
    name = prism_env.combination["backend"]
    cluster = prism_env.control("backend")
    if not isinstance(cluster, Cluster) or isinstance(cluster, FailoverCluster):
        pytest.skip(f"{name}: not a cluster whose streams elect their own leaders")
    if cluster.stream_states is None or cluster.stream_leaders is None:
        pytest.skip(f"{name}: its nodes' copies and stream leaders cannot be read one by one")
    leaders = cluster.stream_leaders
    driver = prism_env.driver("backend")
    if not driver.supports(Capability.KEYVALUE_CAS):
        pytest.skip(f"{name}: no key-value compare-and-set to write through a leader change")
    log = driver.supports(Capability.LOG)
    ns = prism_env.ns
    key, stream = ns.name("k"), ns.name("log")
    # every node a current peer first: a stream created before that is refused ("no suitable
    # peers for placement, peer offline"), an error of the setup, not of the leader change
    await asyncio.to_thread(cluster.wait_settled)
    kv_stream = await _stream_of_key(prism_env, cluster, functools.partial(driver.keyvalue().put, key, b"v0"))
    await asyncio.to_thread(cluster.wait_settled)
    lost = (await asyncio.to_thread(leaders)).get(kv_stream)
    assert lost is not None, f"{name}: no node names a leader of {kv_stream}"
    near = next(n for n in range(cluster.size) if n != lost)
    test = "test_a_client_whose_node_is_killed" if on_the_killed_node else "test_operations_issued_while"
    replay = f"pytest suites/test_contract_leader_change.py --prism-backend={name} -k {test}"
    whose = f"the client's node n{lost}" if on_the_killed_node else f"n{lost}"
    connected = (
        client_on_node(prism_env, "backend", lost) if on_the_killed_node else client_of_node(prism_env, "backend", near)
    )
    async with connected as client:
        kv = client.keyvalue()
        # the client writes to each stream before the kill, so it knows them: a client that met a
        # stream first during the election would send its create first, which waits out a
        # metadata leader killed with the stream's, and issue its writes only after the election
        await kv.put(key, b"v0")
        if log:
            await client.log().append(stream, Message(b"before"))
        await asyncio.to_thread(cluster.wait_settled)
        still = (await asyncio.to_thread(leaders)).get(kv_stream)
        assert still == lost, f"{name}: the leader of {kv_stream} moved from n{lost} to n{still} with no fault"
        assert await kv.get(key) == b"v0"
        outcomes: dict[str, tuple[str, object]] = {}
        issued: dict[str, float] = {}  # when each operation was issued

        async def run(label: str, op: Callable[[], Awaitable[object]]) -> None:
            issued[label] = clock.monotonic()
            try:
                outcomes[label] = ("ok", await op())
            except Exception as exc:  # judged below: no error is acceptable here
                outcomes[label] = ("error", f"{type(exc).__name__}: {exc}"[:300])

        async def overwrite_then_cas() -> object:
            await kv.put(key, b"v1")
            swapped = await kv.compare_and_set(key, b"v1", b"v2")
            return swapped, await kv.get(key)

        leaderless_at = [-1.0]  # the latest moment the nodes were seen naming no living leader

        async def elected() -> float:
            async def look() -> dict[str, int]:
                asked = clock.monotonic()
                now = await asyncio.to_thread(leaders)
                if now.get(kv_stream) in (None, lost):
                    leaderless_at[0] = max(leaderless_at[0], asked)
                return now

            await patience.until(
                look,
                lambda now: now.get(kv_stream) not in (None, lost),
                what=f"leader: {kv_stream} to elect a leader once n{lost} was killed",
            )
            return clock.monotonic() - killed_at

        killed_at = clock.monotonic()
        await asyncio.to_thread(cluster.kill_node, lost)
        try:
            at_once: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                ("overwrite, compare_and_set, get", overwrite_then_cas),
                ("get", functools.partial(kv.get, key)),
            ]
            at_once += [(f"put new key {i}", functools.partial(kv.put, ns.name(f"n{i}"), b"x")) for i in range(KEYS)]
            if log:
                at_once.append(("log append", functools.partial(client.log().append, stream, Message(b"during"))))
                at_once.append(("log read", functools.partial(client.log().read, stream, 0)))
            ops = [run(label, op) for label, op in at_once]

            async def steady() -> int:
                # one more put every PACE, each in flight at once, until the leader is back: some
                # are issued after every node saw the leader go (answered "no responders"), whatever
                # the timing, even while an earlier one waits out an unanswered send
                started: list[asyncio.Future[None]] = []
                while not watch.done():
                    put = functools.partial(kv.put, ns.name(f"s{len(started)}"), b"s")
                    started.append(asyncio.ensure_future(run(f"steady put {len(started)}", put)))
                    await asyncio.sleep(PACE)
                await asyncio.gather(*started)
                return len(started)

            watch = asyncio.ensure_future(elected())
            ops.append(run("steady puts", steady))
            await asyncio.gather(watch, *ops)
            election = watch.result()
        finally:
            await asyncio.to_thread(cluster.restore_node, lost)
        # the situation was created, or the test proves nothing: every operation issued at once
        # was issued while the nodes still named no living leader of the stream
        late = {label: f"{issued[label] - killed_at:.2f}s" for label, _ in at_once if issued[label] > leaderless_at[0]}
        assert not late, (
            f"{name}: {kv_stream} was last seen without a living leader {leaderless_at[0] - killed_at:.2f}s after "
            f"n{lost} was killed, before these operations were issued (s after the kill): {late}; the election "
            f"outran them, so nothing was issued while it ran: not a pass\nreplay: {replay}"
        )
        failed = {label: outcome for label, outcome in outcomes.items() if outcome[0] != "ok"}
        if failed and election > patience.bound("stall"):  # longer than a client is promised to wait
            raise patience.Unsettled(f"leader: {kv_stream} to elect a leader", election, "stall", failed)
        assert not failed, (
            f"{name}: {whose}, leader of {kv_stream}, was killed; a new leader was elected within "
            f"{election:.1f}s, yet operations issued meanwhile did not succeed: {failed}\nreplay: {replay}"
        )
        assert outcomes["get"][1] in (b"v0", b"v1", b"v2"), f"{name}: a get during the election: {outcomes['get']}"
        if log:
            during = [bytes(r.message.payload) for r in outcomes["log read"][1]]  # type: ignore[attr-defined]
            assert during in ([b"before"], [b"before", b"during"]), f"{name}: a log read during the election: {during}"
        across = outcomes["overwrite, compare_and_set, get"][1]
        assert across == (True, b"v2"), f"{name}: across the election: (compare_and_set, then get) = {across}"
        for i in range(KEYS):
            assert await kv.get(ns.name(f"n{i}")) == b"x", f"{name}: new key {i} acknowledged, then not read back"
        steady_count = outcomes["steady puts"][1]
        assert isinstance(steady_count, int)
        for i in range(steady_count):
            assert await kv.get(ns.name(f"s{i}")) == b"s", f"{name}: steady put {i} acknowledged, then not read back"
        if log:
            records = [bytes(r.message.payload) for r in await client.log().read(stream, 0)]
            assert records == [b"before", b"during"], f"{name}: log across the election: {records}"
