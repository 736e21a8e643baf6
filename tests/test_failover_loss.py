"""Losses across a failover of a backend that does not promise to survive one are tolerated,
and only those: a loss of a write to another slot's backend, or of a write acknowledged after
the failover ended, stays red (issue 66)."""

from __future__ import annotations

from typing import Any

import pytest

from prism_testkit import DeliveryGuarantee
from prism_testkit.stateful.checkers import ACKED, SLOTS, Anomaly, Verdict, total_queue
from prism_testkit.stateful.checkers.failover import (
    LOST_IN_FAILOVER,
    failed_over,
    failover_ends,
    held_from,
    is_loss,
    leaders_lost,
    tolerate_failover_losses,
)
from prism_testkit.stateful.history import History

HOT, COLD = "redis-sentinel", "postgres-ha"  # the first does not promise to survive a failover
TIERS = {"hot": HOT, "cold": COLD}


def lost(history: History, value: Any, name: str = "lost", /, **facts: Any) -> Anomaly:
    """A loss of the write of ``value`` to queue ``q`` in ``history``, witnessed by that write."""
    writes = [p for p in history.pairs() if p.key == "q" and p.invoke.value == value]
    return Anomaly(name, f"{value!r} is gone", history.subhistory(writes), {"key": "q", "value": value, **facts})


def verdict(*found: Anomaly) -> Verdict:
    groups: dict[str, list[Anomaly]] = {}
    for anomaly in found:
        groups.setdefault(anomaly.name, []).append(anomaly)
    return Verdict("queue", None, groups, {}, {})


def history_with(fault: str, backend: str, *, after: int = 0) -> History:
    """Write 1 acknowledged, then ``fault`` of ``backend``, then ``after`` more writes (2, 3...)."""
    history = History()
    history.invoke("writer", "enqueue", "q", 1).ok()
    history.invoke("nemesis", fault, backend, {"node": 0}).ok()
    for value in range(2, 2 + after):
        history.invoke("writer", "enqueue", "q", value).ok()
    return history


def red(judged: Verdict) -> list[Any]:
    return [a.data.get("value") for found in judged.anomalies.values() for a in found]


def excused(judged: Verdict) -> list[Any]:
    return [a.data.get("value") for a in judged.tolerated.get(LOST_IN_FAILOVER, [])]


def test_a_failover_of_a_backend_without_the_promise_excuses_its_losses_only() -> None:
    history = history_with("failover", "pg-async")
    judged = verdict(lost(history, 1), lost(history, 1, "notification-lost"), lost(history, 1, "duplicated"))
    (excused_,) = tolerate_failover_losses([judged], history, {"pg-async"})
    assert set(excused_.anomalies) == {"duplicated"}, "a failover may drop writes, never duplicate them"
    assert [a.name for a in excused_.tolerated[LOST_IN_FAILOVER]] == ["lost", "notification-lost"]
    assert not excused_.valid


def test_a_failover_the_cluster_made_by_itself_counts_too() -> None:
    history = history_with("failover-by-cluster", "sentinel")
    (judged,) = tolerate_failover_losses([verdict(lost(history, 1))], history, {"sentinel"})
    assert judged.valid
    assert len(judged.tolerated[LOST_IN_FAILOVER]) == 1


def test_nothing_is_excused_for_a_backend_that_declares_it_or_was_not_failed_over() -> None:
    for history in (history_with("failover", "pg-sync"), history_with("kill-leader", "pg-async")):
        judged = verdict(lost(history, 1))
        assert tolerate_failover_losses([judged], history, {"pg-async"}) == [judged]


def test_loss_names_are_recognised_whole() -> None:
    assert all(is_loss(n) for n in ("lost", "lost-write", "notification-lost", "unseen", "objects-lost"))
    assert not any(is_loss(n) for n in ("duplicated", "reordered", "lost_", "gap", "read-model-diverged"))


def test_a_killed_consensus_leader_is_a_failover_owed_but_never_excuses_a_loss() -> None:
    """The failover pass counts a JetStream leader kill as the failover a test owes; a raft
    cluster promises to lose nothing acknowledged through it, so nothing is tolerated."""
    history = history_with("kill-leader", "jetstream-r3")
    assert leaders_lost(history) == {"jetstream-r3"}
    assert not failed_over(history)
    assert not failover_ends(history)
    (judged,) = tolerate_failover_losses([verdict(lost(history, 1))], history, {"jetstream-r3"})
    assert not judged.valid
    assert not judged.tolerated
    assert leaders_lost(history_with("kill-node", "jetstream-r3")) == set()


# --- the excuse is scoped: the failed-over slot, and the failover window (issue 66) ----------


def test_a_loss_on_the_backend_that_promises_survival_stays_red() -> None:
    """Tiered storage, hot on Sentinel (no promise), cold on synchronous PostgreSQL: the hot
    tier failed over. A loss of the hot tier's write is tolerated; the cold tier's is red."""
    history = history_with("failover", HOT)
    judged = verdict(lost(history, 1, **{SLOTS: ("cold",)}))
    (outcome,) = tolerate_failover_losses([judged], history, {HOT}, TIERS)
    assert red(outcome) == [1], outcome.explain()
    assert not outcome.tolerated
    (outcome,) = tolerate_failover_losses([verdict(lost(history, 1, **{SLOTS: ("hot",)}))], history, {HOT}, TIERS)
    assert outcome.valid, outcome.explain()
    assert excused(outcome) == [1]


