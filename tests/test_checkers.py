"""prism_testkit.stateful.checkers on hand-made histories (one per anomaly and guarantee) and generated ones."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.checkers import Anomaly, Verdict, log_anomalies, per_key_order, tolerated, total_queue
from prism_testkit.stateful.history import History

ALO, EO, AMO = DeliveryGuarantee.AT_LEAST_ONCE, DeliveryGuarantee.EXACTLY_ONCE, DeliveryGuarantee.AT_MOST_ONCE
ALL = [ALO, EO, AMO]
Ops = tuple[int, ...]  # the indices of one operation's invoke and completion


def run(h: History, process: Any, f: str, key: str | None, value: Any = None, **ok: Any) -> Ops:
    """Invoke and complete ``f`` at once; ``outcome`` picks ok (default), fail, info or open."""
    outcome = ok.pop("outcome", "ok")
    handle = h.invoke(process, f, key, value, ok.pop("start", None))
    if outcome == "ok":
        handle.ok(**ok)
    elif outcome != "open":
        getattr(handle, outcome)("injected")
    return tuple(op.index for op in h[handle.invoke.index :] if op.process == process)[:2]


def enq(h: History, v: Any, p: Any = "p", q: str = "q", **kw: Any) -> Ops:
    return run(h, p, "enqueue", q, v, **kw)


def deq(h: History, v: Any, p: Any = "c", q: str = "q") -> Ops:
    return run(h, p, "dequeue", q, value=v)


def drain(h: History, values: list[Any], p: Any = "d", q: str = "q") -> Ops:
    return run(h, p, "drain", q, value=values)


def app(h: History, v: Any, offset: int | None, p: Any = "w", log: str = "l", **kw: Any) -> Ops:
    return run(h, p, "append", log, v, offset=offset, **kw)


def poll(h: History, records: list[tuple[int, Any]], p: Any = "c", log: str = "l", **kw: Any) -> Ops:
    return run(h, p, "poll", log, value=records, **kw)


def only(verdict: Verdict, name: str) -> Anomaly:
    found = verdict.anomalies.get(name) or verdict.tolerated.get(name)
    assert found is not None, verdict.explain()
    assert len(found) == 1, verdict.explain()
    return found[0]


def indices(anomaly: Anomaly) -> set[int]:
    return {op.index for op in anomaly.witness}


def names(verdict: Verdict) -> set[str]:
    return set(verdict.anomalies) | set(verdict.tolerated)


def reproduces(checker: Callable[[History], Verdict], anomaly: Anomaly) -> bool:
    """A witness is a history of its own, and shows the same anomaly when checked alone."""
    return anomaly.name in names(checker(anomaly.witness))


# --- the guarantee table -------------------------------------------------------------------


def test_tolerated_follows_the_guarantee() -> None:
    assert [tolerated("lost", g) for g in ALL] == [False, False, True]
    assert [tolerated("duplicated", g) for g in ALL] == [True, False, False]
    assert [tolerated("duplicate", g) for g in ALL] == [True, False, False]
    assert [tolerated("unseen", g) for g in ALL] == [False, False, True]  # Jepsen: unseen at the end is an error
    assert [tolerated("int-send-skip", g) for g in ALL] == [True, True, True]
    assert [tolerated("poll-skip", g) for g in ALL] == [False, False, False]
    assert not tolerated("reordered", None)


# --- total queue -------------------------------------------------------------------------


def valid_queue() -> History:
    h = History()
    enq(h, 1)
    enq(h, 2, p="p2")
    deq(h, 1)
    deq(h, 2, p="c2")
    enq(h, 3)
    drain(h, [3])
    deq(h, None)
    return h


@pytest.mark.parametrize("guarantee", ALL)
def test_total_queue_accepts_a_valid_history(guarantee: DeliveryGuarantee) -> None:
    verdict = total_queue(valid_queue(), guarantee)
    assert verdict.valid, verdict.explain()
    assert verdict.witness is None
    assert verdict.counts == {
        "attempted": 3,
        "acknowledged": 3,
        "unknown": 0,
        "failed": 0,
        "dequeued": 3,
        "recovered": 0,
    }
    assert verdict.explain().startswith(f"total-queue ({guarantee.value}): valid")


def lost_history() -> tuple[History, Ops, Ops]:
    h = History()
    enq(h, 1)
    lost = enq(h, 2)
    enq(h, 3)
    deq(h, 1)
    deq(h, 3)
    deq(h, None)
    final = drain(h, [])
    return h, lost, final


@pytest.mark.parametrize("guarantee", [ALO, EO])
def test_total_queue_finds_a_lost_element_with_its_enqueue_and_the_final_drain(guarantee: DeliveryGuarantee) -> None:
    h, lost, final = lost_history()
    verdict = total_queue(h, guarantee)
    assert not verdict.valid
    anomaly = only(verdict, "lost")
    assert anomaly.data == {"key": "q", "value": 2}
    assert indices(anomaly) == {*lost, *final}
    assert verdict.witness == anomaly.witness
    assert reproduces(lambda w: total_queue(w, guarantee), anomaly)
    text = verdict.explain()
    assert "INVALID: 1 lost" in text
    assert "2 on 'q': enqueue acknowledged" in text


def test_total_queue_witness_for_loss_falls_back_to_the_empty_dequeue() -> None:
    h = History()
    lost = enq(h, 1)
    empty = deq(h, None)
    assert indices(only(total_queue(h, EO), "lost")) == {*lost, *empty}


def test_at_most_once_tolerates_loss() -> None:
    h, _, _ = lost_history()
    verdict = total_queue(h, AMO)
    assert verdict.valid
    assert only(verdict, "lost") in verdict.tolerated["lost"]
    assert verdict.counts["lost"] == 1
    assert "lost (allowed by at-most-once): 1" in verdict.explain()


def duplicated_history() -> tuple[History, Ops, Ops, Ops]:
    h = History()
    source = enq(h, 1)
    enq(h, 2)
    first = deq(h, 1)
    deq(h, 2)
    second = deq(h, 1, p="c2")
    drain(h, [1])  # a third copy: the witness needs only two
    return h, source, first, second


def test_total_queue_finds_duplicates_with_the_enqueue_and_two_deliveries() -> None:
    h, source, first, second = duplicated_history()
    for guarantee in (EO, AMO):
        verdict = total_queue(h, guarantee)
        anomaly = only(verdict, "duplicated")
        assert not verdict.valid
        assert anomaly.data == {"key": "q", "value": 1, "times": 3}
        assert indices(anomaly) == {*source, *first, *second}
        assert reproduces(partial(total_queue, guarantee=guarantee), anomaly)


def test_at_least_once_tolerates_duplicates() -> None:
    h, *_ = duplicated_history()
    verdict = total_queue(h, ALO)
    assert verdict.valid, verdict.explain()
    assert verdict.tolerated["duplicated"][0].data["times"] == 3


def test_total_queue_counts_a_value_duplicated_inside_one_drain_once_per_op() -> None:
    h = History()
    source = enq(h, 1)
    both = drain(h, [1, 1])
    anomaly = only(total_queue(h, EO), "duplicated")
    assert indices(anomaly) == {*source, *both}


def test_total_queue_finds_unexpected_values() -> None:
    h = History()
    enq(h, 1)
    deq(h, 1)
    ghost = deq(h, 99)
    verdict = total_queue(h, ALO)
    anomaly = only(verdict, "unexpected")
    assert anomaly.data == {"key": "q", "value": 99}
    assert indices(anomaly) == set(ghost)
    assert "never enqueued" in anomaly.message
    assert not verdict.valid
    assert not total_queue(h, AMO).valid


def test_a_failed_enqueue_that_comes_out_is_unexpected() -> None:
    h = History()
    failed = enq(h, 1, outcome="fail")
    out = deq(h, 1)
    anomaly = only(total_queue(h, ALO), "unexpected")
    assert indices(anomaly) == {*failed, *out}
    assert "its enqueue failed" in anomaly.message


def test_values_are_told_apart_by_queue() -> None:
    h = History()
    enq(h, 1, q="a")
    enq(h, 1, q="b")
    deq(h, 1, q="a")
    drain(h, [], q="b")  # b looked at after its enqueue: its 1 is provably gone
    verdict = total_queue(h, EO)
    assert only(verdict, "lost").data == {"key": "b", "value": 1}
    assert "duplicated" not in names(verdict)


def test_an_undelivered_element_no_drain_looked_for_is_unseen_not_lost() -> None:
    """Issue #53: ``lost`` means provably gone once the system settled: a drain (or an empty
    dequeue) invoked after the acknowledgement must show the queue without it. One that ended
    before the enqueue was acknowledged, or none at all, proves nothing: ``unseen``, invalid
    all the same (a total-queue history must end drained)."""
    h = History()
    early = h.invoke("d", "drain", "q")
    enq(h, 1)
    early.ok(value=())  # concurrent with the enqueue: it may have looked before it
    verdict = total_queue(h, ALO)
    assert set(verdict.anomalies) == {"unseen"}
    unseen = only(verdict, "unseen")
    assert unseen.data == {"key": "q", "value": 1}
    assert "no drain looked after it" in unseen.message
    assert not total_queue(h, EO).valid
    assert total_queue(h, AMO).valid
    deq(h, None)  # an empty dequeue after the acknowledgement looked
    assert set(total_queue(h, ALO).anomalies) == {"lost"}
    assert only(total_queue(h, ALO), "lost").data == {"key": "q", "value": 1}


@pytest.mark.parametrize("guarantee", ALL)
def test_unknown_enqueues_may_or_may_not_come_out(guarantee: DeliveryGuarantee) -> None:
    h = History()
    enq(h, 1, outcome="info")  # timed out, but happened
    enq(h, 2, outcome="info")  # timed out, did not happen
    enq(h, 3, outcome="open")  # the client crashed, but it happened
    enq(h, 4, p="p2", outcome="fail")  # refused
    drain(h, [3, 1])
    verdict = total_queue(h, guarantee)
    assert verdict.valid, verdict.explain()
    assert verdict.counts | {} == {
        "attempted": 4,
        "acknowledged": 0,
        "unknown": 3,
        "failed": 1,
        "dequeued": 2,
        "recovered": 2,
    }
    assert verdict.notes == {"recovered": [1, 3]}


def test_a_retried_enqueue_is_acknowledged_once_any_attempt_is() -> None:
    h = History()
    enq(h, 1, outcome="info")
    retry = enq(h, 1)
    deq(h, 1)
    deq(h, 1)  # the timed-out attempt also went through
    assert total_queue(h, ALO).valid
    anomaly = only(total_queue(h, EO), "duplicated")
    assert set(retry) <= indices(anomaly)


def test_the_smallest_witness_is_chosen_and_explained() -> None:
    h = History()
    enq(h, 1)
    enq(h, 2)
    deq(h, 1)
    deq(h, 1)
    drain(h, [])
    verdict = total_queue(h, EO)
    assert set(verdict.anomalies) == {"lost", "duplicated"}
    assert verdict.witness is not None
    assert len(verdict.witness) == 4  # lost: enqueue + drain
    assert set(verdict.witnesses()) == {"lost", "duplicated"}
    with pytest.raises(AssertionError, match="INVALID: 1 lost, 1 duplicated"):
        verdict.assert_valid()


def test_explain_limits_the_number_of_witnesses() -> None:
    h = History()
    for v in range(6):
        enq(h, v)
    drain(h, [])
    text = total_queue(h, EO).explain(per_anomaly=2)
    assert "... and 4 more" in text
    assert text.count("enqueue acknowledged") == 2


def test_total_queue_operation_names_are_configurable() -> None:
    h = History()
    run(h, "p", "send", "q", 1)
    run(h, "c", "receive", "q", value=1)
    assert total_queue(h, EO, enqueues=["send"], dequeues=["receive"]).counts["dequeued"] == 1


# --- log anomalies -----------------------------------------------------------------------


def valid_log() -> History:
    h = History()
    app(h, "a", 0)
    app(h, "b", 1, p="w2")
    poll(h, [(0, "a")])
    app(h, "c", 2)
    poll(h, [(1, "b"), (2, "c")])
    poll(h, [])
    poll(h, [(0, "a"), (1, "b")], p="c2")
    run(h, "c2", "seek", "l", offset=1)
    poll(h, [(1, "b")], p="c2")
    run(h, "d", "drain", "l", value=[(0, "a"), (1, "b"), (2, "c")])
    return h


@pytest.mark.parametrize("guarantee", ALL)
def test_log_accepts_a_valid_history(guarantee: DeliveryGuarantee) -> None:
    verdict = log_anomalies(valid_log(), guarantee)
    assert verdict.valid, verdict.explain()
    assert verdict.tolerated == {}
    assert verdict.counts == {"logs": 1, "attempted": 3, "acknowledged": 3, "read": 9, "recovered": 0}


@pytest.mark.parametrize("guarantee", ALL)
def test_inconsistent_offsets(guarantee: DeliveryGuarantee) -> None:
    h = History()
    write = app(h, "a", 0)
    app(h, "b", 1)
    read = poll(h, [(0, "x"), (1, "b")], p="c")  # offset 0 holds 'a' by the ack, 'x' by the read
    verdict = log_anomalies(h, guarantee)
    anomaly = only(verdict, "inconsistent-offsets")
    assert not verdict.valid
    # 'a' was never read (lost-write): the offset's second value follows that loss
    assert anomaly.data == {"key": "l", "offset": 0, "values": ["a", "x"], "follows": (("l", "a"),)}
    assert indices(anomaly) == {*write, *read}
    assert reproduces(lambda w: log_anomalies(w, guarantee), anomaly)


def test_inconsistent_offsets_between_two_reads() -> None:
    h = History()
    one = poll(h, [(0, "a")], p="c1")
    two = poll(h, [(0, "b")], p="c2")
    app(h, "a", None)
    app(h, "b", None)
    anomaly = only(log_anomalies(h, ALO), "inconsistent-offsets")
    assert indices(anomaly) == {*one, *two}


def test_duplicate_is_tolerated_by_at_least_once_only() -> None:
    h = History()
    first = app(h, "a", 0, outcome="info")  # a timed-out append, retried
    second = app(h, "a", 1)
    poll(h, [(0, "a"), (1, "a")])
    verdicts = {g: log_anomalies(h, g) for g in ALL}
    anomaly = only(verdicts[EO], "duplicate")
    assert anomaly.data == {"key": "l", "value": "a", "offsets": [0, 1]}
    assert indices(anomaly) == {*second, len(h) - 2, len(h) - 1}  # the ack at 1 and the read at 0
    assert first[0] not in indices(anomaly)
    assert [v.valid for v in verdicts.values()] == [True, False, False]


def test_lost_write_below_the_highest_read_offset() -> None:
    h = History()
    app(h, "a", 0)
    lost = app(h, "b", 1)
    app(h, "c", 2)
    poll(h, [(0, "a")])
    past = poll(h, [(2, "c")], p="c2")
    verdict = log_anomalies(h, EO)
    anomaly = only(verdict, "lost-write")
    assert anomaly.data == {"key": "l", "value": "b", "offset": 1}
    assert indices(anomaly) == {*lost, *past}
    assert reproduces(lambda w: log_anomalies(w, EO), anomaly)
    assert log_anomalies(h, AMO).valid
    assert not log_anomalies(h, ALO).valid


def test_lost_write_missed_by_a_later_drain() -> None:
    h = History()
    app(h, "a", 0)
    lost = app(h, "b", None)  # acknowledged without an offset
    final = run(h, "d", "drain", "l", value=[(0, "a")])
    anomaly = only(log_anomalies(h, ALO), "lost-write")
    assert indices(anomaly) == {*lost, *final}
    assert "a later drain missed it" in anomaly.message


def test_writes_unseen_at_the_end_invalidate_unless_loss_is_allowed() -> None:
    # Jepsen's kafka checker counts acknowledged sends nobody polled by the end as an error:
    # a history must end by reading everything, or it cannot tell loss from not looking.
    h = History()
    app(h, "a", 0)
    early = run(h, "d", "drain", "l", value=[(0, "a")])
    late = app(h, "b", 1)  # after the drain, above every read offset: nobody looked
    for guarantee in ALL:
        verdict = log_anomalies(h, guarantee)
        assert verdict.valid is (guarantee is AMO)
        anomaly = only(verdict, "unseen")
        assert indices(anomaly) == set(late)
        assert not set(early) & indices(anomaly)
    assert "unseen (allowed by at-most-once): 1" in log_anomalies(h, AMO).explain()


def test_log_unexpected_and_recovered_values() -> None:
    h = History()
    app(h, "a", 0)
    app(h, "m", None, outcome="info")
    failed = app(h, "x", None, outcome="fail")
    read = poll(h, [(0, "a"), (1, "m"), (2, "x")])
    verdict = log_anomalies(h, ALO)
    anomaly = only(verdict, "unexpected")
    assert anomaly.data == {"key": "l", "value": "x"}
    assert indices(anomaly) == {*read, *failed}
    assert verdict.notes == {"recovered": ["m"]}


def test_poll_skip_across_polls() -> None:
    h = History()
    for offset, v in enumerate("abcd"):
        app(h, v, offset)
    before = poll(h, [(0, "a")])
    poll(h, [(1, "b")], p="other")
    skipping = poll(h, [(3, "d")])
    verdict = log_anomalies(h, AMO)  # no guarantee excuses a skip
    anomaly = only(verdict, "poll-skip")
    assert not verdict.valid
    assert anomaly.data == {"key": "l", "process": "c", "expected": 1, "offset": 3, "skipped": [1, 2]}
    assert indices(anomaly) == {*before, *skipping, 2, 3}  # offset 1 shown by its append
    assert reproduces(lambda w: log_anomalies(w, EO), anomaly)


def test_poll_skip_inside_one_poll_and_from_a_drain_start() -> None:
    h = History()
    for offset, v in enumerate("abc"):
        app(h, v, offset)
    inside = poll(h, [(0, "a"), (2, "c")])
    anomaly = only(log_anomalies(h, ALO), "int-poll-skip")  # Jepsen's name for a skip inside one op
    assert indices(anomaly) == {*inside, 2, 3}

    g = History()
    for offset, v in enumerate("abc"):
        app(g, v, offset)
    final = run(g, "d", "drain", "l", value=[(1, "b"), (2, "c")], start=0)
    assert indices(only(log_anomalies(g, ALO), "poll-skip")) == {*final, 0, 1}


def test_a_gap_that_holds_nothing_known_is_not_a_skip() -> None:
    h = History()
    app(h, "a", 0)
    app(h, "c", 2)
    poll(h, [(0, "a"), (2, "c")])
    assert log_anomalies(h, EO).valid


def test_nonmonotonic_poll() -> None:
    h = History()
    for offset, v in enumerate("abc"):
        app(h, v, offset)
    first = poll(h, [(0, "a"), (1, "b"), (2, "c")])
    back = poll(h, [(1, "b")])
    for guarantee in ALL:
        verdict = log_anomalies(h, guarantee)
        anomaly = only(verdict, "nonmonotonic-poll")
        assert not verdict.valid
        assert anomaly.data == {"key": "l", "process": "c", "expected": 3, "offset": 1}
        assert indices(anomaly) == {*first, *back}
        assert reproduces(partial(log_anomalies, guarantee=guarantee), anomaly)


def test_a_rewind_or_jump_after_seek_or_assign_is_allowed() -> None:
    h = History()
    for offset, v in enumerate("abc"):
        app(h, v, offset)
    poll(h, [(0, "a"), (1, "b")])
    run(h, "c", "seek", "l", offset=0)
    poll(h, [(0, "a")])
    run(h, "c", "assign", None)
    poll(h, [(2, "c")])
    run(h, "c", "subscribe", None, value=["other"])  # no longer covers l: its position is forgotten
    poll(h, [(0, "a")])
    poll(h, [(1, "b")], p="c2", outcome="info")  # its position is unknown now
    poll(h, [(0, "a")], p="c2")
    assert log_anomalies(h, EO).valid, log_anomalies(h, EO).explain()


def test_a_seek_sets_the_expected_offset() -> None:
    h = History()
    for offset, v in enumerate("abc"):
        app(h, v, offset)
    seek = run(h, "c", "seek", "l", offset=0)
    skipping = poll(h, [(2, "c")])
    assert indices(only(log_anomalies(h, ALO), "poll-skip")) == {*seek, *skipping, 0, 1}


def test_nonmonotonic_send() -> None:
    h = History()
    first = app(h, "a", 1)
    second = app(h, "b", 0)
    app(h, "c", 2, p="other")
    anomaly = only(log_anomalies(h, ALO), "nonmonotonic-send")
    assert indices(anomaly) == {*first, *second}


def test_logs_are_checked_separately() -> None:
    h = History()
    app(h, "a", 0, log="x")
    app(h, "a", 0, log="y")
    poll(h, [(0, "a")], log="x")
    poll(h, [(0, "a")], log="y")
    verdict = log_anomalies(h, EO)
    assert verdict.valid
    assert verdict.counts["logs"] == 2


def test_log_records_must_be_offset_value_pairs() -> None:
    h = History()
    poll(h, ["a"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="expected \\(offset, value\\) records"):
        log_anomalies(h, ALO)


# --- per-key order -----------------------------------------------------------------------


def test_per_key_order_accepts_orderly_deliveries() -> None:
    h = History()
    enq(h, "a1", q="A")
    enq(h, "b1", q="B")
    enq(h, "a2", q="A")
    deq(h, "b1")
    deq(h, "a1")
    deq(h, "a1")  # a redelivery is not a reordering
    deq(h, "a2")
    verdict = per_key_order(h)
    assert verdict.valid, verdict.explain()
    assert verdict.guarantee is None
    assert verdict.counts == {"written": 3, "deliveries": 3}


def test_per_key_order_finds_a_reordered_pair_with_a_minimal_witness() -> None:
    h = History()
    w1 = enq(h, "a1", q="A")
    enq(h, "b1", q="B")
    w2 = enq(h, "a2", q="A")
    deq(h, "b1")
    late = deq(h, "a2")
    early = deq(h, "a1")
    verdict = per_key_order(h)
    anomaly = only(verdict, "reordered")
    assert not verdict.valid
    assert anomaly.data == {"key": "A", "process": "c", "first": "a2", "second": "a1"}
    assert indices(anomaly) == {*w1, *w2, *late, *early}
    assert reproduces(per_key_order, anomaly)
    assert "received 'a2' first" in verdict.explain()


def test_overlapping_writes_may_be_delivered_in_either_order() -> None:
    h = History()
    one = h.invoke("p1", "append", "l", "a1")
    two = h.invoke("p2", "append", "l", "a2")
    two.ok(offset=0)
    one.ok(offset=1)
    poll(h, [(0, "a2"), (1, "a1")])
    assert per_key_order(h).valid


def test_per_key_order_uses_a_key_function_over_values() -> None:
    h = History()
    for value in [("A", 1), ("B", 1), ("A", 2)]:
        app(h, value, None, log="events")
    poll(h, [(0, ("A", 2)), (1, ("B", 1)), (2, ("A", 1))], log="events")
    by_log = per_key_order(h)
    by_aggregate = per_key_order(h, key=lambda v: v[0])
    assert [a.data["key"] for a in by_log.anomalies["reordered"]] == ["events", "events"]  # ('B', 1) too
    assert only(by_aggregate, "reordered").data == {"key": "A", "process": "c", "first": ("A", 2), "second": ("A", 1)}
    assert per_key_order(h, key=lambda v: v).valid  # every value its own key: nothing to order


def test_per_key_order_ignores_unacknowledged_writes_and_checks_each_consumer() -> None:
    h = History()
    enq(h, 1)
    enq(h, 2, outcome="info")
    enq(h, 3)
    deq(h, 2)
    deq(h, 1)
    deq(h, 3, p="c2")
    drain(h, [1, 3], p="c3")
    assert per_key_order(h).valid


def test_a_seek_starts_a_consumer_afresh() -> None:
    h = History()
    app(h, "a", 0)
    app(h, "b", 1)
    run(h, "c", "seek", "l", offset=1)
    poll(h, [(1, "b")])
    run(h, "c", "seek", "l", offset=0)
    poll(h, [(0, "a"), (1, "b")])
    assert per_key_order(h).valid
    assert not per_key_order(h, resets=()).valid


def test_per_key_order_reports_one_anomaly_per_late_delivery() -> None:
    h = History()
    for v in range(4):
        enq(h, v)
    drain(h, [3, 0, 1, 2])
    found = per_key_order(h).anomalies["reordered"]
    assert [(a.data["first"], a.data["second"]) for a in found] == [(3, 0), (3, 1), (3, 2)]


# --- generated histories -----------------------------------------------------------------

KEYS = 3  # aggregates: value % KEYS


@dataclass
class Step:
    process: str
    f: str
    value: Any
    outcome: str = "ok"


@st.composite
def fifo_runs(draw: st.DrawFn) -> list[Step]:
    """A sequential run against a correct FIFO queue, ending with a drain. Enqueues may time out
    (and have happened or not) or fail; every dequeue returns the head (None when empty)."""
    model: deque[int] = deque()
    steps: list[Step] = []
    for value in range(draw(st.integers(0, 25))):
        if draw(st.booleans()):
            outcome = draw(st.sampled_from(["ok", "ok", "ok", "info-happened", "info-lost", "fail"]))
            if outcome in ("ok", "info-happened"):
                model.append(value)
            steps.append(Step(f"p{draw(st.integers(0, 2))}", "enqueue", value, outcome))
        for _ in range(draw(st.integers(0, 2))):
            steps.append(Step(f"c{draw(st.integers(0, 2))}", "dequeue", model.popleft() if model else None))
    steps.append(Step("d", "drain", list(model)))
    return steps


def build(steps: list[Step]) -> tuple[History, list[Ops]]:
    """The history of a run, and each step's op indices."""
    h = History()
    ops: list[Ops] = []
    for step in steps:
        handle = h.invoke(step.process, step.f, "q", step.value if step.f == "enqueue" else None)
        if step.outcome == "fail":
            handle.fail("refused")
        elif step.outcome.startswith("info"):
            handle.info(TimeoutError())
        else:
            handle.ok(value=step.value)
        ops.append((handle.invoke.index, handle.invoke.index + 1))
    return h, ops


