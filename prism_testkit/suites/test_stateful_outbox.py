"""The outbox relay under faults: transactions that commit or roll back, two relays that take
turns (their lease expiring on a clock the machine advances), relays killed mid-batch and
restarted, and the nemesis on the store's server and the sink's.

Each event of a transaction is an ``enqueue`` of the sink, completed when the transaction's
outcome is known: ok on commit, fail on rollback or abort, info when the commit's outcome is
unknown. At the end every fault is healed, the relays drain the outbox, the sink is read to
the end and judged: the total-queue checker at least once (lost events, events of rolled-back
transactions, which are ``unexpected``), per-aggregate order when the sink keeps order, and one
lease holder at a time: every write of the lease that landed is recorded (holder, epoch and the
interval its writer believes it holds it for, on the test's clock), and no relay may write the
lease while the other holds the same or a later epoch
(:func:`~prism_testkit.stateful.leases.one_lease_holder`; a takeover under a later epoch while
the old holder's clock says it still holds is what the epoch fences, and allowed).
A relay that marks events published before publishing them loses the rest of a batch when it
dies mid-batch, and one that renews its lease by a plain put instead of compare-and-set holds
it beside its successor: caught here (tests/mutants).

The faults its guarantee speaks of, and the rules that inject them:

- a relay crash after any number of publishes of its batch, before it marked them
  (``crash_relay``); it restarts under the same id;
- a clock jump past the lease (``lease_expires``), so the other relay takes the lease over
  while the first may still hold a batch (``relay_step`` of either);
- clocks that disagree: each relay reads its own clock, skewed both ways from the test's by a
  drawn amount (``clocks_disagree``; the two differ by less than the lease), and time passes by
  less than the lease too (``time_passes``): the lease has run out on one relay's clock and not
  on the other's, so a relay takes over while the old holder still believes it holds it;
- a slow relay: a step abandoned in flight under a fault keeps running beside the next ones;
- a transaction rolled back or aborted (``transaction`` with ``rollback``): its events must
  never be published;
- a target write failing: the sink refuses publishes (``sink_refuses``), so a retry of the
  rest of the batch is pending; with ``crash_relay`` or ``lease_expires`` next, a relay dies or
  is taken over while it is;
- a server kill (or power cut, on a lazy mount) or pause of the store's or the sink's server (``kill_and_restart``,
  ``pause`` / ``resume``, from :class:`~prism_testkit.stateful.nemesis.NemesisRules`, where the
  backend is a durable server the harness controls);
- proxy faults on either (``latency``, ``reset_connections``, ``partition``, ``heal``, where
  the backend is networked): operations of unknown outcome (a
  failed or unknown publish to the sink is the target write failure here);
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Literal, cast

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

import prism_testkit.simulation.clock as clocks
from prism_testkit import Capability, KeyValue, Message, Ordering, PrismEnv, Slot, patience, prism_suite
from prism_testkit.faults.interpose import Call, Interposed
from prism_testkit.patience import Unsettled
from prism_testkit.patterns.outbox import LeaseLost, LogSink, Outbox, OutboxConfig, OutboxRelay, QueueSink, Sink
from prism_testkit.simulation.clock import ManualClock
from prism_testkit.stateful.checkers import Verdict, per_key_order, total_queue
from prism_testkit.stateful.history import DEFINITE_FAILURES
from prism_testkit.stateful.leases import one_lease_holder, record_lease
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

from ._doubles import Killed, Rollback
from ._relay_faults import DyingKeyValue
from ._sink_reader import SinkReader

pytestmark = prism_suite(
    "stateful_outbox",
    store=Slot.needs("transactions", "keyvalue.cas", "log"),
    sink=Slot.one_of("queue", "log"),
)

Kind = Literal["queue", "log"]
AGGREGATES = ("a", "b", "c")
RELAYS = ("r1", "r2")
LEASE_TTL = 5.0  # s on the machine's clock, which only moves when a rule says so
# Each relay's clock is off the test's by up to this share of the lease, either way: the two
# disagree by less than the lease.
SKEW = 0.45


# A rollback or a definite failure (an abort) certainly published nothing.
NOTHING_PUBLISHED: tuple[type[BaseException], ...] = (Rollback, *DEFINITE_FAILURES)


class RelayDeath:
    """When a relay process dies: after ``after`` publishes reached the sink. Its sink and its
    key-value share it, so once it is dead nothing the relay does reaches either."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.dead = False

    def check(self) -> None:
        if self.dead:
            raise Killed


