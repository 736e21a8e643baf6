"""Process control of servers we start: real processes, real signals."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from prism_testkit.errors import ProvisioningError
from prism_testkit.patience import Unsettled, bound, poll_until
from prism_testkit.provision import processes
from prism_testkit.provision.processes import ServerProcess, free_port, port_open
from prism_testkit.provision.workdirs import record_processes_in, recording_dir, sweep_abandoned
from tests.test_workdirs import workdir_of_a_dead_process

ECHO_SERVER = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"hi"); c.close()
    """
)


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]


def settles_in(pid: int, states: str) -> bool:
    """A signal is delivered when its target next runs: the state changes soon, not at once
    (within a calm operation's bound, scaled by the machine's slowness)."""
    poll_until(lambda: state(pid) in states, what=f"process {pid} to reach a state of {states!r}", every=0.01)
    return True


def gone(pid: int) -> bool:
    try:
        return state(pid) == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    proc = ServerProcess(
        "echo", [sys.executable, "-c", ECHO_SERVER, str(port)], port=port, log_path=tmp_path / "echo.log"
    )
    proc.start()
    yield proc
    proc.kill()


def test_start_waits_until_ready_and_records_time_to_ready(server: ServerProcess) -> None:
    assert server.alive
    assert port_open("127.0.0.1", server.port)
    assert server.time_to_ready is not None
    assert server.time_to_ready > 0


def test_kill_then_start_again_on_the_same_port(server: ServerProcess) -> None:
    first = server.pid
    server.kill()
    assert not server.alive
    assert not port_open("127.0.0.1", server.port)
    server.start()
    assert server.pid != first
    assert port_open("127.0.0.1", server.port)


def test_pause_and_resume(server: ServerProcess) -> None:
    assert server.pid is not None
    server.pause()
    assert state(server.pid) == "T"  # pause() returns once every thread stopped
    server.resume()
    # Running again soon, not at a fixed instant: under load mode the jitter may stall it for a
    # moment right after the resume (the census saw "T" 0.1 s after it, 1 run in 5).
    assert settles_in(server.pid, "SR")


SPINNING_SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    def spin():
        while True:
            pass
    for _ in range(4):
        threading.Thread(target=spin, daemon=True).start()
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"hi"); c.close()
    """
)


def test_a_pause_returns_once_every_thread_is_stopped(tmp_path: Path) -> None:
    """Threads running on another core stop only when they next enter the kernel: a request
    sent the moment the signal was sent could still be answered, so pause() waits for them."""
    port = free_port()
    spinning = ServerProcess(
        "spinning", [sys.executable, "-c", SPINNING_SERVER, str(port)], port=port, log_path=tmp_path / "s.log"
    )
    spinning.start()
    try:
        assert spinning.pid is not None
        tasks = Path(f"/proc/{spinning.pid}/task")
        for _ in range(20):
            spinning.pause()
            states = {Path(t, "stat").read_text().rpartition(")")[2].split()[0] for t in tasks.iterdir()}
            assert states <= {"T", "t"}, f"pause() returned with threads in states {states}"
            spinning.resume()
        assert len(list(tasks.iterdir())) == 5
    finally:
        spinning.kill()


def test_a_pause_that_does_not_take_effect_says_so(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_running_threads", lambda pid: [pid])
    with pytest.raises(ProvisioningError, match=r"SIGSTOP sent, threads \[\d+\] still ran after 0.2s"):
        server.pause(within=0.2)
    server.resume()


def test_stop_escalates_to_kill_when_the_signal_is_ignored(tmp_path: Path) -> None:
    port = free_port()
    stubborn = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + ECHO_SERVER
    proc = ServerProcess(
        "stubborn", [sys.executable, "-c", stubborn, str(port)], port=port, log_path=tmp_path / "s.log"
    )
    proc.start()
    started = time.monotonic()
    proc.stop(grace=0.5)
    assert not proc.alive
    assert proc.stopped_in_order is False, "a server that ignored the signal ended on its own"
    assert time.monotonic() - started < bound("calm-op")  # not the default grace: the one given


def test_a_server_that_exits_during_start_up_is_reported_with_its_log(tmp_path: Path) -> None:
    proc = ServerProcess(
        "broken",
        [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(2)"],
        port=free_port(),
        log_path=tmp_path / "b.log",
    )
    with pytest.raises(ProvisioningError, match="broken exited during start-up: bad config line 3"):
        proc.start()


def test_no_orphan_when_the_owning_process_is_killed(tmp_path: Path) -> None:
    port = free_port()
    owner = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from prism_testkit.provision.processes import ServerProcess
        server = ServerProcess("echo", [sys.executable, "-c", {ECHO_SERVER!r}, "{port}"], port={port},
                               log_path=Path({str(tmp_path / "o.log")!r}))
        server.start()
        print(server.pid, flush=True)
        time.sleep(60)
        """
    )
    # The context closes the stdout pipe (an open pipe is a ResourceWarning, an error here).
    with subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert not gone(server_pid)
        os.kill(parent.pid, signal.SIGKILL)  # as a crashed xdist worker would die
    poll_until(lambda: gone(server_pid), what="the server to end with the process that started it")
    assert gone(server_pid), "the server outlived the process that started it"


