"""Merging CI matrix reports and rendering the compliance matrix (``prism-testkit report merge``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_testkit.cli import main
from prism_testkit.report.cli import MERGE_DESCRIPTION
from prism_testkit.report.html import render_html
from prism_testkit.report.matrix import LEGEND, compliance_matrix, render_markdown
from prism_testkit.report.merge import ReportMergeError, load_report, merge_reports, read_report, totals
from prism_testkit.report.shape import Report, parse


def row(suite: str, passed: int, failed: int = 0, skipped: int = 0, **slots: str) -> dict[str, Any]:
    return {
        "suite": suite,
        "combination": slots or {"backend": "memstore"},
        "passed": passed,
        "failed": failed,
        "skipped": skipped,
        "anomalies": {},
        "tolerated": {},
    }


def report(*rows: dict[str, Any], **sections: list[dict[str, Any]]) -> dict[str, Any]:
    backends = sorted({b for r in rows for b in r["combination"].values()})
    return {
        "suites": list(rows),
        "no_runnable_combinations": sections.get("no_runnable", []),
        "not_applicable": sections.get("not_applicable", []),
        "backends": sections.get("backends", [{"backend": b, "provisioned": "embedded"} for b in backends]),
        "unavailable": sections.get("unavailable", []),
    }


def write(tmp_path: Path, name: str, data: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def merge_of(*paths: str) -> Report:
    """The merge of the report files at ``paths``."""
    return merge_reports([load_report(path) for path in paths])


def test_rows_of_different_jobs_add_up(tmp_path: Path) -> None:
    memstore = write(tmp_path, "memstore.json", report(row("keyvalue", 24), row("log", 16)))
    sqlite = write(tmp_path, "sqlite.json", report(row("keyvalue", 23, failed=1, backend="sqlite")))
    merged = merge_of(memstore, sqlite)
    assert totals(merged).dump() == {
        "passed": 63,
        "failed": 1,
        "skipped": 0,
        "errors": 0,
        "rows": 3,
        "suites_without_combination": 0,
        "backends_not_provisioned": 0,
    }
    assert [b.backend for b in merged.backends] == ["memstore", "sqlite"]
    assert merged.merged_from == [memstore, sqlite]


def test_the_same_row_twice_counts_once(tmp_path: Path) -> None:
    one = write(tmp_path, "a.json", report(row("keyvalue", 24)))
    again = write(tmp_path, "b.json", report(row("keyvalue", 24)))
    assert totals(merge_of(one, again)).passed == 24


def test_a_row_with_different_counts_in_two_reports_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "job-1.json", report(row("keyvalue", 24)))
    second = write(tmp_path, "job-2.json", report(row("keyvalue", 22, failed=2)))
    with pytest.raises(ReportMergeError) as caught:
        merge_of(first, second)
    message = str(caught.value)
    assert first in message
    assert second in message
    assert "suite keyvalue [backend=memstore]" in message
    assert "passed 24 vs 22" in message
    assert "failed 0 vs 2" in message


def test_a_suite_that_ran_somewhere_is_neither_unfit_nor_not_applicable(tmp_path: Path) -> None:
    unfit = {"suite": "objects", "reason": "nothing selected has objects"}
    localfs = write(tmp_path, "localfs.json", report(row("objects", 28, backend="localfs")))
    sqlite = write(
        tmp_path,
        "sqlite.json",
        report(row("log", 16, backend="sqlite"), not_applicable=[unfit, {"suite": "pubsub", "reason": "no pubsub"}]),
    )
    redis = write(tmp_path, "redis.json", report(no_runnable=[unfit]))
    merged = merge_of(localfs, sqlite, redis).dump()
    assert merged["no_runnable_combinations"] == []
    assert merged["not_applicable"] == [{"suite": "pubsub", "reason": "no pubsub"}]


def test_a_suite_that_fit_nowhere_stays_a_failure_and_wins_over_not_applicable(tmp_path: Path) -> None:
    unfit = {"suite": "transactions", "reason": "no transactions"}
    first = write(tmp_path, "a.json", report(row("log", 1), not_applicable=[unfit]))
    second = write(tmp_path, "b.json", report(row("log", 1, backend="sqlite"), no_runnable=[unfit]))
    merged = merge_of(first, second)
    assert merged.dump()["no_runnable_combinations"] == [unfit]
    assert merged.not_applicable == []
    assert totals(merged).suites_without_combination == 1


def test_a_backend_tested_by_one_job_is_not_unavailable(tmp_path: Path) -> None:
    down = {"backend": "redis", "reason": "redis-server not found"}
    tested = write(tmp_path, "a.json", report(row("keyvalue", 24, backend="redis")))
    missing = write(tmp_path, "b.json", report(unavailable=[down, {"backend": "kafka", "reason": "no tansu"}]))
    merged = merge_of(tested, missing).dump()
    assert merged["unavailable"] == [{"backend": "kafka", "reason": "no tansu"}]


def test_unreadable_and_foreign_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ReportMergeError, match=r"missing\.json: cannot read"):
        load_report(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ReportMergeError, match=r"junk\.json: not a JSON report"):
        load_report(tmp_path / "junk.json")
    with pytest.raises(ReportMergeError, match=r"other\.json: not a prism-testkit report"):
        load_report(write(tmp_path, "other.json", {"tests": []}))


def test_the_matrix_has_a_cell_per_backend_and_suite() -> None:
    data = report(
        row("claim_check", 3, messaging="nats", objects="s3"),
        row("keyvalue", 20, failed=1, backend="nats"),
        row("objects", 0, skipped=2, backend="s3"),
        # kafka would fit claim_check's messaging slot, never keyvalue or transactions
        unavailable=[{"backend": "kafka", "reason": "no tansu", "fits": ["claim_check"]}],
        no_runnable=[{"suite": "transactions", "reason": "no transactions"}],
    )
    data["suites"][0]["anomalies"] = {"lost": 1}
    matrix = compliance_matrix(parse(data)).dump()
    assert matrix["backends"] == ["kafka", "nats", "s3"]
    assert matrix["suites"] == ["claim_check", "keyvalue", "objects", "transactions"]
    cells = matrix["cells"]
    assert cells["claim_check"]["nats"]["status"] == "failed"  # anomalies fail a cell
    assert cells["claim_check"]["s3"]["anomalies"] == {"lost": 1}
    assert cells["keyvalue"]["nats"] == {
        "passed": 20,
        "failed": 1,
        "skipped": 0,
        "errors": 0,
        "anomalies": {},
        "tolerated": {},
        "faults": {},
        "status": "failed",
    }
    assert cells["keyvalue"]["s3"] == {"status": "not run"}
    assert cells["objects"]["s3"]["status"] == "skipped"
    assert cells["claim_check"]["kafka"] == {"status": "unavailable"}
    assert cells["keyvalue"]["kafka"] == {"status": "not run"}
    assert cells["transactions"]["nats"] == {"status": "failed", "reason": "no runnable combination"}
    assert cells["transactions"]["kafka"] == {"status": "failed", "reason": "no runnable combination"}


def test_an_unavailable_backend_is_unavailable_only_in_rows_it_would_fit(tmp_path: Path) -> None:
    """#51 (10): a backend that could not be provisioned reads "unavailable" in the rows of the
    suites its declared capabilities fit, and "not run" (as any backend a suite does not fit)
    elsewhere; the merge keeps what each job found it would fit."""
    kafka = {"backend": "kafka", "reason": "no tansu"}
    first = write(
        tmp_path,
        "a.json",
        report(row("keyvalue", 20, backend="nats"), unavailable=[{**kafka, "fits": ["log"]}]),
    )
    second = write(
        tmp_path,
        "b.json",
        report(row("log", 4, backend="nats"), unavailable=[{**kafka, "fits": ["log", "queue"]}]),
    )
    merged = merge_of(first, second)
    assert merged.dump()["unavailable"] == [{**kafka, "fits": ["log", "queue"]}]
    cells = compliance_matrix(merged).dump()["cells"]
    assert cells["log"]["kafka"] == {"status": "unavailable"}
    assert cells["keyvalue"]["kafka"] == {"status": "not run"}
    text = render_markdown(merged)
    assert "| keyvalue | — | ✅ 20 passed |" in text
    assert "| log | ⚠️ unavailable | ✅ 4 passed |" in text


def test_an_older_report_without_fits_marks_an_unavailable_backend_in_every_row(tmp_path: Path) -> None:
    """A report written before unavailable backends carried the suites they fit: unknown, so
    unavailable everywhere, as before; a merge with one such report cannot narrow it either."""
    kafka = {"backend": "kafka", "reason": "no tansu"}
    older = report(row("keyvalue", 20, backend="nats"), unavailable=[kafka])
    assert compliance_matrix(parse(older)).dump()["cells"]["keyvalue"]["kafka"] == {"status": "unavailable"}
    newer = report(row("log", 4, backend="nats"), unavailable=[{**kafka, "fits": ["log"]}])
    paths = [write(tmp_path, "old.json", older), write(tmp_path, "new.json", newer)]
    merged = merge_of(*paths)
    assert merged.dump()["unavailable"] == [kafka]
    assert compliance_matrix(merged).dump()["cells"]["keyvalue"]["kafka"] == {"status": "unavailable"}


def test_markdown_shows_totals_table_and_reasons_redacted() -> None:
    merged = report(
        row("keyvalue", 24),
        row("keyvalue", 23, failed=1, backend="redis"),
        unavailable=[{"backend": "postgres", "reason": "postgresql://app:s3cret@db/x refused"}],
    )
    text = render_markdown(parse(merged))
    assert "**47 passed, 1 failed, 0 skipped** in 2 suite x combination rows" in text
    assert "| suite | memstore | postgres | redis |" in text
    assert "| keyvalue | ✅ 24 passed | ⚠️ unavailable | ❌ 23 passed, 1 failed |" in text
    assert "s3cret" not in text
    assert "- **postgres**: postgresql://app:***@db/x refused" in text


def test_cli_merge_writes_json_and_markdown_and_exits_by_compliance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "memstore.json", report(row("keyvalue", 24)))
    bad = write(tmp_path, "sqlite.json", report(row("keyvalue", 23, failed=1, backend="sqlite")))
    out_json, out_md = tmp_path / "out" / "merged.json", tmp_path / "out" / "matrix.md"
    assert main(["report", "merge", good, "--json", str(out_json), "--markdown", str(out_md)]) == 0
    assert json.loads(out_json.read_text())["totals"]["passed"] == 24
    assert "| keyvalue | ✅ 24 passed |" in out_md.read_text()
    assert main(["report", "merge", good, bad, "--json", str(out_json)]) == 1  # merged, with a failure
    merged = json.loads(out_json.read_text())
    assert merged["matrix"]["cells"]["keyvalue"]["sqlite"]["status"] == "failed"
    capsys.readouterr()
    assert main(["report", "merge", good, bad]) == 1  # no output option: Markdown on stdout
    assert "| suite | memstore | sqlite |" in capsys.readouterr().out


def test_cli_merge_of_contradicting_reports_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write(tmp_path, "a.json", report(row("keyvalue", 24)))
    second = write(tmp_path, "b.json", report(row("keyvalue", 20)))
    assert main(["report", "merge", first, second, "--json", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "a.json and" in err
    assert "b.json disagree" in err
    assert not (tmp_path / "m.json").exists()


def test_a_zero_count_is_no_finding_in_the_matrix_or_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checked = row("power_loss", 1)
    checked["anomalies"] = {"lost": 0}  # what a checker that looked and found nothing said (older reports)
    path = write(tmp_path, "power_loss.json", report(checked, row("keyvalue", 24)))
    assert main(["report", "merge", path, "--markdown", "-"]) == 0
    markdown = capsys.readouterr().out
    assert "| power_loss | ✅ 1 passed |" in markdown
    assert "❌" not in markdown.replace(LEGEND, "")
    assert compliance_matrix(merge_of(path)).dump()["cells"]["power_loss"]["memstore"]["anomalies"] == {}


def test_tolerated_findings_have_their_own_mark_and_legend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = row("power_loss", 1, backend="jetstream")
    cut["tolerated"] = {"lost-in-power-cut": 81}  # jetstream does not declare it survives a power cut
    path = write(tmp_path, "nats.json", report(cut, row("keyvalue", 24, backend="jetstream")))
    assert main(["report", "merge", path]) == 0  # tolerated: not a failure
    markdown = capsys.readouterr().out
    assert "| power_loss | 🟡 1 passed, 81 lost in power cut (tolerated) |" in markdown
    assert "| keyvalue | ✅ 24 passed |" in markdown
    assert "🟡 passed, with findings the suite tolerates" in markdown
    assert compliance_matrix(merge_of(path)).dump()["cells"]["power_loss"]["jetstream"]["status"] == ("tolerated")


def sharded(suite: str, outcomes: dict[str, str], **slots: str) -> dict[str, Any]:
    """A row as a run writes it: with each of its tests' outcome."""
    found = row(suite, 0, 0, 0, **slots)  # passed, failed, skipped: counted from the outcomes below
    found["tests"] = {test: {"outcome": outcome, "duration_s": 1.0} for test, outcome in outcomes.items()}
    for outcome in outcomes.values():
        for part in outcome.split("+"):
            found["errors" if part == "error" else part] = found.get("errors" if part == "error" else part, 0) + 1
    return found


