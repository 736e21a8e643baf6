"""A run's report (or a CI matrix's merged one) as one self-contained HTML page.

``--prism-report-html PATH`` writes it at the end of a run, ``prism-testkit report html
REPORT.json... -o DIR`` from the JSON reports of a CI matrix's jobs (merged first, as ``report
merge`` merges them). It is a view of the same report the Markdown renders: the compliance matrix
of :mod:`.matrix` (the same cells, words and statuses, a coloured badge where the Markdown has a
mark), then every suite x combination row, which opens (``<details>``) to its tests: outcome,
duration, the faults each survived, what its checkers found, its timeline page and the command
that runs it again (a stateful row with its latency plot, a cluster row with its settle times
after each fault); the failures, the findings, and what could not be provisioned or run, and why.

The page needs nothing at view time: inline CSS, no script, no font, nothing fetched (a
Content-Security-Policy of ``default-src 'none'`` says so to the browser), so a CI artifact opens
as it is. Rows open from a link too: following ``#row-N-tests`` (from a failure, or a shared
URL) opens the row that holds it. Every string that came from a run (test names, messages,
reasons, paths) is redacted and escaped: test names are hostile by design (the names suite's
hold quotes, ``<`` and non-ASCII).

The page is a function of the report's evidence only: a merge of a run's shards renders the
page of the run over both, but for the provenance at its foot (which runs and files it came
from, when), the one part that must differ (``tests/test_report_html.py``).
"""

from __future__ import annotations

import html
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from prism_testkit.redaction import redact
from prism_testkit.report.matrix import (
    MEANING,
    NOT_RUN,
    cell_words,
    compliance_matrix,
    outside_words,
    reason_sections,
    status_of,
    survived,
    words,
)
from prism_testkit.report.merge import found_counts, is_red, plural, row_key, shard_text, totals

if TYPE_CHECKING:  # the report's model (pydantic): imported when a report is read
    from prism_testkit.report.shape import Failure, FaultRow, OneTest, Report, Row, Run, Shard

TITLE = "prism-testkit report"
PROVENANCE = "provenance"  # the id of the one section a merged report's page may differ in
_RED_FIRST = {"failed": 0, "known finding": 1, "tolerated": 2, "skipped": 3, "covered": 4, "passed": 5}


def e(text: object) -> str:
    """``text`` redacted and escaped for an element's content or a quoted attribute."""
    found = str(text)
    if "://" in found or "=" in found:  # what every pattern redact() replaces holds one of them
        found = redact(found)
    return html.escape(found, quote=True)


def _slug(status: str) -> str:
    return status.replace(" ", "-")


def _badge(status: str, text: str | None = None) -> str:
    return f'<span class="badge s-{_slug(status)}">{e(text or status)}</span>'


def _combination(row: Row | FaultRow) -> str:
    text = " ".join(f"{slot}={backend}" for slot, backend in row.combination.items())
    namespace = getattr(row, "namespace", None)
    return f"ns={namespace} {text}" if namespace else text


def _counts(found: dict[str, int]) -> str:
    """``lost 2, duplicated 1``."""
    return ", ".join(f"{words(name)} {count}" for name, count in found_counts(found).items())


def _seconds(value: float | int | str | None) -> str:
    return f"{float(value or 0.0):.2f} s"


# the harness's own suites package (hunting.identity.OWN_SUITES, which imports Hypothesis)
OWN_SUITES = "prism_testkit.suites"


def default_replay(test: str, row: Row, identity: str | None = None) -> str:
    """The command that runs ``test`` of ``row`` again (a stateful failure records its own,
    with its seed: the test entry's ``replay``); the combination must exist whatever the
    covering set, as the stateful runner's replay asks. A test of the harness's own suites is
    named by its ``identity`` under ``--pyargs``, as hunting.identity.command_target names it:
    its node id is a path from where the run ran (``../../main/suites/...`` out of tree)."""
    backends = list(dict.fromkeys(row.combination.values()))
    own = identity is not None and identity.startswith(f"{OWN_SUITES}.") and "::" in identity
    target = ["--pyargs", str(identity)] if own else [test]
    args = ["pytest", *target, f"--prism-backend={','.join(backends)}"]
    if len(backends) > 1 or len(row.combination) > 1:
        args.append("--prism-combinations=all")
    return shlex.join(args)


