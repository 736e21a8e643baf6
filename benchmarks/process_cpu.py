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
seen, which the :class:`Ledger` splits by the kind of the process that reaped it (from each
parent's reaped-children time). Process counts are of the processes seen, so short-lived ones
are undercounted. The sampler's own CPU (a few ms per scan of a few hundred processes) is
reported apart; ``--interval`` trades it against the unattributed share.

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


def _python_option(args: Sequence[str], flag: str) -> str:
    """The value of Python's ``-m`` or ``-c`` option, given apart or joined (``-mpytest``, as
    pytester runs pytest), or ''. The interpreter's options end at the first that takes one."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == flag:
            return args[index + 1] if index + 1 < len(args) else ""
        if arg.startswith(flag):
            return arg[len(flag) :]
        if not arg.startswith("-") or arg[:2] in ("-m", "-c"):
            return ""  # a script, or the other of the two
        index += 2 if arg in ("-X", "-W") else 1  # the options whose value is the next argument
    return ""


def _python_kind(cmdline: Sequence[str]) -> str:
    args = list(cmdline[1:])
    code = _python_option(args, "-c")
    module = _python_option(args, "-m")
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
    if "socket.create_connection" in code and len(code) < 400:  # netns.py's reachability probe, in a namespace
        return NETNS
    return OTHER


def describe(comm: str, cmdline: Sequence[str]) -> str:
    """A short name for an ``other`` process: its name, or for Python its module or the first
    line of its code."""
    args = list(cmdline[1:])
    if not (comm.startswith("python") and args):
        return comm
    if "-m" in args[:-1]:
        return f"{comm} -m {args[args.index('-m') + 1]}"
    if "-c" in args[:-1]:
        code = args[args.index("-c") + 1].strip()
        return f"{comm} -c {code.splitlines()[0][:40] if code else ''}".rstrip()
    return f"{comm} {os.path.basename(args[0])}"


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
        "cutime": int(fields[13]),  # of its children it waited for (and theirs): what it reaped
        "cstime": int(fields[14]),
        "starttime": int(fields[19]),
    }


Key = tuple[int, int]  # pid, start time: a pid is reused, the pair is not


@dataclass
class Seen:
    """One process as last sampled; times in seconds, ``reaped_*`` its reaped children's."""

    pid: int
    ppid: int
    comm: str
    kind: str
    name: str = ""  # what `other` is split by: comm, or for Python its module or code
    user: float = 0.0
    system: float = 0.0
    reaped_user: float = 0.0
    reaped_system: float = 0.0
    sightings: int = 0
    orphan: bool = False  # reparented to the profiler and reaped by it

    def as_record(self) -> dict[str, Any]:
        return {"kind": self.kind, "comm": self.name or self.comm, "user": self.user, "system": self.system,
                "orphan": self.orphan}  # fmt: skip


class Ledger:
    """Per-process CPU from successive samples, and what no sample saw, charged to the process
    that reaped it.

    A process's reaped-children time (cutime, cstime) grows by exactly the CPU of each child it
    reaps, whole: so between two samples, that growth minus what the samples had seen of the
    children that disappeared (their own and reaped time at their last sample) is CPU no sample
    saw: children shorter than a sample and each child's last moments. A child whose parent
    disappeared too is charged to the nearest ancestor still there; the root's reaped time is
    the run's ``RUSAGE_CHILDREN``. Summed over the run this is exactly the total minus the
    processes' sampled CPU, split by the kind of the reaper (:data:`ROOT` for the profiler)."""

    ROOT = "the profiler (pytest itself, orphans)"

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[Key, Seen] = {}
        self.present: set[Key] = set()  # in the last sample, zombies included
        self.root_reaped = (0.0, 0.0)
        self.unseen: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # by reaper kind: user, system

    def update(self, sample: Mapping[Key, Mapping[str, Any]], root_reaped: tuple[float, float]) -> None:
        """One sample: per process its ppid, comm, kind and times in seconds (user, system,
        reaped_user, reaped_system); ``root_reaped`` the root's reaped time so far."""
        growth: dict[Key | None, list[float]] = {}  # None: the root
        growth[None] = [root_reaped[0] - self.root_reaped[0], root_reaped[1] - self.root_reaped[1]]
        for key, now in sample.items():
            before = self.seen.get(key)
            was = (before.reaped_user, before.reaped_system) if before else (0.0, 0.0)
            growth[key] = [now["reaped_user"] - was[0], now["reaped_system"] - was[1]]
        by_pid = {key[0]: key for key in sample}
        gone = {key[0]: key for key in self.present - sample.keys()}
        for key in gone.values():
            child = self.seen[key]
            reaper: Key | None = None
            ppid = child.ppid
            while ppid != self.root:
                if ppid in by_pid:
                    reaper = by_pid[ppid]
                    break
                if ppid not in gone:
                    break  # unknown: reparented to the root and reaped there
                ppid = self.seen[gone[ppid]].ppid
            growth[reaper][0] -= child.user + child.reaped_user
            growth[reaper][1] -= child.system + child.reaped_system
        for reaper, (user, system) in growth.items():
            row = self.unseen[self.ROOT if reaper is None else sample[reaper]["kind"]]
            row[0] += user
            row[1] += system
        for key, now in sample.items():
            seen = self.seen.get(key)
            if seen is None:
                seen = self.seen[key] = Seen(key[0], now["ppid"], now["comm"], now["kind"])
            seen.ppid, seen.comm, seen.kind, seen.name = now["ppid"], now["comm"], now["kind"], now.get("name", "")
            seen.user, seen.system = now["user"], now["system"]
            seen.reaped_user, seen.reaped_system = now["reaped_user"], now["reaped_system"]
            seen.sightings += 1
        self.present = set(sample)
        self.root_reaped = root_reaped

    def unattributed(self) -> dict[str, dict[str, float]]:
        """What no sample saw, by the kind of the process that reaped it, largest first."""
        rows = sorted(self.unseen.items(), key=lambda item: -(item[1][0] + item[1][1]))
        return {kind: {"user": round(u, 2), "system": round(s, 2)} for kind, (u, s) in rows if abs(u) + abs(s) >= 0.005}


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


def outside(parents: Mapping[int, int], tree: set[int], root: int, known: set[int]) -> set[int]:
    """The pids of ``parents`` (pid -> parent pid, as read in one scan) that are surely not of
    the run: their ancestors lead to pid 0 or to a pid ``known`` to be outside. A process whose
    ancestry breaks off (its parent exited during the scan, and it is being reparented to the
    root) is not: it may be the run's, and is read again next scan."""
    found: set[int] = set()
    for pid in parents.keys() - tree - {root}:
        chain, ancestor = [pid], parents[pid]
        while ancestor in parents and ancestor not in found and ancestor not in tree and ancestor != root:
            if len(chain) > len(parents):
                break  # a loop, from pids reused during the scan: decide next time
            chain.append(ancestor)
            ancestor = parents[ancestor]
        if ancestor == 0 or ancestor in known or ancestor in found:
            found.update(chain)
    return found


def by_kind(processes: Iterable[Mapping[str, Any]], total_user: float, total_system: float) -> dict[str, Any]:
    """CPU (user, system) and processes seen per kind, largest first, with the remainder of the
    run's total that no sample explains as :data:`UNATTRIBUTED` (its split by reaper is the
    :class:`Ledger`'s); and ``other`` split by name."""
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
    """Samples every descendant of this process in a thread (see the module docstring).
    ``baseline`` is this process's ``RUSAGE_CHILDREN`` (user, system) before the run began."""

    def __init__(self, interval: float = 0.2, baseline: tuple[float, float] = (0.0, 0.0)) -> None:
        self.interval = interval
        self.root = os.getpid()
        self.baseline = baseline
        self.controller: int | None = None  # the pytest process: waited for by the caller, never reaped here
        self.ledger = Ledger(self.root)
        self.live: set[Key] = set()  # in the last scan and not a zombie
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

    def _reaped_by_root(self) -> tuple[float, float]:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime - self.baseline[0], usage.ru_stime - self.baseline[1]

    def scan(self) -> None:
        # The root's reaped time first: a process reaped between it and the reads below is then
        # charged to the root once it is gone from the next scan, never missed.
        root_reaped = self._reaped_by_root()
        stats: dict[int, dict[str, Any]] = {}
        pids = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        self._foreign &= pids  # a pid gone from /proc may come back as a process of the run
        for pid in pids - self._foreign:
            if (raw := _read(f"/proc/{pid}/stat")) is not None:
                with contextlib.suppress(ValueError, IndexError):
                    stats[pid] = parse_stat(raw.decode(errors="replace"))
        parents = {pid: s["ppid"] for pid, s in stats.items()}
        tree = descendants(parents, self.root)
        # Processes outside the run never join it (only its own forks do): not read again.
        self._foreign |= outside(parents, set(tree), self.root, self._foreign)
        with self._lock:
            self.scans += 1
            sample: dict[Key, dict[str, Any]] = {}
            zombies = []
            for pid in tree:
                stat = stats[pid]
                key = (pid, stat["starttime"])
                seen = self.ledger.seen.get(key)
                kind, name = (seen.kind, seen.name) if seen is not None else (OTHER, stat["comm"])
                if seen is None or seen.sightings < 2 or seen.comm != stat["comm"]:
                    # new, or young (a fork not yet exec'd looks like its parent), or it exec'd
                    cmdline = (_read(f"/proc/{pid}/cmdline") or b"").decode(errors="replace").split("\0")
                    argv = [a for a in cmdline if a]
                    kind = classify(stat["comm"], argv, controller=pid == self.controller)
                    name = describe(stat["comm"], argv) if kind == OTHER else stat["comm"]
                sample[key] = {
                    "ppid": stat["ppid"],
                    "comm": stat["comm"],
                    "name": name,
                    "kind": kind,
                    "user": stat["utime"] * TICK,
                    "system": stat["stime"] * TICK,
                    "reaped_user": stat["cutime"] * TICK,
                    "reaped_system": stat["cstime"] * TICK,
                }
                if stat["state"] == "Z" and stat["ppid"] == self.root and pid != self.controller:
                    zombies.append(key)
            self.ledger.update(sample, root_reaped)
            self.live = {key for key in sample if stats[key[0]]["state"] != "Z"}
            for key in zombies:
                self._reap(key)

    def _reap(self, key: Key) -> None:
        try:
            done, _, usage = os.wait4(key[0], os.WNOHANG)
        except ChildProcessError:
            return
        if done == key[0]:
            self.ledger.seen[key].orphan = True
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
            return [seen.as_record() for seen in self.ledger.seen.values()]

    def left_running(self) -> list[dict[str, Any]]:
        """The processes of the run still there after it (their CPU, and their reaped
        children's, is not in getrusage: the caller adds it to the total)."""
        with self._lock:
            return [
                {
                    "pid": key[0],
                    **seen.as_record(),
                    "reaped_user": seen.reaped_user,
                    "reaped_system": seen.reaped_system,
                }
                for key in sorted(self.ledger.present)
                if (seen := self.ledger.seen[key])
            ]

    def unattributed(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return self.ledger.unattributed()
