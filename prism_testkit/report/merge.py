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
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_testkit.errors import PrismError
from prism_testkit.report import unavailable_faults

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


def row_colour(row: dict[str, Any]) -> str:
    """Red when a test failed or errored or the checker found anomalies, green when one passed,
    else yellow."""
    if row.get("failed") or row.get("errors") or found_counts(row.get("anomalies") or {}):
        return RED
    return GREEN if row.get("passed") else YELLOW


def merged_entry(known: dict[str, Any], other: dict[str, Any]) -> dict[str, Any] | None:
    """One test found in two shards: one outcome counts once; a test one job left to the twin
    (covered) and another ran takes what ran; any other pair of outcomes is a contradiction
    (None), which stops the merge."""
    if known.get("covered_by") and not other.get("covered_by"):
        return other  # a skip that ran too: the merge must not depend on the order of the files
    if other.get("covered_by") and not known.get("covered_by"):
        return known
    return known if known["outcome"] == other["outcome"] else None


ROW_COUNTS = ("passed", "failed", "skipped", "errors")
# Tests in no suite x combination row, counted apart in a report: plain tests (also in a suite
# module) and the tests of a module nothing selected fits. A merge counts them as a run does.
BUCKETS = ("outside_suites", "without_combination")
RowKey = tuple[str, str, tuple[tuple[str, str], ...]]  # suite, namespace ("" for none), combination


class ReportMergeError(PrismError):
    """A report cannot be read, or two reports contradict each other."""


@dataclass(frozen=True)
class LoadedReport:
    path: str
    data: dict[str, Any]