class DyingRelaySink:
    """The relay's sink as its process sees it: the publish after ``death.after`` kills it.
    (Not the CDC ``DyingSink``: an outbox sink, and the death is shared with the key-value.)"""

    def __init__(self, inner: Sink, death: RelayDeath) -> None:
        self.inner, self.death, self.count = inner, death, 0

    async def publish(self, message: Message) -> None:
        self.death.check()
        if self.count == self.death.after:
            self.death.dead = True
            raise Killed
        await self.inner.publish(message)
        self.count += 1


class SinkRefused(Exception):
    """The sink refused a publish (``sink_refuses``): certainly not published."""


class RefusingSink:
    """The sink as the relays see it: refuses publishes while the machine has refusals armed."""

    def __init__(self, inner: Sink, machine: OutboxMachine) -> None:
        self.inner, self.machine = inner, machine

    async def publish(self, message: Message) -> None:
        if self.machine.refusing > 0:
            self.machine.refusing -= 1
            self.machine.refusals += 1
            raise SinkRefused("the sink refused the publish (injected)")
        await self.inner.publish(message)


class OutboxMachine(FaultMachine):
    def __init__(self, run: StatefulRun, kind: Kind) -> None:
        super().__init__(run, ["store", "sink"])
        self.kind = kind
        self.destination = self.ns.name("events")
        self.clock = ManualClock()  # the test's time: leases expire when lease_expires advances it
        # Each relay's own clock, off the test's by its skew (clocks_disagree), moved with it.
        self.skews = dict.fromkeys(RELAYS, 0.0)
        self.relay_clocks = {relay_id: ManualClock(self.clock()) for relay_id in RELAYS}
        self.config = OutboxConfig(
            log=self.ns.name("outbox"), batch_size=3, poll_interval=patience.handed("poll"), lease_ttl=LEASE_TTL
        )
        self.relays = {relay_id: self._relay(relay_id) for relay_id in RELAYS}
        self.running: dict[str, asyncio.Future[object]] = {}  # relay steps abandoned in flight
        self.transactions = itertools.count()
        self.values = itertools.count()
        self.refusing = 0  # sink refusals armed by sink_refuses, not yet spent
        self.refusals = 0
        self.relay_deaths = 0  # doomed relays that died (one with nothing to publish lives)

    # -- plumbing ---------------------------------------------------------------------------

    def _sink(self, settled: bool) -> Sink:
        driver = self.env.driver("sink") if settled else self.client("sink")
        sink: Sink = (
            QueueSink(driver.queue(), self.destination)
            if self.kind == "queue"
            else LogSink(driver.log(), self.destination)
        )
        return sink if settled else RefusingSink(sink, self)  # the final drain is never refused

    def _relay(self, relay_id: str) -> OutboxRelay:
        store = self.client("store")
        kv = self._leases(store.keyvalue(), relay_id)
        return OutboxRelay(store.log(), kv, self._sink(False), self.config, relay_id, clock=self.relay_clocks[relay_id])

    def _wire(self, relay: OutboxRelay, *, settled: bool = False) -> OutboxRelay:
        """Point a relay at the current clients (a restart or heal reconnects them)."""
        store = self.env.driver("store") if settled else self.client("store")
        relay.log, relay.sink = store.log(), self._sink(settled)
        relay.kv = self._leases(store.keyvalue(), relay.relay_id)
        return relay

    def _leases(self, kv: KeyValue, relay_id: str) -> KeyValue:
        """``kv`` as relay ``relay_id`` writes it: each write of the lease that landed (a
        compare-and-set that succeeded, a put) recorded in the history, its interval taken
        from the relay's clock onto the test's (one_lease_holder judges them)."""

        def wrote(call: Call, result: object) -> None:
            arguments = call.arguments
            if arguments["key"] != self.config.lease or (call.name == "compare_and_set" and result is not True):
                return
            raw = arguments["new" if call.name == "compare_and_set" else "value"]
            lease = json.loads(cast(bytes, raw))
            until = float(lease["expires_at"]) - self.skews[relay_id]
            record_lease(self.history, str(lease["holder"]), int(lease["epoch"]), self.clock(), until)

        hooks = {"put": wrote, "compare_and_set": wrote}
        return cast(KeyValue, Interposed(kv, surface=KeyValue, after=hooks))

    def _advance(self, seconds: float) -> None:
        """Time passes, for the test and for every relay's clock."""
        for clock in (self.clock, *self.relay_clocks.values()):
            clock.advance(seconds)

    def _idle(self, relay_id: str) -> bool:
        task = self.running.get(relay_id)
        return task is None or task.done()

    @initialize(skews=st.tuples(*(st.integers(-100, 100) for _ in RELAYS)))
    def clocks_disagree(self, skews: tuple[int, ...]) -> None:
        """Each relay's clock runs ahead of the test's or behind it, by up to ``SKEW`` of the
        lease (``skews`` in hundredths of that): the relays disagree by less than the lease."""
        for relay_id, hundredths in zip(RELAYS, skews, strict=True):
            self.skews[relay_id] = LEASE_TTL * SKEW * hundredths / 100
            self.relay_clocks[relay_id].now = self.clock() + self.skews[relay_id]

    # -- producers --------------------------------------------------------------------------

    @rule(aggregate=st.sampled_from(AGGREGATES), events=st.integers(1, 2), rollback=st.booleans())
    def transaction(self, aggregate: str, events: int, rollback: bool) -> None:
        number = next(self.transactions)
        values = [f"{aggregate}:{next(self.values)}" for _ in range(events)]
        handles = [
            self.history.invoke(f"tx-{number}-{n}", "enqueue", self.destination, value)
            for n, value in enumerate(values)
        ]
        outbox = Outbox(self.client("store").transactions(), self.config, clock=self.clock)

        async def block() -> None:
            async with outbox.transaction() as tx:
                await tx.put(self.ns.name(f"row-{number}"), b"business")
                for value in values:
                    await tx.publish(aggregate, "Changed", value.encode())
                if rollback:
                    raise Rollback

        try:
            self.bounded(block())
        except NOTHING_PUBLISHED as exc:
            for handle in handles:
                handle.fail(exc if not isinstance(exc, Rollback) else "rolled back")
            return
        except Exception as exc:
            for handle in handles:
                handle.info(exc)
            if not self.faulted:
                raise
            return
        for handle in handles:
            handle.ok()

    # -- relays -----------------------------------------------------------------------------

    @rule(which=st.sampled_from(RELAYS))
    def relay_step(self, which: str) -> None:
        if not self._idle(which):
            return  # its previous batch is still in flight (abandoned under a fault)
        relay = self._wire(self.relays[which])
        handle = self.history.invoke(f"relay-{which}", "relay", self.config.log)
        task: asyncio.Future[object] = asyncio.ensure_future(relay.run_once(), loop=self.env.runtime.loop)
        try:
            published = self.bounded(task)
        except (LeaseLost, SinkRefused) as exc:
            handle.fail(exc)  # a refused publish: the relay committed what came before it
            return
        except Exception as exc:
            handle.info(exc)
            if not task.done():
                self.running[which] = task
            if not self.faulted:
                raise
            return
        handle.ok(value=published)

    # No precondition on _idle(): it depends on timing, which makes Hypothesis's replay flaky.
    @rule(which=st.sampled_from(RELAYS), after=st.integers(0, 2))
    def crash_relay(self, which: str, after: int) -> None:
        """The relay process dies after ``after`` publishes of its next batch, then restarts
        under the same id (it takes its lease back at once, with a new epoch)."""
        if not self._idle(which):
            return
        death = RelayDeath(after)
        relay = self._wire(self.relays[which])
        relay.kv = DyingKeyValue(relay.kv, death)
        relay.sink = DyingRelaySink(relay.sink, death)
        handle = self.history.invoke(f"relay-{which}", "crash", self.config.log, after)

        async def dies() -> None:
            with contextlib.suppress(Killed, LeaseLost, SinkRefused):
                await relay.run_once()
            self.relay_deaths += int(death.dead)

        try:
            self.bounded(dies())
        except Exception as exc:
            if not self.faulted:
                raise
            handle.info(exc)
        else:
            handle.ok()
        self.relays[which] = self._relay(which)

    @rule(times=st.integers(1, 2))
    def sink_refuses(self, times: int) -> None:
        """The sink refuses the next ``times`` publishes (a target write failing): the relay
        commits what it published before, stops the batch, and the next step retries the rest.
        A crash or a lease takeover that comes next strikes while that retry is pending."""
        self.refusing = times
        self.env.faults["sink-refuses"] += 1
        self.history.invoke("nemesis", "sink-refuses", self.env.spec("sink").name, times).ok()

    @rule()
    def lease_expires(self) -> None:
        """Time passes past the lease: the next relay to poll may take it over."""
        self._advance(LEASE_TTL * 1.01)

    @rule(share=st.sampled_from([0.3, 0.6]))
    def time_passes(self, share: float) -> None:
        """Time passes, less than the lease: with clocks that disagree, the lease has run out on
        one relay's clock and not on the other's."""
        self._advance(LEASE_TTL * share)

    # -- judging ----------------------------------------------------------------------------

    def check(self) -> tuple[list[Verdict], str]:
        self.recovering(self._relay_everything)
        delivered = self.recovering(self._read_sink)
        self.history.invoke("consumer", "drain", self.destination).ok(value=tuple(delivered))
        verdicts = [total_queue(self.history, self.env.spec("sink").properties.queue_delivery)]
        if self.env.spec("sink").properties.ordering is not Ordering.NONE:
            verdicts.append(per_key_order(self.history, key=lambda value: str(value).split(":")[0]))
        verdicts.append(one_lease_holder(self.history))
        return verdicts, f"outbox {self.config.log} -> {self.kind} {self.destination}"

    async def _relay_everything(self) -> None:
        """Relay until the outbox holds nothing pending: a wait on the pending count reaching
        0 (each publish is progress), never on a clock; one that stops progressing is
        Unsettled, so an event is judged lost only once the relays reported the outbox empty."""
        for task in self.running.values():
            if not task.done():
                done, _ = await asyncio.wait({task}, timeout=patience.bound("stall"))
                if not done:
                    raise Unsettled("drain: a relay step abandoned in flight to end once healed", 0.0, "stall")
        relays = [self._wire(self.relays[r], settled=True) for r in RELAYS]

        async def relay_round() -> int:
            pending = await relays[0].pending()
            if pending == 0:
                return 0
            progress = 0
            for relay in relays:
                with contextlib.suppress(LeaseLost):
                    progress += await relay.run_once()
            if not progress:
                self._advance(LEASE_TTL * 1.01)  # a dead holder's lease: let it run out
            return pending

        await patience.until(
            relay_round, lambda pending: pending == 0, what="drain: the outbox's pending events to reach 0"
        )

    async def _read_sink(self) -> list[str]:
        ordering = self.env.spec("sink").properties.ordering
        reader = SinkReader(lambda: self.env.driver("sink"), self.kind, self.destination, ordering, quiet=0.3)
        return [bytes(m.payload).decode() for m in await reader.until_now(clocks.monotonic() + patience.bound("stall"))]


