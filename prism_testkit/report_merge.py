"""Merging the JSON reports of a CI matrix (one job per backend) into one report.

The merged report has the shape of a single run's report (``--prism-report``), so whatever reads
one reads the other. Rows are keyed by suite, namespace and combination: a row found in two
reports must carry the same counts (the same tests run twice), otherwise the reports contradict
each other and merging stops with an error naming both files. A suite that ran anywhere is no
longer "not applicable" or "without a runnable combination"; a backend tested by any job is not
unavailable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_testkit.errors import PrismError

COUNTS = ("passed", "failed", "skipped", "anomalies", "tolerated")
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
                continue
            first_path, first = seen
            differing = [name for name in COUNTS if first.get(name) != row.get(name)]
            if differing:
                detail = ", ".join(f"{name} {first.get(name)} vs {row.get(name)}" for name in differing)
                raise ReportMergeError(f"{first_path} and {report.path} disagree on {describe_row(key)}: {detail}")
    return [row for _, (_, row) in sorted(rows.items())]


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
    available: dict[str, str] = {}
    for report in reports:
        for entry in report.data.get("backends", []):
            available.setdefault(entry["backend"], entry["provisioned"])
    unavailable: dict[str, str] = {}
    for report in reports:
        for entry in report.data.get("unavailable", []):
            if entry["backend"] not in available:
                unavailable.setdefault(entry["backend"], entry["reason"])
    return {
        "suites": rows,
        "no_runnable_combinations": [{"suite": s, "reason": r} for s, r in sorted(no_runnable.items())],
        "not_applicable": [{"suite": s, "reason": r} for s, r in sorted(not_applicable.items())],
        "backends": [{"backend": b, "provisioned": how} for b, how in sorted(available.items())],
        "unavailable": [{"backend": b, "reason": r} for b, r in sorted(unavailable.items())],
        "merged_from": [report.path for report in reports],
    }


def totals(report: dict[str, Any]) -> dict[str, int]:
    """Tests passed / failed / skipped over every row, and the suites that had no combination."""
    counted = {name: sum(int(row[name]) for row in report["suites"]) for name in ("passed", "failed", "skipped")}
    counted["rows"] = len(report["suites"])
    counted["suites_without_combination"] = len(report.get("no_runnable_combinations", []))
    return counted
