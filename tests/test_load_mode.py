"""Load mode (``--prism-load``, issue 38): burners beside the run, seeded stalls of the processes
the harness started, both cooperating with the nemesis and carried into replays."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit.faults.burners import Burners
from prism_testkit.faults.jitter import Jitter, Stallable, _Server, candidates, draws
from prism_testkit.faults.load import CALIBRATED, ActiveLoad, LoadSpec, LoadSpecError, jitter_seed, parse
from prism_testkit.hunting.replay import pytest_arguments
from prism_testkit.hunting.schedule import Schedule, read
from prism_testkit.patience import poll_until, until_sync
from prism_testkit.provision import processes
from prism_testkit.provision.processes import ServerProcess, free_port, port_open
from prism_testkit.provision.workdirs import recorded_processes
from tests.test_processes import ECHO_SERVER, gone, settles_in, state

ROOT = Path(__file__).resolve().parent.parent

# -- the spec ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec", "argument"),
    [
        ("cpu:2", LoadSpec(cpu=2), "cpu:2"),
        ("io:1, cpu:3", LoadSpec(cpu=3, io=1), "cpu:3,io:1"),
        ("stall:200ms@2s", LoadSpec(stall_max=0.2, stall_every=2.0), "stall:200ms@2s"),
        ("cpu:2,stall:1.5s@1m,seed:42", LoadSpec(cpu=2, stall_max=1.5, stall_every=60, seed=42), None),
    ],
)
def test_a_spec_reads_and_renders_back(text: str, spec: LoadSpec, argument: str | None) -> None:
    assert parse(text) == spec
    again = parse(spec.argument())
    assert again == spec
    if argument is not None:
        assert spec.argument() == argument


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpu", "'cpu' has no value"),
        ("cpu:two", "cpu:N takes a number of workers from 1 to 256, not 'two'"),
        ("io:0", "io:N takes a number of workers"),
        ("cpu:1,,io:1", "an empty item"),
        ("cpu:1,cpu:2", "cpu is given twice"),
        ("stall:200ms", "stall takes DUR@EVERY"),
        ("stall:200@2s", "is not a duration: give a number with ms, s or m"),
        ("stall:0ms@2s", "must be longer than 0"),
        ("seed:-1", "seed:N takes a non-negative whole number"),
        ("mem:1", "unknown load 'mem': give a comma list of cpu:N, io:N, stall:DUR@EVERY"),
        ("seed:3", "asks for no load"),
    ],
)
def test_a_bad_spec_says_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(LoadSpecError) as raised:
        parse(text)
    assert message in str(raised.value)


def test_a_bad_spec_is_a_usage_error_and_no_option_leaves_a_run_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    bad = pytester.runpytest("--prism-load=cpu:2,disk:1", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--prism-load: unknown load 'disk': give a comma list of cpu:N*"])
    plain = pytester.runpytest("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1)
    assert "prism load" not in plain.stdout.str()


# -- the seed ------------------------------------------------------------------------------


def test_the_same_seed_draws_the_same_stalls_and_another_seed_others() -> None:
    first = list(itertools.islice(draws(1234, 0.2, 2.0), 50))
    assert first == list(itertools.islice(draws(1234, 0.2, 2.0), 50))
    assert first != list(itertools.islice(draws(1235, 0.2, 2.0), 50))
    assert all(0 < d.seconds <= 0.2 and d.wait >= 0 and 0 <= d.pick < 1 for d in first)
    mean_wait = sum(d.wait for d in first) / len(first)
    assert 1.0 < mean_wait < 4.0  # on average every EVERY


def test_each_worker_draws_its_own_stream_and_a_run_without_xdist_draws_the_seed_s() -> None:
    assert jitter_seed(1234, None) == 1234
    assert jitter_seed(1234, "gw0") != jitter_seed(1234, "gw1")
    # stable across processes and hash seeds: a replay elsewhere derives the same stream
    code = "from prism_testkit.faults.load import jitter_seed; print(jitter_seed(1234, 'gw1'))"
    env = {**os.environ, "PYTHONHASHSEED": "99"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert int(out.stdout) == jitter_seed(1234, "gw1")
    # a failure on gw1 replays with gw1's stream, drawn by a process without xdist
    active = ActiveLoad(parse("cpu:1,stall:100ms@1s,seed:1234"), "gw1")
    assert active.replay_argument() == f"--prism-load=cpu:1,stall:100ms@1s,seed:{jitter_seed(1234, 'gw1')}"
    alone = ActiveLoad(parse("stall:100ms@1s,seed:1234"), None)
    assert alone.replay_argument() == "--prism-load=stall:100ms@1s,seed:1234"


class _Recorder:
    """A stall target that only records what it was asked."""

    def __init__(self, name: str, log: list[tuple[str, float]]) -> None:
        self.label = name
        self.log = log

    def stall(self, seconds: float, until: threading.Event) -> bool:
        self.log.append((self.label, seconds))
        return True


def test_the_jitter_picks_and_stalls_as_its_seed_draws() -> None:
    log: list[tuple[str, float]] = []
    targets: list[Stallable] = [_Recorder(name, log) for name in ("a", "b", "c")]
    jitter = Jitter(7, 0.2, 0.005, targets=lambda: targets).start()
    try:
        poll_until(lambda: len(log) >= 30, what="the jitter to stall 30 times", every=0.01)
    finally:
        jitter.stop()
    expected = [("abc"[int(d.pick * 3)], d.seconds) for d in itertools.islice(draws(7, 0.2, 0.005), len(log))]
    assert len(log) >= 30
    assert log == expected


# -- stalls of real processes ------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    proc = ServerProcess(
        "echo", [sys.executable, "-c", ECHO_SERVER, str(port)], port=port, log_path=tmp_path / "echo.log"
    )
    proc.start()
    # These tests stall and sample the server with jitters of their own: the run's own load mode
    # (the census runs this file under it) must not stall it as well, so it leaves the live list.
    processes._LIVE.discard(proc)
    yield proc
    proc.kill()


def sample_states(pid: int, seconds: float) -> str:
    """The process's state letters, sampled every few milliseconds for ``seconds``."""
    seen = []
    deadline = time.monotonic() + seconds  # hand-rolled: it samples for a duration; its end is no failure
    while time.monotonic() < deadline:
        seen.append(state(pid))
        time.sleep(0.002)
    return "".join(seen)


