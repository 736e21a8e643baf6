"""Report files written before the report was typed end to end still load (issue 67, item 3).

``tests/fixtures/reports/`` holds files the earlier code wrote, unchanged since: a run's report
with every section a run writes (``run-every-section.v1.json``), a run with latency samples,
failures and hostile test names (``run-planned.v1.json``), and the merge of two shards of that
run (``merged-shards.v1.json``: ``report merge --json``, with its totals and matrix). Each is read
by the model and written back as it was: nothing a reader knew is lost, no key is added."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
