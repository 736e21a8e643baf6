"""Results per suite x combination, the terminal summary and the JSON report.

Items carry their suite and combination in ``user_properties`` so that the numbers arrive
with each test report, also from xdist workers: only the process that sees every report (the
controller, or the single process of a serial run) aggregates and writes.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar

import pytest

from prism_testkit import findings
from prism_testkit.report import unavailable_faults
from prism_testkit.report.merge import (
    KINDS,
    PHASE_PARTS,
    ROW_COUNTS,
    Outcomes,
    found_counts,
    outcome_counts,
    plural,
    row_colour,
)

if TYPE_CHECKING:  # pydantic: imported by a run that writes a report, not by a plain run
    from prism_testkit.report.shape import Bucket, OneTest, PerTest, Report, Row, UnavailableBackend

PROPERTY = "prism"
ANOMALIES = "prism_anomalies"
KNOWN_FINDING = findings.PROPERTY  # a test judged by prism_testkit.findings: its verdict
RowKey = tuple[str, str | None, tuple[tuple[str, str], ...]]  # suite, namespace, combination
# A user property's value as a test left it (plain JSON types, also from an xdist worker): its keys
# are the module's that wrote it (a hunt's, a power cut's, a verdict's); the report's model checks
# it when the report is built.
Property = dict[str, Any]  # untyped: what a test put in its user properties, checked when the report is built


class ItemFacts(TypedDict, total=False):
    """The ``prism`` user property of a suite test: its row, and why it has none."""

    suite: str
    combination: dict[str, str]
    no_combination: str | None
    namespace: str | None
    covered_by: dict[str, str]  # replicated backend -> the twin whose row runs in its place
    unavailable_fit: list[str]  # the unavailable backends whose declared capabilities fit the suite


class FailureFacts(TypedDict, total=False):
    """A failing test's entry of the report's ``failures`` (:class:`~.shape.Failure`)."""

    test: str
    suite: str | None
    combination: dict[str, str] | None
    when: str
    message: str


class ShardFacts(TypedDict):
    """Which shard of a sharded run this is (:class:`~.shape.Shard`)."""

    index: int
    count: int
    selection: str


class DepthFacts(TypedDict, total=False):
    """The run's depth (:class:`~.shape.Depth`)."""

    asked: str
    drawn: list[int]
    deeper: str
    hunt: str


def item_properties(
    suite: str,
    slots: dict[str, str],
    no_combination: str | None,
    namespace: str | None = None,
    covered_by: dict[str, str] | None = None,
    unavailable_fit: list[str] | None = None,
) -> tuple[str, ItemFacts]:
    found: ItemFacts = {
        "suite": suite,
        "combination": slots,
        "no_combination": no_combination,
        "namespace": namespace,
    }
    if covered_by:
        found["covered_by"] = dict(covered_by)
    if unavailable_fit:
        found["unavailable_fit"] = list(unavailable_fit)
    return (PROPERTY, found)


def junit_properties(suite: str, slots: dict[str, str], namespace: str | None = None) -> list[tuple[str, str]]:
    """Flat string properties, one per fact, for ``--junitxml`` (CI UIs show a testcase's
    properties; the ``prism`` property above is a dict, which junitxml can only repr)."""
    combination = " ".join(f"{slot}={backend}" for slot, backend in slots.items()) or "no-runnable-combination"
    found = [("prism_suite", suite), ("prism_combination", combination)]
    found += [(f"prism_slot_{slot}", backend) for slot, backend in slots.items()]
    if namespace:
        found.append(("prism_namespace", namespace))
    return found


BACKEND_FAILED = "prism_backend_failed"
# the user property a stateful test records the examples it drew under (--prism-depth; the
# stateful runner writes it: prism_testkit.stateful.runner.DEPTH_PROPERTY)
DEPTH = "prism_depth"


def backend_failure_property(backend: str, reason: str) -> tuple[str, dict]:
    return (BACKEND_FAILED, {"backend": backend, "reason": reason})


SERVERS = "prism_servers"


def server_properties(versions: dict[str, str | None]) -> tuple[str, dict]:
    return (SERVERS, dict(versions))


def anomaly_properties(
    anomalies: Counter[str],
    tolerated: Counter[str],
    faults: Counter[str] | None = None,
    verdicts: Counter[str] | None = None,
) -> tuple[str, dict]:
    found = {"anomalies": found_counts(anomalies), "tolerated": found_counts(tolerated)}
    judged = {"faults": found_counts(faults or Counter()), "verdicts": found_counts(verdicts or Counter())}
    return (ANOMALIES, {**found, **judged})