def test_shards_of_one_row_add_up_and_a_test_in_both_counts_once(tmp_path: Path) -> None:
    first = write(tmp_path, "k1.json", report(sharded("keyvalue", {"t::a": "passed", "t::b": "failed+error"})))
    second = write(tmp_path, "k2.json", report(sharded("keyvalue", {"t::c": "passed", "t::a": "passed"})))
    (merged,) = merge_of(first, second).suites
    assert (merged.passed, merged.failed, merged.errors) == (2, 1, 1)
    assert sorted(merged.tests or {}) == ["t::a", "t::b", "t::c"]
    assert merged.duration_s == 3.0


def test_only_one_test_with_two_outcomes_contradicts(tmp_path: Path) -> None:
    first = write(tmp_path, "k1.json", report(sharded("keyvalue", {"t::a": "passed"})))
    second = write(tmp_path, "k2.json", report(sharded("keyvalue", {"t::a": "failed", "t::b": "passed"})))
    with pytest.raises(
        ReportMergeError, match=r"k1\.json and .*k2\.json disagree on suite keyvalue .*t::a passed vs failed"
    ):
        merge_of(first, second)


def test_a_test_one_job_left_to_the_twin_and_another_ran_takes_the_outcome_that_ran(tmp_path: Path) -> None:
    """A CI matrix: one job has the twin and leaves the cluster's row to it (skipped, covered),
    another job has only the cluster and runs it. Not a contradiction: the run outcome counts,
    a failure included."""
    covered = sharded("keyvalue", {"t::a": "skipped"}, backend="postgres-ha")
    covered["tests"]["t::a"]["covered_by"] = {"postgres-ha": "postgres"}
    ran = sharded("keyvalue", {"t::a": "failed"}, backend="postgres-ha")
    for order in ([covered, ran], [ran, covered]):
        paths = [write(tmp_path, f"j{i}.json", report(r)) for i, r in enumerate(order)]
        (merged,) = merge_of(*paths).dump()["suites"]
        assert (merged["passed"], merged["failed"], merged["skipped"]) == (0, 1, 0)
        assert "covered_by" not in merged["tests"]["t::a"]


