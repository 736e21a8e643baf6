"""Acceptance suite of the one lifecycle every long-running pattern process shares (issue #40,
deliverable 3): the outbox relay, the WAL applier, the tiered migrator, the CDC connector and a
projection (CQRS read models are projections), each on every backend that can hold it.

Written as an adversary of what ``start`` / ``health()`` / ``stop(within=)`` promise:

* **a graceful stop in the middle of a batch loses nothing and does not return early**: a batch
  is held in flight at its second item; the stop must wait for it (the batch in hand is
  finished and recorded), report nothing left, and a new instance over the same state must do
  every remaining item, each exactly once in all. Bugs caught: a stop that does not wait for
  the batch in flight, a drain that forgets the batch's last item (never done, or done and not
  recorded, so done twice), a restart that does not resume where the stop left.
* **a stop returns within its bound even when the backend hangs**: the backend stalls (a fault
  proxy holding every byte, for a backend with a network; the same as a seam in front of an
  embedded one) in the middle of a batch; ``stop(within=W)`` must return forced between W and
  W + ``force_timeout`` (plus the machine's slowness), naming the work it left, and, once the
  backend is healed, a new instance must finish everything, doing twice only what the report
  named. Bugs caught: a stop that ignores ``within`` (it would wait for the stalled backend
  forever), one that gives up before its bound, a forced stop that reports nothing left, or
  leaves work it does not name (lost or done twice).
* **health reports unhealthy when the backend is gone** (connections refused) **or hangs**
  (no answer within ``health_timeout``), and healthy again once healed.
* **a second stop is harmless** (a typed :class:`AlreadyStopped`, nothing changed) and a start
  after stop is refused on the stopped instance: **starting again** is a new instance over the
  same state, which resumes (above).

Each process's items are numbered in the order it takes them; the test holds the second one
(inside the first batch, batches of four) with a gate in front of the process's own work (the
relay's sink, the applier's transform, the connector's sink, the projection's handler, the
migrator's target tier).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol, TypedDict

import pytest

from prism_testkit import Capability, Driver, Message, PrismEnv, Slot, patience, prism_suite
from prism_testkit.errors import ConnectionLost, NotSupported
from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.isolation import Namespace
from prism_testkit.pattern_sdk.lifecycle import AlreadyStopped, BatchProcess, HealthStatus, LifecycleState, StopReport
from prism_testkit.patterns.cdc import CdcConfig, CdcConnector, EventSink, LogEventSink
from prism_testkit.patterns.cdc.events import decode as decode_change
from prism_testkit.patterns.event_sourcing import (
    EventSourcingConfig,
    EventStore,
    KeyValueViews,
    NewEvent,
    ProjectionRunner,
    RecordedEvent,
    TransactionalViews,
    ViewStore,
    ViewWriter,
)
from prism_testkit.patterns.outbox import HEADER_EVENT_ID, LogSink, Outbox, OutboxConfig, OutboxRelay, Sink
from prism_testkit.patterns.tiered_storage import KeyValueTier, Migrator, TieredStorage, TieredStorageConfig
from prism_testkit.patterns.wal import Mutation, WalApplier, WalConfig
from prism_testkit.simulation.clock import ManualClock

from ._tiered import START

N = 7  # items fed to every process: a batch of four, then the rest
BATCH = 4
HOLD_AT = 2  # the gate holds the second item: the batch is in the middle when the stop begins
WITHIN = 0.3  # the bound of the forced stops
FORCE = 0.3  # the processes' force_timeout: a stop returns within WITHIN + FORCE
HEALTH = 0.3  # the processes' health_timeout
NEVER = 3600.0  # graceful_timeout: a stop that ignores ``within`` waits this long


def calm() -> float:
    return patience.bound("calm-op")


# --- the backend's faults --------------------------------------------------------------------


class Switch:
    """An embedded backend's faults, as a seam in front of it: stalled, every call waits until
    healed (what a partition shows a client); gone, every call fails at once."""

    def __init__(self) -> None:
        self.gone = False
        self.healed = asyncio.Event()
        self.healed.set()

    async def enter(self) -> None:
        if self.gone:
            raise ConnectionLost("injected: the backend is gone")
        await self.healed.wait()
        if self.gone:
            raise ConnectionLost("injected: the backend is gone")


class Guarded:
    """``inner`` (a backend interface) with every call passing :class:`Switch` first; async
    context managers (transactions) and the objects they yield are guarded too."""

    def __init__(self, inner: object, switch: Switch) -> None:
        self._inner, self._switch = inner, switch

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        switch = self._switch

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                return _guarded_await(result, switch)
            if hasattr(result, "__aenter__"):
                return _GuardedContext(result, switch)
            if hasattr(result, "__aiter__"):
                return _guarded_iter(result, switch)
            return result

        return call


async def _guarded_await(awaitable: Awaitable[Any], switch: Switch) -> Any:
    try:
        await switch.enter()
    except BaseException:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started: no "never awaited" warning
        raise
    return await awaitable


async def _guarded_iter(iterator: Any, switch: Switch) -> Any:
    await switch.enter()
    async for item in iterator:
        yield item


class _GuardedContext:
    def __init__(self, inner: Any, switch: Switch) -> None:
        self.inner, self.switch = inner, switch

    async def __aenter__(self) -> Guarded:
        await self.switch.enter()
        return Guarded(await self.inner.__aenter__(), self.switch)

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            if exc[0] is None:
                await self.switch.enter()  # the commit waits for the backend too
        except BaseException as error:
            await self.inner.__aexit__(type(error), error, error.__traceback__)
            raise
        return await self.inner.__aexit__(*exc)


class Pausable(Protocol):
    """A server process the harness controls (``prism_env.control(slot)``)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...


