"""One lifecycle for every long-running pattern process (the pattern SDK of RFC-025, issue #40).

A running pattern (a producer with its flush loop, a consumer, a relay, an applier...) goes
through the same states, whatever it does::

    NEW --start()--> RUNNING --stop(within=)--> STOPPING --> STOPPED
      \\                                                      ^
       `--start() raised--> FAILED --stop()-----------------'

* **Initialize from validated slots**: :func:`validated_slots` checks that every backend handed
  to a pattern implements the interfaces its slot needs *before* anything runs, and raises
  :class:`SlotMismatch` naming the slot, what it needs and what it got (fail fast: a pattern
  never starts half configured).
* **Start**: :meth:`PatternProcess.start` runs the pattern's ``_on_start`` once; a second start
  raises :class:`AlreadyStarted`, a start after stop :class:`AlreadyStopped` (a restarted
  pattern is a new instance over the same state).
* **Health**: :meth:`PatternProcess.health` may be called in any state; only a running pattern
  whose own check passes is healthy.
* **Graceful shutdown within a bound, then a forced stop**: :meth:`PatternProcess.stop` refuses
  new work at once, runs the pattern's ``_drain`` (finish or hand back in-flight work) for at
  most ``within`` seconds, then ``_force_stop`` (cancel what is left, which the pattern reports)
  and cancels every background task the pattern spawned through :meth:`PatternProcess.spawn`.
  It returns a :class:`StopReport`: what was drained, what was left, whether it was forced.
  A second stop raises :class:`AlreadyStopped` (a concurrent one :class:`AlreadyStopping`).
* **Use before start / after stop**: pattern operations call :meth:`PatternProcess.ensure_running`,
  which raises :class:`NotStarted` or :class:`PatternStopped`.

Bounds are read on the event loop's clock (``asyncio.timeout``), so a simulated loop's virtual
time drives them like the rest of a pattern; elapsed times use the clock seam.

Implementing one::

    class Poller(PatternProcess):
        async def _on_start(self) -> None:
            self.spawn(self._loop(), name="poll")

        async def _drain(self) -> None:
            await self._queue.join()      # finish what was accepted

        async def _force_stop(self) -> list[str]:
            return [describe(item) for item in self._pending]   # what the stop leaves behind

:func:`run_until` is the SDK's ``lifecycle.Run``: start, serve until an event is set, stop
within the bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import prism_testkit.simulation.clock as clocks
from prism_testkit.errors import ConfigurationError, PrismError

__all__ = [
    "DEFAULT_FORCE_TIMEOUT",
    "DEFAULT_GRACEFUL_TIMEOUT",
    "AlreadyStarted",
    "AlreadyStopped",
    "AlreadyStopping",
    "BatchProcess",
    "Health",
    "HealthStatus",
    "Lifecycle",
    "LifecycleError",
    "LifecycleState",
    "NotStarted",
    "PatternProcess",
    "PatternStopped",
    "SlotMismatch",
    "StopReport",
    "run_until",
    "validated_slots",
]

log = logging.getLogger(__name__)

# RFC-025's defaults: 30 s to drain, then a hard deadline; ours is the extra time a forced
# stop waits for cancelled tasks to unwind.
DEFAULT_GRACEFUL_TIMEOUT = 30.0
DEFAULT_FORCE_TIMEOUT = 5.0


# --- errors --------------------------------------------------------------------------------


class LifecycleError(PrismError):
    """A lifecycle method called in a state that does not allow it."""

    def __init__(self, pattern: str, state: LifecycleState, detail: str) -> None:
        super().__init__(f"{pattern}: {detail} (state: {state.value})")
        self.pattern = pattern
        self.state = state


class NotStarted(LifecycleError):
    """The pattern was used (or stopped) before :meth:`PatternProcess.start`."""


class AlreadyStarted(LifecycleError):
    """:meth:`PatternProcess.start` called on a pattern that is running (or stopping)."""


class AlreadyStopping(LifecycleError):
    """:meth:`PatternProcess.stop` called while another stop is still draining."""


class AlreadyStopped(LifecycleError):
    """The pattern was stopped: a second stop, or a start after stop (make a new instance)."""


class PatternStopped(LifecycleError):
    """New work handed to a pattern that is stopping or stopped."""


class SlotMismatch(ConfigurationError):
    """A backend given to a slot does not implement what the slot needs (or a required slot is
    empty). Raised before the pattern runs."""

    def __init__(self, pattern: str, slot: str, expected: str, got: object) -> None:
        what = "nothing" if got is None else type(got).__name__
        super().__init__(f"{pattern}: slot {slot!r} needs {expected}, got {what}")
        self.pattern = pattern
        self.slot = slot
        self.expected = expected


# --- values --------------------------------------------------------------------------------


class LifecycleState(StrEnum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # start() raised; stop() still releases what was made


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # running, but something needs attention (failures, backlog)
    UNHEALTHY = "unhealthy"  # not running, or a backend check failed


@dataclass(frozen=True)
class Health:
    status: HealthStatus
    state: LifecycleState
    detail: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.status is HealthStatus.HEALTHY


@dataclass(frozen=True)
class StopReport:
    """What a stop did. ``left`` describes the in-flight work the stop gave up on (the pattern's
    own words: message ids, batch sizes); ``abandoned`` names background tasks that did not end
    even after being cancelled within the force bound."""

    drained: bool  # the graceful drain finished within the bound, without an error
    forced: bool  # the bound ran out (or the drain raised) and the forced stop ran
    elapsed: float
    left: tuple[str, ...] = ()
    abandoned: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.drained and not self.left and not self.abandoned and not self.errors

    @property
    def exit_code(self) -> int:
        """RFC-025's exit codes: 0 clean, 1 errors, 2 forced by the timeout."""
        if self.forced:
            return 2
        return 0 if self.clean else 1