class JsonProperty(dict):
    """A dict-valued user property that junitxml writes as JSON (it writes ``str(value)``,
    which for a plain dict is a Python repr no CI tool can parse)."""

    def __str__(self) -> str:
        return json.dumps(self, sort_keys=True, default=str)


def as_json_properties(report: pytest.TestReport) -> None:
    """Make the dict-valued user properties of ``report`` render as JSON. Done on the process
    that writes the XML (under xdist the controller, where reports arrive as plain dicts)."""
    report.user_properties = [
        (key, JsonProperty(value) if isinstance(value, dict) and not isinstance(value, JsonProperty) else value)
        for key, value in report.user_properties
    ]


def _prism_property(report: pytest.TestReport, name: str = PROPERTY) -> Property | None:
    for key, value in report.user_properties:
        if key == name and isinstance(value, dict):  # user_properties hold objects of any kind
            return value
    return None


# The attribute the plugin sets on each test report (plugin.pytest_runtest_makereport): the test's
# package-relative identity (hunting.identity), which a report writes beside its node id. Not a user
# property, which junitxml would print on every testcase; xdist carries a report's attributes.
IDENTITY = "prism_identity"


def identity_of_report(report: pytest.TestReport) -> str | None:
    found = getattr(report, IDENTITY, None)
    return found if isinstance(found, str) and found else None


def _test_id(report: pytest.TestReport) -> str:
    """One id per test. The node id alone is not: suites collected with ``--pyargs`` from
    outside the rootdir get ids without their file (``::test_purge[backend=memstore]`` for
    the key-value and the log suite alike); then the id is prefixed with the file."""
    path = report.location[0]
    return report.nodeid if report.nodeid.startswith(path) else f"{path}::{report.nodeid}"


def category(report: pytest.TestReport) -> str | None:
    """What this phase adds to pytest's own tally (None: nothing). As pytest counts: a failed
    setup or teardown is an error, also after a passed or failed call; xfail and xpass are
    counted as skipped and passed."""
    return PHASE_PARTS[(report.when, report.outcome)]


def first_line(report: pytest.TestReport) -> str:
    """The first line of a failure's message, as pytest's short summary shows it."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def failure_entry(
    report: pytest.TestReport, test: str, suite: str | None = None, combination: dict[str, str] | None = None
) -> FailureFacts:
    """An entry of the report's ``failures``: the test, its suite and combination (None: a test
    outside the suites), its first failing phase and the first line of what it said."""
    return {
        "test": test,
        "suite": suite,
        "combination": combination,
        "when": report.when,
        "message": first_line(report),
    }


def outside_test_id(report: pytest.TestReport) -> str:
    """The id of a test outside the suites, as a suite test's (see :func:`_test_id`)."""
    return _test_id(report)


SHARD = "PRISM_SHARD"  # K/N: this run is shard K (from 1) of N, for a splitter other than ours or pytest-split


def shard_of(config: pytest.Config, environ: dict[str, str] | None = None) -> ShardFacts | None:
    """Which shard of a sharded run this is: ``--prism-shard=K/N``, pytest-split's ``--splits N
    --group K``, else ``PRISM_SHARD=K/N``; None when the run is not sharded. ``selection`` names what was
    sharded (the arguments, ``-k``, ``-m`` and the ``--prism-*`` options that select), so the
    merge checks the shards of each selection apart: a CI matrix with a job per backend, each
    split in three, has three shards per backend. pytest.UsageError for a malformed value."""
    import os

    found = os.environ if environ is None else environ
    splits, group = getattr(config.option, "splits", None), getattr(config.option, "group", None)
    ours = getattr(config.option, "prism_shard", None)
    if ours and found.get(SHARD, "").strip():
        raise pytest.UsageError(
            f"--prism-shard={ours} splits the run itself, {SHARD}={found[SHARD]} names a shard another splitter "
            "made: give one"
        )
    if splits and group:
        text, given = f"{group}/{splits}", f"--splits {splits} --group {group}"
    elif ours or found.get(SHARD, "").strip():
        text = ours or found[SHARD]
        given = f"--prism-shard={ours}" if ours else f"{SHARD}={found[SHARD]}"
    else:
        return None
    from prism_testkit.registry.shards import parse

    try:  # a field given twice is refused too: either value kept would be another shard
        index, count = parse(text)
    except ValueError as error:
        raise pytest.UsageError(f"{given}: {error}") from None
    return {"index": index, "count": count, "selection": selection_of(config)}


