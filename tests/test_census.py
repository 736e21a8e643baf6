"""The census (``python -m benchmarks.census``): its JUnit parsing, aggregation and table on
hand-written XML, its resume (run records and manifest in a kept directory, read back with no
suite run: ``run_file`` is replaced), and one real run of the command on a few tests of one
small suite file."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import census as module
from benchmarks import touched as touched_module
from benchmarks.census import (
    COLLECTION,
    ERROR,
    FAILED,
    MANIFEST,
    PASSED,
    ROOT,
    RUN_PROBLEM,
    SKIPPED,
    Case,
    Census,
    Manifest,
    Run,
    Settings,
    aggregate,
    kept_run,
    kept_runs,
    main,
    markdown,
    parse_junit,
    read_manifest,
    run_problem,
    run_stem,
    save_run,
    settings_differences,
    write_manifest,
)
from prism_testkit.faults.load import CALIBRATED, jitter_seed, parse

FILE = "prism_testkit/suites/test_queue_things.py"
BACKENDS = "memstore,postgres"
SPEC = parse("cpu:4,stall:500ms@1s")


def junit(*cases: str) -> str:
    return f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>'


def case(
    name: str, body: str = "", worker: str | None = None, classname: str = "prism_testkit.suites.test_queue_things"
) -> str:
    properties = '<property name="prism_suite" value="queue" />'
    if worker:
        properties += f'<property name="census_worker" value="{worker}" />'
    return f'<testcase classname="{classname}" name="{name}"><properties>{properties}</properties>{body}</testcase>'


ACK = "test_ack[backend=memstore]"
FAILURE = '<failure message="AssertionError: (14, 13, 1, 0) == (13, 13, 0, 0)&#10;  at index 0">trace</failure>'
SETUP_ERROR = '<error message="failed on setup with &quot;TimeoutError: no leader&quot;">trace</error>'
SKIP = '<skipped type="pytest.skip" message="memstore: no failover">where</skipped>'


def run(round_: int, seed: int, xml: str, returncode: int = 0, file: str = FILE) -> Run:
    cases = parse_junit(xml, file)
    return Run(file, round_, seed, 10.0, returncode, cases, run_problem(returncode, cases, True, ""))


def census(files: list[str], runs: list[Run], count: int = 3) -> Census:
    summaries, rows = aggregate(files, runs, BACKENDS, SPEC)
    return Census("cpu:4,stall:500ms@1s", BACKENDS, count, 2, None, summaries, rows, {})


def test_a_testcase_gives_its_test_row_outcome_first_line_and_worker() -> None:
    xml = junit(
        case(ACK),
        case("test_nack[backend=postgres]", FAILURE, worker="gw1"),
        case("test_failover[backend=memstore-kill]", SKIP),
        case("test_lease[backend=postgres]", SETUP_ERROR),
        case("test_plain", classname="prism_testkit.suites.test_queue_things.TestGroup"),
        case(
            "prism_testkit.suites.test_queue_things",
            '<error message="collection failure">ImportError</error>',
            classname="",
        ),
    )
    assert parse_junit(xml, FILE) == [
        Case("test_ack", "backend=memstore", PASSED),
        Case("test_nack", "backend=postgres", FAILED, "AssertionError: (14, 13, 1, 0) == (13, 13, 0, 0)", "gw1"),
        Case("test_failover", "backend=memstore-kill", SKIPPED),
        Case("test_lease", "backend=postgres", ERROR, 'failed on setup with "TimeoutError: no leader"'),
        Case("TestGroup::test_plain", "", PASSED),
        Case(COLLECTION, "", ERROR, "collection failure"),
    ]


def test_a_failed_call_and_a_teardown_error_count_once_as_the_failure() -> None:
    teardown = '<error message="failed on teardown with &quot;OSError: gone&quot;">trace</error>'
    (found,) = parse_junit(junit(case(ACK, FAILURE + teardown)), FILE)
    assert (found.outcome, found.message) == (FAILED, "AssertionError: (14, 13, 1, 0) == (13, 13, 0, 0)")


def test_a_red_in_one_run_of_three_is_listed_with_its_seed_and_replay() -> None:
    green = junit(case(ACK), case("test_nack[backend=postgres]"))
    red = junit(case(ACK), case("test_nack[backend=postgres]", FAILURE, worker="gw1"))
    found = census([FILE], [run(1, 101, green), run(2, 202, red, returncode=1), run(3, 303, green)])
    (summary,) = found.files
    assert (summary.tests, summary.ran, summary.runs, summary.reds, summary.seconds) == (2, 2, 3, 1, 30.0)
    assert summary.verdict == "red"
    assert not found.green
    (row,) = found.red_rows
    assert (row.name, row.runs, row.reds, row.red_seeds) == ("test_nack[backend=postgres]", 3, 1, [202])
    assert row.first_error == "AssertionError: (14, 13, 1, 0) == (13, 13, 0, 0)"
    # replayed without xdist: the stalls of the worker that ran it, the run's Hypothesis seed
    replay = shlex.split(row.replay)
    assert replay[1:4] == ["-m", "pytest", f"{FILE}::test_nack[backend=postgres]"]
    assert f"--prism-backend={BACKENDS}" in replay
    assert "--hypothesis-seed=202" in replay
    assert f"--prism-load=cpu:4,stall:500ms@1s,seed:{jitter_seed(202, 'gw1')}" in replay
    assert "-n" not in replay
    table = markdown(found)
    assert f"| {FILE} | 2 | 2 | 3 | 1 | 30.0 (10.0) | red (1 row(s)) |" in table
    line = next(line for line in table.splitlines() if "test_nack" in line)
    assert line.startswith(f"| {FILE} | `test_nack[backend=postgres]` | 3 | 1 | `AssertionError: (14, 13, 1, 0)")
    assert "test_ack" not in table  # green rows are counted, not listed


def test_an_error_in_setup_is_red() -> None:
    found = census([FILE], [run(1, 5, junit(case(ACK, SETUP_ERROR)), returncode=1)], count=1)
    (row,) = found.red_rows
    assert (row.runs, row.reds, row.first_error) == (1, 1, 'failed on setup with "TimeoutError: no leader"')
    assert "seed:5" in row.replay
    assert not found.green


def test_a_file_where_no_test_ran_is_listed_and_not_green() -> None:
    skipped, empty = "prism_testkit/suites/test_all_skipped.py", "prism_testkit/suites/test_empty.py"
    runs = [
        run(1, 1, junit(case(ACK)), file=FILE),
        run(
            1,
            2,
            junit(case("test_failover[backend=memstore]", SKIP, classname="prism_testkit.suites.test_all_skipped")),
            file=skipped,
        ),
        run(1, 3, junit(), returncode=5, file=empty),  # pytest's exit code 5: nothing collected
    ]
    found = census([FILE, skipped, empty], runs, count=1)
    assert [(s.file, s.tests, s.ran, s.verdict) for s in found.files] == [
        (FILE, 1, 1, "green"),
        (skipped, 1, 0, "no test ran"),
        (empty, 0, 0, "no test ran"),
    ]
    assert found.red_rows == []
    assert not found.green
    table = markdown(found)
    assert "No row was red." in table
    assert f"No test ran on `{BACKENDS}` in: {skipped}, {empty}" in table


def test_a_run_that_went_wrong_outside_its_testcases_is_a_red_of_the_file() -> None:
    output = "bringing up nodes...\nINTERNALERROR> E   KeyError: 'gw1'\nno tests ran in 1.85s\n"
    internal = junit(case("internal", '<error message="internal error">trace</error>', classname="pytest"))
    cases = parse_junit(internal, FILE)
    crashed = Run(FILE, 1, 9, 2.0, 3, cases, run_problem(3, cases, True, output))
    lost = Run(FILE, 2, 10, 2.0, -9, [], run_problem(-9, [], False, "Killed"))
    found = census([FILE], [crashed, lost], count=2)
    (row,) = found.red_rows
    assert (row.test, row.runs, row.reds, row.red_seeds) == (RUN_PROBLEM, 2, 2, [9, 10])
    assert row.first_error == "pytest internal error: KeyError: 'gw1'"
    assert shlex.split(row.replay)[3] == FILE  # the whole file, with the red run's seed
    assert found.files[0].tests == 0
    assert not found.green


def test_a_run_that_fails_with_only_green_testcases_is_red() -> None:
    problem = run_problem(1, [Case("test_ack", "", PASSED)], True, "ERROR: a leaked server\n1 passed")
    assert problem == "exit code 1 beyond its testcases: ERROR: a leaked server"
    assert run_problem(1, [Case("test_ack", "", FAILED)], True, "") is None
    assert run_problem(5, [], True, "") is None


def test_the_default_load_is_the_calibrated_one() -> None:
    assert module.CALIBRATED_LOAD == CALIBRATED
    assert parse(CALIBRATED).seed is None  # each run draws its own


# The resume: what a --keep directory holds, and what --resume reads back from it.

KV = "prism_testkit/suites/test_contract_keyvalue.py"  # real files: main() checks that a suite file exists
KV_CASE = "test_put_then_get[backend=memstore]"
CENSUS_ID = "c0ffee"


def kv_junit(body: str = "") -> str:
    return junit(
        case(KV_CASE, body, worker="gw1" if body else None, classname="prism_testkit.suites.test_contract_keyvalue")
    )


def kept(workdir: Path, round_: int, seed: int, xml: str | None, returncode: int = 0, file: str = KV) -> Run:
    """A run as :func:`benchmarks.census.run_file` leaves it in ``workdir``, saved as judged."""
    if xml is not None:
        (workdir / f"{run_stem(file, round_)}.xml").write_text(xml)
    cases = parse_junit(xml, file) if xml is not None else []
    done = Run(file, round_, seed, 12.5, returncode, cases, run_problem(returncode, cases, xml is not None, "Killed"))
    save_run(done, workdir, CENSUS_ID)
    return done


def test_a_saved_run_is_read_back_as_judged_with_its_seed(tmp_path: Path) -> None:
    saved = kept(tmp_path, 2, 202, kv_junit(FAILURE), returncode=1)
    assert saved.cases[0].outcome == FAILED
    assert kept_run(tmp_path, KV, 2, CENSUS_ID) == saved
    assert kept_run(tmp_path, KV, 1, CENSUS_ID) is None  # never run
    assert kept_run(tmp_path, KV, 2, "another census") is None


def test_a_run_whose_process_left_no_xml_is_read_back_red_not_green(tmp_path: Path) -> None:
    saved = kept(tmp_path, 1, 7, None, returncode=-9)
    back = kept_run(tmp_path, KV, 1, CENSUS_ID)
    assert back == saved
    assert back is not None
    assert back.problem == "no JUnit XML (exit code -9): Killed"
    (summary,), _ = aggregate([KV], [back], BACKENDS, SPEC)
    assert summary.verdict == "red"


def _no_record(workdir: Path, stem: str) -> None:
    (workdir / f"{stem}.json").unlink()


def _xml_cut(workdir: Path, stem: str) -> None:
    xml = workdir / f"{stem}.xml"
    xml.write_text(xml.read_text()[:60])


def _xml_gone(workdir: Path, stem: str) -> None:
    (workdir / f"{stem}.xml").unlink()


def _xml_of_a_later_run(workdir: Path, stem: str) -> None:  # whole, green, not the one judged
    (workdir / f"{stem}.xml").write_text(kv_junit())


def _record_cut(workdir: Path, stem: str) -> None:
    record = workdir / f"{stem}.json"
    record.write_text(record.read_text()[:40])


def _record_says_no_xml_and_no_problem(workdir: Path, stem: str) -> None:
    record = workdir / f"{stem}.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps(data | {"junit_sha256": None, "problem": None}))


@pytest.mark.parametrize(
    "cut",
    [_no_record, _xml_cut, _xml_gone, _xml_of_a_later_run, _record_cut, _record_says_no_xml_and_no_problem],
)
def test_a_run_cut_short_is_not_done_and_runs_again(tmp_path: Path, cut: Callable[[Path, str], None]) -> None:
    kept(tmp_path, 1, 1, kv_junit())
    kept(tmp_path, 2, 2, kv_junit(FAILURE), returncode=1)
    assert set(kept_runs(tmp_path, [KV], 2, CENSUS_ID)) == {(KV, 1), (KV, 2)}
    cut(tmp_path, run_stem(KV, 2))
    assert set(kept_runs(tmp_path, [KV], 2, CENSUS_ID)) == {(KV, 1)}


def test_which_pairs_are_done_file_by_round(tmp_path: Path) -> None:
    other = "tests/test_contract_keyvalue.py"  # the same name in another folder: its own files
    assert run_stem(KV, 1) != run_stem(other, 1)
    kept(tmp_path, 1, 1, kv_junit())
    kept(tmp_path, 3, 3, kv_junit())
    kept(tmp_path, 1, 4, junit(case("test_x", classname="tests.test_contract_keyvalue")), file=other)
    done = kept_runs(tmp_path, [KV, other], 3, CENSUS_ID)
    assert sorted(done) == [(KV, 1), (KV, 3), (other, 1)]
    assert [done[key].seed for key in sorted(done)] == [1, 3, 4]
    assert sorted(kept_runs(tmp_path, [KV, other], 2, CENSUS_ID)) == [(KV, 1), (other, 1)]  # --runs 2


def test_runs_read_back_feed_the_table_with_their_seeds(tmp_path: Path) -> None:
    kept(tmp_path, 1, 101, kv_junit())
    kept(tmp_path, 2, 202, kv_junit(FAILURE), returncode=1)
    back = kept_runs(tmp_path, [KV], 2, CENSUS_ID)
    summaries, rows = aggregate([KV], list(back.values()), BACKENDS, SPEC)
    found = Census("cpu:4,stall:500ms@1s", BACKENDS, 3, 2, None, summaries, rows, {}, kept=2)
    (row,) = found.red_rows
    assert (row.name, row.runs, row.reds, row.red_seeds) == (KV_CASE, 2, 1, [202])
    assert "--hypothesis-seed=202" in row.replay
    assert f"seed:{jitter_seed(202, 'gw1')}" in row.replay
    table = markdown(found)
    assert f"| {KV} | 1 | 1 | 2 | 1 | 25.0 (12.5) | red (1 row(s)) |" in table
    assert "Resumed: 2 of these 2 run(s) were read back from their kept results." in table


SETTINGS = Settings((KV, FILE), "memstore", "cpu:1", 0, None)


def test_settings_that_differ_are_named_and_file_order_is_not_a_difference() -> None:
    assert settings_differences(SETTINGS, Settings((FILE, KV), "memstore", "cpu:1", 0, None)) == []
    other = Settings((KV, "prism_testkit/suites/test_cdc.py"), "memstore,postgres", "cpu:2", 2, "ack", "2")
    assert settings_differences(SETTINGS, other) == [
        f"suite files: prism_testkit/suites/test_cdc.py added; {FILE} left out",
        "--backends memstore,postgres (kept: memstore)",
        "--load cpu:2 (kept: cpu:1)",
        "-n 2 (kept: 0)",
        "-k ack (kept: (none))",
        "--depth 2 (kept: (none))",
    ]


def test_a_depth_reaches_every_run_the_replay_and_the_table_and_a_resume_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[object] = []

    def fake_run_file(file: str, round_: int, seed: int, *rest: object) -> Run:
        given.append(rest[-1])  # depth, the last argument
        return Run(file, round_, seed, 3.0, 1, parse_junit(kv_junit(FAILURE), file))

    monkeypatch.setattr(module, "run_file", fake_run_file)
    out, table = tmp_path / "census.json", tmp_path / "census.md"
    argv = [KV, "--runs", "2", "--load", "cpu:1", "--backends", "memstore", "--depth", "2", "--keep", str(tmp_path)]
    assert main([*argv, "--json", str(out), "--out", str(table)]) == 1
    assert given == ["2", "2"]
    found = json.loads(out.read_text())
    assert found["depth"] == "2"
    (row,) = [row for row in found["rows"] if row["reds"]]
    assert "--prism-depth=2" in shlex.split(row["replay"])  # a red replays at the depth it ran
    assert "serial, `--prism-depth=2`." in table.read_text()
    kept_manifest = read_manifest(tmp_path)
    assert kept_manifest is not None
    assert kept_manifest.settings.depth == "2"
    # a manifest written before the option had no depth: the suites' default
    data = json.loads((tmp_path / MANIFEST).read_text())
    del data["depth"]
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    old = read_manifest(tmp_path)
    assert old is not None
    assert old.settings.depth is None
    assert "--prism-depth=2" in module.command_args(KV, "memstore", "cpu:1", 1, depth="2")
    assert not any(arg.startswith("--prism-depth") for arg in module.command_args(KV, "memstore", "cpu:1", 1))


def test_the_manifest_is_read_back_and_a_broken_one_is_an_error(tmp_path: Path) -> None:
    manifest = Manifest(CENSUS_ID, SETTINGS, 5, 600.0)
    assert read_manifest(tmp_path) is None
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    (tmp_path / MANIFEST).write_text('{"format": 1, "id": "c0ffee"')
    with pytest.raises(module.ResumeError, match="is not a census manifest"):
        read_manifest(tmp_path)


def no_run(*args: object, **kwargs: object) -> Run:
    raise AssertionError("the census started a run")


def test_a_resume_with_other_settings_is_a_usage_error_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(module, "run_file", no_run)
    write_manifest(tmp_path, Manifest(CENSUS_ID, Settings((KV,), "memstore", "cpu:1", 0, None), 3))
    before = (tmp_path / MANIFEST).read_text()
    assert main(["--resume", str(tmp_path), "--backends", "memstore,postgres", "--load", "cpu:1"]) == 2
    error = capsys.readouterr().err
    assert (
        f"--resume {tmp_path} holds a census of other settings: --backends memstore,postgres (kept: memstore)" in error
    )
    assert main(["--resume", str(tmp_path), KV, "prism_testkit/suites/test_cdc.py", "--load", "calibrated"]) == 2
    error = capsys.readouterr().err
    assert "suite files: prism_testkit/suites/test_cdc.py added; --load cpu:4,stall:500ms@500ms (kept: cpu:1)" in error
    assert (tmp_path / MANIFEST).read_text() == before  # the kept census is left as it was


def test_keep_into_a_kept_census_and_resume_of_none_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(module, "run_file", no_run)
    assert main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no census is kept there" in capsys.readouterr().err
    write_manifest(tmp_path, Manifest(CENSUS_ID, SETTINGS, 3))
    assert main(["--keep", str(tmp_path), KV, "--load", "cpu:1", "--backends", "memstore"]) == 2
    assert f"--keep {tmp_path} already holds a census" in capsys.readouterr().err


def test_a_resume_runs_only_what_is_missing_and_keeps_the_seeds_it_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(tmp_path, Manifest(CENSUS_ID, Settings((KV,), "memstore", "cpu:1", 0, None), 3))
    kept(tmp_path, 1, 101, kv_junit(FAILURE), returncode=1)  # a red: read back, never run again
    kept(tmp_path, 2, 202, kv_junit())
    _xml_cut(tmp_path, run_stem(KV, 2))  # cut short: runs again
    (tmp_path / f"{run_stem(KV, 3)}.xml").write_text(kv_junit()[:50])  # the census was killed here
    started = []

    def fake_run_file(file: str, round_: int, seed: int, spec: object, backends: str, workdir: Path, *_: object) -> Run:
        assert (workdir, backends) == (tmp_path, "memstore")  # left out: the kept census's
        started.append((file, round_))
        (workdir / f"{run_stem(file, round_)}.xml").write_text(kv_junit())
        return Run(file, round_, seed, 3.0, 0, parse_junit(kv_junit(), file))

    monkeypatch.setattr(module, "run_file", fake_run_file)
    out = tmp_path / "census.json"
    assert main(["--resume", str(tmp_path), "--json", str(out)]) == 1  # the kept red counts
    assert started == [(KV, 2), (KV, 3)]
    found = json.loads(out.read_text())
    seeds = found["seeds"][KV]
    assert seeds[0] == 101  # read back; the two run now drew their own
    assert len(seeds) == 3
    assert (found["kept"], found["runs"], found["load"]) == (1, 3, "cpu:1")
    (row,) = [row for row in found["rows"] if row["reds"]]
    assert (row["runs"], row["reds"], row["red_seeds"]) == (3, 1, [101])
    assert "seed=101 kept: 1 failed" in capsys.readouterr().out
    # the runs made now are saved too: a second resume runs nothing
    monkeypatch.setattr(module, "run_file", no_run)
    assert main(["--resume", str(tmp_path), "--json", str(out)]) == 1
    assert json.loads(out.read_text())["seeds"][KV] == seeds


def test_the_command_runs_a_suite_file_and_writes_the_table(tmp_path: Path) -> None:
    out, data = tmp_path / "census.md", tmp_path / "census.json"
    argv = [
        sys.executable,
        "-m",
        "benchmarks.census",
        "prism_testkit/suites/test_contract_keyvalue.py",
        "--backends",
        "memstore",
    ]
    argv += ["--runs", "1", "--load", "cpu:1", "-k", "put_then_get or overwrite", "--seed", "11"]
    done = subprocess.run(
        [*argv, "--out", str(out), "--json", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "seed=11" in done.stdout
    found = json.loads(data.read_text())
    assert found["green"]
    assert found["seeds"] == {"prism_testkit/suites/test_contract_keyvalue.py": [11]}
    (summary,) = found["files"]
    assert (summary["tests"], summary["ran"], summary["reds"], summary["verdict"]) == (2, 2, 0, "green")
    assert "| prism_testkit/suites/test_contract_keyvalue.py | 2 | 2 | 1 | 0 |" in out.read_text()


def test_the_command_fails_when_no_test_ran(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "benchmarks.census",
        "prism_testkit/suites/test_contract_keyvalue.py",
        "--backends",
        "memstore",
    ]
    argv += ["--runs", "1", "--load", "cpu:1", "-k", "no_test_is_called_this"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "No test ran on `memstore` in: prism_testkit/suites/test_contract_keyvalue.py" in done.stdout


def test_changed_since_adds_the_touched_files_to_those_given_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []

    def fake_run_file(file: str, round_: int, seed: int, *rest: object) -> Run:
        ran.append(file)
        return Run(file, round_, seed, 1.0, 0, [Case("test_x", "", PASSED)])

    changed = ["prism_testkit/suites/_queue_machine.py", "tests/mutants/queue_acks_on_delivery.py"]
    monkeypatch.setattr(touched_module, "changed_since", lambda revision: changed)
    monkeypatch.setattr(module, "run_file", fake_run_file)
    assert main([KV, "--changed-since", "HEAD", "--runs", "1", "--load", "cpu:1", "--backends", "memstore"]) == 0
    told = capsys.readouterr().out
    assert ran[0] == KV  # the files given first, then the touched ones, each once
    assert "prism_testkit/suites/test_stateful_queue.py" in ran
    assert len(ran) == len(set(ran))
    assert "census: prism_testkit/suites/test_stateful_queue.py: imports prism_testkit.suites._queue_machine" in told
    assert "mutant queue_acks_on_delivery changed: its proof is tests/test_mutants.py -k queue_acks_on_delivery" in told


def test_a_change_that_touches_no_test_runs_nothing_and_an_unknown_revision_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(module, "run_file", no_run)
    monkeypatch.setattr(touched_module, "changed_since", lambda revision: ["docs/load.md"])
    assert main(["--changed-since", "HEAD"]) == 0
    assert "touches no test file: nothing to run" in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setattr(module, "run_file", no_run)
    assert main(["--changed-since", "no-such-revision-here"]) == 2
    assert "--changed-since: git diff" in capsys.readouterr().err
