"""How long the harness waits, in one place: every bound of a judging path is named here.

A fixed timeout in a judging path is a bet on the machine's speed. The harness waits on
observable events instead (a leader exists, an applier's position reached the log's end), and
what bound remains is one of :data:`BOUNDS`, scaled by :func:`slowness`, the factor by which
this machine is slower right now than the quiet machine the base values were set on:

    slowness = clamp(load average over 1 minute / cores x stalls, 1, MAX_SLOWNESS)
    bound(name) = BOUNDS[name] * slowness          (re-read at most once per second)

``stalls`` is 1 unless load mode's jitter runs in this process: a server stopped by SIGSTOP is
not runnable, so the load average cannot see it, yet every operation it serves waits. Stopped
for a mean of DUR/2 after a mean wait of EVERY (``stall:DUR@EVERY``), a server runs a share of
EVERY / (EVERY + DUR/2) of the time, so its work takes 1 + DUR / (2 x EVERY) times as long.

``PRISM_SLOWNESS`` (a number >= 1) fixes the factor, e.g. for a machine whose load average does
not show its slowness (a throttled container). Under simulation (virtual time) the factor is 1:
a simulated run must not depend on the machine.

A wait that runs out raises :class:`Unsettled`, a liveness verdict of its own ("not settled
after N s, waiting for X, last seen Y"), never an anomaly such as ``lost``: a write is lost only
when it is absent once the system has settled. :func:`until` waits on a probe and gives up only
when the probe stopped changing for the ``stall`` bound (progress extends the wait) or the
``ceiling`` bound passed. See ``docs/waits.md``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import prism_testkit.simulation.clock as clocks

T = TypeVar("T")

MAX_SLOWNESS = 8.0  # past this the machine is not slow but stuck: a bound should run out

# Base values (seconds) on a quiet 2-core machine. Each is scaled by slowness() when used.
BOUNDS: dict[str, float] = {
    # a client operation once a fault was injected: running out makes it "info" (maybe happened)
    "faulted-op": 0.5,
    # a client operation before any fault: running out is a failure (a hang), not an unknown outcome
    "calm-op": 10.0,
    # settling (drains, catch-up): how long no progress at all is tolerated before giving up
    "stall": 10.0,
    # settling: the longest a wait may run even while it progresses (a livelock is a liveness failure)
    "settle-ceiling": 120.0,
    # abandoned operations: how long settling waits for them once everything is healed
    "stray-grace": 3.0,
    # a recovering action (a read after heal) keeps retrying errors this long
    "recovery": 30.0,
    # a JetStream publish left unanswered is sent again (deduplicated by its message id) this long
    "publish": 15.0,
}

# Times a suite hands to a system under test (a visibility timeout, a lease, a TTL, a poll
# interval), not bounds of the harness's own waits: running out changes what the system does,
# so a fixed value is a bet on the machine's speed like a fixed wait. Each is its base value
# x slowness() when handed over. A time whose expiry is the point of a test (a TTL that must
# run out) is not one of these: such a test asserts only what holds once it has expired.
HANDED: dict[str, float] = {
    # a visibility timeout, lease or TTL that must not run out while the test works with it
    "lease": 30.0,
    # how often a pattern polls, batches or retries: it decides how soon, never what, happens
    "poll": 0.02,
    # a TTL or interval that must not run out during the whole run (a claim object's TTL, a
    # batch interval no test waits for)
    "outlive-run": 3600.0,
}

_ENV = "PRISM_SLOWNESS"
_cached: tuple[float, float] = (-1.0, 1.0)  # (when read, factor)
_stalls = 1.0  # how much longer load mode's SIGSTOP bursts make a server's work (see the doc)
_longest_stall = 0.0  # the longest one SIGSTOP burst of load mode's jitter may last (seconds)


def account_for_stalls(most: float, every: float) -> None:
    """Load mode's jitter runs in this process: it stops a server for up to ``most`` seconds
    (mean ``most / 2``) after a mean wait of ``every`` seconds; ``most = 0`` when it ends."""
    global _stalls, _cached, _longest_stall
    _stalls = 1.0 + most / (2 * every) if most > 0 and every > 0 else 1.0
    _longest_stall = max(most, 0.0) if every > 0 else 0.0
    _cached = (-1.0, 1.0)  # read anew


def slowness() -> float:
    """How much slower than a quiet machine this one is now (>= 1; see the module's doc)."""
    global _cached
    if clocks.simulated():
        return 1.0
    fixed = os.environ.get(_ENV)
    if fixed:
        return _clamp(float(fixed))
    now = time.monotonic()
    if now - _cached[0] >= 1.0:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not on this platform
            load = 0.0
        _cached = (now, _clamp(load / (os.cpu_count() or 1) * _stalls))
    return _cached[1]


def _clamp(factor: float) -> float:
    return min(MAX_SLOWNESS, max(1.0, factor))


def bound(name: str) -> float:
    """The bound ``name`` of :data:`BOUNDS` on this machine now (seconds)."""
    return BOUNDS[name] * slowness()


def handed(name: str) -> float:
    """The time ``name`` of :data:`HANDED` to give a system under test on this machine now
    (seconds): a lease that must outlast the test's work, or a poll cadence."""
    return HANDED[name] * slowness()


def quiet(base: float) -> float:
    """How long a wait must bring nothing before the harness concludes nothing more is on its
    way (a tail read without a fence, or one whose fence may be lost): ``base`` x slowness,
    plus the longest SIGSTOP burst load mode's jitter may hold a server in, which stops
    deliveries whatever the load average says. Only ever a wait: it delays a verdict, never
    changes one (what arrives later is still judged where a fence or an offset ends the read)."""
    return base * slowness() + (0.0 if clocks.simulated() else _longest_stall)


def describe(name: str) -> str:
    """How a bound was derived, for the message of a wait it ended: ``calm-op: 10.0s = 10s x 1.0``."""
    factor = slowness()
    return f"{name}: {BOUNDS[name] * factor:.1f}s = {BOUNDS[name]:g}s x slowness {factor:.1f}"


class Unsettled(AssertionError):
    """A liveness verdict: what the harness waited for did not happen within its bound. Not a
    safety anomaly (nothing was shown lost); a failure still, where progress is promised."""

    def __init__(self, what: str, waited: float, bound_name: str, seen: Any = None, detail: str = "") -> None:
        self.what = what
        self.waited = waited
        self.bound_name = bound_name
        self.seen = seen
        lines = [
            f"UNSETTLED (liveness, not a loss): waited {waited:.1f}s for {what}",
            f"  bound hit: {describe(bound_name)}",
        ]
        if seen is not None:
            lines.append(f"  last seen: {seen}")
        if detail:
            lines.append(f"  {detail}")
        super().__init__("\n".join(lines))

    @property
    def signature(self) -> str:
        """What a replay must show again to reproduce this: the kind of wait that ran out."""
        return f"liveness:{self.what.split(':', 1)[0]}"


@dataclass
class LastSeen:
    """What :func:`until` saw last, for the message when it gives up."""

    value: Any = None
    changed_at: float = 0.0


class _Watch:
    """The bookkeeping :func:`until` and :func:`until_sync` share: what was seen last and when it
    last changed (progress), and the verdict once the ``stall`` or ``ceiling`` bound ran out."""

    def __init__(self, what: str, stall: str, ceiling: str) -> None:
        self.what, self.stall, self.ceiling = what, stall, ceiling
        self.started = clocks.monotonic()
        self.seen = LastSeen(changed_at=self.started)
        self.first = True

    def check(self, value: Any) -> None:
        """Note ``value`` (a change is progress); raise :class:`Unsettled` once a bound ran out."""
        now = clocks.monotonic()
        if self.first or value != self.seen.value:
            self.seen.value, self.seen.changed_at, self.first = value, now, False
        waited, still = now - self.started, now - self.seen.changed_at
        if still > bound(self.stall):
            raise Unsettled(self.what, waited, self.stall, value, f"no progress for {still:.1f}s")
        if waited > bound(self.ceiling):
            raise Unsettled(self.what, waited, self.ceiling, value, "it progressed but did not finish")


async def until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    stall: str = "stall",
    ceiling: str = "settle-ceiling",
    every: float = 0.05,
) -> T:
    """Poll ``probe`` until ``done`` holds for what it returned; the value. Every change of the
    value is progress and restarts the ``stall`` bound; the ``ceiling`` bound caps the whole
    wait. Running out raises :class:`Unsettled` naming ``what`` and the last value seen."""
    watch = _Watch(what, stall, ceiling)
    while True:
        value = await probe()
        if done(value):
            return value
        watch.check(value)
        await asyncio.sleep(every)


