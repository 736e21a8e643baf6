"""Unit tests of patterns.lifecycle: the state machine, the bounded drain and the forced stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Literal

import pytest

from prism_testkit.interfaces import KeyValue, PubSub, Queue
from prism_testkit.pattern_sdk.lifecycle import (
    AlreadyStarted,
    AlreadyStopped,
    AlreadyStopping,
    BatchProcess,
    HealthStatus,
    Lifecycle,
    LifecycleState,
    NotStarted,
    PatternProcess,
    PatternStopped,
    SlotMismatch,
    logged,
    run_batches,
    run_until,
    validated_slots,
)


class Worker(PatternProcess):
    """Takes items and finishes each once ``release`` is set (a drain waits for that)."""

    pattern_name = "worker"

    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)
        self.release = asyncio.Event()
        self.pending: list[str] = []
        self.done: list[str] = []
        self.stopped_calls = 0
        self.started = asyncio.Event()

    async def _on_start(self) -> None:
        self.started.set()

    def submit(self, item: str) -> None:
        self.ensure_running("submit")
        self.pending.append(item)

    async def _drain(self) -> None:
        await self.release.wait()
        self.done.extend(self.pending)
        self.pending.clear()

    async def _force_stop(self) -> Sequence[str]:
        left, self.pending = self.pending, []
        return left

    async def _on_stopped(self) -> None:
        self.stopped_calls += 1


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_states_and_misuse() -> None:
    async def main() -> None:
        w = Worker()
        assert isinstance(w, Lifecycle)
        assert w.state is LifecycleState.NEW
        with pytest.raises(NotStarted):
            w.submit("a")
        with pytest.raises(NotStarted):
            await w.stop()
        assert (await w.health()).status is HealthStatus.UNHEALTHY
        await w.start()
        assert (await w.health()).healthy
        with pytest.raises(AlreadyStarted):
            await w.start()
        w.submit("a")
        w.release.set()
        report = await w.stop(within=10)
        assert report.drained
        assert not report.forced
        assert report.clean
        assert report.exit_code == 0
        assert w.done == ["a"]
        assert w.stopped_calls == 1
        with pytest.raises(AlreadyStopped):
            await w.stop()
        with pytest.raises(AlreadyStopped):
            await w.start()
        with pytest.raises(PatternStopped):
            w.submit("b")
        assert (await w.health()).status is HealthStatus.UNHEALTHY

    run(main())


def test_drain_past_its_bound_is_forced_and_reports_what_it_left() -> None:
    async def main() -> None:
        w = Worker()
        await w.start()
        w.submit("x")
        w.submit("y")
        loop = asyncio.get_running_loop()
        began = loop.time()
        report = await w.stop(within=0.05)  # release never set: the drain cannot finish
        assert loop.time() - began >= 0.05
        assert report.forced
        assert not report.drained
        assert report.exit_code == 2
        assert report.left == ("x", "y")
        assert w.done == []
        assert w.state is LifecycleState.STOPPED
        assert w.stopped_calls == 1

    run(main())


def test_concurrent_stop_is_refused_while_draining() -> None:
    async def main() -> None:
        w = Worker()
        await w.start()
        first = asyncio.create_task(w.stop(within=10))
        await w.stop_requested.wait()
        assert w.state is LifecycleState.STOPPING
        assert w.stop_requested.is_set()
        with pytest.raises(AlreadyStopping):
            await w.stop()
        w.release.set()
        assert (await first).drained

    run(main())


def test_spawned_tasks_are_cancelled_by_the_stop() -> None:
    async def main() -> None:
        class Looper(PatternProcess):
            async def _on_start(self) -> None:
                self.task = self.spawn(asyncio.Event().wait(), name="forever")

            async def _drain(self) -> None:
                return None  # the loop ignores stop_requested: only the cancel ends it

        p = Looper()
        await p.start()
        report = await p.stop(within=1)
        assert p.task.cancelled()
        assert report.abandoned == ()
        assert p.tasks == frozenset()

    run(main())


def test_failed_start_can_be_stopped_but_not_restarted() -> None:
    async def main() -> None:
        class Broken(PatternProcess):
            async def _on_start(self) -> None:
                raise RuntimeError("backend down")

        p = Broken()
        with pytest.raises(RuntimeError):
            await p.start()
        failed = p.state  # read apart: mypy would keep p.state narrowed past stop()
        assert failed is LifecycleState.FAILED
        with pytest.raises(PatternStopped):
            p.ensure_running()
        with pytest.raises(AlreadyStopped):
            await p.start()
        report = await p.stop()
        assert not report.forced
        assert p.state is LifecycleState.STOPPED

    run(main())


def test_run_until_stops_when_the_event_is_set() -> None:
    async def main() -> None:
        w = Worker()
        w.release.set()
        stop = asyncio.Event()
        task = asyncio.create_task(run_until(w, stop, within=5))
        await w.started.wait()
        w.submit("q")
        stop.set()
        report = await task
        assert report.drained
        assert w.done == ["q"]

    run(main())


class _KV:
    """A key-value store's shape only: its methods are never called."""

    async def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        raise NotImplementedError

    async def delete(self, key: str) -> bool:
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        raise NotImplementedError

    def scan(self, prefix: str) -> object:
        raise NotImplementedError

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        raise NotImplementedError


