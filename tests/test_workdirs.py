"""The harness deletes only what it can prove it made: work dirs live in a private parent, carry
a marker naming their owner (pid and start time), and a sweep removes a dir only when that
marker is valid and its owner gone, without following a symlink or entering another mount.
Process groups are signalled only while their leader's pid still names the process started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prism_testkit.patience import poll_until
from prism_testkit.provision.lazymount import fuse_unavailable_reason
from prism_testkit.provision.mounts import LAZYFS_FSNAME_PREFIX, detach, is_mounted
from prism_testkit.provision.process_identity import ProcessStamp, same_process, signal_group, stamp
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.workdirs import (
    MARKER,
    PROCESSES,
    UnsafeWorkdirParent,
    make_workdir,
    owner_of,
    recorded_processes,
    sweep_abandoned,
    workdir_parent,
)

ROOT = Path(__file__).resolve().parent.parent


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def workdir_of_a_dead_process(base: Path) -> Path:
    """A work dir made (and marked) by a process that then exited without removing it."""
    script = (
        f"from prism_testkit.provision.workdirs import make_workdir; print(make_workdir('run', 'gw9', {str(base)!r}))"
    )
    made = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return Path(made.stdout.strip())


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process leading its own process group, as a reused pid would."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_dir_whose_owner_died_is_swept_and_live_ones_stay(tmp_path: Path) -> None:
    mine = make_workdir("run", "gw0", tmp_path)
    owner = owner_of(mine)
    assert owner is not None
    assert owner.pid == os.getpid()
    assert same_process(owner)
    assert mine.parent == tmp_path / f"prism-testkit-{os.getuid()}"
    assert mine.stat().st_mode & 0o777 == 0o700
    assert mine.parent.stat().st_mode & 0o777 == 0o700
    orphan = workdir_of_a_dead_process(tmp_path)
    (orphan / "postgres" / "data").mkdir(parents=True)
    (orphan / "postgres" / "data" / "PG_VERSION").write_text("15")

    result = sweep_abandoned(tmp_path)

    assert result.removed == [orphan]
    assert not orphan.exists()
    assert mine.exists()


def test_nothing_the_harness_did_not_make_is_ever_deleted(tmp_path: Path) -> None:
    """prism-* dirs in the temp dir (the old sweep's prey), and unproven dirs in our own parent:
    with and without (invalid) markers, old and new, empty or not, symlinks, another user's."""
    old = time.time() - 10 * 86400
    survivors = []
    for name in ("prism-venv", "prism-data-layer", "prism-run-gw0-abc", f"prism-testkit-{os.getuid() + 1}"):
        plain = tmp_path / name
        (plain / "lib").mkdir(parents=True)
        (plain / "lib" / "METADATA").write_text("keep me")
        survivors.append(plain / "lib" / "METADATA")
    (tmp_path / "prism-old-empty").mkdir()
    os.utime(tmp_path / "prism-old-empty", (old, old))
    survivors.append(tmp_path / "prism-old-empty")
    (tmp_path / "prism-run-gw1-xyz").mkdir()
    (tmp_path / "prism-run-gw1-xyz" / "owner.pid").write_text(str(dead_pid()))  # the old marker
    (tmp_path / "prism-run-gw1-xyz" / "owner.pid").touch()
    survivors.append(tmp_path / "prism-run-gw1-xyz" / "owner.pid")
    (tmp_path / "prism-garbled").mkdir()
    (tmp_path / "prism-garbled" / "owner.pid").write_text("not a pid")
    survivors.append(tmp_path / "prism-garbled" / "owner.pid")

    parent = workdir_parent(tmp_path)
    dead_marker = json.loads((workdir_of_a_dead_process(tmp_path) / MARKER).read_text())
    forged = {
        "no-marker": None,
        "bad-json-0123456789abcdef": "{",
        "run-gw0-0123456789abcdef": json.dumps({**dead_marker, "token": "0123456789abcdef"} | {"owner": None}),
        "token-from-another-dir": json.dumps(dead_marker),  # a valid marker copied into a dir of another name
        "huge-0123456789abcdef": json.dumps({**dead_marker, "token": "0123456789abcdef", "pad": "x" * 10000}),
    }
    for name, marker in forged.items():
        (parent / name).mkdir()
        (parent / name / "data").write_text("keep me")
        if marker is not None:
            (parent / name / MARKER).write_text(marker)
        os.utime(parent / name, (old, old))
        survivors.append(parent / name / "data")
    # A symlink in our parent, named and marked like a dead work dir, pointing at a user's dir.
    elsewhere = tmp_path / "users-dir-0123456789abcdef"
    elsewhere.mkdir()
    (elsewhere / MARKER).write_text(json.dumps({**dead_marker, "token": "0123456789abcdef"}))
    (elsewhere / "data").write_text("keep me")
    (parent / "run-gw0-0123456789abcdef-link").symlink_to(elsewhere)
    (tmp_path / "prism-link").symlink_to(elsewhere)
    survivors.append(elsewhere / "data")
    # A dir of another user's, in the temp dir and in our parent (root can chown; others skip it).
    if os.geteuid() == 0:
        for foreign in (tmp_path / "prism-foreign", parent / "foreign"):
            foreign.mkdir()
            (foreign / "data").write_text("keep me")
            os.chown(foreign, 65534, 65534)
            survivors.append(foreign / "data")

    results = [sweep_abandoned(tmp_path) for _ in range(3)]
    assert all(path.exists() for path in survivors), [p for p in survivors if not p.exists()]
    assert [len(r.removed) for r in results] == [1, 0, 0]  # the one real dead work dir, once
    result = results[-1]
    assert {p.name for p in result.left_alone} >= {*forged, "run-gw0-0123456789abcdef-link"}


def test_a_real_run_leaves_prism_named_dirs_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end, as the user who lost a virtual environment ran it."""
    tmp = pytester.path / "tmp"
    venv = tmp / "prism-venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "METADATA").write_text("pluggy")
    old = time.time() - 7200
    os.utime(tmp / "prism-venv", (old, old))
    monkeypatch.setenv("TMPDIR", str(tmp))
    pytester.makepyfile("def test_workdir(prism_runtime):\n    assert prism_runtime.workdir.is_dir()\n")
    for _ in range(2):
        result = pytester.runpytest_subprocess("--prism-backend=memstore", "-p", "no:cacheprovider")
        assert result.ret == 0, result.stdout.str()
        assert [p.name for p in tmp.iterdir()] == ["prism-venv", f"prism-testkit-{os.getuid()}"]
    assert (venv / "METADATA").read_text() == "pluggy"


def test_a_parent_that_is_a_symlink_or_not_ours_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    workdir_of_a_dead_process(target)  # a dead run's dir behind the link: still not followed
    (target / f"prism-testkit-{os.getuid()}" / "precious").write_text("keep me")
    base = tmp_path / "base"
    base.mkdir()
    (base / f"prism-testkit-{os.getuid()}").symlink_to(target / f"prism-testkit-{os.getuid()}")
    with pytest.raises(UnsafeWorkdirParent, match="is a symlink"):
        sweep_abandoned(base)
    with pytest.raises(UnsafeWorkdirParent, match="is a symlink"):
        make_workdir("run", "gw0", base)
    assert len(list((target / f"prism-testkit-{os.getuid()}").iterdir())) == 2
    if os.geteuid() == 0:
        other = tmp_path / "other"
        other.mkdir()
        workdir_of_a_dead_process(other)
        os.chown(other / f"prism-testkit-{os.getuid()}", 65534, 65534)
        with pytest.raises(UnsafeWorkdirParent, match="belongs to uid 65534"):
            sweep_abandoned(other)
        assert len(list((other / f"prism-testkit-{os.getuid()}").iterdir())) == 1


def test_removal_never_follows_a_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    dead = workdir_of_a_dead_process(tmp_path)
    (dead / "data").mkdir()
    (dead / "data" / "link-to-dir").symlink_to(outside)
    (dead / "data" / "link-to-file").symlink_to(outside / "precious")
    assert sweep_abandoned(tmp_path).removed == [dead]
    assert not dead.exists()
    assert (outside / "precious").read_text() == "keep me"


def test_a_mount_inside_a_dead_dir_is_left_and_never_entered(tmp_path: Path) -> None:
    """A mount the sweep did not make (here a tmpfs) stays, with the dirs above it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    dead = workdir_of_a_dead_process(tmp_path)
    mountpoint = dead / "data" / "mnt"
    mountpoint.mkdir(parents=True)
    (dead / "data" / "file").write_text("ours")
    subprocess.run(["mount", "-t", "tmpfs", "prism-test", str(mountpoint)], check=True)
    try:
        (mountpoint / "precious").write_text("keep me")
        result = sweep_abandoned(tmp_path)
        assert result.stuck == [mountpoint]
        assert (mountpoint / "precious").read_text() == "keep me"
        assert not (dead / "data" / "file").exists()
        assert (dead / MARKER).exists()  # still provably ours: the next sweep may finish it
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
    assert sweep_abandoned(tmp_path).removed == [dead]
    assert not dead.exists()


def test_a_lazy_mount_left_by_a_killed_run_is_detached_not_entered(tmp_path: Path) -> None:
    """Both the test process and its daemon's cleanup failed (say, both SIGKILLed): the next
    run detaches the lazy mount in the dead run's dir; the files behind it are not touched."""
    if (reason := fuse_unavailable_reason()) is not None:
        pytest.fail(f"the lazy filesystem is required here: {reason}")
    dead = workdir_of_a_dead_process(tmp_path)
    lower, mountpoint = tmp_path / "lower", dead / "data"
    lower.mkdir()
    (lower / "precious").write_text("keep me")
    mountpoint.mkdir()
    argv = [sys.executable, "-m", "prism_testkit.faults.lazyfs_daemon", "--lower", str(lower), "--blobs"]
    argv += [str(tmp_path / "blobs"), "--control", f"sweep-test-{os.getpid()}", "--fsname"]
    argv += [f"{LAZYFS_FSNAME_PREFIX}{dead_pid()}", str(mountpoint)]
    daemon = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    try:
        poll_until(lambda: is_mounted(mountpoint), what="the dead run's lazyfs daemon to mount")
        assert is_mounted(mountpoint)
        assert (mountpoint / "precious").read_text() == "keep me"

        assert sweep_abandoned(tmp_path).removed == [dead]

        assert not is_mounted(mountpoint)
        assert not dead.exists()
        assert (lower / "precious").read_text() == "keep me"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
        if is_mounted(mountpoint):
            detach(mountpoint)


def test_a_sigkilled_run_leaves_a_dir_the_next_run_removes_with_its_servers(tmp_path: Path) -> None:
    """The killed process's servers normally die with it (parent-death signal); one that did
    not is recorded in the dir, and the sweep ends it before removing the dir."""
    script = textwrap.dedent(f"""
        import os, signal, subprocess
        from prism_testkit.provision.process_identity import stamp
        from prism_testkit.provision.workdirs import make_workdir, record_process, record_processes_in
        workdir = make_workdir("run", "gw0", {str(tmp_path)!r})
        record_processes_in(workdir)
        (workdir / "data").mkdir()
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # run() waits for its pipe to close
        survivor = subprocess.Popen(["sleep", "300"], start_new_session=True, **quiet)
        record_process(stamp(survivor.pid))
        print(workdir, survivor.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    path, pid = killed.stdout.split()
    workdir, survivor = Path(path), int(pid)
    leader = recorded_processes(workdir)
    assert [s.pid for s in leader] == [survivor]
    assert same_process(leader[0])

    assert sweep_abandoned(tmp_path).removed == [workdir]

    assert not workdir.exists()
    poll_until(lambda: not same_process(leader[0]), what="the swept group's leader to end", every=0.02)
    assert not same_process(leader[0])


def test_a_group_whose_leader_pid_was_reused_is_not_signalled(stranger: subprocess.Popen[bytes]) -> None:
    now = stamp(stranger.pid)
    assert now is not None
    reused = ProcessStamp(stranger.pid, now.started - 1)  # what we recorded of an earlier process
    assert signal_group(reused, signal.SIGKILL) is False
    time.sleep(0.05)
    assert stranger.poll() is None
    assert signal_group(now, signal.SIGTERM) is True
    assert stranger.wait(timeout=5) == -signal.SIGTERM


def test_a_server_whose_pid_was_reused_is_not_killed(tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    server = ServerProcess(
        "sleeper", ["sleep", "60"], port=free_port(), log_path=tmp_path / "log", ready=lambda: True, ready_timeout=5
    )
    server.start()
    server.kill()
    now = stamp(stranger.pid)
    assert now is not None
    server._leader = ProcessStamp(stranger.pid, now.started - 1)  # its pid went to the stranger
    server.kill()
    server.stop()
    time.sleep(0.05)
    assert stranger.poll() is None


def test_the_sweep_spares_a_stranger_holding_a_recorded_pid(tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    dead = workdir_of_a_dead_process(tmp_path)
    now = stamp(stranger.pid)
    assert now is not None
    (dead / PROCESSES).write_text(json.dumps({"pid": stranger.pid, "started": now.started - 1}) + "\n")
    assert sweep_abandoned(tmp_path).removed == [dead]
    time.sleep(0.05)
    assert stranger.poll() is None


def test_the_next_run_removes_a_sigkilled_runs_work_dir(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    pytester.makepyfile(
        test_killed="""
        import os, signal

        def test_killed(prism_runtime):
            (prism_runtime.workdir / "data").mkdir()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = pytester.runpytest_subprocess("--prism-backend=sqlite", "-p", "no:cacheprovider")
    assert killed.ret == -signal.SIGKILL
    parent = tmp / f"prism-testkit-{os.getuid()}"
    [left] = list(parent.iterdir())
    assert (left / "data").is_dir()

    pytester.makepyfile(test_killed="def test_next(prism_runtime):\n    assert prism_runtime.workdir.is_dir()\n")
    assert pytester.runpytest_subprocess("--prism-backend=sqlite", "-p", "no:cacheprovider").ret == 0
    assert list(parent.iterdir()) == []


def test_the_parent_keeps_search_for_server_users_but_never_write(tmp_path: Path) -> None:
    """PostgreSQL runs as its own user and must reach its data dir (its provisioner adds o+x);
    another worker starting must not take that away, and nobody else may write there."""
    parent = workdir_parent(tmp_path)
    os.chmod(parent, 0o701)
    workdir_parent(tmp_path)
    assert parent.stat().st_mode & 0o777 == 0o701
    os.chmod(parent, 0o777)
    workdir_parent(tmp_path)
    assert parent.stat().st_mode & 0o777 == 0o755
