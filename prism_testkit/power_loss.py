"""Power loss: kill a server, drop every write it did not fsync, start it again.

A power cut needs the instance's data dir on a lazy filesystem (:mod:`prism_testkit.jepsen.lazymount`),
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
from prism_testkit.errors import NotSupported
from prism_testkit.provisioning import Endpoint
from prism_testkit.registry import BackendSpec

LAZYFS_ENV = "PRISM_LAZYFS"


def lazy_by_environment(backend: str) -> bool:
    """True when ``PRISM_LAZYFS`` asks for ``backend``'s own instance to run on a lazy mount."""
    names = {n.strip() for n in os.environ.get(LAZYFS_ENV, "").split(",") if n.strip()}
    return backend in names or "all" in names


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
        """Power-cycle the instance and reconnect; returns the new driver."""
        with contextlib.suppress(Exception):  # its server is about to die: closing may fail
            await self.driver.close()
        self.cuts.append(await asyncio.to_thread(power_cycle, self.spec.name, self.endpoint))
        self.driver = await self.spec.driver_class.connect(self.spec.name, self.spec.capabilities, self.endpoint)
        return self.driver