class Outage:
    """The slot's backend as the process under test reaches it, and its faults: through a
    :class:`FaultProxy` where the backend has a network (stall: blackhole, gone: refuse), else
    through a :class:`Switch`; or, with ``pause``, the server process itself stopped (SIGSTOP)
    to stall it. Verification and restarted instances use the plain driver."""

    def __init__(self, prism_env: PrismEnv, slot: str) -> None:
        self.env, self.slot = prism_env, slot
        self.plain = prism_env.driver(slot)
        self.driver = self.plain
        self.proxy: FaultProxy | None = None
        self.switch = Switch()
        self.control: Pausable | None = None  # set: stall() pauses the server
        self.paused = False

    async def open(self, *, pause: bool = False) -> None:
        if pause:
            self.control = self.env.control(self.slot)
            if self.control is None:
                pytest.skip(f"{self.plain.name}: no server process to pause (embedded, or given by URL)")
            return
        try:
            self.driver, self.proxy = await self.env.proxied(self.slot)
        except NotSupported:
            self.driver, self.proxy = self.plain, None

    def wrap(self, interface: Any) -> Any:
        """One of :attr:`driver`'s interfaces as the faulted process uses it."""
        if self.proxy is not None or self.control is not None:
            return interface
        return Guarded(interface, self.switch)

    def stall(self) -> None:
        if self.control is not None:
            self.env.faults["pause"] += 1
            self.control.pause()
            self.paused = True
            return
        self.env.faults["stall"] += 1
        if self.proxy is not None:
            self.proxy.blackhole()
        else:
            self.switch.healed.clear()

    def gone(self) -> None:
        self.env.faults["gone"] += 1
        if self.proxy is not None:
            self.proxy.refuse()
        else:
            self.switch.gone = True

    def heal(self) -> None:
        if self.paused and self.control is not None:
            self.control.resume()
            self.paused = False
        if self.proxy is not None:
            self.proxy.heal()
        self.switch.gone = False
        self.switch.healed.set()


