"""Merging the JSON reports of a CI matrix (one job per backend) into one report.

The merged report has the shape of a single run's report (``--prism-report``), so whatever reads
one reads the other. Rows are keyed by suite, namespace and combination, and carry each test's
outcome: shards of one row (``-k``, ``--splits``, xdist groups) add up, a test found twice with
one outcome counts once, and only a test found with two outcomes contradicts: merging stops with
an error naming both files. Reports written before rows carried their tests must agree on a
shared row's counts. A suite that ran anywhere is no
longer "not applicable" or "without a runnable combination"; a backend tested by any job is not
unavailable.
"""

from __future__ import annotations

import json
from collections import Counter
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
    if not isinstance(data, dict) or not isinstance(data.get("suites"), list):
        raise ReportMergeError(f"{path}: not a prism-testkit report (no 'suites' list)")
    return LoadedReport(str(path), data)


# What a row counts per name besides outcomes: checker findings (forbidden, tolerated) and the
# faults the nemesis injected, by kind ("kill-node", "partition-isolate-leader", "power-cut"...),
# so a reader sees what each row survived.
# verdicts: checker -> verdicts judged; known: written-up findings reproduced (id -> tests, each
# an xfail: prism_testkit.findings), so a row of passes beside them never reads as a plain pass
KINDS = ("anomalies", "tolerated", "faults", "verdicts", "known")


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
    outcomes = Counter(part for entry in tests.values() for part in entry["outcome"].split("+"))
    merged.update(
        passed=outcomes["passed"], failed=outcomes["failed"], skipped=outcomes["skipped"], errors=outcomes["error"]
    )
    for kind in KINDS:
        found: Counter[str] = Counter()
        for entry in tests.values():
            found.update(found_counts(entry.get(kind, {})))
        merged[kind] = dict(sorted(found.items()))
    merged["duration_s"] = round(sum(float(entry.get("duration_s", 0.0)) for entry in tests.values()), 3)
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
        "suites": rows,
        "no_runnable_combinations": [{"suite": s, "reason": r} for s, r in sorted(no_runnable.items())],
        "not_applicable": [{"suite": s, "reason": r} for s, r in sorted(not_applicable.items())],
        "backends": [available[b] for b in sorted(available)],
        "unavailable": [{"backend": b, "reason": r} for b, r in sorted(unavailable.items())],
        "failures": _failures(reports),
        **({"power_cuts": cuts} if (cuts := _by_test(reports, "power_cuts")) else {}),
        **({"judged": judged} if (judged := _by_test(reports, "judged")) else {}),
        "failed_to_start": [
            {"backend": b, "reason": r} for b, r in sorted(_first_reasons(reports, "failed_to_start").items())
        ],
        **({"unavailable_faults": faults} if (faults := unavailable_faults.merged([r.data for r in reports])) else {}),
        "runs": [dict(report.data["run"], report=report.path) for report in reports if report.data.get("run")],
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
    """Tests passed / failed / skipped / errors over every row, and the suites that had no combination."""
    counted = {name: sum(int(row.get(name, 0)) for row in report["suites"]) for name in ROW_COUNTS}
    counted["rows"] = len(report["suites"])
    counted["suites_without_combination"] = len(report.get("no_runnable_combinations", []))
    return counted