def test_errors_fail_the_merge_and_show_in_the_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "e.json", report(sharded("keyvalue", {"t::a": "passed+error", "t::b": "passed"})))
    assert main(["report", "merge", path]) == 1
    markdown = capsys.readouterr().out
    assert "**2 passed, 0 failed, 0 skipped, 1 error**" in markdown
    assert "| keyvalue | ❌ 2 passed, 1 error |" in markdown


def test_faults_a_row_survived_add_up_over_shards_and_are_no_finding(tmp_path: Path) -> None:
    one = sharded("stateful_queue", {"t::a": "passed"}, backend="jetstream-r3")
    one["tests"]["t::a"]["faults"] = {"kill-node": 2, "partition-isolate-leader": 1}
    other = sharded("stateful_queue", {"t::b": "passed"}, backend="jetstream-r3")
    other["tests"]["t::b"]["faults"] = {"kill-node": 1, "heal": 0}
    paths = [write(tmp_path, f"{i}.json", report(r)) for i, r in enumerate((one, other))]
    (merged,) = merge_of(*paths).suites
    assert merged.faults == {"kill-node": 3, "partition-isolate-leader": 1}
    assert main(["report", "merge", *paths]) == 0  # surviving faults is no failure
    cell = "| stateful_queue | ✅ 2 passed; under kill node (3), partition isolate leader (1) |"
    assert cell in render_markdown(merge_of(*paths))


