"""Power loss: kill a server, drop every write it did not fsync, start it again.

A power cut needs the instance's data dir on a lazy filesystem (:mod:`prism_testkit.provision.lazymount`),
which is opt-in per provisioned instance (``ProvisionContext.lazy_data_dir``), so normal runs
pay nothing. Two instances can have one:

* a backend's own instance, when ``PRISM_LAZYFS`` names it (``PRISM_LAZYFS=redis-aof,postgres``
  or ``all``): the stateful suites' nemesis may then cut its power;
* a *power-loss twin*: a second private instance that the power-loss suite provisions for
  itself (:meth:`PrismRuntime.power_loss_instance`).

A cut is clean (every unsynced write dropped) unless a :class:`~.lazyfs.StorageFault` says
otherwise: a torn write, a non-prefix subset of the unsynced writes, or a crash at a named call.
:func:`storage_faults` chooses one with Hypothesis, the clean cut first, so a failing example
shrinks towards the mildest fault that still breaks it; :data:`SUITE_FAULTS` are the fixed
examples the power-loss suite runs per backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from prism_testkit.driver import Driver
from prism_testkit.errors import FaultUnavailable, NotSupported
from prism_testkit.faults.lazyfs import CRASH_OPS, StorageFault
from prism_testkit.provision.base import Endpoint
from prism_testkit.registry.backends import BackendSpec

LAZYFS_ENV = "PRISM_LAZYFS"
CLOSE_BOUND = 10.0  # s: closing a client whose server died must not hold the test up


def lazy_by_environment(backend: str) -> bool:
    """True when ``PRISM_LAZYFS`` asks for ``backend``'s own instance to run on a lazy mount."""
    names = {n.strip() for n in os.environ.get(LAZYFS_ENV, "").split(",") if n.strip()}
    return backend in names or "all" in names


def power_loss_unavailable(backend: str) -> FaultUnavailable | None:
    """Why a power cut cannot be injected into ``backend`` here (no FUSE), or None when it can."""
    from prism_testkit.provision import lazymount

    found = lazymount.fuse_unavailable()
    return None if found is None else FaultUnavailable("power loss", backend, *found)


def storage_faults(
    seeds: st.SearchStrategy[int] | None = None, *, crash: bool = True
) -> st.SearchStrategy[StorageFault]:
    """A power cut's fault, the clean cut first so it shrinks towards it; torn kinds and crash
    points carry a seed (and the crash its call), so the example that fails replays.
    ``crash=False``: only what a cut decides at once (a crash point must be armed beforehand)."""
    seed = seeds if seeds is not None else st.integers(0, 2**32 - 1)
    at_the_cut = [
        st.just(StorageFault()),
        st.builds(StorageFault, kind=st.just("torn-op"), seed=seed, granularity=st.sampled_from(["byte", "page"])),
        st.builds(StorageFault, kind=st.just("torn-seq"), seed=seed),
    ]
    if not crash:
        return st.one_of(at_the_cut)
    return st.one_of(
        *at_the_cut,
        st.builds(
            StorageFault,
            kind=st.just("crash"),
            seed=seed,
            op=st.sampled_from(CRASH_OPS),
            when=st.sampled_from(["after", "before"]),
            nth=st.integers(1, 64),
            torn=st.sampled_from(["clean", "torn-op", "torn-seq"]),
        ),
    )


# The power-loss suite's fixed examples (one test each per backend): every kind once, the seed fixed
# so a row replays. The suite's workload is 61 acknowledged writes and each durable backend fsyncs
# about once per write (sqlite its WAL, postgres pg_wal, redis its AOF), so the crash points fall
# in its middle, with acknowledged writes before them to lose; one that never comes is a clean cut.
SUITE_FAULTS: dict[str, StorageFault] = {
    "clean": StorageFault(),
    "torn-op": StorageFault("torn-op", seed=1),
    "torn-op-page": StorageFault("torn-op", seed=2, granularity="page"),
    "torn-seq": StorageFault("torn-seq", seed=3),
    "crash-after-fsync": StorageFault("crash", seed=4, op="fsync", when="after", nth=30, torn="torn-seq"),
    "crash-before-fsync": StorageFault("crash", seed=5, op="fsync", when="before", nth=30, torn="torn-op"),
    "crash-after-write": StorageFault("crash", seed=6, op="write", when="after", nth=45, torn="torn-op"),
    "crash-before-write-page": StorageFault(
        "crash", seed=7, op="write", when="before", nth=45, torn="torn-op", granularity="page"
    ),
    # only a backend that renames and fsyncs directories while it runs reaches these (localfs)
    "crash-after-rename": StorageFault("crash", seed=8, op="rename", when="after", nth=8, torn="torn-op"),
    "crash-before-fsyncdir": StorageFault("crash", seed=9, op="fsyncdir", when="before", nth=8, torn="torn-seq"),
}


