"""Merging the JSON reports of a CI matrix (one job per backend) into one report.

The merged report has the shape of a single run's report (``--prism-report``), so whatever reads
one reads the other. Rows are keyed by suite, namespace and combination, and carry each test's
outcome: shards of one row (``-k``, ``--splits``, xdist groups) add up, a test found twice with
one outcome counts once, and only a test found with two outcomes contradicts: merging stops with
an error naming both files. Reports written before rows carried their tests must agree on a
shared row's counts. A suite that ran anywhere is no
longer "not applicable" or "without a runnable combination"; a backend tested by any job is not
unavailable.

Nothing red merges green: the tests in no row (``outside_suites``: plain tests, also in a suite
module; ``without_combination``: a module nothing selected fits) are merged test by test like a
row's and counted in the totals, and every section of a report is kept. Before merging, every
file is checked against the report's shape (:mod:`.shape`), no run may be given twice (its
``run.id``), and the shards of a sharded selection (``shard``: index, count, selection) must all
be there, each once: anything else stops the merge with an error naming the files.

Tests are matched by their identity (``identity``: the module's import name and the rest of the
node id, :mod:`prism_testkit.hunting.identity`), not by the node id that keys them: a node id is a
path from where pytest ran, which differs between a machine that installed a package, an editable
checkout and an out-of-tree author's project. The merged entry keeps the node id the first report
gave it. An entry without an identity (a report written before entries carried one) is matched
by its node id.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from prism_testkit.errors import PrismError
from prism_testkit.report import unavailable_faults

if TYPE_CHECKING:  # pydantic is imported by what reads or writes a report file, not by a plain run
    from prism_testkit.report.shape import (
        BackendReason,
        Bucket,
        Depth,
        Digest,
        Hunt,
        OneTest,
        PerTest,
        Report,
        Row,
        Shard,
        SuiteReason,
        Totals,
    )

COUNTS = ("passed", "failed", "skipped", "anomalies", "tolerated")

# The table of outcomes (docs/report-outcomes.md). Each phase of a test adds a part to its
# outcome (None: nothing), as pytest counts it: a failed setup or teardown is an error, also after
# a passed or failed call; xfail counts as skipped, a non-strict xpass as passed, a strict one as
# failed. A test's outcome is its parts joined by "+" ("passed+error").
PHASE_PARTS: dict[tuple[str, str], str | None] = {
    ("setup", "passed"): None,
    ("setup", "failed"): "error",
    ("setup", "skipped"): "skipped",
    ("call", "passed"): "passed",
    ("call", "failed"): "failed",
    ("call", "skipped"): "skipped",
    ("teardown", "passed"): None,
    ("teardown", "failed"): "error",
    ("teardown", "skipped"): "skipped",
}
# A red part anywhere (any phase, any test, any shard) makes the test and its row red.
RED_PARTS = frozenset({"failed", "error"})
# A row's colour, worst first: red (a red part, or anomalies), green (something passed), yellow
# (only skipped); in the matrix, yellow splits into "covered" (every skip left to the twin) and
# "skipped".
RED, GREEN, YELLOW = "red", "green", "yellow"


def is_red(outcome: str) -> bool:
    """Whether a test's outcome ("passed+error"...) holds a red part."""
    return any(part in RED_PARTS for part in outcome.split("+"))


