"""The compliance matrix of a (merged) report: backend x suite, as JSON and as Markdown.

A cell sums the rows whose combination uses the backend in any slot. Its status, worst first:
``failed`` (a test failed or errored, or the checker found anomalies), ``known finding`` (a
written-up violation reproduced: an xfail of :mod:`prism_testkit.findings`), ``skipped`` (nothing
passed), ``tolerated`` (passed, with findings the suite allows, such as writes lost in a power
cut by a backend that does not declare it survives one), ``passed``; ``not run`` when no
combination of the suite used the backend (the suite does not fit it, or no job selected both);
``unavailable`` for a backend that could not be provisioned, in the rows of the suites its declared
capabilities fit (in other rows it reads as any backend a suite does not fit: ``not run``, or the
row's failure); ``covered`` for a replicated backend whose tests of the suite were skipped because
its single-node twin ran them (``covered by <twin>``: never counted as passed, and the other
backends of such a row are credited by the twin's row, not by the covered one). Everything shown
is redacted: reasons may quote URLs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prism_testkit.redaction import redact
from prism_testkit.report import unavailable_faults
from prism_testkit.report.merge import RED, Counted, found_counts, plural, row_colour, totals
from prism_testkit.report.shape import Cell, Matrix

if TYPE_CHECKING:
    from prism_testkit.report.shape import Failure, Report, Row

FAILED, SKIPPED, PASSED, NOT_RUN, UNAVAILABLE = "failed", "skipped", "passed", "not run", "unavailable"
TOLERATED, COVERED, KNOWN = "tolerated", "covered", "known finding"
_MARK = {
    FAILED: "❌",
    KNOWN: "🐞",
    SKIPPED: "⏭️",
    TOLERATED: "🟡",
    PASSED: "✅",
    NOT_RUN: "—",
    UNAVAILABLE: "⚠️",
    COVERED: "↪️",
}
# What each status means, in the legend's order (the Markdown's marks, the HTML page's badges).
MEANING = {
    PASSED: "passed",
    TOLERATED: "passed, with findings the suite tolerates (not declared as guaranteed)",
    KNOWN: "a known finding reproduced (xfail naming its docs/findings.md entry)",
    FAILED: "failed, errors or anomalies",
    SKIPPED: "only skipped",
    COVERED: "covered by its single-node twin (which ran those tests)",
    NOT_RUN: "not run for this backend",
    UNAVAILABLE: "backend unavailable",
}
LEGEND = " · ".join(f"{_MARK[status]} {meaning}" for status, meaning in MEANING.items())


def status_of(cell: Counted) -> str:
    """A cell's (or a row's: it has the same counts) status, worst first."""
    if row_colour(cell) == RED:
        return FAILED
    if cell.known:  # a broken guarantee, written up: never a pass beside it
        return KNOWN
    if not cell.passed:
        return COVERED if cell.covered and not cell.skipped else SKIPPED
    return TOLERATED if cell.tolerated else PASSED


def compliance_matrix(report: Report) -> Matrix:
    """A cell per backend and suite: status, passed, failed, skipped, errors, and anomalies,
    tolerated and faults (name -> count), and known (finding id -> tests) where a known finding
    reproduced (:class:`~.shape.Cell`)."""
    cells: dict[str, dict[str, Cell]] = {}
    for row in report.suites:
        covered_by = row.covered_by
        covered = int(row.covered)
        for backend in dict.fromkeys(row.combination.values()):
            if covered and backend not in covered_by and covered == _tests(row):
                continue  # the twins' row ran this backend's tests in its slot
            cell = cells.setdefault(row.suite, {}).get(backend)
            if cell is None:
                cell = Cell(passed=0, failed=0, skipped=0, errors=0, anomalies={}, tolerated={}, faults={}, status="")
                cells[row.suite][backend] = cell
            cell.passed += row.passed
            cell.failed += row.failed
            cell.skipped += row.skipped
            cell.errors += row.errors  # reports before the errors column had none: 0
            if covered:  # skipped as covered: counted apart from the other skips
                cell.skipped -= covered
                if backend in covered_by:
                    cell.covered += covered
                    if covered_by[backend] not in cell.covered_by:
                        cell.covered_by = [*cell.covered_by, covered_by[backend]]
            cell.anomalies = _added(cell.anomalies, row.anomalies)  # older reports kept zeros
            cell.tolerated = _added(cell.tolerated, row.tolerated)
            if known := _added(cell.known, row.known):  # only where a known finding reproduced
                cell.known = known
            cell.faults = _added(cell.faults, row.faults)
    for row_cells in cells.values():
        for cell in row_cells.values():
            cell.status = status_of(cell)
    tested = sorted({backend for row_cells in cells.values() for backend in row_cells})
    available = [entry.backend for entry in report.backends]
    # backend -> the suites it would fit (None: not known, so every suite, as reports before it)
    unavailable = {entry.backend: entry.fits for entry in report.unavailable}
    backends = sorted({*tested, *available, *unavailable})
    let_off = [entry.suite for entry in report.not_applicable]
    failed_suites = [entry.suite for entry in report.no_runnable_combinations]
    for suite in let_off + failed_suites:
        cells.setdefault(suite, {})
    for suite, row_cells in cells.items():
        for backend in backends:
            if backend in row_cells:
                continue
            if backend in unavailable and ((fits := unavailable[backend]) is None or suite in fits):
                row_cells[backend] = Cell(status=UNAVAILABLE)
            elif suite in failed_suites:
                row_cells[backend] = Cell(status=FAILED, reason="no runnable combination")
            else:
                row_cells[backend] = Cell(status=NOT_RUN)
    return Matrix(backends=backends, suites=sorted(cells), cells={s: cells[s] for s in sorted(cells)})


def _added(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """``counts`` with the findings of ``more`` added (a count of 0 is no finding)."""
    found = dict(counts)
    for finding, count in found_counts(more).items():
        found[finding] = found.get(finding, 0) + count
    return found


def _tests(row: Row) -> int:
    return row.passed + row.failed + row.skipped + row.errors


def _cell_text(cell: Cell) -> str:
    """The Markdown cell: the status's mark, then :func:`cell_words`."""
    mark = _MARK[cell.status]
    return f"{mark} {text}" if (text := cell_words(cell)) else mark


