"""The judging path's bounds (prism_testkit.patience): scaled by the machine, extended by
progress, and ended by a liveness verdict that never reads as a loss."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

import prism_testkit.simulation.clock as clocks
from prism_testkit import patience
from prism_testkit.patience import Unsettled
from prism_testkit.simulation.clock import ManualClock


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No slowness, and no load mode's stalls accounted for (a run under --prism-load has
    them): each test sets what it measures; the run's own accounting comes back after it."""
    monkeypatch.setenv("PRISM_SLOWNESS", "1")
    monkeypatch.setattr(patience, "_stalls", 1.0)
    monkeypatch.setattr(patience, "_longest_stall", 0.0)


def test_a_bound_is_its_base_value_times_the_slowness(monkeypatch: pytest.MonkeyPatch) -> None:
    assert patience.bound("calm-op") == patience.BOUNDS["calm-op"]
    monkeypatch.setenv("PRISM_SLOWNESS", "3")
    assert patience.bound("calm-op") == 3 * patience.BOUNDS["calm-op"]
    assert "x slowness 3.0" in patience.describe("calm-op")


def test_slowness_is_clamped_between_one_and_its_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRISM_SLOWNESS", "0.2")
    assert patience.slowness() == 1.0
    monkeypatch.setenv("PRISM_SLOWNESS", "500")
    assert patience.slowness() == patience.MAX_SLOWNESS


def test_slowness_follows_the_load_average_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRISM_SLOWNESS")
    monkeypatch.setattr(patience, "_cached", (-1.0, 1.0))
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (2.5 * cores, 0.0, 0.0))
    assert patience.slowness() == pytest.approx(2.5)


def test_load_modes_stalls_count_beside_the_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    # A SIGSTOPped server is not runnable, so the load average cannot see the time it waits
    monkeypatch.delenv("PRISM_SLOWNESS")
    cores = os.cpu_count() or 1
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0 * cores, 0.0, 0.0))
    try:
        patience.account_for_stalls(0.5, 0.5)  # the calibrated stall:500ms@500ms
        assert patience.slowness() == pytest.approx(2.0 * 1.5)
        patience.account_for_stalls(0.2, 2.0)
        assert patience.slowness() == pytest.approx(2.0 * 1.05)
    finally:
        patience.account_for_stalls(0.0, 0.0)
    assert patience.slowness() == pytest.approx(2.0)


