"""No section of a report is forgotten (#51, item 7): every key a run writes, at every level, is a
field of the report's one typed model (prism_testkit/report/shape.py), the model has no section the
writer cannot fill, and a report with every section filled round-trips (write -> read -> merge ->
write -> read -> merge) with each section kept. A new key that the model or the merge does not know
fails here. A report without a schema version (written before it) is still read; one newer than
this prism-testkit is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from prism_testkit.report import unavailable_faults
from prism_testkit.report.merge import ReportMergeError, load_report, merge_reports, read_report
from prism_testkit.report.results import PrismResults
from prism_testkit.report.shape import SCHEMA_VERSION, Report, parse, problems

ROW_TEST = "prism_testkit/suites/test_kv.py::test_put[backend=memstore]"
TWIN_TEST = "prism_testkit/suites/test_kv.py::test_put[backend=bag-cluster]"
UNFIT_TEST = "prism_testkit/suites/test_objects.py::test_get[no-runnable-combination-objects]"
PLAIN_TEST = "prism_testkit/suites/test_kv.py::test_plain"


def every_section() -> Report:
    """A run's report with every section a run can write filled."""
    results = PrismResults(unavailable={"kafka": "no URL given"}, available={"memstore": "embedded (in this process)"})
    results.not_provisioned = {"redis": "no redis-server binary"}
    results.fits = {"kafka": {"kv"}}
    results.failed_to_start = {"nats": "exited at start"}
    results.server_versions = {"memstore": None}
    for test, outcome in ((ROW_TEST, "failed"), (TWIN_TEST, "skipped"), (UNFIT_TEST, "skipped")):
        results.categories[test] = [outcome]
        results.durations[test] = 0.5
    results.rows_of[ROW_TEST] = ("kv", None, (("backend", "memstore"),))
    results.rows_of[TWIN_TEST] = ("kv", None, (("backend", "bag-cluster"),))
    results.covered[TWIN_TEST] = {"bag-cluster": "bag"}
    results.anomalies_of[ROW_TEST] = {"anomalies": {"lost": 1}, "faults": {"kill": 2}}
    results.failures[ROW_TEST] = {"test": ROW_TEST, "suite": "kv", "combination": {"backend": "memstore"}}
    results.unfit_tests[UNFIT_TEST] = "objects"
    results.not_applicable["objects"] = "needs an object store"
    results.no_combination["cdc"] = "needs a changefeed"
    results.outside_suites[PLAIN_TEST] = "failed"
    results.outside_failures[PLAIN_TEST] = {"test": PLAIN_TEST, "suite": None, "combination": None}
    results.hunts = [{"test": ROW_TEST, "failed": True, "rounds": 1, "examples": 3, "faults": 2, "seconds": 1.0}]
    results.simulations = {ROW_TEST: {"simulated": True, "examples": 3, "digest": "ab"}}
    results.power_cuts = {ROW_TEST: {"test": ROW_TEST, "fault": "power-cut", "lost": 0}}
    results.judged = {ROW_TEST: {"test": ROW_TEST, "scenario": "established", "verdict": "held"}}
    left = {
        "backend": "bag-cluster",
        "left_by": TWIN_TEST,
        "why": "replicas still apart: s: n0: none",
        "before": ROW_TEST,
    }
    results.rebuilt = {ROW_TEST: [left]}
    unavailable_faults.add_row(
        results.unavailable_faults,
        {"fault": "power-cut", "reason": "no FUSE", "hint": "apt install fuse3"},
        "kv",
        {"backend": "memstore"},
    )
    for test in (ROW_TEST, TWIN_TEST, UNFIT_TEST, PLAIN_TEST):  # as the plugin's reports name them
        results.identify(test, test.replace("prism_testkit/suites/", "prism_testkit.suites.").replace(".py::", "::"))
    results.shard = {"index": 1, "count": 1, "selection": "--prism-backend=memstore"}
    results.run = {"prism_testkit_version": "0", "started_at": "2026-11-26T00:00:00+00:00", "duration_s": 1.0}
    results.depths = {ROW_TEST: 12}
    results.depth = {"asked": "12", "drawn": [12], "deeper": "pytest --prism-depth=deep", "hunt": "pytest --prism-hunt"}
    results.evidence = {
        ROW_TEST: {
            "timeline": "timelines/kv.html",
            "replay": "pytest --prism-replay=kv.json",
            "latency": {"put": [0.001, 0.002]},
            "settles": {"kill": [0.5]},
        }
    }
    return results.report()