# --- the protocol and the base class -------------------------------------------------------


@runtime_checkable
class Lifecycle(Protocol):
    """What every long-running pattern offers."""

    @property
    def state(self) -> LifecycleState: ...
    async def start(self) -> None: ...
    async def health(self) -> Health: ...
    async def stop(self, within: float | None = None) -> StopReport: ...


class PatternProcess:
    """Base class implementing the state machine; subclasses fill in the hooks.

    Hooks (all optional): ``_on_start`` (raise to fail the start), ``_check_health`` (return a
    :class:`Health` for a running pattern), ``_drain`` (finish in-flight work; bounded by
    ``within``), ``_force_stop`` (give up on what is left and describe it), ``_on_stopped``
    (release resources; runs after both, also after a failed start).
    """

    pattern_name: ClassVar[str] = "pattern"

    def __init__(
        self, *, graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT, force_timeout: float = DEFAULT_FORCE_TIMEOUT
    ) -> None:
        if graceful_timeout < 0 or force_timeout < 0:
            raise ValueError("graceful_timeout and force_timeout must be >= 0")
        self.graceful_timeout = graceful_timeout
        self.force_timeout = force_timeout
        self._state = LifecycleState.NEW
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_report: StopReport | None = None
        self._stop_requested = asyncio.Event()  # set when a stop begins: loops wait on it

    # --- state ----------------------------------------------------------------------------

    @property
    def state(self) -> LifecycleState:
        return self._state

    @property
    def running(self) -> bool:
        return self._state is LifecycleState.RUNNING

    @property
    def stop_requested(self) -> asyncio.Event:
        """Set as soon as a stop begins (before the drain): background loops wait on it."""
        return self._stop_requested

    @property
    def stop_report(self) -> StopReport | None:
        """The report of the stop that ended this pattern, once stopped."""
        return self._stop_report

    def _error(self, kind: type[LifecycleError], detail: str) -> LifecycleError:
        return kind(self.pattern_name, self._state, detail)

    def ensure_running(self, action: str = "use") -> None:
        """Raise unless the pattern accepts new work: :class:`NotStarted` before start,
        :class:`PatternStopped` once a stop began (or the start failed)."""
        state = self._state
        if state is LifecycleState.RUNNING:
            return
        if state is LifecycleState.NEW:
            raise self._error(NotStarted, f"cannot {action} before start()")
        raise self._error(PatternStopped, f"cannot {action}: the pattern is {state.value}")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._state is not LifecycleState.STOPPED:
            await self.stop()

    # --- transitions ----------------------------------------------------------------------

    async def start(self) -> None:
        state = self._state
        if state in (LifecycleState.RUNNING, LifecycleState.STOPPING):
            raise self._error(AlreadyStarted, "start() called twice")
        if state in (LifecycleState.STOPPED, LifecycleState.FAILED):
            raise self._error(AlreadyStopped, "cannot start again after stop (make a new instance over the same state)")
        self._state = LifecycleState.RUNNING
        try:
            await self._on_start()
        except BaseException:
            self._state = LifecycleState.FAILED
            await self._cancel_tasks(self.force_timeout)
            raise

    async def health(self) -> Health:
        if self._state is not LifecycleState.RUNNING:
            return Health(HealthStatus.UNHEALTHY, self._state, f"{self.pattern_name} is {self._state.value}")
        try:
            return await self._check_health()
        except Exception as exc:
            return Health(HealthStatus.UNHEALTHY, self._state, f"health check failed: {type(exc).__name__}: {exc}")

    async def stop(self, within: float | None = None) -> StopReport:
        """Refuse new work, drain for at most ``within`` seconds (default: the pattern's
        ``graceful_timeout``), then force-stop what is left. Returns what happened."""
        state = self._state
        if state is LifecycleState.NEW:
            raise self._error(NotStarted, "stop() before start()")
        if state is LifecycleState.STOPPING:
            raise self._error(AlreadyStopping, "stop() called while a stop is draining")
        if state is LifecycleState.STOPPED:
            raise self._error(AlreadyStopped, "stop() called twice")
        bound = self.graceful_timeout if within is None else within
        if bound < 0:
            raise ValueError(f"within must be >= 0, got {bound}")
        began = clocks.monotonic()
        failed_start = state is LifecycleState.FAILED
        self._state = LifecycleState.STOPPING
        self._stop_requested.set()
        errors: list[str] = []
        drained = False
        if not failed_start:
            try:
                async with asyncio.timeout(bound):
                    await self._drain()
                drained = True
            except TimeoutError:
                log.warning("%s: drain did not finish within %.3g s: forcing the stop", self.pattern_name, bound)
            except Exception as exc:
                errors.append(f"drain: {type(exc).__name__}: {exc}")
                log.warning("%s: drain failed: forcing the stop", self.pattern_name, exc_info=True)
        left: list[str] = []
        forced = not drained
        if forced:
            try:
                left = list(await self._force_stop())
            except Exception as exc:
                errors.append(f"force stop: {type(exc).__name__}: {exc}")
        abandoned = await self._cancel_tasks(self.force_timeout)
        try:
            await self._on_stopped()
        except Exception as exc:
            errors.append(f"release: {type(exc).__name__}: {exc}")
        self._state = LifecycleState.STOPPED
        self._stop_report = StopReport(
            drained=drained and not failed_start,
            forced=forced and not failed_start,
            elapsed=clocks.monotonic() - began,
            left=tuple(left),
            abandoned=tuple(abandoned),
            errors=tuple(errors),
        )
        return self._stop_report

    # --- background tasks -----------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; the stop cancels it if it is still running after the
        drain. An exception it raises is logged (and counted by :meth:`task_failures`)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.pattern_name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task %s failed", self.pattern_name, task.get_name(), exc_info=task.exception())

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    async def _cancel_tasks(self, within: float) -> list[str]:
        tasks = [t for t in self._tasks if not t.done()]
        if not tasks:
            return []
        for task in tasks:
            task.cancel()
        _done, pending = await asyncio.wait(tasks, timeout=within)
        return sorted(t.get_name() for t in pending)

    # --- hooks ----------------------------------------------------------------------------

    async def _on_start(self) -> None:
        return None

    async def _check_health(self) -> Health:
        return Health(HealthStatus.HEALTHY, self._state)

    async def _drain(self) -> None:
        """Finish in-flight work. Runs under the stop's bound: cancelled when it runs out. The
        default waits for the spawned tasks (which should end once :attr:`stop_requested` is set)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _force_stop(self) -> Sequence[str]:
        """Give up on what the drain did not finish; describe it for the report."""
        return ()

    async def _on_stopped(self) -> None:
        return None


# --- batch loops ---------------------------------------------------------------------------


async def run_batches(
    stop: asyncio.Event,
    batch: Callable[[], Awaitable[bool]],
    *,
    wait: float,
    on_error: Callable[[Exception], None],
    finish: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """The loop of every long-running pattern piece: run ``batch`` until ``stop`` is set.

    ``batch`` returns True when more work is ready at once; otherwise, or when it raised (given
    to ``on_error``, which logs or counts it: the batch is retried, never dropped), the loop
    waits ``wait`` seconds or until ``stop``, whichever comes first. The stop is checked only
    between batches, so a batch in hand always finishes. ``finish`` (a checkpoint, a lease
    given back) runs however the loop ends; its own error is suppressed, so it never replaces
    what ended the loop (a cancel) and the next instance redoes what it could not."""
    try:
        while not stop.is_set():
            busy = False
            try:
                busy = await batch()
            except Exception as exc:
                on_error(exc)
            if not busy and not stop.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
    finally:
        if finish is not None:
            with suppress(Exception):
                await finish()


def logged(logger: logging.Logger, message: str, *args: object) -> Callable[[Exception], None]:
    """An ``on_error`` for :func:`run_batches`: log ``message`` with the failed batch's traceback."""

    def log_failure(exc: Exception) -> None:
        logger.error(message, *args, exc_info=exc)

    return log_failure


