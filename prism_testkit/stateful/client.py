"""The client side of a stateful test: operations recorded in a :class:`History` and bounded in time.

An operation is invoked in the history, run on the test's event loop and bounded: before any
fault an error or a hang is a real failure and propagates; once a fault was injected it is an
unknown outcome (``info``, maybe happened). An operation that outlives its bound is abandoned,
not cancelled (cancelling a driver mid-request can itself hang on a partitioned connection): it
runs on, as a real client's would, and :meth:`RecordedClient.settle_strays` waits for it once
every fault is healed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import prism_testkit.simulation.clock as clocks
from prism_testkit import patience
from prism_testkit.patience import Unsettled
from prism_testkit.stateful.history import DEFINITE_FAILURES, History, OpHandle

T = TypeVar("T")

# The bounds (prism_testkit.patience, scaled by the machine's slowness): "faulted-op" for one
# client operation once a fault was injected (then: info), "calm-op" before any fault (hitting
# it is a failure, not an unknown outcome), "stray-grace" for abandoned operations once
# everything is healed, "recovery" for a recovering action while a healed server comes back.

RunOnLoop = Callable[[Coroutine[Any, Any, Any]], Any]


@dataclass
class Outcome(Generic[T]):
    """What one attempted operation gave: its handle in the history, and a result or an error."""

    handle: OpHandle
    result: T | None = None
    error: BaseException | None = None

    @property
    def completed(self) -> bool:
        return self.error is None


@dataclass
class Stray:
    """An operation abandoned in flight; it may still complete (and take effect) later."""

    task: asyncio.Task[Any]
    on_late: Callable[[Any], None] | None = None


class RecordedClient:
    """Runs client operations for one example: records them in ``history``, runs them with
    ``run_on_loop`` and bounds them by whether ``faulted()`` says a fault was injected."""

    def __init__(self, history: History, run_on_loop: RunOnLoop, faulted: Callable[[], bool]) -> None:
        self.history = history
        self.run_on_loop = run_on_loop
        self.faulted = faulted
        self.strays: list[Stray] = []

    @property
    def bound_name(self) -> str:
        """The :mod:`~prism_testkit.patience` bound an operation gets now: ``faulted-op`` once a
        fault was injected in this example, ``calm-op`` before."""
        return "faulted-op" if self.faulted() else "calm-op"

    @property
    def timeout(self) -> float:
        return patience.bound(self.bound_name)

    async def bounded(self, action: Awaitable[T], on_late: Callable[[Any], None] | None = None) -> T:
        """Await ``action`` within :attr:`timeout`; abandon it as a stray (``on_late`` gets its
        result should it complete while settling) and raise :class:`TimeoutError` otherwise."""
        task = asyncio.ensure_future(action)
        name = self.bound_name
        done, _ = await asyncio.wait({task}, timeout=patience.bound(name))
        if not done:
            self.strays.append(Stray(task, on_late))
            raise TimeoutError(f"no answer within the bound {patience.describe(name)}")
        return task.result()

    def attempt(
        self,
        process: str,
        f: str,
        action: Callable[[], Awaitable[T]],
        *,
        key: str | None = None,
        value: Any = None,
        offset: int | None = None,
        on_late: Callable[[Any], None] | None = None,
    ) -> Outcome[T]:
        """Invoke ``f`` in the history and run ``action`` bounded. The caller completes the op
        (``outcome.handle.ok(...)``) when it completed; fail / info are recorded here."""
        handle = self.history.invoke(process, f, key, value, offset)
        try:
            result: T = self.run_on_loop(self.bounded(action(), on_late))
        except DEFINITE_FAILURES as exc:
            handle.fail(exc)
            return Outcome(handle, None, exc)
        except Exception as exc:
            handle.info(exc)
            if not self.faulted():
                raise  # no fault injected: an error is a bug of the backend or pattern, not a nemesis
            return Outcome(handle, None, exc)
        return Outcome(handle, result)

    async def settle_strays(self) -> None:
        """Wait (then cancel) abandoned operations; hand late results to their ``on_late``."""
        strays, self.strays = self.strays, []
        if not strays:
            return
        tasks = [s.task for s in strays]
        await asyncio.wait(tasks, timeout=patience.bound("stray-grace"))
        for stray in strays:
            if not stray.task.done():
                stray.task.cancel()
        pending = [t for t in tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=patience.bound("stray-grace"))
        for stray in strays:
            task = stray.task
            if not task.done() or task.cancelled():
                continue
            error = task.exception()  # retrieved, so asyncio does not log it as never retrieved
            if error is None and stray.on_late is not None:
                stray.on_late(task.result())

    def recovering(self, action: Callable[[], Awaitable[T]], what: str | None = None) -> T:
        """Run ``action`` once faults are healed, retrying errors until the "recovery" bound
        runs out: a server just resumed or restarted may refuse a few requests before its
        clients reconnect. Running out is :class:`Unsettled` (what was attempted, the last
        error), not the last error itself: the servers never came back, nothing was judged.
        An :class:`Unsettled` of ``action`` (a drain that stopped progressing) ends it at once."""
        name = what or getattr(action, "__name__", "a read after heal").strip("_").replace("_", " ")

        async def go() -> T:
            started = clocks.monotonic()
            while True:
                try:
                    # Bounded only against a hang: a drain may rightly wait out long timeouts.
                    return await asyncio.wait_for(action(), 3 * patience.bound("recovery"))
                except Unsettled:
                    raise
                except Exception as exc:
                    waited = clocks.monotonic() - started
                    if waited > patience.bound("recovery"):
                        seen = f"{type(exc).__name__}: {exc}"
                        raise Unsettled(f"recovery: {name} to succeed once healed", waited, "recovery", seen) from exc
                    await asyncio.sleep(0.2)

        result: T = self.run_on_loop(go())
        return result