# --- issue 51: nothing red merges green --------------------------------------------------


def bucket(**outcomes: str) -> dict[str, Any]:
    """``outside_suites`` or ``without_combination`` as a run writes them: counts and tests."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for outcome in outcomes.values():
        for part in outcome.split("+"):
            counts["errors" if part == "error" else part] += 1
    return {**counts, "tests": {f"t::{name}": {"outcome": outcome} for name, outcome in outcomes.items()}}


def test_a_red_test_outside_the_rows_makes_the_merge_red(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain test of a suite module failed (the shard exited 1): the merge said 1 passed,
    0 failed, exit 0. Its tests count, in either bucket, and once when two shards have them."""
    for name in ("outside_suites", "without_combination"):
        red = report(sharded("keyvalue", {"t::kv": "passed"}))
        red[name] = bucket(plain="failed", other="passed")
        red["failures"] = [{"test": "t::plain", "suite": None, "combination": None, "when": "call", "message": "no"}]
        also = report(sharded("keyvalue", {"t::kv": "passed"}))
        also[name] = bucket(other="passed")
        paths = [write(tmp_path, f"{name}-{i}.json", data) for i, data in enumerate((red, also))]
        out = tmp_path / f"{name}.json"
        assert main(["report", "merge", *paths, "--json", str(out)]) == 1, name
        merged = json.loads(out.read_text())
        assert (merged["totals"]["passed"], merged["totals"]["failed"]) == (2, 1)
        assert merged[name] == bucket(other="passed", plain="failed")
        assert [f["test"] for f in merged["failures"]] == ["t::plain"]
    capsys.readouterr()