def selection_of(config: pytest.Config) -> str:
    """What a run selects, in one line: the arguments, ``-k``, ``-m`` and the ``--prism-*``
    options that choose tests (not where reports go: those differ from shard to shard)."""
    words = [str(arg) for arg in getattr(config.option, "file_or_dir", None) or []]
    for flag, dest in (("-k", "keyword"), ("-m", "markexpr")):
        if value := getattr(config.option, dest, None):
            words.append(f"{flag} {value}")
    for dest in ("prism_backend", "prism_pattern", "prism_combinations", "prism_twins", "prism_namespace"):
        value = getattr(config.option, dest, None)
        for one in value if isinstance(value, list) else [value] if value else []:
            words.append(f"--{dest.replace('_', '-')}={one}")
    return " ".join(words)


# the user property under which a test lists the clusters rebuilt before it ran (or one of its
# examples) because an earlier test left them damaged (prism_testkit.stateful.health.PROPERTY)
REBUILT = "prism_rebuilt"
# the user property a power_loss test records its cut under (also in --junitxml)
POWER_CUT = "power_loss"
# the user properties a stateful test leaves: a failing one's timeline page and the command that
# replays it (strings), the latency samples of its failing (else richest) example and, on a
# cluster, its settle times after each fault (stateful.latency); each test's entry in the report
# carries them (``timeline``, ``replay``, ``latency``, ``settles``)
EVIDENCE = {
    "prism_timeline": "timeline",
    "prism_replay_command": "replay",
    "prism_latency": "latency",
    "prism_settles": "settles",
}


@dataclass
class RowTally:
    """One suite x combination (and namespace) row as the run counts it: the terminal's table
    reads it, and the report's :class:`~prism_testkit.report.shape.Row` is built from it (a
    run that writes no report imports no pydantic)."""

    suite: str
    combination: dict[str, str]
    namespace: str | None
    tests: list[str]  # sorted
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    covered: int = 0  # skipped because a replicated backend's twin ran them (counted among the skipped too)
    covered_by: dict[str, str] = field(default_factory=dict)
    anomalies: dict[str, int] = field(default_factory=dict)
    tolerated: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    depth: int | None = None  # the most examples a stateful test of the row drew
    # the sum of its tests' setup + call + teardown, as pytest measured them (under xdist on the
    # workers, so rows run in parallel add up to more than the wall time)
    duration_s: float = 0.0


class _Identified(Protocol):
    identity: str | None


_Entry = TypeVar("_Entry", bound=_Identified)
_Model = TypeVar("_Model", bound="PerTest")