def test_a_quiet_wait_outlasts_the_longest_stall_load_mode_may_inject(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server SIGSTOPped for 0.5 s delivers nothing meanwhile: a tail read that gives up after
    # 0.1 s x slowness would take the messages behind the stall for lost.
    monkeypatch.setenv("PRISM_SLOWNESS", "1.5")
    assert patience.quiet(0.1) == pytest.approx(0.15)
    try:
        patience.account_for_stalls(0.5, 0.5)
        assert patience.quiet(0.1) == pytest.approx(0.15 + 0.5)
    finally:
        patience.account_for_stalls(0.0, 0.0)
    assert patience.quiet(0.1) == pytest.approx(0.15)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    fake = ManualClock(0.0)
    monkeypatch.setattr(clocks, "monotonic", fake)  # the module patience reads
    return fake


def test_until_returns_the_value_that_satisfied_it() -> None:
    seen = iter(range(100))

    async def probe() -> int:
        return next(seen)

    assert asyncio.run(patience.until(probe, lambda n: n >= 5, what="drain: five", every=0)) == 5


def test_progress_extends_the_wait_past_the_stall_bound(clock: ManualClock) -> None:
    """A drain that keeps moving is not cut off by the stall bound, however long it takes in all."""
    count = 0

    async def probe() -> int:
        nonlocal count
        count += 1
        clock.now += 3.0  # 30 steps of 3 s: 90 s in all, nine times the stall bound
        return count

    assert asyncio.run(patience.until(probe, lambda n: n >= 30, what="drain: moving", every=0)) == 30
    assert clock.now > patience.BOUNDS["stall"]


def test_a_wait_without_progress_ends_unsettled_naming_what_and_the_bound(clock: ManualClock) -> None:
    async def stuck() -> tuple[int, str]:
        clock.now += 1.0
        return 3, "offset 3 of 5"

    with pytest.raises(Unsettled) as caught:
        asyncio.run(patience.until(stuck, lambda v: v[0] >= 5, what="drain: the applier to reach 5", every=0))
    message = str(caught.value)
    assert message.startswith("UNSETTLED (liveness, not a loss): waited 12.0s")
    assert "drain: the applier to reach 5" in message
    assert "bound hit: stall: 10.0s = 10s x slowness 1.0" in message
    assert "offset 3 of 5" in message
    assert "lost" not in message.replace("not a loss", "")
    assert caught.value.signature == "liveness:drain"


def test_a_wait_that_progresses_forever_ends_at_the_ceiling(clock: ManualClock) -> None:
    count = 0

    async def livelock() -> int:
        nonlocal count
        count += 1
        clock.now += 1.0
        return count

    with pytest.raises(Unsettled, match="settle-ceiling") as caught:
        asyncio.run(patience.until(livelock, lambda n: False, what="drain: never", every=0))
    assert "it progressed but did not finish" in str(caught.value)
    assert clock.now == pytest.approx(patience.BOUNDS["settle-ceiling"] + 1.0)


def test_repeat_until_takes_the_step_until_it_is_done(clock: ManualClock) -> None:
    """A short receive repeated: the message a busy machine delivers on the third try is no bug."""
    tries: list[float] = []

    def step() -> None:
        clock.now += 0.05
        tries.append(clock.now)

    patience.repeat_until(step, lambda: len(tries) == 3, what="the message sent to be delivered")
    assert len(tries) == 3


def test_repeat_until_that_never_holds_is_a_liveness_verdict(clock: ManualClock) -> None:
    def step() -> None:
        clock.now += 0.5

    with pytest.raises(Unsettled) as caught:
        patience.repeat_until(step, lambda: False, what="the message sent to be delivered")
    message = str(caught.value)
    assert message.startswith("UNSETTLED (liveness, not a loss): waited 10.0s for the message sent to be delivered")
    assert "bound hit: calm-op: 10.0s = 10s x slowness 1.0" in message


# -- until_sync: the same bookkeeping as until, for a blocking probe -----------------------------


def test_until_sync_returns_the_first_value_that_satisfied_it_not_an_earlier_one(clock: ManualClock) -> None:
    seen: list[int] = []

    def probe() -> int:
        clock.now += 1.0
        seen.append(len(seen))
        return seen[-1]

    assert patience.until_sync(probe, lambda n: n >= 5, what="five", every=0) == 5
    assert seen == [0, 1, 2, 3, 4, 5]


def test_until_sync_progress_extends_the_wait_past_the_stall_bound(clock: ManualClock) -> None:
    count = 0

    def probe() -> int:
        nonlocal count
        count += 1
        clock.now += 3.0  # 30 steps of 3 s: 90 s in all, nine times the stall bound
        return count

    assert patience.until_sync(probe, lambda n: n >= 30, what="drain: moving", every=0) == 30


def test_until_sync_without_progress_waits_the_whole_stall_bound_then_is_unsettled(clock: ManualClock) -> None:
    calls = 0

    def stuck() -> str:
        nonlocal calls
        calls += 1
        clock.now += 1.0
        return "offset 3 of 5"

    with pytest.raises(Unsettled) as caught:
        patience.until_sync(stuck, lambda v: False, what="drain: the applier to reach 5", every=0)
    # the whole bound, not half of it: first seen at 1 s, still the same past 1 + 10 s
    assert calls == 12
    assert caught.value.waited == pytest.approx(12.0)
    assert caught.value.bound_name == "stall"
    message = str(caught.value)
    assert "drain: the applier to reach 5" in message
    assert "bound hit: stall: 10.0s = 10s x slowness 1.0" in message
    assert "last seen: offset 3 of 5" in message


def test_until_sync_with_one_named_bound_is_a_plain_bound_scaled_by_slowness(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_SLOWNESS", "2")
    count = 0

    def moving() -> int:
        nonlocal count
        count += 1
        clock.now += 1.0
        return count

    with pytest.raises(Unsettled, match="calm-op") as caught:
        patience.until_sync(moving, lambda n: False, what="never", stall="calm-op", ceiling="calm-op", every=0)
    assert caught.value.waited > 2 * patience.BOUNDS["calm-op"]
    assert "it progressed but did not finish" in str(caught.value)


def test_until_sync_sleeps_between_probes(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    values = iter([1, 2, 3])
    assert patience.until_sync(lambda: next(values), lambda n: n == 3, what="three", every=0.25) == 3
    assert slept == [0.25, 0.25]