class Gate:
    """Holds the process's ``hold_at``-th item (1-based) until released."""

    def __init__(self) -> None:
        self.hold_at: int | None = None
        self.calls = 0
        self.held = asyncio.Event()
        self.release = asyncio.Event()

    async def through(self) -> None:
        self.calls += 1
        if self.calls == self.hold_at:
            self.held.set()
            await self.release.wait()


class GatedRelaySink:
    """An outbox relay's sink (``publish(message)``) whose every publish passes ``gate`` first."""

    def __init__(self, inner: Sink, gate: Gate) -> None:
        self.inner, self.gate = inner, gate

    async def publish(self, message: Message) -> None:
        await self.gate.through()
        await self.inner.publish(message)


class GatedEventSink:
    """A CDC connector's sink (``publish(topic, message)``) whose every publish passes ``gate`` first."""

    def __init__(self, inner: EventSink, gate: Gate) -> None:
        self.inner, self.gate = inner, gate

    async def publish(self, topic: str, message: Message) -> None:
        await self.gate.through()
        await self.inner.publish(topic, message)


# --- the processes under test ----------------------------------------------------------------


class Timeouts(TypedDict):
    """The lifecycle timeouts every process under test takes as keywords."""

    graceful_timeout: float
    force_timeout: float
    health_timeout: float


class ProcessUnderTest:
    """One process kind over one backend: feeds it numbered items, builds instances (faulted
    and gated, or plain), and reads what was done."""

    slot: ClassVar[str] = "backend"

    def __init__(self, prism_env: PrismEnv, ns: Namespace) -> None:
        self.env, self.ns = prism_env, ns
        self.outage = Outage(prism_env, self.slot)
        self.gate = Gate()
        self.items: list[str] = []
        self.pause = False  # the stall is a paused server instead of a proxy or seam

    @property
    def plain(self) -> Driver:
        return self.outage.plain

    def options(self) -> Timeouts:
        return {"graceful_timeout": NEVER, "force_timeout": FORCE, "health_timeout": HEALTH}

    async def setup(self) -> None:
        await self.outage.open(pause=self.pause)

    async def feed(self, n: int) -> list[str]:
        raise NotImplementedError

    def make(self, *, faulted: bool) -> BatchProcess:
        raise NotImplementedError

    async def caught_up(self, process: BatchProcess) -> bool:
        """Whether ``process`` has nothing left to do (read from the stores, not the process's memory)."""
        raise NotImplementedError

    async def done(self) -> Counter[str]:
        """How many times each item was done, as its effect shows."""
        raise NotImplementedError

    def named(self, left: Sequence[str]) -> set[str]:
        """The items a stop report's ``left`` names."""
        raise NotImplementedError

    async def allowed(self, left: Sequence[str]) -> set[str]:
        """The items a forced stop's report allows to be done twice: those it named."""
        return self.named(left)


def _numbers(pattern: str, left: Sequence[str]) -> set[int]:
    return {int(m.group(1)) for line in left if (m := re.search(pattern, line))}


class RelayUnderTest(ProcessUnderTest):
    """Outbox events in one transaction; the relay publishes them to a log of the same backend."""

    async def setup(self) -> None:
        await super().setup()
        self.config = OutboxConfig(log=self.ns.name("outbox"), batch_size=BATCH, poll_interval=patience.handed("poll"))
        self.destination = self.ns.name("published")

    async def feed(self, n: int) -> list[str]:
        outbox = Outbox(self.plain.transactions(), self.config)
        async with outbox.transaction() as tx:
            self.items = [await tx.publish("a", "Happened", f"e{i}".encode()) for i in range(n)]
        return self.items

    def make(self, *, faulted: bool) -> BatchProcess:
        driver = self.outage.driver if faulted else self.plain
        wrap = self.outage.wrap if faulted else (lambda x: x)
        sink: Sink = LogSink(wrap(driver.log()), self.destination)
        if faulted:
            sink = GatedRelaySink(sink, self.gate)
        return OutboxRelay(wrap(driver.log()), wrap(driver.keyvalue()), sink, self.config, "r1", **self.options())

    async def caught_up(self, process: BatchProcess) -> bool:
        assert isinstance(process, OutboxRelay)
        return await process.pending() == 0

    async def done(self) -> Counter[str]:
        records = await self.plain.log().read(self.destination, 0, limit=1000)
        return Counter(r.message.headers[HEADER_EVENT_ID] for r in records)

    def named(self, left: Sequence[str]) -> set[str]:
        return {self.items[o] for o in _numbers(r"record (\d+) of ", left)}


