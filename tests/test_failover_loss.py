"""Losses across a failover of a backend that does not promise to survive one are tolerated."""

from __future__ import annotations

from prism_testkit.stateful.checkers import Anomaly, Verdict
from prism_testkit.stateful.failover_loss import (
    LOST_IN_FAILOVER,
    failed_over,
    is_loss,
    leaders_lost,
    tolerate_failover_losses,
)
from prism_testkit.stateful.history import History


def verdict(*names: str) -> Verdict:
    found = {name: [Anomaly(name, f"a {name}", History())] for name in names}
    return Verdict("queue", None, found, {}, {})


def history_with(fault: str, backend: str) -> History:
    history = History()
    history.invoke("writer", "enqueue", "q", 1).ok()
    history.invoke("nemesis", fault, backend, {"node": 0}).ok()
    return history


def test_a_failover_of_a_backend_without_the_promise_excuses_its_losses_only() -> None:
    judged = verdict("lost", "notification-lost", "duplicated")
    (excused,) = tolerate_failover_losses([judged], history_with("failover", "pg-async"), {"pg-async"})
    assert set(excused.anomalies) == {"duplicated"}, "a failover may drop writes, never duplicate them"
    assert [a.name for a in excused.tolerated[LOST_IN_FAILOVER]] == ["lost", "notification-lost"]
    assert not excused.valid


def test_a_failover_the_cluster_made_by_itself_counts_too() -> None:
    (excused,) = tolerate_failover_losses(
        [verdict("lost")], history_with("failover-by-cluster", "sentinel"), {"sentinel"}
    )
    assert excused.valid
    assert len(excused.tolerated[LOST_IN_FAILOVER]) == 1


def test_nothing_is_excused_for_a_backend_that_declares_it_or_was_not_failed_over() -> None:
    judged = verdict("lost")
    declared = tolerate_failover_losses([judged], history_with("failover", "pg-sync"), {"pg-async"})
    killed = tolerate_failover_losses([judged], history_with("kill-leader", "pg-async"), {"pg-async"})
    assert declared == [judged]
    assert killed == [judged]


def test_loss_names_are_recognised_whole() -> None:
    assert all(is_loss(n) for n in ("lost", "lost-write", "notification-lost", "unseen", "objects-lost"))
    assert not any(is_loss(n) for n in ("duplicated", "reordered", "lost_", "gap", "read-model-diverged"))


def test_a_killed_consensus_leader_is_a_failover_owed_but_never_excuses_a_loss() -> None:
    """The failover pass counts a JetStream leader kill as the failover a test owes; a raft
    cluster promises to lose nothing acknowledged through it, so nothing is tolerated."""
    history = history_with("kill-leader", "jetstream-r3")
    assert leaders_lost(history) == {"jetstream-r3"}
    assert not failed_over(history)
    (judged,) = tolerate_failover_losses([verdict("lost")], history, {"jetstream-r3"})
    assert not judged.valid
    assert not judged.tolerated
    assert leaders_lost(history_with("kill-node", "jetstream-r3")) == set()
