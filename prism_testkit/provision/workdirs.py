"""Each pytest process's private work dir (server data dirs, logs, embedded stores), and the
sweep of work dirs left by processes that died without cleaning up.

The harness deletes only what it can prove it made. Every work dir lives in one parent of the
harness's own, ``$TMPDIR/prism-testkit-<uid>/`` (mode 0700), and carries a marker written
before anything else goes in: a random token (also the last part of the dir's name) and the
owner's pid with that process's start time. A sweep removes a child of the parent only when its
marker is valid and its owner is gone; anything else there is left alone and reported. It
never follows a symlink and never crosses into another filesystem: a lazy mount a dead run left
inside its dir is detached first, anything else mounted there stays with its mountpoint.

Server process groups and lazy-filesystem daemons a run starts are recorded in its work dir
(pid plus start time), and so are a server's processes outside its group that the harness
stops (PostgreSQL's backends, stopped with their postmaster), so the sweep of a dead run's dir
can end those that outlived it without ever signalling a process that merely inherited a pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.mounts import LAZYFS_FSNAME_PREFIX, detach, mounts_under
from prism_testkit.provision.netns import sweep_networks
from prism_testkit.provision.process_identity import ProcessStamp, same_process, signal_group, stamp

PARENT_PREFIX = "prism-testkit-"  # + the uid
MARKER = ".prism-testkit-workdir"
PROCESSES = ".prism-testkit-processes"  # one JSON stamp per line
_MARKER_LIMIT = 4096  # bytes: a marker is small; anything larger is not one we wrote
_TOKEN = re.compile(r"[0-9a-f]{16}")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.]+")
_recording_into: Path | None = None  # the work dir this process records its servers in


class UnsafeWorkdirParent(ProvisioningError):
    """The work dirs' parent is not a plain directory of this user's: the harness will
    neither put data there nor delete anything in it."""


@dataclass
class SweepResult:
    removed: list[Path] = field(default_factory=list)
    left_alone: list[Path] = field(default_factory=list)  # no valid marker: never ours to delete
    stuck: list[Path] = field(default_factory=list)  # inside a removed dir, on another filesystem


def workdir_parent(base: Path | None = None) -> Path:
    """The harness's own parent dir under ``base`` (the temp dir), made if missing."""
    parent = Path(base or tempfile.gettempdir()) / f"{PARENT_PREFIX}{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        parent.mkdir(mode=0o700)
    found = os.lstat(parent)
    if stat.S_ISLNK(found.st_mode):
        raise UnsafeWorkdirParent(f"{parent} is a symlink; prism-testkit uses it only as a directory of its own")
    if not stat.S_ISDIR(found.st_mode):
        raise UnsafeWorkdirParent(f"{parent} is not a directory; move it away to let prism-testkit run")
    if found.st_uid != os.getuid():
        raise UnsafeWorkdirParent(f"{parent} belongs to uid {found.st_uid}, not to this user ({os.getuid()})")
    if found.st_mode & 0o022:  # nobody else may add or rename entries; search (x) stays allowed:
        os.chmod(parent, stat.S_IMODE(found.st_mode) & ~0o022)  # a server user must reach its dir
    return parent


def make_workdir(run: str, worker: str, base: Path | None = None) -> Path:
    """A new work dir, marked as this process's before anything else goes in."""
    parent = workdir_parent(base)
    owner = stamp(os.getpid())
    assert owner is not None  # this process is running
    token = secrets.token_hex(8)
    path = parent / f"{_UNSAFE_NAME.sub('_', run)}-{_UNSAFE_NAME.sub('_', worker)}-{token}"
    path.mkdir(mode=0o700)
    marker = {"token": token, "owner": owner.as_record(), "run": run, "worker": worker}
    _write_new(path / MARKER, json.dumps(marker).encode())
    return path


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def owner_of(path: Path) -> ProcessStamp | None:
    """The owner a work dir's marker names, or None when it has no marker the harness wrote."""
    try:
        fd = os.open(path / MARKER, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        raw = os.read(fd, _MARKER_LIMIT + 1)
    finally:
        os.close(fd)
    try:
        marker = json.loads(raw) if len(raw) <= _MARKER_LIMIT else None
    except ValueError:
        return None
    if not isinstance(marker, dict):
        return None
    token = marker.get("token")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token) or not path.name.endswith(f"-{token}"):
        return None
    return ProcessStamp.from_record(marker.get("owner"))


