"""Load mode's scheduling jitter: short seeded SIGSTOP bursts of the processes the harness started.

A daemon thread in each process that starts servers. On average every EVERY seconds (waits drawn
from an exponential distribution) it picks one of this process's stallable servers (servers and
cluster nodes: :func:`~prism_testkit.provision.processes.live_servers`) and lazy-filesystem
daemons, stops it for a drawn time up to DUR and continues it. Every draw comes from one seeded
generator (:func:`draws`), so a seed gives the same waits, picks and lengths on every run.

It cooperates with the harness's own faults through the server's own locks
(:meth:`ServerProcess.stall <prism_testkit.provision.processes.ServerProcess.stall>`): a server the
nemesis paused, or one being started, killed or restarted, is skipped, and a pause, kill or
restart asked during a stall waits until the server runs again. A stalled process is continued
on every exit path: the stall's ``finally``, :meth:`Jitter.stop` (which ends a stall at once), and
``atexit``. The fault proxies (also a cluster's link proxies) are threads of the test process
itself and are never stopped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prism_testkit.provision.process_identity import ProcessStamp, same_process, stamp
from prism_testkit.provision.processes import live_servers


@dataclass(frozen=True)
class Draw:
    wait: float  # seconds before this stall
    pick: float  # in [0, 1): which of the candidates, in their sorted order
    seconds: float  # how long it stops, in (0, most]


def draws(seed: int, most: float, every: float) -> Iterator[Draw]:
    """The stalls a seed asks for, in order, whatever the processes they find."""
    rng = random.Random(seed)
    while True:
        yield Draw(rng.expovariate(1 / every), rng.random(), most * (1 - rng.random()))


class Stallable(Protocol):
    @property
    def label(self) -> str: ...

    def stall(self, seconds: float, until: threading.Event) -> bool: ...


@dataclass(frozen=True)
class _Server:
    server: Any  # a ServerProcess

    @property
    def label(self) -> str:
        return f"{self.server.name}[{self.server.pid}]"

    def stall(self, seconds: float, until: threading.Event) -> bool:
        return bool(self.server.stall(seconds, until))


@dataclass(frozen=True)
class _Daemon:
    """A lazy filesystem's daemon: its own process, with no lifecycle lock of its own; a stall
    only delays an unmount or a power cut, which wait on it."""

    name: str
    leader: ProcessStamp

    @property
    def label(self) -> str:
        return f"{self.name}[{self.leader.pid}]"

    def stall(self, seconds: float, until: threading.Event) -> bool:
        if not same_process(self.leader):
            return False
        os.kill(self.leader.pid, signal.SIGSTOP)
        try:
            until.wait(seconds)
        finally:
            if same_process(self.leader):  # a stopped process exits only if killed
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader.pid, signal.SIGCONT)
        return True


def _lazy_daemons() -> list[_Daemon]:
    """The lazy filesystems' daemons this process started (none unless one was mounted)."""
    lazymount = sys.modules.get("prism_testkit.provision.lazymount")
    found = []
    for mount in list(getattr(lazymount, "_LIVE", ())):
        daemon = getattr(mount, "_daemon", None)
        leader = stamp(daemon.pid) if daemon is not None and daemon.poll() is None else None
        if leader is not None:
            found.append(_Daemon(f"lazyfs:{mount.mountpoint.name}", leader))
    return found


def candidates() -> list[Stallable]:
    """What a stall may hit now, in an order that does not depend on pids."""
    servers = [s for s in live_servers() if s.stallable and s.alive]
    servers.sort(key=lambda s: (s.name, s.port, str(s.log_path)))
    found: list[Stallable] = [_Server(s) for s in servers]
    return found + sorted(_lazy_daemons(), key=lambda d: d.name)


@dataclass
class JitterStats:
    stalls: int = 0
    skipped: int = 0  # the drawn process was paused, mid lifecycle change, or gone
    seconds: float = 0.0  # stopped, in all
    hit: set[str] = field(default_factory=set)  # labels of the processes stalled
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stalls": self.stalls,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "hit": sorted(self.hit),
            "errors": self.errors[-3:],
        }


class Jitter:
    """The jitter thread of one process."""

    def __init__(
        self,
        seed: int,
        most: float,
        every: float,
        targets: Callable[[], list[Stallable]] = candidates,
    ) -> None:
        self.seed = seed
        self.most = most
        self.every = every
        self.targets = targets
        self.stats = JitterStats()
        # the latest stalls (label, start, end; time.monotonic_ns): a failing example's timeline shows those in it
        self.recent: deque[tuple[str, int, int]] = deque(maxlen=RECENT_STALLS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Jitter:
        global _running
        _running = self
        self._thread = threading.Thread(target=self._run, name="prism-load-jitter", daemon=True)
        atexit.register(self.stop)  # a daemon thread is frozen at exit: never mid-stall
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread; a stall under way ends now, its process continued. Idempotent."""
        global _running
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        atexit.unregister(self.stop)
        if _running is self:
            _running = None

    def _run(self) -> None:
        for draw in draws(self.seed, self.most, self.every):
            if self._stop.wait(draw.wait):
                return
            try:
                found = self.targets()
                if not found:
                    continue
                target = found[int(draw.pick * len(found))]
                started = time.monotonic_ns()
                if target.stall(draw.seconds, self._stop):
                    ended = time.monotonic_ns()
                    self.stats.stalls += 1
                    self.stats.seconds += (ended - started) / 1e9
                    self.stats.hit.add(target.label)
                    self.recent.append((target.label, started, ended))
                else:
                    self.stats.skipped += 1
            except Exception as exc:  # a process gone meanwhile: keep jittering, say so at the end
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")


RECENT_STALLS = 1000
_running: Jitter | None = None  # this process's jitter, while it runs


def stalls_between(start_ns: int, end_ns: int) -> list[tuple[str, int, int]]:
    """The stalls of this process's jitter that overlapped ``start_ns``..``end_ns``
    (``time.monotonic_ns``), each as (process label, start, end); none without load mode."""
    jitter = _running
    if jitter is None:
        return []
    return [stall for stall in list(jitter.recent) if stall[1] <= end_ns and stall[2] >= start_ns]


def summary(stats: list[dict[str, Any]]) -> str:
    """One line for the terminal summary, from one or more processes' :meth:`JitterStats.as_dict`."""
    stalls = sum(int(s.get("stalls", 0)) for s in stats)
    skipped = sum(int(s.get("skipped", 0)) for s in stats)
    seconds = sum(float(s.get("seconds", 0.0)) for s in stats)
    hit = sum(len(s.get("hit", ())) for s in stats)
    errors = [e for s in stats for e in s.get("errors", ())]
    where = f" in {len(stats)} processes" if len(stats) > 1 else ""
    line = (
        f"prism load: the jitter stalled {stalls} times{where}, {hit} processes hit, {seconds:.1f}s stopped in all; "
        f"{skipped} skipped (paused by the nemesis, mid start, kill or restart, or gone)"
    )
    if errors:
        line += f"; {len(errors)} errors, the last: {errors[-1]}"
    return line
