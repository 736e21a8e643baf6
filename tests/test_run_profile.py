"""The run profile's arithmetic (benchmarks.run_profile), on made-up records: no run, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.process_cpu import (
    BURNERS,
    CONTROLLER,
    KAFKA,
    LAZYFS,
    NATS,
    NETNS,
    OTHER,
    POSTGRES,
    POSTGRES_TOOLS,
    PYTEST_SUBPROCESSES,
    REDIS,
    S3,
    SENTINEL,
    UNATTRIBUTED,
    WORKERS,
    Ledger,
    by_kind,
    classify,
    descendants,
    describe,
    outside,
    parse_stat,
)
from benchmarks.run_profile import analyse, markdown, summarise, table
from benchmarks.stats import compare


def record(
    nodeid: str, worker: str, start: float, stop: float, suite: str | None, examples: int = 0, **more: Any
) -> dict:
    return {"kind": "test", "nodeid": nodeid, "worker": worker, "start": start, "stop": stop, "suite": suite,
            "examples": examples, **more}  # fmt: skip


def a_run(wall: float = 100.0, cpu: float = 50.0) -> dict[str, Any]:
    records = [
        record("a", "gw0", 0, 60, "stateful_queue", examples=30, cpu=6.0, backends=["postgres", "redis"]),
        record("b", "gw0", 60, 90, "keyvalue", cpu=1.5, backends=["redis"]),
        record("c", "gw1", 0, 40, "stateful_queue", examples=10, cpu=2.0, backends=["postgres"]),
        {"kind": "server_start", "name": "redis", "at": 1.0, "worker": "gw0"},
        {"kind": "server_start", "name": "redis", "at": 2.0, "worker": "gw1"},
        {"kind": "server_start", "name": "postgres", "at": 2.0, "worker": "gw1"},
    ]
    return {"exit_code": 0, "wall": wall, "cpu": cpu, "records": records}


def test_a_run_is_told_apart_into_wait_time_servers_suites_and_its_critical_path() -> None:
    figures = analyse(a_run(), cores=2)
    assert figures["wait_bound"] == 4.0  # 100 s of wall for 25 s of two cores' time
    assert figures["server_starts"] == 3
    assert figures["server_starts_by_name"] == {"postgres": 1, "redis": 2}
    assert figures["suites"]["stateful_queue"] == {"tests": 2, "seconds": 100.0, "examples": 40, "cpu": 8.0}
    # a row of two backends counts for each; the worker's CPU beside the wall it took
    assert figures["backends"] == {
        "postgres": {"tests": 2, "seconds": 100.0, "cpu": 8.0},
        "redis": {"tests": 2, "seconds": 90.0, "cpu": 7.5},
    }
    text = markdown(summarise("job", [figures]))
    assert "| stateful_queue | 2 | 100 | 8 | 40 |" in text
    assert "| postgres | 2 | 100 | 8 |" in text
    critical = figures["critical_path"]
    assert (critical["worker"], critical["tests"], critical["busy_seconds"], critical["span_seconds"]) == (
        "gw0",
        2,
        90,
        90,
    )
    assert critical["lower_bound_seconds"] == 65  # 130 s of tests over 2 workers beats the longest (60 s)


def test_examples_per_hour_are_counted_per_stateful_suite_only() -> None:
    result = summarise("job", [analyse(a_run(), cores=2)])
    assert [row["measure"] for row in result["run_profile_rates"]] == ["job examples/hour stateful_queue"]
    assert result["run_profile_rates"][0]["rate"] == 3600 * 40 / 100


def test_compare_flags_a_slower_run_and_fewer_examples_per_hour_as_regressions() -> None:
    before = summarise("job", [analyse(a_run(wall=w), cores=2) for w in (100, 104)])
    slower = a_run(wall=150)
    slower["records"][0]["examples"] = 5
    after = summarise("job", [analyse(slower, cores=2)])
    regressed = {change.row for change in compare(before, after) if change.status == "regression"}
    assert {"measure=job wall", "measure=job wait-bound", "measure=job examples/hour stateful_queue"} <= regressed
    assert "measure=job cpu" not in regressed


# --- CPU by process kind (benchmarks.process_cpu), on made-up processes -----------------


@pytest.mark.parametrize(
    ("comm", "cmdline", "kind"),
    [
        ("python", ["/v/bin/python", "-u", "-c", "import sys;exec(eval(sys.stdin.readline()))"], WORKERS),
        ("postgres", ["/usr/lib/postgresql/15/bin/postgres", "-D", "/w/data", "-p", "5433"], POSTGRES),
        ("postgres", ["postgres: checkpointer"], POSTGRES),  # a backend's title replaces its command line
        ("postgres", ["/usr/lib/postgresql/15/bin/postgres", "--boot", "-F"], POSTGRES_TOOLS),  # initdb's child
        ("postgres", ["/usr/lib/postgresql/15/bin/postgres", "--single", "-F", "template1"], POSTGRES_TOOLS),
        ("initdb", ["/usr/lib/postgresql/15/bin/initdb", "-D", "/w/data"], POSTGRES_TOOLS),
        ("pg_basebackup", ["/usr/lib/postgresql/15/bin/pg_basebackup", "-D", "/w/n2"], POSTGRES_TOOLS),
        ("pg_rewind", ["/usr/lib/postgresql/15/bin/pg_rewind", "--target-pgdata", "/w/n1"], POSTGRES_TOOLS),
        ("redis-server", ["redis-server 127.0.0.1:6400"], REDIS),
        ("redis-server", ["/usr/bin/redis-server", "/w/sentinel.conf", "--sentinel"], SENTINEL),
        ("redis-server", ["redis-server 10.0.0.1:26379 [sentinel]"], SENTINEL),
        ("nats-server", ["/opt/nats-server", "-c", "/w/n1.conf"], NATS),
        ("python", ["/v/bin/python", "-m", "moto.server", "-H", "127.0.0.1", "-p", "5000"], S3),
        ("tansu", ["/opt/tansu", "broker"], KAFKA),
        ("python3", ["/v/bin/python3", "-m", "prism_testkit.faults.lazyfs_daemon", "--lower", "/l", "/m"], LAZYFS),
        ("fusermount3", ["fusermount3", "-u", "/m"], LAZYFS),
        ("stress-ng-cpu", ["stress-ng", "--cpu", "1"], BURNERS),
        ("python", ["/v/bin/python", "-c", "while True:\n    pass\n"], BURNERS),
        ("python", ["/v/bin/python", "-c", "import os\npath = f'burn-{os.getpid()}'\nos.fsync(f)\n", "/io"], BURNERS),
        ("ip", ["ip", "netns", "exec", "prism-n1", "/opt/nats-server"], NETNS),  # until it execs the server
        ("ip", ["ip", "-n", "prism-n1", "link", "set", "lo", "up"], NETNS),
        ("python", ["/v/bin/python", "-m", "pytest", "-p", "pytester"], PYTEST_SUBPROCESSES),
        # pytester's runpytest_subprocess joins the option: 721 s of a test command went to "other"
        ("python", ["/v/bin/python", "-mpytest", "--basetemp=/t"], PYTEST_SUBPROCESSES),
        ("python", ["/v/bin/python", "-X", "importtime", "-mpytest"], PYTEST_SUBPROCESSES),
        (
            "python",
            ["/v/bin/python", "-c", "import socket,sys\ntry: socket.create_connection(('10.0.0.2', 4222))"],
            NETNS,
        ),
        ("python", ["/v/bin/python", "-c", "import socket"], OTHER),
        ("sh", ["sh", "-c", "cp %p /w/archive/%f"], OTHER),
    ],
)
def test_a_process_is_told_its_kind_by_its_name_and_command_line(comm: str, cmdline: list[str], kind: str) -> None:
    assert classify(comm, cmdline) == kind


def test_the_pytest_process_the_profiler_started_is_the_controller() -> None:
    argv = ["/v/bin/python", "-m", "pytest", "-p", "benchmarks.profile_plugin", "suites"]
    assert classify("python", argv, controller=True) == CONTROLLER


def test_a_stat_line_is_read_after_the_last_parenthesis_of_the_name() -> None:
    line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 1 0 0 0 250 130 7 3 20 0 1 0 98765 1 1 " + "0 " * 30
    assert parse_stat(line) == {"comm": "a (b) c", "state": "S", "ppid": 17, "utime": 250, "stime": 130,
                                "cutime": 7, "cstime": 3, "starttime": 98765}  # fmt: skip


def test_the_descendants_of_a_process_are_its_whole_subtree_only() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert sorted(descendants(parents, 10)) == [11, 12, 13]


def proc(kind: str, user: float, system: float, comm: str = "x", orphan: bool = False) -> dict[str, Any]:
    return {"kind": kind, "comm": comm, "user": user, "system": system, "orphan": orphan}


def test_cpu_is_summed_per_kind_largest_first_and_what_no_sample_saw_is_unattributed() -> None:
    processes = [
        proc(WORKERS, 30, 5),
        proc(WORKERS, 20, 5),
        proc(POSTGRES, 10, 40),
        proc(POSTGRES, 1, 2, orphan=True),
        proc(OTHER, 0.5, 0.5, comm="sh"),
    ]
    split = by_kind(processes, total_user=70, total_system=60)
    kinds = split["cpu_by_kind"]
    assert list(kinds) == [WORKERS, POSTGRES, OTHER, UNATTRIBUTED]
    assert kinds[POSTGRES] == {"user": 11, "system": 42, "processes": 2, "orphans": 1}
    assert kinds[UNATTRIBUTED]["user"] == 70 - 61.5
    assert kinds[UNATTRIBUTED]["system"] == 60 - 52.5
    assert split["other_by_comm"] == {"sh": 1.0}


def a_sampled_run(wall: float = 100.0, postgres_system: float = 40.0, label_tests: int = 3) -> dict[str, Any]:
    run = a_run(wall=wall, cpu=130)
    processes = [proc(CONTROLLER, 2, 1), proc(WORKERS, 48, 9), proc(POSTGRES, 10, postgres_system)]
    for test in run["records"][:label_tests]:
        test["outcome"] = "passed"
    return {
        **run,
        "cpu_user": 70.0,
        "cpu_system": 60.0,
        "cpu_pytest_tree": 125.0,
        "cpu_orphans": 5.0,
        "orphans_reaped": 3,
        "subreaper": True,
        "samples": 500,
        "sample_interval": 0.2,
        "sampler_cpu": 1.5,
        "left_running": [],
        "unattributed_by_reaper": {POSTGRES: {"user": 7.0, "system": 5.0}},
        "processes": processes,
    }


def test_a_sampled_run_carries_its_cpu_by_kind_into_the_results_and_the_markdown() -> None:
    figures = analyse(a_sampled_run(), cores=2)
    assert figures["cpu_by_kind"][UNATTRIBUTED] == {"user": 10, "system": 10, "processes": 0, "orphans": 0}
    assert figures["outcomes"] == {"passed": 3}
    result = summarise("job", [figures])
    measures = {row["measure"]: row["cost"] for row in result["run_profile"]}
    assert measures["job cpu system"] == 60
    assert measures["job cpu postgres"] == 50
    text = markdown(result)
    assert "| postgres | 10.0 | 40.0 | 50.0 | 38.5 % | 1 |" in text
    assert "would have missed 5.0 s" in text


def test_the_table_has_a_column_per_profile_and_a_row_per_kind_largest_first() -> None:
    before = summarise("before", [analyse(a_sampled_run(), cores=2)])
    after = summarise("after", [analyse(a_sampled_run(wall=60, postgres_system=5), cores=2)])
    old = summarise("old", [analyse(a_run(), cores=2)])  # a file from before the split: dashes
    lines = table([before, after, old]).splitlines()
    assert lines[0] == "| | before | after | old |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert rows["wall"] == "| wall | 100 s | 60 s | 100 s |"
    assert rows["CPU postgres"] == "| CPU postgres | 50 s (10 + 40) | 15 s (10 + 5.0) | - |"
    assert rows["CPU system"] == "| CPU system | 60 s | 60 s | - |"
    kinds = [name for name in rows if name.startswith("CPU ") and name not in ("CPU user", "CPU system")]
    assert kinds == ["CPU pytest workers", "CPU postgres", "CPU pytest controller", "CPU unattributed",
                     "CPU unattributed, reaped by postgres", "CPU missed without the subreaper"]  # fmt: skip
    assert rows["CPU unattributed, reaped by postgres"].endswith("| 12 s | 12 s | - |")
    assert table([before], names=["a"]).splitlines()[0] == "| | a |"


def sampled(ppid: int, kind: str, own: float, reaped: float = 0.0) -> dict[str, Any]:
    return {"ppid": ppid, "comm": kind, "kind": kind, "user": own, "system": own / 10,
            "reaped_user": reaped, "reaped_system": reaped / 10}  # fmt: skip


def test_what_no_sample_saw_is_charged_to_the_process_that_reaped_it_and_sums_to_the_remainder() -> None:
    # root 1 runs pytest (10), whose worker (11) runs a server (12) and a 0.3-s `ip` no sample sees
    controller, worker, server = (10, 100), (11, 101), (12, 102)
    ledger = Ledger(root=1)
    ledger.update({controller: sampled(1, CONTROLLER, 1), worker: sampled(10, WORKERS, 2),
                   server: sampled(11, POSTGRES, 1)}, (0.0, 0.0))  # fmt: skip
    ledger.update({controller: sampled(1, CONTROLLER, 2), worker: sampled(10, WORKERS, 3, reaped=0.3),
                   server: sampled(11, POSTGRES, 3)}, (0.0, 0.0))  # fmt: skip
    # the server ends having used 3.5 s (0.5 s after its last sample), reaped by the worker
    ledger.update({controller: sampled(1, CONTROLLER, 2.5), worker: sampled(10, WORKERS, 4, reaped=3.8)}, (0.0, 0.0))
    # all ended: the controller 3 s, the worker 4.2 s; the profiler reaped 3 + 4.2 + 3.8 s
    ledger.update({}, (11.0, 1.1))
    unseen = ledger.unattributed()
    assert unseen == {Ledger.ROOT: {"user": 0.7, "system": 0.07}, WORKERS: {"user": 0.8, "system": 0.08}}
    sampled_user = sum(seen.user for seen in ledger.seen.values())
    assert sampled_user + sum(row["user"] for row in unseen.values()) == pytest.approx(11.0)


def test_an_other_process_is_named_by_its_module_or_its_code_when_it_is_python() -> None:
    assert describe("sh", ["sh", "-c", "cp a b"]) == "sh"
    assert describe("python3", ["/v/bin/python3", "-m", "venv", "/x"]) == "python3 -m venv"
    assert describe("python", ["/v/bin/python", "-c", "\nimport json\nprint(1)"]) == "python -c import json"
    assert describe("python", ["/v/bin/python", "tool.py", "x"]) == "python tool.py"


def test_a_process_whose_parent_vanished_during_a_scan_is_not_taken_for_one_outside_the_run() -> None:
    # 1 init, 2 someone else's shell, 3 its child; 10 the profiler, 11 pytest; 13's parent 12
    # (a killed postmaster) exited during the scan: 13 (a backend) is being handed to the profiler
    parents = {1: 0, 2: 1, 3: 2, 10: 4, 11: 10, 13: 12}
    assert outside(parents, tree={11}, root=10, known={4}) == {1, 2, 3}
    assert outside({5: 6, 6: 5}, tree=set(), root=10, known=set()) == set()  # a loop from reused pids