def power_cycle(backend: str, endpoint: Endpoint, fault: StorageFault | None = None) -> dict[str, int]:
    """Kill the server (an embedded backend's driver must be closed already), discard every
    unsynced write (but what ``fault`` keeps; default: an armed crash, else clean), start it
    again. Blocking. Returns what the cut discarded."""
    mount = endpoint.lazy_mount
    if mount is None:
        raise NotSupported(backend, "power loss", "its data dir is not on a lazy filesystem")
    if endpoint.control is not None:
        endpoint.control.kill()
    report = mount.power_cut(fault)
    if endpoint.control is not None:
        endpoint.control.start()
    return report


@dataclass
class PowerLossInstance:
    """A private instance of one backend on a lazy filesystem, with its own driver."""

    spec: BackendSpec
    endpoint: Endpoint
    driver: Driver
    cuts: list[dict[str, int]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)  # per cut: the fault and what it kept
    # Why it cannot serve another test (its server did not come back, or no client reconnects):
    # the runtime then starts a fresh twin, so one refusal is not every later test's.
    broken: str | None = None

    async def arm(self, fault: StorageFault) -> None:
        """Before the workload: a ``crash`` fault kills the machine at its call."""
        mount = self.endpoint.lazy_mount
        if mount is None:
            raise NotSupported(self.spec.name, "power loss", "its data dir is not on a lazy filesystem")
        await asyncio.to_thread(mount.arm, fault)

    async def write_back(self) -> dict[str, int]:
        """Every write so far made durable, as the kernel's writeback would a few seconds on:
        what was written before is established, so a later cut judges only what follows."""
        mount = self.endpoint.lazy_mount
        if mount is None:
            raise NotSupported(self.spec.name, "power loss", "its data dir is not on a lazy filesystem")
        return await asyncio.to_thread(mount.write_back)

    async def cut_power(self, fault: StorageFault | None = None) -> Driver:
        """Power-cycle the instance and reconnect; returns the new driver.

        A server dies first, its client is closed after: a goodbye first would give a server
        that fsyncs on a timer (Redis ``appendfsync everysec``) time to sync what it had
        acknowledged, and the cut would prove nothing (``redis_aof_fsyncs_every_second``
        escaped the suite in one of three runs here that way). An embedded backend's driver is
        the writer itself, so it is closed first, as a cut process would stop writing."""
        old, embedded = self.driver, self.endpoint.control is None
        if embedded:
            await _close_quietly(old)
        mount = self.endpoint.lazy_mount
        before = len(mount.faults) if mount is not None else 0
        try:
            self.cuts.append(await asyncio.to_thread(power_cycle, self.spec.name, self.endpoint, fault))
        except BaseException as exc:
            self.broken = f"the power cut left it down: {type(exc).__name__}"
            raise
        finally:  # a server that does not come back: what the cut did is the evidence
            cut = mount is not None and len(mount.faults) > before
            self.faults.append(mount.faults[-1] if mount is not None and cut else {})
        if not embedded:
            await _close_quietly(old)
        try:
            self.driver = await self.spec.driver_class.connect(self.spec.name, self.spec.capabilities, self.endpoint)
        except BaseException as exc:
            self.broken = f"no client reconnects after the power cut: {type(exc).__name__}"
            raise
        return self.driver


async def _close_quietly(driver: Driver) -> None:
    with contextlib.suppress(Exception):  # its server died (or is about to): closing may fail
        await asyncio.wait_for(driver.close(), CLOSE_BOUND)