def test_a_stall_really_stops_a_server_the_harness_started_and_continues_it(server: ServerProcess) -> None:
    assert server.pid is not None
    processes._LIVE.add(server)
    try:
        assert any(getattr(c, "server", None) is server for c in candidates())  # the harness's own servers
    finally:
        processes._LIVE.discard(server)
    jitter = Jitter(3, 0.3, 0.05, targets=lambda: [_Server(server)]).start()
    try:
        assert settles_in(server.pid, "T"), "no stall stopped the server"
        # a round trip blocks while it is stopped: it answers only once continued
        pid = server.pid
        poll_until(lambda: state(pid) == "T", what=f"the jitter to stop server {pid} again", every=0.001)
        assert port_open("127.0.0.1", server.port, timeout=2.0)
    finally:
        jitter.stop()
    assert jitter.stats.stalls >= 1
    assert jitter.stats.seconds > 0
    assert jitter.stats.hit == {f"echo[{server.pid}]"}
    assert settles_in(server.pid, "SR"), "the jitter left the server stopped"
    assert sample_states(server.pid, 0.3).count("T") == 0


def test_stopping_the_jitter_mid_stall_continues_the_process_at_once(server: ServerProcess) -> None:
    assert server.pid is not None
    # Stalls of up to an hour: a server running again within a calm operation's bound after
    # the stop was continued by it, on any machine (a fixed 2 s for stalls of 30 s was a bet).
    jitter = Jitter(5, 3600.0, 0.01, targets=lambda: [_Server(server)]).start()
    assert settles_in(server.pid, "T")
    jitter.stop()
    assert settles_in(server.pid, "SR"), "stopped mid-stall and left stopped"