def test_a_loss_that_names_no_slot_concerns_every_slot() -> None:
    history = history_with("failover", HOT)
    (outcome,) = tolerate_failover_losses([verdict(lost(history, 1))], history, {HOT}, TIERS)
    assert outcome.valid, outcome.explain()


def test_one_verdict_keeps_its_red_losses_beside_the_tolerated_ones() -> None:
    history = history_with("failover", HOT)
    judged = verdict(lost(history, 1, **{SLOTS: ("hot",)}), lost(history, 1, **{SLOTS: ("cold",)}))
    (outcome,) = tolerate_failover_losses([judged], history, {HOT}, TIERS)
    assert [a.data[SLOTS] for a in outcome.anomalies["lost"]] == [("cold",)]
    assert [a.data[SLOTS] for a in outcome.tolerated[LOST_IN_FAILOVER]] == [("hot",)]


def test_a_write_acknowledged_after_the_failover_completed_stays_red() -> None:
    """Write 1 before the failover, 2 and 3 after it: the new primary acknowledged them, and
    must keep them."""
    history = history_with("failover", HOT, after=2)
    judged = verdict(*(lost(history, value) for value in (1, 2, 3)))
    (outcome,) = tolerate_failover_losses([judged], history, {HOT})
    assert excused(outcome) == [1]
    assert red(outcome) == [2, 3], outcome.explain()


@pytest.mark.parametrize("invoked", ["before", "during"])
def test_a_write_acknowledged_inside_the_failover_window_is_tolerated(invoked: str) -> None:
    """A write in flight while the failover runs, acknowledged before it ended, was held by the
    old primary: it may be lost (invoked before the failover began, or while it ran)."""
    history = History()
    if invoked == "before":
        write = history.invoke("writer", "enqueue", "q", 1)
        failover = history.invoke("nemesis", "failover", HOT, {"node": 0})
    else:
        failover = history.invoke("nemesis", "failover", HOT, {"node": 0})
        write = history.invoke("writer", "enqueue", "q", 1)
    write.ok()
    failover.ok(value={"to": 1})
    (outcome,) = tolerate_failover_losses([verdict(lost(history, 1))], history, {HOT})
    assert outcome.valid, outcome.explain()
    assert excused(outcome) == [1]


def test_a_failover_that_never_completed_is_open_to_the_end() -> None:
    history = History()
    history.invoke("nemesis", "failover", HOT, {"node": 0})
    history.invoke("writer", "enqueue", "q", 1).ok()
    (outcome,) = tolerate_failover_losses([verdict(lost(history, 1))], history, {HOT})
    assert outcome.valid, outcome.explain()


def test_each_failover_has_its_own_window() -> None:
    """1 before the first failover, 2 between the two, 3 after the second: only 3 stays red."""
    history = history_with("failover", HOT, after=1)
    history.invoke("nemesis", "failover-by-cluster", HOT, {"from": 1}).ok(value={"to": 0})
    history.invoke("writer", "enqueue", "q", 3).ok()
    judged = verdict(*(lost(history, value) for value in (1, 2, 3)))
    (outcome,) = tolerate_failover_losses([judged], history, {HOT})
    assert excused(outcome) == [1, 2]
    assert red(outcome) == [3]


def test_a_loss_whose_write_cannot_be_placed_in_time_is_not_excused() -> None:
    """No write of the key in the witness or the history, no ``acked`` fact: the excuse
    cannot be proved. (With the key written in the history, the write is found there.)"""
    history = history_with("failover", HOT)
    found = Anomaly("lost", "something is gone", History(), {"key": "q"})
    assert held_from(found) is None
    assert held_from(found, history) == 1, "the checker judged without the history: it is looked up there"
    unplaced = Anomaly("lost", "something is gone", History(), {"key": "elsewhere"})
    assert held_from(unplaced, history) is None
    (outcome,) = tolerate_failover_losses([verdict(unplaced)], history, {HOT})
    assert not outcome.valid
    placed = Anomaly("lost", "something is gone", History(), {"key": "q", ACKED: 0})
    (outcome,) = tolerate_failover_losses([verdict(placed)], history, {HOT})
    assert outcome.valid, outcome.explain()
    late = Anomaly("lost", "something is gone", History(), {"key": "q", ACKED: len(history)})
    (outcome,) = tolerate_failover_losses([verdict(late)], history, {HOT})
    assert not outcome.valid, "the acked fact, after the failover: red"


def test_an_unacknowledged_write_proven_committed_is_held_from_its_invoke() -> None:
    """A write of unknown outcome is placed at its invoke: invoked after the failover ended,
    it was never the old primary's to lose."""
    history = history_with("failover", HOT)
    history.invoke("writer", "enqueue", "q", 2).info("timeout")
    (outcome,) = tolerate_failover_losses([verdict(lost(history, 2))], history, {HOT})
    assert red(outcome) == [2]


def test_the_total_queue_checker_and_the_window_together() -> None:
    """End to end through a real checker: 1 acknowledged before a Sentinel failover, 2 after
    it, a drain finds neither. 1 is lost in the failover; 2 is lost, red."""
    history = history_with("failover", HOT, after=1)
    history.invoke("reader", "drain", "q").ok(value=[])
    judged = total_queue(history, DeliveryGuarantee.AT_LEAST_ONCE)
    assert {a.data["value"] for a in judged.anomalies["lost"]} == {1, 2}
    (outcome,) = tolerate_failover_losses([judged], history, {HOT}, {"backend": HOT})
    assert excused(outcome) == [1]
    assert red(outcome) == [2], outcome.explain()
