"""``prism-testkit report versions``: which server releases carry which known finding.

Each ``--prism-report`` of a run on one server binary (``--prism-binary NAME=PATH``) lists its
``judged`` tests: every test that measured a scenario's loss and handed it to
:func:`prism_testkit.findings.judge`, with the server version its driver was told and the
verdict. This module lays several such reports side by side: a row per known finding (and per
judged scenario no finding covers, such as a control) and backend, a column per server version,
a cell saying what that version did there:

* 🐞 the finding reproduced (a loss it names: the tests' xfail);
* ❌ a loss no finding covers on that version (a new bug, or one back in a release said to fix it);
* ✅ the guarantee held (nothing lost), with a warning where the registry expected the finding
  (it stopped reproducing: ``docs/findings.md`` and its ``fixed_in`` need updating);
* 🟡 lost within a window the backend documents (a lazy fsync interval): tolerated, shown;
* — not run (no report of that version judged that row).

The version is the one the driver was told by the server; where a report's verdict has none,
the report's ``backends`` entry for that backend gives it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel

from prism_testkit import findings
from prism_testkit.redaction import redact
from prism_testkit.report.merge import Named, ReportMergeError, named_reports, plural, totals
from prism_testkit.report.shape import Totals

if TYPE_CHECKING:
    from prism_testkit.report.shape import Report

# findings.judge's verdicts
KNOWN, LOST, NO_LONGER, TOLERATED, HELD = "known", "lost", "no longer reproduces", "tolerated", "held"
VERDICTS = (LOST, KNOWN, NO_LONGER, TOLERATED, HELD)  # worst first: the cell's mark is its worst verdict's
RED_VERDICTS = frozenset({LOST, NO_LONGER})  # the judged test failed (exit 1, as the runs did)
_MARK = {LOST: "❌", KNOWN: "🐞", NO_LONGER: "✅", TOLERATED: "🟡", HELD: "✅"}
NOT_RUN = "—"
UNKNOWN_VERSION = "unknown"
LISTED = 3  # a cell lists each test's loss up to this many tests, then gives the range
LEGEND = (
    "🐞 the known finding reproduced (acknowledged writes lost, as its docs/findings.md entry says) · "
    "❌ lost, and no known finding covers this version · ✅ the guarantee held (nothing lost; ⚠️ where "
    "the registry expected the finding: update docs/findings.md and prism_testkit/findings.py) · "
    "🟡 lost within a window the backend documents (tolerated) · "
    f"{NOT_RUN} not run on this version"
)
RowKey = tuple[str, str, str]  # finding id ("" for none), scenario, backend


class VersionCell(BaseModel):
    """What one server version did in a row: its worst verdict (``status``, or ``not run``), how
    many tests, and (where it ran) each verdict's tests, each test's ``[lost, acknowledged]`` in
    test order, the findings expected, the windows a tolerated loss fell in and what the counts
    count where the harm is no lost write."""

    status: str
    tests: int
    verdicts: dict[str, int] = {}
    losses: list[tuple[int, int]] = []
    findings: list[str] = []
    windows: list[str] = []
    counts: list[str] = []


class VersionRow(BaseModel):
    """A known finding (None: a judged scenario no finding covers, such as a control) on a
    backend: a cell per server version."""

    finding: str | None
    scenario: str
    backend: str
    cells: dict[str, VersionCell]


class VersionRun(BaseModel):
    """A report tabulated: the versions it judged, how many tests, and pytest's counts."""

    report: str
    versions: list[str]
    judged: int
    totals: Totals