def test_the_jitter_skips_a_server_the_nemesis_paused_and_never_continues_it(server: ServerProcess) -> None:
    assert server.pid is not None
    server.pause()
    assert settles_in(server.pid, "T")
    jitter = Jitter(11, 0.05, 0.005, targets=lambda: [_Server(server)]).start()
    try:
        seen = sample_states(server.pid, 1.0)
    finally:
        jitter.stop()
    assert set(seen) == {"T"}, "a stall's continue resumed a server the nemesis paused"
    assert jitter.stats.stalls == 0
    assert jitter.stats.skipped > 10
    assert set(sample_states(server.pid, 0.2)) == {"T"}, "still paused after the jitter stopped"
    server.resume()
    assert settles_in(server.pid, "SR")


def test_a_pause_or_kill_during_a_stall_waits_for_it_and_then_holds(server: ServerProcess) -> None:
    assert server.pid is not None
    stop = threading.Event()
    stalled = threading.Thread(target=server.stall, args=(1.5, stop))  # long: a loaded machine may lag here
    stalled.start()
    assert settles_in(server.pid, "T")
    assert not server.stall(0.1, stop), "a second stall ran during the first"
    started = time.monotonic()
    server.pause()  # waits until the stall has continued the server, then stops it for good
    waited = time.monotonic() - started
    stalled.join()
    assert waited > 0.1
    assert set(sample_states(server.pid, 0.3)) == {"T"}, "the stall's continue undid the pause"
    assert not server.stall(0.1, stop), "a stall touched a paused server"
    server.resume()
    assert settles_in(server.pid, "SR")
    # a kill asked mid-stall waits for it too, and ends the server
    pid = server.pid
    stalled = threading.Thread(target=server.stall, args=(0.3, stop))
    stalled.start()
    assert settles_in(pid, "T")
    server.kill()
    stalled.join()
    assert gone(pid)
    assert not server.stall(0.1, stop), "a stall of a server that is not running"


# -- burners ------------------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def test_python_burners_stand_in_without_stress_ng_and_stop(tmp_path: Path) -> None:
    burners = Burners.start(parse("cpu:1,io:1"), tmp_path / "load", stress_ng=None)
    try:
        assert "Python burners: stress-ng not found" in burners.tool
        assert len(burners.pids) == 2
        poll_until(lambda: bool(list((tmp_path / "load" / "io").glob("burn-*"))), what="the I/O burner to write")
        assert list((tmp_path / "load" / "io").glob("burn-*")), "the I/O burner wrote nothing"
        assert all(not b.stallable for b in burners.processes)
        assert not any(getattr(c, "server", None) in burners.processes for c in candidates())
    finally:
        pids = burners.pids
        burners.stop()
    assert len(pids) == 2
    assert all(gone(pid) for pid in pids)


INNER = """
import json, os, time
from pathlib import Path
from prism_testkit.plugin.load_mode import BURNERS

def test_under_load(prism_runtime, pytestconfig):
    burners = pytestconfig.stash[BURNERS]
    Path({out!r}).write_text(json.dumps([str(prism_runtime.workdir), burners.pids, burners.tool]))
    time.sleep({sleep})
"""


def start_inner(pytester: pytest.Pytester, out: Path, sleep: float) -> list[str]:
    pytester.makepyfile(test_inner=INNER.format(out=str(out), sleep=sleep))
    return [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "--prism-load=cpu:1,io:1,seed:9"]