class ApplierUnderTest(ProcessUnderTest):
    """Puts of distinct keys appended to the WAL; the applier writes them to the backend's
    key-value (in its transactions where it has them). Done: the applier reported the apply
    committed, and the value is there."""

    async def setup(self) -> None:
        await super().setup()
        self.config = WalConfig(
            log=self.ns.name("wal"), batch_size=BATCH, batch_timeout=patience.handed("poll"), checkpoint_interval=0.0
        )
        self.applied: Counter[int] = Counter()

    async def feed(self, n: int) -> list[str]:
        log = self.plain.log()
        for i in range(n):
            await log.append(self.config.log, Mutation("put", self.ns.name(f"k{i}"), f"v{i}".encode()).message())
        self.items = [f"k{i}" for i in range(n)]
        return self.items

    def make(self, *, faulted: bool) -> BatchProcess:
        driver = self.outage.driver if faulted else self.plain
        wrap = self.outage.wrap if faulted else (lambda x: x)
        transactions = wrap(driver.transactions()) if driver.supports(Capability.TRANSACTIONS) else None

        async def transform(mutation: Mutation) -> Mutation:
            if faulted:
                await self.gate.through()
            return mutation

        def on_applied(offset: int, _: Mutation) -> None:
            self.applied[offset] += 1

        return WalApplier(
            wrap(driver.log()),
            wrap(driver.keyvalue()),
            self.config,
            transactions=transactions,
            transform=transform,
            on_applied=on_applied,
            **self.options(),
        )

    async def caught_up(self, process: BatchProcess) -> bool:
        assert isinstance(process, WalApplier)
        end = await self.plain.log().end_offset(self.config.log)
        return process.resolved is not None and process.resolved >= end

    async def done(self) -> Counter[str]:
        kv = self.plain.keyvalue()
        found: Counter[str] = Counter()
        for i, item in enumerate(self.items):
            if await kv.get(self.ns.name(item)) == f"v{i}".encode():
                found[item] = max(1, self.applied[i])
        return found

    def named(self, left: Sequence[str]) -> set[str]:
        return {self.items[o] for o in _numbers(r"mutation (\d+) of ", left)}


class ConnectorUnderTest(ProcessUnderTest):
    """Inserts of distinct keys captured by the change feed; the connector publishes them to a
    log of the same backend. Done: the insert's change event is in the log."""

    async def setup(self) -> None:
        await super().setup()
        self.config = CdcConfig(
            capture=self.ns.name("capture"),
            prefix=self.ns.name("data"),
            topic_prefix=self.ns.name("cdc"),
            state_key=self.ns.name("capture.snapshot"),
            snapshot="never",
            batch_size=BATCH,
            poll_interval=patience.handed("poll"),
        )
        plain = self.plain
        await CdcConnector(plain.changefeed(), plain.keyvalue(), LogEventSink(plain.log()), self.config).start()

    async def feed(self, n: int) -> list[str]:
        kv = self.plain.keyvalue()
        self.items = [f"{self.config.prefix}k{i}" for i in range(n)]
        for item in self.items:
            await kv.put(item, b"v")
        return self.items

    def make(self, *, faulted: bool) -> BatchProcess:
        driver = self.outage.driver if faulted else self.plain
        wrap = self.outage.wrap if faulted else (lambda x: x)
        sink: EventSink = LogEventSink(wrap(driver.log()))
        if faulted:
            sink = GatedEventSink(sink, self.gate)
        connector = CdcConnector(wrap(driver.changefeed()), wrap(driver.keyvalue()), sink, self.config)
        return connector.process(**self.options())

    async def caught_up(self, process: BatchProcess) -> bool:
        done = await self.done()
        return len(done) == len(self.items) and not await self._unconfirmed()

    async def _unconfirmed(self) -> bool:
        return bool(await self.plain.changefeed().read(self.config.capture, limit=1))

    async def _events(self) -> list[Any]:
        topic = f"{self.config.topic_prefix}.default"
        records = await self.plain.log().read(topic, 0, limit=1000)
        return [decode_change(r.message) for r in records]

    async def done(self) -> Counter[str]:
        return Counter(event.key for event in await self._events() if event.key in self.items)

    async def allowed(self, left: Sequence[str]) -> set[str]:
        positions = _numbers(r"change set at position (\d+) of ", left)
        return {event.key for event in await self._events() if event.position in positions}


