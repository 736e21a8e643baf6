"""Faults this machine cannot inject, listed like backends it cannot provision: loudly, under
their own heading, with the reason and the install hint (a power cut needs FUSE).

A test that asks for such a fault carries :func:`fault_property`; the results gather its row
(suite x combination) per fault, so the summary names every row that was not proved."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from prism_testkit.report.shape import Report, UnavailableFault

FAULT_UNAVAILABLE = "prism_fault_unavailable"
HEADING = "prism-testkit: UNAVAILABLE faults (not injected)"
FaultRowKey = tuple[str, tuple[tuple[str, str], ...]]  # suite, combination (as given: slot order kept)


@dataclass
class Unavailable:
    """A fault this machine cannot inject, as a run gathers it: why, how to get it, and the rows
    (suite x combination) that asked for it."""

    reason: str
    hint: str
    rows: list[FaultRowKey] = field(default_factory=list)

    def sorted_rows(self) -> list[FaultRowKey]:
        return sorted(self.rows, key=lambda row: (row[0], sorted(row[1])))


def fault_property(fault: str, reason: str, hint: str) -> tuple[str, dict[str, str]]:
    return (FAULT_UNAVAILABLE, {"fault": fault, "reason": reason, "hint": hint})


def add_row(found: dict[str, Unavailable], fault: dict[str, str], suite: str, combination: dict[str, str]) -> None:
    """Add the row ``suite`` x ``combination`` to what ``found`` (fault -> reason, hint, rows) holds."""
    entry = found.setdefault(fault["fault"], Unavailable(fault["reason"], fault["hint"]))
    if not any(known == suite and dict(slots) == combination for known, slots in entry.rows):
        entry.rows.append((suite, tuple(combination.items())))


def entries(found: dict[str, Unavailable]) -> list[UnavailableFault]:
    """The report's ``unavailable_faults``: a fault per entry, in name order, its rows sorted."""
    from prism_testkit.report.shape import FaultRow, UnavailableFault  # pydantic: a run that writes a report

    return [
        UnavailableFault(
            fault=fault,
            reason=entry.reason,
            hint=entry.hint,
            rows=[FaultRow(suite=suite, combination=dict(slots)) for suite, slots in entry.sorted_rows()],
        )
        for fault, entry in sorted(found.items())
    ]


def _combination(combination: dict[str, str]) -> str:
    return " ".join(f"{slot}={backend}" for slot, backend in combination.items())


def summarize(tr: pytest.TerminalReporter, found: dict[str, Unavailable]) -> None:
    if not found:
        return
    tr.write_sep("-", HEADING, yellow=True, bold=True)
    for fault, entry in sorted(found.items()):
        tr.write_line(f"{fault}: {entry.reason}", yellow=True, bold=True)
        tr.write_line(f"  install: {entry.hint}", yellow=True)
        for suite, slots in entry.sorted_rows():
            tr.write_line(f"  {suite}  {_combination(dict(slots))}", yellow=True)


def merged(reports: list[list[UnavailableFault]]) -> list[UnavailableFault]:
    """The unavailable faults of several reports (a CI matrix's jobs): every row of each."""
    found: dict[str, Unavailable] = {}
    for of_report in reports:
        for entry in of_report:
            fault = {"fault": entry.fault, "reason": entry.reason, "hint": entry.hint}
            for row in entry.rows:
                add_row(found, fault, row.suite, row.combination)
    return entries(found)


def markdown(report: Report, escape: Callable[[str], str]) -> list[str]:
    """The Markdown section of a report's unavailable faults (none: no lines)."""
    if not report.unavailable_faults:
        return []
    lines = ["### Unavailable faults (not injected)", ""]
    for entry in report.unavailable_faults:
        rows = ", ".join(f"{row.suite} {_combination(row.combination)}" for row in entry.rows)
        lines.append(
            f"- **{escape(entry.fault)}**: {escape(entry.reason)}; install: {escape(entry.hint)} (rows: {escape(rows)})"
        )
    return [*lines, ""]