def record_processes_in(workdir: Path | None) -> None:
    """From now on, servers and daemons this process starts are recorded in ``workdir``."""
    global _recording_into
    _recording_into = workdir


def recording_dir() -> Path | None:
    """The work dir this process records what it starts in (for networks: their records)."""
    return _recording_into


def record_process(leader: ProcessStamp | None) -> None:
    """Remember a process group leader this process started, for the sweep after a crash."""
    if _recording_into is None or leader is None:
        return
    with contextlib.suppress(OSError):  # the dir is being removed: nothing left to record for
        fd = os.open(_recording_into / PROCESSES, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, (json.dumps(leader.as_record()) + "\n").encode())
        finally:
            os.close(fd)


def recorded_processes(workdir: Path) -> list[ProcessStamp]:
    try:
        fd = os.open(workdir / PROCESSES, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as lines:
        found = []
        for line in lines:
            with contextlib.suppress(ValueError):
                leader = ProcessStamp.from_record(json.loads(line))
                if leader is not None:
                    found.append(leader)
    return found


def sweep_abandoned(base: Path | None = None) -> SweepResult:
    """Remove the work dirs of dead processes from the harness's parent under ``base``."""
    parent = workdir_parent(base)
    result = SweepResult()
    with os.scandir(parent) as entries:
        children = [(parent / e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for path, is_dir in sorted(children):
        owner = owner_of(path) if is_dir else None
        if owner is None:
            if is_dir or not path.name.startswith("hunt-"):  # a hunt's ledger is a file of ours
                result.left_alone.append(path)
            continue
        if owner.pid == os.getpid() or same_process(owner):
            continue
        for leader in recorded_processes(path):
            signal_group(leader, signal.SIGKILL)  # they outlived their owner: nothing will end them
            if same_process(leader):  # one recorded outside its server's group (stopped by a stall)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(leader.pid, signal.SIGKILL)
        sweep_networks(path)  # after the processes: a namespace lasts while a process is inside
        result.stuck += remove_tree(path)
        result.removed.append(path)
    return result


def remove_tree(path: Path) -> list[Path]:
    """Delete ``path`` and what it holds without following a symlink or entering another
    filesystem. A lazy mount inside is detached first; any other mount stays, with the dirs
    above it. Returns the mountpoints left behind."""
    for mount in mounts_under(path):
        if mount.source.startswith(LAZYFS_FSNAME_PREFIX):
            detach(mount.mountpoint)
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return []
    if not stat.S_ISDIR(top.st_mode):
        raise ValueError(f"{path} is not a directory")
    left: list[Path] = []
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        # The marker goes last: a dir that could not be emptied (a mount left, a file a dying
        # server wrote meanwhile) stays provably ours, and the next sweep finishes it.
        _clear(fd, top.st_dev, path, left, keep=MARKER)
        if not left:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(MARKER, dir_fd=fd)
    finally:
        os.close(fd)
    if not left:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError:  # written into meanwhile: unmarked now, so reported, never deleted
            left.append(path)
    return left


def _clear(fd: int, device: int, where: Path, left: list[Path], keep: str | None = None) -> None:
    """Empty the directory open as ``fd`` (at ``where``) but for ``keep``, staying on ``device``."""
    with os.scandir(fd) as entries:
        names = [e.name for e in entries if e.name != keep]
    for name in names:
        try:
            found = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(found.st_mode):
                os.unlink(name, dir_fd=fd)
                continue
            if found.st_dev != device:  # a mountpoint: never recurse into another filesystem
                left.append(where / name)
                continue
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                before = len(left)
                _clear(child, device, where / name, left)
            finally:
                os.close(child)
            if len(left) == before:
                os.rmdir(name, dir_fd=fd)
        except FileNotFoundError:
            continue  # removed meanwhile (two workers sweeping one dead dir)