class ProjectionUnderTest(ProcessUnderTest):
    """Events appended to an event store (one stream each); the projection counts each event in
    its views (transactional views where the backend has transactions, else stamped key-value
    views). Done: the event's count in the views."""

    async def setup(self) -> None:
        await super().setup()
        self.es_config = EventSourcingConfig(name=self.ns.name("es"), snapshot_interval=None)
        self.prefix = self.ns.name("views/")

    def store(self, driver: Driver, wrap: Callable[[Any], Any]) -> EventStore:
        return EventStore(wrap(driver.transactions()), wrap(driver.log()), wrap(driver.keyvalue()), self.es_config)

    def views(self, driver: Driver, wrap: Callable[[Any], Any]) -> ViewStore:
        return TransactionalViews(wrap(driver.transactions()), wrap(driver.keyvalue()), self.prefix)

    async def feed(self, n: int) -> list[str]:
        store = self.store(self.plain, lambda x: x)
        self.items = []
        for i in range(n):
            event_id = f"ev{i}"
            await store.append(f"s{i}", [NewEvent("Happened", {"i": i}, event_id=event_id)], 0)
            self.items.append(event_id)
        return self.items

    def make(self, *, faulted: bool) -> BatchProcess:
        driver = self.outage.driver if faulted else self.plain
        wrap = self.outage.wrap if faulted else (lambda x: x)

        async def count(writer: ViewWriter, event: RecordedEvent) -> None:
            if faulted:
                await self.gate.through()
            seen = await writer.get(event.event_id)
            await writer.put(event.event_id, (seen or 0) + 1)

        return ProjectionRunner(
            self.store(driver, wrap),
            self.views(driver, wrap),
            count,
            batch_size=BATCH,
            poll_interval=patience.handed("poll"),
            **self.options(),
        )

    async def caught_up(self, process: BatchProcess) -> bool:
        assert isinstance(process, ProjectionRunner)
        return (await process.lag()).events == 0

    async def done(self) -> Counter[str]:
        views = self.views(self.plain, lambda x: x)
        found: Counter[str] = Counter()
        for item in self.items:
            count = await views.get(item)
            if count:
                found[item] = int(count)
        return found

    def named(self, left: Sequence[str]) -> set[str]:
        return {self.items[o] for o in _numbers(r"event (\d+) of ", left)}


class KeyValueViewsProjectionUnderTest(ProjectionUnderTest):
    """The same projection into stamped key-value views (no transactions needed)."""

    def views(self, driver: Driver, wrap: Callable[[Any], Any]) -> ViewStore:
        return KeyValueViews(wrap(driver.keyvalue()), self.prefix)


