"""The harness at run time: process-wide state (here), and beside it

- :mod:`.env`: the per-test environment handed to suite tests (the ``prism_env`` fixture);
- :mod:`.interrupts`: Ctrl-C and SIGTERM stop a run in order within seconds;
- :mod:`.loop_shutdown`: the harness's event loop ends the way :func:`asyncio.run` ends its own.

:meth:`PrismRuntime.simulated` swaps in a simulated loop (:mod:`prism_testkit.simulation`) for one
example of a combination whose backends are all simulable.

Process-wide harness state: one event loop, provisioned endpoints and connected drivers.
Each pytest process (the controller or an xdist worker) has one :class:`PrismRuntime`.
Servers are started and drivers connected on first use, once per process, never once per
test or example; everything is stopped and removed in :meth:`PrismRuntime.close`.

May import: ``provision``, ``faults`` (the proxy and power loss it wires in), ``registry``,
``simulation``, ``driver``, ``isolation``, ``errors``, ``redaction``. Never ``stateful`` (the
env counts a checker's verdict by what it holds: the checkers sit above the runtime),
``report``, ``hunting``, ``options``, the plugin or the CLI (they use the runtime), a backend or
a pattern (backends arrive through the registry's entry points).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import prism_testkit.simulation.clock as clocks
from prism_testkit import patience
from prism_testkit.driver import Driver
from prism_testkit.errors import NotSupported, ProvisioningError
from prism_testkit.faults.lazyfs import StorageFault
from prism_testkit.faults.power_loss import (
    PowerLossInstance,
    lazy_by_environment,
    power_cycle,
    power_loss_unavailable,
)
from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.isolation import NamespaceFactory
from prism_testkit.provision.base import Availability, Endpoint, ProvisionContext, ServerControl, Via
from prism_testkit.provision.cluster import FailoverCluster
from prism_testkit.provision.netns import close_all as close_networks
from prism_testkit.provision.workdirs import make_workdir, record_processes_in, remove_tree, sweep_abandoned
from prism_testkit.redaction import redact
from prism_testkit.registry.backends import BackendRegistry, BackendSpec
from prism_testkit.runtime.interrupts import Interrupts
from prism_testkit.runtime.loop_shutdown import CANCEL_GRACE, close_loop

if TYPE_CHECKING:
    from prism_testkit.simulation.guard import Guard
    from prism_testkit.simulation.loop import SimulatedLoop

T = TypeVar("T")
# A server that accepts connections but never answers must cost one wait per run, not one per test.
DEFAULT_CONNECT_TIMEOUT = 20.0
RECONNECT_PAUSE = 0.1  # between a failed reconnect and the next: the server may still be starting


def connect_timeout() -> float:
    """Seconds one connect may take (``PRISM_CONNECT_TIMEOUT`` overrides the default)."""
    try:
        return float(os.environ.get("PRISM_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT)
    except ValueError:
        return DEFAULT_CONNECT_TIMEOUT


def url_from_environment(backend: str) -> str | None:
    return os.environ.get(f"PRISM_{backend.upper().replace('-', '_')}_URL") or None


async def reconnect(spec: BackendSpec, endpoint: Endpoint) -> Driver:
    """A client connected again after the harness's own restart, failover or heal: a recovering
    action, retried on errors for the ``recovery`` bound scaled by slowness. A client library's
    own connect timeout is not scaled (redis-py's 5 s): on a loaded machine one attempt can run
    out, and the heal's error then failed an example no fault had touched. Past the bound the
    last error is raised."""
    deadline = clocks.monotonic() + patience.bound("recovery")
    refused: Exception | None = None  # the last attempt's own error: what a reader needs most
    while True:
        left = deadline - clocks.monotonic()
        try:  # an attempt that hangs ends at the bound too
            return await asyncio.wait_for(spec.driver_class.connect(spec.name, spec.capabilities, endpoint), left)
        except TimeoutError as exc:
            if clocks.monotonic() < deadline:  # the client's own timeout: try again
                refused = exc
            elif refused is not None:
                raise refused from None
            else:
                raise ProvisioningError(
                    f"backend {spec.name!r}: a reconnect did not answer within {patience.describe('recovery')}"
                ) from None
        except Exception as exc:
            if clocks.monotonic() + RECONNECT_PAUSE >= deadline:
                raise
            refused = exc
        await asyncio.sleep(RECONNECT_PAUSE)


class PrismRuntime:
    def __init__(
        self,
        registry: BackendRegistry,
        selected: list[BackendSpec],
        urls: Mapping[str, str],
        namespaces: NamespaceFactory,
        extra: list[BackendSpec] | None = None,
        binaries: Mapping[str, Path] | None = None,
        interrupts: Interrupts | None = None,
    ) -> None:
        self.registry = registry
        self.selected = selected  # the backend expansion runs over these
        self.extra = [s for s in extra or [] if s not in selected]  # named by namespace files only
        self.urls = dict(urls)
        self.binaries = dict(binaries or {})  # --prism-binary NAME=PATH
        self.namespaces = namespaces
        self.interrupts = interrupts or Interrupts()  # the harness's, installed before its imports
        self.interrupts.install()
        self.sweep = sweep_abandoned()
        self.workdir = make_workdir(namespaces.run, namespaces.worker)
        record_processes_in(self.workdir)
        try:
            self.availability: dict[str, Availability] = {
                spec.name: self._probe(spec) for spec in [*selected, *self.extra]
            }
        except BaseException:  # a Ctrl-C while probing: nobody will close this runtime
            record_processes_in(None)
            remove_tree(self.workdir)
            self.interrupts.uninstall()
            raise
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoints: dict[str, Endpoint] = {}
        self._drivers: dict[str, Driver] = {}
        self._start_errors: dict[str, str] = {}
        self._connect_errors: dict[str, str] = {}  # remembered: one attempt per backend per run
        self._restart_errors: dict[str, str] = {}  # why a restart left a backend without a driver
        # name -> (driver through the proxy, the proxy, the endpoint that leads through it)
        self._proxied: dict[str, tuple[Driver, FaultProxy, Endpoint]] = {}
        # name -> the proxy's faults_injected when its driver connected: more means reconnect
        self._proxied_faults: dict[str, int] = {}
        # Names whose proxied driver a reconnect has closed and not yet replaced (the connect of
        # its successor failed): that driver is never handed out again, proxied() opens one first.
        self._proxied_closed: set[str] = set()
        self._own_proxies: list[FaultProxy] = []
        # name -> a second instance on a lazy filesystem (power cuts), or why it could not start
        self._power_loss: dict[str, PowerLossInstance] = {}
        self._power_loss_started: dict[str, int] = {}  # twins started per backend (a broken one is replaced)
        self._power_loss_errors: dict[str, str] = {}
        self._power_loss_refused: dict[str, NotSupported] = {}
        # Drivers replaced by a restart or a reconnect. Operations a test abandoned may still run
        # on them after their close, so they are closed again once the test is over.
        self._retired: list[Driver] = []
        # backend -> (the test that left it damaged, what is wrong): rebuilt before it serves
        # again (prism_testkit.stateful.health); the first reason given is kept
        self.damaged: dict[str, tuple[str, str]] = {}
        # backends a failed test ran on: proved healthy (or rebuilt) before they serve again
        self.suspect: set[str] = set()
        self.last_test: dict[str, str] = {}  # backend -> the test that used it last
        self.kills_checked: dict[str, int] = {}  # backend -> its cluster's kills when last proved healthy

    # --- selection -------------------------------------------------------------------------

    @property
    def available(self) -> list[BackendSpec]:
        return [s for s in self.selected if self.availability[s.name].available]

    @property
    def unavailable(self) -> dict[str, str]:
        return {n: a.detail for n, a in self.availability.items() if not a.available}

    def sweep_lines(self) -> list[str]:
        """What the start-up sweep could not prove it made (left alone), or could not remove."""
        lines = []
        if self.sweep.left_alone:
            names = ", ".join(p.name for p in self.sweep.left_alone)
            lines.append(f"prism-testkit left alone what it did not make in {self.sweep.left_alone[0].parent}: {names}")
        if self.sweep.stuck:
            names = ", ".join(str(p) for p in self.sweep.stuck)
            lines.append(f"prism-testkit did not enter these mounts inside dead runs' work dirs: {names}")
        return lines

    def _probe(self, spec: BackendSpec) -> Availability:
        # A missing client library is checked first: no server is worth starting without it.
        reason = spec.unavailable_reason()
        if reason is not None:
            return Availability.unavailable(reason)
        return spec.provisioner.probe(self._context(spec))

    def _context(self, spec: BackendSpec) -> ProvisionContext:
        return ProvisionContext(
            backend=spec.name,
            url=self.urls.get(spec.name) or url_from_environment(spec.name),
            workdir=self.workdir / spec.name,
            worker_id=self.namespaces.worker,
            run_id=self.namespaces.run,
            lazy_data_dir=lazy_by_environment(spec.name),
            binaries=self.binaries,
        )

    # --- the event loop --------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop

    @contextlib.contextmanager
    def simulated(
        self, names: list[str], watched: tuple[str, ...], seed: int = 0
    ) -> Iterator[tuple[SimulatedLoop, Guard]]:
        """Run what the block runs on a fresh simulated loop, with drivers of the backends
        ``names`` connected on it, and every clock of :mod:`prism_testkit.simulation.clock` on
        its virtual time; ``watched`` modules may not read real time or start threads (see
        :mod:`prism_testkit.simulation.guard`). The real loop and its drivers come back after."""
        from prism_testkit.simulation import clock, guard
        from prism_testkit.simulation.loop import SimulatedLoop

        for name in names:
            if not self.registry[name].simulable:
                raise ValueError(f"backend {name!r} does not declare itself simulable")
        saved_loop = self._loop
        saved = {name: self._drivers.pop(name) for name in names if name in self._drivers}
        loop = SimulatedLoop(seed)
        self._loop = loop
        try:
            with clock.simulating(loop), guard.watching(watched) as watch:
                try:
                    for name in names:  # now: async code (a drain) cannot connect one later
                        self.driver(name)
                    yield loop, watch
                finally:
                    for name in names:
                        driver = self._drivers.pop(name, None)
                        if driver is not None:
                            with contextlib.suppress(Exception):
                                self.run(driver.close())
                    close_loop(loop, grace=CANCEL_GRACE)
        finally:
            self._loop = saved_loop
            self._drivers.update(saved)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on this process's loop (drivers are bound to it).

        A Ctrl-C or SIGTERM meanwhile cancels it and is raised once it has ended (see
        :mod:`prism_testkit.runtime.interrupts`); after one, ``coro`` is cleanup and gets what is left
        of the cleanup budget."""
        loop = self.loop
        already_interrupted = self.interrupts.received is not None
        if already_interrupted:
            coro = asyncio.wait_for(coro, self.interrupts.remaining())
        task = loop.create_task(coro)
        with self.interrupts.watching(loop, task):
            try:
                result = loop.run_until_complete(task)
            except asyncio.CancelledError:
                self.interrupts.raise_received()
                raise
        if not already_interrupted:
            self.interrupts.raise_received()  # it came while the task ran, and the task swallowed it
        return result

    # --- backends --------------------------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        if name in self._start_errors:
            raise ProvisioningError(self._start_errors[name])
        if name not in self._endpoints:
            spec = self.registry[name]
            ctx = self._context(spec)
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            try:
                self._endpoints[name] = spec.provisioner.start(ctx)
            except Exception as exc:
                message = redact(f"backend {name!r} could not be started: {type(exc).__name__}: {exc}")
                self._start_errors[name] = message
                raise ProvisioningError(message) from exc
        return self._endpoints[name]

    def driver(self, name: str) -> Driver:
        """The connected driver of backend ``name``, provisioning it on first use. A backend
        that cannot be reached is unavailable for the rest of the run after one attempt."""
        if name in self._connect_errors:
            raise ProvisioningError(self._connect_errors[name])
        if name not in self._drivers and self._loop is not None and self._loop.is_running():
            # Called from async code (a test's cleanup) after a restart left no driver: the loop
            # cannot be re-entered to connect, so say why instead of leaking a never-awaited connect.
            why = self._restart_errors.get(name, "its last restart did not finish")
            raise ProvisioningError(redact(f"backend {name!r} is not connected: {why}"))
        if name not in self._drivers:
            spec = self.registry[name]
            driver_class = spec.driver_class  # imported before any server is started for it
            endpoint = self.endpoint(name)
            self._drivers[name] = self.run(self._connect(spec, driver_class, endpoint))
        return self._drivers[name]

    async def _connect(self, spec: BackendSpec, driver_class: type[Driver], endpoint: Endpoint) -> Driver:
        """Connect through the harness: bounded in time, the error redacted and raised without
        the client library's frames (their locals hold URLs with credentials), and remembered."""
        timeout = connect_timeout()
        try:
            return await asyncio.wait_for(driver_class.connect(spec.name, spec.capabilities, endpoint), timeout)
        except Exception as exc:
            detail = (
                f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            )
            message = redact(f"backend {spec.name!r} at {endpoint.url} could not be connected ({detail})")
        self._connect_errors[spec.name] = message
        raise ProvisioningError(message)  # outside the except block: no chained client frames

    def control(self, name: str) -> ServerControl | None:
        """Process control of ``name``'s server when the harness started it, else None."""
        return self.endpoint(name).control

    async def restart(
        self, name: str, *, kill: bool = True, power_cut: bool = False, fault: StorageFault | None = None
    ) -> Driver:
        """Restart ``name``'s server (SIGKILL, or an orderly stop) on the same port and data
        dir and reconnect; without process control (embedded, or given by URL) only reconnect.
        ``power_cut``: SIGKILL, then drop every unsynced write of its lazy data dir (the
        instance must run on one: ``PRISM_LAZYFS``), then start; ``fault`` says what else the cut
        leaves (a torn write, a non-prefix subset of the unsynced writes), its detail appended to
        the mount's ``faults``. An orderly stop that ran out of its grace and became a kill
        raises :class:`~prism_testkit.patience.Unsettled` once the server runs again: a test of
        an orderly restart must not judge a crash.
        Async because tests call it from inside the running loop; process control runs in a
        thread so other coroutines of the test keep going."""
        control = self.control(name)
        endpoint = self.endpoint(name)
        if power_cut and endpoint.lazy_mount is None:
            raise NotSupported(
                name, "power loss", f"its data dir is not on a lazy filesystem (set PRISM_LAZYFS={name})"
            )
        killed_instead = False
        driver = self._drivers.pop(name, None)
        if driver is not None:
            self._retired.append(driver)
            try:
                await driver.close()
            except Exception:
                if not kill:
                    raise  # an orderly stop must be able to close; a kill may find it gone
        try:
            if power_cut:
                await asyncio.to_thread(power_cycle, name, endpoint, fault)
            elif control is not None:
                await asyncio.to_thread(control.kill if kill else control.stop)
                killed_instead = not kill and control.stopped_in_order is False
                await asyncio.to_thread(control.start)
            spec = self.registry[name]
            self._drivers[name] = await reconnect(spec, self.endpoint(name))
        except Exception as exc:
            self._restart_errors[name] = redact(f"restart failed: {type(exc).__name__}: {exc}")
            raise
        self._restart_errors.pop(name, None)
        if name in self._proxied:
            # The proxied client's pooled connections died with the server too. It cannot be
            # reconnected now (its proxy may be partitioned); heal() does it once the proxy is.
            self._proxied_faults[name] = -1
        if killed_instead:
            # The server runs again, but what follows would judge a crash as an orderly stop.
            raise patience.Unsettled(
                f"{name}'s server to stop in order",
                patience.bound("calm-op"),
                "calm-op",
                detail="it was killed instead (SIGKILL after the grace), so no orderly restart happened",
            )
        return self._drivers[name]

    async def failover(self, name: str, *, isolate: bool = False, lagging: bool = False) -> Driver:
        """Lose the primary of ``name``'s cluster (SIGKILL, or ``isolate``: cut it off and
        leave it running) and let a replica be promoted, then restore the cluster (heal, the old
        primary back as a replica) and reconnect; returns the new driver. Until the reconnect
        the old driver stays open, so work in flight on it meets the failover as clients do.
        ``lagging``: the last replica is stopped first and through the promotion (a lagging
        standby); the restore resumes it, and it must follow the new primary."""
        control = self.control(name)
        if not isinstance(control, FailoverCluster):
            raise NotSupported(name, "failover", "its instance is not a primary with replicas the harness started")
        if lagging and not control.can_lag:
            raise NotSupported(name, "a lagging replica at the failover", "its cluster cannot hold a replica back")
        try:
            if lagging:
                await asyncio.to_thread(control.lag_node, control.replicas()[-1])
            await asyncio.to_thread(control.failover, isolate=isolate)
            await asyncio.to_thread(control.restore)
        finally:
            driver = self._drivers.pop(name, None)
            if driver is not None:
                self._retired.append(driver)
                with contextlib.suppress(Exception):  # its server may be the one that died
                    await driver.close()
        try:
            spec = self.registry[name]
            self._drivers[name] = await reconnect(spec, self.endpoint(name))
        except Exception as exc:
            self._restart_errors[name] = redact(f"reconnect after a failover failed: {type(exc).__name__}: {exc}")
            raise
        self._restart_errors.pop(name, None)
        return self._drivers[name]

    async def power_loss_instance(self, name: str) -> PowerLossInstance:
        """A second private instance of ``name`` whose data dir lies on a lazy filesystem, for
        power cuts; started on first use, stopped in :meth:`close`. Raises ProvisioningError
        (FUSE unavailable, the server does not start) or NotSupported (given by URL, or the
        provisioner has no data dir to mount); FaultUnavailable when this machine has no FUSE."""
        if (missing := power_loss_unavailable(name)) is not None:
            raise missing
        if name in self._power_loss_errors:
            raise ProvisioningError(self._power_loss_errors[name])
        if name in self._power_loss_refused:  # asked once per run: each ask may start a cluster
            raise self._power_loss_refused[name]
        stale = self._power_loss.get(name)
        if stale is not None and stale.broken is not None:
            # A twin a power cut left down serves no later test: each would report it "refused
            # to start" with nothing written. Its own test has the evidence; start a fresh one.
            del self._power_loss[name]
            await self._stop_power_loss_instance(name, stale)
        if name not in self._power_loss:
            spec = self.registry[name]
            started = self._power_loss_started[name] = self._power_loss_started.get(name, 0) + 1
            workdir = self.workdir / (f"{name}.power-loss" if started == 1 else f"{name}.power-loss-{started}")
            ctx = replace(self._context(spec), workdir=workdir, lazy_data_dir=True, cut_before_every_start=True)
            ctx.workdir.mkdir(parents=True, exist_ok=True)
            try:
                endpoint = await asyncio.to_thread(spec.provisioner.start, ctx)
            except NotSupported as exc:  # the provisioner knew before starting anything
                self._power_loss_refused[name] = exc
                raise
            except Exception as exc:
                message = redact(f"power-loss instance of {name!r} could not be started: {type(exc).__name__}: {exc}")
                self._power_loss_errors[name] = message
                raise ProvisioningError(message) from exc
            if endpoint.lazy_mount is None:
                await asyncio.to_thread(spec.provisioner.stop, endpoint)
                why = "it is given by URL" if endpoint.via is Via.URL else "its provisioner mounts no data dir"
                self._power_loss_refused[name] = NotSupported(name, "power loss", why)
                raise self._power_loss_refused[name]
            try:
                driver = await asyncio.wait_for(
                    spec.driver_class.connect(spec.name, spec.capabilities, endpoint), connect_timeout()
                )
            except BaseException:
                await asyncio.to_thread(spec.provisioner.stop, endpoint)
                raise
            self._power_loss[name] = PowerLossInstance(spec, endpoint, driver)
        return self._power_loss[name]

    async def _stop_power_loss_instance(self, name: str, instance: PowerLossInstance) -> None:
        with contextlib.suppress(Exception):  # a power-cut server may be gone
            await instance.driver.close()
        await asyncio.to_thread(self.registry[name].provisioner.stop, instance.endpoint)

    # --- network faults --------------------------------------------------------------------

    async def proxied(self, name: str) -> tuple[Driver, FaultProxy]:
        """A second driver of ``name`` whose traffic goes through a :class:`FaultProxy`, so a
        test can delay, reset or partition it. A provisioner whose server advertises its own
        address (Kafka) puts the proxy it advertises in ``endpoint.options["fault_proxy"]``
        and its URL already leads through it."""
        if name not in self._proxied:
            endpoint = self.endpoint(name)
            if endpoint.via is Via.EMBEDDED:
                raise NotSupported(name, "network faults", "an embedded backend has no network")
            proxy: FaultProxy | None = endpoint.options.get("fault_proxy")
            if proxy is None:
                proxy = await asyncio.to_thread(FaultProxy(*endpoint.address).start)
                self._own_proxies.append(proxy)
                endpoint = endpoint.rerouted(proxy.host, proxy.port)
            await self._connect_proxied(name, proxy, endpoint)
        elif name in self._proxied_closed:
            # The harness closed this driver to reconnect it and the reconnect failed: an
            # operation on it would fail as if the backend had lost its connection.
            _, proxy, rerouted = self._proxied[name]
            await self._connect_proxied(name, proxy, rerouted)
        driver, proxy, _ = self._proxied[name]
        return driver, proxy

    def heal(self, names: list[str]) -> None:
        """End every fault on ``names``: heal their proxies, resume or restart their servers.
        Runs after every test, also a failed one."""
        stopping = self.interrupts.received is not None
        for name in names:
            proxied = self._proxied.get(name)
            if proxied is not None:
                proxied[1].heal()
            endpoint = self._endpoints.get(name)
            if endpoint is not None and endpoint.control is not None:
                if stopping:
                    endpoint.control.resume()  # so its orderly stop is heard; no restart for a run that ends
                    continue
                endpoint.control.restore()
            if stopping:
                continue
            if proxied is not None and endpoint is not None and endpoint.direct is not None:
                # its proxy stands in front of the node serving the data, which may have moved
                before = proxied[1].upstream
                proxied[1].set_upstream(*endpoint.address)
                if proxied[1].upstream != before:
                    self._proxied_faults[name] = -1  # its connections lead to the old node
            if proxied is None:
                continue
            if name in self._proxied_closed:  # a reconnect closed its driver and failed: again
                self.run(self._connect_proxied(name, proxied[1], proxied[2]))
            elif self._proxied_state(name, proxied[1]) != self._proxied_faults.get(name):
                # Faults or a restart (of a cluster's node too) may have left its pooled connections broken.
                self.run(self._connect_proxied(name, proxied[1], proxied[2], old=proxied[0]))
        self._close_retired()  # the test is over: its abandoned operations have been settled

    def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for driver in retired:
            with contextlib.suppress(Exception):  # closed once already, maybe with its dead server
                self.run(driver.close())

    async def _connect_proxied(
        self, name: str, proxy: FaultProxy, rerouted: Endpoint, old: Driver | None = None
    ) -> Driver:
        if old is not None:
            self._retired.append(old)
            # Closed from here on, and still the entry of ``name`` until its successor connects:
            # should that fail, it must not serve the next test or example (see proxied()).
            self._proxied_closed.add(name)
            with contextlib.suppress(Exception):  # its connections may be dead already
                await old.close()
        spec = self.registry[name]
        faults = self._proxied_state(name, proxy)
        driver = await reconnect(spec, rerouted)
        self._proxied[name] = (driver, proxy, rerouted)
        self._proxied_faults[name] = faults
        self._proxied_closed.discard(name)
        return driver

    def _proxied_state(self, name: str, proxy: FaultProxy) -> int:
        """What has broken connections through ``proxy`` so far: its own faults, and the kills
        of the cluster behind it (the proxy closes a client's side when its node dies)."""
        endpoint = self._endpoints.get(name)
        cluster = endpoint.cluster if endpoint is not None else None
        return proxy.faults_injected + (cluster.kills if cluster is not None else 0)

    def mark_damaged(self, name: str, left_by: str, why: str) -> None:
        """Say that ``name`` cannot serve the next test as it is (a reproduced finding, copies
        that stay apart, a node that lost streams): it is rebuilt before it serves again."""
        self.damaged.setdefault(name, (left_by, why))

    def rebuild(self, name: str) -> None:
        """Stop ``name``'s servers and forget them with their work dir and clients, so the next
        :meth:`driver` provisions a fresh instance: one test, one cluster that no test damaged."""
        endpoint = self._endpoints.get(name)
        if endpoint is not None and endpoint.via not in (Via.BINARY, Via.CONTAINER):
            raise ProvisioningError(f"backend {name!r} is not the harness's to rebuild: it came by {endpoint.via}")
        proxied = self._proxied.pop(name, None)
        self._proxied_closed.discard(name)
        self._proxied_faults.pop(name, None)
        if proxied is not None:
            self._retired.append(proxied[0])
            if proxied[1] in self._own_proxies:
                self._own_proxies.remove(proxied[1])
                proxied[1].close()
        driver = self._drivers.pop(name, None)
        if driver is not None:
            self._retired.append(driver)
        self._close_retired()
        self.damaged.pop(name, None)
        self.suspect.discard(name)
        self.kills_checked.pop(name, None)
        if endpoint is not None:
            del self._endpoints[name]
            self.registry[name].provisioner.stop(endpoint)
        remove_tree(self.workdir / name)  # the damaged store must not be what the next one loads

    def disconnect(self, name: str) -> None:
        """Close the driver of ``name`` (the next :meth:`driver` call reconnects)."""
        driver = self._drivers.pop(name, None)
        if driver is not None:
            self.run(driver.close())

    def close(self) -> None:
        """Close every driver (proxied ones first, while their proxies still carry the goodbye),
        then the loop with whatever tasks the clients left on it, then proxies and servers."""
        self.interrupts.deferring = True  # a Ctrl-C now must not leave servers and the work dir behind
        errors: list[str] = []
        # After a Ctrl-C, clients get the cleanup budget to say goodbye; one that cannot is not
        # news, as its server is stopped next either way.
        client_errors: list[str] = errors if self.interrupts.received is None else []
        for name, (driver, _, _) in list(self._proxied.items()):
            if name in self._proxied_closed:
                continue  # closed by a reconnect that failed (and retired, closed again below)
            try:
                self.run(driver.close())
            except Exception as exc:
                client_errors.append(f"{name} (proxied): {exc}")
        self._proxied.clear()
        self._proxied_closed.clear()
        for name, instance in list(self._power_loss.items()):
            try:
                self.run(self._stop_power_loss_instance(name, instance))
            except Exception as exc:
                errors.append(f"{name} (power-loss instance): {exc}")
        self._power_loss.clear()
        for name in list(self._drivers):
            try:
                self.disconnect(name)
            except Exception as exc:  # keep stopping the rest
                client_errors.append(f"{name}: {exc}")
        self._close_retired()
        if self._loop is not None:
            grace = CANCEL_GRACE if self.interrupts.received is None else max(0.5, self.interrupts.remaining())
            client_errors += close_loop(self._loop, grace=grace)
        for proxy in self._own_proxies:
            proxy.close()
        self._own_proxies.clear()
        for name, endpoint in list(self._endpoints.items()):
            try:
                self.registry[name].provisioner.stop(endpoint)
            except Exception as exc:
                errors.append(f"{name}: {exc}")
        self._endpoints.clear()
        # A network a failed stop left up goes before its record does (with the work dir): a
        # SIGKILL between the two would leave namespaces and links no sweep could find.
        close_networks(recorded_in=self.workdir)
        record_processes_in(None)
        remove_tree(self.workdir)
        self.interrupts.uninstall()
        if errors:
            raise ProvisioningError(redact("errors while stopping backends: " + "; ".join(errors)))
