"""Running a stateful machine as one pytest test, and judging what its examples recorded.

:class:`StatefulRun` runs a Hypothesis ``RuleBasedStateMachine`` under the active profile with
short examples, judges each example's verdicts (valid ones go to the report; invalid ones fail
with the smallest witness, the verdicts and the whole history) and prints how to replay the
failure: the seed it chose, or the derandomised profile.
"""

from __future__ import annotations

import random
import shlex
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from prism_testkit.hunting.hunt import PLAN, ROUND_EXAMPLES, HuntPlan, HuntTally
from prism_testkit.jepsen.checkers import EMPTY, Verdict
from prism_testkit.jepsen.history import History, OpType

if TYPE_CHECKING:
    from prism_testkit.runtime.env import PrismEnv

STEPS = 12  # rules per example: short histories shrink fast and read well
EXAMPLES = 12  # per combination, unless the profile asks for a long hunt (see stateful_settings)
HUNT_THRESHOLD = 100  # a profile with at least this many examples is a hunt: honour it
FULL_HISTORY_LINES = 80  # failure messages include the whole history up to this length


def active_settings() -> settings:
    """The settings of the active Hypothesis profile."""
    current = settings.default
    assert current is not None, "Hypothesis has no active profile"
    return current


def stateful_settings() -> settings:
    """The active profile (prism-dev / prism-ci / prism-hunt), with short examples and a capped
    example count: every example restarts servers and waits out visibility timeouts."""
    base = active_settings()
    examples = base.max_examples if base.max_examples >= HUNT_THRESHOLD else min(base.max_examples, EXAMPLES)
    return settings(
        base,
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


class StatefulRun:
    """What one suite test knows across its examples: the environment, how to replay it, and
    the verdicts of the last failing example (the one Hypothesis reports, after shrinking)."""

    def __init__(self, prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
        self.env = prism_env
        self.node = request.node
        self.nodeid = request.node.nodeid
        self.hunt: HuntPlan | None = request.config.stash.get(PLAN, None)
        self.tally = HuntTally()
        self.combination = prism_env.combination
        self.profile = settings.get_current_profile_name()
        self.derandomized = active_settings().derandomize
        forced = request.config.getoption("hypothesis_seed", None)
        # Without derandomisation we pick the seed ourselves so the failure message can name it;
        # replaying with --hypothesis-seed=<it> gives the same seed back here.
        self.seed: int | None = None if self.derandomized else int(forced) if forced else random.getrandbits(32)
        self.failed: list[Verdict] = []
        self.judged = 0  # examples whose history held something to check
        self.vacuous = 0  # examples that wrote and read nothing (a short random run can)

    def execute(self, factory: Callable[[], RuleBasedStateMachine]) -> None:
        """Run the machine under :func:`stateful_settings`; record the verdicts in the report."""

        def make() -> RuleBasedStateMachine:
            return factory()

        # Per-test digest: its own example-database key (the same on every machine that runs
        # this test id) and derandomised seed.
        make._hypothesis_internal_add_digest = self.nodeid.encode()  # type: ignore[attr-defined]
        if self.seed is not None:
            make._hypothesis_internal_use_seed = self.seed  # type: ignore[attr-defined]
        # Hypothesis only calls the "class" to make a machine: a factory with our digest will do.
        machine = cast("type[RuleBasedStateMachine]", make)
        try:
            if self.hunt is None:
                run_state_machine_as_test(machine, settings=stateful_settings())
            else:
                self._hunt(make, self.hunt)
            if self.vacuous and not self.judged:
                raise AssertionError(
                    f"{self.nodeid}: none of its {self.vacuous} examples wrote or read anything, so "
                    "nothing was checked (a test that judges nothing must not pass)"
                )
        finally:
            for verdict in self.failed:  # the final (shrunk) failing example's verdicts
                self.env.record_verdict(verdict)

    def _hunt(self, make: Callable[[], RuleBasedStateMachine], plan: HuntPlan) -> None:
        """Rounds of :data:`ROUND_EXAMPLES` examples, each with a fresh seed, until this test's
        share of the budget is spent; a failure ends the hunt (Hypothesis shrinks it and saves
        it in the example database, which every later round and machine replays first)."""
        machine = cast("type[RuleBasedStateMachine]", make)
        started = time.monotonic()
        self.tally.allotted = plan.allot(self.nodeid)
        self.tally.test = self.nodeid
        round_settings = settings(stateful_settings(), max_examples=ROUND_EXAMPLES, derandomize=False)
        self.derandomized = False  # every round has a seed of its own: the replay names it
        if plan.database is not None:
            round_settings = settings(round_settings, database=plan.database)
        try:
            while True:
                self.seed = random.getrandbits(32)
                make._hypothesis_internal_use_seed = self.seed  # type: ignore[attr-defined]
                try:
                    run_state_machine_as_test(machine, settings=round_settings)
                except BaseException as exc:
                    self.tally.failed = True
                    self.tally.failure = failure_line(exc, self.failed)
                    self.tally.replay = self.replay().split("\n", 1)[0]
                    raise
                finally:
                    self.tally.rounds += 1
                    self.tally.seconds = time.monotonic() - started
                    plan.progress(self.nodeid, self.tally)
                if self.tally.seconds >= self.tally.allotted:
                    return
        finally:
            plan.finished()
            plan.progress(self.nodeid, self.tally, final=True)
            self.node.user_properties.append(("prism_hunt", self.tally.as_property()))

    def replay(self) -> str:
        """The command that runs this failure again, and why it gives the same examples."""
        backends = ",".join(dict.fromkeys(self.combination.slots.values()))
        args = ["pytest", self.nodeid, f"--prism-backend={backends}"]
        if len(set(self.combination.slots.values())) > 1 or len(self.combination.slots) > 1:
            args.append("--prism-combinations=all")  # the combination exists whatever the covering set
        if self.derandomized:
            args.append(f"--hypothesis-profile={self.profile}")
            how = "derandomised profile: the same examples run again and shrink to this failure"
        else:
            args += ["-p", "no:randomly", f"--hypothesis-seed={self.seed}"]
            how = "same seed, same examples (the example database in .hypothesis/ also replays it first)"
        return f"{shlex.join(args)}\n  ({how}; under --hypothesis-profile=prism-ci Hypothesis also prints a "
        "@reproduce_failure blob, and the minimal steps are printed below as a program)"

    def judge(self, history: History, verdicts: Sequence[Verdict], what: str) -> None:
        """Record valid verdicts; fail with witness, explanation and replay for invalid ones."""
        self.tally.examples += 1
        self.tally.faults += sum(1 for op in history if op.process == "nemesis" and op.type is OpType.INVOKE)
        if verdicts and all(set(v.anomalies) == {EMPTY} for v in verdicts):
            self.vacuous += 1  # one empty example is not a failure; a test of only those is
            return
        self.judged += 1
        bad = [v for v in verdicts if not v.valid and set(v.anomalies) != {EMPTY}]
        for verdict in verdicts:
            if verdict.valid:
                self.env.record_verdict(verdict)
        if not bad:
            return
        self.failed = bad
        raise AssertionError(failure_message(history, bad, what, self.replay()))


def failure_line(error: BaseException, verdicts: Sequence[Verdict]) -> str:
    """One line for a hunt's summary: the checkers' verdicts, or the error when no checker ran."""
    if verdicts:
        return "; ".join(f"{v.checker}: INVALID ({', '.join(sorted(v.anomalies))})" for v in verdicts)
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}"[:300]


def failure_message(history: History, bad: Sequence[Verdict], what: str, replay: str) -> str:
    """What an invalid example reports: anomaly counts, smallest witnesses, the verdicts'
    explanations, the history (or its start) and the replay command."""
    names = ", ".join(f"{len(group)} {name}" for v in bad for name, group in v.anomalies.items())
    lines = [f"{what}: INVALID ({names})", ""]
    for verdict in bad:
        witness = verdict.witness
        if witness is not None:
            lines += [f"smallest witness ({verdict.checker}):", witness.render(), ""]
    lines += [verdict.explain() for verdict in bad]
    if len(history) <= FULL_HISTORY_LINES:
        lines += ["", f"full history ({len(history)} ops):", history.render()]
    else:
        lines += ["", f"history: {len(history)} ops (first {FULL_HISTORY_LINES}):", history.render(FULL_HISTORY_LINES)]
    lines += ["", "replay:", f"  {replay}"]
    return "\n".join(lines)