def _href(path: str, base: Path | None) -> str:
    """A link to a file the run wrote (a timeline): relative to the page's folder when it is
    under the same root (a CI artifact keeps both), else its absolute ``file:`` URL."""
    target = Path(path)
    if base is not None and target.is_absolute():
        try:
            return quote(Path(os.path.relpath(target, base)).as_posix())
        except ValueError:  # another drive
            pass
    return target.as_uri() if target.is_absolute() else quote(target.as_posix())


_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0 24px 40px;
  color: #1d232a; background: #fbfbfc; }
h1 { font-size: 22px; margin: 20px 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dde;
  padding-bottom: 4px; } h3 { font-size: 15px; margin: 16px 0 6px; }
code, .mono { font: 12px/1.4 "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.totals { font-size: 15px; } .totals b { font-weight: 600; }
table { border-collapse: collapse; } th, td { text-align: left; vertical-align: top; padding: 4px 8px; }
table.matrix { margin: 8px 0; } table.matrix th, table.matrix td { border: 1px solid #d5d8de; }
table.matrix thead th { background: #eef0f4; position: sticky; top: 0; }
table.matrix td.cell { max-width: 280px; font-size: 13px; }
.badge { display: inline-block; border-radius: 4px; padding: 0 6px; margin-right: 4px; font-size: 12px;
  font-weight: 600; white-space: nowrap; }
.s-passed { background: #d6f5dd; color: #11612a; } td.s-passed { background: #f1fbf3; }
.s-tolerated { background: #fdeeb5; color: #6b4e00; } td.s-tolerated { background: #fffaea; }
.s-known-finding { background: #eadcff; color: #4b2a86; } td.s-known-finding { background: #f7f1ff; }
.s-failed { background: #fbd3d0; color: #8f1d15; } td.s-failed { background: #fff0ef; }
.s-skipped { background: #e7e7e7; color: #4a4a4a; } td.s-skipped { background: #f7f7f7; }
.s-covered { background: #d8e9fb; color: #1c4f86; } td.s-covered { background: #f2f8ff; }
.s-not-run { background: transparent; color: #9aa0a8; } td.s-not-run { color: #9aa0a8; text-align: center; }
.s-unavailable { background: #ffdfc2; color: #7a3b00; } td.s-unavailable { background: #fff5ec; }
.legend { font-size: 13px; color: #4a5360; } .legend li { margin: 2px 0; list-style: none; }
.legend ul { padding-left: 0; }
details.row { border: 1px solid #d5d8de; border-radius: 5px; margin: 4px 0; background: #fff; }
details.row > summary { cursor: pointer; padding: 5px 8px; }
details.row.red { border-color: #e2a19b; } details.row.red > summary { background: #fff3f2; }
details.row[open] > summary { border-bottom: 1px solid #e4e6ea; }
.row .combination { font-weight: 600; } .row .what { color: #4a5360; }
.tests { padding: 6px 8px 10px; overflow-x: auto; }
.tests table { width: 100%; font-size: 13px; } .tests th { background: #f3f4f7; }
.tests td, .tests th { border-bottom: 1px solid #eceef2; }
.tests td.test { word-break: break-all; min-width: 320px; max-width: 560px; }
.tests td.replay code { word-break: break-all; }
.figures { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
.settles { margin: 10px 0 4px; } table.settles { width: auto; } table.settles caption { text-align: left;
  font-size: 12px; color: #6b7480; caption-side: top; padding-bottom: 2px; max-width: 460px; }
figure.plot { margin: 10px 0 4px; max-width: 760px; } figure.plot img { max-width: 100%; background: #fff; }
figure.plot figcaption { font-size: 12px; color: #6b7480; word-break: break-all; }
.message { color: #8f1d15; white-space: pre-wrap; word-break: break-word; }
.quiet { color: #6b7480; }
ul.entries li { margin: 3px 0; }
footer { margin-top: 32px; font-size: 12px; color: #6b7480; border-top: 1px solid #dde; padding-top: 8px; }
"""


def render_html(report: Report, title: str = TITLE, base: Path | None = None) -> str:
    """The page of ``report`` (a run's, or a merge of several). ``base``: the folder the page is
    written to (links to timelines are made relative to it)."""
    rows = sorted(report.suites, key=row_key)
    numbered = {id(row): n for n, row in enumerate(rows, 1)}
    failures = {str(entry.test): entry for entry in report.failures}
    where = {test: numbered[id(row)] for row in rows for test in row.tests or {}}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # no script, no request: a page from a CI artifact opens offline, and says so to the browser
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        _totals(report),
        _matrix(report, rows, numbered),
        _rows(rows, numbered, failures, base),
        _failures(report, failures, where),
        _findings(report, rows, numbered),
        _not_run(report),
        _outside(report, failures),
        _provenance(report),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _totals(report: Report) -> str:
    counted = totals(report)
    errors = f", {plural(counted.errors, 'error')}" if counted.errors else ""
    head = f"{counted.passed} passed, {counted.failed} failed, {counted.skipped} skipped{errors}"
    rest = f" in {plural(len(report.suites), 'suite x combination row')}{outside_words(report)}"
    return f'<p class="totals" id="totals"><b>{e(head)}</b>{e(rest)}</p>'


def _matrix(report: Report, rows: list[Row], numbered: dict[int, int]) -> str:
    matrix = compliance_matrix(report)
    backends = matrix.backends
    if not backends or not matrix.suites:
        return '<section id="matrix"><h2>Compliance matrix</h2><p class="quiet">No suite ran.</p></section>'
    first_row: dict[str, int] = {}
    for row in rows:
        first_row.setdefault(row.suite, numbered[id(row)])
    out = ['<section id="matrix"><h2>Compliance matrix</h2>', '<table class="matrix"><thead><tr><th>suite</th>']
    out += [f'<th data-backend="{e(b)}">{e(b)}</th>' for b in backends]
    out.append("</tr></thead><tbody>")
    for suite in matrix.suites:
        cells = matrix.cells[suite]
        name = e(suite)
        link = f'<a href="#suite-{first_row[suite]}">{name}</a>' if suite in first_row else name
        out.append(f'<tr data-suite="{name}"><th>{link}</th>')
        for backend in backends:
            cell = cells[backend]
            status = cell.status
            text = cell_words(cell)
            shown = "—" if status == NOT_RUN else f"{_badge(status)}{e(_after_status(text, status))}"
            out.append(
                f'<td class="cell s-{_slug(status)}" data-backend="{e(backend)}" data-status="{e(status)}">{shown}</td>'
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    legend = "".join(f"<li>{_badge(status)} {e(meaning)}</li>" for status, meaning in MEANING.items())
    out.append(f'<div class="legend"><ul>{legend}</ul></div></section>')
    return "\n".join(out)


def _after_status(text: str, status: str) -> str:
    """A cell's words after its badge: the badge already says "unavailable"."""
    return "" if text == status else text


def _rows(rows: list[Row], numbered: dict[int, int], failures: dict[str, Failure], base: Path | None) -> str:
    if not rows:
        return ""
    out = [
        '<section id="rows"><h2>Suite x combination rows</h2>',
        '<p class="quiet">Each row opens to its tests: outcome, duration (setup + call + teardown), the faults it '
        "survived, what the checkers found, its timeline and the command that runs it again.</p>",
    ]
    suite = None
    for row in rows:
        n = numbered[id(row)]
        if row.suite != suite:
            suite = row.suite
            out.append(f'<h3 id="suite-{n}">{e(suite)}</h3>')
        out.append(_row(row, n, failures, base))
    out.append("</section>")
    return "\n".join(out)


def _row(row: Row, n: int, failures: dict[str, Failure], base: Path | None) -> str:
    status = status_of(row)  # what older reports lack: the model's defaults
    counts = [f"{int(getattr(row, name))} {name}" for name in ("passed", "failed", "skipped") if getattr(row, name)]
    if row.errors:
        counts.append(plural(int(row.errors), "error"))
    if row.covered:
        twins = ", ".join(dict.fromkeys(row.covered_by.values()))
        counts.append(f"{row.covered} covered by {twins}")
    what = [", ".join(counts) or "no tests", _seconds(row.duration_s)]
    if found := _counts(row.anomalies):
        what.append(f"anomalies: {found}")
    if found := _counts(row.tolerated):
        what.append(f"tolerated: {found}")
    if known := found_counts(row.known):
        what.append("known: " + ", ".join(known))
    if faults := found_counts(row.faults):
        what.append(f"survived {survived(faults)}" if status != "failed" else f"under {survived(faults)}")
    colour = "red" if status == "failed" else "green" if status in ("passed", "tolerated") else "yellow"
    out = [
        f'<details class="row {colour}" id="row-{n}" data-suite="{e(row.suite)}" '
        f'data-combination="{e(_combination(row))}" data-status="{e(status)}">',
        f'<summary>{_badge(status)}<span class="combination">{e(_combination(row))}</span> '
        f'<span class="what">· {e(" · ".join(what))}</span></summary>',
        f'<div class="tests" id="row-{n}-tests">',
    ]
    if verdicts := found_counts(row.verdicts):
        judged = ", ".join(f"{name} {count}" for name, count in verdicts.items())
        out.append(f'<p class="quiet">Verdicts by checker: {e(judged)}</p>')
    tests = row.tests or {}
    if not tests:
        out.append('<p class="quiet">This report (written before rows carried their tests) has counts only.</p>')
    else:
        out.append(
            "<table><thead><tr><th>test</th><th>outcome</th><th>duration</th><th>faults</th>"
            "<th>found</th><th>timeline</th><th>replay</th></tr></thead><tbody>"
        )
        out += [_test_line(test, entry, row, failures.get(test), base) for test, entry in sorted(tests.items())]
        out.append("</tbody></table>")
        figures = [*_plots(tests), *_settles(tests)]
        if figures:
            out += ['<div class="figures">', *figures, "</div>"]
    out.append("</div></details>")
    return "\n".join(out)


def _test_line(test: str, entry: OneTest, row: Row, failure: Failure | None, base: Path | None) -> str:
    outcome = str(entry.outcome)
    red = is_red(outcome) or bool(found_counts(entry.anomalies))
    found = []
    for kind, label in (("anomalies", ""), ("tolerated", " (tolerated)"), ("known", " (known finding)")):
        if counted := _counts(getattr(entry, kind)):
            found.append(counted + label)
    if entry.covered_by:
        found.append("covered by " + ", ".join(dict.fromkeys(entry.covered_by.values())))
    message = ""
    if failure is not None:
        phase = f"{failure.when}: " if failure.when and failure.when != "call" else ""
        message = f'<div class="message">{e(phase + str(failure.message or "(no message)"))}</div>'
    timeline = entry.timeline
    page = f'<a href="{e(_href(str(timeline), base))}">timeline</a>' if timeline else ""
    replay = str(entry.replay or default_replay(test, row, entry.identity))
    status = "failed" if red else "passed" if "passed" in outcome else "skipped"
    return (
        f'<tr class="test {"red" if red else ""}" data-outcome="{e(outcome)}">'
        f'<td class="test mono">{e(test)}{message}</td><td>{_badge(status, outcome)}</td>'
        f"<td>{e(_seconds(entry.duration_s))}</td>"
        f"<td>{e(survived(found_counts(entry.faults)))}</td><td>{e('; '.join(found))}</td>"
        f'<td>{page}</td><td class="replay"><code>{e(replay)}</code></td></tr>'
    )


def _plots(tests: dict[str, OneTest]) -> list[str]:
    """The row's latency and rate plot (:mod:`.plots`) of one stateful test: its first failing
    one, else its first (one figure per row keeps a long run's page quick to write), or how to
    get the plots."""
    sampled = [(test, entry.latency) for test, entry in sorted(tests.items()) if _samples(entry.latency)]
    if not sampled:
        return []
    from prism_testkit.report import plots

    if not plots.available():
        return [f'<p class="quiet plots-missing">{e(plots.MISSING)}</p>']
    red = [(test, latency) for test, latency in sampled if is_red(tests[test].outcome)]
    test, latency = (red or sampled)[0]
    examples = latency.get("examples")
    counted = plural(examples, "example") if isinstance(examples, int) else "examples"
    which = "its failing example, shrunk" if red else f"its {counted}, end to end"
    try:
        figure = plots.latency_figure(latency)
    except (TypeError, ValueError, IndexError, KeyError):  # samples a hand (or another version) wrote
        return [f'<p class="quiet">{e(test)}: its latency samples cannot be drawn</p>']
    return [
        f'<figure class="plot"><img alt="latency and operations per second of {e(test)}" '
        f'src="{figure}"><figcaption>{e(test)}: each operation\'s latency and '
        f"operations per second by outcome in {which}; faults as bands</figcaption></figure>"
    ]


def _settles(tests: dict[str, OneTest]) -> list[str]:
    """A cluster row's settle times after each fault, over its tests (their ``settles``:
    :class:`~prism_testkit.stateful.latency.Settles`): per fault kind how many, the mean and the
    longest, and with matplotlib a dot per sampled settle (:func:`.plots.settle_figure`)."""
    kinds: dict[str, list[float]] = {}  # fault -> count, total, longest
    samples: list[list[Any]] = []
    for _test, entry in sorted(tests.items()):
        found = entry.settles
        if not isinstance(found, dict) or not isinstance(found.get("kinds"), dict):
            continue
        for fault, counted in found["kinds"].items():
            try:
                count, total, longest = int(counted["count"]), float(counted["total_s"]), float(counted["max_s"])
            except (TypeError, ValueError, KeyError):  # a hand (or another version) wrote it
                continue
            mine = kinds.setdefault(str(fault), [0, 0.0, 0.0])
            mine[0] += count
            mine[1] += total
            mine[2] = max(mine[2], longest)
        samples += [s for s in found.get("samples") or [] if isinstance(s, list) and len(s) >= 2]
    if not kinds:
        return []
    lines = "".join(
        f'<tr data-fault="{e(fault)}"><td>{e(fault)}</td><td>{int(count):,}</td>'
        f"<td>{e(_seconds(total / count if count else 0.0))}</td><td>{e(_seconds(longest))}</td></tr>"
        for fault, (count, total, longest) in sorted(kinds.items())
    )
    out = [
        '<div class="settles"><table class="settles"><caption>Settle times after each fault: how long the '
        "cluster took to serve again as a whole after the fault's heal</caption><thead><tr><th>fault</th>"
        f"<th>settles</th><th>mean</th><th>longest</th></tr></thead><tbody>{lines}</tbody></table>"
    ]
    from prism_testkit.report import plots

    if samples and plots.available():
        try:
            figure = plots.settle_figure(samples)
        except (TypeError, ValueError, IndexError):  # samples a hand (or another version) wrote
            figure = ""
        if figure:
            out.append(
                f'<figure class="plot settle-plot"><img alt="settle times after each fault" src="{figure}">'
                "<figcaption>each settle's seconds by fault kind (the bar: the median)</figcaption></figure>"
            )
    out.append("</div>")
    return out


def _samples(latency: object) -> bool:
    """Whether a test entry's ``latency`` holds samples to draw."""
    return isinstance(latency, dict) and isinstance(latency.get("ops"), list) and bool(latency["ops"])


def _failures(report: Report, failures: dict[str, Failure], where: dict[str, int]) -> str:
    if not failures:
        return ""
    out = [f'<section id="failures"><h2>Failures ({len(failures):,})</h2><ul class="entries">']
    for test, entry in failures.items():
        combination = entry.combination
        at = " ".join(f"{slot}={backend}" for slot, backend in combination.items()) if combination else ""
        at = f"{entry.suite} {at}".strip() if entry.suite else "outside the suites"
        when = f", {entry.when}" if entry.when and entry.when != "call" else ""
        name = f'<a href="#row-{where[test]}-tests">{e(test)}</a>' if test in where else e(test)
        message = str(entry.message or "").strip() or "(no message)"
        out.append(
            f'<li class="failure"><code>{name}</code> ({e(at + when)})<div class="message">{e(message)}</div></li>'
        )
    out.append("</ul></section>")
    return "\n".join(out)


def _findings(report: Report, rows: list[Row], numbered: dict[int, int]) -> str:
    """What the checkers found (each row's anomalies, tolerated findings and known findings
    reproduced) and the tests judged against the written-up findings."""
    found = []
    for row in rows:
        kinds = [
            (label, counted)
            for kind, label in (("anomalies", "anomalies"), ("tolerated", "tolerated"), ("known", "known findings"))
            if (counted := _counts(getattr(row, kind)))
        ]
        if kinds:
            text = "; ".join(f"{label}: {counted}" for label, counted in kinds)
            link = f'<a href="#row-{numbered[id(row)]}-tests">{e(row.suite)} {e(_combination(row))}</a>'
            found.append(f"<li>{link}: {e(text)}</li>")
    judged = report.judged
    if not found and not judged:
        return ""
    out = ['<section id="findings"><h2>Findings</h2>']
    if found:
        out += ['<ul class="entries">', *found, "</ul>"]
    if judged:
        out.append(
            '<h3>Tests judged against the known findings (docs/findings.md)</h3><table class="matrix"><thead><tr>'
            "<th>test</th><th>scenario</th><th>backend</th><th>server version</th><th>finding</th><th>verdict</th>"
            "</tr></thead><tbody>"
        )
        for entry in judged:
            # the server version its driver was told (a judged entry's ``version``)
            cells = [entry.test, entry.scenario, entry.backend, entry.version, entry.finding, entry.verdict]
            out.append("<tr>" + "".join(f"<td>{e('' if c is None else c)}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table>")
    out.append("</section>")
    return "\n".join(out)


def _not_run(report: Report) -> str:
    """What could not be provisioned or run, and why (the Markdown's sections), and the faults
    this machine could not inject."""
    out = []
    for heading, entries in reason_sections(report):
        if entries:
            out.append(f'<h3>{e(heading)}</h3><ul class="entries">')
            out += [f"<li><b>{e(name)}</b>: {e(reason)}</li>" for name, reason in entries]
            out.append("</ul>")
    if faults := report.unavailable_faults:
        out.append('<h3>Unavailable faults (not injected)</h3><ul class="entries">')
        for entry in faults:
            rows = ", ".join(f"{row.suite} {_combination(row)}" for row in entry.rows)
            out.append(
                f"<li><b>{e(entry.fault)}</b>: {e(entry.reason)}; install: <code>{e(entry.hint)}</code> "
                f'<span class="quiet">(rows: {e(rows)})</span></li>'
            )
        out.append("</ul>")
    if not out:
        return ""
    return '<section id="not-run"><h2>Not provisioned, not run</h2>' + "\n".join(out) + "</section>"


def _outside(report: Report, failures: dict[str, Failure]) -> str:
    """The red tests in no row (outside the suites, or in a module nothing selected fits)."""
    red = [
        (test, entry)
        for bucket in (report.outside_suites, report.without_combination)
        for test, entry in sorted(((bucket.tests if bucket is not None else None) or {}).items())
        if is_red(entry.outcome)
    ]
    if not red:
        return ""
    out = ['<section id="outside"><h2>Red tests outside the rows</h2><ul class="entries">']
    for test, entry in red:
        message = (failures[test].message if test in failures else None) or ""
        out.append(
            f"<li><code>{e(test)}</code> {_badge('failed', str(entry.outcome))}"
            f'<div class="message">{e(message)}</div></li>'
        )
    out.append("</ul></section>")
    return "\n".join(out)


def _provenance(report: Report) -> str:
    """Which runs (and files) the page came from: the one part a merge's page differs in."""
    # each run, and the file a merge read it from
    runs: list[tuple[Run, str | None]] = [(run, run.report) for run in report.runs]
    if not runs and report.run is not None:
        runs = [(report.run, None)]
    lines = []
    for run, read_from in runs:
        if not run.model_fields_set and read_from is None:
            continue  # nothing said of it
        version = run.prism_testkit_version if "prism_testkit_version" in run.model_fields_set else "?"
        facts = [f"prism-testkit {version}"]
        if run.started_at:
            facts.append(f"started {run.started_at}")
        if run.duration_s is not None:
            facts.append(f"took {_seconds(run.duration_s)}")
        if read_from:
            facts.append(f"report {read_from}")
        lines.append(", ".join(facts))
    shards: list[Shard] = [*report.shards] or ([report.shard] if report.shard is not None else [])
    lines += [shard_text(shard).replace("`", "") for shard in shards]
    if merged := report.merged_from:
        lines.append(f"merged from {plural(len(merged), 'report')}")
    items = "".join(f"<li>{e(line)}</li>" for line in lines)
    return f'<footer id="{PROVENANCE}"><ul class="entries">{items}</ul></footer>'


def write_html(path: Path, report: Report, title: str = TITLE) -> Path:
    """Write the page of ``report`` to ``path`` (whole or not at all); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_html(report, title, base=path.absolute().parent)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(page, encoding="utf-8", errors="backslashreplace")
    partial.replace(path)
    return path