def test_a_test_outside_the_rows_with_two_outcomes_contradicts(tmp_path: Path) -> None:
    first, second = report(), report()
    first["outside_suites"], second["outside_suites"] = bucket(plain="passed"), bucket(plain="failed")
    paths = [write(tmp_path, f"{i}.json", data) for i, data in enumerate((first, second))]
    with pytest.raises(ReportMergeError, match=r"0\.json and .*1\.json disagree on t::plain .*passed vs failed"):
        merge_of(*paths)


def test_a_module_let_off_in_one_job_whose_suite_ran_in_another_is_no_skip(tmp_path: Path) -> None:
    """Per-backend jobs: the object store module fits nothing on sqlite (its tests skipped, let
    off) and runs on localfs. One run over both has no such skips, nor has the merge; a module
    let off whose suite ran nowhere keeps its skips, and a red one is never left out."""
    sqlite = report(sharded("log", {"t::log": "passed"}, backend="sqlite"))
    sqlite["without_combination"] = bucket(objects="skipped", pubsub="skipped", required="failed")
    for name, suite in (("objects", "objects"), ("pubsub", "pubsub"), ("required", "objects")):
        sqlite["without_combination"]["tests"][f"t::{name}"]["suite"] = suite
    localfs = report(sharded("objects", {"t::obj": "passed"}, backend="localfs"))
    paths = [write(tmp_path, f"{i}.json", data) for i, data in enumerate((sqlite, localfs))]
    merged = merge_of(*paths)
    assert sorted(merged.dump()["without_combination"]["tests"]) == ["t::pubsub", "t::required"]
    counted = totals(merged)
    assert (counted.passed, counted.skipped, counted.failed) == (2, 1, 1)


