"""Report files written before the report was typed end to end still load (issue 67, item 3).

``tests/fixtures/reports/`` holds files the earlier code wrote, unchanged since: a run's report
with every section a run writes (``run-every-section.v1.json``), a run with latency samples,
failures and hostile test names (``run-planned.v1.json``), and the merge of two shards of that
run (``merged-shards.v1.json``: ``report merge --json``, with its totals and matrix). Each is read
by the model and written back as it was (nothing a reader knew is lost, no key is added), the
merge's totals and matrix are what this code recounts, and the files merge and render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prism_testkit.report.html import render_html
from prism_testkit.report.matrix import compliance_matrix, render_markdown
from prism_testkit.report.merge import merge_reports, read_report, totals
from prism_testkit.report.shape import parse

FIXTURES = Path(__file__).parent / "fixtures" / "reports"
RUNS = ("run-every-section.v1.json", "run-planned.v1.json")
MERGED = "merged-shards.v1.json"


def old(name: str) -> dict[str, object]:
    found = json.loads((FIXTURES / name).read_text())
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("name", [*RUNS, MERGED])
def test_a_report_the_earlier_code_wrote_reads_and_writes_back_as_it_was(name: str) -> None:
    written = old(name)
    assert parse(written).dump() == written


def test_the_earlier_merges_totals_and_matrix_are_what_this_code_recounts() -> None:
    written = old(MERGED)
    merged = parse(written)
    assert totals(merged).dump() == written["totals"]
    assert compliance_matrix(merged).dump() == written["matrix"]
    assert merged.matrix is not None
    assert merged.matrix.dump() == written["matrix"]


def test_reports_the_earlier_code_wrote_merge_and_render() -> None:
    reports = [read_report(old(name), name) for name in (*RUNS, MERGED)]
    merged = merge_reports(reports)
    assert merged.merged_from == [*RUNS, MERGED]
    assert totals(merged).rows == len(merged.suites) > 0
    assert "### Failures" in render_markdown(merged)
    page = render_html(merged)
    assert page.count('<details class="row') == len(merged.suites)