def forking_server(tmp_path: Path, *, own_session: bool = False) -> tuple[ServerProcess, Path]:
    """A server whose leader forks a long-lived helper into its process group (as a postmaster
    forks backends); the helper's pid is written to the returned file. ``own_session``: the
    helper leaves the group with setsid(), as every PostgreSQL backend does."""
    port = free_port()
    pids = tmp_path / "helper.pid"
    helper_code = ("import os; os.setsid(); " if own_session else "") + "import time; time.sleep(600)"
    script = textwrap.dedent(
        f"""
        import socket, subprocess, sys
        helper = subprocess.Popen([sys.executable, "-c", {helper_code!r}])
        open({str(pids)!r}, "w").write(str(helper.pid))
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port})); s.listen()
        while True:
            c, _ = s.accept(); c.close()
        """
    )
    server = ServerProcess(
        "forking", [sys.executable, "-c", script], port=port, log_path=tmp_path / "f.log", cwd=tmp_path
    )
    return server, pids


def test_kill_returns_only_when_every_process_of_the_group_is_gone(tmp_path: Path) -> None:
    """A server whose helpers outlive their leader for a while (a SIGKILLed postmaster's
    backends hold its shared memory): a restart must not begin before they are gone."""
    # The leader forks a helper in its process group; the group's SIGKILL reaches it, but its
    # exit is not instantaneous: returning once the leader is reaped would be too early.
    proc, pids = forking_server(tmp_path)
    proc.start()
    helper = int(pids.read_text())
    assert not gone(helper)
    proc.kill()
    assert gone(helper), "kill() returned while a process of the server's group was still running"


def test_a_kill_during_a_start_in_another_thread_waits_and_kills_what_it_started(tmp_path: Path) -> None:
    """A restart's start may still run in a worker thread after its caller gave up; the next
    kill must take the server that start is bringing up, not the handle it had before."""
    import threading

    port = free_port()
    slow = ECHO_SERVER.replace("import socket, sys", "import socket, sys, time; time.sleep(1.0)")
    proc = ServerProcess("slow", [sys.executable, "-c", slow, str(port)], port=port, log_path=tmp_path / "s.log")
    starting = threading.Thread(target=proc.start)
    starting.start()
    # spawned: now waiting for readiness (a fixed 0.3 s let a loaded machine kill before the start had begun)
    poll_until(lambda: proc.started_at is not None, what="the start to spawn the server", every=0.01)
    assert proc.started_at is not None, "the start never spawned the server"
    proc.kill()
    starting.join(timeout=30)
    assert not proc.alive, "the kill ran before the start finished and missed the server it started"
    assert not port_open("127.0.0.1", port)