def load_report(path: str | Path) -> LoadedReport:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ReportMergeError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportMergeError(f"{path}: not a JSON report: {exc}") from None
    except RecursionError:
        raise ReportMergeError(f"{path}: not a JSON report: nested too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("suites"), list):
        raise ReportMergeError(f"{path}: not a prism-testkit report (no 'suites' list)")
    return LoadedReport(str(path), data)


# What a row counts per name besides outcomes: checker findings (forbidden, tolerated) and the
# faults the nemesis injected, by kind ("kill-node", "partition-isolate-leader", "power-cut"...),
# so a reader sees what each row survived.
# verdicts: checker -> verdicts judged; known: written-up findings reproduced (id -> tests, each
# an xfail: prism_testkit.findings), so a row of passes beside them never reads as a plain pass
KINDS = ("anomalies", "tolerated", "faults", "verdicts", "known")


def outcome_counts(outcomes: Iterable[str]) -> dict[str, int]:
    """passed / failed / skipped / errors of tests whose outcomes are "passed", "failed+error"..."""
    parts = Counter(part for outcome in outcomes for part in outcome.split("+"))
    return {"passed": parts["passed"], "failed": parts["failed"], "skipped": parts["skipped"], "errors": parts["error"]}


def found_counts(counts: dict[str, int]) -> dict[str, int]:
    """The counts that are findings: a checker that looked and found nothing may still say
    ``lost: 0``, and zero lost writes is no anomaly."""
    return {name: int(n) for name, n in sorted(counts.items()) if int(n) > 0}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def row_key(row: dict[str, Any]) -> RowKey:
    return (row["suite"], row.get("namespace") or "", tuple(sorted(row["combination"].items())))


def describe_row(key: RowKey) -> str:
    suite, namespace, combination = key
    slots = " ".join(f"{slot}={backend}" for slot, backend in combination)
    return f"suite {suite} [{f'ns={namespace} ' if namespace else ''}{slots}]"


def _merge_rows(reports: list[LoadedReport]) -> list[dict[str, Any]]:
    rows: dict[RowKey, tuple[str, dict[str, Any]]] = {}
    for report in reports:
        for row in report.data["suites"]:
            key = row_key(row)
            seen = rows.get(key)
            if seen is None:
                rows[key] = (report.path, row)
            elif "tests" in seen[1] and "tests" in row:
                rows[key] = (seen[0], _add_shard(key, seen, (report.path, row)))
            else:
                _same_counts(key, seen, (report.path, row))
    return [row for _, (_, row) in sorted(rows.items())]


def _add_shard(key: RowKey, first: tuple[str, dict[str, Any]], other: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """One row from two shards of it: the union of their tests, counted again."""
    (first_path, first_row), (other_path, other_row) = first, other
    tests = dict(first_row["tests"])
    for test, entry in other_row["tests"].items():
        known = tests.setdefault(test, entry)
        merged_test = merged_entry(known, entry)
        if merged_test is not None:
            tests[test] = merged_test
        else:
            raise ReportMergeError(
                f"{first_path} and {other_path} disagree on {describe_row(key)}: "
                f"{test} {known['outcome']} vs {entry['outcome']}"
            )
    merged = {
        name: value
        for name, value in first_row.items()
        if name not in (*COUNTS, "errors", "tests", "covered", "covered_by")
    }
    merged.update(outcome_counts(entry["outcome"] for entry in tests.values()))
    for kind in KINDS:
        found: Counter[str] = Counter()
        for entry in tests.values():
            found.update(found_counts(entry.get(kind, {})))
        merged[kind] = dict(sorted(found.items()))
    merged["duration_s"] = round(sum(float(entry.get("duration_s", 0.0)) for entry in tests.values()), 3)
    drawn = [int(entry["depth"]) for entry in tests.values() if "depth" in entry]
    if drawn:  # the examples its stateful tests drew, over every shard
        merged["depth"] = max(drawn)
    covered = [entry["covered_by"] for entry in tests.values() if entry.get("covered_by")]
    if covered:  # tests a replicated backend's twin ran in its place (skipped here)
        merged["covered"] = len(covered)
        merged["covered_by"] = {b: t for found in covered for b, t in sorted(found.items())}
    merged["tests"] = dict(sorted(tests.items()))
    return merged


def _same_counts(key: RowKey, first: tuple[str, dict[str, Any]], other: tuple[str, dict[str, Any]]) -> None:
    (first_path, first_row), (other_path, other_row) = first, other
    differing = [name for name in (*COUNTS, "errors") if _count(first_row, name) != _count(other_row, name)]
    if differing:
        detail = ", ".join(f"{name} {_count(first_row, name)} vs {_count(other_row, name)}" for name in differing)
        raise ReportMergeError(f"{first_path} and {other_path} disagree on {describe_row(key)}: {detail}")


def _count(row: dict[str, Any], name: str) -> Any:
    value = row.get(name, 0 if name == "errors" else None)  # reports before the errors column had none
    return found_counts(value) if isinstance(value, dict) else value


def _reasons(reports: list[LoadedReport], section: str, ran: set[str]) -> dict[str, str]:
    """suite -> reason for suites listed in ``section`` of some report that ran nowhere."""
    found: dict[str, str] = {}
    for report in reports:
        for entry in report.data.get(section, []):
            if entry["suite"] not in ran:
                found.setdefault(entry["suite"], entry["reason"])
    return found


def merge_reports(reports: list[LoadedReport]) -> dict[str, Any]:
    """One report equivalent to a single run over the union of the reports' rows."""
    if not reports:
        raise ReportMergeError("no reports to merge")
    check_shapes(reports)
    check_runs_and_shards(reports)
    rows = _merge_rows(reports)
    ran = {row["suite"] for row in rows}
    no_runnable = _reasons(reports, "no_runnable_combinations", ran)
    not_applicable = {s: r for s, r in _reasons(reports, "not_applicable", ran).items() if s not in no_runnable}
    available: dict[str, dict[str, Any]] = {}  # backend -> how the first job provisioned it, its version
    for report in reports:
        for entry in report.data.get("backends", []):
            available.setdefault(entry["backend"], entry)
    unavailable: dict[str, str] = {}
    for report in reports:
        for entry in report.data.get("unavailable", []):
            if entry["backend"] not in available:
                unavailable.setdefault(entry["backend"], entry["reason"])
    return {
        **{bucket: _merge_bucket(reports, bucket, ran) for bucket in BUCKETS},
        "suites": rows,
        "no_runnable_combinations": [{"suite": s, "reason": r} for s, r in sorted(no_runnable.items())],
        "not_applicable": [{"suite": s, "reason": r} for s, r in sorted(not_applicable.items())],
        "backends": [available[b] for b in sorted(available)],
        "unavailable": [{"backend": b, "reason": r} for b, r in sorted(unavailable.items())],
        **(
            {"not_provisioned": [{"backend": b, "reason": r} for b, r in sorted(stopped.items())]}
            if (stopped := _first_reasons(reports, "not_provisioned"))
            else {}
        ),
        "failures": _failures(reports),
        **({"power_cuts": cuts} if (cuts := _by_test(reports, "power_cuts")) else {}),
        **({"judged": judged} if (judged := _by_test(reports, "judged")) else {}),
        "failed_to_start": [
            {"backend": b, "reason": r} for b, r in sorted(_first_reasons(reports, "failed_to_start").items())
        ],
        **({"unavailable_faults": faults} if (faults := unavailable_faults.merged([r.data for r in reports])) else {}),
        **({"covered_by_twins": twins} if (twins := _covered_by_twins(rows)) else {}),
        **({"hunt": hunt} if (hunt := _hunts(reports)) else {}),
        **({"history_digests": digests} if (digests := _digests(reports)) else {}),
        "runs": [dict(report.data["run"], report=report.path) for report in reports if report.data.get("run")],
        **({"shards": shards} if (shards := _shards(reports)) else {}),
        "merged_from": [report.path for report in reports],
    }


def _first_reasons(reports: list[LoadedReport], section: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for report in reports:
        for entry in report.data.get(section, []):
            found.setdefault(entry["backend"], entry["reason"])
    return found


def _failures(reports: list[LoadedReport]) -> list[dict[str, Any]]:
    return _by_test(reports, "failures")


def _by_test(reports: list[LoadedReport], section: str) -> list[dict[str, Any]]:
    """A section of per-test entries: each test's first, in test order."""
    found: dict[str, dict[str, Any]] = {}
    for report in reports:
        for entry in report.data.get(section, []):
            found.setdefault(entry["test"], entry)
    return [found[test] for test in sorted(found)]


def totals(report: dict[str, Any]) -> dict[str, int]:
    """Tests passed / failed / skipped / errors over every row and the tests in none (outside the
    suites, or in a module nothing selected fits), and the suites that had no combination."""
    outside = [report.get(bucket) or {} for bucket in BUCKETS]  # tests in no row count too
    counted = {name: sum(int(row.get(name, 0)) for row in [*report["suites"], *outside]) for name in ROW_COUNTS}
    counted["rows"] = len(report["suites"])
    counted["suites_without_combination"] = len(report.get("no_runnable_combinations", []))
    # backends a job named and could not provision: that job stopped before any test (red)
    counted["backends_not_provisioned"] = len(report.get("not_provisioned", []))
    return counted


def check_shapes(reports: list[LoadedReport]) -> None:
    """Every report has a report's shape (:mod:`.shape`), or ReportMergeError names the file and
    where it is not one."""
    from prism_testkit.report.shape import problems  # pydantic: paid for by the merge only

    for report in reports:
        found = problems(report.data)
        if found:
            raise ReportMergeError(f"{report.path}: not a prism-testkit report: {'; '.join(found)}")


def shard_text(shard: dict[str, Any]) -> str:
    """``shard 2 of 3 of `--prism-backend=redis```."""
    of = f" of `{shard['selection']}`" if shard.get("selection") else ""
    return f"shard {shard['index']} of {shard['count']}{of}"


def check_runs_and_shards(reports: list[LoadedReport]) -> None:
    """No run twice (the same ``run.id``: a report given twice, or copied), and of every sharded
    selection each shard once, none missing: a merge short of a shard, or with one counted
    twice, would say less or more than the run said."""
    runs: dict[str, str] = {}
    for report in reports:
        run_id = (report.data.get("run") or {}).get("id")
        if run_id is None:
            continue  # a report written before runs had an id
        if str(run_id) in runs:
            raise ReportMergeError(
                f"{runs[str(run_id)]} and {report.path} are the same run (run id {run_id}): a report given twice"
            )
        runs[str(run_id)] = report.path
    selections: dict[str, dict[int, tuple[str, dict[str, Any]]]] = {}
    counts: dict[str, tuple[str, int]] = {}
    for report in reports:
        shard = report.data.get("shard")
        if not shard:
            continue
        selection = str(shard.get("selection") or "")
        index, count = int(shard["index"]), int(shard["count"])
        if index > count:
            raise ReportMergeError(f"{report.path}: shard {index} of {count} cannot be")
        first = counts.setdefault(selection, (report.path, count))
        if first[1] != count:
            raise ReportMergeError(
                f"{first[0]} and {report.path} disagree on how many shards {selection or 'the run'} has: "
                f"{first[1]} vs {count}"
            )
        seen = selections.setdefault(selection, {})
        if index in seen:
            raise ReportMergeError(f"{shard_text(shard)} twice: {seen[index][0]} and {report.path}")
        seen[index] = (report.path, shard)
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


def _merge_bucket(reports: list[LoadedReport], bucket: str, ran: set[str]) -> dict[str, Any]:
    """The tests no row holds (``bucket``: outside_suites, without_combination), merged test by
    test as a row's are: a test in two reports with one outcome counts once, with two it is a
    contradiction. A module let off in one job (its tests skipped: nothing there fits) whose
    suite ran in another (``ran``) is no gap, as its suite is no longer "not applicable": its
    skips are left out; a red one stays, as its job was red. A report written before buckets
    carried their tests adds its counts (without_combination: only the red ones, its skips
    cannot be told apart)."""
    tests: dict[str, dict[str, Any]] = {}
    found_in: dict[str, str] = {}
    counted: Counter[str] = Counter()
    for report in reports:
        found = report.data.get(bucket) or {}
        if found.get("tests") is None:
            names = ("failed", "errors") if bucket == "without_combination" else ROW_COUNTS
            counted.update({name: int(found.get(name, 0)) for name in names})
            continue
        for test, entry in found["tests"].items():
            known = tests.setdefault(test, entry)
            merged_test = merged_entry(known, entry)
            if merged_test is None:
                raise ReportMergeError(
                    f"{found_in[test]} and {report.path} disagree on {test} ({bucket.replace('_', ' ')}): "
                    f"{known['outcome']} vs {entry['outcome']}"
                )
            tests[test] = merged_test
            found_in.setdefault(test, report.path)
    tests = {
        test: entry
        for test, entry in sorted(tests.items())
        if is_red(entry["outcome"]) or entry.get("suite") is None or entry["suite"] not in ran
    }
    counted.update(outcome_counts(entry["outcome"] for entry in tests.values()))
    return {**{name: counted[name] for name in ROW_COUNTS}, "tests": tests}


def _covered_by_twins(rows: list[dict[str, Any]]) -> dict[str, int]:
    """twin -> how many tests of replicated backends it covered, as a run counts them."""
    counts: Counter[str] = Counter()
    for row in rows:
        if "tests" not in row:  # a report before rows carried their tests: the row's count
            counts.update(
                {twin: int(row.get("covered", 0)) for twin in dict.fromkeys(row.get("covered_by", {}).values())}
            )
            continue
        for entry in row["tests"].values():
            counts.update(dict.fromkeys(dict.fromkeys((entry.get("covered_by") or {}).values()), 1))
    return {twin: n for twin, n in sorted(counts.items()) if n}


def _hunts(reports: list[LoadedReport]) -> dict[str, Any]:
    """Every hunted test of every report (a hunt is evidence, never deduplicated away)."""
    tests = [entry for report in reports for entry in (report.data.get("hunt") or {}).get("tests", [])]
    if not tests:
        return {}
    ordered = sorted(tests, key=lambda entry: str(entry["test"]))
    return {"tests": ordered, "failures": [entry for entry in ordered if entry.get("failed")]}


def _digests(reports: list[LoadedReport]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for report in reports:
        for test, digest in (report.data.get("history_digests") or {}).items():
            found.setdefault(test, digest)
    return dict(sorted(found.items()))


def _shards(reports: list[LoadedReport]) -> list[dict[str, Any]]:
    return [dict(report.data["shard"], report=report.path) for report in reports if report.data.get("shard")]