@pytest.mark.parametrize("kind", ["queue", "log"])
def test_relay_delivers_every_committed_event_in_aggregate_order_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest, kind: Kind
) -> None:
    if not prism_env.driver("sink").supports(Capability(kind)):
        pytest.skip(f"{prism_env.spec('sink').name} does not provide {kind}")
    run = StatefulRun(prism_env, request)
    run.execute(lambda: OutboxMachine(run, kind))


@pytest.mark.parametrize("kind", ["queue", "log"])
def test_a_relay_dying_while_a_refused_publish_waits_for_its_retry_loses_nothing(
    prism_env: PrismEnv, request: pytest.FixtureRequest, kind: Kind
) -> None:
    """``sink_refuses`` combined with a crash, step by step: the sink refuses the first event
    of a batch, so the relay stops with a retry pending; it dies before the retry, and both
    events must still reach the sink. Fails if the refusal never happens."""
    if not prism_env.driver("sink").supports(Capability(kind)):
        pytest.skip(f"{prism_env.spec('sink').name} does not provide {kind}")
    run = StatefulRun(prism_env, request)
    machine = OutboxMachine(run, kind)
    machine.transaction("a", 2, rollback=False)
    machine.sink_refuses(1)
    machine.relay_step("r1")
    assert machine.refusals == 1, "sink_refuses refused no publish"
    machine.crash_relay("r1", 0)
    assert machine.relay_deaths == 1, "the relay did not die"
    machine.teardown()
    assert run.judged == 1