class MigratorUnderTest(ProcessUnderTest):
    """Values put in the hot tier whose ttl ran out (the store's clock moved a day); the
    migrator moves them to warm (both tiers on the backend's key-value). Done: the value is
    read back from warm."""

    async def setup(self) -> None:
        await super().setup()
        self.clock = ManualClock(START)
        self.config = TieredStorageConfig.model_validate(
            {
                "tiers": {"hot": {"ttl": 60}, "warm": {}},
                "rules": [],
                "reference_prefix": self.ns.prefix + "ref/",
                "data_prefix": self.ns.prefix + "data/",
                "migration_batch": BATCH,
            }
        )

    def store(self, driver: Driver, wrap: Callable[[Any], Any], *, gated: bool = False) -> TieredStorage:
        warm = KeyValueTier(wrap(driver.keyvalue()))
        if gated:
            gate = self.gate
            write = warm.write

            async def gated_write(name: str, value: bytes) -> None:
                await gate.through()
                await write(name, value)

            warm.write = gated_write  # type: ignore[method-assign]
        tiers = {"hot": KeyValueTier(wrap(driver.keyvalue())), "warm": warm}
        return TieredStorage(tiers, wrap(driver.keyvalue()), self.config, clock=self.clock)

    async def feed(self, n: int) -> list[str]:
        store = self.store(self.plain, lambda x: x)
        self.items = [f"k{i}" for i in range(n)]
        for i, item in enumerate(self.items):
            await store.put(item, f"v{i}".encode())
        self.clock.advance(86400.0)
        return self.items

    def make(self, *, faulted: bool) -> BatchProcess:
        driver = self.outage.driver if faulted else self.plain
        wrap = self.outage.wrap if faulted else (lambda x: x)
        return Migrator(self.store(driver, wrap, gated=faulted), interval=patience.handed("poll"), **self.options())

    async def caught_up(self, process: BatchProcess) -> bool:
        assert isinstance(process, Migrator)
        return not await Migrator(self.store(self.plain, lambda x: x)).plan()

    async def done(self) -> Counter[str]:
        store = self.store(self.plain, lambda x: x)
        found: Counter[str] = Counter()
        for i, item in enumerate(self.items):
            _, reference = await store.load(item)
            if reference is not None and reference.tier == "warm" and await store.get(item) == f"v{i}".encode():
                found[item] = 1
        return found

    def named(self, left: Sequence[str]) -> set[str]:
        return {m.group(1) for line in left if (m := re.search(r"key (\S+): ", line))}


# --- the scenarios -----------------------------------------------------------------------------


async def _stop(process: BatchProcess, within: float, slack: str = "calm-op") -> StopReport:
    """``process.stop(within=)``, failing the test when it does not return within ``within`` +
    ``force_timeout`` + the ``slack`` bound (twice: a stop that overran it is judged by the
    caller's own measure; this only ends the wait)."""
    try:
        return await asyncio.wait_for(process.stop(within=within), within + FORCE + 2 * patience.bound(slack))
    except TimeoutError:
        for task in process.tasks:  # end what the stop left running (they unwind once healed)
            task.cancel()
        pytest.fail(
            f"{process.pattern_name}: stop(within={within:g}) did not return within its bound "
            f"(+ force_timeout {FORCE:g}s + twice {patience.describe(slack)})"
        )


async def _resume(rig: ProcessUnderTest) -> tuple[StopReport, Counter[str]]:
    """A new instance over the same state: started, left to finish everything, stopped."""
    process = rig.make(faulted=False)
    await process.start()
    try:
        await patience.until(
            lambda: rig.caught_up(process),
            bool,
            what=f"a restarted {process.pattern_name} to finish what was left",
        )
    finally:
        report = await _stop(process, calm())
    return report, await rig.done()