class Counted(Protocol):
    """What a row's colour and a cell's status read: the counts of a report's row
    (:class:`~.shape.Row`), of a run's (:class:`~.results.RowTally`) and of a matrix cell."""

    @property
    def passed(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def covered(self) -> int: ...
    @property
    def anomalies(self) -> dict[str, int]: ...
    @property
    def tolerated(self) -> dict[str, int]: ...
    @property
    def known(self) -> dict[str, int]: ...


def row_colour(row: Counted) -> str:
    """Red when a test failed or errored or the checker found anomalies, green when one passed,
    else yellow."""
    if row.failed or row.errors or found_counts(row.anomalies):
        return RED
    return GREEN if row.passed else YELLOW


ROW_COUNTS = ("passed", "failed", "skipped", "errors")
# Tests in no suite x combination row, counted apart in a report: plain tests (also in a suite
# module) and the tests of a module nothing selected fits. A merge counts them as a run does.
BUCKETS = ("outside_suites", "without_combination")
RowKey = tuple[str, str, tuple[tuple[str, str], ...]]  # suite, namespace ("" for none), combination


class ReportMergeError(PrismError):
    """A report cannot be read, or two reports contradict each other."""


def load_report(path: str | Path) -> Report:
    """The report file at ``path`` as the model (:mod:`.shape`), saying where it was read from: the
    one place a report file is read. ReportMergeError names the file when it cannot be read, is
    not JSON, is not a report's shape (and where), or follows a newer schema version."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ReportMergeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportMergeError(f"{path}: not a JSON report: {exc}") from None
    except RecursionError:
        raise ReportMergeError(f"{path}: not a JSON report: nested too deeply") from None
    return read_report(data, str(path))


def read_report(data: object, path: str) -> Report:
    """A report file's JSON (``data``, read from ``path``) as the model, or ReportMergeError
    naming the file and where it is not a report's shape, or which newer schema it follows."""
    if not isinstance(data, dict) or not isinstance(data.get("suites"), list):
        raise ReportMergeError(f"{path}: not a prism-testkit report (no 'suites' list)")
    from prism_testkit.report.shape import NewerSchema, NotAReport, parse  # pydantic: paid for by readers

    try:
        return parse(data).read_from(path)
    except NewerSchema as exc:
        raise ReportMergeError(f"{path}: {exc}") from None
    except NotAReport as exc:
        raise ReportMergeError(f"{path}: not a prism-testkit report: {exc}") from None


# What a row counts per name besides outcomes: checker findings (forbidden, tolerated) and the
# faults the nemesis injected, by kind ("kill-node", "partition-isolate-leader", "power-cut"...),
# so a reader sees what each row survived.
# verdicts: checker -> verdicts judged; known: written-up findings reproduced (id -> tests, each
# an xfail: prism_testkit.findings), so a row of passes beside them never reads as a plain pass
KINDS = ("anomalies", "tolerated", "faults", "verdicts", "known")


class Outcomes(NamedTuple):
    """pytest's counts of some tests (a row's columns, pytest's words)."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0


def outcome_counts(outcomes: Iterable[str]) -> Outcomes:
    """passed / failed / skipped / errors of tests whose outcomes are "passed", "failed+error"..."""
    parts = Counter(part for outcome in outcomes for part in outcome.split("+"))
    return Outcomes(parts["passed"], parts["failed"], parts["skipped"], parts["error"])


def found_counts(counts: dict[str, int]) -> dict[str, int]:
    """The counts that are findings: a checker that looked and found nothing may still say
    ``lost: 0``, and zero lost writes is no anomaly."""
    return {name: int(n) for name, n in sorted(counts.items()) if int(n) > 0}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def row_key(row: Row) -> RowKey:
    """What a merge matches rows by: suite, namespace and combination."""
    return (row.suite, row.namespace or "", tuple(sorted(row.combination.items())))


def describe_row(key: RowKey) -> str:
    suite, namespace, combination = key
    slots = " ".join(f"{slot}={backend}" for slot, backend in combination)
    return f"suite {suite} [{f'ns={namespace} ' if namespace else ''}{slots}]"


class Named(NamedTuple):
    """A report and the name a merge gives it (its file, or its place among the reports)."""

    path: str
    report: Report


def named_reports(reports: list[Report]) -> list[Named]:
    return [Named(report.source or f"report {n}", report) for n, report in enumerate(reports, 1)]


def _merge_rows(reports: list[Named]) -> list[Row]:
    rows: dict[RowKey, tuple[str, Row]] = {}
    for named in reports:
        for row in named.report.suites:
            key = row_key(row)
            seen = rows.get(key)
            if seen is None:
                rows[key] = (named.path, row)
            elif seen[1].tests is not None and row.tests is not None:
                rows[key] = (seen[0], _add_shard(key, seen, (named.path, row)))
            else:
                _same_counts(key, seen, (named.path, row))
    return [row for _, (_, row) in sorted(rows.items())]


def same_test(first_of: dict[str, str], test: str, identity: str | None) -> str:
    """The key a test named ``test`` in one report is merged under: the node id of the first test
    of its identity (another layout names it by another path), else its own. ``first_of``:
    identity -> that node id, filled as tests are met."""
    return test if identity is None else first_of.setdefault(identity, test)


def merged_test(known: OneTest, other: OneTest) -> OneTest | None:
    """One test found in two shards: one outcome counts once; a test one job left to the twin
    (covered) and another ran takes what ran; any other pair of outcomes is a contradiction
    (None), which stops the merge."""
    if known.covered_by and not other.covered_by:
        return other  # a skip that ran too: the merge must not depend on the order of the files
    if other.covered_by and not known.covered_by:
        return known
    return known if known.outcome == other.outcome else None


def _summed(entries: Iterable[OneTest], kind: str) -> dict[str, int]:
    """What ``entries`` found of ``kind`` (one of KINDS), added up."""
    found: Counter[str] = Counter()
    for entry in entries:
        found.update(found_counts(getattr(entry, kind)))
    return dict(sorted(found.items()))


def _add_shard(key: RowKey, first: tuple[str, Row], other: tuple[str, Row]) -> Row:
    """One row from two shards of it: the union of their tests, counted again."""
    from prism_testkit.report.shape import Row

    (first_path, first_row), (other_path, other_row) = first, other
    tests = dict(first_row.tests or {})  # both carry their tests: the caller checked
    first_of = {entry.identity: test for test, entry in tests.items() if entry.identity is not None}
    for named, entry in (other_row.tests or {}).items():
        test = same_test(first_of, named, entry.identity)
        known = tests.setdefault(test, entry)
        found_test = merged_test(known, entry)
        if found_test is None:
            raise ReportMergeError(
                f"{first_path} and {other_path} disagree on {describe_row(key)}: "
                f"{_named(test, named)} {known.outcome} vs {entry.outcome}"
            )
        tests[test] = found_test
    entries = list(tests.values())
    counted = outcome_counts(entry.outcome for entry in entries)
    merged = Row(
        suite=first_row.suite,
        combination=first_row.combination,
        passed=counted.passed,
        failed=counted.failed,
        skipped=counted.skipped,
        errors=counted.errors,
        anomalies=_summed(entries, "anomalies"),
        tolerated=_summed(entries, "tolerated"),
        faults=_summed(entries, "faults"),
        verdicts=_summed(entries, "verdicts"),
        known=_summed(entries, "known"),
        duration_s=round(sum(float(entry.duration_s) for entry in entries), 3),
        tests=dict(sorted(tests.items())),
        **(first_row.model_extra or {}),  # what this prism-testkit does not know, kept
    )
    if "namespace" in first_row.model_fields_set:
        merged.namespace = first_row.namespace
    drawn = [int(entry.depth) for entry in entries if entry.depth is not None]
    if drawn:  # the examples its stateful tests drew, over every shard
        merged.depth = max(drawn)
    elif "depth" in first_row.model_fields_set:
        merged.depth = first_row.depth
    covered = [entry.covered_by for entry in entries if entry.covered_by]
    if covered:  # tests a replicated backend's twin ran in its place (skipped here)
        merged.covered = len(covered)
        merged.covered_by = {b: t for found_by in covered for b, t in sorted(found_by.items())}
    return merged


def _named(test: str, other: str) -> str:
    """A test two reports name by two node ids (two install layouts): both."""
    return test if test == other else f"{test} (also named {other})"


def _same_counts(key: RowKey, first: tuple[str, Row], other: tuple[str, Row]) -> None:
    (first_path, first_row), (other_path, other_row) = first, other
    differing = [name for name in (*COUNTS, "errors") if _count(first_row, name) != _count(other_row, name)]
    if differing:
        detail = ", ".join(f"{name} {_count(first_row, name)} vs {_count(other_row, name)}" for name in differing)
        raise ReportMergeError(f"{first_path} and {other_path} disagree on {describe_row(key)}: {detail}")


def _count(row: Row, name: str) -> int | dict[str, int] | None:
    # reports before the errors column had none (0); a count a report lacks is None
    value = getattr(row, name) if name in row.model_fields_set or name == "errors" else None
    return found_counts(value) if isinstance(value, dict) else value


def _reasons(sections: Iterable[list[SuiteReason]], ran: set[str]) -> dict[str, str]:
    """suite -> reason for suites listed in a section of some report that ran nowhere."""
    found: dict[str, str] = {}
    for entries in sections:
        for entry in entries:
            if entry.suite not in ran:
                found.setdefault(entry.suite, entry.reason)
    return found


def merge_reports(reports: list[Report]) -> Report:
    """One report equivalent to a single run over the union of the reports' rows (each named by
    the file it was read from: :func:`load_report`)."""
    if not reports:
        raise ReportMergeError("no reports to merge")
    from prism_testkit.report.shape import (
        SCHEMA_VERSION,
        Backend,
        BackendReason,
        Report,
        SuiteReason,
        UnavailableBackend,
        merged_run,
        merged_shard,
    )

    typed = named_reports(reports)
    check_runs_and_shards(typed)
    rows = _merge_rows(typed)
    ran = {row.suite for row in rows}
    no_runnable = _reasons((t.report.no_runnable_combinations for t in typed), ran)
    let_off = _reasons((t.report.not_applicable for t in typed), ran)
    available: dict[str, Backend] = {}  # backend -> how the first job provisioned it, its version
    for one in typed:
        for backend in one.report.backends:
            available.setdefault(backend.backend, backend)
    unavailable: dict[str, str] = {}
    # the suites each would fit: the union over the jobs (each fits what it collected); None
    # once a report does not know (older, or stopped before collecting), as that report reads
    fits: dict[str, set[str] | None] = {}
    for one in typed:
        for entry in one.report.unavailable:
            if entry.backend not in available:
                unavailable.setdefault(entry.backend, entry.reason)
                known = fits.setdefault(entry.backend, set())
                fits[entry.backend] = None if known is None or entry.fits is None else known | set(entry.fits)
    merged = Report(
        schema_version=SCHEMA_VERSION,
        outside_suites=_merge_bucket(typed, "outside_suites", ran),
        without_combination=_merge_bucket(typed, "without_combination", ran),
        suites=rows,
        no_runnable_combinations=[SuiteReason(suite=s, reason=r) for s, r in sorted(no_runnable.items())],
        not_applicable=[SuiteReason(suite=s, reason=r) for s, r in sorted(let_off.items()) if s not in no_runnable],
        backends=[available[b] for b in sorted(available)],
        unavailable=[UnavailableBackend(backend=b, reason=r) for b, r in sorted(unavailable.items())],
        failures=_by_test(t.report.failures for t in typed),
        failed_to_start=[
            BackendReason(backend=b, reason=r)
            for b, r in sorted(_first_reasons(t.report.failed_to_start for t in typed).items())
        ],
        runs=[merged_run(t.report.run, t.path) for t in typed if t.report.run is not None and t.report.run.dump()],
        merged_from=[t.path for t in typed],
    )
    for entry in merged.unavailable:
        if (suites := fits[entry.backend]) is not None:
            entry.fits = sorted(suites)
    # the sections no report had stay out, as a run leaves them out
    if stopped := _first_reasons(t.report.not_provisioned for t in typed):
        merged.not_provisioned = [BackendReason(backend=b, reason=r) for b, r in sorted(stopped.items())]
    if cuts := _by_test(t.report.power_cuts for t in typed):
        merged.power_cuts = cuts
    if judged := _by_test(t.report.judged for t in typed):
        merged.judged = judged
    if rebuilt := _by_test(t.report.rebuilt for t in typed):
        merged.rebuilt = rebuilt
    if faults := unavailable_faults.merged([t.report.unavailable_faults for t in typed]):
        merged.unavailable_faults = faults
    if twins := _covered_by_twins(rows):
        merged.covered_by_twins = twins
    if (hunt := _hunts(typed)) is not None:
        merged.hunt = hunt
    if digests := _digests(typed):
        merged.history_digests = digests
    if (depth := _depth(typed)) is not None:
        merged.depth = depth
    if shards := [merged_shard(t.report.shard, t.path) for t in typed if t.report.shard is not None]:
        merged.shards = shards
    return merged


def _first_reasons(sections: Iterable[list[BackendReason]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for entries in sections:
        for entry in entries:
            found.setdefault(entry.backend, entry.reason)
    return found


_PerTest = TypeVar("_PerTest", bound="PerTest")


def _by_test(sections: Iterable[list[_PerTest]]) -> list[_PerTest]:
    """A section of per-test entries: each test's first, in test order."""
    found: dict[str, _PerTest] = {}
    first_of: dict[str, str] = {}
    for entries in sections:
        for entry in entries:
            found.setdefault(same_test(first_of, entry.test, entry.identity), entry)
    return [found[test] for test in sorted(found)]


