"""Recording the steps of a stateful example as they are issued, and issuing them again.

Hypothesis runs a rule as ``rule.function(machine, **arguments)`` with a rule it drew; it offers
no hook around that call. :func:`record_steps` wraps the rules of one machine instance: the
strategy it draws its next rule from is mapped to a copy of the rule whose function records the
step, and the initialize rules still to run get the same copies. A data object handed to a rule
is wrapped so every value drawn from it is recorded too. The class is left alone, so two
machines (or a suite test that calls rules directly) never share a recorder.

:func:`reissue` calls the recorded rules by name on a fresh machine, in order, each completed
before the next, the data objects replaced by the recorded draws. Preconditions are not asked:
a recorded step ran, so it runs again. Before a fault, client operations the recording did not
have in flight are waited for (a step abandoned under a fault may still be running here), so the
fault lands after the same operations; each fault notes the operation it followed, and one that
differs from the recording's is reported, since it may explain a replay that did not reproduce.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine
from hypothesis.strategies import DataObject, SearchStrategy

from prism_testkit import patience
from prism_testkit.hunting.schedule import DATA, ScheduleError, Step, decode, encode
from prism_testkit.stateful.history import History, OpType, render_op

NEMESIS = "nemesis"
CRASH = "crash"  # a suite's own process crash (an applier, a relay): a fault, though not the nemesis's


class StepRecorder:
    """The steps of one example, in the order they were issued."""

    def __init__(
        self,
        history: Callable[[], History | None],
        prefixes: Callable[[], tuple[str, ...]],
        faults: Callable[[], int] = lambda: 0,
    ) -> None:
        self._history = history
        self._prefixes = prefixes
        self._faults = faults  # the faults the report has counted so far (a suite's own ones included)
        self._faults_before = 0
        self.steps: list[Step] = []

    def begin(self, rule: str, arguments: dict[str, Any], draws: list[Any] | None = None) -> tuple[Step, int]:
        """A step about to run; returns it and where the history stood."""
        history = self._history()
        encoded = {name: DATA if isinstance(v, DataObject | _Data) else encode(v) for name, v in arguments.items()}
        step = Step(rule, encoded)
        if draws is not None:
            step.draws = draws
        start = len(history) if history is not None else 0
        self._faults_before = self._faults()
        if history is not None:
            step.after, step.in_flight = self._where(history)
        self.steps.append(step)
        return step, start

    def end(self, step: Step, start: int) -> None:
        """A step is a fault when the report counted one during it (the nemesis's, or a suite's
        own: a lost copy, a refusing sink), or when it issued a nemesis op or crashed a process."""
        counted = self._faults() > self._faults_before
        history = self._history()
        issued = [op for op in history.ops[start:] if op.type is OpType.INVOKE] if history is not None else []
        step.ops = [f"{op.process} {op.f}" for op in issued]
        step.fault = counted or any(op.process == NEMESIS or op.f.startswith(CRASH) for op in issued)

    def _where(self, history: History) -> tuple[str | None, int]:
        """The last client op completed so far (namespace masked), and how many are in flight."""
        try:
            pairs = [pair for pair in history.pairs() if pair.process != NEMESIS]
        except ValueError:  # a history a suite records its own way: nothing to say
            return None, 0
        completions = [pair.completion for pair in pairs if pair.completion is not None]
        in_flight = len(pairs) - len(completions)
        if not completions:
            return None, in_flight
        done = " ".join(render_op(max(completions, key=lambda op: op.index)).split())
        for prefix in sorted(self._prefixes(), key=len, reverse=True):
            if prefix:
                done = done.replace(prefix, "<ns>")
        return done, in_flight


class _Data:
    """A data object whose draws are recorded into a step (recording) or come from it (replay)."""

    def __init__(self, step: Step, inner: DataObject | None = None) -> None:
        self._step = step
        self._inner = inner
        self._next = 0

    def draw(self, strategy: SearchStrategy[Any], label: Any = None) -> Any:
        if self._inner is not None:
            value = self._inner.draw(strategy, label=label)
            self._step.draws.append(encode(value))
            return value
        if self._next >= len(self._step.draws):
            raise ScheduleError(f"step {self._step.rule} drew more values than the recording holds")
        value = decode(self._step.draws[self._next])
        self._next += 1
        return value

    def __getattr__(self, name: str) -> Any:  # what else a rule may ask of a data object
        return getattr(self._inner, name)


def record_steps(machine: RuleBasedStateMachine, recorder: StepRecorder) -> None:
    """Make every rule Hypothesis runs on ``machine`` record its step in ``recorder``."""

    def recording(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def run(self: RuleBasedStateMachine, **arguments: Any) -> Any:
            step, start = recorder.begin(function.__name__, arguments)
            given = {k: _Data(step, v) if isinstance(v, DataObject) else v for k, v in arguments.items()}
            try:
                return function(self, **given)
            finally:
                recorder.end(step, start)

        return run

    copies: dict[int, Any] = {}

    def copy(rule: Any) -> Any:
        if id(rule) not in copies:
            copies[id(rule)] = dataclasses.replace(rule, function=recording(rule.function))
        return copies[id(rule)]

    state: Any = machine
    state._rules_strategy = state._rules_strategy.map(lambda drawn: (copy(drawn[0]), drawn[1]))
    state._initialize_rules_to_run = [copy(rule) for rule in state._initialize_rules_to_run]


def reissue(
    machine: RuleBasedStateMachine,
    steps: list[Step],
    recorder: StepRecorder,
    settle: Callable[[], None] | None = None,
) -> list[str]:
    """Call ``steps`` on ``machine`` in order, recording them again in ``recorder``; the notes
    say where a fault followed another operation than in the recording. ``settle`` waits for
    client operations still in flight (called before a fault the recording had none in flight)."""
    notes: list[str] = []
    for n, recorded in enumerate(steps, 1):
        function = getattr(machine, recorded.rule, None)
        if not callable(function):
            raise ScheduleError(f"step {n}: {type(machine).__name__} has no rule {recorded.rule!r}")
        if recorded.fault and recorded.in_flight == 0 and settle is not None:
            settle()
        step, start = recorder.begin(recorded.rule, {}, draws=list(recorded.draws))
        step.arguments = dict(recorded.arguments)
        data = _Data(step)
        arguments = {name: data if value == DATA else decode(value) for name, value in recorded.arguments.items()}
        try:
            function(**arguments)
        finally:
            recorder.end(step, start)
        if recorded.fault and _identity(step.after) != _identity(recorded.after):
            notes.append(f"step {n} ({recorded.rule}) followed [{step.after}] here, [{recorded.after}] when recorded")
    return notes


def _identity(rendered: str | None) -> list[str]:
    """An op's place and kind (index, process, type, name), without its values: two runs of the
    same schedule may give a write another offset and still have issued the same operation."""
    return (rendered or "").split()[:4]


def settle_strays(machine: Any) -> Callable[[], None] | None:
    """A function that waits (bounded) for the machine's abandoned client operations, for a
    machine with a :class:`~prism_testkit.stateful.client.RecordedClient`; else None."""
    recorded = getattr(machine, "recorded", None)
    strays = getattr(recorded, "strays", None)
    if strays is None:
        return None

    def settle() -> None:
        pending = [s.task for s in strays if not s.task.done()]
        if pending:

            async def wait() -> None:
                await asyncio.wait(pending, timeout=patience.bound("stray-grace"))

            machine.loop(wait())

    return settle