@dataclass
class PrismResults:
    unavailable: dict[str, str] = field(default_factory=dict)
    # unavailable backend -> the suites of the run it would fit; None: not known (the run
    # stopped before collecting any suite)
    fits: dict[str, set[str]] | None = field(default_factory=dict)
    # backends asked for by name that could not be provisioned: the run stopped before any test
    not_provisioned: dict[str, str] = field(default_factory=dict)
    available: dict[str, str] = field(default_factory=dict)  # backend -> how it is provisioned
    categories: dict[str, list[str]] = field(default_factory=dict)  # test (see _test_id) -> pytest's words
    rows_of: dict[str, RowKey] = field(default_factory=dict)
    # tests of a module in which nothing selected fits: test -> suite (not in any row)
    unfit_tests: dict[str, str] = field(default_factory=dict)
    no_combination: dict[str, str] = field(default_factory=dict)  # suite -> reason (the suite failed)
    not_applicable: dict[str, str] = field(default_factory=dict)  # suite -> reason (it was let off)
    anomalies_of: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # test -> counts
    durations: dict[str, float] = field(default_factory=dict)  # test -> seconds (setup + call + teardown)
    failures: dict[str, FailureFacts] = field(default_factory=dict)  # test -> its first failing phase
    hunts: list[Property] = field(default_factory=list)  # one per hunted test (--prism-hunt): HuntResult's
    # stateful test -> whether it ran simulated, its examples' digest, its failing example's
    simulations: dict[str, Property] = field(default_factory=dict)
    run: dict[str, str | float | None] = field(default_factory=dict)  # version, start time, duration
    failed_to_start: dict[str, str] = field(default_factory=dict)  # backend -> the first reason given
    server_versions: dict[str, str | None] = field(default_factory=dict)  # backend -> as its server told
    # tests of this run outside any suite (plain tests, in suite modules too): test -> outcome
    outside_suites: dict[str, str] = field(default_factory=dict)
    # faults this machine cannot inject: fault -> reason, install hint, the rows that needed it
    unavailable_faults: dict[str, unavailable_faults.Unavailable] = field(default_factory=dict)
    # tests skipped because a replicated backend's twin runs them: test -> {replicated: twin}
    covered: dict[str, dict[str, str]] = field(default_factory=dict)
    # power_loss tests: test -> what the cut discarded, tore and kept, and what was lost
    power_cuts: dict[str, Property] = field(default_factory=dict)
    # tests judged by prism_testkit.findings: test -> scenario, backend, server version, verdict,
    # counts (what ``prism-testkit report versions`` tabulates over runs of several versions)
    judged: dict[str, Property] = field(default_factory=dict)
    # clusters rebuilt because a test left them damaged: test rebuilt before -> the clusters
    # ([{"backend", "left_by", "why", "before"}]: prism_testkit.stateful.health)
    rebuilt: dict[str, list[Property]] = field(default_factory=dict)
    # the failures of tests outside any suite (test -> entry, as ``failures`` holds them)
    outside_failures: dict[str, FailureFacts] = field(default_factory=dict)
    shard: ShardFacts | None = None  # which shard of a sharded run this is (see shard_of)
    # stateful tests: test -> the examples it drew (its row's depth)
    depths: dict[str, int] = field(default_factory=dict)
    # the run's depth: what it asked for and what goes deeper (set by the plugin at the end)
    depth: DepthFacts | None = None
    # test -> its EVIDENCE (timeline and replay: strings; latency and settles: their modules')
    evidence: dict[str, dict[str, str | Property]] = field(default_factory=dict)
    # test -> its identity (hunting.identity), and identity -> its tests (see identity())
    identities: dict[str, str] = field(default_factory=dict)
    named: dict[str, set[str]] = field(default_factory=dict)
    # one per run: a merge refuses a run given twice
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def record(self, report: pytest.TestReport) -> None:
        prop = _prism_property(report)
        if prop is None:
            return
        test = _test_id(report)
        self.identify(test, identity_of_report(report))
        if self.fits is not None:
            for backend in prop.get("unavailable_fit", ()):
                self.fits.setdefault(backend, set()).add(prop["suite"])
        broken = _prism_property(report, BACKEND_FAILED)
        if broken is not None:
            self.failed_to_start.setdefault(broken["backend"], broken["reason"])
        self.server_versions.update(_prism_property(report, SERVERS) or {})
        fault = _prism_property(report, unavailable_faults.FAULT_UNAVAILABLE)
        if fault is not None:
            unavailable_faults.add_row(self.unavailable_faults, fault, prop["suite"], prop["combination"])
        self.durations[test] = self.durations.get(test, 0.0) + report.duration
        verdict = _prism_property(report, KNOWN_FINDING)
        if verdict is not None:
            self.judged[test] = verdict
        found = _prism_property(report, ANOMALIES)
        if found is not None and report.when == "teardown":
            known = _prism_property(report, KNOWN_FINDING)
            if known is not None and known.get("verdict") == "known":
                found = {**found, "known": {str(known["finding"]): 1}}
            self.anomalies_of[test] = found
        for key, value in report.user_properties:
            if key in EVIDENCE and isinstance(value, str | dict):
                self.evidence.setdefault(test, {})[EVIDENCE[key]] = dict(value) if isinstance(value, dict) else value
        drawn = _prism_property(report, DEPTH)
        if drawn is not None:
            self.depths[test] = int(drawn["examples"])
        clusters = [
            dict(entry)
            for key, value in report.user_properties
            if key == REBUILT and isinstance(value, list)
            for entry in value
        ]
        if clusters:  # every phase's report carries the test's properties so far: the last is whole
            self.rebuilt[test] = clusters
        cut = _prism_property(report, POWER_CUT)
        if cut is not None:
            self.power_cuts[test] = cut
        found_category = category(report)
        if found_category is None:
            return
        self.categories.setdefault(test, []).append(found_category)
        suite = prop["suite"]
        if report.failed and test not in self.failures:
            self.failures[test] = failure_entry(report, test, suite, prop["combination"])
        if prop.get("no_combination"):
            # Skipped: nothing selected fits and the run did not insist; failed: it did. Only
            # this module's tests are unfit: another module may declare the same suite name.
            unfit = self.not_applicable if found_category == "skipped" else self.no_combination
            unfit[suite] = prop["no_combination"]
            self.unfit_tests[test] = suite
            return
        self.rows_of[test] = (suite, prop.get("namespace"), tuple(prop["combination"].items()))
        if prop.get("covered_by") and found_category == "skipped":
            self.covered[test] = dict(prop["covered_by"])

    def outcome(self, test: str) -> str:
        return "+".join(self.categories[test])

    def identify(self, test: str, identity: str | None) -> None:
        if identity is not None and self.identities.get(test) != identity:
            self.identities[test] = identity
            self.named.setdefault(identity, set()).add(test)

    def identity(self, test: str) -> str | None:
        """The identity the report gives ``test``: None when another test of the run has it too
        (files of one name in folders without ``__init__.py``, under ``--import-mode=importlib``),
        or a merge would take the two for one test."""
        found = self.identities.get(test)
        return found if found is not None and len(self.named[found]) == 1 else None

    def identified(self, test: str, entry: _Entry) -> _Entry:
        """A per-test entry with ``test``'s identity, when it has one of its own."""
        identity = self.identity(test)
        if identity is not None:
            entry.identity = identity
        return entry

    def rows(self) -> list[RowTally]:
        tests_of: dict[RowKey, list[str]] = {}
        for test, key in self.rows_of.items():
            tests_of.setdefault(key, []).append(test)
        rows = []
        for (suite, namespace, combo), tests in sorted(
            tests_of.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2])
        ):
            counted = outcome_counts(self.outcome(test) for test in tests)
            row = RowTally(suite, dict(combo), namespace or None, sorted(tests), *counted)
            covered = [test for test in tests if test in self.covered]
            if covered:  # counted among the skipped too, as pytest counts them
                row.covered = len(covered)
                row.covered_by = {b: t for test in covered for b, t in sorted(self.covered[test].items())}
            found: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
            for test in tests:
                for kind, counts in self.anomalies_of.get(test, {}).items():
                    found.setdefault(kind, Counter()).update(found_counts(counts))
            row.anomalies, row.tolerated, row.faults, row.verdicts, row.known = (
                dict(sorted(found[kind].items())) for kind in KINDS
            )
            drawn = [self.depths[test] for test in tests if test in self.depths]
            if drawn:  # examples per stateful test of this row (the most any drew)
                row.depth = max(drawn)
            row.duration_s = round(sum(self.durations.get(test, 0.0) for test in tests), 3)
            rows.append(row)
        return rows

    def totals(self) -> Outcomes:
        """Over every test of the run: pytest's own counts."""
        return outcome_counts([*(self.outcome(test) for test in self.categories), *self.outside_suites.values()])

    def let_off(self) -> dict[str, str]:
        """Suites not applicable to this selection: neither failed nor run by another module."""
        ran = {key[0] for key in self.rows_of.values()}
        return {s: r for s, r in self.not_applicable.items() if s not in self.no_combination and s not in ran}

    def covered_counts(self) -> dict[str, int]:
        """twin -> how many tests of replicated backends it covered (run in their place)."""
        counts = Counter(t for twins in self.covered.values() for t in dict.fromkeys(twins.values()))
        return dict(sorted(counts.items()))

    # What follows builds the report (:mod:`.shape`): only a run that writes one imports pydantic.

    def _row(self, counted: RowTally) -> Row:
        """A row of the report: its counts, and each test's outcome and findings (what lets the
        merge add up shards of one row)."""
        from prism_testkit.report.shape import Row

        row = Row(
            suite=counted.suite,
            combination=counted.combination,
            passed=counted.passed,
            failed=counted.failed,
            skipped=counted.skipped,
            errors=counted.errors,
            anomalies=counted.anomalies,
            tolerated=counted.tolerated,
            faults=counted.faults,
            verdicts=counted.verdicts,
            known=counted.known,
            duration_s=counted.duration_s,
            tests={test: self._test_entry(test) for test in counted.tests},
        )
        if counted.namespace:
            row.namespace = counted.namespace
        if counted.covered:
            row.covered, row.covered_by = counted.covered, counted.covered_by
        if counted.depth is not None:
            row.depth = counted.depth
        return row

    def _test_entry(self, test: str) -> OneTest:
        from prism_testkit.report.shape import OneTest

        found = self.anomalies_of.get(test, {})
        # its findings by kind (merge.KINDS), only the kinds it found, and its evidence (EVIDENCE's
        # names): the model's fields, checked as the model reads them (evidence is what a test left)
        kinds = {kind: counted for kind in KINDS if (counted := found_counts(found.get(kind, {})))}
        outcome = {"outcome": self.outcome(test), "duration_s": round(self.durations.get(test, 0.0), 3)}
        entry = self.identified(test, OneTest.model_validate({**outcome, **self.evidence.get(test, {}), **kinds}))
        if test in self.covered:
            entry.covered_by = self.covered[test]
        if test in self.depths:
            entry.depth = self.depths[test]
        return entry

    def _bucket(self, counted: Outcomes, tests: dict[str, OneTest]) -> Bucket:
        """Tests in no row: counted, and each test's outcome (a merge counts them as a row's)."""
        from prism_testkit.report.shape import Bucket

        return Bucket(**counted._asdict(), tests=tests)

    def report(self) -> Report:
        """This run's report, as the model the merge and the renderers read (:mod:`.shape`)."""
        # each name from the module itself (a package attribute can be stale after sys.modules is restored)
        from prism_testkit.report.shape import (
            SCHEMA_VERSION,
            Backend,
            BackendReason,
            Depth,
            Digest,
            Failure,
            Hunt,
            HuntedTest,
            Judged,
            OneTest,
            PerTest,
            Rebuilt,
            Report,
            Run,
            Shard,
            SuiteReason,
            Totals,
        )

        failures = {**self.outside_failures, **self.failures}
        report = Report(
            schema_version=SCHEMA_VERSION,
            run=Run.model_validate({**self.run, "id": self.run_id}),
            totals=Totals(**self.totals()._asdict()),
            # in no row: the tests of modules nothing selected fits, and tests outside suites;
            # with the rows' they add up to the totals
            without_combination=self._bucket(
                outcome_counts(self.outcome(test) for test in self.unfit_tests),
                {test: self._unfit_entry(test) for test in sorted(self.unfit_tests)},
            ),
            outside_suites=self._bucket(
                outcome_counts(self.outside_suites.values()),
                {
                    test: self.identified(
                        test, OneTest(outcome=outcome, duration_s=round(self.durations.get(test, 0.0), 3))
                    )
                    for test, outcome in sorted(self.outside_suites.items())
                },
            ),
            suites=[self._row(row) for row in self.rows()],
            failures=[self.identified(test, Failure.model_validate(failures[test])) for test in sorted(failures)],
            no_runnable_combinations=[
                SuiteReason(suite=suite, reason=reason) for suite, reason in sorted(self.no_combination.items())
            ],
            not_applicable=[
                SuiteReason(suite=suite, reason=reason) for suite, reason in sorted(self.let_off().items())
            ],
            backends=[
                Backend(backend=b, provisioned=how, server_version=self.server_versions.get(b))
                for b, how in sorted(self.available.items())
            ],
            unavailable=[self._unavailable_entry(b, r) for b, r in sorted(self.unavailable.items())],
            failed_to_start=[BackendReason(backend=b, reason=r) for b, r in sorted(self.failed_to_start.items())],
        )
        # the sections a run without them leaves out
        if self.shard:
            report.shard = Shard.model_validate(self.shard)
        if self.covered:
            report.covered_by_twins = self.covered_counts()
        if self.not_provisioned:
            report.not_provisioned = [
                BackendReason(backend=b, reason=r) for b, r in sorted(self.not_provisioned.items())
            ]
        if self.unavailable_faults:
            report.unavailable_faults = unavailable_faults.entries(self.unavailable_faults)
        if self.hunts:
            hunted = [HuntedTest.model_validate(found) for found in self.hunts]
            report.hunt = Hunt(tests=hunted, failures=[entry for entry in hunted if entry.failed])
        if self.simulations:
            report.history_digests = {
                test: self.identified(test, Digest.model_validate(found)) for test, found in self.simulations.items()
            }
        if self.depth is not None and self.depths:
            report.depth = Depth.model_validate(self.depth)
        if self.power_cuts:
            report.power_cuts = [
                self._per_test(PerTest, test, self.power_cuts[test]) for test in sorted(self.power_cuts)
            ]
        if self.judged:
            report.judged = [self._per_test(Judged, test, self.judged[test]) for test in sorted(self.judged)]
        if self.rebuilt:
            report.rebuilt = [
                self._per_test(Rebuilt, test, {"clusters": self.rebuilt[test]}) for test in sorted(self.rebuilt)
            ]
        return report

    def _unfit_entry(self, test: str) -> OneTest:
        entry = self._test_entry(test)
        entry.suite = self.unfit_tests[test]
        return entry

    def _per_test(self, model: type[_Model], test: str, found: Property) -> _Model:
        """An entry of a per-test section: ``found`` (a user property) and its test."""
        return self.identified(test, model.model_validate({"test": test, **found}))

    def _unavailable_entry(self, backend: str, reason: str) -> UnavailableBackend:
        from prism_testkit.report.shape import UnavailableBackend

        entry = UnavailableBackend(backend=backend, reason=reason)
        if self.fits is not None:
            entry.fits = sorted(self.fits.get(backend, ()))
        return entry

    def write(self, path: Path) -> None:
        """The report file: the model as JSON (its one edge), whole or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.report().dump(), indent=2) + "\n")
        tmp.replace(path)

    def summarize(self, tr: pytest.TerminalReporter) -> None:
        rows = self.rows()
        let_off = self.let_off()
        if not (rows or self.no_combination or self.unavailable or let_off or self.failed_to_start):
            return
        tr.write_sep("=", "prism-testkit: suites x combinations")
        if rows:
            _table(tr, rows)
            _slowest(tr, rows)
        if self.covered:
            twins = [t for found in self.covered.values() for t in dict.fromkeys(found.values())]
            tr.write_line(covered_line(len(self.covered), twins), yellow=True)
        for suite, reason in sorted(self.no_combination.items()):
            tr.write_line(f"FAILED suite {suite}: {reason}", red=True, bold=True)
        if let_off:
            tr.write_sep("-", "prism-testkit: suites not applicable to this selection (not run)", yellow=True)
            for suite, reason in sorted(let_off.items()):
                tr.write_line(f"{suite}: {reason}", yellow=True)
        if self.failed_to_start:
            tr.write_sep("-", "prism-testkit: backends that FAILED TO START (their tests errored)", red=True, bold=True)
            for backend, reason in sorted(self.failed_to_start.items()):
                tr.write_line(f"{backend}: {reason}", red=True, bold=True)
        if self.unavailable:
            tr.write_sep("-", "prism-testkit: UNAVAILABLE backends (not tested)", yellow=True, bold=True)
            for backend, reason in sorted(self.unavailable.items()):
                tr.write_line(f"{backend}: {reason}", yellow=True, bold=True)
        if self.rebuilt:
            tr.write_sep("-", "prism-testkit: clusters REBUILT because a test left them damaged", yellow=True)
            for test, clusters in sorted(self.rebuilt.items()):
                for cluster in clusters:
                    left = f"left damaged by {cluster['left_by']}: {cluster['why']}"
                    tr.write_line(f"{cluster['backend']}, before {cluster.get('before', test)}: {left}", yellow=True)
        unavailable_faults.summarize(tr, self.unavailable_faults)


def _table(tr: pytest.TerminalReporter, rows: list[RowTally]) -> None:
    """suite, combination, the four counts and the findings, within the terminal's width. What
    does not fit goes on lines of their own, never cut (two cut combinations could read the
    same): a long combination above its counts, long findings below; too narrow for the
    columns at all, one block per row."""
    columns = tr._tw.fullwidth
    width = max(len("suite"), *(len(r.suite) for r in rows))
    counts = "".join(f"  {name:>{len(name)}}" for name in ROW_COUNTS)
    room = columns - width - 2 - len(counts) - len("  findings")
    if room < len("combination"):
        _narrow_table(tr, rows, columns)
        return
    combo_width = min(room, max(len("combination"), *(len(_combo_text(r)) for r in rows)))
    tr.write_line(f"{'suite':<{width}}  {'combination':<{combo_width}}{counts}  findings")
    for r in rows:
        color = _row_style(r)
        numbers = "".join(f"  {getattr(r, name):>{len(name)}}" for name in ROW_COUNTS)
        combination = _combo_text(r)
        if len(combination) <= combo_width:
            head = f"{r.suite:<{width}}  {combination:<{combo_width}}{numbers}"
        else:
            _wrapped(tr, f"{r.suite:<{width}}  {combination}", columns, color, indent="")
            head = " " * (width + 2 + combo_width) + numbers
        findings = _anomaly_text(r)
        if len(head) + 2 + len(findings) <= columns:
            tr.write_line(f"{head}  {findings}", **color)
            continue
        tr.write_line(head, **color)
        _wrapped(tr, findings, columns, color)


def _narrow_table(tr: pytest.TerminalReporter, rows: list[RowTally], columns: int) -> None:
    """Too narrow for columns side by side: a row's suite and combination, then its counts."""
    for r in rows:
        color = _row_style(r)
        _wrapped(tr, f"{r.suite}  {_combo_text(r)}", columns, color, indent="")
        _wrapped(tr, ", ".join(f"{getattr(r, name)} {name}" for name in ROW_COUNTS), columns, color)
        if r.anomalies or r.tolerated or r.known or r.faults or r.covered:
            _wrapped(tr, _anomaly_text(r), columns, color)