def test_an_older_report_without_tests_outside_the_rows_still_counts_them(tmp_path: Path) -> None:
    old = report(row("keyvalue", 2))
    old["outside_suites"] = {"passed": 0, "failed": 1, "skipped": 0, "errors": 0}  # counts only
    assert main(["report", "merge", write(tmp_path, "old.json", old), "--json", str(tmp_path / "m.json")]) == 1
    assert json.loads((tmp_path / "m.json").read_text())["totals"]["failed"] == 1


def shard_of(index: int, count: int, selection: str = "--prism-backend=memstore", **tests: str) -> dict[str, Any]:
    data = report(sharded("keyvalue", {f"t::{name}": outcome for name, outcome in tests.items()}))
    data["run"] = {"id": f"run-{selection}-{index}-{sorted(tests)}"}
    data["shard"] = {"index": index, "count": count, "selection": selection}
    return data


def test_every_shard_of_a_selection_once_merges(tmp_path: Path) -> None:
    paths = [
        write(tmp_path, "m1.json", shard_of(1, 2, a="passed")),
        write(tmp_path, "m2.json", shard_of(2, 2, b="passed")),
        # another selection (a job per backend, each sharded): its shards are checked apart
        write(tmp_path, "s1.json", shard_of(1, 2, "--prism-backend=sqlite", c="passed")),
        write(tmp_path, "s2.json", shard_of(2, 2, "--prism-backend=sqlite", d="passed")),
    ]
    merged = merge_of(*paths)
    assert totals(merged).passed == 4
    assert [(s.index, s.count, s.report) for s in merged.shards] == [
        (1, 2, paths[0]),
        (2, 2, paths[1]),
        (1, 2, paths[2]),
        (2, 2, paths[3]),
    ]


def test_a_missing_shard_a_doubled_shard_and_a_run_given_twice_stop_the_merge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write(tmp_path, "one.json", shard_of(1, 3, a="passed"))
    two = write(tmp_path, "two.json", shard_of(2, 3, b="passed"))
    three = write(tmp_path, "three.json", shard_of(3, 3, c="passed"))
    two_again = write(tmp_path, "two-again.json", shard_of(2, 3, b="passed", e="passed"))  # a rerun of shard 2
    other_count = write(tmp_path, "of-two.json", shard_of(2, 2, c="passed"))
    unsharded = write(tmp_path, "whole.json", {**report(sharded("keyvalue", {"t::a": "passed"})), "run": {"id": "w"}})
    cases = [
        ([one, two], r"1 shard missing: 3 of 3 of `--prism-backend=memstore` \(given: .*one\.json, .*two\.json\)"),
        (
            [one, two, three, two_again],
            r"shard 2 of 3 of `--prism-backend=memstore` twice: .*two\.json and .*two-again\.json",
        ),
        ([one, two, three, one], r"one\.json and .*one\.json are the same run"),
        ([unsharded, unsharded], r"whole\.json and .*whole\.json are the same run"),
        ([one, two, other_count], r"disagree on how many shards --prism-backend=memstore has: 3 vs 2"),
    ]
    for paths, message in cases:
        with pytest.raises(ReportMergeError, match=message):
            merge_of(*paths)
        assert main(["report", "merge", *paths, "--json", str(tmp_path / "m.json")]) == 2
        assert re.search(message, capsys.readouterr().err)
        assert not (tmp_path / "m.json").exists()
    assert main(["report", "merge", one, two, three]) == 0
    capsys.readouterr()