def acknowledged(steps: list[Step]) -> set[int]:
    return {s.value for s in steps if s.f == "enqueue" and s.outcome == "ok"}


def deliveries(steps: list[Step], of: set[int]) -> list[int]:
    return [i for i, s in enumerate(steps) if s.f == "dequeue" and s.value in of]


@settings(max_examples=200, deadline=None)
@given(fifo_runs())
def test_a_correct_fifo_history_is_always_valid(steps: list[Step]) -> None:
    h, _ = build(steps)
    for guarantee in ALL:
        verdict = total_queue(h, guarantee)
        if not any(s.f == "enqueue" for s in steps) and not verdict.counts["dequeued"]:
            assert set(verdict.anomalies) == {"empty-history"}  # nothing to judge is not a pass
            continue
        assert verdict.valid, verdict.explain()
        assert not verdict.tolerated, verdict.explain()
    assert per_key_order(h).valid
    assert per_key_order(h, key=lambda v: v % KEYS).valid


@settings(max_examples=200, deadline=None)
@given(fifo_runs(), st.data())
def test_a_dropped_dequeue_is_always_found_as_lost(steps: list[Step], data: st.DataObject) -> None:
    candidates = deliveries(steps, acknowledged(steps))
    assume(candidates)
    dropped = data.draw(st.sampled_from(candidates))
    value = steps[dropped].value
    enqueue = next(i for i, s in enumerate(steps) if s.f == "enqueue" and s.value == value)
    h, ops = build(steps[:dropped] + steps[dropped + 1 :])
    for guarantee in (ALO, EO):
        verdict = total_queue(h, guarantee)
        anomaly = only(verdict, "lost")
        assert anomaly.data["value"] == value
        assert set(ops[enqueue]) <= indices(anomaly)
        assert len(anomaly.witness) == 4  # the enqueue and the final drain, nothing else
    assert total_queue(h, AMO).valid


