"""A run's CPU by process kind, for :mod:`benchmarks.run_profile`: which processes burned it
(pytest's controller and workers, each server kind, the lazy filesystem, the load burners, the
``ip`` / netns helpers...), user and system time apart.

How: the profiler makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so a
process of the run whose parent dies (a postmaster's backends after a SIGKILL, anything that
daemonises) is reparented to the profiler instead of init and stays in its tree; without it
that process's CPU never reached the run's ``RUSAGE_CHILDREN`` total. A thread reads
``/proc/<pid>/stat`` of every descendant every ``interval`` seconds and keeps, per process
(pid and start time), its latest user and system time and its kind (from its name and command
line, re-read when it execs). It reaps the orphans handed to the profiler, by pid, never the
pytest process the profiler waits for itself.

What sampling cannot see is reported, not hidden: a process that lives less than one interval
is never seen, and a process's CPU after its last sample is lost; both land in the
``unattributed`` remainder, the run's total (``getrusage``) minus the sum over the processes
seen. Process counts are of the processes seen, so short-lived ones are undercounted.

Everything but :class:`Sampler` is pure and unit-tested (``tests/test_run_profile.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
TICK = 1.0 / os.sysconf("SC_CLK_TCK")

CONTROLLER = "pytest controller"
WORKERS = "pytest workers"
PYTEST_SUBPROCESSES = "pytest subprocesses"  # the project's own tests run pytest in pytest
POSTGRES = "postgres"
POSTGRES_TOOLS = "postgres tools"
REDIS = "redis-server"
SENTINEL = "redis-sentinel"
NATS = "nats-server"
S3 = "moto/s3"
KAFKA = "tansu/kafka"
LAZYFS = "lazy filesystem"
BURNERS = "load burners"
NETNS = "ip/netns"
OTHER = "other"
UNATTRIBUTED = "unattributed"

_POSTGRES_TOOLS = {
    "initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "pg_controldata", "pg_isready", "pg_resetwal",
    "pg_waldump", "pg_archivecleanup", "pg_receivewal", "pg_recvlogical", "pg_dump", "pg_restore", "psql",
}  # fmt: skip
_NETNS_TOOLS = {"ip", "nsenter", "unshare", "tc", "iptables", "ip6tables", "nft", "sysctl", "bridge"}
_SERVERS_BY_COMM = {"redis-server": REDIS, "redis-sentinel": SENTINEL, "nats-server": NATS, "tansu": KAFKA}
_CPU_BURNER = "while True:\n    pass\n"  # prism_testkit/faults/burners.py's busy loop


def classify(comm: str, cmdline: Sequence[str], controller: bool = False) -> str:
    """The kind of a process from its name (``/proc/<pid>/comm``, at most 15 characters) and
    command line. ``controller`` marks the pytest process the profiler started."""
    if controller:
        return CONTROLLER
    args = " ".join(cmdline)
    program = os.path.basename(cmdline[0]) if cmdline else ""
    if comm in ("postgres", "postmaster"):
        # initdb runs the server in bootstrap and single-user mode; -V / -C answer and exit
        single = {"--boot", "--single", "-V", "--version", "-C", "--describe-config"} & set(cmdline[1:2])
        return POSTGRES_TOOLS if single else POSTGRES
    if comm in _POSTGRES_TOOLS or program in _POSTGRES_TOOLS:
        return POSTGRES_TOOLS
    if comm == "redis-server" and ("--sentinel" in cmdline or "[sentinel]" in args):
        return SENTINEL  # redis-server's title reads "redis-server 10.0.0.1:26379 [sentinel]"
    if comm in _SERVERS_BY_COMM:
        return _SERVERS_BY_COMM[comm]
    if comm.startswith("stress-ng"):
        return BURNERS
    if comm in ("fusermount", "fusermount3"):
        return LAZYFS
    if comm in _NETNS_TOOLS:
        return NETNS
    if comm.startswith("python") or program.startswith("python"):
        return _python_kind(cmdline)
    return OTHER


def _python_kind(cmdline: Sequence[str]) -> str:
    args = list(cmdline[1:])
    code = args[args.index("-c") + 1] if "-c" in args[:-1] else ""
    module = args[args.index("-m") + 1] if "-m" in args[:-1] else ""
    if module == "prism_testkit.faults.lazyfs_daemon":
        return LAZYFS
    if module.startswith("moto"):
        return S3
    if module == "pytest" or any(os.path.basename(a) in ("pytest", "py.test") for a in cmdline[:2]):
        return PYTEST_SUBPROCESSES
    if "exec(eval(sys.stdin.readline()))" in code:  # execnet's bootstrap: an xdist worker
        return WORKERS
    if code == _CPU_BURNER or ("burn-" in code and "fsync" in code):
        return BURNERS
    return OTHER


def parse_stat(text: str) -> dict[str, Any]:
    """The fields of ``/proc/<pid>/stat`` that matter here (times in clock ticks). The name is
    in parentheses and may hold spaces or parentheses itself: the fields follow the last ')'."""
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    return {
        "comm": head.partition("(")[2],
        "state": fields[0],
        "ppid": int(fields[1]),
        "utime": int(fields[11]),
        "stime": int(fields[12]),
        "starttime": int(fields[19]),
    }


@dataclass
class Seen:
    """One process (pid and start time) as last sampled; times in seconds."""

    pid: int
    comm: str
    kind: str
    user: float = 0.0
    system: float = 0.0
    sightings: int = 0
    orphan: bool = False  # reparented to the profiler and reaped by it

    def as_record(self) -> dict[str, Any]:
        return {"kind": self.kind, "comm": self.comm, "user": self.user, "system": self.system, "orphan": self.orphan}


def descendants(parents: Mapping[int, int], root: int) -> list[int]:
    """Every pid below ``root`` in a pid -> parent pid map."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid in parents.items():
        children[ppid].append(pid)
    found, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def by_kind(processes: Iterable[Mapping[str, Any]], total_user: float, total_system: float) -> dict[str, Any]:
    """CPU (user, system) and processes seen per kind, largest first, with the remainder of the
    run's total that no sample explains as :data:`UNATTRIBUTED`; and ``other`` split by name."""
    kinds: dict[str, dict[str, float]] = defaultdict(lambda: {"user": 0.0, "system": 0.0, "processes": 0, "orphans": 0})
    others: dict[str, float] = defaultdict(float)
    for p in processes:
        row = kinds[p["kind"]]
        row["user"] += p["user"]
        row["system"] += p["system"]
        row["processes"] += 1
        row["orphans"] += bool(p.get("orphan"))
        if p["kind"] == OTHER:
            others[p["comm"]] += p["user"] + p["system"]
    seen_user = sum(row["user"] for row in kinds.values())
    seen_system = sum(row["system"] for row in kinds.values())
    ordered = dict(sorted(kinds.items(), key=lambda item: -(item[1]["user"] + item[1]["system"])))
    remainder = {"user": total_user - seen_user, "system": total_system - seen_system, "processes": 0, "orphans": 0}
    ordered[UNATTRIBUTED] = remainder
    return {
        "cpu_by_kind": {kind: {k: round(v, 2) for k, v in row.items()} for kind, row in ordered.items()},
        "other_by_comm": {c: round(s, 2) for c, s in sorted(others.items(), key=lambda item: -item[1])[:12]},
    }