class VersionTable(BaseModel):
    """``prism-testkit report versions``: known finding x server version (``--json`` writes it)."""

    versions: list[str]  # in release order, "unknown" last
    rows: list[VersionRow]
    runs: list[VersionRun]

    def dump(self) -> dict[str, object]:
        """As ``--json`` writes it."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True)
class Verdict:
    """One judged test of one report."""

    report: str
    test: str
    finding: str | None
    scenario: str
    backend: str
    version: str
    verdict: str
    lost: int
    acknowledged: int
    tolerated: str | None = None  # the documented window a tolerated loss fell in
    counts: str | None = None  # what lost of acknowledged counts where it is no write loss (judge's counts)


def verdicts(named: Named) -> list[Verdict]:
    """The report's judged tests; ReportMergeError for an entry that is not a verdict."""
    report = named.report
    # the server's own word, else what the report's backends say it ran
    told = {entry.backend: entry.server_version for entry in report.backends}
    found = []
    for index, entry in enumerate(report.judged):
        scenario, backend, verdict = entry.scenario, entry.backend, entry.verdict
        lost, acknowledged = entry.lost, entry.acknowledged
        if scenario is None or backend is None or verdict is None or lost is None or acknowledged is None:
            lacks = ", ".join(name for name in _VERDICT_FIELDS if getattr(entry, name) is None)
            raise ReportMergeError(f"{named.path}: judged entry {index} is not a verdict: it has no {lacks}")
        if verdict not in VERDICTS:
            raise ReportMergeError(f"{named.path}: judged entry {index} is not a verdict: unknown verdict {verdict!r}")
        found.append(
            Verdict(
                report=named.path,
                test=entry.test,
                finding=entry.finding or None,
                scenario=scenario,
                backend=backend,
                version=entry.version or told.get(backend) or UNKNOWN_VERSION,
                verdict=verdict,
                lost=lost,
                acknowledged=acknowledged,
                tolerated=entry.tolerated or None,
                counts=entry.counts or None,
            )
        )
    return found


_VERDICT_FIELDS = ("verdict", "scenario", "backend", "lost", "acknowledged")  # what a cell needs of a verdict


def _version_order(version: str) -> tuple[bool, tuple[int, ...], str]:
    return (version == UNKNOWN_VERSION, findings.version_key(version), version)


def version_table(reports: list[Report]) -> VersionTable:
    """A row per known finding (or judged scenario) and backend, a cell per server version
    (:class:`VersionCell`); ``runs`` says per report the versions it judged and pytest's counts."""
    if not reports:
        raise ReportMergeError("no reports to tabulate")
    judged = [(named, verdicts(named), *_read(named.report)) for named in named_reports(reports)]
    found = [verdict for _, of_report, _, _ in judged for verdict in of_report]
    if not found:
        names = ", ".join(named.path for named, _, _, _ in judged)
        raise ReportMergeError(
            f"no test of {names} was judged against the known findings (no 'judged' section): run a suite that "
            "judges its loss, such as prism_testkit/suites/test_contract_damaged_leader.py, with --prism-report"
        )
    versions = sorted({v.version for v in found}, key=_version_order)
    by_row: dict[RowKey, list[Verdict]] = {}
    for verdict in sorted(found, key=lambda v: (v.test, v.report)):
        by_row.setdefault((verdict.finding or "", verdict.scenario, verdict.backend), []).append(verdict)
    rows = [
        VersionRow(
            finding=finding or None,
            scenario=scenario,
            backend=backend,
            cells={version: _cell([v for v in of_row if v.version == version]) for version in versions},
        )
        for (finding, scenario, backend), of_row in sorted(by_row.items(), key=lambda kv: (not kv[0][0], kv[0]))
    ]
    ran = {backend for _, _, backends, _ in judged for backend in backends}
    judged_findings = {v.finding for v in found}
    for known in sorted(findings.KNOWN.values(), key=lambda f: f.id):
        # a finding of a backend these runs had whose scenario none of them judged: said, not hidden
        if known.id not in judged_findings and known.backends & ran:
            rows.append(
                VersionRow(
                    finding=known.id,
                    scenario=known.scenario,
                    backend=", ".join(sorted(known.backends & ran)),
                    cells={version: _cell([]) for version in versions},
                )
            )
    runs = [
        VersionRun(
            report=named.path,
            versions=sorted({v.version for v in of_report}, key=_version_order),
            judged=len(of_report),
            totals=counted,
        )
        for named, of_report, _, counted in judged
    ]
    return VersionTable(versions=versions, rows=rows, runs=runs)


def _read(report: Report) -> tuple[set[str], Totals]:
    """The backends a report ran and pytest's counts."""
    listed = {entry.backend for entry in report.backends}
    ran = {backend for row in report.suites for backend in row.combination.values()}
    return listed | ran, totals(report)


def _cell(of_cell: list[Verdict]) -> VersionCell:
    if not of_cell:
        return VersionCell(status="not run", tests=0)
    counted = Counter(v.verdict for v in of_cell)
    return VersionCell(
        status=next(verdict for verdict in VERDICTS if counted[verdict]),
        tests=len(of_cell),
        verdicts={verdict: counted[verdict] for verdict in VERDICTS if counted[verdict]},
        losses=[(v.lost, v.acknowledged) for v in of_cell],
        findings=sorted({v.finding for v in of_cell if v.finding}),
        windows=sorted({v.tolerated for v in of_cell if v.tolerated}),
        counts=sorted({v.counts for v in of_cell if v.counts}),
    )


