"""Ctrl-C and SIGTERM stop a run in order within seconds, whatever the test is doing.

Python's default SIGINT handler raises KeyboardInterrupt at whatever bytecode runs next: inside
a client library's read (which then drops its connection), inside asyncio's own bookkeeping, or
inside a Hypothesis example whose teardown then waits out heals, drains and reconnects against
servers that are about to be stopped, and may end in an error of its own that replaces the
interrupt. SIGTERM's default kills the process before it removes its work dir.

So while the harness's loop runs, the first signal cancels the running task instead (code
written for asyncio cleans up on cancellation) and the interrupt is raised as soon as that task
has ended, or after :data:`STOP_GRACE` seconds if it swallows the cancellation. Outside the loop
it is raised at once, as Python would, except while the run is starting (the harness's set-up
in pytest_configure, then pytest's session start): raised there, pytest ends without a summary
and without its session's cleanup, so the first signal is held until collection begins and is
raised there (:meth:`Interrupts.release_start`). A second signal always raises at once. After the first
signal, :attr:`Interrupts.received` tells cleanup code to do only what releases resources.

A signal sent to an xdist controller alone (``kill``, a CI runner cancelling a job) reaches none
of its workers. xdist lets a worker busy in a test run on, SIGINTs it after five seconds (lost
where SIGINT is ignored: a CI job, a shell's background job) and SIGKILLs it after ten, and then
nothing of the worker's cleanup runs: its servers die by their parent-death signal, but not the
processes that left their group (PostgreSQL's backends, left stopped for good by a load-mode
stall). So the controller passes its first signal on as :data:`CONTROLLER_STOP`, which a worker
takes as its first SIGTERM. A signal to the whole process group (a terminal's Ctrl-C,
``timeout``) reaches the workers directly too, before or after the controller's: the first of
the two to be handled is the stop and the other is no second signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from prism_testkit.provision.process_identity import ProcessStamp, same_process

# Seconds the interrupted task gets to end after its cancellation before the interrupt is raised
# through it: a task that swallows the cancellation must not keep the run going.
STOP_GRACE = 2.0
# Seconds every coroutine run after an interrupt gets in all (closing clients, purging): what is
# not done by then is left to the servers' stop and the work dir's removal.
CLEANUP_BUDGET = 2.0
# What an interrupted xdist controller sends its workers (see the module's doc).
CONTROLLER_STOP = signal.SIGUSR1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt so pytest stops in order (teardown, summary, exit 2)."""


def interrupt_for(signum: int) -> KeyboardInterrupt:
    if signum == signal.SIGTERM:
        return Terminated("terminated by SIGTERM")
    return KeyboardInterrupt()


class Interrupts:
    """The run's SIGINT and SIGTERM handlers, and what the harness's loop is running now."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.received_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._late: asyncio.TimerHandle | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self.deferring = False  # the run is ending (summary, stopping servers): a signal only changes the exit code
        self.starting = False  # configure and session start: the first signal waits for collection
        self._workers: dict[str, ProcessStamp] = {}  # an xdist controller's workers by id, told of its first signal
        self._stopped_by_controller = False  # a worker's first signal came from its controller

    def install(self) -> None:
        """Take over SIGINT and SIGTERM where Python's defaults hold them (not, e.g., where the
        run was started with SIGINT ignored, as in a shell's background job), and in an xdist
        worker :data:`CONTROLLER_STOP`; on the main thread only."""
        if threading.current_thread() is not threading.main_thread():
            return
        defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        for signum, default in defaults.items():
            if signal.getsignal(signum) is default:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        if os.environ.get("PYTEST_XDIST_WORKER") and signal.getsignal(CONTROLLER_STOP) is signal.SIG_DFL:
            self._previous[CONTROLLER_STOP] = signal.signal(CONTROLLER_STOP, self._on_controller_stop)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) in (self._on_signal, self._on_controller_stop):
                signal.signal(signum, previous)
        self._previous.clear()

    def pass_on_to(self, worker: str, process: ProcessStamp) -> None:
        """xdist worker ``worker`` of this controller runs as ``process``: a signal that stops
        the run stops it too (at once when the run was stopped already)."""
        self._workers[worker] = process
        if self.received is not None:
            _stop_worker(process)

    def forget(self, worker: str) -> None:
        self._workers.pop(worker, None)

    def remaining(self) -> float:
        """Seconds left of the cleanup budget since the first signal."""
        return max(0.0, self.received_at + CLEANUP_BUDGET - time.monotonic())

    def raise_received(self) -> None:
        if self.received is not None:
            raise interrupt_for(self.received)

    def release_start(self) -> None:
        """The run has started (collection begins): a signal held since then is raised now."""
        self.starting = False
        self.raise_received()

    @contextlib.contextmanager
    def watching(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Iterator[None]:
        """While the block runs ``task`` on ``loop``, a signal cancels it rather than raising."""
        self._loop, self._task = loop, task
        try:
            yield
        finally:
            self._loop = self._task = None
            if self._late is not None:
                self._late.cancel()
                self._late = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signal.Signals(signum)
            self.received_at = time.monotonic()
            self._stop_workers()
        elif self._stopped_by_controller:
            self._stopped_by_controller = False  # the same stop, sent to the whole group: not a second signal
            return
        if self.deferring:
            return  # what is left is bounded; raising now would leave servers and the work dir behind
        if self.starting and first:
            return  # held: raised when collection begins, where pytest still ends in order
        loop, task = self._loop, self._task
        if not first or loop is None or task is None or task.done():
            raise interrupt_for(signum)
        task.cancel()
        # From a signal handler only the thread-safe call may touch the loop; it also wakes a
        # loop sleeping in select().
        loop.call_soon_threadsafe(self._arm_deadline, loop, signum)

    def _on_controller_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:  # else the same stop reached this worker directly first
            self._stopped_by_controller = True
            self._on_signal(signal.SIGTERM, frame)

    def _stop_workers(self) -> None:
        for process in list(self._workers.values()):
            _stop_worker(process)

    def _arm_deadline(self, loop: asyncio.AbstractEventLoop, signum: int) -> None:
        if self._loop is loop:
            self._late = loop.call_later(STOP_GRACE, _raise_through_loop, signum)


def _stop_worker(process: ProcessStamp) -> None:
    if same_process(process):  # never a stranger that inherited a finished worker's pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, CONTROLLER_STOP)


def _raise_through_loop(signum: int) -> None:
    # asyncio lets KeyboardInterrupt out of a callback: it ends run_until_complete.
    raise interrupt_for(signum)