def every_json() -> dict[str, Any]:
    """:func:`every_section` as its file holds it."""
    return every_section().dump()


# Sections only a merge writes (a run's report has one run and at most one shard; the matrix is
# what ``report merge --json`` adds).
MERGE_ONLY = {"runs", "shards", "merged_from", "matrix"}
# Entries whose content other modules define (a power cut's, a verdict's, a history digest's,
# latency samples): open by design, the model types the entry, not its every key.
OPEN_BY_DESIGN = {"power_cuts", "judged"}


def undeclared(model: BaseModel, where: str = "") -> list[str]:
    """Every key of ``model`` (and of the models inside it) that is no field of its model."""
    found = [f"{where}{key}" for key in model.model_extra or {}]
    for name in model.model_fields_set:
        if name in OPEN_BY_DESIGN:
            continue
        value = getattr(model, name)
        values = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for key, one in [(None, value), *values]:
            if isinstance(one, BaseModel):
                found += undeclared(one, f"{where}{name}{'' if key is None else f'[{key}]'}.")
    return found


def test_every_key_the_writer_emits_is_a_field_of_the_model() -> None:
    report = parse(every_json())
    assert undeclared(report) == []


def test_the_writer_fills_every_section_of_the_model() -> None:
    """Enumerated from the model: a section added to the model but never written (or to the
    writer and not to :func:`every_section`) fails here."""
    written = every_json()
    assert set(written) == set(Report.model_fields) - MERGE_ONLY
    assert all(written[section] not in ({}, [], None) for section in written), "a section left empty"
    assert written["schema_version"] == SCHEMA_VERSION


def test_a_report_with_every_section_round_trips_through_a_merge(tmp_path: Path) -> None:
    """write -> read -> merge -> write -> read -> merge: each section as the run wrote it."""
    results = PrismResults()
    written = every_json()
    results.report = lambda: parse(written)  # type: ignore[method-assign]
    results.write(tmp_path / "run.json")
    assert json.loads((tmp_path / "run.json").read_text()) == written
    merged = merge_reports([load_report(tmp_path / "run.json")])
    (tmp_path / "merged.json").write_text(json.dumps(merged.dump()))
    again = merge_reports([load_report(tmp_path / "merged.json")])
    for section in set(written) - {"run", "shard", "totals"}:  # a merge lists runs and shards per report
        assert merged.dump().get(section) == written[section], section
        assert again.dump().get(section) == written[section], section
    assert merged.dump()["runs"] == [{**written["run"], "report": str(tmp_path / "run.json")}]
    assert merged.dump()["shards"] == [{**written["shard"], "report": str(tmp_path / "run.json")}]
    assert undeclared(merged) == []
    assert undeclared(again) == []


def test_every_section_a_run_writes_is_in_the_typed_shape() -> None:
    report = every_json()
    declared = set(Report.model_fields) | {"totals"}  # totals: recounted by whoever reads a report
    assert set(report) <= declared, f"sections the shape does not declare: {sorted(set(report) - declared)}"
    assert problems(report) == []


def test_a_merge_keeps_every_section() -> None:
    report = every_section()
    merged = merge_reports([report])
    lost = report.model_fields_set - merged.model_fields_set - {"totals", "run", "shard"}  # runs, shards: per report
    assert not lost, f"sections the merge drops: {sorted(lost)}"
    assert report.run is not None
    assert merged.runs[0].id == report.run.id
    assert merged.shards[0].index == 1
    assert problems(merged.dump()) == []


