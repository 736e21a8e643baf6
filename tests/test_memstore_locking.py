"""memstore-locking, the lock-based registration (issue 68): statements wait for each other's
locks, a deadlock aborts one transaction from its statement, and no path leaves a lock held."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from prism_testkit.backends.memstore import ALL_CAPABILITIES, MemstoreLockingDriver, _locks, _Store
from prism_testkit.errors import TransactionAborted


def locking() -> MemstoreLockingDriver:
    return MemstoreLockingDriver("memstore-locking", ALL_CAPABILITIES, _Store())


def run(test: Callable[[MemstoreLockingDriver], Coroutine[Any, Any, None]]) -> None:
    driver = locking()
    asyncio.run(test(driver))
    table = _locks(driver.store)
    assert (table.shared, table.exclusive, table.waits_for) == ({}, {}, {}), "a lock outlived its transaction"


def test_a_plain_write_waits_for_the_reader_of_its_key() -> None:
    async def test(driver: MemstoreLockingDriver) -> None:
        kv, tx = driver.keyvalue(), driver.transactions()
        await kv.put("x", b"0")
        async with tx.transaction() as t:
            assert await t.get("x") == b"0"
            writer = asyncio.ensure_future(kv.put("x", b"1"))
            for _ in range(5):
                await asyncio.sleep(0)
            assert not writer.done(), "a plain write overwrote a key an open transaction had read"
            assert await t.get("x") == b"0"  # a repeatable read
        await asyncio.wait_for(writer, 5)
        assert await kv.get("x") == b"1"

    run(test)


def test_write_skew_deadlocks_and_one_side_aborts_at_its_statement() -> None:
    async def test(driver: MemstoreLockingDriver) -> None:
        tx, both_read = driver.transactions(), asyncio.Barrier(2)
        where: list[str] = []

        async def side(mine: str) -> str:
            try:
                async with tx.transaction() as t:
                    await t.get("x")
                    await t.get("y")
                    await both_read.wait()
                    where.append("put")
                    await t.put(mine, b"1")
                    where.append("done")
            except TransactionAborted:
                return "aborted"
            return "committed"

        outcomes = await asyncio.wait_for(asyncio.gather(side("x"), side("y")), 5)
        assert sorted(outcomes) == ["aborted", "committed"]
        assert where.count("done") == 1, "the victim was aborted at its commit, not at its statement"

    run(test)


def test_a_failed_block_leaves_no_lock_and_applies_nothing() -> None:
    async def test(driver: MemstoreLockingDriver) -> None:
        kv, tx = driver.keyvalue(), driver.transactions()

        async def failing() -> None:
            async with tx.transaction() as t:
                await t.put("x", b"staged")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await failing()
        assert await kv.get("x") is None
        await asyncio.wait_for(kv.put("x", b"after"), 5)  # would wait forever on a leaked lock
        assert await kv.get("x") == b"after"

    run(test)
