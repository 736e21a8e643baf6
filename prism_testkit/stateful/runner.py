"""Running a stateful machine as one pytest test, and judging what its examples recorded.

:class:`StatefulRun` runs a Hypothesis ``RuleBasedStateMachine`` under the active profile with
short examples, judges each example's verdicts (valid ones go to the report; invalid ones fail
with the smallest witness, the verdicts and the whole history) and prints how to replay the
failure: the seed it chose, or the derandomised profile.

Each example's history is digested (:mod:`prism_testkit.simulation.digest`): a failure names
its digest, and the test's ``prism_simulation`` property carries the digest of all its examples.
In simulated mode the same seed gives the same digests, byte for byte.

On real servers a seed replays the data but not the timing, so every example's steps are
recorded as they are issued (:mod:`.recording`). A failure found in a hunt, or in a run given
``--prism-schedules=DIR``, writes the failing example's steps to a schedule file
(:mod:`prism_testkit.hunting.schedule`) and replays it once at once: the failure's report says
whether it reproduced, with the replay's own verdict. ``--prism-replay=FILE`` runs a schedule's
test by issuing its steps again instead of drawing examples.
"""

from __future__ import annotations

import hashlib
import random
import re
import shlex
import sys
import time
import unittest
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from prism_testkit.hunting import depth as depths
from prism_testkit.hunting.hunt import PLAN, ROUND_EXAMPLES, HuntPlan, HuntTally
from prism_testkit.hunting.schedule import REPLAY, ReplayResult, Schedule, ScheduleError, reproduces, write
from prism_testkit.patience import Unsettled
from prism_testkit.simulation.digest import combined_digest, history_digest
from prism_testkit.stateful.checkers import EMPTY, Verdict, judged_nothing
from prism_testkit.stateful.checkers.failover import failed_over, leaders_lost, tolerate_failover_losses
from prism_testkit.stateful.health import PROPERTY as REBUILT
from prism_testkit.stateful.health import InheritedDamage, Rebuilt, as_properties
from prism_testkit.stateful.history import History, OpType
from prism_testkit.stateful.latency import Series, Settles
from prism_testkit.stateful.recording import StepRecorder, record_steps, reissue, settle_strays

# How a round says its test was skipped (Hypothesis raises unittest's when it runs no example).
SKIPS = (unittest.SkipTest, pytest.skip.Exception)

if TYPE_CHECKING:
    from prism_testkit.runtime.env import PrismEnv
    from prism_testkit.stateful.timeline import FaultBand, Timeline

DEFAULT_SCHEDULES = ".prism-schedules"  # under the rootdir: where a hunt writes schedules without --prism-schedules
STEPS = 12  # rules per example: short histories shrink fast and read well
EXAMPLES = depths.DEFAULT  # per combination, unless --prism-depth or a long hunt says otherwise (stateful_settings)
HUNT_THRESHOLD = 100  # a profile with at least this many examples is a hunt: honour it
FAILOVER_PASS_EXAMPLES = 1  # a test whose drawn examples never failed over its failover cluster: this one does
FULL_HISTORY_LINES = 80  # failure messages include the whole history up to this length
DEPTH_PROPERTY = "prism_depth"  # the user property: the examples a stateful row drew (--prism-depth)
TIMELINES = "prism-timelines"  # the timelines' folder: beside the JSON, else the HTML report, else in basetemp


def active_settings() -> settings:
    """The settings of the active Hypothesis profile."""
    current = settings.default
    assert current is not None, "Hypothesis has no active profile"
    return current


