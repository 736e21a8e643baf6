"""Which process a pid names: a pid plus the kernel's record of when that process started.

A pid alone is not an identity. Once a process is reaped the kernel may hand its pid to any new
process, so a signal sent to a remembered pid (or process group) can hit a stranger. Every
kill the harness sends to a process it did not just spawn goes through :func:`same_process`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessStamp:
    pid: int
    started: int  # clock ticks after boot (/proc/<pid>/stat, field 22)

    def as_record(self) -> dict[str, int]:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_record(cls, record: object) -> ProcessStamp | None:
        """The stamp a record holds, or None when it is not one the harness wrote."""
        if not isinstance(record, dict):
            return None
        pid, started = record.get("pid"), record.get("started")
        if type(pid) is not int or type(started) is not int or pid <= 1 or started < 0:
            return None
        return cls(pid, started)


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after "pid (comm)", or None when no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    return raw.rsplit(b")", 1)[1].split()


def start_time(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None  # field 22 of the whole line


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def stamp(pid: int) -> ProcessStamp | None:
    started = start_time(pid)
    return ProcessStamp(pid, started) if started is not None else None


def same_process(recorded: ProcessStamp) -> bool:
    """True while the process the stamp was taken of still runs (not a zombie, not a stranger
    that inherited its pid)."""
    fields = _stat_fields(recorded.pid)
    return fields is not None and fields[0] not in (b"Z", b"X") and int(fields[19]) == recorded.started


def group_is_ours(leader: ProcessStamp) -> bool:
    """Whether process group ``leader.pid`` can still be the group that leader started.

    Linux never reuses a pid while a process group of that id has a member, so: if a process
    holds the pid now, the group is ours only if that process is the leader itself; if no
    process holds it, any member left with that group id joined the leader's group."""
    return start_time(leader.pid) in (None, leader.started)  # a zombie leader is still the leader


def signal_group(leader: ProcessStamp, sig: signal.Signals) -> bool:
    """Send ``sig`` to the leader's process group unless its id now belongs to a stranger.
    Returns whether the signal was sent."""
    if not group_is_ours(leader):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader.pid, sig)
    return True