def red(table: VersionTable) -> bool:
    """Whether a judged test failed (a loss no finding covers, or a finding that stopped
    reproducing) or a run failed elsewhere: a test that failed before its verdict leaves its
    cell "not run", which must not read as a quiet table."""
    judged = any(cell.status in RED_VERDICTS for row in table.rows for cell in row.cells.values())
    return judged or any(_failed(run) for run in table.runs)


def _failed(run: VersionRun) -> bool:
    return bool(run.totals.failed or run.totals.errors)


def cell_text(cell: VersionCell) -> str:
    """``🐞 2 of 2 reproduced: lost 7,020 of 7,701, 4,875 of 7,701``; ``✅ 1 of 1 held (7,701 acknowledged)``."""
    if cell.status == "not run":
        return NOT_RUN
    tests = cell.tests
    counted = cell.verdicts
    losses = [(lost, acknowledged) for lost, acknowledged in cell.losses if lost]
    parts = []
    if counted.get(KNOWN):
        parts.append(f"{counted[KNOWN]} of {tests} reproduced")
    if counted.get(LOST):
        parts.append(f"{counted[LOST]} of {tests} lost, no finding covers this version")
    if counted.get(TOLERATED):
        parts.append(f"{counted[TOLERATED]} of {tests} lost within {' and '.join(cell.windows)} (tolerated)")
    held = counted.get(HELD, 0) + counted.get(NO_LONGER, 0)
    if held:
        parts.append(f"{held} of {tests} held")
    if counted.get(NO_LONGER):
        parts.append(f"⚠️ {counted[NO_LONGER]} expected {', '.join(cell.findings)}: update it")
    text = f"{_MARK[cell.status]} " + ", ".join(parts)
    # a scenario whose harm is no lost write says what it counted (findings.judge's counts)
    counts = " and ".join(cell.counts)
    if losses:
        text += (": " + _losses(losses) + f" {counts}") if counts else ": lost " + _losses(losses)
    elif held:
        most = _thousands(max(a for _, a in cell.losses))
        text += f" (0 of {most} {counts})" if counts else f" ({most} acknowledged)"
    return text


def _losses(losses: list[tuple[int, int]]) -> str:
    if len(losses) <= LISTED:
        return ", ".join(f"{_thousands(lost)} of {_thousands(acknowledged)}" for lost, acknowledged in losses)
    low, high = min(lost for lost, _ in losses), max(lost for lost, _ in losses)
    return f"{_thousands(low)} to {_thousands(high)} of up to {_thousands(max(a for _, a in losses))}"


def _thousands(count: int) -> str:
    return f"{count:,}"


def _escape(text: str) -> str:
    return redact(text).replace("|", "\\|").replace("\n", " ")


def _finding_text(finding: str | None) -> str:
    known = findings.KNOWN.get(finding or "")
    if known is None:
        return finding or "no known finding"
    return f"[{known.id}]({known.upstream})"


TITLE = "prism-testkit: known findings x server version"


def render_versions_markdown(table: VersionTable, title: str = TITLE) -> str:
    """The table (a row per finding or scenario and backend, a column per version), its legend
    and the runs it came from: fit for ``$GITHUB_STEP_SUMMARY`` or docs/findings.md."""
    versions = table.versions
    lines = [f"## {title}", ""]
    lines.append("| finding | scenario | backend | " + " | ".join(_escape(v) for v in versions) + " |")
    lines.append("|---|---|---|" + "---|" * len(versions))
    for row in table.rows:
        cells = " | ".join(cell_text(row.cells[v]) for v in versions)
        lines.append(f"| {_finding_text(row.finding)} | {_escape(row.scenario)} | {_escape(row.backend)} | {cells} |")
    lines += ["", LEGEND, "", "Runs:", ""]
    for run in table.runs:
        counted = run.totals
        judged = "no judged test"
        if run.judged:
            judged = f"{plural(run.judged, 'judged test')} on {', '.join(run.versions)}"
        errors = f", {plural(counted.errors, 'error')}" if counted.errors else ""
        failed = " ❌ (a test that failed before its verdict leaves its cell —: see the report's failures)"
        lines.append(
            f"- `{_escape(run.report)}`: {judged}; {counted.passed} passed, {counted.failed} failed, "
            f"{counted.skipped} skipped (xfails included){errors}{failed if _failed(run) else ''}"
        )
    return "\n".join(lines)
