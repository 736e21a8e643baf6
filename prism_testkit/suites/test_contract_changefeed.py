"""Contract of the ``changefeed`` interface: committed key-value changes under a prefix, whole
transactions in commit order, kept until confirmed (also across a kill of the server), and a
capture whose position was lost (a failover) refused with ``CaptureLost``, never restarted
from now in silence.

Undeclared backends are covered by ``test_contract_capabilities`` (NotSupported).
"""

from __future__ import annotations

import asyncio

import pytest

from prism_testkit import ChangeFeed, ChangeSet, KeyChange, PrismEnv, Slot, prism_suite
from prism_testkit.errors import CaptureLost, CaptureNotFound
from prism_testkit.interfaces import CaptureLoss
from prism_testkit.isolation import Namespace
from prism_testkit.provision.cluster import FailoverCluster

from ._doubles import Rollback
from ._helpers import check_purge

pytestmark = prism_suite("changefeed", backend=Slot.needs("changefeed", "keyvalue", "transactions"))

WAIT = 5.0  # bound for a read that waits for a commit (never reached when healthy)


def feed(prism_env: PrismEnv) -> ChangeFeed:
    return prism_env.driver("backend").changefeed()


async def read_all(f: ChangeFeed, capture: str, want: int) -> list[ChangeSet]:
    """Change sets until ``want`` have arrived (without confirming), then one more look."""
    sets = await f.read(capture, limit=1000, wait=WAIT)
    while len(sets) < want:
        more = await f.read(capture, limit=1000, wait=WAIT)
        if len(more) == len(sets):
            break
        sets = more
    return sets


def changes(sets: list[ChangeSet]) -> list[KeyChange]:
    return [c for s in sets for c in s.changes]


async def test_changes_arrive_whole_in_commit_order_with_before_images(prism_env: PrismEnv) -> None:
    driver, ns = prism_env.driver("backend"), prism_env.ns
    f, kv, tx = feed(prism_env), driver.keyvalue(), driver.transactions()
    capture, data = ns.name("capture"), ns.name("data/")
    a, b = data + "a", data + "b"
    await kv.put(a, b"before-capture")  # written before create: never delivered
    await f.create(capture, data)
    await kv.put(a, b"1")
    async with tx.transaction() as t:
        await t.put(a, b"2")
        await t.put(b, b"x")
    await kv.put(ns.name("elsewhere"), b"not captured")
    await kv.delete(b)
    sets = await read_all(f, capture, 3)
    assert [s.changes for s in sets] == [
        (KeyChange(a, b"before-capture", b"1"),),
        (KeyChange(a, b"1", b"2"), KeyChange(b, None, b"x")),
        (KeyChange(b, b"x", None),),
    ]
    positions = [s.position for s in sets]
    assert positions == sorted(set(positions)), "positions must grow strictly in commit order"
    assert len({s.txid for s in sets}) == 3
    assert all(s.commit_ts_ms > 0 for s in sets)


async def test_rolled_back_and_aborted_transactions_are_never_delivered(prism_env: PrismEnv) -> None:
    driver, ns = prism_env.driver("backend"), prism_env.ns
    f, kv, tx = feed(prism_env), driver.keyvalue(), driver.transactions()
    capture, data = ns.name("capture"), ns.name("data/")
    await f.create(capture, data)

    async def rolled_back() -> None:
        async with tx.transaction() as t:
            await t.put(data + "ghost", b"never")
            raise Rollback

    with pytest.raises(Rollback):
        await rolled_back()
    await kv.put(data + "real", b"yes")
    sets = await read_all(f, capture, 1)
    assert changes(sets) == [KeyChange(data + "real", None, b"yes")]


async def test_reads_repeat_until_confirmed(prism_env: PrismEnv) -> None:
    driver, ns = prism_env.driver("backend"), prism_env.ns
    f, kv = feed(prism_env), driver.keyvalue()
    capture, data = ns.name("capture"), ns.name("data/")
    await f.create(capture, data)
    for i in range(3):
        await kv.put(f"{data}{i}", str(i).encode())
    first = await read_all(f, capture, 3)
    assert len(first) == 3
    assert await f.read(capture, limit=1000) == first, "a read must not consume"
    one = await f.read(capture, limit=1)
    assert one == first[:1], "limit counts whole transactions, oldest first"
    await f.confirm(capture, first[0].position)
    assert await f.read(capture, limit=1000) == first[1:]
    await f.confirm(capture, first[0].position)  # lower than confirmed: ignored
    assert await f.read(capture, limit=1000) == first[1:]
    await f.confirm(capture, first[-1].position)
    assert await f.read(capture, limit=1000) == []
    await f.create(capture, data)  # idempotent: keeps the position
    assert await f.read(capture, limit=1000) == []