def cell_words(cell: Cell) -> str:
    """What a cell of :func:`compliance_matrix` says, without its mark (the Markdown adds one,
    the HTML page a coloured badge): its counts, findings and what its passes survived; empty
    for a backend the suite did not run on."""
    status = cell.status
    if status == NOT_RUN:
        return ""
    if status == UNAVAILABLE:
        return str(status)
    if "passed" not in cell.model_fields_set:
        return cell.reason or status
    twins = ", ".join(cell.covered_by)
    if status == COVERED:
        return f"covered by {twins}"
    parts = [f"{cell.passed} passed"]
    parts += [f"{count} {name}" for name, count in (("failed", cell.failed), ("skipped", cell.skipped)) if count]
    if cell.errors:
        parts.append(plural(cell.errors, "error"))
    if cell.covered:
        parts.append(f"{cell.covered} covered by {twins}")
    parts += [f"{count} {words(name)}" for name, count in sorted(cell.anomalies.items())]
    parts += [f"{count} {words(name)} (tolerated)" for name, count in sorted(cell.tolerated.items())]
    parts += [f"{name} reproduced ({plural(count, 'test')})" for name, count in sorted(cell.known.items())]
    text = ", ".join(parts)
    if cell.faults:  # what the passes survived
        text += "; under " + survived(cell.faults)
    return text


def survived(faults: dict[str, int]) -> str:
    """``kill (3), partition (2)``: the faults a row or cell was checked under."""
    return ", ".join(f"{words(name)} ({count})" for name, count in sorted(faults.items()))


def words(finding: str) -> str:
    """``lost-in-power-cut`` reads as "lost in power cut"."""
    return finding.replace("-", " ").replace("_", " ")


