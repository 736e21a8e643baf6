"""The base of every stateful fault suite: client, nemesis and checker wired into one machine.

A suite subclasses :class:`FaultMachine`, writes its client operations as Hypothesis rules that
go through :meth:`~FaultMachine.attempt`, and implements :meth:`~FaultMachine.check`. The
nemesis rules come with the base (:class:`~prism_testkit.faults.nemesis.NemesisRules`). Each
example:

- works in its own namespace (``env.ns.child()``), purged when the example ends;
- runs every coroutine on the worker's one event loop through ``env.runtime.run``: Hypothesis
  does not support async rules, and one loop means drivers never cross loops;
- records a Jepsen-style :class:`~prism_testkit.jepsen.history.History`;
- at teardown heals every fault, waits for operations abandoned in flight, lets the suite drain
  and check, and fails through :meth:`StatefulRun.judge` with the smallest witness.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from hypothesis.stateful import RuleBasedStateMachine

from prism_testkit.faults.nemesis import Nemesis, NemesisRules
from prism_testkit.jepsen.checkers import Verdict
from prism_testkit.jepsen.client import Outcome, RecordedClient
from prism_testkit.jepsen.history import History
from prism_testkit.jepsen.runner import StatefulRun

if TYPE_CHECKING:
    from prism_testkit.driver import Driver

T = TypeVar("T")


class FaultMachine(NemesisRules, RuleBasedStateMachine):
    """Targets the backends in ``slots``; subclasses add client rules and :meth:`check`."""

    def __init__(self, run: StatefulRun, slots: Sequence[str]) -> None:
        super().__init__()
        self.prism_run = run
        self.env = run.env
        self.ns = self.env.ns.child()
        self.history = History()
        self.nemesis = Nemesis(self.env, self.history, slots, self.loop)
        self.recorded = RecordedClient(self.history, self.loop, lambda: self.nemesis.faulted)

    # -- the event loop and the clients -----------------------------------------------------

    def loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the worker's event loop (the one the drivers are bound to)."""
        return self.env.runtime.run(coro)

    @property
    def faulted(self) -> bool:
        """A fault was injected in this example: client errors are now unknown outcomes."""
        return self.nemesis.faulted

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
        return self.recorded.attempt(process, f, action, key=key, value=value, offset=offset, on_late=on_late)

    def bounded(self, action: Awaitable[T], on_late: Callable[[Any], None] | None = None) -> T:
        """Run ``action`` bounded but unrecorded (the caller records it its own way)."""
        return self.loop(self.recorded.bounded(action, on_late))

    def recovering(self, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action`` after healing, retrying while servers come back (drains, reads)."""
        return self.recorded.recovering(action)

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
            return
        try:
            self.nemesis.heal_everything()
            self.loop(self.recorded.settle_strays())
            verdicts, what = self.check()
            self.prism_run.judge(self.history, verdicts, what)
        finally:
            self.loop(self.env.purge(self.ns))