def totals(typed: Report) -> Totals:
    """Tests passed / failed / skipped / errors over every row and the tests in none (outside the
    suites, or in a module nothing selected fits), and the suites that had no combination."""
    from prism_testkit.report.shape import Totals

    outside = [bucket for bucket in (typed.outside_suites, typed.without_combination) if bucket is not None]
    counted: list[Row | Bucket] = [*typed.suites, *outside]
    return Totals(
        passed=sum(row.passed for row in counted),
        failed=sum(row.failed for row in counted),
        skipped=sum(row.skipped for row in counted),
        errors=sum(row.errors for row in counted),
        rows=len(typed.suites),
        suites_without_combination=len(typed.no_runnable_combinations),
        # backends a job named and could not provision: that job stopped before any test (red)
        backends_not_provisioned=len(typed.not_provisioned),
    )


def shard_text(shard: Shard) -> str:
    """``shard 2 of 3 of `--prism-backend=redis```."""
    of = f" of `{shard.selection}`" if shard.selection else ""
    return f"shard {shard.index} of {shard.count}{of}"


def check_runs_and_shards(reports: list[Named]) -> None:
    """No run twice (the same ``run.id``: a report given twice, or copied), and of every sharded
    selection each shard once, none missing: a merge short of a shard, or with one counted
    twice, would say less or more than the run said."""
    runs: dict[str, str] = {}
    for typed in reports:
        run_id = typed.report.run.id if typed.report.run is not None else None
        if run_id is None:
            continue  # a report written before runs had an id
        if str(run_id) in runs:
            raise ReportMergeError(
                f"{runs[str(run_id)]} and {typed.path} are the same run (run id {run_id}): a report given twice"
            )
        runs[str(run_id)] = typed.path
    selections: dict[str, dict[int, tuple[str, Shard]]] = {}
    counts: dict[str, tuple[str, int]] = {}
    for typed in reports:
        shard = typed.report.shard
        if shard is None:
            continue
        selection = str(shard.selection or "")
        if shard.index > shard.count:
            raise ReportMergeError(f"{typed.path}: shard {shard.index} of {shard.count} cannot be")
        first = counts.setdefault(selection, (typed.path, shard.count))
        if first[1] != shard.count:
            raise ReportMergeError(
                f"{first[0]} and {typed.path} disagree on how many shards {selection or 'the run'} has: "
                f"{first[1]} vs {shard.count}"
            )
        seen = selections.setdefault(selection, {})
        if shard.index in seen:
            raise ReportMergeError(f"{shard_text(shard)} twice: {seen[shard.index][0]} and {typed.path}")
        seen[shard.index] = (typed.path, shard)
    for selection, seen in selections.items():
        count = counts[selection][1]
        missing = [index for index in range(1, count + 1) if index not in seen]
        if missing:
            which = ", ".join(str(index) for index in missing)
            given = ", ".join(path for _, (path, _) in sorted(seen.items()))
            of = f" of `{selection}`" if selection else ""
            raise ReportMergeError(
                f"{plural(len(missing), 'shard')} missing: {which} of {count}{of} (given: {given}); "
                f"a missing shard's tests would not count"
            )


