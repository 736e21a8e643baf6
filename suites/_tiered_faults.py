"""A tiered storage process dying (or being overtaken) after its k-th write.

:class:`StepFault` counts the *mutations* a process sends (copy writes, copy removals,
reference puts, deletes and compare-and-sets) through wrapped tiers and a wrapped reference
store. At mutation ``k`` it either kills the process (that mutation and everything after it
never happen, as with :mod:`._relay_faults`) or first runs another client's operation, so a
test can put a racing write exactly between two steps of a migration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from prism_testkit.patterns.tiered_storage import Tier, TieredStorage

from prism_testkit.interfaces import KeyValue

from ._relay_faults import Killed

__all__ = ["Killed", "StepFault", "after_first_write", "faulty_store"]


class StepFault:
    def __init__(self, at: int, interleave: Callable[[], Awaitable[None]] | None = None) -> None:
        self.at = at
        self.interleave = interleave
        self.count = 0
        self.dead = False
        self.fired = False

    def check(self) -> None:
        if self.dead:
            raise Killed

    async def mutation(self) -> None:
        """Called before every mutation: dies, or runs the interleaved operation, at ``at``."""
        self.check()
        if self.count == self.at and not self.fired:
            self.fired = True
            if self.interleave is None:
                self.dead = True
                raise Killed
            await self.interleave()
        self.count += 1


class FaultyTier:
    def __init__(self, inner: Tier, fault: StepFault) -> None:
        self.inner, self.fault = inner, fault

    async def prepare(self) -> None:
        await self.inner.prepare()

    async def write(self, name: str, value: bytes) -> None:
        await self.fault.mutation()
        await self.inner.write(name, value)

    async def read(self, name: str) -> bytes | None:
        self.fault.check()
        return await self.inner.read(name)

    async def remove(self, name: str) -> None:
        await self.fault.mutation()
        await self.inner.remove(name)

    def names(self, prefix: str) -> AsyncIterator[str]:
        self.fault.check()
        return self.inner.names(prefix)


class FaultyKeyValue:
    def __init__(self, inner: KeyValue, fault: StepFault) -> None:
        self.inner, self.fault = inner, fault

    async def get(self, key: str) -> bytes | None:
        self.fault.check()
        return await self.inner.get(key)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await self.fault.mutation()
        await self.inner.put(key, value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        await self.fault.mutation()
        return await self.inner.delete(key)

    async def exists(self, key: str) -> bool:
        self.fault.check()
        return await self.inner.exists(key)

    def scan(self, prefix: str) -> AsyncIterator[str]:
        self.fault.check()
        return self.inner.scan(prefix)

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        await self.fault.mutation()
        return await self.inner.compare_and_set(key, expected, new)


def faulty_store(store: TieredStorage, fault: StepFault) -> TieredStorage:
    """The same tiers, reference store, config and clock, as a process subject to ``fault``."""
    tiers: Mapping[str, Tier] = {name: FaultyTier(tier, fault) for name, tier in store.tiers.items()}
    faulty = TieredStorage(tiers, FaultyKeyValue(store.reference, fault), store.config, clock=store.clock)
    faulty.metrics = store.metrics
    return faulty


class AfterWriteTier:
    """A tier that runs ``interleave`` once, right after its first copy write completes: in a
    put, between the copy write and the check that comes before the reference switch."""

    def __init__(self, inner: Tier, interleave: Callable[[], Awaitable[None]], fired: list[bool]) -> None:
        self.inner, self.interleave, self.fired = inner, interleave, fired

    async def prepare(self) -> None:
        await self.inner.prepare()

    async def write(self, name: str, value: bytes) -> None:
        await self.inner.write(name, value)
        if not self.fired:
            self.fired.append(True)
            await self.interleave()

    async def read(self, name: str) -> bytes | None:
        return await self.inner.read(name)

    async def remove(self, name: str) -> None:
        await self.inner.remove(name)

    def names(self, prefix: str) -> AsyncIterator[str]:
        return self.inner.names(prefix)


def after_first_write(store: TieredStorage, interleave: Callable[[], Awaitable[None]]) -> TieredStorage:
    """The same store, running ``interleave`` once right after the first copy write of any tier."""
    fired: list[bool] = []
    tiers: Mapping[str, Tier] = {name: AfterWriteTier(tier, interleave, fired) for name, tier in store.tiers.items()}
    wrapped = TieredStorage(tiers, store.reference, store.config, clock=store.clock)
    wrapped.metrics = store.metrics
    return wrapped