def test_validated_slots() -> None:
    kv = _KV()
    slots = validated_slots("p", {"state": kv}, {"state": (KeyValue,)})
    assert slots == {"state": kv}
    with pytest.raises(SlotMismatch, match="slot 'sink' needs PubSub or Queue, got _KV"):
        validated_slots("p", {"sink": kv}, {"sink": (PubSub, Queue)})
    with pytest.raises(SlotMismatch, match="got nothing"):
        validated_slots("p", {}, {"sink": (PubSub, Queue)})
    with pytest.raises(SlotMismatch, match="slot 'bogus'"):
        validated_slots("p", {"bogus": kv}, {"state": (KeyValue,)})
    assert validated_slots("p", {"state": None}, {}, {"state": (KeyValue,)}) == {}


class Flaky(BatchProcess):
    """A batch process whose batches fail while ``failing`` holds; each batch waits for
    ``go`` and reports its end on ``ended``, so a test steps it batch by batch."""

    pattern_name = "flaky"

    def __init__(self) -> None:
        # how soon the loop takes a batch after a failed one; each batch then waits for ``go``
        super().__init__(idle_wait=0.01)
        self.failing = True
        self.go = asyncio.Queue[None]()
        self.ended = asyncio.Queue[bool]()

    async def _step(self) -> bool:
        await self.go.get()
        failed = self.failing
        self.ended.put_nowait(not failed)
        if failed:
            raise RuntimeError("the backend refused the batch")
        return True  # more work at once: the loop takes the next batch without waiting

    async def _probe(self) -> None:
        return None


def test_a_batch_process_is_healthy_again_after_a_batch_succeeds() -> None:
    """Issue 53: a process whose batch failed once must not stay degraded after the next batch
    succeeds (a seeded bug that kept the failure count was caught only 3 runs in 4, by a test
    about something else)."""

    async def scenario() -> None:
        process = Flaky()
        await process.start()
        process.go.put_nowait(None)
        assert await process.ended.get() is False  # the loop recorded the failure as the batch raised
        degraded = await process.health()
        assert degraded.status is HealthStatus.DEGRADED, degraded
        assert "the backend refused the batch" in degraded.detail
        process.failing = False
        process.go.put_nowait(None)
        assert await process.ended.get() is True  # ... and the success as the batch returned
        healthy = await process.health()
        assert healthy.status is HealthStatus.HEALTHY, healthy
        process.go.put_nowait(None)  # the batch the loop is waiting in ends, so the stop drains
        await process.stop(within=60.0)

    run(scenario())


class CountedStop(asyncio.Event):
    """A stop whose waits are counted and answered at once: which batches the loop waited
    after, without a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def wait(self) -> Literal[True]:
        self.waits += 1
        return True


def test_run_batches_retries_a_failed_batch_after_a_wait_and_never_waits_while_busy() -> None:
    stop = CountedStop()
    script: Iterator[bool | Exception] = iter([True, True, ValueError("refused"), False, True])
    failures: list[Exception] = []

    async def batch() -> bool:
        step = next(script, None)
        if step is None:
            stop.set()
            return True
        if isinstance(step, Exception):
            raise step
        return step

    asyncio.run(run_batches(stop, batch, wait=3600, on_error=failures.append))
    assert [str(e) for e in failures] == ["refused"]
    assert stop.waits == 2  # after the failure and after the idle batch, never after a busy one
    assert next(script, None) is None  # every batch ran, the failed one retried by the next


def test_run_batches_checks_the_stop_only_between_batches() -> None:
    stop = CountedStop()
    ran: list[str] = []

    async def batch() -> bool:
        stop.set()  # asked to stop mid-batch: this batch still finishes
        await asyncio.sleep(0)
        ran.append("finished")
        return False

    asyncio.run(run_batches(stop, batch, wait=3600, on_error=lambda exc: ran.append(repr(exc))))
    assert ran == ["finished"]
    assert stop.waits == 0  # stopping: no idle wait after the last batch


def test_run_batches_finishes_however_the_loop_ends_and_its_error_never_replaces_the_end() -> None:
    finished: list[str] = []

    async def finish() -> None:
        finished.append("finish")
        raise ConnectionError("the checkpoint's store is gone")  # suppressed: the next instance redoes it

    async def stopped() -> None:
        stop = CountedStop()
        stop.set()
        await run_batches(stop, lambda: asyncio.sleep(0, True), wait=3600, on_error=print, finish=finish)

    async def cancelled() -> None:
        started = asyncio.Event()

        async def batch() -> bool:
            started.set()
            await asyncio.Event().wait()  # a batch in hand when the task is cancelled
            return True

        task = asyncio.create_task(run_batches(asyncio.Event(), batch, wait=3600, on_error=print, finish=finish))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stopped())
    asyncio.run(cancelled())
    assert finished == ["finish", "finish"]


def test_logged_logs_the_failed_batch_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise ValueError("refused")
    except ValueError as exc:
        error = exc
    logged(logging.getLogger("prism.test"), "relay %s failed; retrying", "r1")(error)
    (record,) = caplog.records
    assert record.getMessage() == "relay r1 failed; retrying"
    assert record.exc_info is not None
    assert record.exc_info[1] is error