def _row_style(row: RowTally) -> dict[str, bool]:
    """Red for a failure, yellow for a row nothing passed in (skipped, or covered by a twin)."""
    return {row_colour(row): True}


def _wrapped(
    tr: pytest.TerminalReporter, text: str, columns: int, color: dict[str, bool], indent: str = "    "
) -> None:
    lines = textwrap.wrap(
        text, max(columns, 24), initial_indent=indent, subsequent_indent=indent + "  ", break_on_hyphens=False
    )
    for line in lines:
        tr.write_line(line, **color)


SLOWEST = 10


def slowest_rows(rows: list[RowTally], count: int = SLOWEST) -> list[RowTally]:
    """The ``count`` rows that took longest, slowest first (ties in suite order)."""
    return sorted(rows, key=lambda r: -r.duration_s)[:count]


def _slowest(tr: pytest.TerminalReporter, rows: list[RowTally]) -> None:
    shown = slowest_rows(rows)
    columns = tr._tw.fullwidth
    title = f"prism-testkit: {len(shown)} slowest rows"
    explained = f"{title} (setup + call + teardown of their tests)"
    tr.write_sep("-", explained if len(explained) + 4 <= columns else title)
    width = max(len(r.suite) for r in shown)
    for r in shown:
        line = f"{r.duration_s:>9.2f}s  {r.suite:<{width}}  {_combo_text(r)}  ({plural(len(r.tests), 'test')})"
        if len(line) <= columns:
            tr.write_line(line)
            continue
        for part in textwrap.wrap(line, max(columns, 24), subsequent_indent=" " * 12, break_on_hyphens=False):
            tr.write_line(part)