async def test_a_waiting_read_returns_a_later_commit(prism_env: PrismEnv) -> None:
    driver, ns = prism_env.driver("backend"), prism_env.ns
    f, kv = feed(prism_env), driver.keyvalue()
    capture, data = ns.name("capture"), ns.name("data/")
    await f.create(capture, data)
    assert await f.read(capture, wait=0.0) == []

    async def later() -> None:
        await asyncio.sleep(0.2)
        await kv.put(data + "k", b"v")

    writer = asyncio.ensure_future(later())
    sets = await f.read(capture, wait=WAIT)
    await writer
    assert changes(sets) == [KeyChange(data + "k", None, b"v")]


async def test_marks_are_ordered_with_changes_and_seen_only_by_their_capture(prism_env: PrismEnv) -> None:
    driver, ns = prism_env.driver("backend"), prism_env.ns
    f, kv = feed(prism_env), driver.keyvalue()
    mine, other, data = ns.name("mine"), ns.name("other"), ns.name("data/")
    await f.create(mine, data)
    await f.create(other, data)
    await kv.put(data + "1", b"a")
    await f.mark(mine, "low")
    await kv.put(data + "2", b"b")
    sets = await read_all(f, mine, 3)
    assert [(s.marks, [c.key for c in s.changes]) for s in sets] == [
        ((), [data + "1"]),
        (("low",), []),
        ((), [data + "2"]),
    ]
    assert all(not s.marks for s in await read_all(f, other, 2)), "a mark leaked to another capture"


async def test_two_captures_keep_their_own_positions(prism_env: PrismEnv) -> None:
    driver, ns = prism_env.driver("backend"), prism_env.ns
    f, kv = feed(prism_env), driver.keyvalue()
    wide, narrow = ns.name("wide"), ns.name("narrow")
    await f.create(wide, ns.name("d/"))
    await f.create(narrow, ns.name("d/x/"))
    await kv.put(ns.name("d/a"), b"1")
    await kv.put(ns.name("d/x/b"), b"2")
    wide_sets = await read_all(f, wide, 2)
    assert [c.key for c in changes(wide_sets)] == [ns.name("d/a"), ns.name("d/x/b")]
    await f.confirm(wide, wide_sets[-1].position)
    assert [c.key for c in changes(await read_all(f, narrow, 1))] == [ns.name("d/x/b")]


async def test_bad_input_is_refused_with_a_typed_error(prism_env: PrismEnv) -> None:
    f, ns = feed(prism_env), prism_env.ns
    capture = ns.name("capture")
    with pytest.raises(CaptureNotFound):
        await f.read(ns.name("missing"))
    with pytest.raises(CaptureNotFound):
        await f.confirm(ns.name("missing"), 1)
    with pytest.raises(CaptureNotFound):
        await f.mark(ns.name("missing"), "x")
    await f.drop(ns.name("missing"))  # idempotent
    await f.create(capture, ns.name("a/"))
    with pytest.raises(ValueError):
        await f.create(capture, ns.name("b/"))
    with pytest.raises(ValueError):
        await f.read(capture, limit=0)
    with pytest.raises(ValueError):
        await f.confirm(capture, -1)
    with pytest.raises(TypeError):
        await f.create(123, ns.name("a/"))  # type: ignore[arg-type]
    assert await f.captures(ns.prefix) == [capture]
    await f.drop(capture)
    assert await f.captures(ns.prefix) == []
    with pytest.raises(CaptureNotFound):
        await f.read(capture)


async def test_unconfirmed_changes_survive_a_kill_of_the_server(prism_env: PrismEnv) -> None:
    """The position and every unconfirmed change are durable: a replay, never a loss."""
    if prism_env.control("backend") is None:
        pytest.skip("no process control: embedded, or a server given by URL")
    ns = prism_env.ns
    driver = prism_env.driver("backend")
    capture, data = ns.name("capture"), ns.name("data/")
    await driver.changefeed().create(capture, data)
    for i in range(5):
        await driver.keyvalue().put(f"{data}{i}", str(i).encode())
    before = await read_all(driver.changefeed(), capture, 5)
    await driver.changefeed().confirm(capture, before[1].position)
    after = await prism_env.restart("backend")
    replayed = await read_all(after.changefeed(), capture, 3)
    assert changes(replayed)[-3:] == changes(before)[2:], "unconfirmed changes were lost in the crash"
    assert set(changes(replayed)) <= set(changes(before)), "a crash invented changes"