def _escape(text: str) -> str:
    return redact(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(typed: Report, title: str = "prism-testkit compliance matrix") -> str:
    """The matrix (one row per suite, one column per backend), totals and the reasons behind
    every failed, unavailable or not-applicable entry: fit for ``$GITHUB_STEP_SUMMARY``."""
    matrix = compliance_matrix(typed)
    backends = matrix.backends
    lines = [f"## {title}", ""]
    counted = totals(typed)
    errors = f", {plural(counted.errors, 'error')}" if counted.errors else ""
    lines.append(
        f"**{counted.passed} passed, {counted.failed} failed, {counted.skipped} skipped{errors}** "
        f"in {len(typed.suites)} "
        f"suite x combination rows{outside_words(typed)}" + _sources(typed.merged_from)
    )
    lines.append("")
    if backends and matrix.suites:
        lines.append("| suite | " + " | ".join(_escape(b) for b in backends) + " |")
        lines.append("|---|" + "---|" * len(backends))
        for suite in matrix.suites:
            row_cells = matrix.cells[suite]
            lines.append(f"| {_escape(suite)} | " + " | ".join(_cell_text(row_cells[b]) for b in backends) + " |")
        lines += ["", LEGEND, ""]
    lines += _failures(typed.failures)
    for heading, entries in reason_sections(typed):
        if entries:
            lines += [f"### {heading}", ""]
            lines += [f"- **{_escape(name)}**: {_escape(reason)}" for name, reason in entries]
            lines.append("")
    lines += unavailable_faults.markdown(typed, _escape)
    return "\n".join(lines)


def reason_sections(typed: Report) -> list[tuple[str, list[tuple[str, str]]]]:
    """What could not be provisioned or run, and why, as the Markdown and the HTML page list it:
    (heading, its entries: the backend or suite each names, and its reason), the empty ones too."""
    return [
        (
            "Backends named but not provisioned (their jobs stopped before any test)",
            [(entry.backend, entry.reason) for entry in typed.not_provisioned],
        ),
        (
            "Backends that failed to start (their tests errored)",
            [(entry.backend, entry.reason) for entry in typed.failed_to_start],
        ),
        (
            "Suites without a runnable combination (failed)",
            [(entry.suite, entry.reason) for entry in typed.no_runnable_combinations],
        ),
        ("Unavailable backends (not tested)", [(entry.backend, entry.reason) for entry in typed.unavailable]),
        (
            "Suites not applicable to a job's selection",
            [(entry.suite, entry.reason) for entry in typed.not_applicable],
        ),
    ]


FAILURES_SHOWN = 50  # a step summary stays readable; the JSON's ``failures`` has them all


def _failures(failures: list[Failure]) -> list[str]:
    """What failed: each test, its combination (or "outside the suites"), the phase and the
    first line of its verdict."""
    if not failures:
        return []
    lines = [f"### Failures ({len(failures):,})", ""]
    for entry in failures[:FAILURES_SHOWN]:
        combination = entry.combination
        where = " ".join(f"{slot}={backend}" for slot, backend in combination.items()) if combination else ""
        where = f"{entry.suite} {where}".strip() if entry.suite else "outside the suites"
        when = f", {entry.when}" if entry.when and entry.when != "call" else ""
        message = str(entry.message or "").strip() or "(no message)"
        lines.append(f"- ❌ `{_code(str(entry.test))}` ({_escape(where)}{when}): {_escape(message)}")
    if len(failures) > FAILURES_SHOWN:
        lines.append(f"- and {len(failures) - FAILURES_SHOWN:,} more (the JSON report's `failures` lists them all)")
    return [*lines, ""]


def _code(text: str) -> str:
    """Inline code that no backtick in ``text`` can end early."""
    return redact(text).replace("`", "'").replace("\n", " ")


def outside_words(typed: Report) -> str:
    """The words " and 3 tests outside them" when tests in no row (plain tests, unfit modules) counted."""
    buckets = [bucket for bucket in (typed.outside_suites, typed.without_combination) if bucket is not None]
    outside = sum(bucket.passed + bucket.failed + bucket.skipped + bucket.errors for bucket in buckets)
    return f" and {plural(outside, 'test')} outside them" if outside else ""


def _sources(paths: Iterable[str]) -> str:
    paths = list(paths)
    return f", merged from {len(paths)} report{'s' if len(paths) != 1 else ''}" if paths else ""