def test_the_merged_json_keeps_every_section(tmp_path: Path) -> None:
    covered = sharded("keyvalue", {"t::ha": "skipped"}, backend="postgres-ha")
    covered["tests"]["t::ha"]["covered_by"] = {"postgres-ha": "postgres"}
    first = report(covered, sharded("keyvalue", {"t::pg": "passed"}, backend="postgres"))
    first["covered_by_twins"] = {"postgres": 1}
    first["hunt"] = {"tests": [{"test": "t::h1", "failed": True, "seed": 7}], "failures": []}
    first["hunt"]["failures"] = first["hunt"]["tests"]
    first["history_digests"] = {"t::h1": {"simulated": True, "digest": "abc"}}
    first["outside_suites"] = bucket(plain="passed")
    second = report(sharded("keyvalue", {"t::kv": "passed"}))
    second["hunt"] = {"tests": [{"test": "t::h2", "failed": False}], "failures": []}
    second["without_combination"] = bucket(unfit="skipped")
    paths = [write(tmp_path, f"{i}.json", data) for i, data in enumerate((first, second))]
    merged = merge_of(*paths)
    assert totals(merged).skipped == 2  # the covered test and the unfit one
    merged_json = merged.dump()
    assert merged_json["covered_by_twins"] == {"postgres": 1}
    assert merged_json["hunt"] == {
        "tests": [{"test": "t::h1", "failed": True, "seed": 7}, {"test": "t::h2", "failed": False}],
        "failures": [{"test": "t::h1", "failed": True, "seed": 7}],
    }
    assert merged_json["history_digests"] == {"t::h1": {"simulated": True, "digest": "abc"}}
    assert merged_json["outside_suites"] == bucket(plain="passed")
    assert merged_json["without_combination"] == bucket(unfit="skipped")


def test_the_markdown_names_what_failed_and_what_could_not_start(tmp_path: Path) -> None:
    data = report(sharded("keyvalue", {"t::a": "failed", "t::b": "passed+error"}, backend="redis"))
    data["failures"] = [
        {"test": "t::a", "suite": "keyvalue", "combination": {"backend": "redis"}, "when": "call",
         "message": "AssertionError: lost 3 of 10 acknowledged | see redis://u:pw@h/0"},
        {"test": "t::b", "suite": "keyvalue", "combination": {"backend": "redis"}, "when": "teardown",
         "message": "RuntimeError: namespace not cleaned"},
        {"test": "t::`odd`", "suite": None, "combination": None, "when": "setup", "message": ""},
    ]  # fmt: skip
    data["failed_to_start"] = [{"backend": "postgres", "reason": "initdb: cannot run as root"}]
    text = render_markdown(merge_reports([load_report(write(tmp_path, "r.json", data))]))
    assert "### Failures (3)" in text
    assert (
        "- ❌ `t::a` (keyvalue backend=redis): AssertionError: lost 3 of 10 acknowledged \\| see redis://u:***@h/0"
        in text
    )
    assert "- ❌ `t::b` (keyvalue backend=redis, teardown): RuntimeError: namespace not cleaned" in text
    assert "- ❌ `t::'odd'` (outside the suites, setup): (no message)" in text
    assert "### Backends that failed to start (their tests errored)" in text
    assert "- **postgres**: initdb: cannot run as root" in text
    assert "pw@" not in text


