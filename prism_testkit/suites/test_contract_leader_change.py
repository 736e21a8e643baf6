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

``test_operations_issued_while_a_node_knows_no_leader_succeed``: every node but the client's is
paused; once the client's node names no leader of the stream (it answers reads "temporarily
unavailable", 503) the operations are issued, the others stay paused ``HOLD`` seconds more (a
read is asked again meanwhile) and are resumed: the operations must succeed once a leader is
elected. Proves the read answered 503 asked again (``tests/mutants/nats_unavailable_read_not_retried``).

``test_a_read_outlasted_by_a_time_without_leader_ends_unknown``: the same pause, held until a get
and a log read have ended: each gives the value or an unknown outcome (ConnectionLost), never an
API error (the NATS driver raised the 503 it was still answered at its deadline).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import pytest

from prism_testkit import Capability, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import ConnectionLost
from prism_testkit.simulation import clock

from ._helpers import client_of_node, client_on_node, electing_cluster, replay_command
from ._stream_copies import stream_of

pytestmark = prism_suite("leader_change", backend=Slot.one_of("keyvalue", "log"))

KEYS = 4  # new keys written concurrently during the election
PACE = 0.2  # seconds between the steady puts issued until a new leader is elected


KILL, KILL_CLIENTS_NODE, PAUSE_OTHERS = "kill", "kill the client's node", "pause the others"
HOLD = 2.5  # seconds the others stay paused once the client's node names no leader (see the module doc)


async def test_operations_issued_while_a_stream_elects_a_leader_succeed(prism_env: PrismEnv) -> None:
    await _writes_across_a_leader_change(prism_env, KILL)


async def test_a_client_whose_node_is_killed_moves_to_a_survivor(prism_env: PrismEnv) -> None:
    await _writes_across_a_leader_change(prism_env, KILL_CLIENTS_NODE)


async def test_operations_issued_while_a_node_knows_no_leader_succeed(prism_env: PrismEnv) -> None:
    await _writes_across_a_leader_change(prism_env, PAUSE_OTHERS)


async def test_a_read_outlasted_by_a_time_without_leader_ends_unknown(prism_env: PrismEnv) -> None:
    """Every node but the client's is paused and stays paused until a get and a log read issued
    once the client's node names no leader have ended: each must give the value (impossible
    without a leader, so only a stale one could) or end as an unknown outcome (ConnectionLost),
    never as another error. The NATS driver asked a read answered "temporarily unavailable"
    (503) again until its deadline, then raised that answer as an API error."""
    name = prism_env.combination["backend"]
    cluster = electing_cluster(prism_env, what="a cluster whose streams elect their own leaders")
    leaders = cluster.stream_leaders
    assert leaders is not None
    ns, driver = prism_env.ns, prism_env.driver("backend")
    key, stream = ns.name("k"), ns.name("log")
    await asyncio.to_thread(cluster.wait_settled)
    kv_stream = await stream_of(cluster, functools.partial(driver.keyvalue().put, key, b"v0"), what="a put")
    await asyncio.to_thread(cluster.wait_settled)
    lost = (await asyncio.to_thread(leaders)).get(kv_stream)
    near = next(n for n in range(cluster.size) if n != lost)
    others = [n for n in range(cluster.size) if n != near]
    log = driver.supports(Capability.LOG)
    async with client_of_node(prism_env, "backend", near) as client:
        if log:
            await client.log().append(stream, Message(b"before"))
        await asyncio.to_thread(cluster.wait_settled)
        for node in others:
            await asyncio.to_thread(cluster.pause_node, node)
        try:
            await patience.until(
                lambda: asyncio.to_thread(leaders),
                lambda now: now.get(kv_stream) is None,
                what=f"leader: n{near} to name no leader of {kv_stream} once the others were paused",
            )
            reads = [("get", client.keyvalue().get(key))] + (
                [("log read", client.log().read(stream, 0))] if log else []
            )
            ceiling = patience.bound("settle-ceiling")
            try:
                ended = await asyncio.wait_for(
                    asyncio.gather(*(op for _, op in reads), return_exceptions=True), ceiling
                )
            except TimeoutError:
                raise patience.Unsettled(
                    "client: a get and a log read with no leader to end", ceiling, "settle-ceiling"
                ) from None
            after = (await asyncio.to_thread(leaders)).get(kv_stream)
        finally:
            for node in others:
                await asyncio.to_thread(cluster.restore_node, node)
    assert after is None, f"{name}: n{near} named n{after} the leader of {kv_stream} with the others paused"
    for (label, _), outcome in zip(reads, ended, strict=True):
        if isinstance(outcome, ConnectionLost):
            continue
        assert not isinstance(outcome, BaseException), (
            f"{name}: a {label} issued while n{near} named no leader of {kv_stream} (the others paused) ended in "
            f"{type(outcome).__name__}: {outcome}, neither a value nor an unknown outcome\n"
            f"replay: {replay_command(__name__, name, 'outlasted')}"
        )
        got = outcome if label == "get" else [bytes(r.message.payload) for r in outcome]  # type: ignore[union-attr]
        assert got in (b"v0", [b"before"]), f"{name}: a {label} with no leader read {got!r}"