def test_a_start_after_the_leader_died_alone_first_ends_the_rest_of_its_group(tmp_path: Path) -> None:
    """A postmaster that died on its own leaves its backends behind for a moment, holding its
    shared memory: a new postmaster started then refuses to run. start() clears them first."""
    proc, pids = forking_server(tmp_path)
    proc.start()
    first_helper = int(pids.read_text())
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)  # the leader alone, not its group
    with contextlib.suppress(Unsettled):  # as before: past the bound the test goes on (start() copes)
        poll_until(lambda: not proc.alive, what="the killed leader to be seen dead", every=0.01)
    assert not gone(first_helper), "the helper must outlive its leader for this test to mean anything"
    proc.start()
    try:
        assert gone(first_helper), "start() spawned a new server while the last one's group still ran"
        log = (tmp_path / "f.log").read_text()
        assert log.count("prism-testkit: starting forking (thread MainThread, from test_processes.py:") == 2
    finally:
        proc.kill()


def test_a_start_after_a_kill_that_saw_its_group_gone_does_not_scan_proc_again(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill already waited until no process of the last run was left; the start that
    follows must not pay a second scan of /proc (every nemesis restart paid two)."""
    scans: list[int] = []
    real = processes._running

    def counted(*args: object) -> list[int]:
        scans.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(processes, "_running", counted)
    server.kill()
    after_kill = len(scans)
    assert after_kill >= 1, "the kill must look for the last run's stragglers"
    server.start()
    assert len(scans) == after_kill


def test_kill_also_ends_children_that_left_the_process_group(tmp_path: Path) -> None:
    """PostgreSQL's backends call setsid(): a SIGKILL of the postmaster's group misses them,
    and they hold its shared memory until they notice the postmaster died; the restart then
    failed ("pre-existing shared memory block is still in use"), twice in hunts."""
    proc, pids = forking_server(tmp_path, own_session=True)
    proc.start()
    poll_until(pids.exists, what="the forked helper to write its pid", every=0.01)
    helper = int(pids.read_text())
    # its setsid() may not have run yet
    poll_until(lambda: os.getpgid(helper) != proc.pid, what="the helper to leave the group (setsid)", every=0.01)
    assert os.getpgid(helper) != proc.pid, "the helper must have left the group for this test to mean anything"
    proc.kill()
    assert gone(helper), "kill() returned while a child that left the group still ran"


def test_killing_a_server_spares_another_server_of_the_same_binary_working_below_its_dir(tmp_path: Path) -> None:
    """A host's Sentinel is a redis-server started after its data node, working in a subdir of
    the node's dir: it looks like a straggler of the node (same name, cwd inside), and was
    killed with every crash of the node, leaving the next failover short of a quorum."""
    first = free_port()
    argv = [sys.executable, "-c", ECHO_SERVER]
    node = ServerProcess("node", [*argv, str(first)], port=first, log_path=tmp_path / "n.log", cwd=tmp_path)
    node.start()
    below = tmp_path / "sentinel"
    below.mkdir()
    port = free_port()
    beside = ServerProcess("beside", [*argv, str(port)], port=port, log_path=below / "b.log", cwd=below)
    try:
        beside.start()
        node.kill()
        assert beside.alive, "the other server was taken for a straggler"
        assert port_open("127.0.0.1", port)
    finally:
        beside.kill()
        node.kill()


def test_a_stall_never_stops_a_server_spawned_beside_it_and_not_yet_listed(tmp_path: Path) -> None:
    """Under load mode, a stall of one server scanned for its stragglers (same name, cwd inside)
    while another server of the same binary in the same dir was just spawned and not yet among
    the live servers: it was stopped as a straggler, and the continue, which scans again, found
    it listed and left it stopped for good ("s10 was not ready after 67s" in the census)."""
    argv = [sys.executable, "-c", ECHO_SERVER]
    first, second = free_port(), free_port()
    stalled = ServerProcess("stalled", [*argv, str(first)], port=first, log_path=tmp_path / "a.log", cwd=tmp_path)
    spawned = ServerProcess("spawned", [*argv, str(second)], port=second, log_path=tmp_path / "b.log", cwd=tmp_path)
    stalled.start()
    try:
        spawned.start()
        assert spawned._leader is not None
        processes._LIVE.discard(spawned)  # the moment between its Popen and its listing
        stalled.pause()
        try:
            assert settles_in(spawned._leader.pid, "SR"), "a stall stopped a server it did not own"
        finally:
            stalled.resume()
            processes._LIVE.add(spawned)
    finally:
        spawned.kill()
        stalled.kill()


def outside_the_group(proc: ServerProcess, pids: Path) -> int:
    """The pid of the server's helper once it left the server's group (the setsid() a
    PostgreSQL backend makes): a test about such children means nothing before."""
    poll_until(pids.exists, what="the forked helper to write its pid", every=0.01)
    helper = int(pids.read_text())
    poll_until(lambda: os.getpgid(helper) != proc.pid, what="the helper to leave the group (setsid)", every=0.01)
    assert os.getpgid(helper) != proc.pid, "the helper must have left the group for this test to mean anything"
    return helper


def test_a_pause_stops_the_children_that_left_the_group_too(tmp_path: Path) -> None:
    """A PostgreSQL backend serves its open connection in a session of its own: a pause that
    stopped the postmaster's group alone left every connected client served."""
    proc, pids = forking_server(tmp_path, own_session=True)
    proc.start()
    try:
        helper = outside_the_group(proc, pids)
        proc.pause()
        assert settles_in(helper, "T"), "the pause left a child of the server running"
        proc.resume()
        assert settles_in(helper, "SR")
    finally:
        proc.kill()


def test_kill_ends_children_that_left_the_group_even_once_their_dir_is_removed(tmp_path: Path) -> None:
    """A process whose working dir was removed reads it as "<dir> (deleted)": a kill after its
    dir went (a test's cleanup after the sweep) no longer found a child outside the group."""
    where = tmp_path / "server"
    where.mkdir()
    proc, pids = forking_server(where, own_session=True)
    proc.start()
    try:
        helper = outside_the_group(proc, pids)
        shutil.rmtree(where)
        proc.kill()
        assert gone(helper), "kill() returned while a child of a removed dir still ran"
    finally:
        proc.kill()


def test_a_child_outside_the_group_that_a_stop_left_stopped_is_ended_by_the_sweep(tmp_path: Path) -> None:
    """A worker SIGKILLed while the load mode's jitter had its postmaster stopped left six
    backends stopped for good (the postmaster died by its parent-death signal; they never ran
    again to notice), and the next run's sweep, which ended only the recorded groups, removed
    their data dir under them. A stop records the children outside the group it stops."""
    dead = workdir_of_a_dead_process(tmp_path)  # as a SIGKILLed worker leaves its work dir
    recording = recording_dir()
    record_processes_in(dead)
    try:
        proc, pids = forking_server(dead, own_session=True)
        proc.start()
        try:
            helper = outside_the_group(proc, pids)
            proc.pause()
            assert settles_in(helper, "T")
            assert sweep_abandoned(tmp_path).removed == [dead]
            poll_until(lambda: gone(helper), what="the sweep to end a stopped child of a dead run's server", every=0.01)
            assert gone(helper), "the sweep left a stopped child of a dead run's server"
        finally:
            proc.kill()
    finally:
        record_processes_in(recording)


def test_servers_killed_from_many_threads_at_once_all_end(tmp_path: Path) -> None:
    """A cluster kills its nodes in parallel threads: each kill scans the live servers while the
    others leave that set (a scan over the set itself raised "Set changed size during iteration"
    mid-failover)."""
    argv = [sys.executable, "-c", ECHO_SERVER]
    for round_ in range(8):
        servers = []
        for i in range(12):  # started one by one, each on a port picked just before: on a busy
            port = free_port()  # machine a port picked long before its bind may be taken meanwhile
            log = tmp_path / f"{round_}-{i}.log"
            servers.append(ServerProcess(f"s{i}", [*argv, str(port)], port=port, log_path=log, cwd=tmp_path))
            servers[-1].start()
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(ServerProcess.kill, servers))  # raises what a kill raised
        assert not any(server.alive for server in servers)
