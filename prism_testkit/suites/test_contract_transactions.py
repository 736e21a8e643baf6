"""Contract of the ``transactions`` interface: atomic multi-writes across the backend's
key-value and log. All writes become visible at commit, or none do."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from contextlib import suppress
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prism_testkit import (
    Capability,
    KeyValue,
    Log,
    Message,
    PrismEnv,
    Record,
    Slot,
    Transactions,
    patience,
    prism_suite,
)
from prism_testkit.errors import NotSupported
from prism_testkit.interfaces import NumberingTransaction
from prism_testkit.isolation import Namespace

from ._doubles import Rollback
from ._helpers import check_purge, norms, payloads, prism_settings, read_all

pytestmark = prism_suite("transactions", backend=Slot.needs("transactions", "keyvalue", "log"))

READER_PATIENCE = 0.3  # on a quiet machine: how long a concurrent reader is given (reader_patience)


def reader_patience() -> float:
    """How long a concurrent reader or writer is given while a transaction is open (a locking
    backend makes it wait for the commit instead): :data:`READER_PATIENCE` x the machine's
    slowness now, plus load mode's longest stall (``patience.quiet``), so a loaded machine still
    lets it run beside the open transaction rather than checking the serialised case only."""
    return patience.quiet(READER_PATIENCE)


@dataclass
class Facets:
    tx: Transactions
    kv: KeyValue
    log: Log


def facets(prism_env: PrismEnv) -> Facets:
    driver = prism_env.driver("backend")
    return Facets(driver.transactions(), driver.keyvalue(), driver.log())


async def payloads_of(log: Log, name: str) -> list[bytes]:
    return [bytes(r.message.payload) for r in await read_all(log, name)]


async def test_commit_makes_every_write_visible(prism_env: PrismEnv) -> None:
    f, ns = facets(prism_env), prism_env.ns
    order, outbox, gone = ns.name("order"), ns.name("outbox"), ns.name("gone")
    await f.kv.put(gone, b"old")
    event = Message(b"order-created", {"type": "created"}, key="order-1")
    async with f.tx.transaction() as t:
        await t.put(order, b"row")
        await t.delete(gone)
        await t.append(outbox, event)
        await t.append(outbox, Message(b"second"))
    assert await f.kv.get(order) == b"row"
    assert await f.kv.exists(gone) is False
    records = await read_all(f.log, outbox)
    assert [r.offset for r in records] == [0, 1]
    assert norms(r.message for r in records) == norms([event, Message(b"second")])


async def test_exception_rolls_everything_back(prism_env: PrismEnv) -> None:
    f, ns = facets(prism_env), prism_env.ns
    kept, fresh, outbox = ns.name("kept"), ns.name("fresh"), ns.name("outbox")
    await f.kv.put(kept, b"original")
    await f.log.append(outbox, Message(b"before"))

    async def doomed() -> None:
        async with f.tx.transaction() as t:
            await t.put(fresh, b"never")
            await t.put(kept, b"changed")
            await t.append(outbox, Message(b"never"))
            await t.delete(kept)
            raise Rollback

    with pytest.raises(Rollback):  # the exception propagates out of the block
        await doomed()
    assert await f.kv.get(kept) == b"original"
    assert await f.kv.get(fresh) is None
    assert await f.kv.exists(fresh) is False
    assert await payloads_of(f.log, outbox) == [b"before"]
    assert await f.log.end_offset(outbox) == 1, "an aborted append used an offset"
    assert await f.log.append(outbox, Message(b"after")) == 1


async def test_reads_inside_see_own_writes(prism_env: PrismEnv) -> None:
    f, ns = facets(prism_env), prism_env.ns
    a, b, c = ns.name("a"), ns.name("b"), ns.name("c")
    await f.kv.put(b, b"committed")
    await f.kv.put(c, b"to delete")
    async with f.tx.transaction() as t:
        assert await t.get(a) is None
        assert await t.get(b) == b"committed", "a transaction must read committed values"
        await t.put(a, b"mine")
        assert await t.get(a) == b"mine"
        await t.put(a, b"mine again")
        assert await t.get(a) == b"mine again"
        await t.delete(c)
        assert await t.get(c) is None
        await t.put(c, b"")
        assert await t.get(c) == b""
    assert (await f.kv.get(a), await f.kv.get(b), await f.kv.get(c)) == (b"mine again", b"committed", b"")


async def test_uncommitted_writes_are_invisible_to_a_concurrent_reader(prism_env: PrismEnv) -> None:
    """A reader running while a transaction is open sees the state before it. (A backend may
    instead make the reader wait for the commit: then it sees the committed state.)"""
    f, ns = facets(prism_env), prism_env.ns
    key, new, outbox = ns.name("key"), ns.name("new"), ns.name("outbox")
    await f.kv.put(key, b"before")

    async def snapshot() -> tuple[bytes | None, bytes | None, int]:
        return await f.kv.get(key), await f.kv.get(new), len(await read_all(f.log, outbox))

    async with f.tx.transaction() as t:
        await t.put(key, b"after")
        await t.put(new, b"created")
        await t.append(outbox, Message(b"event"))
        reader = asyncio.ensure_future(snapshot())
        done, _ = await asyncio.wait({reader}, timeout=reader_patience())
        if done:
            assert reader.result() == (b"before", None, 0), "uncommitted writes were visible"
    seen = await asyncio.wait_for(reader, patience.bound("calm-op"))
    assert seen in {(b"before", None, 0), (b"after", b"created", 1)}, f"a torn read: {seen}"
    assert await snapshot() == (b"after", b"created", 1)


async def test_appends_get_offsets_in_commit_order(prism_env: PrismEnv) -> None:
    """Offsets are assigned at commit: a transaction that appends first but commits last gets
    the later offset. (If the backend serialises transactions, the first one commits first.)"""
    f, outbox = facets(prism_env), prism_env.ns.name("outbox")

    async def late_starter() -> None:
        async with f.tx.transaction() as t:
            await t.append(outbox, Message(b"second-start"))

    async with f.tx.transaction() as t:
        await t.append(outbox, Message(b"first-start"))
        other = asyncio.ensure_future(late_starter())
        done, _ = await asyncio.wait({other}, timeout=reader_patience())
        overtaken = bool(done)
        if overtaken:
            other.result()
    await asyncio.wait_for(other, patience.bound("calm-op"))
    expected = [b"second-start", b"first-start"] if overtaken else [b"first-start", b"second-start"]
    assert await payloads_of(f.log, outbox) == expected


async def test_plain_appends_and_transactions_share_offsets(prism_env: PrismEnv) -> None:
    f, outbox = facets(prism_env), prism_env.ns.name("outbox")
    assert await f.log.append(outbox, Message(b"plain-0")) == 0
    async with f.tx.transaction() as t:
        await t.append(outbox, Message(b"tx-1"))
        await t.append(outbox, Message(b"tx-2"))
    assert await f.log.append(outbox, Message(b"plain-3")) == 3
    assert await payloads_of(f.log, outbox) == [b"plain-0", b"tx-1", b"tx-2", b"plain-3"]
    assert await f.log.end_offset(outbox) == 4


async def test_empty_transaction_commits(prism_env: PrismEnv) -> None:
    f, key = facets(prism_env), prism_env.ns.name("key")
    async with f.tx.transaction():
        pass
    async with f.tx.transaction() as t:
        await t.put(key, b"v")
    assert await f.kv.get(key) == b"v"


# --- model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class Append:
    payload: bytes


@dataclass(frozen=True)
class Get:
    key: str


@dataclass(frozen=True)
class Tx:
    ops: list[Put | Delete | Append | Get]
    commit: bool


KEYS = st.sampled_from(["a", "b", "c"])
OP = st.one_of(
    st.builds(Put, key=KEYS, value=st.binary(max_size=8)),
    st.builds(Delete, key=KEYS),
    st.builds(Append, payload=payloads),
    st.builds(Get, key=KEYS),
)
TXS = st.lists(st.builds(Tx, ops=st.lists(OP, max_size=6), commit=st.booleans()), max_size=8)


@prism_settings
@given(txs=TXS)
async def test_model_committed_and_aborted_transactions(prism_env: PrismEnv, txs: list[Tx]) -> None:
    f = facets(prism_env)
    async with prism_env.example() as ns:
        outbox = ns.name("outbox")
        kv_model: dict[str, bytes] = {}
        log_model: list[bytes] = []
        for tx in txs:
            staged = dict(kv_model)
            appended: list[bytes] = []
            try:
                async with f.tx.transaction() as t:
                    for op in tx.ops:
                        if isinstance(op, Put):
                            await t.put(ns.name(op.key), op.value)
                            staged[op.key] = op.value
                        elif isinstance(op, Delete):
                            await t.delete(ns.name(op.key))
                            staged.pop(op.key, None)
                        elif isinstance(op, Append):
                            await t.append(outbox, Message(op.payload))
                            appended.append(op.payload)
                        else:
                            assert await t.get(ns.name(op.key)) == staged.get(op.key), op
                    if not tx.commit:
                        raise Rollback
            except Rollback:
                assert not tx.commit
            else:
                kv_model = staged
                log_model.extend(appended)
            for key in ["a", "b", "c"]:
                assert await f.kv.get(ns.name(key)) == kv_model.get(key), (key, tx)
            assert await payloads_of(f.log, outbox) == log_model, tx
        assert await f.log.end_offset(outbox) == len(log_model)


# --- cleanup -------------------------------------------------------------------------------


async def test_purge_removes_everything_in_the_namespace(prism_env: PrismEnv) -> None:
    f = facets(prism_env)

    async def create(ns: Namespace) -> Collection[str]:
        key, outbox = ns.name("row"), ns.name("outbox")
        async with f.tx.transaction() as t:
            await t.put(key, b"left behind")
            await t.append(outbox, Message(b"left behind"))
        return [key, outbox]

    await check_purge(prism_env, "backend", create)
    assert await f.kv.get(prism_env.ns.name("row")) is None
    assert await f.log.end_offset(prism_env.ns.name("outbox")) == 0


async def test_no_lost_update_between_two_read_modify_write_transactions(prism_env: PrismEnv) -> None:
    """Both read the counter, then both write read+1: the second to commit must abort or be
    serialised after the first; the counter never ends at 1 with both reported committed."""
    from prism_testkit.errors import TransactionAborted

    f, counter = facets(prism_env), prism_env.ns.name("counter")
    await f.kv.put(counter, b"0")
    both_read = asyncio.Barrier(2)
    outcomes: list[str] = []

    async def increment(delay: float) -> None:
        try:
            async with f.tx.transaction() as t:
                seen = int(await t.get(counter) or b"0")
                try:
                    async with asyncio.timeout(reader_patience()):
                        await both_read.wait()  # a backend that serialises never gets here twice
                except TimeoutError:
                    pass
                await asyncio.sleep(delay)
                await t.put(counter, str(seen + 1).encode())
            outcomes.append("committed")
        except TransactionAborted:
            outcomes.append("aborted")

    await asyncio.gather(increment(0.0), increment(0.05))
    final = int(await f.kv.get(counter) or b"0")
    committed = outcomes.count("committed")
    assert final == committed, (
        f"lost update: the counter is {final} where {committed} read-modify-write transactions committed "
        f"({outcomes}); serializable transactions never lose one"
    )
    assert "committed" in outcomes


async def test_a_read_only_transaction_never_sees_half_of_another(prism_env: PrismEnv) -> None:
    """Read skew (G-single): a transaction reads x, another writes x and y and commits, the
    first reads y. Serializable: it aborts, or it saw neither write (a locking backend makes the
    writer wait for it), never x before and y after. Its reads must be checked even though it
    writes nothing."""
    from prism_testkit.errors import TransactionAborted

    f, ns = facets(prism_env), prism_env.ns
    x, y = ns.name("x"), ns.name("y")
    await f.kv.put(x, b"before")
    await f.kv.put(y, b"before")

    async def write_both() -> None:
        async with f.tx.transaction() as t:
            await t.put(x, b"after")
            await t.put(y, b"after")

    seen: dict[str, bytes | None] = {}
    writer: asyncio.Future[None] | None = None
    try:
        async with f.tx.transaction() as t:
            seen["x"] = await t.get(x)
            writer = asyncio.ensure_future(write_both())
            await asyncio.wait({writer}, timeout=reader_patience())  # a locking backend makes it wait for us
            seen["y"] = await t.get(y)
        outcome = "committed"
    except TransactionAborted:
        outcome = "aborted"
    finally:
        if writer is not None:
            await asyncio.wait_for(writer, patience.bound("calm-op"))
    if outcome == "committed":
        assert seen["x"] == seen["y"], (
            f"read skew (G-single): a read-only transaction committed having read x = {seen['x']!r} and "
            f"y = {seen['y']!r}, while another transaction wrote both"
        )
    assert (await f.kv.get(x), await f.kv.get(y)) == (b"after", b"after")


# --- numbered appends (transactions.numbering) ----------------------------------------------

SEQ = "seq"  # the header the contract numbers


async def numbering(prism_env: PrismEnv) -> Facets:
    """The facets, when the backend declares ``transactions.numbering``. Undeclared, an
    ``append_numbered`` the transaction may still have must refuse and write nothing."""
    f = facets(prism_env)
    if prism_env.driver("backend").supports(Capability.TRANSACTIONS_NUMBERING):
        async with f.tx.transaction() as t:
            assert isinstance(t, NumberingTransaction), "transactions.numbering declared, but no append_numbered()"
        return f
    log = prism_env.ns.name("undeclared")
    with suppress(NotSupported):
        async with f.tx.transaction() as t:
            if not isinstance(t, NumberingTransaction):
                pytest.skip("transactions.numbering is not declared, and transactions cannot number")
            await t.append_numbered(log, Message(b"x"), counter=prism_env.ns.name("c"), header=SEQ)
        raise AssertionError("an undeclared append_numbered committed")
    assert await f.log.end_offset(log) == 0, "an undeclared append_numbered wrote a record"
    pytest.skip("transactions.numbering is not declared, and append_numbered refuses")


def numbers(records: Collection[Record]) -> list[str | None]:
    return [r.message.headers.get(SEQ) for r in records]


async def test_numbered_appends_count_from_one_per_counter_and_keep_the_message(prism_env: PrismEnv) -> None:
    f, ns = await numbering(prism_env), prism_env.ns
    log, first, second, row = ns.name("log"), ns.name("first"), ns.name("second"), ns.name("row")
    await f.kv.put(second, b"41")  # an existing counter goes on from its value
    async with f.tx.transaction() as t:
        assert isinstance(t, NumberingTransaction)
        await t.put(row, b"business")
        await t.append_numbered(log, Message(b"a", {"kept": "yes"}, key="agg-1"), counter=first, header=SEQ)
        await t.append(log, Message(b"plain"))
        await t.append_numbered(log, Message(b"b"), counter=first, header=SEQ)
        await t.append_numbered(log, Message(b"c"), counter=second, header=SEQ)
    async with f.tx.transaction() as t:
        assert isinstance(t, NumberingTransaction)
        await t.append_numbered(log, Message(b"d"), counter=first, header=SEQ)
    records = await read_all(f.log, log)
    assert numbers(records) == ["1", None, "2", "42", "3"]
    assert [bytes(r.message.payload) for r in records] == [b"a", b"plain", b"b", b"c", b"d"]
    assert records[0].message.headers.get("kept") == "yes"
    assert records[0].message.key == "agg-1"
    assert (await f.kv.get(first), await f.kv.get(second), await f.kv.get(row)) == (b"3", b"42", b"business")


async def test_concurrent_numbering_all_commit_numbered_in_commit_order(prism_env: PrismEnv) -> None:
    """No read to check, so no abort: every transaction commits, numbers follow offsets."""
    f, ns = await numbering(prism_env), prism_env.ns
    log, counter = ns.name("log"), ns.name("counter")
    writers = 8
    staged = asyncio.Barrier(writers)

    async def write(i: int) -> None:
        async with f.tx.transaction() as t:
            assert isinstance(t, NumberingTransaction)
            await t.append_numbered(log, Message(str(i).encode()), counter=counter, header=SEQ)
            await t.put(ns.name(f"row-{i}"), b"x")
            async with asyncio.timeout(reader_patience()):
                with suppress(TimeoutError):
                    await staged.wait()  # every writer holds its staged number before any commits

    await asyncio.gather(*(write(i) for i in range(writers)))
    records = await read_all(f.log, log)
    assert numbers(records) == [str(n) for n in range(1, writers + 1)]
    assert sorted(bytes(r.message.payload) for r in records) == sorted(str(i).encode() for i in range(writers))
    assert await f.kv.get(counter) == str(writers).encode()


async def test_a_rolled_back_numbering_uses_no_number(prism_env: PrismEnv) -> None:
    f, ns = await numbering(prism_env), prism_env.ns
    log, counter = ns.name("log"), ns.name("counter")

    async def rolled_back() -> None:
        async with f.tx.transaction() as t:
            assert isinstance(t, NumberingTransaction)
            await t.append_numbered(log, Message(b"gone"), counter=counter, header=SEQ)
            raise Rollback

    with pytest.raises(Rollback):
        await rolled_back()
    assert await f.kv.get(counter) is None
    assert await f.log.end_offset(log) == 0
    async with f.tx.transaction() as t:
        assert isinstance(t, NumberingTransaction)
        await t.append_numbered(log, Message(b"kept"), counter=counter, header=SEQ)
    assert numbers(await read_all(f.log, log)) == ["1"]


@pytest.mark.parametrize("first", ["get", "put", "delete", "numbered"])
async def test_a_counter_cannot_also_be_read_or_written_in_its_transaction(prism_env: PrismEnv, first: str) -> None:
    f, ns = await numbering(prism_env), prism_env.ns
    log, counter = ns.name("log"), ns.name("counter")

    async def touch(t: NumberingTransaction, how: str) -> None:
        if how == "get":
            await t.get(counter)  # type: ignore[attr-defined]
        elif how == "put":
            await t.put(counter, b"7")  # type: ignore[attr-defined]
        elif how == "delete":
            await t.delete(counter)  # type: ignore[attr-defined]
        else:
            await t.append_numbered(log, Message(b"n"), counter=counter, header=SEQ)

    async def both() -> None:
        async with f.tx.transaction() as t:
            assert isinstance(t, NumberingTransaction)
            await touch(t, first)
            await touch(t, "get" if first == "numbered" else "numbered")

    with pytest.raises(ValueError, match=r"numbers appends|cannot number appends"):
        await both()
    assert await f.kv.get(counter) is None, "a refused transaction wrote its counter"
    assert await f.log.end_offset(log) == 0, "a refused transaction appended"


@pytest.mark.parametrize("held", [b"abc", b"-1", b"1.5", b"", b"\xff"], ids=repr)
async def test_a_counter_holding_no_number_aborts_the_commit_and_applies_nothing(
    prism_env: PrismEnv, held: bytes
) -> None:
    from prism_testkit.errors import TransactionAborted

    f, ns = await numbering(prism_env), prism_env.ns
    log, counter, row = ns.name("log"), ns.name("counter"), ns.name("row")
    await f.kv.put(counter, held)

    async def numbered_from_it() -> None:
        async with f.tx.transaction() as t:
            assert isinstance(t, NumberingTransaction)
            await t.put(row, b"business")
            await t.append(log, Message(b"plain"))
            await t.append_numbered(log, Message(b"n"), counter=counter, header=SEQ)

    with pytest.raises(TransactionAborted, match="holds no decimal number"):
        await numbered_from_it()
    assert await f.kv.get(row) is None
    assert await f.log.end_offset(log) == 0
    assert await f.kv.get(counter) == held


async def test_an_expired_counter_starts_again_from_one(prism_env: PrismEnv) -> None:
    f, ns = await numbering(prism_env), prism_env.ns
    if not prism_env.driver("backend").supports(Capability.KEYVALUE_TTL):
        pytest.skip("needs keyvalue.ttl to let a counter expire")
    log, counter = ns.name("log"), ns.name("counter")
    await f.kv.put(counter, b"9", ttl=0.2)
    await asyncio.sleep(0.5)
    async with f.tx.transaction() as t:
        assert isinstance(t, NumberingTransaction)
        await t.append_numbered(log, Message(b"n"), counter=counter, header=SEQ)
    assert numbers(await read_all(f.log, log)) == ["1"]
    assert await f.kv.get(counter) == b"1"
