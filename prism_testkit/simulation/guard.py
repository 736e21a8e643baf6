"""What a simulated example may not do: read real time, sleep in a thread, start a thread.

While :func:`watching` is active, the real clocks and ``time.sleep`` of the :mod:`time`
module, and ``threading.Thread.start``, are replaced by wrappers that check who called them: a
call from a watched module (the patterns, the simulated backends' drivers, the suites) is a
violation. It is raised to the caller and also kept, so the example fails even when the caller
swallows the error. Everyone else (Hypothesis, pytest) gets the real functions.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

REAL_TIME = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep")


class RealTimeInSimulation(RuntimeError):
    """A watched module read real time, slept or started a thread in a simulated example."""


class Guard:
    def __init__(self, watched: tuple[str, ...]) -> None:
        self.watched = watched
        self.violations: list[str] = []

    def is_watched(self, module: str) -> bool:
        return any(module == w or module.startswith(w + ".") for w in self.watched)

    def violation(self, what: str) -> RealTimeInSimulation:
        self.violations.append(what)
        return RealTimeInSimulation(f"{what} during a simulated example (use prism_testkit.simulation.clock)")

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def checked(*args: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if self.is_watched(caller):
                raise self.violation(f"{caller} called time.{name}()")
            return real(*args)

        return checked


@contextmanager
def watching(watched: tuple[str, ...]) -> Iterator[Guard]:
    """Replace the real clocks and ``Thread.start`` while the block runs; yields the guard."""
    guard = Guard(watched)
    saved = {name: getattr(time, name) for name in REAL_TIME}
    start = threading.Thread.start

    def checked_start(thread: threading.Thread) -> None:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if guard.is_watched(caller):
            raise guard.violation(f"{caller} started thread {thread.name!r}")
        start(thread)

    for name, real in saved.items():
        setattr(time, name, guard.wrap(name, real))
    threading.Thread.start = checked_start  # type: ignore[method-assign,assignment]
    try:
        yield guard
    finally:
        for name, real in saved.items():
            setattr(time, name, real)
        threading.Thread.start = start  # type: ignore[method-assign]