def become_subreaper() -> bool:
    """Make this process the child subreaper of its tree (Linux); False when refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class Sampler:
    """Samples every descendant of this process in a thread (see the module docstring)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.root = os.getpid()
        self.controller: int | None = None  # the pytest process: waited for by the caller, never reaped here
        self.seen: dict[tuple[int, int], Seen] = {}
        self.live: set[tuple[int, int]] = set()  # seen in the last scan and not a zombie
        self.orphan_user = self.orphan_system = 0.0  # rusage of the orphans reaped here
        self.orphans_reaped = 0
        self.scans = 0
        self.own_cpu = 0.0  # the sampling thread's CPU (not part of the run's total)
        self._foreign: set[int] = set()  # pids of processes outside the run, not read again
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="run-profile-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(self.interval)
        self.scan()
        usage = resource.getrusage(resource.RUSAGE_THREAD)
        self.own_cpu = usage.ru_utime + usage.ru_stime

    def scan(self) -> None:
        stats: dict[int, dict[str, Any]] = {}
        pids = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        self._foreign &= pids  # a pid gone from /proc may come back as a process of the run
        for pid in pids - self._foreign:
            if (raw := _read(f"/proc/{pid}/stat")) is not None:
                with contextlib.suppress(ValueError, IndexError):
                    stats[pid] = parse_stat(raw.decode(errors="replace"))
        tree = descendants({pid: s["ppid"] for pid, s in stats.items()}, self.root)
        # Processes outside the run never join it (only its own forks do): not read again.
        self._foreign |= stats.keys() - set(tree)
        with self._lock:
            self.scans += 1
            live = set()
            for pid in tree:
                stat = stats[pid]
                key = (pid, stat["starttime"])
                seen = self.seen.get(key)
                if seen is None or seen.sightings < 2 or seen.comm != stat["comm"]:
                    # new, or young (a fork not yet exec'd looks like its parent), or it exec'd
                    cmdline = (_read(f"/proc/{pid}/cmdline") or b"").decode(errors="replace").split("\0")
                    kind = classify(stat["comm"], [a for a in cmdline if a], controller=pid == self.controller)
                    if seen is None:
                        seen = self.seen[key] = Seen(pid, stat["comm"], kind)
                    seen.comm, seen.kind = stat["comm"], kind
                seen.sightings += 1
                seen.user, seen.system = stat["utime"] * TICK, stat["stime"] * TICK
                if stat["state"] != "Z":
                    live.add(key)
                elif stat["ppid"] == self.root and pid != self.controller:
                    self._reap(pid, seen)
            self.live = live

    def _reap(self, pid: int, seen: Seen) -> None:
        try:
            done, _, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done == pid:
            seen.orphan = True
            self.orphans_reaped += 1
            self.orphan_user += usage.ru_utime
            self.orphan_system += usage.ru_stime

    def wait_for_descendants(self, timeout: float) -> None:
        """After pytest ended: sample (and reap) until nothing of the run is left, or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.live:
                    return
            time.sleep(self.interval)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [seen.as_record() for seen in self.seen.values()]

    def left_running(self) -> list[dict[str, Any]]:
        """The processes of the run still running after it (their CPU is not in getrusage yet)."""
        with self._lock:
            return [{"pid": key[0], **self.seen[key].as_record()} for key in sorted(self.live)]