def test_a_report_without_a_schema_version_is_still_read() -> None:
    older = every_json()
    del older["schema_version"]
    assert parse(older).schema_version is None
    merged = merge_reports([read_report(older, "older.json")])
    assert merged.schema_version == SCHEMA_VERSION
    assert merged.dump()["failures"] == older["failures"]


def test_a_report_of_a_newer_schema_version_is_refused_by_name() -> None:
    newer = {**every_json(), "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ReportMergeError, match=rf"^newer\.json: .*schema version {SCHEMA_VERSION + 1}.*upgrade"):
        merge_reports([read_report(every_json(), "run.json"), read_report(newer, "newer.json")])


def test_a_section_of_the_wrong_type_is_refused_by_name_and_place() -> None:
    broken = {**every_json(), "hunt": {"tests": [{"failed": True}]}}
    with pytest.raises(ReportMergeError, match=r"^broken\.json: not a prism-testkit report: hunt\.tests\.0\.test"):
        read_report(broken, "broken.json")


def test_the_results_and_the_merge_import_no_model_until_a_report_is_read_or_written() -> None:
    """pydantic's model of a report is paid for by what reads or writes a report file only."""
    code = (
        "import sys; import prism_testkit.report.results, prism_testkit.report.merge; "
        "print('prism_testkit.report.shape' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_the_renderers_read_the_model_the_merge_writes() -> None:
    """The Markdown and the HTML page of a merge with every section, from the model or its JSON."""
    from prism_testkit.report.html import render_html
    from prism_testkit.report.matrix import render_markdown

    merged = merge_reports([every_section()])
    from_file = parse(json.loads(json.dumps(merged.dump())))
    assert render_markdown(from_file) == render_markdown(merged)
    assert render_html(from_file) == render_html(merged)
    markdown = render_markdown(merged)
    for shown in ("### Failures (2)", "needs a changefeed", "no redis-server binary", "exited at start", "no FUSE"):
        assert shown in markdown, shown


def test_every_key_written_in_the_writers_code_is_a_field_of_a_model() -> None:
    """Beyond what :func:`every_section` fills: every string key of a dict the writer's code
    builds (``report``, ``rows``, a test's entry) is a field of one of the report's models, so a
    key added there and not to the model fails here even when no test fills it."""
    import ast
    import inspect
    import textwrap

    from prism_testkit.report import results, shape

    fields = {
        name
        for model in vars(shape).values()
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name in model.model_fields
    }
    written = set()
    models = {name for name, model in vars(shape).items() if isinstance(model, type) and issubclass(model, BaseModel)}
    methods = (
        PrismResults.report,
        PrismResults.rows,
        PrismResults._row,
        PrismResults._test_entry,
        PrismResults._unfit_entry,
        PrismResults._per_test,
        PrismResults._unavailable_entry,
        results.failure_entry,
    )
    for method in methods:
        tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
        for node in ast.walk(tree):
            keys = node.keys if isinstance(node, ast.Dict) else []
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                keys = [node.slice]  # entry["covered_by"] = ...
            written |= {key.value for key in keys if isinstance(key, ast.Constant) and isinstance(key.value, str)}
            called = node.func if isinstance(node, ast.Call) else None
            name = (
                called.attr if isinstance(called, ast.Attribute) else called.id if isinstance(called, ast.Name) else ""
            )
            if isinstance(node, ast.Call) and name in models:  # Row(suite=...)
                written |= {keyword.arg for keyword in node.keywords if keyword.arg is not None}
            on_self = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and not on_self:
                written.add(node.attr)  # row.depth = ...
    assert written, "the walk found the writer's keys"
    assert written <= fields, f"keys the writer builds that no model declares: {sorted(written - fields)}"
