"""The base of every stateful fault suite: client, nemesis and checker wired into one machine.

A suite subclasses :class:`FaultMachine`, writes its client operations as Hypothesis rules that
go through :meth:`~FaultMachine.attempt`, and implements :meth:`~FaultMachine.check`. The
nemesis rules come with the base (:class:`~prism_testkit.stateful.nemesis.NemesisRules`). Each
example:

- starts on clusters no earlier test or example left damaged (:mod:`.health`: rebuilt where
  one did), and works in its own namespace (``env.ns.child()``), purged when the example ends;
- runs every coroutine on the worker's one event loop through ``env.runtime.run``: Hypothesis
  does not support async rules, and one loop means drivers never cross loops;
- records a Jepsen-style :class:`~prism_testkit.stateful.history.History`;
- at teardown heals every fault, waits for operations abandoned in flight, lets the suite drain
  (waiting on progress, not a clock: a drain that stops progressing is
  :class:`~prism_testkit.patience.Unsettled`, a liveness failure, never ``lost``) and check
  (on a cluster whose nodes can be read one by one, each node's copy of the example's own
  streams too: ``replicas``), and
  fails through :meth:`StatefulRun.judge` with the smallest witness;
- on a failover cluster its run owes a failover (see ``owed_failovers``), fails it over after
  its first client operations;
- under ``--prism-simulate``, when every backend it targets is simulable, runs on a fresh
  simulated loop (virtual time; the order of ready tasks drawn from ``schedule``, a Hypothesis
  choice, so it shrinks and replays).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize

from prism_testkit.patience import Unsettled
from prism_testkit.simulation.buggify import heal as heal_misbehaviour
from prism_testkit.simulation.buggify import unknown_outcomes
from prism_testkit.stateful.checkers import Verdict, judged_nothing
from prism_testkit.stateful.client import Outcome, RecordedClient
from prism_testkit.stateful.health import ensure_healthy, note_used
from prism_testkit.stateful.history import History, OpType
from prism_testkit.stateful.nemesis import Nemesis, NemesisRules
from prism_testkit.stateful.runner import StatefulRun

if TYPE_CHECKING:
    from prism_testkit.driver import Driver
    from prism_testkit.simulation.guard import Guard
    from prism_testkit.simulation.loop import SimulatedLoop

T = TypeVar("T")

OWED_FAILOVER_AFTER = 2  # completed client operations before an owed failover: it has something to lose


class FaultMachine(NemesisRules, RuleBasedStateMachine):
    """Targets the backends in ``slots``; subclasses add client rules and :meth:`check`."""

    def __init__(self, run: StatefulRun, slots: Sequence[str], *, ephemeral: Collection[str] = ()) -> None:
        """``ephemeral``: slots whose checks owe nothing across a restart, killed even where not
        durable (see :class:`~prism_testkit.stateful.nemesis.Nemesis`)."""
        super().__init__()
        self.prism_run = run
        self.env = run.env
        # Before the first step: a cluster an earlier test or example left damaged is rebuilt,
        # so no verdict of this example is inherited (InheritedDamage where it cannot be).
        run.note_rebuilt(ensure_healthy(self.env, run.nodeid, always=True))
        # First, so that everything the example runs (connects included) runs on the simulated loop.
        self._simulation = ExitStack()
        self.simulation: tuple[SimulatedLoop, Guard] | None = None
        if run.simulated:
            self.simulation = self._simulation.enter_context(
                self.env.runtime.simulated(run.simulated, run.watched_modules(type(self).__module__))
            )
        self.ns = self.env.ns.child()
        self.history = History()
        self.nemesis = Nemesis(self.env, self.history, slots, self.loop, ephemeral=ephemeral, test=run.nodeid)
        self.recorded = RecordedClient(self.history, self.loop, lambda: self.faulted)
        self.misbehaviour: frozenset[str] = frozenset()  # drawn by seed_the_schedule
        run.note_failover_clusters(self.nemesis.failover_backends())
        # The failovers this example owes (its run's failover pass): made after the first
        # client operations, or at the latest when the example ends, before the heal.
        self.owed_failovers = set(run.forced_failovers)

    # -- the event loop and the clients -----------------------------------------------------

    # Drawn in every mode, so an example's data does not depend on the mode it was found in.
    @initialize(schedule=st.integers(0, 2**32 - 1), data=st.data())
    def seed_the_schedule(self, schedule: int, data: st.DataObject) -> None:
        """The seed of the order in which ready tasks run and the backend's misbehaviour
        (simulated mode; else unused). The kinds of misbehaviour are a set drawn from what
        ``--prism-buggify`` allows, so a failure shrinks to the kinds it needs."""
        if self.simulation is None:
            return
        self.simulation[0].reseed(schedule)
        if self.prism_run.buggify:
            from prism_testkit.simulation.buggify import misbehaving

            kinds = data.draw(st.frozensets(st.sampled_from(sorted(self.prism_run.buggify))), label="misbehaviour")
            self.misbehaviour = kinds
            active = self._simulation.enter_context(misbehaving(kinds, schedule))
            self._simulation.callback(lambda: self.prism_run.misbehaviour.update(active.fired))

    def loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the worker's event loop (the one the drivers are bound to)."""
        return self.env.runtime.run(coro)

    @property
    def faulted(self) -> bool:
        """A fault was injected in this example (or the simulated backend lost an answer on
        purpose): client errors are now unknown outcomes."""
        return self.nemesis.faulted or unknown_outcomes() > 0

    def client(self, slot: str) -> Driver:
        """The driver client operations use: through the fault proxy when there is one. Looked
        up on every call because a restart reconnects it."""
        if self.nemesis.targets[slot].proxy is None:
            return self.env.driver(slot)
        driver, _ = self.loop(self.env.proxied(slot))
        return driver

    def attempt(
        self,
        process: str,
        f: str,
        action: Callable[[], Awaitable[T]],
        *,
        key: str | None = None,
        value: Any = None,
        offset: int | None = None,
        on_late: Callable[[Any], None] | None = None,
    ) -> Outcome[T]:
        """A recorded, bounded client operation (see :meth:`RecordedClient.attempt`)."""
        outcome = self.recorded.attempt(process, f, action, key=key, value=value, offset=offset, on_late=on_late)
        if self.owed_failovers and self._client_ops() >= OWED_FAILOVER_AFTER:
            self.pay_owed_failovers()
        return outcome

    def _client_ops(self) -> int:
        return sum(1 for op in self.history if op.process != "nemesis" and op.type is not OpType.INVOKE)

    def pay_owed_failovers(self) -> None:
        """Fail over every cluster this example still owes a failover (see ``owed_failovers``)."""
        while self.owed_failovers:
            backend = self.owed_failovers.pop()
            if not self.nemesis.fail_over_now(backend):
                raise AssertionError(f"{backend} owes a failover but is no failover cluster of this example")

    def bounded(self, action: Awaitable[T], on_late: Callable[[Any], None] | None = None) -> T:
        """Run ``action`` bounded but unrecorded (the caller records it its own way)."""
        return self.loop(self.recorded.bounded(action, on_late))

    def recovering(self, action: Callable[[], Awaitable[T]], what: str | None = None) -> T:
        """Run ``action`` after healing, retrying while servers come back (drains, reads)."""
        return self.recorded.recovering(action, what)

    # -- the end of an example --------------------------------------------------------------

    def check(self) -> tuple[list[Verdict], str]:
        """Drain and judge: the verdicts and a one-line description. Subclasses implement it."""
        raise NotImplementedError

    def teardown(self) -> None:
        if self.env.runtime.interrupts.received is not None:
            # Ctrl-C: no drain and no verdict (an interrupted history proves nothing, and a
            # failed check raised here would replace the interrupt); only give back what is held.
            self.nemesis.heal_everything()
            with contextlib.suppress(Exception):
                self.loop(self.env.purge(self.ns))
            self._simulation.close()
            return
        try:
            try:
                self.pay_owed_failovers()  # an example too short to have reached it
                self.nemesis.heal_everything()
                self.prism_run.note_settles(self.nemesis.settles)
                heal_misbehaviour()
                self.loop(self.recorded.settle_strays())
                try:
                    verdicts, what = self.check()
                    verdicts = [*verdicts, *self._replica_verdicts(verdicts)]
                except Unsettled as exc:  # a liveness verdict: nothing judged lost, still a failure
                    self.prism_run.note_history(self.history, self.ns.prefix)
                    self.prism_run.unsettled(self.history, exc, **self._timeline_facts())
                self.prism_run.note_history(self.history, self.ns.prefix)
                self._no_real_time()
                self.prism_run.judge(self.history, verdicts, what, **self._timeline_facts())
            finally:
                note_used(self.env, self.prism_run.nodeid)
                self.loop(self.env.purge(self.ns))
        finally:
            self._simulation.close()

    def _timeline_facts(self) -> dict[str, Any]:
        """What an example's timeline needs besides its history: when the end-of-example heal
        ended (the faults still open then end there) and the namespace to mask."""
        return {"healed_at": self.nemesis.healed_at, "prefixes": (self.ns.prefix,)}

    def _replica_verdicts(self, own: list[Verdict]) -> list[Verdict]:
        """The nodes' own copies (:meth:`Nemesis.replica_verdicts`); a valid one is left out of
        an example that wrote and read nothing, which must still count as judging nothing."""
        replicas = self.nemesis.replica_verdicts(self.ns.prefix)
        if judged_nothing(own):
            return [v for v in replicas if not v.valid]
        return replicas

    def _no_real_time(self) -> None:
        """A simulated example fails when a watched module read real time or started a thread,
        even if the error raised at that moment was swallowed."""
        if self.simulation is not None and self.simulation[1].violations:
            found = "\n  ".join(dict.fromkeys(self.simulation[1].violations))
            raise AssertionError(f"this simulated example left virtual time:\n  {found}")