class BatchProcess(PatternProcess):
    """A pattern process that works in batches, one after another, until stopped: the outbox
    relay, the WAL applier, the tiered migrator, the CDC connector, a projection.

    Subclasses give ``_step`` (one batch; True when more work is ready at once), ``_probe`` (one
    cheap call to the backend the process depends on; it raises or hangs when the backend is
    gone), ``_in_flight`` (what a batch in hand holds, in the pattern's words) and optionally
    ``_prepare`` (before the loop) and ``_finish`` (after a graceful end: a checkpoint, a lease
    given back).

    * **start** runs ``_prepare`` and the loop in the background.
    * **stop(within=)** lets the batch in hand finish (the loop checks the stop only between
      batches), then runs ``_finish``: everything taken is either done and recorded, or, when the
      bound runs out, the loop is cancelled and the report lists what the batch in hand left
      (recorded as not done, so the next instance over the same state takes it again).
    * **health** is unhealthy when the loop is not running or ``_probe`` fails or does not
      answer within ``health_timeout``; degraded while batches keep failing.
    """

    def __init__(
        self,
        *,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        force_timeout: float = DEFAULT_FORCE_TIMEOUT,
        health_timeout: float = 5.0,
        idle_wait: float = 0.05,
    ) -> None:
        super().__init__(graceful_timeout=graceful_timeout, force_timeout=force_timeout)
        if health_timeout <= 0 or idle_wait <= 0:
            raise ValueError("health_timeout and idle_wait must be > 0")
        self.health_timeout = health_timeout
        self.idle_wait = idle_wait
        self.batch_failures = 0  # batches that raised, in a row
        self.last_error = ""
        self._loop_task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Future[None]] = set()  # health probes given up on, still unwinding

    # --- hooks ----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        return None

    async def _step(self) -> bool:
        raise NotImplementedError

    async def _finish(self) -> None:
        return None

    async def _probe(self) -> None:
        raise NotImplementedError

    def _in_flight(self) -> Sequence[str]:
        return ()

    # --- the loop -------------------------------------------------------------------------

    async def _on_start(self) -> None:
        await self._prepare()
        self._loop_task = self.spawn(self._serve(), name="loop")

    async def _serve(self) -> None:
        await run_batches(self.stop_requested, self._counted_step, wait=self.idle_wait, on_error=self._failed)
        await self._finish()

    async def _counted_step(self) -> bool:
        busy = await self._step()
        self.batch_failures, self.last_error = 0, ""
        return busy

    def _failed(self, exc: Exception) -> None:
        self.batch_failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("%s: a batch failed (%s); retrying", self.pattern_name, self.last_error)

    async def _drain(self) -> None:
        task = self._loop_task
        if task is None:
            return
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            raise PrismError(f"{self.pattern_name}: the loop ended with {type(error).__name__}: {error}")

    async def _force_stop(self) -> Sequence[str]:
        task = self._loop_task
        if task is not None and not task.done():
            # The batch's own cleanup (recording what it finished) gets half the force bound;
            # cleanup that hangs too (the backend is gone) is cancelled in its turn.
            for _ in range(2):
                task.cancel()
                done, _pending = await asyncio.wait([task], timeout=self.force_timeout / 2)
                if done:
                    break
        return list(self._in_flight())

    def _probe_ended(self, probe: asyncio.Future[None]) -> None:
        self._probes.discard(probe)
        if not probe.cancelled():
            probe.exception()  # retrieved: an abandoned probe's error is not worth a warning

    async def _check_health(self) -> Health:
        if self._loop_task is None or self._loop_task.done():
            return Health(HealthStatus.UNHEALTHY, self._state, "the loop is not running")
        # The probe runs as a task of its own and is waited for, not cancelled and awaited: a
        # driver may hold a cancelled call in its cleanup (a connection reset over a network
        # that answers nothing), and health() must answer within its bound all the same.
        probe = asyncio.ensure_future(self._probe())
        done, _pending = await asyncio.wait([probe], timeout=self.health_timeout)
        if not done:
            probe.cancel()
            self._probes.add(probe)
            probe.add_done_callback(self._probe_ended)
            return Health(
                HealthStatus.UNHEALTHY, self._state, f"the backend did not answer within {self.health_timeout:g} s"
            )
        error = probe.exception()
        if error is not None:
            return Health(HealthStatus.UNHEALTHY, self._state, f"the backend failed: {type(error).__name__}: {error}")
        if self.batch_failures:
            return Health(
                HealthStatus.DEGRADED, self._state, f"{self.batch_failures} batch(es) failed: {self.last_error}"
            )
        return Health(HealthStatus.HEALTHY, self._state)


