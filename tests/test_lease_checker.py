"""The one-lease-holder checker (issue 66, "clocks that disagree"): a takeover under a later
epoch may overlap the old holder's own belief (its clock ran behind); a write of the lease
inside another holder's interval of the same or a later epoch is a second holder."""

from __future__ import annotations

import pytest

from prism_testkit.stateful.checkers import EMPTY
from prism_testkit.stateful.history import History
from prism_testkit.stateful.leases import OVERLAP, one_lease_holder, record_lease

TTL = 5.0


def test_takeovers_and_renewals_one_holder_at_a_time_are_valid() -> None:
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL)
    record_lease(history, "r1", 1, 2.0, 2.0 + TTL)  # renewed
    record_lease(history, "r2", 2, 7.5, 7.5 + TTL)  # taken over once it ran out
    record_lease(history, "r2", 2, 9.0, 9.0 + TTL)
    record_lease(history, "r1", 3, 20.0, 20.0 + TTL)
    verdict = one_lease_holder(history)
    assert verdict.valid, verdict.explain()
    assert verdict.counts == {"writes": 5, "leases": 1, "holders": 2, "epochs": 3}


def test_a_successor_whose_clock_runs_ahead_takes_a_later_epoch_inside_the_old_interval() -> None:
    """r2's clock ahead: it takes epoch 2 at 3.0 while r1 believes it holds epoch 1 until 5.0.
    The epoch fences r1 out: allowed."""
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL)
    record_lease(history, "r2", 2, 3.0, 3.0 + TTL)
    assert one_lease_holder(history).valid


def test_the_old_holder_renewing_after_a_takeover_is_a_second_holder() -> None:
    """The plain-put renewal: r1 writes epoch 1 again at 4.0, inside r2's epoch 2."""
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL)
    record_lease(history, "r2", 2, 3.0, 3.0 + TTL)
    record_lease(history, "r1", 1, 4.0, 4.0 + TTL)
    verdict = one_lease_holder(history)
    assert list(verdict.anomalies) == [OVERLAP], verdict.explain()
    (found,) = verdict.anomalies[OVERLAP]
    assert found.data["holders"] == ("r2", "r1")
    assert found.data["epochs"] == (2, 1)
    assert [op.index for op in found.witness] == [2, 3, 4, 5], "the two writes, nothing else"


@pytest.mark.parametrize("start", [0.0, 4.99])
def test_two_holders_of_one_epoch_at_once_are_a_second_holder(start: float) -> None:
    """The same epoch written by another holder anywhere inside the interval, its first
    instant included."""
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL)
    record_lease(history, "r2", 1, start, start + TTL)
    assert list(one_lease_holder(history).anomalies) == [OVERLAP]


def test_the_end_of_an_interval_is_not_in_it() -> None:
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL)
    record_lease(history, "r2", 1, TTL, 2 * TTL)
    assert one_lease_holder(history).valid


def test_a_released_lease_holds_nothing() -> None:
    """A release writes an interval that ends where it starts (the holder gives it back)."""
    history = History()
    record_lease(history, "r1", 1, 0.0, 0.0)
    record_lease(history, "r2", 1, 0.0, TTL)
    assert one_lease_holder(history).valid


def test_a_holder_restarted_under_its_own_id_is_one_holder() -> None:
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL)
    record_lease(history, "r1", 2, 1.0, 1.0 + TTL)
    assert one_lease_holder(history).valid


def test_the_overlap_is_found_behind_later_writes_of_the_holder() -> None:
    """r2's epoch 2 was renewed twice; r1's stale write falls in the first interval only: the
    check looks past the latest write of each holder."""
    history = History()
    record_lease(history, "r2", 2, 0.0, 10.0)
    record_lease(history, "r2", 2, 1.0, 1.5)  # a renewal written with a shorter lease
    record_lease(history, "r1", 1, 2.0, 2.0 + TTL)
    assert list(one_lease_holder(history).anomalies) == [OVERLAP]


def test_an_empty_history_judges_nothing() -> None:
    history = History()
    history.invoke("relay-r1", "relay", "outbox").ok(value=0)
    assert list(one_lease_holder(history).anomalies) == [EMPTY]


def test_only_writes_that_landed_count() -> None:
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL)
    history.invoke("lease-r2", "lease", None, ("r2", 1, 1.0, 1.0 + TTL)).info("timeout")
    assert one_lease_holder(history).valid


def test_two_leases_held_at_once_by_two_holders_are_valid() -> None:
    """Two outboxes, a relay each: each lease has one holder, and both are held at once."""
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL, key="outbox-a")
    record_lease(history, "r2", 1, 1.0, 1.0 + TTL, key="outbox-b")
    record_lease(history, "r1", 1, 2.0, 2.0 + TTL, key="outbox-a")  # renewed while r2 holds the other
    verdict = one_lease_holder(history)
    assert verdict.valid, verdict.explain()
    assert verdict.counts["leases"] == 2


def test_a_second_holder_of_one_of_two_leases_is_found_and_named() -> None:
    history = History()
    record_lease(history, "r1", 1, 0.0, TTL, key="outbox-a")
    record_lease(history, "r2", 1, 1.0, 1.0 + TTL, key="outbox-b")
    record_lease(history, "r2", 1, 2.0, 2.0 + TTL, key="outbox-a")  # r1 holds epoch 1 of a until 5
    (found,) = one_lease_holder(history).anomalies[OVERLAP]
    assert found.data["lease"] == "outbox-a"
    assert found.data["holders"] == ("r1", "r2")
    assert "lease 'outbox-a'" in found.message
