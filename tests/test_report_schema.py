"""The JSON Schema of a report file (issue 67, item 3): ``prism-testkit report schema`` prints the
report model's, ``docs/report-schema.json`` is that output committed (regenerate it with the
command below when the model changes), and the reports a run and a merge write validate against
it, as a CI author's validator would check them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from prism_testkit.cli import main
from prism_testkit.report.matrix import compliance_matrix
from prism_testkit.report.merge import ReportMergeError, merge_reports, read_report, totals
from prism_testkit.report.shape import Report, json_schema_text
from tests.test_report_compat import FIXTURES
from tests.test_report_sections import every_section

COMMITTED = Path(__file__).parents[1] / "docs" / "report-schema.json"
REGENERATE = "prism-testkit report schema -o docs/report-schema.json"


def test_the_committed_schema_is_the_models() -> None:
    committed = json.loads(COMMITTED.read_text())
    assert committed == json.loads(json_schema_text()), f"docs/report-schema.json is stale: run {REGENERATE}"
    assert committed["properties"].keys() == Report.model_fields.keys()
    assert committed["required"] == ["suites"]


def test_the_cli_prints_it_and_writes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json_schema_text())
    out = tmp_path / "schema" / "report.json"
    assert main(["report", "schema", "-o", str(out)]) == 0
    assert out.read_text() == json_schema_text()
    assert main(["report", "schema", "-o", str(tmp_path)]) == 2  # a folder: cannot write, said
    assert "cannot write" in capsys.readouterr().err


def merged_document() -> dict[str, object]:
    """What ``report merge --json`` writes for a run with every section."""
    merged = merge_reports([every_section()])
    merged.totals = totals(merged)
    merged.matrix = compliance_matrix(merged)
    return merged.dump()


@pytest.mark.parametrize("name", ["run-every-section.v1.json", "run-planned.v1.json", "merged-shards.v1.json"])
def test_reports_validate_against_the_schema(name: str) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(COMMITTED.read_text()))
    written = json.loads((FIXTURES / name).read_text())
    assert list(validator.iter_errors(written)) == []
    assert list(validator.iter_errors(every_section().dump())) == []
    assert list(validator.iter_errors(merged_document())) == []
    broken = {**written, "suites": [{"suite": "kv", "combination": {"backend": 3}}]}
    assert list(validator.iter_errors(broken)), "the schema refuses what the model refuses"
    with pytest.raises(ReportMergeError, match="combination"):
        read_report(broken, name)
