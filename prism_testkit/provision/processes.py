"""Private server processes: start, readiness, kill / stop / start / pause / resume, cleanup.

Servers run in the foreground in their own process group, with a parent-death signal, so a
crashed or SIGKILLed pytest worker never leaves an orphaned server behind; ``atexit`` and
:func:`stop_all` cover the orderly paths (end of session, Ctrl-C).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import pwd
import random
import re
import signal
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from prism_testkit import patience
from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.process_identity import ProcessStamp, group_is_ours, signal_group, stamp
from prism_testkit.provision.workdirs import record_process

_PR_SET_PDEATHSIG = 1
_LIVE: set[ServerProcess] = set()
_OWN_LOG_LINE = "prism-testkit:"  # how the lines the harness writes into a server's log begin


# --- ports ---------------------------------------------------------------------------------
#
# A server's port is picked below the kernel's ephemeral range (ip_local_port_range), not by
# binding port 0: a port from that range may be taken, between a server's kill and its restart,
# by any outgoing connection of a busy machine ("address already in use" on a restart, seen by a
# backend author in a stateful test). The band below the range is split between xdist workers;
# each process starts at a random place in its worker's share (two runs at once rarely meet),
# walks on from there, never hands out a port twice, and checks each port free by binding it.

PORTS_FROM = 10_000  # the band's low end: above the well-known and most registered services' ports
PAUSE_TAKES_EFFECT = 5.0  # s for SIGSTOP to reach every thread (microseconds; a loaded machine more)
_MIN_BAND = 1_000  # ports: a smaller band below (or above) the ephemeral range is not used
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_WORKER = re.compile(r"gw(\d+)$")
_DEFAULT_WORKERS = 16  # shares when a worker id comes without a worker count


def ephemeral_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (inclusive); Linux's default where it cannot be read."""
    try:
        low, high = (int(v) for v in _EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def port_band(worker: str | None = None, workers: int | None = None) -> range:
    """The ports :func:`free_port` may hand out in this process: this xdist worker's share of
    the band below the ephemeral range (above it when the room below is too small). ``worker``
    and ``workers`` default to ``PYTEST_XDIST_WORKER`` / ``PYTEST_XDIST_WORKER_COUNT``.
    An empty range when neither side leaves room (ports then come from the kernel)."""
    low, high = ephemeral_range()
    if low - PORTS_FROM >= _MIN_BAND:
        band = range(PORTS_FROM, low)
    elif 65535 - high >= _MIN_BAND:
        band = range(high + 1, 65536)
    elif low - 1024 >= _MIN_BAND:
        band = range(1024, low)
    else:
        return range(0)
    if worker is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    found = _WORKER.match(worker)
    if found is None:  # not an xdist worker: the whole band
        return band
    index = int(found.group(1))
    if workers is None:
        with contextlib.suppress(ValueError):
            workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", ""))
    shares = max(workers or _DEFAULT_WORKERS, index + 1)
    size = len(band) // shares
    return range(band.start + index * size, band.start + (index + 1) * size)


def _bindable(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` and on every address (a server listening on
    another address, or the wildcard, would refuse one bound later), without SO_REUSEADDR, so
    a port still held by a closed connection (TIME_WAIT) counts as taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for address in dict.fromkeys((host, wildcard)):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((address, port))
        except OSError:
            return False
    return True


class PortPicker:
    """Hands out free ports from :func:`port_band`, each at most once (see the note above)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._issued: set[int] = set()
        self._next: dict[range, int] = {}  # per band (the environment may change): where to look next

    def take(self, host: str = "127.0.0.1") -> int:
        band = port_band()
        with self._lock:
            if not band:
                return self._from_kernel(host)
            start = self._next.get(band)
            if start is None:
                start = self._rng.randrange(band.start, band.stop)
            for step in range(len(band)):
                port = band.start + (start - band.start + step) % len(band)
                if port not in self._issued and _bindable(host, port):
                    self._issued.add(port)
                    self._next[band] = band.start + (port + 1 - band.start) % len(band)
                    return port
        raise ProvisioningError(f"no free port left in {band.start}-{band.stop - 1} (this process's share)")

    def _from_kernel(self, host: str) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _ in range(100):
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in self._issued:
                self._issued.add(port)
                return port
        raise ProvisioningError("the kernel handed out only ports this process had handed out already")


_PICKER = PortPicker()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, below the ephemeral range, in this xdist worker's share,
    never handed out before by this process (see :class:`PortPicker`)."""
    return _PICKER.take(host)


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _child_setup(user: str | None) -> Callable[[], None]:
    account = pwd.getpwnam(user) if user else None

    def setup() -> None:
        if account is not None:  # drop privileges first: changing credentials clears PDEATHSIG
            os.setgid(account.pw_gid)
            os.initgroups(account.pw_name, account.pw_gid)
            os.setuid(account.pw_uid)
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return setup


R = TypeVar("R")


def _exclusive(method: Callable[..., R]) -> Callable[..., R]:
    """One lifecycle change at a time per server. A restart runs in a worker thread that goes
    on after the coroutine awaiting it was cancelled (a bounded nemesis step timing out under
    load); without this, the next kill would find the old handle and the next start would
    race the one still running for the same data dir and port."""

    @functools.wraps(method)
    def locked(self: ServerProcess, *args: Any, **kwargs: Any) -> R:
        with self._lifecycle:
            return method(self, *args, **kwargs)

    return locked


class ServerProcess:
    """One server we started ourselves, restartable on the same port and data dir."""

    stallable = True  # the load mode's jitter may stop it for a moment (see :meth:`stall`)

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 30.0,
        stop_signal: signal.Signals = signal.SIGTERM,
        tmpdir: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.user = user
        self.cwd = cwd
        self._ready = ready or (lambda: port_open(self.host, self.port))
        self.ready_timeout = ready_timeout
        self.stop_signal = stop_signal  # e.g. SIGINT: PostgreSQL's fast shutdown
        # The server's own temp dir (TMPDIR), beside its log in its private work dir: a shared
        # /tmp let two workers' MariaDB servers delete each other's temp tables, since a server
        # may clean its temp dir at start. Give the same path to the server's own tmpdir option.
        self.tmpdir = tmpdir if tmpdir is not None else log_path.parent / "tmp"
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.time_to_ready: float | None = None  # seconds from spawn to ready, last start
        self._lifecycle = threading.RLock()  # start() kills a half-started server under it
        self._comm: str | None = None  # the leader's process name, read at spawn
        self._leader: ProcessStamp | None = None  # pid and start time: the group is signalled only while ours
        # Who may stop and continue it: pause / resume, and the load mode's stalls. A stall holds
        # it (and the lifecycle lock) while the server is stopped; a pause waits for it to end.
        self._stopping = threading.Lock()
        self._paused = False  # stopped by pause() until resume(): no stall touches it
        self._stopped_outside_group = False  # a SIGSTOP reached processes that left the group
        self.stopped_in_order: bool | None = None  # how the last stop() ended (None: none yet)
        # The last run's processes were all seen gone when it was reaped: the next spawn need not
        # scan /proc for them again (a scan per start, 2,000 starts in a main job).
        self._last_run_gone = False
        self._recorded: set[ProcessStamp] = set()  # processes outside the group recorded for the sweep

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @_exclusive
    def start(self) -> None:
        self.spawn()
        self.ready()

    @_exclusive
    def spawn(self) -> None:
        """Start the process without waiting for it to be ready. Call it from a thread that
        outlives the server: the parent-death signal fires when the spawning *thread* exits."""
        if self.alive:
            return
        self._clear_previous_group()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = self._environment()
        with open(self.log_path, "ab") as log:
            # Who asked, in the server's own log: a start that races another shows up there.
            log.write(f"{_OWN_LOG_LINE} starting {self.name} ({_caller()})\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_child_setup(self.user),
            )
        self.started_at = time.monotonic()
        self._paused = False  # a new process: nothing stopped it yet
        self._last_run_gone = False
        self._comm = _comm(self._proc.pid)
        self._leader = stamp(self._proc.pid)
        record_process(self._leader)
        _LIVE.add(self)

    def _environment(self) -> dict[str, str]:
        """The server's environment: the given one (or ours) with TMPDIR set to its private
        temp dir, unless the given environment names a TMPDIR itself."""
        env = dict(os.environ if self.env is None else self.env)
        if self.env is None or "TMPDIR" not in self.env:
            self.tmpdir.mkdir(parents=True, exist_ok=True)
            if self.user:
                account = pwd.getpwnam(self.user)
                os.chown(self.tmpdir, account.pw_uid, account.pw_gid)
            env["TMPDIR"] = str(self.tmpdir)
        return env

    def ready(self, check: Callable[[], bool] | None = None) -> None:
        """Wait until the spawned server is ready (by ``check`` instead of its own readiness
        check when given); a server that does not come up is killed."""
        if self.started_at is None:
            raise ProvisioningError(f"{self.name} was never started")
        try:
            self.wait_ready(self.ready_timeout, check)
        except BaseException:
            # Never leave a half-started server behind: not at first start, not at a restart.
            self.kill()
            raise
        self.time_to_ready = time.monotonic() - self.started_at

    def _clear_previous_group(self) -> None:
        """Every process of the last run must be gone before a new server takes the data dir.
        Its leader may have exited on its own (alive is False) while its children still run: a
        postmaster's backends hold its shared memory a moment longer, and a new postmaster
        then refuses to start. Kill what is left and wait; say so plainly if it will not go."""
        if self._proc is None or self._last_run_gone or not self._stragglers():
            return
        self._end_stragglers()
        left = self._stragglers()
        if left:
            raise ProvisioningError(f"{self.name}: processes {left} of its last run would not exit; not starting")

    def _stragglers(self) -> list[int]:
        """Running processes of the last run: its process group and, when the server has a
        working dir, processes named like its leader working inside it. PostgreSQL's backends
        call setsid(), so they leave the group, and outlive a killed postmaster."""
        if self._leader is None:
            return []
        inside = self.cwd.resolve() if self.cwd is not None and self._comm else None
        # Another server of the same binary may work below that dir (a host's Sentinel is a
        # redis-server in a subdir of its data node's): its group is never ours to end.
        # A snapshot: a cluster kills its nodes from several threads, each leaving the set.
        live = tuple(_LIVE)
        others = {s._leader.pid for s in live if s is not self and s._leader is not None and s.alive}
        return [pid for pid in _running(self._leader, inside, self._comm) if _group_of(pid) not in others]

    def _end_stragglers(self, timeout: float = 10.0) -> bool:
        """SIGKILL the last run's processes until none runs; False if some outlived ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = 0.005  # each look scans /proc: back off while a killed process takes its time
        while left := self._stragglers():
            if time.monotonic() >= deadline:
                return False
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
        return True

    def wait_ready(self, timeout: float = 30.0, check: Callable[[], bool] | None = None) -> None:
        """Wait until the server answers, ``timeout`` seconds x the machine's slowness: a loaded
        machine starts a server late, not never (a fixed 30 s killed a cluster's old leader, the
        node holding a suite's evidence, under the census's load)."""
        factor = patience.slowness()
        deadline = time.monotonic() + timeout * factor
        while time.monotonic() < deadline:
            if not self.alive:
                raise ProvisioningError(f"{self.name} exited during start-up: {self.log_tail()}")
            if (check or self._ready)():
                return
            time.sleep(0.05)
        raise ProvisioningError(
            f"{self.name} was not ready after {timeout * factor:.0f}s ({timeout:g}s x slowness {factor:.1f}): "
            f"{self.log_tail()}"
        )

    def _signal_group(self, sig: signal.Signals) -> None:
        # The whole group: servers that fork helpers (postgres) must not leave them behind. Once
        # the leader is reaped its pid may name a stranger's group: signal_group checks first.
        if self._leader is not None:
            signal_group(self._leader, sig)
        if sig == signal.SIGSTOP or (sig == signal.SIGCONT and self._stopped_outside_group):
            # A pause reaches the children that left the group too: PostgreSQL's backends call
            # setsid(), and stopping the postmaster's group alone let every open connection's
            # backend go on answering through a "paused" server. Finding them scans /proc
            # (about 10 ms of CPU), so a continue looks only after a stop did: a resume of a
            # server nothing paused (every node at every cluster restore) was a fifth of a
            # cluster worker's CPU.
            for pid in self._stragglers():
                if sig == signal.SIGSTOP:
                    self._record_outside_group(pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            self._stopped_outside_group = sig == signal.SIGSTOP

    def _record_outside_group(self, pid: int) -> None:
        """Record a process outside the group before stopping it, for the sweep after a crash:
        should this process die meanwhile (a worker SIGKILLed mid-stall), the group's leader dies
        by its parent-death signal but the stopped process never runs again to notice."""
        if self._leader is None or _group_of(pid) == self._leader.pid:
            return
        found = stamp(pid)
        if found is not None and found not in self._recorded:
            self._recorded.add(found)
            record_process(found)

    @_exclusive
    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed. A paused server dies without running
        again: continued first, it ran while the continue scanned /proc (~10 ms) and read what
        its sockets had buffered meanwhile, so a node killed while paused came back holding
        writes it never saw while it ran."""
        self._signal_group(signal.SIGKILL)  # reaches stopped processes too
        self._signal_group(signal.SIGCONT)  # stragglers outside the group must not stay stopped
        self._reap()

    @_exclusive
    def stop(self, grace: float | None = None) -> None:
        """Orderly shutdown (``stop_signal``), escalating to SIGKILL after ``grace`` seconds
        (default: the ``calm-op`` bound, scaled: a loaded machine stops a server slowly, and a
        stop that quietly became a kill loses what an orderly one keeps). Whether the server
        ended on its own is :attr:`stopped_in_order` (False: killed, it wrote what a crash does)."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGCONT)
        self._signal_group(self.stop_signal)
        try:
            self._proc.wait(timeout=patience.bound("calm-op") if grace is None else grace)
            self.stopped_in_order = True
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.stopped_in_order = False
        self._reap()

    @_exclusive
    def restart(self) -> None:
        self.stop()
        self.start()

    @_exclusive
    def restore(self) -> None:
        self.resume()
        if not self.alive:
            self.start()

    def pause(self, within: float = PAUSE_TAKES_EFFECT) -> None:
        """SIGSTOP the server, returning once every thread of its leader is stopped: the
        signal stops a thread only when it next enters the kernel, and a request sent the
        moment kill() returned could still be answered by a "paused" server (a stalled-publish
        test saw its publish answered once). ProvisioningError past ``within`` seconds."""
        with self._stopping:  # waits out a stall: it would continue the server behind our back
            self._signal_group(signal.SIGSTOP)
            self._paused = True
            if self._leader is None:
                return
            deadline = time.monotonic() + within
            while (running := _running_threads(self._leader.pid)) and time.monotonic() < deadline:
                time.sleep(0.001)
            if running:
                raise ProvisioningError(f"{self.name}: SIGSTOP sent, threads {running} still ran after {within:g}s")

    def resume(self) -> None:
        with self._stopping:
            self._signal_group(signal.SIGCONT)
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def stall(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Stop the server for ``seconds`` (or until ``until`` is set) and let it run again: the
        load mode's scheduling jitter. Returns False, having done nothing, when another thread
        is changing its lifecycle (a start, kill or restart), it is paused, or it is not running.
        While stopped it holds the lifecycle lock, so a kill or restart asked meanwhile waits
        until it runs again, and a pause waits too: none finds it stopped by someone else, and
        none has its stop undone by the stall's continue."""
        if not self._lifecycle.acquire(blocking=False):
            return False
        try:
            if not self._stopping.acquire(blocking=False):
                return False
            try:
                if self._paused or not self.alive:
                    return False
                self._signal_group(signal.SIGSTOP)
                try:
                    if until is None:
                        time.sleep(seconds)
                    else:
                        until.wait(seconds)
                finally:
                    self._signal_group(signal.SIGCONT)
                return True
            finally:
                self._stopping.release()
        finally:
            self._lifecycle.release()

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            self._signal_group(signal.SIGKILL)  # stray children of the group, if any
            # The leader's exit is not the group's: a killed postmaster's backends may still hold
            # its shared memory, and a restart then refuses to start ("pre-existing shared memory
            # block is still in use"). Wait until no member of the group is still running.
            self._last_run_gone = self._end_stragglers()
        _LIVE.discard(self)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        text = [line for line in text if not line.startswith(_OWN_LOG_LINE)]  # the server's words only
        return " | ".join(text[-lines:]) or "(empty log)"

    def __repr__(self) -> str:
        return f"ServerProcess({self.name!r}, pid={self.pid}, port={self.port})"


def _caller() -> str:
    """The thread and the first frame outside this module that asked for a start."""
    here = __file__
    outside = [f for f in traceback.extract_stack()[:-2] if f.filename != here]
    where = f"{Path(outside[-1].filename).name}:{outside[-1].lineno} {outside[-1].name}" if outside else "?"
    return f"thread {threading.current_thread().name}, from {where}"


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return None


def _running(leader: ProcessStamp, inside: Path | None, comm: str | None) -> list[int]:
    """Processes that have not exited yet (zombies have: their memory is freed) of the group
    ``leader`` started, or named ``comm`` with their working dir in ``inside``. None of them
    started before the leader did, and a group whose id a stranger now holds is not searched."""
    pgid = leader.pid if group_is_ours(leader) else None
    found = []
    wanted = comm.encode(errors="surrogateescape") if comm is not None else None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                raw = stat.read()
            head, _, tail = raw.rpartition(b")")  # "pid (comm" and the fields after it
            fields = tail.split()
            state, parent, pgrp, started = fields[0], int(fields[1]), int(fields[2]), int(fields[19])
            if state in (b"Z", b"X") or started < leader.started:
                continue
            if pgrp == pgid or (
                inside is not None
                # A process this one started is a server of its own, never another's straggler: one
                # just spawned in the same dir is not yet among the live servers, and a stall that
                # stopped it as a straggler no longer found it to continue (it never came up).
                and parent != os.getpid()
                and head.partition(b"(")[2] == wanted  # the same name /proc/<pid>/comm holds
                # A removed dir reads "<path> (deleted)": still the dir it works in.
                and Path(os.readlink(f"/proc/{entry.name}/cwd").removesuffix(" (deleted)")).is_relative_to(inside)
            ):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


def _running_threads(pid: int) -> list[int]:
    """Threads of ``pid`` not stopped (state T or t) nor exited; none when it is gone."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    running = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat:
                state = stat.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue  # exited meanwhile
        if state not in (b"T", b"t", b"Z", b"X"):
            running.append(int(tid))
    return running


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def stop_all() -> None:
    for server in list(_LIVE):
        server.kill()


def live_servers() -> list[ServerProcess]:
    """The servers this process started and has not stopped (a snapshot)."""
    return list(_LIVE)


atexit.register(stop_all)