def _merge_bucket(reports: list[Named], bucket: str, ran: set[str]) -> Bucket:
    """The tests no row holds (``bucket``: outside_suites, without_combination), merged test by
    test as a row's are: a test in two reports with one outcome counts once, with two it is a
    contradiction. A module let off in one job (its tests skipped: nothing there fits) whose
    suite ran in another (``ran``) is no gap, as its suite is no longer "not applicable": its
    skips are left out; a red one stays, as its job was red. A report written before buckets
    carried their tests adds its counts (without_combination: only the red ones, its skips
    cannot be told apart)."""
    from prism_testkit.report.shape import Bucket

    tests: dict[str, OneTest] = {}
    found_in: dict[str, str] = {}
    first_of: dict[str, str] = {}
    counted: Counter[str] = Counter()
    for typed in reports:
        found: Bucket | None = getattr(typed.report, bucket)
        if found is None or found.tests is None:
            names = ("failed", "errors") if bucket == "without_combination" else ROW_COUNTS
            counted.update({name: int(getattr(found, name)) if found is not None else 0 for name in names})
            continue
        for named, entry in found.tests.items():
            test = same_test(first_of, named, entry.identity)
            known = tests.setdefault(test, entry)
            found_test = merged_test(known, entry)
            if found_test is None:
                where = bucket.replace("_", " ")
                raise ReportMergeError(
                    f"{found_in[test]} and {typed.path} disagree on {_named(test, named)} ({where}): "
                    f"{known.outcome} vs {entry.outcome}"
                )
            tests[test] = found_test
            found_in.setdefault(test, typed.path)
    kept = {
        test: entry
        for test, entry in sorted(tests.items())
        if is_red(entry.outcome) or entry.suite is None or entry.suite not in ran
    }
    counted.update(outcome_counts(entry.outcome for entry in kept.values())._asdict())
    return Bucket(
        passed=counted["passed"],
        failed=counted["failed"],
        skipped=counted["skipped"],
        errors=counted["errors"],
        tests=kept,
    )