def covered_line(tests: int, twins: Iterable[str]) -> str:
    """The line that says how many tests replicated backends' twins covered (``twins``: one
    entry per covered test and twin)."""
    which = ", ".join(f"{twin} {count:,}" for twin, count in sorted(Counter(twins).items()))
    return (
        f"prism-testkit: {tests:,} tests covered by their single-node twin ({which}): skipped as "
        f"'covered by <twin>'; --prism-twins=run runs them"
    )


def covered_text(row: RowTally) -> str:
    """``covered by jetstream`` (and how many, when some of the row's tests ran)."""
    twins = ", ".join(dict.fromkeys(row.covered_by.values()))
    ran = row.passed + row.failed + row.skipped + row.errors - row.covered
    return f"covered by {twins}" + (f" ({plural(row.covered, 'test')})" if ran else "")


def _combo_text(row: RowTally) -> str:
    text = " ".join(f"{slot}={backend}" for slot, backend in row.combination.items())
    return f"ns={row.namespace} {text}" if row.namespace else text


def _anomaly_text(row: RowTally) -> str:
    """The row's findings, then the faults it was checked under (what a pass survived); a row
    whose tests a twin covered says so first."""
    found = [covered_text(row)] if row.covered else []
    found += [f"{name}={n}" for name, n in row.anomalies.items()]
    found += [f"{name}={n} (tolerated)" for name, n in row.tolerated.items()]
    found += [f"{name}={n} (known finding)" for name, n in row.known.items()]
    if faults := row.faults:
        found.append("faults: " + " ".join(f"{name}={n}" for name, n in faults.items()))
    return " ".join(found) or "-"
