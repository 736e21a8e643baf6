"""The census (``python -m benchmarks.census``): its JUnit parsing, aggregation and table on
hand-written XML, and one real run of the command on a few tests of one small suite file."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from benchmarks.census import (
    COLLECTION,
    ERROR,
    FAILED,
    PASSED,
    ROOT,
    RUN_PROBLEM,
    SKIPPED,
    Case,
    Census,
    Run,
    aggregate,
    markdown,
    parse_junit,
    run_problem,
)
from prism_testkit.faults.load import CALIBRATED, jitter_seed, parse

FILE = "suites/test_queue_things.py"
BACKENDS = "memstore,postgres"
SPEC = parse("cpu:4,stall:500ms@1s")


def junit(*cases: str) -> str:
    return f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{"".join(cases)}</testsuite></testsuites>'


def case(name: str, body: str = "", worker: str | None = None, classname: str = "suites.test_queue_things") -> str:
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
        case("test_plain", classname="suites.test_queue_things.TestGroup"),
        case("suites.test_queue_things", '<error message="collection failure">ImportError</error>', classname=""),
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
    skipped, empty = "suites/test_all_skipped.py", "suites/test_empty.py"
    runs = [
        run(1, 1, junit(case(ACK)), file=FILE),
        run(
            1,
            2,
            junit(case("test_failover[backend=memstore]", SKIP, classname="suites.test_all_skipped")),
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
    from benchmarks import census as module

    assert module.CALIBRATED_LOAD == CALIBRATED
    assert parse(CALIBRATED).seed is None  # each run draws its own


def test_the_command_runs_a_suite_file_and_writes_the_table(tmp_path: Path) -> None:
    out, data = tmp_path / "census.md", tmp_path / "census.json"
    argv = [sys.executable, "-m", "benchmarks.census", "suites/test_contract_keyvalue.py", "--backends", "memstore"]
    argv += ["--runs", "1", "--load", "cpu:1", "-k", "put_then_get or overwrite", "--seed", "11"]
    done = subprocess.run(
        [*argv, "--out", str(out), "--json", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "seed=11" in done.stdout
    found = json.loads(data.read_text())
    assert found["green"]
    assert found["seeds"] == {"suites/test_contract_keyvalue.py": [11]}
    (summary,) = found["files"]
    assert (summary["tests"], summary["ran"], summary["reds"], summary["verdict"]) == (2, 2, 0, "green")
    assert "| suites/test_contract_keyvalue.py | 2 | 2 | 1 | 0 |" in out.read_text()


def test_the_command_fails_when_no_test_ran(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "benchmarks.census", "suites/test_contract_keyvalue.py", "--backends", "memstore"]
    argv += ["--runs", "1", "--load", "cpu:1", "-k", "no_test_is_called_this"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "No test ran on `memstore` in: suites/test_contract_keyvalue.py" in done.stdout
