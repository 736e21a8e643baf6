"""What a run reports on the terminal and in its files: progress lines, the suites x
combinations summary, depth, load, simulation, replays and hunts, and the JSON, HTML and
metrics files the options ask for. Registered per run, it sees every test report (the
controller's, under xdist)."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from prism_testkit.plugin.harness import DEALT_SCOPES, HARNESS, OPTIONS, harness, run_facts
from prism_testkit.plugin.load_mode import load_summary
from prism_testkit.plugin.tracebacks import keep_only_where_it_struck
from prism_testkit.report.progress import Progress, named_dirs
from prism_testkit.report.progress import interval as progress_interval
from prism_testkit.report.progress import outside as outside_group
from prism_testkit.suite import declaration_of

if TYPE_CHECKING:
    from prism_testkit.hunting.depth import Depth
    from prism_testkit.report.results import FailureFacts

DURATIONS_CACHE = "prism-testkit/durations"  # pytest's cache key: node id -> seconds, the last runs'


def _durations(found: object) -> dict[str, float]:
    """The cached durations, whatever the cache file holds (it is a file anyone may edit)."""
    if not isinstance(found, dict):
        return {}
    return {str(test): float(s) for test, s in found.items() if isinstance(s, int | float) and s >= 0}


# The main job's durations (the default depth, every backend, one machine), shipped with the
# package: a first run, which has none of its own yet, still weighs each test by them.
SHIPPED = Path(__file__).parents[1] / "suites" / "durations.json.gz"


class Recorded(Mapping[str, float]):
    """Recorded seconds by node id; a test of the harness's own suites is also found by its
    identity (a report records both, the shipped file identities only: it knows no layout).
    ``path``, when given, is read on first use: a run that never weighs a test never reads it."""

    def __init__(self, seconds: Mapping[str, float] | None = None, path: Path | None = None) -> None:
        self._seconds: dict[str, float] | None = dict(seconds or {}) if path is None else None
        self._path = path

    @property
    def seconds(self) -> dict[str, float]:
        if self._seconds is None:
            assert self._path is not None
            from prism_testkit.registry.shards import read_durations

            try:
                self._seconds = read_durations(self._path)
            except ValueError:
                self._seconds = {}  # a damaged or missing file weighs nothing: tests/test_shipped_durations.py
        return self._seconds

    def __getitem__(self, nodeid: str) -> float:
        from prism_testkit.hunting.identity import own_suite_identity

        seconds = self.seconds
        if nodeid in seconds:
            return seconds[nodeid]
        identity = own_suite_identity(nodeid)
        if identity is not None and identity in seconds:
            return seconds[identity]
        raise KeyError(nodeid)

    def __iter__(self) -> Iterator[str]:
        return iter(self.seconds)

    def __len__(self) -> int:
        return len(self.seconds)


def recorded_durations(config: pytest.Config) -> Mapping[str, float]:
    """An earlier run's seconds per test, by node id (and identity, from a report): those given
    (``--prism-shard-durations``), else the last runs' here (pytest's cache, when it is on), else
    the main job's shipped with the package (:data:`SHIPPED`: a first run's). What the time left
    and the order xdist deals the tests in weigh each test by."""
    from prism_testkit.registry.shards import DURATIONS

    given: dict[str, float] = config.stash.get(DURATIONS, {})
    if given:
        return Recorded(given)
    cache = getattr(config, "cache", None)
    if cache is not None and not hasattr(config, "workerinput"):
        cached = _durations(cache.get(DURATIONS_CACHE, {}))
        if cached:
            return Recorded(cached)
    return Recorded(path=SHIPPED)


class Reporting:
    """The run's reporting plugin (registered as ``prism-reporting``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.hunts: list[dict[str, Any]] = []
        self.replays: list[tuple[str, dict[str, Any]]] = []  # schedules written or replayed, per test
        self.simulations: dict[str, dict[str, Any]] = {}  # stateful test -> its prism_simulation property
        self.started = time.time()  # replaced at session start; configure may be long before
        self.clock = self.last_progress = time.monotonic()
        self.progress = Progress(
            config.rootpath, lambda: named_dirs(config.args, config.invocation_params.dir, config.option.pyargs)
        )
        # tests without a suite: counted here, since under xdist the harness is set up only
        # when the first suite test reports
        self.outside_suites: dict[str, list[str]] = {}
        self.outside_failures: dict[str, FailureFacts] = {}  # test -> its first failing phase
        self.outside_identities: dict[str, str] = {}  # test -> its identity (hunting.identity)
        self.outside_durations: dict[str, float] = {}  # test -> seconds (setup + call + teardown)
        from prism_testkit.report.results import shard_of

        self.shard = shard_of(config)  # a bad PRISM_SHARD is a usage error now, not at the end
        self.metrics: list[tuple[str, list[dict[str, Any]]]] = []  # (test, its patterns' final metrics)

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter formats the interrupt
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if not self.config.option.fulltrace:
            keep_only_where_it_struck(excinfo)

    def pytest_sessionstart(self) -> None:
        self.started, self.clock = time.time(), time.monotonic()
        self.last_progress = self.clock
        # the time left weighs each test by an earlier run's durations, on as many workers as
        # xdist starts (a number here once xdist has read -n; else as many as are seen at once)
        self.progress.recorded = recorded_durations(self.config)
        workers = [getattr(self.config.option, name, None) for name in ("numprocesses", "maxprocesses")]
        self.progress.workers = min([n for n in workers if isinstance(n, int) and n > 0] or [1])

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.progress.collected(
            {
                item.nodeid: decl.name if (decl := declaration_of(item)) is not None else outside_group(item.nodeid)
                for item in session.items
            }
        )

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if not hasattr(self.config, "workerinput"):  # under xdist the controller hears of each start too
            self.progress.started(nodeid, time.monotonic() - self.clock)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.progress.collected_ids(ids)  # the controller collects nothing: the totals come from here

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes the properties
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped or report.when == "teardown":
            from prism_testkit.hunting.hunt import PLAN

            plan = self.config.stash.get(PLAN, None)
            if plan is not None:
                plan.ended(report.nodeid)
        if report.when == "teardown":
            self.metrics.extend(
                (report.nodeid, value)
                for key, value in report.user_properties
                if key == "prism_metrics" and isinstance(value, list)
            )
        if report.when == "call":
            self.hunts.extend(
                value for key, value in report.user_properties if key == "prism_hunt" and isinstance(value, dict)
            )
            self.simulations.update(
                (report.nodeid, value)
                for key, value in report.user_properties
                if key == "prism_simulation" and isinstance(value, dict)
            )
            self.replays.extend(
                (report.nodeid, value)
                for key, value in report.user_properties
                if key in ("prism_schedule", "prism_replay") and isinstance(value, dict)
            )
        # Under xdist the controller collects nothing: the first report of a suite test (it
        # carries its suite in user_properties) is what tells it the harness is in use.
        if not any(key == "prism" for key, _ in report.user_properties):
            from prism_testkit.report.results import category, failure_entry, identity_of_report, outside_test_id

            if not hasattr(self.config, "workerinput"):
                test = outside_test_id(report)
                # every phase's: what --prism-shard-durations balances the project's own tests by
                self.outside_durations[test] = self.outside_durations.get(test, 0.0) + report.duration
                if (found := category(report)) is not None:
                    self.outside_suites.setdefault(test, []).append(found)
                    if (identity := identity_of_report(report)) is not None:
                        self.outside_identities[test] = identity
                    if report.failed and test not in self.outside_failures:
                        self.outside_failures[test] = failure_entry(report, test)
                self._progress(report, outside_group(report.nodeid))
        else:
            from prism_testkit.report.results import as_json_properties

            if not hasattr(self.config, "workerinput"):  # a worker sends its reports through execnet: plain types only
                as_json_properties(report)
                suite = next(
                    str(value["suite"])
                    for key, value in report.user_properties
                    if key == "prism" and isinstance(value, dict)
                )
                self._progress(report, suite)
            harness(self.config).results.record(report)

    def _progress(self, report: pytest.TestReport, group: str) -> None:
        """Now and then a line with the suites that moved, their totals and the time left
        (:mod:`prism_testkit.report.progress`); ``group``: the test's suite, or its module's
        group outside the suites."""
        self.progress.spend(group, report.duration, report.nodeid)
        if report.when != "teardown":
            return
        self.progress.finished(group, report.nodeid)
        now = time.monotonic()
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.config.get_verbosity() < -1:
            return
        every = progress_interval(os.environ.get("PRISM_PROGRESS_EVERY"), bool(reporter.isatty))
        if now - self.last_progress < every:
            return
        reporter.ensure_newline()
        # Under xdist the dots leave the line open without pytest knowing (ensure_newline
        # does not see them): end it by what its writer counted, or the line glues onto them.
        if getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0):
            reporter.write("\n")
        self.progress.scopes = self.config.stash.get(DEALT_SCOPES, None)
        reporter.write_line(self.progress.line(now - self.clock))
        self.last_progress = now

    def pytest_sessionfinish(self) -> None:
        """This run's durations into pytest's cache, for the next run's time left: only in a run
        that used the harness (an unrelated run stays untouched), merged over the last ones so a
        run of a few tests keeps the others'."""
        cache = getattr(self.config, "cache", None)
        measured = self.progress.measured
        if cache is None or not measured or hasattr(self.config, "workerinput"):
            return
        if self.config.stash.get(HARNESS, None) is None:
            return
        cache.set(DURATIONS_CACHE, {**_durations(cache.get(DURATIONS_CACHE, {})), **measured})

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        found = self.config.stash.get(HARNESS, None)
        if found is None or hasattr(self.config, "workerinput"):
            return
        if not found.header_shown:
            for line in found.backend_lines():
                terminalreporter.write_line(line)
        results = found.results
        results.run = run_facts(self.started, time.monotonic() - self.clock)
        results.outside_suites = {test: "+".join(found) for test, found in self.outside_suites.items()}
        results.outside_failures, results.shard = dict(self.outside_failures), self.shard
        results.durations.update((test, seconds) for test, seconds in self.outside_durations.items())
        for test, identity in self.outside_identities.items():
            results.identify(test, identity)
        results.summarize(terminalreporter)
        if found.depth is not None and results.depths:
            self._summarize_depth(terminalreporter, found.depth)
        load = load_summary(self.config)
        if load is not None:
            terminalreporter.write_line(load)
        results.simulations = dict(self.simulations)
        if self.config.stash[OPTIONS].simulate:
            self._summarize_simulation(terminalreporter)
        if self.hunts or self.config.stash[OPTIONS].hunt is not None:
            self._summarize_hunt(terminalreporter)
            results.hunts = self.hunts
        elif self.replays:
            self._summarize_replays(terminalreporter)
        report_path = self.config.stash[OPTIONS].report
        if report_path is not None:
            results.write(report_path)
            terminalreporter.write_line(f"prism-testkit report written to {report_path}")
        html_path = self.config.stash[OPTIONS].report_html
        if html_path is not None:
            from prism_testkit.report.html import write_html  # paid for only by a run that asks

            write_html(html_path, results.report())
            terminalreporter.write_line(f"prism-testkit HTML report written to {html_path}")
        metrics_path = self.config.stash[OPTIONS].metrics
        if metrics_path is not None:
            from prism_testkit.pattern_sdk.metrics import per_test_exposition

            partial = metrics_path.with_name(metrics_path.name + ".tmp")
            partial.write_text(per_test_exposition(self.metrics))
            partial.replace(metrics_path)  # a reader never sees half a file
            terminalreporter.write_line(f"prism-testkit metrics written to {metrics_path}")

    def _summarize_depth(self, terminalreporter: pytest.TerminalReporter, depth: Depth) -> None:
        """How deep the stateful rows searched, and the command that searches deeper."""
        from prism_testkit.hunting.depth import HUNT_HINT, deeper_command

        results = self.config.stash[HARNESS].results
        drawn = sorted(set(results.depths.values()))
        args = [arg for arg in self.config.invocation_params.args if not str(arg).startswith("--prism-depth")]
        again = shlex.join(["pytest", *map(str, args)])
        deeper, hunt = f"{again} {deeper_command(depth)}", f"{again} {HUNT_HINT}"
        results.depth = {"asked": depth.label(), "drawn": drawn, "deeper": deeper, "hunt": hunt}
        each = "/".join(map(str, drawn))
        terminalreporter.write_line(
            f"prism-testkit depth: {len(results.depths)} stateful tests drew {each} examples each "
            f"({depth.source()}); to search deeper: {deeper}"
        )
        if deeper_command(depth) != HUNT_HINT:
            terminalreporter.write_line(f"  or hunt for a time instead: {hunt}")

    def _summarize_simulation(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Under --prism-simulate, say which stateful tests ran on real time, and why."""
        simulated = [test for test, sim in self.simulations.items() if sim.get("simulated")]
        real = {test: sim.get("not_simulable") or [] for test, sim in self.simulations.items() if test not in simulated}
        terminalreporter.write_line(
            f"prism-testkit simulation: {len(simulated)} stateful tests on virtual time, {len(real)} on real time"
        )
        for test, backends in real.items():
            terminalreporter.write_line(f"  real time: {test} (not simulable: {', '.join(backends) or '?'})")

    def _summarize_replays(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Schedules written (and replayed once) by failing tests, or this run's replay."""
        terminalreporter.section("prism-testkit replay")
        for test, replay in self.replays:
            head = "reproduced" if replay.get("reproduced") else "did not reproduce"
            terminalreporter.write_line(f"{test}: {head}: {replay.get('verdict')}")
            terminalreporter.write_line(f"  schedule: {replay.get('file')}")
            for note in replay.get("notes") or []:
                terminalreporter.write_line(f"  {note}")

    def _summarize_hunt(self, terminalreporter: pytest.TerminalReporter) -> None:
        from prism_testkit.hunting.hunt import PLAN, failure_lines

        plan = self.config.stash.get(PLAN, None)
        total = {name: sum(h[name] for h in self.hunts) for name in ("rounds", "examples", "faults", "seconds")}
        failed = sum(1 for h in self.hunts if h["failed"])
        skipped = sum(1 for h in self.hunts if h.get("skipped"))
        terminalreporter.section("prism-testkit hunt")
        terminalreporter.write_line(
            f"{len(self.hunts)} stateful tests hunted for {total['seconds']:.0f}s in all: {total['examples']} "
            f"examples in {total['rounds']} rounds, {total['faults']} faults injected, {failed} failing"
            + (f", {skipped} skipped" if skipped else "")
        )
        for hunt in self.hunts:
            if hunt["failed"]:
                for line in failure_lines(hunt):
                    terminalreporter.write_line(line)
        where = plan.database_label if plan is not None and plan.database_label else "the local .hypothesis directory"
        terminalreporter.write_line(
            f"failures found are saved in {where}: a run with the same --prism-hunt-db replays them first"
        )