def stateful_settings(cap: int | None = None, depth: depths.Depth | None = None) -> settings:
    """The active profile (prism-dev / prism-ci / prism-hunt), with short examples and an
    example count set by the depth (``--prism-depth``; every example restarts servers and waits
    out visibility timeouts). ``cap`` (a combination's backends' ``stateful_examples``) is the
    count at the default depth, scaled with the depth. A depth the run asked for is drawn
    whatever the profile's ``max_examples``; the default depth is lowered to a smaller profile's
    count. A long search's profile (prism-hunt) asked for its count: it is honoured, unless the
    run asked for a depth too."""
    base = active_settings()
    if base.max_examples >= HUNT_THRESHOLD and not (depth is not None and depth.given):
        examples = base.max_examples
    else:
        depth = depth or depths.Depth(EXAMPLES)
        examples = depth.for_row(cap)
        if not depth.given:
            examples = min(base.max_examples, examples)
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
        registry = prism_env.runtime.registry
        caps = [registry[name].stateful_examples for name in self.combination.slots.values()]
        # the fewest examples any of its backends asks for (see BackendSpec.stateful_examples)
        self.example_cap: int | None = min((cap for cap in caps if cap is not None), default=None)
        self.depth = depths.of(request.config)  # --prism-depth (validated with the options)
        self.profile = settings.get_current_profile_name()
        self.derandomized = active_settings().derandomize
        forced = request.config.getoption("hypothesis_seed", None)
        # Without derandomisation we pick the seed ourselves so the failure message can name it;
        # replaying with --hypothesis-seed=<it> gives the same seed back here.
        self.seed: int | None = None if self.derandomized else int(forced) if forced else random.getrandbits(32)
        # A hunt's rounds draw their seeds from this: given --hypothesis-seed, the same sequence
        # on every run and machine (a CI hunt that fails fails again), else a fresh one.
        # Seeded by the test's identity, not its node id: an installed package and a checkout
        # draw the same rounds (prism_testkit.hunting.identity).
        from prism_testkit.hunting.identity import identity_of

        self.identity = identity_of(self.node)
        self.round_seeds = random.Random(f"{forced}:{self.identity}") if forced else random.Random()
        self.failed: list[Verdict] = []
        self.failover_clusters: set[str] = set()  # backends of this test that fail over (its nemesis says)
        self.failed_over: set[str] = set()  # ... and those some example of it failed over
        self.forced_failovers: frozenset[str] = frozenset()  # owed by every example of the failover pass
        # a failover of these may lose what they acknowledged (they do not declare it survived)
        self.without_failover_promise = {
            name
            for name in self.combination.slots.values()
            if not prism_env.runtime.registry[name].properties.survives_failover
        }
        replay = request.config.stash.get(REPLAY, None)
        self.replaying = replay if replay is not None and replay[0].test == test_address(request.node) else None
        # The backends to simulate (--prism-simulate, every one of the combination simulable), or none;
        # a replay runs as its schedule's run did, whatever this command line says.
        backends = list(dict.fromkeys(self.combination.slots.values()))
        wanted = bool(request.config.getoption("prism_simulate", None) or request.config.getini("prism_simulate"))
        if self.replaying is not None:
            wanted = self.replaying[0].simulate
        # asked to simulate, but these backends are not simulable: the test runs on real time
        self.not_simulable = [n for n in backends if wanted and not prism_env.runtime.registry[n].simulable]
        self.simulated: list[str] = backends if wanted and not self.not_simulable else []
        self.digests: list[str] = []  # one per example, in the order they ran
        # the misbehaviour a simulated example may draw (--prism-buggify)
        self.buggify: frozenset[str] = frozenset()
        if self.simulated:
            from prism_testkit.simulation.buggify import parse

            allowed = request.config.getoption("prism_buggify", None) or request.config.getini("prism_buggify")
            if self.replaying is not None:
                allowed = ",".join(self.replaying[0].buggify) or None
            self.buggify = parse(allowed)
        self.failing_digest: str | None = None
        self.misbehaviour: Counter[str] = Counter()  # kind -> how often it fired, all examples
        self.judged = 0  # examples whose history held something to check
        self.vacuous = 0  # examples that wrote and read nothing (a short random run can)
        self.recorder: StepRecorder | None = None  # the steps of the latest example
        config = request.config
        self.plugins = [name for name in (config.option.plugins or []) if not name.startswith("no:")]
        given = config.getoption("prism_schedules", None) or config.getini("prism_schedules") or None
        if given is None and self.hunt is not None:
            given = str(config.rootpath / DEFAULT_SCHEDULES)
        self.schedules: Path | None = Path(given).absolute() if given else None
        self.schedule_file: Path | None = None  # the failure's, once written
        self.replayed: ReplayResult | None = None  # the failure's replay, tried once
        # --prism-timelines: "failing" (default), "all" or "none" (validated with the options)
        self.timelines = (
            config.getoption("prism_timelines", None) or config.getini("prism_timelines") or "failing"
        ).strip()
        self._request = request
        self._timeline_dir: Path | None = None
        self.failing_timeline: tuple[Path, Timeline] | None = None  # the latest failing example's, to write
        self.failing_replay: str | None = None  # the command that replays its failure (the report's "replay")
        # whose latency goes to the report: the failing example (the last failing is the shrunk
        # one: its history and heal time), else every judged example, end to end (only when the
        # run writes a report: the property is larger than the others)
        self.last_failing: tuple[History, int | None] | None = None
        reported = any(
            config.getoption(name, None) or config.getini(name) for name in ("prism_report", "prism_report_html")
        )
        self.latency: Series | None = Series() if reported else None
        self.settles: Settles | None = Settles() if reported else None  # every example's, after each fault

    def execute(self, factory: Callable[[], RuleBasedStateMachine]) -> None:
        """Run the machine under :func:`stateful_settings`; record the verdicts in the report."""
        if self.replaying is not None:
            try:
                self._replay_as_test(factory, *self.replaying)
            except InheritedDamage as inherited:
                raise AssertionError(f"{self.nodeid}: {inherited}") from None
            return
        self.check_replay_modes(self.seed_command(), "the replay line a failure of it prints")
        unrecorded = factory
        factory = self._recording(unrecorded)

        # A derandomised run's seed is the test identity's (search_seed), not Hypothesis's digest
        # of this function's source and the node id: the CI-profile searches, and the rules each
        # suite is proved to fire (tests/test_fault_rules_fire.py), move with neither.
        def make() -> RuleBasedStateMachine:
            return factory()

        # Per-test digest: its own example-database key (the same on every machine that runs
        # this test id). A derandomised search is seeded by the test's identity, whatever the
        # install layout or rootdir (prism_testkit.hunting.derandomised), not by this digest.
        make._hypothesis_internal_add_digest = self.nodeid.encode()  # type: ignore[attr-defined]
        make._hypothesis_internal_use_seed = self.search_seed()  # type: ignore[attr-defined]
        # Hypothesis only calls the "class" to make a machine: a factory with our digest will do.
        machine = cast("type[RuleBasedStateMachine]", make)
        try:
            self._search(machine, factory, unrecorded, make)
            if self.vacuous and not self.judged:
                raise AssertionError(
                    f"{self.nodeid}: none of its {self.vacuous} examples wrote or read anything, so "
                    "nothing was checked (a test that judges nothing must not pass)"
                )
        finally:
            for verdict in self.failed:  # the final (shrunk) failing example's verdicts
                self.env.record_verdict(verdict)
            self.node.user_properties.append(("prism_simulation", self.digest_property()))
            if self.failing_replay is not None:
                self.node.user_properties.append(("prism_replay_command", self.failing_replay))
            self.record_latency()
            self.record_settles()
            self.write_failing_timeline()

    def _search(
        self,
        machine: type[RuleBasedStateMachine],
        factory: Callable[[], RuleBasedStateMachine],
        unrecorded: Callable[[], RuleBasedStateMachine],
        make: Callable[[], RuleBasedStateMachine],
    ) -> None:
        """The test's search (or hunt). Damage an example found before its first step and
        could not rebuild away fails the test as inherited, unshrunk (see :mod:`.health`)."""
        try:
            if self.hunt is None:
                drawn = stateful_settings(self.example_cap, self.depth)
                self.node.user_properties.append((DEPTH_PROPERTY, self.depth_property(drawn.max_examples)))
                try:
                    run_state_machine_as_test(machine, settings=drawn)
                    self._failover_pass(factory)
                except Exception as exc:
                    self.keep_schedule(unrecorded, exc)
                    raise
                finally:
                    self.forced_failovers = frozenset()
            else:
                self._hunt(make, self.hunt, unrecorded)
        except InheritedDamage as inherited:
            raise AssertionError(f"{self.nodeid}: {inherited}") from None

    def search_seed(self, part: str = "") -> int | None:
        """The seed of this test's search (``part``: a second search of it): the chosen one,
        else, derandomised, its identity's (:func:`prism_testkit.hunting.derandomised.seed_of`)."""
        if self.seed is not None:
            return self.seed
        if not self.derandomized:
            return None
        from prism_testkit.hunting.derandomised import seed_of

        return seed_of(self.identity, part)

    def record_latency(self) -> None:
        """The latency samples and faults of the failing example, else of every judged example
        end to end, for the report's plot."""
        if self.latency is None:
            return
        from prism_testkit.stateful.latency import PROPERTY, latency_property

        if self.last_failing is not None:
            history, healed_at = self.last_failing
            found = {**latency_property(history, self.bands(history, healed_at), healed_at), "failing": True}
        elif self.latency.examples:
            found = self.latency.as_property()
        else:
            return
        self.node.user_properties.append((PROPERTY, found))

    def note_rebuilt(self, rebuilt: Sequence[Rebuilt]) -> None:
        """Clusters rebuilt before one of this test's examples (:mod:`.health`), for the report."""
        if rebuilt:
            self.node.user_properties.append((REBUILT, as_properties(list(rebuilt))))

    def note_settles(self, settles: Sequence[tuple[str, str, float]]) -> None:
        """An example's settle times after its faults (:attr:`Nemesis.settles
        <prism_testkit.stateful.nemesis.Nemesis.settles>`), kept for the report."""
        if self.settles is not None:
            for fault, backend, seconds in settles:
                self.settles.add(fault, backend, seconds)

    def record_settles(self) -> None:
        """The settle times after each fault of every example, for a cluster row's table and plot."""
        if self.settles:
            from prism_testkit.stateful.latency import SETTLES

            self.node.user_properties.append((SETTLES, self.settles.as_property()))

    def bands(self, history: History, healed_at: int | None) -> list[FaultBand]:
        """The faults of an example as bands: its history's, and load mode's stalls."""
        from prism_testkit.stateful.timeline import fault_bands

        return [*fault_bands(history, healed_at), *self._stalls(history, healed_at)]

    def depth_property(self, examples: int) -> dict[str, object]:
        """What the report says of this row's depth: the examples it drew and the run's depth."""
        return {"examples": examples, "depth": self.depth.label(), "cap": self.example_cap}

    def note_failover_clusters(self, backends: set[str]) -> None:
        """An example's nemesis names the backends of this test that fail over."""
        self.failover_clusters |= backends

    def owed_failovers(self) -> frozenset[str]:
        """The failover clusters of this test that none of its examples failed over."""
        return frozenset(self.failover_clusters - self.failed_over)

    def _failover_pass(self, factory: Callable[[], RuleBasedStateMachine]) -> None:
        """Where the drawn examples never failed a failover cluster over, one more (or
        :data:`FAILOVER_PASS_EXAMPLES`), each failing every such cluster over once after its
        first client operations (see
        :class:`~prism_testkit.stateful.machine.FaultMachine`) and judged like any: every test
        over a failover cluster is proved across a failover. A pass of its own, with its own
        example-database key, so the drawn search and its replays stay as they were."""
        owed = self.owed_failovers()
        if not owed:
            return
        self.forced_failovers = owed

        def make_failing_over() -> RuleBasedStateMachine:
            return factory()

        make_failing_over._hypothesis_internal_add_digest = self.nodeid.encode() + b" failover pass"  # type: ignore[attr-defined]
        make_failing_over._hypothesis_internal_use_seed = self.search_seed("failover pass")  # type: ignore[attr-defined]
        machine = cast("type[RuleBasedStateMachine]", make_failing_over)
        one_pass = settings(stateful_settings(self.example_cap, self.depth), max_examples=FAILOVER_PASS_EXAMPLES)
        run_state_machine_as_test(machine, settings=one_pass)
        if self.owed_failovers():
            raise AssertionError(f"{self.nodeid}: the failover pass did not fail over {sorted(self.owed_failovers())}")

    def _recording(self, factory: Callable[[], RuleBasedStateMachine]) -> Callable[[], RuleBasedStateMachine]:
        """``factory``, its machines recording their steps, each example's verdicts fresh."""

        def recorded() -> RuleBasedStateMachine:
            self.failed = []  # the verdicts of this example, should it fail
            machine = factory()
            self.recorder = self._recorder(machine)
            record_steps(machine, self.recorder)
            return machine

        return recorded

    @staticmethod
    def _recorder(machine: RuleBasedStateMachine) -> StepRecorder:
        namespace = getattr(machine, "ns", None)
        prefixes = (namespace.prefix,) if namespace is not None else ()
        env = getattr(machine, "env", None)
        faults = getattr(env, "faults", None)
        counted = (lambda: sum(faults.values())) if faults is not None else (lambda: 0)
        return StepRecorder(lambda: getattr(machine, "history", None), lambda: prefixes, counted)

    # -- schedules ----------------------------------------------------------------------------

    def keep_schedule(self, factory: Callable[[], RuleBasedStateMachine], error: BaseException) -> None:
        """Write the failing example's schedule (when this run keeps them) and replay it once;
        the failure's report gets both, whether the replay reproduced it or not."""
        if self.schedules is None or self.recorder is None or self.schedule_file is not None:
            return
        schedule = self.schedule(error)
        try:
            self.schedule_file = write(schedule, self.schedules)
        except OSError as exc:
            self.node.add_report_section("call", "prism schedule", f"cannot write it to {self.schedules}: {exc}")
            return
        from prism_testkit.hunting.replay import pytest_arguments

        replay_words = ["pytest", *pytest_arguments(schedule, self.schedule_file)]
        self.check_replay_modes(shlex.join(replay_words), f"the replay of its schedule {self.schedule_file}")
        try:
            self.replayed = self.replay_schedule(factory, schedule)
        except ScheduleError as exc:
            self.replayed = ReplayResult(False, f"the schedule cannot be replayed: {exc}")
        lines = [
            f"schedule: {self.schedule_file}",
            f"replay:   {self.replay_command(self.schedule_file)}",
            f"replayed once: {self.replayed.line()}",
            *(f"  {note}" for note in self.replayed.notes),
            "recorded steps:",
            schedule.render(),
        ]
        self.node.add_report_section("call", "prism schedule", "\n".join(lines))
        self.node.user_properties.append(
            ("prism_schedule", {"file": str(self.schedule_file), **self.replayed.as_property()})
        )

    def check_replay_modes(self, command: str, what: str) -> None:
        """Fail this test when ``command``, which replays it, would not run in this run's modes
        (virtual time, misbehaviour, load): such a replay searches elsewhere and does not bring
        the failure back. Checked in every stateful test, failing or not, so the suites a pattern
        author runs under --prism-simulate catch a replay that drops a flag, not only tests/."""
        from prism_testkit.faults.load import replay_argument

        words = shlex.split(command)
        wanted = ["--prism-simulate"] if self.simulated else []
        if self.buggify:
            wanted.append(f"--prism-buggify={','.join(sorted(self.buggify))}")
        if (load := replay_argument(self.node.config)) is not None:
            wanted.append(load)  # the burners, and this process's stalls drawn again
        if missing := [flag for flag in wanted if flag not in words]:
            raise AssertionError(
                f"{self.nodeid}: {what} drops {' '.join(missing)}: it would not run the example in this "
                f"run's modes, so a failure would not come back: {command}"
            )

    def schedule(self, error: BaseException) -> Schedule:
        """The latest example's steps, as a schedule of this test's failure ``error``."""
        from prism_testkit.faults.load import schedule_value

        assert self.recorder is not None
        return Schedule(
            test=test_address(self.node),
            nodeid=self.nodeid,
            backends=list(dict.fromkeys(self.combination.slots.values())),
            combination=dict(self.combination.slots),
            failure=failure_line(error, self.failed),
            signature=failure_signature(error, self.failed),
            steps=self.recorder.steps,
            seed=self.seed,
            profile=self.profile,
            simulate=bool(self.simulated),
            buggify=sorted(self.buggify),
            plugins=self.plugins,
            import_paths=import_paths(self.plugins),
            forced_failovers=sorted(self.forced_failovers),
            load=schedule_value(self.node.config),  # the load it ran under, with this process's seed
        )

    def replay_command(self, path: Path) -> str:
        """``prism-testkit replay FILE``, with the server binaries and environment settings of this run."""
        from prism_testkit.hunting.replay import binary_arguments, command_line, run_settings

        args = ["prism-testkit", "replay", str(path), *binary_arguments(self.chosen_binaries())]
        return command_line(args, run_settings())

    def chosen_binaries(self) -> dict[str, Path]:
        """The server binaries this run chose with ``--prism-binary``."""
        from prism_testkit.hunting.replay import chosen_binaries

        return chosen_binaries(self.node.config)

    def replay_schedule(self, factory: Callable[[], RuleBasedStateMachine], schedule: Schedule) -> ReplayResult:
        """Issue ``schedule``'s steps on a fresh machine, each completed before the next, and
        judge it as any example; what it gave. The run's own failure state is left as it was."""
        kept = (self.failed, self.failing_digest, list(self.digests), self.tally.examples, self.tally.faults)
        timeline = self.failing_timeline
        forced, self.failed = self.forced_failovers, []
        self.forced_failovers = frozenset(schedule.forced_failovers)  # the pass's failover, again
        try:
            error, notes = self._reissue(factory, schedule)
            if error is None:
                return ReplayResult(False, "passed: every checker found its history valid", notes)
            replayed = failure_signature(error, self.failed)
            verdict = failure_line(error, self.failed)
            if not reproduces(schedule.signature, replayed):
                verdict = f"failed another way: {verdict}"
            return ReplayResult(reproduces(schedule.signature, replayed), verdict, notes, error)
        finally:
            self.failed, self.failing_digest, self.digests, self.tally.examples, self.tally.faults = kept
            self.forced_failovers = forced
            if timeline is not None:  # a replay's own failure does not replace the failure's page
                self.failing_timeline = timeline

    def _reissue(
        self, factory: Callable[[], RuleBasedStateMachine], schedule: Schedule
    ) -> tuple[Exception | None, list[str]]:
        machine = factory()
        recorder = self._recorder(machine)
        notes: list[str] = []
        try:
            try:
                notes = reissue(machine, schedule.steps, recorder, settle_strays(machine))
            finally:
                machine.teardown()
        except ScheduleError:
            raise
        except Exception as exc:
            return exc, notes
        return None, notes

    def _replay_as_test(self, factory: Callable[[], RuleBasedStateMachine], schedule: Schedule, path: Path) -> None:
        """``--prism-replay``: this test is the schedule's; issue its steps instead of drawing
        examples. It fails when the failure reproduced; it passes, saying so, when it did not."""
        result = self.replay_schedule(factory, schedule)
        self.write_failing_timeline()
        self.node.user_properties.append(("prism_replay", {"file": str(path), **result.as_property()}))
        # the mode it replayed in, as a run's own examples say it (the summary's simulation line)
        replayed = {"examples": 1, "digest": None, "failing_digest": None}
        self.node.user_properties.append(("prism_simulation", {**self.digest_property(), **replayed}))
        lines = [f"replay of {path}: {result.line()}", f"recorded failure: {schedule.failure}"]
        lines += [f"  {note}" for note in result.notes]
        self.node.add_report_section("call", "prism replay", "\n".join(lines))
        if result.reproduced and result.error is not None:
            raise result.error
        if result.error is not None:  # it failed another way: shown, but it is not this failure
            self.node.add_report_section("call", "prism replay error", repr(result.error))

    def watched_modules(self, *more: str) -> tuple[str, ...]:
        """The modules that may not read real time in a simulated example: patterns, the
        simulated backends' drivers, suites, the stateful harness, and ``more``."""
        drivers = [self.env.runtime.registry[name].driver_class.__module__ for name in self.simulated]
        return ("prism_testkit.patterns", "prism_testkit.suites", "prism_testkit.stateful", *drivers, *more)

    def note_history(self, history: History, *prefixes: str) -> str:
        """Digest an example's history (``prefixes``, names made from the run id, masked)."""
        digest = history_digest(history.to_jsonl_text(), prefixes)
        self.digests.append(digest)
        return digest

    def digest_property(self) -> dict[str, object]:
        return {
            "simulated": bool(self.simulated),
            "not_simulable": self.not_simulable,
            "examples": len(self.digests),
            "digest": combined_digest(self.digests),
            "failing_digest": self.failing_digest,
            "misbehaviour": dict(sorted(self.misbehaviour.items())),
        }

    def _hunt(
        self,
        make: Callable[[], RuleBasedStateMachine],
        plan: HuntPlan,
        factory: Callable[[], RuleBasedStateMachine],
    ) -> None:
        """Rounds of :data:`ROUND_EXAMPLES` examples, each with a fresh seed, until this test's
        share of the budget is spent; a failure ends the hunt (Hypothesis shrinks it and saves
        it in the example database, which every later round and machine replays first)."""
        machine = cast("type[RuleBasedStateMachine]", make)
        started = time.monotonic()
        self.tally.allotted = plan.allot(self.nodeid)
        self.tally.test = self.nodeid
        # a slow backend's rounds are shorter, so its test looks at the budget as often
        round_examples = ROUND_EXAMPLES if self.example_cap is None else min(ROUND_EXAMPLES, self.example_cap)
        round_settings = settings(stateful_settings(), max_examples=round_examples, derandomize=False)
        self.derandomized = False  # every round has a seed of its own: the replay names it
        if plan.database is not None:
            round_settings = settings(round_settings, database=plan.database)
        try:
            while True:
                self.seed = self.round_seeds.getrandbits(32)
                make._hypothesis_internal_use_seed = self.seed  # type: ignore[attr-defined]
                try:
                    run_state_machine_as_test(machine, settings=round_settings)
                except SKIPS as exc:  # e.g. told to run no example and the database held none
                    self.tally.skipped = str(exc) or type(exc).__name__
                    raise
                except BaseException as exc:
                    self.tally.failed = True
                    self.tally.failure = failure_line(exc, self.failed)
                    self.tally.replay = self.replay().split("\n", 1)[0]
                    self.tally.seed = self.seed
                    self.tally.seed_replay = self.seed_command()
                    if isinstance(exc, Exception):
                        self.keep_schedule(factory, exc)
                    if self.schedule_file is not None and self.replayed is not None:
                        self.tally.schedule = str(self.schedule_file)
                        self.tally.replay = self.replay_command(self.schedule_file)
                        self.tally.replayed = self.replayed.line()
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

    def seed_command(self) -> str:
        """The command that draws this failure again, from its round's seed (or the derandomised
        profile), with the server binaries and environment settings of this run."""
        from prism_testkit.faults.load import replay_argument
        from prism_testkit.hunting.identity import command_target
        from prism_testkit.hunting.replay import binary_arguments, command_line, run_settings

        backends = ",".join(dict.fromkeys(self.combination.slots.values()))
        args = ["pytest", *command_target(self.node), f"--prism-backend={backends}"]
        if len(set(self.combination.slots.values())) > 1 or len(self.combination.slots) > 1:
            args.append("--prism-combinations=all")  # the combination exists whatever the covering set
        if self.simulated:
            args.append("--prism-simulate")
        if self.buggify:
            args.append(f"--prism-buggify={','.join(sorted(self.buggify))}")
        load = replay_argument(self.node.config)
        if load is not None:  # the same burners, and this process's stalls drawn again
            args.append(load)
        args += binary_arguments(self.chosen_binaries())
        if self.derandomized:
            args.append(f"--hypothesis-profile={self.profile}")
        else:
            args += ["-p", "no:randomly", f"--hypothesis-seed={self.seed}"]
        return command_line(args, run_settings())

    def replay(self) -> str:
        """The command that runs this failure again, first, and why it gives the same examples.
        A hunt sharing a database saves its failures there, not in .hypothesis/: one replayed
        from there is replayed from there again (its round's seed would search afresh)."""
        from prism_testkit.faults.load import replay_argument
        from prism_testkit.redaction import redact

        seeded = self.seed_command()
        plan = self.hunt
        shared = plan.database_label if plan is not None else None
        alternative = None
        if self.derandomized:
            command, how = seeded, "derandomised profile: the same examples run again and shrink to this failure"
        elif plan is None or shared is None:
            command = seeded
            how = "same seed, same examples (the example database in .hypothesis/ also replays it first)"
        else:
            from prism_testkit.hunting.hunt import database_replay

            label = redact(shared)  # the harness gave it redacted; this text goes to reports too
            saved = database_replay({"replay": seeded, "test": self.nodeid}, label)
            secret = " (with the database's credentials in place of ***)" if "***" in label else ""
            if plan.from_database.get(self.nodeid):
                command = saved
                how = (
                    f"this failure was replayed from the shared example database {label}, where it is saved: "
                    f"this command replays it from there{secret}"
                )
                alternative = f"or from its round's seed, which searches afresh instead of replaying: {seeded}"
            else:
                command = seeded
                how = (
                    f"same seed, same examples; the failure is saved in the shared example database {label}, "
                    f"and `{saved}` replays it from there{secret}"
                )
        command = (
            f"{command}\n  ({how}; under --hypothesis-profile=prism-ci Hypothesis also "
            "prints a @reproduce_failure blob, and the minimal steps are printed below as a program)"
        )
        if alternative is not None:
            command += f"\n  {alternative}"
        if not self.simulated:  # say what a replay on real servers cannot pin down
            loaded = " (the load's burners and stall draws replay; where a stall lands in a request does not)"
            command += (
                "\n  not pinned down on real servers: the timing of their threads and of this machine"
                + (loaded if replay_argument(self.node.config) else "")
                + "; a failure that needs one interleaving may pass on replay (--prism-schedules records"
                " the steps and replays them once at once, saying whether it reproduced)"
            )
        return command

    def unsettled(
        self, history: History, error: Unsettled, *, healed_at: int | None = None, prefixes: Sequence[str] = ()
    ) -> NoReturn:
        """Fail an example whose drain or final read did not settle: a liveness verdict with
        what it waited for, the history and the replay; no checker ran, so nothing is "lost".
        ``healed_at`` and ``prefixes``: for its timeline (see :meth:`judge`)."""
        self.tally.examples += 1
        self.judged += 1
        self.last_failing = (history, healed_at)
        self.failed = []
        self.failing_digest = self.digests[-1] if self.digests else None
        replay = self.replay()
        self.failing_replay = replay.split("\n", 1)[0]
        summary = next((line for line in str(error).splitlines() if line.strip()), "unsettled")
        page = self._timeline(history, [], summary, replay, healed_at, prefixes, failed=True)
        lines = [str(error)]
        if page is not None:
            lines.append(f"timeline: {page}")
        lines += ["", f"full history ({len(history)} ops):", history.render(FULL_HISTORY_LINES)]
        lines += ["", "replay:", f"  {replay}"]
        error.args = ("\n".join(lines),)
        raise error

    def judge(
        self,
        history: History,
        verdicts: Sequence[Verdict],
        what: str,
        *,
        healed_at: int | None = None,
        prefixes: Sequence[str] = (),
    ) -> None:
        """Record valid verdicts; fail with witness, explanation, timeline and replay for
        invalid ones. ``healed_at``: when the end-of-example heal ended (where the faults
        still open then end on the timeline); ``prefixes``: the namespace, masked on it."""
        self.tally.examples += 1
        self.tally.faults += sum(1 for op in history if op.process == "nemesis" and op.type is OpType.INVOKE)
        self.failed_over |= failed_over(history) | leaders_lost(history)
        verdicts = tolerate_failover_losses(verdicts, history, self.without_failover_promise, self.combination.slots)
        if judged_nothing(verdicts):
            self.vacuous += 1  # one empty example is not a failure; a test of only those is
            return
        self.judged += 1
        bad = [v for v in verdicts if not v.valid and set(v.anomalies) != {EMPTY}]
        for verdict in verdicts:
            if verdict.valid:
                self.env.record_verdict(verdict)
        if not bad:
            if self.latency is not None:
                self.latency.add(history, self.bands(history, healed_at), healed_at)
            self._timeline(history, verdicts, f"{what}: valid", None, healed_at, prefixes, failed=False)
            return
        self.failed = bad
        self.last_failing = (history, healed_at)
        self.failing_digest = self.digests[-1] if self.digests else None
        replay = self.replay()
        self.failing_replay = replay.split("\n", 1)[0]
        if self.failing_digest is not None:
            replay += f"\n  history digest {self.failing_digest}" + (
                " (simulated: the replay gives the same digest)" if self.simulated else ""
            )
        summary = invalid_line(bad, what)
        page = self._timeline(history, verdicts, summary, replay, healed_at, prefixes, failed=True)
        raise AssertionError(failure_message(history, bad, what, replay, page))

    # -- timelines ----------------------------------------------------------------------------

    def _timeline(
        self,
        history: History,
        verdicts: Sequence[Verdict],
        summary: str,
        replay: str | None,
        healed_at: int | None,
        prefixes: Sequence[str],
        *,
        failed: bool,
    ) -> Path | None:
        """The page of this example under ``--prism-timelines``: with ``all``, written now as
        ``<test>/example-N.html``; a failing example's is also kept to be written as
        ``<test>.html`` when the test ends (the last failing example is the one Hypothesis
        reports, after shrinking). The failing page's path, or None."""
        if self.timelines == "none" or (not failed and self.timelines != "all"):
            return None
        from prism_testkit.stateful.timeline import Timeline, fault_bands, write_timeline

        notes = [f"replay: {replay.splitlines()[0]}"] if replay else []
        if self.simulated:
            notes.append(f"simulated on {', '.join(self.simulated)}")
        timeline = Timeline(
            f"{self.nodeid} · example {self.tally.examples}",
            history,
            verdicts,
            summary=summary,
            notes=notes,
            faults=sorted([*fault_bands(history, healed_at), *self._stalls(history, healed_at)], key=lambda b: b.start),
            virtual=bool(self.simulated),
            prefixes=tuple(prefixes),
            failed=failed,
        )
        folder = self.timeline_dir()
        name = _file_name(self.nodeid)
        if self.timelines == "all":
            try:
                write_timeline(folder / name / f"example-{self.tally.examples}.html", timeline)
            except OSError as exc:
                self.node.add_report_section("call", "prism timeline", f"cannot write it to {folder}: {exc}")
        if not failed:
            return None
        path = folder / f"{name}.html"
        self.failing_timeline = (path, timeline)
        return path

    def _stalls(self, history: History, healed_at: int | None) -> list[FaultBand]:
        """Load mode's stalls of this process's servers during the example (real time only)."""
        if self.simulated or not len(history):
            return []
        from prism_testkit.faults.jitter import stalls_between
        from prism_testkit.stateful.timeline import band_at

        end = healed_at if healed_at is not None else history[-1].time
        bands = []
        for label, start, stop in stalls_between(history[0].time, end):
            seconds = (stop - start) / 1e9
            band = band_at(history, "stall", "stall", label, start, stop, f"SIGSTOP for {seconds:.3f} s (load mode)")
            if band is not None:
                bands.append(band)
        return bands

    def timeline_dir(self) -> Path:
        """Where this run's timelines go: ``prism-timelines/`` beside the ``--prism-report``
        file, else beside the ``--prism-report-html`` page (whose links to them must resolve
        from a CI artifact of its folder, and outlive basetemp's last three runs), else under
        pytest's basetemp."""
        if self._timeline_dir is None:
            config = self.node.config
            report = next(
                (
                    found
                    for name in ("prism_report", "prism_report_html")
                    if (found := config.getoption(name, None) or config.getini(name) or None)
                ),
                None,
            )
            if report:
                self._timeline_dir = Path(report).absolute().parent / TIMELINES
            else:
                factory = self._request.getfixturevalue("tmp_path_factory")
                self._timeline_dir = Path(factory.getbasetemp()) / TIMELINES
        return self._timeline_dir

    def write_failing_timeline(self) -> None:
        """Write the page of the test's failing example (named in its failure message)."""
        if self.failing_timeline is None:
            return
        path, timeline = self.failing_timeline
        self.failing_timeline = None
        from prism_testkit.stateful.timeline import write_timeline

        try:
            write_timeline(path, timeline)
        except OSError as exc:
            self.node.add_report_section("call", "prism timeline", f"cannot write {path}: {exc}")
            return
        self.node.user_properties.append(("prism_verdict", timeline.summary))  # junit, pytest-html
        self.node.user_properties.append(("prism_timeline", str(path)))