@settings(max_examples=200, deadline=None)
@given(fifo_runs(), st.data())
def test_a_duplicated_dequeue_is_always_found(steps: list[Step], data: st.DataObject) -> None:
    candidates = deliveries(steps, acknowledged(steps))
    assume(candidates)
    original = data.draw(st.sampled_from(candidates))
    at = data.draw(st.integers(original + 1, len(steps) - 1))  # anywhere later, before the drain
    copy = Step(data.draw(st.sampled_from(["c0", "c1", "c9"])), "dequeue", steps[original].value)
    h, ops = build([*steps[:at], copy, *steps[at:]])
    for guarantee in (EO, AMO):
        anomaly = only(total_queue(h, guarantee), "duplicated")
        assert set(ops[at]) <= indices(anomaly)  # the injected delivery
        assert len(anomaly.witness) == 6
    assert total_queue(h, ALO).valid


@settings(max_examples=200, deadline=None)
@given(fifo_runs(), st.data())
def test_swapped_deliveries_of_one_key_are_always_found(steps: list[Step], data: st.DataObject) -> None:
    candidates = deliveries(steps, acknowledged(steps))
    same_key = [
        (i, j) for i in candidates for j in candidates if i < j and steps[i].value % KEYS == steps[j].value % KEYS
    ]
    assume(same_key)
    i, j = data.draw(st.sampled_from(same_key))
    swapped = list(steps)
    swapped[i], swapped[j] = (
        Step(steps[i].process, "dequeue", steps[j].value),
        Step(steps[j].process, "dequeue", steps[i].value),
    )
    h, ops = build(swapped)
    verdict = per_key_order(h, key=lambda v: v % KEYS)
    consumers = {steps[i].process, steps[j].process}
    if len(consumers) == 1:  # one consumer saw both: the order it saw is wrong
        found = verdict.anomalies["reordered"]
        assert any(set(ops[i]) <= indices(a) or set(ops[j]) <= indices(a) for a in found)
        assert all(len(a.witness) <= 8 for a in found)
    assert total_queue(h, EO).valid  # order is not the total-queue checker's business