class Scenarios:
    """The lifecycle's guarantees, for the process under test a subclass names."""

    rig: ClassVar[type[ProcessUnderTest]]

    async def _rig(self, prism_env: PrismEnv, ns: Namespace, *, pause: bool = False) -> ProcessUnderTest:
        rig = self.rig(prism_env, ns)
        rig.pause = pause
        await rig.setup()
        return rig

    async def test_a_graceful_stop_mid_batch_finishes_the_batch_and_a_restart_resumes(
        self, prism_env: PrismEnv
    ) -> None:
        """The stop begins while the batch's second item is held: it must wait for the batch,
        finish and record it, report nothing left; the stopped instance refuses a second stop
        and a start; a new instance does the rest, each item exactly once in all. Bugs caught:
        a stop that does not wait for the in-flight batch, a drain that forgets the last item
        (never done, or done and not recorded), a restart that does not resume."""
        async with prism_env.example() as ns:
            rig = await self._rig(prism_env, ns)
            items = await rig.feed(N)
            rig.gate.hold_at = HOLD_AT
            process = rig.make(faulted=True)
            await process.start()
            await asyncio.wait_for(rig.gate.held.wait(), calm())
            stopping = asyncio.ensure_future(process.stop(within=calm()))
            await asyncio.wait_for(process.stop_requested.wait(), calm())
            rig.gate.release.set()
            try:
                report = await asyncio.wait_for(stopping, 2 * calm())
            except TimeoutError:
                pytest.fail(f"{process.pattern_name}: a graceful stop did not return once its batch could finish")
            assert report.drained, f"a graceful stop did not drain: {report}"
            assert not report.forced, f"a graceful stop was forced: {report}"
            assert report.clean, f"a graceful stop reported work left or errors: {report}"
            first = await rig.done()
            batch = items[:BATCH]
            unfinished = [item for item in batch if item not in first]
            assert not unfinished, (
                f"{process.pattern_name}: the stop returned with the batch in flight unfinished: {unfinished} "
                f"of {batch} not done"
            )
            # harmless second stop, refused start: the stopped instance stays as it was
            with pytest.raises(AlreadyStopped):
                await asyncio.wait_for(process.stop(within=WITHIN), calm())
            with pytest.raises(AlreadyStopped):
                await process.start()
            assert process.state is LifecycleState.STOPPED
            assert process.stop_report is report
            assert not process.tasks, f"background tasks outlived the stop: {process.tasks}"
            assert (await process.health()).status is HealthStatus.UNHEALTHY
            assert await rig.done() == first, "the stopped instance went on working"
            resumed, done = await _resume(rig)
            assert resumed.clean, f"the restarted instance's stop: {resumed}"
            missing = [item for item in items if item not in done]
            assert not missing, f"{process.pattern_name}: lost across a graceful stop and restart: {missing}"
            twice = {item: n for item, n in done.items() if n > 1}
            assert not twice, (
                f"{process.pattern_name}: done more than once across a graceful stop (the drain did not record "
                f"what it finished, or the restart did not resume from it): {twice}"
            )

    async def test_a_stop_returns_within_its_bound_while_the_backend_hangs(self, prism_env: PrismEnv) -> None:
        """The backend stalls in the middle of a batch (a fault proxy holding every byte, or a
        seam in front of an embedded backend): ``stop(within=)`` returns forced, no sooner than
        its bound and no later than the bound plus ``force_timeout``, naming what it left;
        healed, a new instance finishes everything and does twice only what the report named.
        Bugs caught: a stop that ignores ``within``, one that gives up before it, a forced stop
        that leaves work it does not name (lost, or done twice unannounced)."""
        await self._bounded_stop(prism_env, pause=False)

    async def test_a_stop_returns_within_its_bound_while_the_server_is_paused(self, prism_env: PrismEnv) -> None:
        """The same with the server process itself paused (SIGSTOP) in the middle of a batch, then
        resumed: every connection hangs, not only the process's own."""
        await self._bounded_stop(prism_env, pause=True)

    async def _bounded_stop(self, prism_env: PrismEnv, *, pause: bool) -> None:
        async with prism_env.example() as ns:
            rig = await self._rig(prism_env, ns, pause=pause)
            items = await rig.feed(N)
            rig.gate.hold_at = HOLD_AT
            process = rig.make(faulted=True)
            await process.start()
            await asyncio.wait_for(rig.gate.held.wait(), calm())
            rig.outage.stall()
            rig.gate.release.set()  # the held item goes on into the stalled backend
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                report = await _stop(process, WITHIN, "faulted-op")
            finally:
                elapsed = loop.time() - began
                rig.outage.heal()
            slack = patience.bound("faulted-op")
            assert report.forced, f"the backend hung, yet the stop was not forced: {report}"
            assert elapsed >= WITHIN * 0.95, f"the stop gave up after {elapsed:.3f}s, before its bound {WITHIN}s"
            assert elapsed <= WITHIN + FORCE + slack, (
                f"the stop took {elapsed:.3f}s, past within={WITHIN}s + force_timeout={FORCE}s "
                f"(+ {patience.describe('faulted-op')})"
            )
            assert report.left, f"a stop forced in the middle of a batch named nothing left: {report}"
            assert process.state is LifecycleState.STOPPED
            left = await rig.allowed(report.left)
            _, done = await _resume(rig)
            missing = [item for item in items if item not in done]
            assert not missing, f"{process.pattern_name}: lost across a forced stop and restart: {missing}"
            twice = {item: n for item, n in done.items() if n > 1}
            unannounced = {item: n for item, n in twice.items() if item not in left}
            assert not unannounced, (
                f"{process.pattern_name}: done twice though the forced stop did not name it as left: "
                f"{unannounced} (left: {list(report.left)})"
            )

    async def test_health_is_unhealthy_while_the_backend_is_gone_or_hangs(self, prism_env: PrismEnv) -> None:
        """A running process is healthy; with its backend refusing connections, or answering
        nothing, ``health()`` says unhealthy (within its ``health_timeout``); healed, healthy
        again; stopped, unhealthy. Bug caught: a health check that looks only at the process's
        own state."""
        async with prism_env.example() as ns:
            rig = await self._rig(prism_env, ns)
            process = rig.make(faulted=True)
            assert (await process.health()).status is HealthStatus.UNHEALTHY  # not started
            await process.start()
            try:
                healthy = await patience.until(
                    process.health, lambda h: h.healthy, what=f"a running {process.pattern_name} to be healthy"
                )
                assert healthy.state is LifecycleState.RUNNING
                rig.outage.gone()
                gone = await asyncio.wait_for(process.health(), HEALTH + calm())
                assert gone.status is HealthStatus.UNHEALTHY, f"healthy while the backend is gone: {gone}"
                rig.outage.heal()
                await patience.until(
                    process.health, lambda h: h.healthy, what=f"{process.pattern_name} healthy once the backend is back"
                )
                rig.outage.stall()
                stalled = await asyncio.wait_for(process.health(), HEALTH + calm())
                assert stalled.status is HealthStatus.UNHEALTHY, f"healthy while the backend hangs: {stalled}"
            finally:
                rig.outage.heal()
                await _stop(process, calm())
            assert (await process.health()).status is HealthStatus.UNHEALTHY


