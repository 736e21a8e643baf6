"""A tiered storage process dying (or being overtaken) after its k-th write.

:class:`StepFault` counts the *mutations* a process sends (copy writes, copy removals,
reference puts, deletes and compare-and-sets) through wrapped tiers and a wrapped reference
store. At mutation ``k`` it either kills the process (that mutation and everything after it
never happen, as with :mod:`._relay_faults`) or first runs another client's operation, so a
test can put a racing write exactly between two steps of a migration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from prism_testkit.faults.interpose import Call, Interposed
from prism_testkit.interfaces import KeyValue
from prism_testkit.patterns.tiered_storage import Tier, TieredStorage

from ._doubles import Killed

__all__ = ["StepFault", "after_first_write", "faulty_store"]


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


class FaultyTier(Interposed[Tier]):
    def __init__(self, inner: Tier, fault: StepFault) -> None:
        mutation, alive = (lambda call: fault.mutation()), (lambda call: fault.check())
        super().__init__(
            inner,
            surface=Tier,
            before={"write": mutation, "remove": mutation, "read": alive, "names": alive},
        )
        self.fault = fault


class FaultyKeyValue(Interposed[KeyValue]):
    def __init__(self, inner: KeyValue, fault: StepFault) -> None:
        mutation, alive = (lambda call: fault.mutation()), (lambda call: fault.check())
        super().__init__(
            inner,
            surface=KeyValue,
            before={
                "get": alive,
                "exists": alive,
                "scan": alive,
                "put": mutation,
                "delete": mutation,
                "compare_and_set": mutation,
            },
        )
        self.fault = fault


def faulty_store(store: TieredStorage, fault: StepFault) -> TieredStorage:
    """The same tiers, reference store, config and clock, as a process subject to ``fault``."""
    tiers = {name: cast(Tier, FaultyTier(tier, fault)) for name, tier in store.tiers.items()}
    faulty = TieredStorage(
        tiers, cast(KeyValue, FaultyKeyValue(store.reference, fault)), store.config, clock=store.clock
    )
    faulty.metrics = store.metrics
    return faulty


class AfterWriteTier(Interposed[Tier]):
    """A tier that runs ``interleave`` once, right after its first copy write completes: in a
    put, between the copy write and the check that comes before the reference switch."""

    def __init__(self, inner: Tier, interleave: Callable[[], Awaitable[None]], fired: list[bool]) -> None:
        async def once(call: Call, result: object) -> None:
            if not fired:
                fired.append(True)
                await interleave()

        super().__init__(inner, surface=Tier, after={"write": once})
        self.interleave, self.fired = interleave, fired


def after_first_write(store: TieredStorage, interleave: Callable[[], Awaitable[None]]) -> TieredStorage:
    """The same store, running ``interleave`` once right after the first copy write of any tier."""
    fired: list[bool] = []
    tiers = {name: cast(Tier, AfterWriteTier(tier, interleave, fired)) for name, tier in store.tiers.items()}
    wrapped = TieredStorage(tiers, store.reference, store.config, clock=store.clock)
    wrapped.metrics = store.metrics
    return wrapped