LogStep = tuple[str, str, Any]  # process, f, argument: (value, offset) / offset / (start, records)


@st.composite
def log_runs(draw: st.DrawFn) -> list[LogStep]:
    """A sequential run against a correct log: appends, consumers polling on from where they
    stopped (sometimes seeking back), and a final drain."""
    log: list[str] = []
    position: dict[str, int] = {}
    steps: list[LogStep] = []
    for n in range(draw(st.integers(0, 25))):
        action = draw(st.sampled_from(["append", "append", "poll", "seek"]))
        consumer = f"c{draw(st.integers(0, 1))}"
        if action == "append":
            steps.append(("w", "append", (f"v{n}", len(log))))
            log.append(f"v{n}")
        elif action == "seek":
            position[consumer] = draw(st.integers(0, len(log)))
            steps.append((consumer, "seek", position[consumer]))
        else:
            start = position.get(consumer, 0)
            records = [(o, log[o]) for o in range(start, min(len(log), start + draw(st.integers(0, 3))))]
            position[consumer] = start + len(records)
            steps.append((consumer, "poll", (start, records)))
    steps.append(("d", "drain", (0, list(enumerate(log)))))
    return steps


def build_log(steps: list[LogStep]) -> tuple[History, list[Ops]]:
    h = History()
    ops = []
    for process, f, arg in steps:
        if f == "append":
            ops.append(run(h, process, f, "l", arg[0], offset=arg[1]))
        elif f == "seek":
            ops.append(run(h, process, f, "l", offset=arg))
        else:
            start, records = arg
            ops.append(run(h, process, f, "l", value=records, start=start))
    return h, ops