def test_burners_run_during_a_run_and_are_gone_after_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if shutil.which("stress-ng") is None:
        pytest.fail("stress-ng is not installed (scripts/bootstrap installs it)")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = tmp_path / "inner.txt"
    argv = start_inner(pytester, out, 0.5)
    done = subprocess.run(argv, cwd=pytester.path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "prism load: cpu:1 io:1 seed=9 (stress-ng 0." in done.stdout
    workdir, pids, tool = json.loads(out.read_text())
    assert tool.startswith("stress-ng ")
    [leader] = pids
    left = until_sync(
        lambda: group_members(leader), lambda m: not m, what="the burners to end", stall="calm-op", ceiling="calm-op"
    )
    assert not left, f"stress-ng processes left after the run: {left}"
    assert not Path(workdir).exists()


def test_burners_of_a_sigkilled_run_are_recorded_and_gone_after_the_next_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = tmp_path / "inner.txt"
    argv = start_inner(pytester, out, 120)
    with subprocess.Popen(argv, cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        poll_until(
            lambda: out.exists() or run.poll() is not None,
            what="the inner run to reach its test (or end)",
            bound_name="settle-ceiling",
        )
        assert out.exists(), "the inner run never reached its test"
        workdir, pids, _ = json.loads(out.read_text())
        [leader] = pids
        assert group_members(leader)
        # the sweep of the next run ends what the dead run recorded: the burners are in the record
        assert leader in [stamp.pid for stamp in recorded_processes(Path(workdir))]
        os.kill(run.pid, signal.SIGKILL)
    out.unlink()
    again = subprocess.run(
        [*argv, "-k", "nothing_matches"], cwd=pytester.path, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, again.stdout[-2000:]
    left = until_sync(
        lambda: group_members(leader),
        lambda m: not m,
        what="the killed run's burners to end",
        stall="calm-op",
        ceiling="calm-op",
    )
    assert not left, f"stress-ng processes of the killed run are still there: {left}"
    assert not Path(workdir).exists(), "the next run did not sweep the killed run's work dir"


# -- replays ------------------------------------------------------------------------------------


def test_a_schedule_records_the_load_and_its_replay_asks_for_it(tmp_path: Path) -> None:
    schedule = Schedule(
        test="/x/suites/test_a.py::test_b[backend=redis-aof]",
        nodeid="prism_testkit/suites/test_a.py::test_b[backend=redis-aof]",
        backends=["redis-aof"],
        combination={"backend": "redis-aof"},
        failure="wal: INVALID (lost)",
        signature=["wal:lost"],
        steps=[],
        load="cpu:2,stall:200ms@2s,seed:77",
    )
    path = tmp_path / "s.json"
    path.write_text(schedule.to_json())
    assert read(path).load == "cpu:2,stall:200ms@2s,seed:77"
    assert "--prism-load=cpu:2,stall:200ms@2s,seed:77" in pytest_arguments(schedule, path)
    data = json.loads(schedule.to_json())
    del data["load"]  # a schedule written before load mode: no load, and none asked for
    path.write_text(json.dumps(data))
    assert read(path).load is None
    assert not any(a.startswith("--prism-load") for a in pytest_arguments(read(path), path))


def test_a_failure_under_load_prints_and_records_it_and_its_replay_runs_under_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    schedules = tmp_path / "schedules"
    result = pytester.runpytest_subprocess(
        *("--pyargs", "prism_testkit.suites", "-p", "tests.mutants.queue_acks_on_delivery"),
        *("--prism-backend=memstore", "--prism-pattern=stateful_queue", "-k", "under_faults"),
        *("--hypothesis-profile=prism-mutant", "-p", "no:cacheprovider", f"--prism-schedules={schedules}"),
        "--prism-load=stall:50ms@1s,seed:4242",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*pytest *--prism-load=stall:50ms@1s,seed:4242*"])
    result.stdout.fnmatch_lines(["prism load: the jitter stalled * times*"])
    [written] = schedules.glob("*.json")
    schedule = read(written)
    assert schedule.load == "stall:50ms@1s,seed:4242"
    # a pytest run given only the schedule runs under its load, with its seed
    args = [a for a in pytest_arguments(schedule, written) if not a.startswith("--prism-load")]
    replayed = pytester.runpytest_subprocess(*args, "-v")
    replayed.stdout.fnmatch_lines(["prism load: stall:50ms@1s seed=4242 (no burners)"])


def test_calibrated_names_the_census_strength_and_takes_a_seed_beside_it() -> None:
    assert parse("calibrated,seed:7") == dataclasses.replace(parse(CALIBRATED), seed=7)
    with pytest.raises(LoadSpecError, match="given twice"):
        parse(f"calibrated,{CALIBRATED.split(',')[0]}")