@pytest.mark.parametrize("remade", [False, True], ids=["gone", "remade"])
async def test_a_capture_that_lost_its_position_raises_capture_lost_until_dropped(
    prism_env: PrismEnv, remade: bool
) -> None:
    """What a PostgreSQL 15 promotion does to a capture: the row naming it is replicated, the
    slot is not (``lose_capture`` drops the slot and keeps the row; ``remade``: a failover
    manager then made a slot of the same name, from now). Every call must raise
    ``CaptureLost``, ``create`` included: making the slot again would start from now and skip
    the changes of the gap without a word. A drop, then a create, starts afresh."""
    driver, ns = prism_env.driver("backend"), prism_env.ns
    f, kv = feed(prism_env), driver.keyvalue()
    if not isinstance(f, CaptureLoss):
        pytest.skip(f"{driver.name}: a capture's position is stored with its data; nothing loses one alone")
    capture, data = ns.name("capture"), ns.name("data/")
    await f.create(capture, data)
    await kv.put(data + "confirmed", b"1")
    await f.confirm(capture, (await read_all(f, capture, 1))[-1].position)
    await kv.put(data + "unconfirmed", b"2")
    await kv.put(data + "in-the-gap", b"3")  # one of the changes a remade slot never sees
    await f.lose_capture(capture, remade=remade)
    with pytest.raises(CaptureLost) as lost:
        await f.read(capture, wait=0.1)
    assert lost.value.capture == capture
    with pytest.raises(CaptureLost):
        await f.confirm(capture, 1)
    with pytest.raises(CaptureLost):
        await f.mark(capture, "low")
    with pytest.raises(CaptureLost):
        await f.create(capture, data)  # the silent restart from now this guards against
    with pytest.raises(CaptureLost):
        await f.read(capture)  # still lost: the create above made nothing
    assert await f.captures(ns.prefix) == [capture], "a lost capture must stay listed (purge finds it)"
    await f.drop(capture)
    await f.create(capture, data)  # afresh, from now
    await kv.put(data + "after", b"4")
    assert changes(await read_all(f, capture, 1)) == [KeyChange(data + "after", None, b"4")]


async def test_a_capture_losing_its_position_while_a_read_waits_raises_capture_lost(prism_env: PrismEnv) -> None:
    f, ns = feed(prism_env), prism_env.ns
    if not isinstance(f, CaptureLoss):
        pytest.skip(f"{prism_env.driver('backend').name}: a capture's position is stored with its data")
    capture = ns.name("capture")
    await f.create(capture, ns.name("data/"))
    waiting = asyncio.ensure_future(f.read(capture, wait=WAIT))
    await asyncio.sleep(0.2)  # the read is polling (nothing to await: it returns only on data)
    await f.lose_capture(capture)
    with pytest.raises(CaptureLost):
        await asyncio.wait_for(waiting, WAIT * 2)


async def test_a_failover_loses_the_capture_and_every_call_says_so(prism_env: PrismEnv) -> None:
    """The real thing on a primary with standbys: PostgreSQL 15 promotes a standby that has the
    capture's row and no slot. No call may carry on from the new primary's present."""
    name = prism_env.combination["backend"]
    if not isinstance(prism_env.control("backend"), FailoverCluster):
        pytest.skip(f"{name}: no failover (not a primary with replicas the harness started)")
    driver, ns = prism_env.driver("backend"), prism_env.ns
    capture, data = ns.name("capture"), ns.name("data/")
    await driver.changefeed().create(capture, data)
    await driver.keyvalue().put(data + "confirmed", b"1")
    await driver.changefeed().confirm(capture, (await read_all(driver.changefeed(), capture, 1))[-1].position)
    await driver.keyvalue().put(data + "unconfirmed", b"2")
    after = await prism_env.failover("backend")
    f = after.changefeed()
    if prism_env.spec("backend").properties.survives_failover:  # asynchronous: it may be gone
        assert await after.keyvalue().get(data + "unconfirmed") == b"2", "the failover lost an acknowledged write"
    with pytest.raises(CaptureLost):
        await f.read(capture)
    with pytest.raises(CaptureLost):
        await f.create(capture, data)
    await f.drop(capture)


async def test_purge_drops_captures(prism_env: PrismEnv) -> None:
    driver = prism_env.driver("backend")

    async def create(ns: Namespace) -> list[str]:
        capture = ns.name("capture")
        await driver.changefeed().create(capture, ns.name("data/"))
        await driver.keyvalue().put(ns.name("data/k"), b"v")
        return [capture, ns.name("data/k")]

    await check_purge(prism_env, "backend", create)