async def _writes_across_a_leader_change(prism_env: PrismEnv, fault: str) -> None:
    name = prism_env.combination["backend"]
    cluster = electing_cluster(prism_env, what="a cluster whose streams elect their own leaders")
    leaders = cluster.stream_leaders
    assert leaders is not None
    driver = prism_env.driver("backend")
    if not driver.supports(Capability.KEYVALUE_CAS):
        pytest.skip(f"{name}: no key-value compare-and-set to write through a leader change")
    log = driver.supports(Capability.LOG)
    ns = prism_env.ns
    key, stream = ns.name("k"), ns.name("log")
    # every node a current peer first: a stream created before that is refused ("no suitable
    # peers for placement, peer offline"), an error of the setup, not of the leader change
    await asyncio.to_thread(cluster.wait_settled)
    kv_stream = await stream_of(cluster, functools.partial(driver.keyvalue().put, key, b"v0"), what="a put")
    await asyncio.to_thread(cluster.wait_settled)
    lost = (await asyncio.to_thread(leaders)).get(kv_stream)
    assert lost is not None, f"{name}: no node names a leader of {kv_stream}"
    near = next(n for n in range(cluster.size) if n != lost)
    others = [n for n in range(cluster.size) if n != near]
    test = {KILL: "a_stream_elects", KILL_CLIENTS_NODE: "node_is_killed", PAUSE_OTHERS: "knows_no_leader"}[fault]
    replay = replay_command(__name__, name, test)
    what = {
        KILL: f"n{lost}, leader of {kv_stream}, was killed",
        KILL_CLIENTS_NODE: f"the client's node n{lost}, leader of {kv_stream}, was killed",
        PAUSE_OTHERS: f"every node but the client's n{near} was paused (n{lost} led {kv_stream}), then resumed",
    }[fault]
    connected = (
        client_on_node(prism_env, "backend", lost)
        if fault == KILL_CLIENTS_NODE
        else client_of_node(prism_env, "backend", near)
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
        resumed = asyncio.Event()  # PAUSE_OTHERS: the others run again

        async def look() -> dict[str, int]:
            asked = clock.monotonic()
            now = await asyncio.to_thread(leaders)
            if now.get(kv_stream) in (None, lost) and not resumed.is_set():
                leaderless_at[0] = max(leaderless_at[0], asked)
            return now

        def seen_after_issue() -> bool:
            labels = [label for label, _ in at_once]
            return all(label in issued for label in labels) and leaderless_at[0] > max(
                issued[label] for label in labels
            )

        async def elected() -> float:
            if fault == PAUSE_OTHERS:
                # the others stay paused while the client's node goes on naming no leader, long
                # enough for a read to be asked again there (a client asks about every second),
                # and until a look asked after every operation was issued saw no leader: under
                # load one look outlasted the hold, and the only look had been asked just before
                # the operations were issued, so the test could not say they met no leader
                while (
                    not seen_after_issue()
                    or clock.monotonic() - killed_at < HOLD  # hand-rolled: a hold, each look asserted
                ):
                    now = await look()
                    assert now.get(kv_stream) is None, f"{name}: n{now.get(kv_stream)} leads alone: {now}"
                    await asyncio.sleep(0.05)
                await asyncio.gather(*(asyncio.to_thread(cluster.restore_node, n) for n in others))
                resumed.set()
            await patience.until(
                look,
                lambda now: now.get(kv_stream) is not None and (resumed.is_set() or now.get(kv_stream) != lost),
                what=f"leader: {kv_stream} to elect a leader once {what.split(',')[0]}",
            )
            return clock.monotonic() - killed_at

        if fault == PAUSE_OTHERS:
            for node in others:
                await asyncio.to_thread(cluster.pause_node, node)
            await patience.until(  # the client's node names no leader: the ops are issued now
                lambda: asyncio.to_thread(leaders),
                lambda now: now.get(kv_stream) is None,
                what=f"leader: n{near} to name no leader of {kv_stream} once the others were paused",
            )
        else:
            await asyncio.to_thread(cluster.kill_node, lost)
        killed_at = clock.monotonic()  # the ops are issued from here
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
            for node in others if fault == PAUSE_OTHERS else [lost]:
                await asyncio.to_thread(cluster.restore_node, node)
        # the situation was created, or the test proves nothing: every operation issued at once
        # was issued while the nodes still named no living leader of the stream
        late = {label: f"{issued[label] - killed_at:.2f}s" for label, _ in at_once if issued[label] > leaderless_at[0]}
        assert not late, (
            f"{name}: {what}; {kv_stream} was last seen without a living leader {leaderless_at[0] - killed_at:.2f}s "
            f"after the fault, before these operations were issued (s after the fault): {late}; the election "
            f"outran them, so nothing was issued while it ran: not a pass\nreplay: {replay}"
        )
        failed = {label: outcome for label, outcome in outcomes.items() if outcome[0] != "ok"}
        if failed and election > patience.bound("stall"):  # longer than a client is promised to wait
            raise patience.Unsettled(f"leader: {kv_stream} to elect a leader", election, "stall", failed)
        assert not failed, (
            f"{name}: {what}; a new leader was elected within "
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