# --- slots ---------------------------------------------------------------------------------


def validated_slots(
    pattern: str,
    given: Mapping[str, object | None],
    required: Mapping[str, Sequence[type]],
    optional: Mapping[str, Sequence[type]] | None = None,
) -> dict[str, object]:
    """Check backends against slot requirements before a pattern is built.

    ``required`` / ``optional`` map each slot to the interfaces (runtime-checkable protocols)
    any one of which fills it. A required slot that is empty or holds a backend implementing
    none of them, an optional one given something that does not fit, or a slot name the
    pattern does not have, raises :class:`SlotMismatch`. Returns the filled slots.
    """
    optional = optional or {}
    unknown = sorted(set(given) - set(required) - set(optional))
    if unknown:
        known = ", ".join(sorted({*required, *optional}))
        raise SlotMismatch(pattern, unknown[0], f"a slot name among {known}", given[unknown[0]])
    filled: dict[str, object] = {}
    for slot, kinds in [*required.items(), *optional.items()]:
        backend = given.get(slot)
        expected = " or ".join(k.__name__ for k in kinds)
        if backend is None:
            if slot in required:
                raise SlotMismatch(pattern, slot, expected, None)
            continue
        if not any(isinstance(backend, kind) for kind in kinds):
            raise SlotMismatch(pattern, slot, expected, backend)
        filled[slot] = backend
    return filled


# --- running -------------------------------------------------------------------------------


async def run_until(
    pattern: Lifecycle, stop: asyncio.Event | Awaitable[object], *, within: float | None = None
) -> StopReport:
    """The SDK's ``lifecycle.Run``: start ``pattern``, serve until ``stop`` is set (or the
    awaitable completes), then stop it within ``within`` seconds. A cancelled run still stops."""
    await pattern.start()
    try:
        if isinstance(stop, asyncio.Event):
            await stop.wait()
        else:
            await stop
    finally:
        report = await asyncio.shield(pattern.stop(within))
    return report
