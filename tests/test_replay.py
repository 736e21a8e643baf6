"""Recorded schedules and ``prism-testkit replay`` (issue 28): a failing stateful example writes
the steps it issued, in order, with their arguments, draws and the op each fault followed; a
replay issues them again and says whether the failure reproduced, with its own verdict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from prism_testkit.faults.lazyfs import StorageFault
from prism_testkit.hunting.schedule import Schedule, ScheduleError, Step, decode, encode, read, reproduces
from prism_testkit.stateful.history import History
from prism_testkit.stateful.recording import StepRecorder, record_steps, reissue
from tests._suite_runs import share_hypothesis_caches, suite_run

ROOT = Path(__file__).resolve().parent.parent


def test_recorded_values_come_back_as_what_the_rule_was_given() -> None:
    values = [
        [("a", False), ("b", True)],
        frozenset({"late", "unknown-outcome"}),
        b"\x00\xffpayload",
        {"node": 1, "groups": [[0], [1, 2]]},
        {1: "not a str key"},
        StorageFault(kind="torn-op", seed=7),
        float("inf"),
        None,
    ]
    for value in values:
        again = decode(json.loads(json.dumps(encode(value))))
        assert again == value, value
        assert type(again) is type(value), value


def test_a_value_the_schedule_could_not_record_refuses_to_replay() -> None:
    recorded = encode(object())
    with pytest.raises(ScheduleError, match="could not record"):
        decode(recorded)


def test_a_replay_reproduces_when_it_shows_every_recorded_anomaly() -> None:
    assert reproduces(["wal:lost"], ["wal:doubled", "wal:lost"])
    assert not reproduces(["wal:lost"], ["wal:doubled"])
    assert not reproduces(["wal:lost"], [])
    assert reproduces(["error:TimeoutError"], ["error:TimeoutError"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read: No such file"),
        ('{"test": ', "not JSON: "),
        ("[1, 2]", "not a schedule"),
        ('{"version": 99, "steps": []}', "schedule version 99"),
        ('{"version": 1, "steps": [{"nope": 1}]}', "not a schedule: TypeError"),
    ],
)
def test_a_file_that_is_no_schedule_is_one_clear_error(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "schedule.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ScheduleError, match=message) as raised:
        read(path)
    assert "\n" not in str(raised.value)


def test_a_schedule_reads_back_as_written(tmp_path: Path) -> None:
    schedule = Schedule(
        test="/x/suites/test_a.py::test_b[backend=sqlite]",
        nodeid="prism_testkit/suites/test_a.py::test_b[backend=sqlite]",
        backends=["sqlite"],
        combination={"backend": "sqlite"},
        failure="wal: INVALID (lost)",
        signature=["wal:lost"],
        steps=[Step("write", {"keys": encode(("a",))}, ops=["writer write"]), Step("pause", {"which": 1}, fault=True)],
        seed=3,
    )
    path = tmp_path / "s.json"
    path.write_text(schedule.to_json())
    assert read(path) == schedule
    assert "fault pause(which=1) after [nothing]" in schedule.render()


# -- end to end: a registered mutant, a schedule, its replay ----------------------------------


def run_suite(pytester: pytest.Pytester, mutant: str, suite: str, backend: str, schedules: Path) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        *suite_run(pytester.path, ("-p", f"tests.mutants.{mutant}", f"--prism-backend={backend}"), suite),
        *("-k", "under_faults", "--hypothesis-profile=prism-mutant"),
        *("-p", "no:cacheprovider", f"--prism-schedules={schedules}"),
    )


def replay(schedule: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``prism-testkit replay FILE`` as a user runs it: a process of its own, elsewhere (its
    Hypothesis caches the machine's, as a user's would be after the first run)."""
    share_hypothesis_caches(cwd / ".hypothesis")
    return subprocess.run(
        [sys.executable, "-m", "prism_testkit", "replay", str(schedule)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def without_the_mutant(schedule: Path) -> Path:
    """The same schedule, replayed against the fixed code (the mutant plugin left out)."""
    data = json.loads(schedule.read_text())
    data["plugins"] = []
    fixed = schedule.with_name("fixed.json")
    fixed.write_text(json.dumps(data))
    return fixed


@pytest.mark.parametrize(
    ("mutant", "suite", "backend", "anomaly"),
    [
        ("queue_acks_on_delivery", "stateful_queue", "memstore", "lost"),
        # networked and durable: the nemesis's proxy faults and kills are in play
        ("wal_checkpoint_before_apply", "stateful_wal", "redis-aof", "lost"),
    ],
    ids=["memstore", "redis-aof"],
)
def test_a_failing_stateful_example_writes_a_schedule_that_replays(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mutant: str,
    suite: str,
    backend: str,
    anomaly: str,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    schedules = tmp_path / "schedules"
    result = run_suite(pytester, mutant, suite, backend, schedules)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    # The failure's report says where its schedule is, how to replay it, and what one replay gave.
    result.stdout.fnmatch_lines(
        [
            f"schedule: {schedules}/*.json",
            f"replay:   prism-testkit replay {schedules}/*.json",
            f"replayed once: reproduced: *INVALID (*{anomaly}*",
        ]
    )
    [written] = schedules.glob("*.json")
    schedule = read(written)
    assert schedule.backends == [backend]
    assert schedule.plugins == [f"tests.mutants.{mutant}"]
    assert f"{anomaly}" in " ".join(schedule.signature)
    assert schedule.steps[0].rule == "seed_the_schedule"
    assert len(schedule.steps) > 1
    assert all(step.ops or not step.fault for step in schedule.steps)

    elsewhere = tmp_path / "elsewhere"  # no PYTHONPATH, another directory: the schedule says it all
    elsewhere.mkdir()
    monkeypatch.delenv("PYTHONPATH")
    reproduced = replay(written, elsewhere)
    assert reproduced.returncode == 1, reproduced.stdout[-3000:] + reproduced.stderr[-2000:]
    last = reproduced.stdout.strip().splitlines()[-1]
    assert last.startswith(f"replay of {written}: reproduced: "), last
    assert anomaly in last, last

    # Against the fixed code the same steps pass: said so, with the replay's own verdict.
    fixed = replay(without_the_mutant(written), elsewhere)
    assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-2000:]
    last = fixed.stdout.strip().splitlines()[-1]
    assert "did not reproduce: passed: every checker found its history valid" in last, last
    assert f"(recorded: {schedule.failure})" in last


def test_a_hunt_prints_the_seed_the_schedule_and_the_replay_tried_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the hunt's start ledger
    result = pytester.runpytest_subprocess(
        *suite_run(pytester.path, ("-p", "tests.mutants.queue_acks_on_delivery"), "stateful_queue"),
        *("--prism-backend=memstore", "-k", "under_faults"),
        *("--prism-hunt=60s", "-p", "no:cacheprovider", "-p", "no:randomly"),
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    schedules = pytester.path / ".prism-schedules"  # a hunt keeps them without --prism-schedules
    result.stdout.fnmatch_lines(
        [
            "FAILED *test_queue_delivers_every_acknowledged_message_under_faults*: *INVALID (*lost*",
            "  seed: * (pytest * --hypothesis-seed=*)",
            f"  schedule: {schedules}/*.json",
            f"  replay: prism-testkit replay {schedules}/*.json",
            "  replayed once: reproduced: *INVALID (*lost*",
        ]
    )


def test_bad_input_to_replay_is_one_line_and_a_usage_exit(tmp_path: Path) -> None:
    missing = replay(tmp_path / "missing.json", tmp_path)
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"steps": [')
    unknown = tmp_path / "unknown.json"
    schedule = Schedule(
        test=f"{ROOT}/prism_testkit/suites/test_stateful_wal.py::test_no_such_test[log=sqlite-target=sqlite]",
        nodeid="",
        backends=["sqlite"],
        combination={"log": "sqlite", "target": "sqlite"},
        failure="wal: INVALID (lost)",
        signature=["wal:lost"],
        steps=[],
    )
    unknown.write_text(schedule.to_json())
    for done, what in (
        (missing, "missing.json: cannot read: No such file or directory"),
        (replay(malformed, tmp_path), "malformed.json: not JSON: "),
        (replay(unknown, tmp_path), "test_no_such_test[log=sqlite-target=sqlite] cannot be run: ERROR: not found"),
    ):
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("prism-testkit: error: "), done.stderr
        assert what in lines[0], done.stderr


def test_the_pytest_option_refuses_a_bad_schedule_in_one_line(pytester: pytest.Pytester, tmp_path: Path) -> None:
    malformed = tmp_path / "malformed.json"
    malformed.write_text("not json")
    result = pytester.runpytest_subprocess(f"--prism-replay={malformed}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --prism-replay: {malformed}: not JSON: *"])


# -- the recording itself, on a machine of its own -----------------------------------------


class Calls(RuleBasedStateMachine):
    """Records what its rules were called with; fails once it drew a value of 3 or more."""

    def __init__(self) -> None:
        super().__init__()
        self.history = History()
        self.calls: list[tuple[str, object]] = []

    @initialize(start=st.integers(0, 5))
    def begin(self, start: int) -> None:
        self.calls.append(("begin", start))

    @rule(keys=st.lists(st.sampled_from("ab"), max_size=2))
    def write(self, keys: list[str]) -> None:
        self.calls.append(("write", tuple(keys)))
        self.history.invoke("w", "write", "k", len(keys)).ok()

    @rule(data=st.data())
    def fault(self, data: st.DataObject) -> None:
        drawn = data.draw(st.tuples(st.integers(0, 3), st.booleans()))
        self.calls.append(("fault", drawn))
        self.history.invoke("nemesis", "pause", "k", drawn[0]).ok()
        assert drawn[0] < 3


def test_the_steps_hypothesis_ran_are_recorded_and_issued_again_in_order() -> None:
    machines: list[tuple[Calls, StepRecorder]] = []

    def make() -> Calls:
        machine = Calls()
        recorder = StepRecorder(lambda: machine.history, lambda: ())
        record_steps(machine, recorder)
        machines.append((machine, recorder))
        return machine

    with pytest.raises(AssertionError):
        run_state_machine_as_test(make, settings=settings(max_examples=200, database=None, derandomize=True))  # type: ignore[arg-type]
    failed, recorder = machines[-1]  # the last example Hypothesis ran is the one it reports
    steps = json.loads(json.dumps([vars(step) for step in recorder.steps]))
    recorded = [Step(**step) for step in steps]
    assert [s.rule for s in recorded] == [name for name, _ in failed.calls]
    faults = [s for s in recorded if s.fault]
    assert faults, "the nemesis step was not recorded as a fault"
    assert all(s.arguments == {"data": "$data"} for s in faults)
    assert all(len(s.draws) == 1 for s in faults)

    again = Calls()
    with pytest.raises(AssertionError):  # the failing draw comes back from the recording, not from Hypothesis
        reissue(again, recorded, StepRecorder(lambda: again.history, lambda: ()))
    assert again.calls == failed.calls
