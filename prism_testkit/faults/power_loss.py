"""Power loss: kill a server, drop every write it did not fsync, start it again.

A power cut needs the instance's data dir on a lazy filesystem (:mod:`prism_testkit.faults.lazymount`),
which is opt-in per provisioned instance (``ProvisionContext.lazy_data_dir``), so normal runs
pay nothing. Two instances can have one:

* a backend's own instance, when ``PRISM_LAZYFS`` names it (``PRISM_LAZYFS=redis-aof,postgres``
  or ``all``): the stateful suites' nemesis may then cut its power;
* a *power-loss twin*: a second private instance that the power-loss suite provisions for
  itself (:meth:`PrismRuntime.power_loss_instance`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field

from prism_testkit.driver import Driver
from prism_testkit.errors import FaultUnavailable, NotSupported
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
    from prism_testkit.faults import lazymount

    found = lazymount.fuse_unavailable()
    return None if found is None else FaultUnavailable("power loss", backend, *found)


def power_cycle(backend: str, endpoint: Endpoint) -> dict[str, int]:
    """Kill the server (an embedded backend's driver must be closed already), discard every
    unsynced write, start it again. Blocking. Returns what the cut discarded."""
    mount = endpoint.lazy_mount
    if mount is None:
        raise NotSupported(backend, "power loss", "its data dir is not on a lazy filesystem")
    if endpoint.control is not None:
        endpoint.control.kill()
    report = mount.power_cut()
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

    async def cut_power(self) -> Driver:
        """Power-cycle the instance and reconnect; returns the new driver.

        A server dies first, its client is closed after: a goodbye first would give a server
        that fsyncs on a timer (Redis ``appendfsync everysec``) time to sync what it had
        acknowledged, and the cut would prove nothing (``redis_aof_fsyncs_every_second``
        escaped the suite in one of three runs here that way). An embedded backend's driver is
        the writer itself, so it is closed first, as a cut process would stop writing."""
        old, embedded = self.driver, self.endpoint.control is None
        if embedded:
            await _close_quietly(old)
        self.cuts.append(await asyncio.to_thread(power_cycle, self.spec.name, self.endpoint))
        if not embedded:
            await _close_quietly(old)
        self.driver = await self.spec.driver_class.connect(self.spec.name, self.spec.capabilities, self.endpoint)
        return self.driver


async def _close_quietly(driver: Driver) -> None:
    with contextlib.suppress(Exception):  # its server died (or is about to): closing may fail
        await asyncio.wait_for(driver.close(), CLOSE_BOUND)
