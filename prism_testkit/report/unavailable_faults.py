"""Faults this machine cannot inject, listed like backends it cannot provision: loudly, under
their own heading, with the reason and the install hint (a power cut needs FUSE).

A test that asks for such a fault carries :func:`fault_property`; the results gather its row
(suite x combination) per fault, so the summary names every row that was not proved."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from prism_testkit.report.shape import Report, UnavailableFault

FAULT_UNAVAILABLE = "prism_fault_unavailable"
HEADING = "prism-testkit: UNAVAILABLE faults (not injected)"


def fault_property(fault: str, reason: str, hint: str) -> tuple[str, dict[str, str]]:
    return (FAULT_UNAVAILABLE, {"fault": fault, "reason": reason, "hint": hint})


def add_row(found: dict[str, dict[str, Any]], fault: dict[str, str], suite: str, combination: dict[str, str]) -> None:
    """Add the row ``suite`` x ``combination`` to what ``found`` (fault -> reason, hint, rows) holds."""
    entry = found.setdefault(fault["fault"], {"reason": fault["reason"], "hint": fault["hint"], "rows": []})
    row = {"suite": suite, "combination": dict(combination)}
    if row not in entry["rows"]:
        entry["rows"].append(row)


def _row_key(row: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    return (row["suite"], sorted(row["combination"].items()))


def as_json(found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"fault": fault, **entry, "rows": sorted(entry["rows"], key=_row_key)} for fault, entry in sorted(found.items())
    ]


def _combination(row: dict[str, Any]) -> str:
    return " ".join(f"{slot}={backend}" for slot, backend in row["combination"].items())


def summarize(tr: pytest.TerminalReporter, found: dict[str, dict[str, Any]]) -> None:
    if not found:
        return
    tr.write_sep("-", HEADING, yellow=True, bold=True)
    for entry in as_json(found):
        tr.write_line(f"{entry['fault']}: {entry['reason']}", yellow=True, bold=True)
        tr.write_line(f"  install: {entry['hint']}", yellow=True)
        for row in entry["rows"]:
            tr.write_line(f"  {row['suite']}  {_combination(row)}", yellow=True)


def merged_typed(reports: list[list[UnavailableFault]]) -> list[dict[str, Any]]:
    """The unavailable faults of several reports (a CI matrix's jobs), as the model reads each
    report's section: every row of each."""
    found: dict[str, dict[str, Any]] = {}
    for entries in reports:
        for entry in entries:
            fault = {"fault": entry.fault, "reason": entry.reason, "hint": entry.hint}
            for row in entry.rows:
                add_row(found, fault, row.suite, row.combination)
    return as_json(found)


def markdown(report: Report, escape: Callable[[str], str]) -> list[str]:
    """The Markdown section of a report's unavailable faults (none: no lines)."""
    entries = report.unavailable_faults
    if not entries:
        return []
    lines = ["### Unavailable faults (not injected)", ""]
    for entry in entries:
        rows = ", ".join(f"{row.suite} {_combination(row.model_dump())}" for row in entry.rows)
        lines.append(
            f"- **{escape(entry.fault)}**: {escape(entry.reason)}; install: {escape(entry.hint)} (rows: {escape(rows)})"
        )
    return [*lines, ""]