def _file_name(nodeid: str) -> str:
    """A test's timeline file name: its node id with what a file name cannot hold replaced,
    shortened with a hash of the id when long."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid.replace("::", ".")).strip("_")
    if len(name) <= 120:
        return name
    return f"{name[:110]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"


def failure_line(error: BaseException, verdicts: Sequence[Verdict]) -> str:
    """One line for a hunt's summary: the checkers' verdicts, or the error when no checker ran."""
    if verdicts:
        return "; ".join(f"{v.checker}: INVALID ({', '.join(sorted(v.anomalies))})" for v in verdicts)
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    if isinstance(error, Unsettled):
        return first[:300]
    return f"{type(error).__name__}: {first}"[:300]


def failure_signature(error: BaseException, verdicts: Sequence[Verdict]) -> list[str]:
    """What a replay must show again: each invalid verdict's ``checker:anomaly``, or the error's type."""
    if verdicts:
        return sorted({f"{v.checker}:{name}" for v in verdicts for name in v.anomalies})
    if isinstance(error, Unsettled):
        return [error.signature]
    return [f"error:{type(error).__name__}"]


def import_paths(modules: Sequence[str]) -> list[str]:
    """The ``sys.path`` entries ``modules`` were imported from, so a replay can import them too."""
    found = []
    for name in modules:
        module = sys.modules.get(name)
        where = getattr(module, "__file__", None)
        if where is None:
            continue
        file = Path(where)
        depth = name.count(".") + (1 if file.name == "__init__.py" else 0)
        if depth < len(file.parents):
            found.append(str(file.parents[depth]))
    return list(dict.fromkeys(found))


def test_address(node: pytest.Item) -> str:
    """The test as a path pytest can be given from any directory: ``/abs/file.py::name[params]``."""
    return f"{node.path}::{node.name}"


def invalid_line(bad: Sequence[Verdict], what: str) -> str:
    """``wal ...: INVALID (1 lost)``: the first line of an invalid example's message."""
    names = ", ".join(f"{len(group)} {name}" for v in bad for name, group in v.anomalies.items())
    return f"{what}: INVALID ({names})"


def failure_message(
    history: History, bad: Sequence[Verdict], what: str, replay: str, timeline: Path | None = None
) -> str:
    """What an invalid example reports: anomaly counts, the timeline's file, smallest
    witnesses, the verdicts' explanations, the history (or its start) and the replay command."""
    lines = [invalid_line(bad, what)]
    if timeline is not None:
        lines.append(f"timeline: {timeline} (open it in a browser: lanes, fault bands, the anomalies marked)")
    lines.append("")
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