@settings(max_examples=200, deadline=None)
@given(log_runs())
def test_a_correct_log_history_is_always_valid(steps: list[LogStep]) -> None:
    h, _ = build_log(steps)
    for guarantee in ALL:
        verdict = log_anomalies(h, guarantee)
        if not verdict.counts["attempted"] and not verdict.counts["read"]:
            assert set(verdict.anomalies) == {"empty-history"}  # nothing to judge is not a pass
            continue
        assert verdict.valid, verdict.explain()
        assert not verdict.tolerated, verdict.explain()
    assert per_key_order(h).valid


@settings(max_examples=200, deadline=None)
@given(log_runs(), st.data())
def test_a_record_missing_from_a_poll_is_always_a_poll_skip(steps: list[LogStep], data: st.DataObject) -> None:
    polls = [i for i, (_, f, arg) in enumerate(steps) if f == "poll" and len(arg[1]) >= 2]
    assume(polls)
    i = data.draw(st.sampled_from(polls))
    process, f, (start, records) = steps[i]
    missing = data.draw(st.integers(0, len(records) - 2))  # not the last: the skip shows in this poll
    changed = list(steps)
    changed[i] = (process, f, (start, records[:missing] + records[missing + 1 :]))
    h, ops = build_log(changed)
    anomalies = log_anomalies(h, EO).anomalies
    found = anomalies.get("poll-skip", []) + anomalies.get("int-poll-skip", [])
    assert any(set(ops[i]) <= indices(a) and len(a.witness) <= 6 for a in found)