def _covered_by_twins(rows: list[Row]) -> dict[str, int]:
    """twin -> how many tests of replicated backends it covered, as a run counts them."""
    counts: Counter[str] = Counter()
    for row in rows:
        if row.tests is None:  # a report before rows carried their tests: the row's count
            counts.update({twin: int(row.covered) for twin in dict.fromkeys(row.covered_by.values())})
            continue
        for entry in row.tests.values():
            counts.update(dict.fromkeys(dict.fromkeys((entry.covered_by or {}).values()), 1))
    return {twin: n for twin, n in sorted(counts.items()) if n}


def _hunts(reports: list[Named]) -> Hunt | None:
    """Every hunted test of every report (a hunt is evidence, never deduplicated away)."""
    from prism_testkit.report.shape import Hunt

    tests = [entry for typed in reports if typed.report.hunt is not None for entry in typed.report.hunt.tests]
    if not tests:
        return None
    ordered = sorted(tests, key=lambda entry: str(entry.test))
    return Hunt(tests=ordered, failures=[e for e in ordered if e.failed])


def _digests(reports: list[Named]) -> dict[str, Digest]:
    found: dict[str, Digest] = {}
    first_of: dict[str, str] = {}
    for typed in reports:
        for test, digest in typed.report.history_digests.items():
            found.setdefault(same_test(first_of, test, digest.identity), digest)
    return dict(sorted(found.items()))


def _depth(reports: list[Named]) -> Depth | None:
    """The run's depth: the first report's (what it asked for, the commands that go deeper), with
    what every report's stateful tests drew."""
    depths = [typed.report.depth for typed in reports if typed.report.depth is not None]
    if not depths:
        return None
    first = depths[0].model_copy()
    if any("drawn" in depth.model_fields_set for depth in depths):
        first.drawn = sorted({drawn for depth in depths for drawn in depth.drawn})
    return first
