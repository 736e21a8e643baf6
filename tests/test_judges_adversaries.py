"""The judges as adversaries (issue 66 item 2): a wrong checker hides every bug it judges.

Each test here is a hand-built history (no servers) that one wrong-judge mutant gets wrong and
the real checker gets right; the tests the checkers' own files already hold kill the rest of
the table. The kinds: the union of subscribers (or consumers, nodes, transactions) judged as
one; one of them judged for all; an off-by-one at the first or last position; a tolerated
window applied outside its finding; a duplicate counted as a loss, or a loss hidden behind a
duplicate; an ordering check that skips the first or last element. ``JUDGE_MUTANTS`` in
``tests/test_mutants.py`` names, for each mutant, the test that must fail with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from prism_testkit import DeliveryGuarantee, Message
from prism_testkit.patterns.cdc import ChangeEvent, encode
from prism_testkit.patterns.cdc.events import Op
from prism_testkit.stateful.checkers import Verdict, fan_out, judged_nothing, log_anomalies, total_queue
from prism_testkit.stateful.checkers.replicas import check_replicas, diverged
from prism_testkit.stateful.checkers.wal import LoggedMutation, check_wal
from prism_testkit.stateful.history import History
from prism_testkit.suites._cdc_checker import Ledger, check, value_of

ALO, EO = DeliveryGuarantee.AT_LEAST_ONCE, DeliveryGuarantee.EXACTLY_ONCE


def op(h: History, process: str, f: str, key: str | None, value: Any = None, outcome: str = "ok", **done: Any) -> None:
    handle = h.invoke(process, f, key, value)
    if outcome == "ok":
        handle.ok(**done)
    else:
        getattr(handle, outcome)("injected")


def found(verdict: Verdict) -> dict[str, int]:
    """Invalidating anomalies by name, with how many of each."""
    return {name: len(group) for name, group in verdict.anomalies.items()}


# --- total queue ---------------------------------------------------------------------------


def test_total_queue_a_loss_is_not_hidden_behind_another_elements_duplicate() -> None:
    """Two acknowledged, two dequeued: but one of them twice and the other never. A judge that
    counts copies instead of asking for each element sees nothing missing."""
    h = History()
    op(h, "p", "enqueue", "q", 1)
    op(h, "p", "enqueue", "q", 2)
    op(h, "c", "dequeue", "q", value=1)
    op(h, "c", "dequeue", "q", value=1)
    op(h, "d", "drain", "q", value=())
    verdict = total_queue(h, ALO)
    assert found(verdict) == {"lost": 1}, verdict.explain()
    assert verdict.anomalies["lost"][0].data["value"] == 2
    assert "duplicated" in verdict.tolerated, "at-least-once tolerates the duplicate, and reports it"


def test_total_queue_an_element_whose_retry_was_acknowledged_is_expected() -> None:
    """The first attempt failed, the retry was acknowledged: the element may (must) come out."""
    h = History()
    op(h, "p", "enqueue", "q", 1, outcome="fail")
    op(h, "p", "enqueue", "q", 1)
    op(h, "d", "drain", "q", value=(1,))
    verdict = total_queue(h, EO)
    assert verdict.valid, verdict.explain()


# --- fan-out (pub/sub) ---------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["s1", "s2"])
def test_fan_out_each_of_two_subscribers_is_owed_on_its_own(missing: str) -> None:
    """One of two drained subscribers missed a message the other got: lost for it, and only
    for it. Missing in turn, so neither the first nor the last subscriber stands for both."""
    h = History()
    op(h, "s1", "subscribe", "t")
    op(h, "s2", "subscribe", "t")
    op(h, "pub", "publish", "t", 0)
    op(h, "pub", "publish", "t", 1)
    for process in ("s1", "s2"):
        op(h, process, "drain", "t", value=(0,) if process == missing else (0, 1))
    verdict = fan_out(h, ALO)
    lost = [(a.data["process"], a.data["value"]) for a in verdict.anomalies.get("lost", [])]
    assert lost == [(missing, 1)], verdict.explain()
    assert verdict.counts["owed"] == 4


def test_fan_out_the_last_publish_is_owed_too() -> None:
    h = History()
    op(h, "s1", "subscribe", "t")
    for value in (0, 1, 2):
        op(h, "pub", "publish", "t", value)
    op(h, "s1", "drain", "t", value=(0, 1))
    verdict = fan_out(h, EO)
    assert [a.data["value"] for a in verdict.anomalies.get("lost", [])] == [2], verdict.explain()


def test_fan_out_a_message_of_another_topic_is_unexpected() -> None:
    """Two topics: value 7 was published to ``b`` only; the subscriber of ``a`` got it."""
    h = History()
    op(h, "s1", "subscribe", "a")
    op(h, "pub", "publish", "b", 7)
    op(h, "s1", "drain", "a", value=(7,))
    verdict = fan_out(h, ALO)
    assert found(verdict) == {"unexpected": 1}, verdict.explain()


# --- log anomalies -------------------------------------------------------------------------


def test_log_a_read_that_reached_the_writes_own_offset_proves_it_lost() -> None:
    """The read returned offset 1, where the acknowledged ``b`` was put, holding something else:
    readers saw the log up to the write, so it is ``lost-write`` (proven), not ``unseen``."""
    h = History()
    op(h, "w", "append", "l", "a", offset=0)
    op(h, "w", "append", "l", "b", offset=1)
    op(h, "c", "poll", "l", value=[(0, "a"), (1, "x")])
    verdict = log_anomalies(h, ALO)
    lost = verdict.anomalies.get("lost-write", [])
    assert [a.data["value"] for a in lost] == ["b"], verdict.explain()
    assert "unseen" not in verdict.anomalies, verdict.explain()


def test_log_one_process_given_the_same_offset_twice_is_a_nonmonotonic_send() -> None:
    h = History()
    op(h, "w", "append", "l", "a", offset=0)
    op(h, "w", "append", "l", "b", offset=0)
    op(h, "d", "drain", "l", value=[(0, "a"), (0, "b")])
    verdict = log_anomalies(h, ALO)
    assert "nonmonotonic-send" in verdict.anomalies, verdict.explain()
    assert verdict.anomalies["nonmonotonic-send"][0].data["offsets"] == [0, 0]


# --- replicas ------------------------------------------------------------------------------

WRITTEN = [1, 2, 3, 4]


def test_replicas_a_loss_is_not_hidden_behind_a_duplicate() -> None:
    """The node holds four messages, as many as were acknowledged: 2 twice, 3 never."""
    (judged,) = check_replicas(WRITTEN, WRITTEN, {"n0": [1, 2, 2, 4]}).copies
    assert judged.lost == (3,)
    assert judged.duplicated == (2,)
    assert judged.lost_runs == ((2, 2),)


def test_replicas_what_one_node_lost_and_another_holds_is_not_lost_from_the_cluster() -> None:
    """The first node lost 1 and 4; the second still holds 1: only 4 is gone everywhere."""
    verdict = check_replicas(WRITTEN, WRITTEN, {"n0": [2, 3], "n1": [1, 2, 3]})
    assert verdict.lost_everywhere == (4,)
    assert verdict.nodes_missing_data == ("n0", "n1")


@pytest.mark.parametrize("damaged", [0, 1, 2])
def test_replicas_one_damaged_node_of_three_invalidates_wherever_it_stands(damaged: int) -> None:
    copies: dict[str, list[int] | None] = {f"n{i}": list(WRITTEN) for i in range(3)}
    copies[f"n{damaged}"] = WRITTEN[:-1]
    verdict = check_replicas(WRITTEN, WRITTEN, copies)
    assert not verdict.valid
    assert verdict.nodes_missing_data == (f"n{damaged}",)
    assert check_replicas(WRITTEN, WRITTEN, {n: list(WRITTEN) for n in copies}).valid


def test_diverged_copies_holding_as_many_messages_differ_by_their_sequences() -> None:
    """Both hold five messages: one 1-5, the other 2-6 (it lost 1, and holds a 6 nobody saw)."""
    states = {"n0": {"s": (1, 5, 5)}, "n1": {"s": (2, 6, 5)}}
    assert diverged(states) == {"s": {"n0": (1, 5, 5), "n1": (2, 6, 5)}}


@pytest.mark.parametrize("apart", ["n0", "n1", "n2"])
def test_diverged_any_node_apart_from_the_others_is_divergence(apart: str) -> None:
    states: dict[str, dict[str, tuple[int, int, int]] | None] = {n: {"s": (1, 5, 5)} for n in ("n0", "n1", "n2")}
    states[apart] = {"s": (1, 4, 4)}
    assert set(diverged(states)) == {"s"}


# --- the WAL checker -----------------------------------------------------------------------


def _wal(
    writes: list[tuple[str, str, int]],
    logged: Mapping[int, tuple[str, str | None]],
    applies: list[tuple[int, str]],
    final: dict[str, str | None],
    *,
    idempotent_replays: bool = False,
) -> Verdict:
    """Acknowledged writes (key, value id, receipt) judged against the log, the applies and the target."""
    history = History()
    for key, value, receipt in writes:
        history.invoke("writer", "write", key, value).ok(offset=receipt)
    log = {offset: LoggedMutation(key, value) for offset, (key, value) in logged.items()}
    return check_wal(history, log, applies, set(), final, idempotent_replays=idempotent_replays)


THREE = [("a", "a:0", 0), ("a", "a:1", 1), ("a", "a:2", 2)]
LOGGED_THREE: dict[int, tuple[str, str | None]] = {0: ("a", "a:0"), 1: ("a", "a:1"), 2: ("a", "a:2")}


def test_wal_the_logs_first_mutation_never_applied_is_lost() -> None:
    """The later mutations of the key were applied and the target ends right: only the
    question "was offset 0 ever applied?" sees it."""
    assert found(_wal(THREE, LOGGED_THREE, [(0, "a"), (1, "a"), (2, "a")], {"a": "a:2"})) == {}
    verdict = _wal(THREE, LOGGED_THREE, [(1, "a"), (2, "a")], {"a": "a:2"})
    assert found(verdict) == {"lost": 1}, verdict.explain()
    assert verdict.anomalies["lost"][0].data["offset"] == 0


def test_wal_a_mutation_applied_twice_does_not_cover_one_never_applied() -> None:
    writes = [("a", "a:0", 0), ("b", "b:1", 1)]
    verdict = _wal(writes, {0: ("a", "a:0"), 1: ("b", "b:1")}, [(0, "a"), (0, "a")], {"a": "a:0"})
    assert found(verdict) == {"lost": 1, "doubled": 1}, verdict.explain()
    assert verdict.anomalies["lost"][0].data["offset"] == 1


def test_wal_a_keys_first_two_applies_out_of_order_are_reordered() -> None:
    """Offsets 1 then 0, then 2: the target ends right, only the apply order shows it."""
    verdict = _wal(THREE, LOGGED_THREE, [(1, "a"), (0, "a"), (2, "a")], {"a": "a:2"})
    assert found(verdict) == {"reordered": 1}, verdict.explain()


def test_wal_a_replay_past_a_later_mutation_of_its_key_is_doubled_even_when_replays_are_idempotent() -> None:
    """Offsets 0, 1, 0, 1: replaying 1 again wrote the value the key had (tolerated), but
    replaying 0 after 1 took the key back: that is no harmless replay."""
    two = {0: ("a", "a:0"), 1: ("a", "a:1")}
    verdict = _wal(THREE[:2], two, [(0, "a"), (1, "a"), (0, "a"), (1, "a")], {"a": "a:1"}, idempotent_replays=True)
    assert [a.data["offset"] for a in verdict.anomalies.get("doubled", [])] == [0], verdict.explain()
    assert verdict.counts["reapplied"] == 1


# --- the CDC checker -----------------------------------------------------------------------


def _event(tag: str, key: str, position: int, *, after: bytes | None = b"", order: int = 1, total: int = 1) -> Message:
    """The change of ``key`` by transaction ``tag`` (a put of its value, unless ``after`` is None:
    a delete), its ``order``-th of ``total`` events, committed ``position``-th."""
    value = value_of(tag, key) if after == b"" else after
    op: Op = "d" if value is None else "c"
    event = ChangeEvent(f"cap:{tag}:{key}", op, "t", key, None, value, position, tag, order, total, 0, 0)
    return encode(event, "cap")


def _two_puts_of_one_key() -> tuple[Ledger, dict[str, bytes]]:
    ledger = Ledger()
    ledger.commit("t1", [("k", b"put")])
    ledger.commit("t2", [("k", b"put")])
    return ledger, {"k": value_of("t2", "k")}


def test_cdc_a_keys_changes_delivered_against_commit_order_are_reordered() -> None:
    ledger, source = _two_puts_of_one_key()
    in_order = [_event("t1", "k", 1), _event("t2", "k", 2)]
    assert check(ledger, in_order, source).valid
    verdict = check(ledger, in_order[::-1], source)
    assert "reordered" in verdict.anomalies, verdict.explain()


def test_cdc_an_event_redelivered_with_other_content_is_no_plain_duplicate() -> None:
    ledger, source = _two_puts_of_one_key()
    events = [_event("t1", "k", 1), _event("t2", "k", 2)]
    again = check(ledger, [*events, events[1]], source)
    assert again.valid, again.explain()
    assert "duplicated" in again.tolerated, again.explain()
    other = _event("t2", "k", 2, after=value_of("t1", "k"))  # same event id, another row image
    verdict = check(ledger, [*events, other], source)
    assert "inconsistent-duplicate" in verdict.anomalies, verdict.explain()


@pytest.mark.parametrize("kept", [(1, 2), (2, 3)])
def test_cdc_a_transaction_short_of_its_first_or_last_event_is_partial(kept: tuple[int, int]) -> None:
    ledger = Ledger()
    keys = ["x", "y", "z"]
    ledger.commit("t1", [(key, b"put") for key in keys])
    events = [_event("t1", key, 1, order=i, total=3) for i, key in enumerate(keys, 1)]
    source = {key: value_of("t1", key) for key in keys}
    assert check(ledger, events, source).valid
    delivered = [e for i, e in enumerate(events, 1) if i in kept]
    verdict = check(ledger, delivered, {k: v for i, (k, v) in enumerate(source.items(), 1) if i in kept})
    assert "partial-transaction" in verdict.anomalies, verdict.explain()
    assert found(verdict)["lost"] == 1, verdict.explain()


def test_cdc_a_transaction_of_unknown_outcome_with_a_change_delivered_owes_the_others() -> None:
    """Jepsen's must-have-committed: one of its two changes arrived, so it committed, and the
    other is lost. Nothing of it arrived: it may never have committed, nothing is owed."""
    ledger = Ledger()
    ledger.unknown("t1", [("x", b"put"), ("y", b"put")])
    source = {"x": value_of("t1", "x"), "y": value_of("t1", "y")}
    assert check(ledger, [], {}).valid
    verdict = check(ledger, [_event("t1", "x", 1)], source)
    lost = verdict.anomalies.get("lost", [])
    assert [a.data["key"] for a in lost] == ["y"], verdict.explain()


def test_cdc_a_superseded_transaction_excuses_its_own_losses_only() -> None:
    """``t1`` was superseded by a snapshot after a lost capture: its change is not owed. ``t2``
    was not: its lost change stays lost."""
    ledger = Ledger()
    ledger.commit("t1", [("x", b"put")])
    ledger.commit("t2", [("y", b"put")])
    ledger.superseded({"t1"})
    verdict = check(ledger, [], {})
    assert [a.data["tag"] for a in verdict.anomalies.get("lost", [])] == ["t2"], verdict.explain()


def test_cdc_a_lost_delete_is_not_covered_by_another_transactions_delete_of_the_key() -> None:
    """``t2`` and ``t4`` each delete ``k`` (each with a put of its own, which names its
    transaction id); ``t2``'s delete never arrived."""
    ledger = Ledger()
    ledger.commit("t1", [("k", b"put")])
    ledger.commit("t2", [("k", None), ("a", b"put")])
    ledger.commit("t3", [("k", b"put")])
    ledger.commit("t4", [("k", None), ("b", b"put")])
    source = {"a": value_of("t2", "a"), "b": value_of("t4", "b")}
    t2 = [_event("t2", "k", 2, after=None, order=1, total=2), _event("t2", "a", 2, order=2, total=2)]
    t4 = [_event("t4", "k", 4, after=None, order=1, total=2), _event("t4", "b", 4, order=2, total=2)]
    whole = [_event("t1", "k", 1), *t2, _event("t3", "k", 3), *t4]
    assert check(ledger, whole, source).valid
    verdict = check(ledger, [e for e in whole if e is not t2[0]], source)
    lost = [(a.data["tag"], a.data["key"]) for a in verdict.anomalies.get("lost", [])]
    assert lost == [("t2", "k")], verdict.explain()


# --- an empty history judged valid ---------------------------------------------------------


def test_the_suite_checkers_judge_an_empty_history_as_nothing_judged() -> None:
    """Found here: the WAL and CDC checkers passed an example that wrote nothing, which the
    runner then counted as judged, so a test whose every example wrote nothing passed green.
    Now, as the generic checkers do, they say they judged nothing (the runner's vacuous case)."""
    assert judged_nothing([check_wal(History(), {}, [], set(), {})])
    assert judged_nothing([check(Ledger(), [], {})])
    # one write, or one delivery, is something to judge
    assert not judged_nothing([_wal([("a", "a:0", 0)], {0: ("a", "a:0")}, [(0, "a")], {"a": "a:0"})])
    ledger, source = _two_puts_of_one_key()
    assert check(ledger, [_event("t1", "k", 1), _event("t2", "k", 2)], source).valid
