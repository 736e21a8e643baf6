"""The simulated event loop: virtual time and a seeded order of ready callbacks.

Virtual time starts at 0 and moves only when nothing is ready: the loop then jumps to its
next timer instead of waiting for it. Which ready callback runs next is drawn from a seeded
random generator (as madsim and FoundationDB's simulator shuffle their run queues), so one
seed gives one interleaving. File descriptors are still polled, without waiting: the loop's
own wake-up pipe is one, and an in-process backend needs no other.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, TypeVar

T = TypeVar("T")


class SimulationDeadlock(RuntimeError):
    """Nothing is ready and no timer is due: the simulated run would wait forever."""


class ThreadInSimulation(RuntimeError):
    """Code started a thread (or used an executor) during a simulated example."""


class _ShuffledReady(deque[Any]):
    """The loop's ready queue; ``popleft`` hands out a seeded choice among the ready callbacks."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def popleft(self) -> Any:
        count = len(self)
        if count > 1:
            pick = self.rng.randrange(count)
            if pick:
                self.rotate(-pick)
                item = super().popleft()
                self.rotate(pick)
                return item
        return super().popleft()


class _VirtualSelector(selectors.BaseSelector):
    """Polls real file descriptors without blocking; a wait is a jump of virtual time."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        self._real = selectors.DefaultSelector()
        self._advance = advance

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise SimulationDeadlock("nothing is ready and no timer is due: the simulated run would wait forever")
        self._advance(timeout)
        return []


class SimulatedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time whose ready callbacks run in the order ``seed`` picks."""

    def __init__(self, seed: int = 0) -> None:
        self._now = 0.0
        self.rng = random.Random(seed)
        self.jumps = 0  # how often time jumped instead of waiting
        self.waited = 0.0  # virtual seconds those jumps skipped
        super().__init__(_VirtualSelector(self._advance))
        self._ready = _ShuffledReady(self.rng)

    def reseed(self, seed: int) -> None:
        """Draw the order of ready callbacks from ``seed`` from now on (an example's own seed)."""
        self.rng.seed(seed)

    def time(self) -> float:
        return self._now

    def _advance(self, seconds: float) -> None:
        # Onto the due timer's own time (a sum may miss it by a rounding error).
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        due = scheduled[0].when() if scheduled else None
        self._now = due if due is not None and due - self._now <= seconds + 1e-6 else self._now + seconds
        self.jumps += 1
        self.waited += seconds

    def run_in_executor(  # type: ignore[override]  # refuses whatever it is given
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        # A thread would run on real time and in an order no seed fixes.
        raise ThreadInSimulation(f"{getattr(func, '__qualname__', func)!r} was sent to a thread in a simulated example")

    def set_default_executor(self, executor: ConcurrentFuture[Any] | Any) -> None:
        raise ThreadInSimulation("a simulated loop has no executor")
