"""The clock seam: every clock read of patterns, in-process backends, suites and histories.

Outside a simulated example these are the real clocks. During one (see
:func:`simulating`) they read the simulated loop's virtual time, so a run depends only on
its seed: :func:`wall` is a fixed epoch plus virtual time, and :func:`fresh_uuid` (ids a
backend makes up, such as delivery ids) counts instead of drawing random bits.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class VirtualClock(Protocol):
    def time(self) -> float: ...


# 2024-01-01T00:00:00Z: a simulated wall clock starts here, so replays stamp the same dates.
SIMULATED_EPOCH = 1_704_067_200.0

_active: VirtualClock | None = None
_ids = 0


def monotonic() -> float:
    """Seconds on a monotonic clock (the loop's virtual time when simulating)."""
    return _active.time() if _active is not None else time.monotonic()


def monotonic_ns() -> int:
    return round(_active.time() * 1e9) if _active is not None else time.monotonic_ns()


def wall() -> float:
    """Seconds since the Unix epoch (a fixed epoch plus virtual time when simulating)."""
    return SIMULATED_EPOCH + _active.time() if _active is not None else time.time()


def fresh_uuid() -> uuid.UUID:
    """A new id: random (``uuid4``) normally, a counter when simulating (replays match)."""
    global _ids
    if _active is None:
        return uuid.uuid4()
    _ids += 1
    return uuid.UUID(int=_ids)


def simulated() -> bool:
    return _active is not None


@contextmanager
def simulating(clock: VirtualClock) -> Iterator[None]:
    """Read ``clock`` (a simulated loop) instead of the real clocks until the block ends."""
    global _active, _ids
    if _active is not None:
        raise RuntimeError("a simulated example is already running in this process")
    _active, _ids = clock, 0
    try:
        yield
    finally:
        _active = None


class ManualClock:
    """A time source that moves only when a test moves it: pass it where a pattern takes a
    ``clock`` and age, lease, backoff and deadline rules run without sleeping.

    Calling it reads :attr:`now`; :meth:`advance` (or assigning :attr:`now`) moves it.
    """

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