@pytest.mark.parametrize(
    "data",
    [
        {"suites": [[[]]]},
        {"suites": [{"suite": "kv"}]},
        {"suites": [{"suite": "kv", "combination": {"backend": 3}}]},
        {"suites": [{"suite": "kv", "combination": {}, "tests": {"t::a": {"outcome": "maybe"}}}]},
        {"suites": [], "outside_suites": {"tests": {"t::a": "passed"}}},
        {"suites": [], "failures": [{"when": "call"}]},
        {"suites": [], "shard": {"index": "two", "count": 3}},
        {"suites": [], "unavailable_faults": [{"fault": "power-cut"}]},
        {"suites": [], "hunt": {"tests": [7]}},
        {"suites": [], "run": []},
    ],
)
def test_a_malformed_report_is_named_never_a_traceback(
    data: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "odd.json", data)
    assert main(["report", "merge", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"prism-testkit: error: {path}: not a prism-testkit report: ")
    assert "Traceback" not in err


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 5) | st.sampled_from(["", "passed", "failed+error", "kv", "t::a"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["suite", "tests", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)
SECTIONS = (
    "suites", "outside_suites", "without_combination", "failures", "no_runnable_combinations", "not_applicable",
    "backends", "unavailable", "failed_to_start", "unavailable_faults", "power_cuts", "judged", "hunt",
    "history_digests", "covered_by_twins", "run", "shard",
)  # fmt: skip


def _replace(data: Any, path: list[int], value: Any) -> Any:
    """``data`` with the node that ``path`` reaches (indices into each level's items) replaced."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    items = list(data.items()) if isinstance(data, dict) else list(enumerate(data))
    key, child = items[path[0] % len(items)]
    replaced = _replace(child, path[1:], value)
    if isinstance(data, dict):
        return {**data, key: replaced}
    return [replaced if i == key else item for i, item in enumerate(data)]


A_REPORT = {
    **report(sharded("keyvalue", {"t::a": "passed", "t::b": "failed"})),
    "outside_suites": bucket(plain="passed"),
    "without_combination": bucket(unfit="skipped"),
    "failures": [{"test": "t::b", "suite": "keyvalue", "combination": {"backend": "memstore"}, "message": "m"}],
    "failed_to_start": [{"backend": "redis", "reason": "r"}],
    "unavailable_faults": [{"fault": "f", "reason": "r", "hint": "h", "rows": [{"suite": "kv", "combination": {}}]}],
    "hunt": {"tests": [{"test": "t::a", "failed": False}], "failures": []},
    "run": {"id": "one"},
    "shard": {"index": 1, "count": 1, "selection": ""},
}


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.sampled_from(SECTIONS),
    st.lists(st.integers(0, 5), max_size=5),
    JSON,
)
def test_whatever_a_report_holds_the_merge_merges_or_names_the_file(section: str, path: list[int], value: Any) -> None:
    """Any node of a report replaced by any JSON: merged and rendered, or a ReportMergeError."""
    data = {**A_REPORT, section: _replace(A_REPORT.get(section), path, value)}
    try:
        merged = merge_reports([read_report(json.loads(json.dumps(data)), "fuzzed.json")])
    except ReportMergeError as exc:
        refused: str | None = str(exc)
    else:
        refused = None
    if refused is not None:
        assert refused.startswith("fuzzed.json: ")
        return
    render_markdown(merged)
    render_html(merged)
    compliance_matrix(merged)
    totals(merged)


def _words(text: str) -> str:
    return " ".join(text.split())


def test_merge_help_says_what_the_docs_say(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "merge", "--help"]) == 0
    shown = _words(capsys.readouterr().out)
    assert _words(MERGE_DESCRIPTION) in shown
    docs = _words((Path(__file__).parents[1] / "docs" / "reports.md").read_text())
    assert _words(MERGE_DESCRIPTION) in docs, "docs/reports.md (CI matrices) says what --help says"
    assert "with different counts is an error" not in shown  # what --help said while the docs said otherwise
