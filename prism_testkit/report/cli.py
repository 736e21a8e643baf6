"""``prism-testkit report merge``: one report and one compliance matrix from a CI matrix's jobs.
``prism-testkit report versions``: the known findings x server version table of runs on
several versions of a server (one report per version: ``scripts/version-matrix``).

    prism-testkit report merge reports/*.json --markdown - >> "$GITHUB_STEP_SUMMARY" --json merged.json
    prism-testkit report versions nats-2.12.1.json nats-2.15.1.json
    prism-testkit report schema -o docs/report-schema.json

``prism-testkit report schema``: the JSON Schema of a report file (docs/reports.md, "For CI authors").
``prism-testkit report durations``: each test's seconds in reports, as pytest-split's
``.test_durations`` (node id -> seconds), for ``--prism-shard-durations`` to read.

``-`` writes to standard output. Without ``--markdown`` and ``--json`` the Markdown is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prism_testkit.redaction import printable, redact
from prism_testkit.report.matrix import compliance_matrix, render_markdown
from prism_testkit.report.merge import (
    ReportMergeError,
    found_counts,
    load_report,
    merge_reports,
    totals,
)
from prism_testkit.report.versions import TITLE, red, render_versions_markdown, version_table

MERGED_OK, MERGED_WITH_FAILURES, CANNOT_MERGE = 0, 1, 2
# What `report merge --help` says; docs/reports.md ("CI matrices") says the same, word for word
# (tests/test_report_merge.py holds them to it).
MERGE_DESCRIPTION = (
    "The merge equals one run over the union of the reports' tests. "
    "Every red test of a report is counted and listed among the failures, also a test outside the suites or "
    "in a module nothing selected fits. "
    "A test found in two reports (matched by its identity, the same on every install layout) with one outcome "
    "counts once; a test found with two different outcomes is a contradiction. "
    "A report of a sharded run names its shard (--prism-shard=K/N, pytest-split's --splits N --group K, or "
    "PRISM_SHARD=K/N): every shard of a selection must be given, each once, and no run twice. "
    "Exit 0: merged, nothing failed; 1: merged, and a test failed or errored, a checker found anomalies, a "
    "suite had no runnable combination or a backend a job named could not be provisioned; 2: a file that cannot "
    "be read or is not a report, contradicting reports, a missing or doubled shard or run, or an output that "
    "cannot be written."
)
STDIN = "/dev/stdin"  # what a REPORT of '-' reads (load_report takes a path)


def add_report_commands(commands: Any) -> None:  # argparse's subparsers action has no public type
    report = commands.add_parser("report", help="work with --prism-report JSON files")
    actions = report.add_subparsers(dest="report_command", required=True)
    merge = actions.add_parser(
        "merge",
        help="merge the reports of a CI matrix into one report and a backend x suite compliance matrix",
        description=MERGE_DESCRIPTION,
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT", help="--prism-report files ('-': standard input)")
    merge.add_argument("--markdown", metavar="PATH", help="write the matrix as Markdown ('-': standard output)")
    merge.add_argument("--json", metavar="PATH", help="write the merged report and its matrix as JSON ('-': stdout)")
    merge.add_argument("--title", default="prism-testkit compliance matrix", help="heading of the Markdown")
    page = actions.add_parser(
        "html",
        help="render the reports of a run (or of a CI matrix's jobs, merged) as one self-contained HTML page",
        description="Merges the reports as 'report merge' does and writes DIR/index.html: the compliance matrix, "
        "every suite x combination row with its tests (durations, faults, findings, timelines, replay commands), "
        "the failures, the findings and what could not be provisioned. The page needs no network and no server. "
        "Exit codes as 'report merge'.",
    )
    page.add_argument("reports", nargs="+", metavar="REPORT", help="--prism-report files ('-': standard input)")
    page.add_argument("-o", "--output", metavar="DIR", required=True, help="the folder to write index.html to")
    page.add_argument("--title", default="prism-testkit report", help="heading of the page")
    page.set_defaults(markdown=None, json=None)
    versions = actions.add_parser(
        "versions",
        help="tabulate known findings x server version from the reports of runs on several server binaries",
        description="One --prism-report per server binary (--prism-binary NAME=PATH); a column per server "
        "version the reports' judged tests were told. Exit 0: tabulated, 1: a judged test lost what no "
        "known finding covers, a finding stopped reproducing, or a run had failures or errors, 2: a file is "
        "no report or nothing was judged.",
    )
    versions.add_argument("reports", nargs="+", metavar="REPORT", help="--prism-report files ('-': standard input)")
    versions.add_argument("--markdown", metavar="PATH", help="write the table as Markdown ('-': standard output)")
    versions.add_argument("--json", metavar="PATH", help="write the table as JSON ('-': standard output)")
    versions.add_argument("--title", default=TITLE, help="heading of the Markdown")
    schema = actions.add_parser(
        "schema",
        help="print the JSON Schema of a --prism-report file (report merge --json writes the same shape)",
        description="The JSON Schema (draft 2020-12) of the report model every report file follows, for a CI "
        "step that validates or parses reports. docs/report-schema.json holds it for this version.",
    )
    schema.add_argument("-o", "--output", metavar="PATH", default="-", help="write it to PATH ('-': standard output)")
    durations = actions.add_parser(
        "durations",
        help="write each test's seconds in reports as pytest-split's .test_durations (--prism-shard-durations)",
        description="Every test of the reports (rows, and tests outside them; skipped ones too, which take "
        "next to nothing) by node id, in seconds to the hundredth, sorted: a small file a CI job keeps so its "
        "shards balance and its progress line's time left weighs each test by it. A name ending in .gz is "
        "written gzip-compressed. A test in two reports keeps the later report's time. Exit 0: written; 2: a "
        "file that is no report, or an output that cannot be written.",
    )
    durations.add_argument("reports", nargs="+", metavar="REPORT", help="--prism-report files ('-': standard input)")
    durations.add_argument("-o", "--output", metavar="PATH", default="-", help="write to PATH ('-': standard output)")
    durations.add_argument(
        "--by-identity",
        action="store_true",
        help="key each test by its identity, the same in every install layout, and leave out tests that errored "
        "(a setup that failed says nothing of the test's length): how the package's own "
        "prism_testkit/suites/durations.json.gz is made",
    )


def run_report_command(args: argparse.Namespace) -> int:
    if args.report_command == "versions":
        return _run_versions(args)
    if args.report_command == "durations":
        return _run_durations(args)
    if args.report_command == "schema":
        from prism_testkit.report.shape import json_schema_text

        try:
            _write(args.output, json_schema_text())
        except OSError as exc:
            print(printable(f"prism-testkit: error: cannot write: {exc}", sys.stderr), file=sys.stderr)
            return CANNOT_MERGE
        return MERGED_OK
    try:
        merged = merge_reports([load_report(STDIN if path == "-" else path) for path in args.reports])
    except ReportMergeError as exc:
        print(printable(redact(f"prism-testkit: error: {exc}"), sys.stderr), file=sys.stderr)
        return CANNOT_MERGE
    # the merged report as --json writes it: the recounted totals and the compliance matrix with it
    merged.totals = counted = totals(merged)
    merged.matrix = compliance_matrix(merged)
    markdown = render_markdown(merged, args.title)
    html_dir = args.output if args.report_command == "html" else None
    if args.markdown is None and args.json is None and html_dir is None:
        args.markdown = "-"
    try:
        if html_dir is not None:
            from prism_testkit.report.html import write_html

            try:
                page = write_html(Path(html_dir) / "index.html", merged, args.title)
            except ValueError as exc:  # a NUL in the path, a name the file system cannot encode
                raise OSError(f"{html_dir}: {exc}") from None
            print(printable(f"prism-testkit: HTML report written to {page}"))
        if args.markdown is not None:
            _write(args.markdown, markdown)
        if args.json is not None:
            _write(args.json, redact(json.dumps(merged.dump(), indent=2, ensure_ascii=False)) + "\n")
    except OSError as exc:
        print(printable(f"prism-testkit: error: cannot write: {exc}", sys.stderr), file=sys.stderr)
        return CANNOT_MERGE
    compliant = not (
        counted.failed or counted.errors or counted.suites_without_combination or counted.backends_not_provisioned
    )
    compliant = compliant and not any(found_counts(row.anomalies) for row in merged.suites)
    return MERGED_OK if compliant else MERGED_WITH_FAILURES


def _run_versions(args: argparse.Namespace) -> int:
    try:
        table = version_table([load_report(STDIN if path == "-" else path) for path in args.reports])
    except ReportMergeError as exc:
        print(printable(redact(f"prism-testkit: error: {exc}"), sys.stderr), file=sys.stderr)
        return CANNOT_MERGE
    if args.markdown is None and args.json is None:
        args.markdown = "-"
    try:
        if args.markdown is not None:
            _write(args.markdown, render_versions_markdown(table, args.title))
        if args.json is not None:
            _write(args.json, redact(json.dumps(table.dump(), indent=2, ensure_ascii=False)) + "\n")
    except OSError as exc:
        print(printable(f"prism-testkit: error: cannot write: {exc}", sys.stderr), file=sys.stderr)
        return CANNOT_MERGE
    return MERGED_WITH_FAILURES if red(table) else MERGED_OK


def _run_durations(args: argparse.Namespace) -> int:
    try:
        reports = [load_report(STDIN if path == "-" else path) for path in args.reports]
    except ReportMergeError as exc:
        print(printable(redact(f"prism-testkit: error: {exc}"), sys.stderr), file=sys.stderr)
        return CANNOT_MERGE
    seconds: dict[str, float] = {}
    for report in reports:
        for section in [*report.suites, report.without_combination, report.outside_suites]:
            for test, entry in ((section.tests if section is not None else None) or {}).items():
                if not args.by_identity:
                    seconds[test] = round(entry.duration_s, 2)
                elif entry.identity is not None and not entry.outcome.startswith("error"):  # a setup that failed
                    seconds[entry.identity] = round(entry.duration_s, 2)
    text = json.dumps(dict(sorted(seconds.items())), indent=0, ensure_ascii=False) + "\n"
    try:
        if args.output.endswith(".gz"):
            import gzip

            target = Path(args.output)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(text.encode(), mtime=0))  # the same tests, the same bytes
        else:
            _write(args.output, text)
    except OSError as exc:
        print(printable(f"prism-testkit: error: cannot write: {exc}", sys.stderr), file=sys.stderr)
        return CANNOT_MERGE
    return MERGED_OK


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(printable(text if text.endswith("\n") else text + "\n"))
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8", errors="backslashreplace")
