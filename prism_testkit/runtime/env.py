"""The per-test environment handed to suite tests through the ``prism_env`` fixture."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sized
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar

from prism_testkit.driver import Driver
from prism_testkit.faults.lazyfs import StorageFault
from prism_testkit.faults.power_loss import PowerLossInstance
from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.isolation import Namespace
from prism_testkit.provision.base import ServerControl
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.combinations import Combination
from prism_testkit.runtime import PrismRuntime


class CountedVerdict(Protocol):
    """What the report row counts of a checker's verdict
    (:class:`prism_testkit.stateful.checkers.Verdict`): the runtime sits below the checkers."""

    @property
    def checker(self) -> str: ...

    @property
    def anomalies(self) -> Mapping[str, Sized]: ...

    @property
    def tolerated(self) -> Mapping[str, Sized]: ...


V = TypeVar("V", bound=CountedVerdict)


class PrismEnv:
    """One combination of backends, one namespace, and cleanup of everything made in it."""

    def __init__(self, runtime: PrismRuntime, combination: Combination, namespace: Namespace) -> None:
        self.runtime = runtime
        self.combination = combination
        self.ns = namespace
        # anomaly name -> count, from every checker verdict of this test (forbidden, tolerated)
        self.anomalies: Counter[str] = Counter()
        self.tolerated: Counter[str] = Counter()
        self.verdicts: Counter[str] = Counter()  # checker -> verdicts given (valid or not): what was judged
        self.faults: Counter[str] = Counter()  # fault kind -> how often the nemesis injected it

    def record_verdict(self, verdict: V) -> V:
        """Count a checker's findings into this test's report row; returns the verdict."""
        self.anomalies.update({name: len(found) for name, found in verdict.anomalies.items()})
        self.tolerated.update({name: len(found) for name, found in verdict.tolerated.items()})
        self.verdicts[verdict.checker] += 1
        return verdict

    @property
    def namespace(self) -> str | None:
        """The namespace file's namespace this combination came from (None: backend expansion)."""
        return self.combination.namespace

    @property
    def pattern_config(self) -> object | None:
        """That namespace's configuration of the suite's pattern, for suites that use it."""
        config: object | None = self.combination.pattern_config
        return config

    def spec(self, slot: str) -> BackendSpec:
        return self.runtime.registry[self.combination[slot]]

    def driver(self, slot: str) -> Driver:
        return self.runtime.driver(self.combination[slot])

    __getitem__ = driver

    def control(self, slot: str) -> ServerControl | None:
        """Process control of the server in ``slot`` (None: embedded, or given by URL)."""
        return self.runtime.control(self.combination[slot])

    async def proxied(self, slot: str) -> tuple[Driver, FaultProxy]:
        """A driver for ``slot`` whose traffic passes through a fault proxy, and that proxy.
        Faults are healed after the test whatever its outcome."""
        return await self.runtime.proxied(self.combination[slot])

    async def restart(
        self, slot: str, *, kill: bool = True, power_cut: bool = False, fault: StorageFault | None = None
    ) -> Driver:
        """Kill (or stop) and restart the server in ``slot``, then reconnect; returns the new driver.
        ``power_cut`` also drops its unsynced writes (its instance must be on a lazy mount), but
        what ``fault`` keeps."""
        return await self.runtime.restart(self.combination[slot], kill=kill, power_cut=power_cut, fault=fault)

    async def failover(self, slot: str, *, isolate: bool = False, lagging: bool = False) -> Driver:
        """Fail over the cluster in ``slot`` (its primary killed, or ``isolate``: cut off; with a
        ``lagging`` replica held back through the promotion), restore it and reconnect; returns
        the new driver. Counted in the report row's faults."""
        driver = await self.runtime.failover(self.combination[slot], isolate=isolate, lagging=lagging)
        self.faults["failover-isolate" if isolate else "failover-lagging" if lagging else "failover"] += 1
        return driver

    async def power_loss_instance(self, slot: str) -> PowerLossInstance:
        """A private instance of ``slot``'s backend on a lazy filesystem, whose power can be cut."""
        return await self.runtime.power_loss_instance(self.combination[slot])

    @property
    def drivers(self) -> list[Driver]:
        """The distinct drivers of this combination (one backend may fill several slots)."""
        return [self.runtime.driver(name) for name in dict.fromkeys(self.combination.slots.values())]

    async def purge(self, ns: Namespace | None = None) -> None:
        prefix = (ns or self.ns).prefix
        for driver in self.drivers:
            await driver.purge(prefix)

    async def leftovers(self, ns: Namespace | None = None) -> dict[str, list[str]]:
        prefix = (ns or self.ns).prefix
        found = {d.name: await d.leftovers(prefix) for d in self.drivers}
        return {name: names for name, names in found.items() if names}

    @asynccontextmanager
    async def example(self) -> AsyncIterator[Namespace]:
        """A fresh namespace for one Hypothesis example, purged when the example ends."""
        child = self.ns.child()
        try:
            yield child
        finally:
            await self.purge(child)