def until_sync(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    stall: str = "stall",
    ceiling: str = "settle-ceiling",
    every: float = 0.05,
) -> T:
    """:func:`until` for a plain (blocking) ``probe``: poll it every ``every`` seconds until
    ``done`` holds for what it returned; the value. A change of the value restarts the ``stall``
    bound, ``ceiling`` caps the wait (``stall=ceiling=name`` is a plain bound of ``name``);
    running out raises :class:`Unsettled` naming ``what`` and the last value seen."""
    watch = _Watch(what, stall, ceiling)
    while True:
        value = probe()
        if done(value):
            return value
        watch.check(value)
        time.sleep(every)


def repeat_until(
    step: Callable[[], object], done: Callable[[], bool], *, what: str, bound_name: str = "calm-op"
) -> None:
    """Take ``step`` (an action that waits a moment itself, such as a short receive) until
    ``done`` holds. One short wait is a bet on the machine's speed: a busy machine delivers
    later, and that is no bug. Running out of ``bound_name`` raises :class:`Unsettled` naming
    ``what``."""
    started = clocks.monotonic()
    while True:
        step()
        if done():
            return
        waited = clocks.monotonic() - started
        if waited >= bound(bound_name):
            raise Unsettled(what, waited, bound_name)


def poll_until(done: Callable[[], bool], *, what: str, bound_name: str = "calm-op", every: float = 0.05) -> None:
    """Poll ``done`` (a cheap look, such as whether a process is gone) every ``every`` seconds
    until it holds; running out of ``bound_name`` raises :class:`Unsettled` naming ``what``."""
    repeat_until(lambda: time.sleep(every), done, what=what, bound_name=bound_name)