def test_on_clocks_that_disagree_a_relay_taken_over_never_renews_the_lease_beside_its_successor(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """Clocks that disagree, step by step: r1's clock runs behind the test's and r2's ahead (by
    ``SKEW`` of the lease each). r1 takes the lease; time passes by 0.6 of the lease, so on r2's
    clock the lease ran out and on r1's it did not. r2 takes it over (a later epoch) while r1
    still believes it holds it; r1's next step must find it lost, never renew it beside r2 (one
    lease holder at a time). Fails if the takeover does not happen as described."""
    kind: Kind = "queue" if prism_env.driver("sink").supports(Capability.QUEUE) else "log"
    run = StatefulRun(prism_env, request)
    machine = OutboxMachine(run, kind)
    machine.clocks_disagree((-100, 100))
    r1, r2 = machine.relays["r1"], machine.relays["r2"]
    machine.transaction("a", 2, rollback=False)
    machine.relay_step("r1")
    assert r1.holds_lease, "r1 did not take the lease"
    machine.time_passes(0.6)
    machine.transaction("b", 1, rollback=False)
    machine.relay_step("r2")
    assert r2.holds_lease, "r2 did not take the lease over: the clocks did not disagree enough"
    assert r1.holds_lease, "on r1's own clock its lease should not have run out yet"
    machine.relay_step("r1")
    machine.teardown()
    assert run.judged == 1