# One class per process, each declaring what its backend must offer (one slot: every store the
# process uses is that backend's, so the fault reaches all of them).


class TestOutboxRelay(Scenarios):
    pytestmark = prism_suite("lifecycle", backend=Slot.needs("transactions", "keyvalue.cas", "log"))
    rig = RelayUnderTest


class TestWalApplier(Scenarios):
    pytestmark = prism_suite("lifecycle", backend=Slot.needs("log", "keyvalue"))
    rig = ApplierUnderTest


class TestCdcConnector(Scenarios):
    pytestmark = prism_suite("lifecycle", backend=Slot.needs("changefeed", "keyvalue", "log"))
    rig = ConnectorUnderTest


class TestProjection(Scenarios):
    pytestmark = prism_suite("lifecycle", backend=Slot.needs("transactions", "log", "keyvalue"))
    rig = ProjectionUnderTest


class TestProjectionKeyValueViews(Scenarios):
    pytestmark = prism_suite("lifecycle", backend=Slot.needs("transactions", "log", "keyvalue.cas"))
    rig = KeyValueViewsProjectionUnderTest


class TestTieredMigrator(Scenarios):
    pytestmark = prism_suite("lifecycle", backend=Slot.needs("keyvalue.cas", "keyvalue.scan"))
    rig = MigratorUnderTest
