"""Jepsen's own checker test histories, replayed against our checkers.

Each test names the Jepsen test it translates. The references are public:

- ``KAFKA``: jepsen-io/jepsen ``jepsen/test/jepsen/tests/kafka_test.clj`` at commit
  68d1750c54ab4a2b7404bcb8980b02c6c2e18c76 (the Kafka workload's analysis);
- ``CHECKER``: jepsen-io/jepsen ``jepsen/test/jepsen/checker_test.clj`` at commit
  093eb7d27067753df8cd2a5979abfeabd0f61313 (the total-queue checker).

Translation: a Jepsen op is a transaction of micro-operations over several logs; ours is one
operation on one log. Each micro-op becomes one op of the same process, all sharing a ``txn``
id and completing with the transaction's type (``ok`` / ``info`` / ``fail``); a ``send`` is our
``append`` (with the offset Jepsen's completion shows, if any), a ``poll`` of several logs one
``poll`` per log. Values are identities per log, as in Jepsen.

Deliberate differences, each pinned by a test below:

- names: Jepsen's ``G1a`` (a read of a failed write) is our ``unexpected``; Jepsen's total-queue
  ``duplicated`` is invalid under every guarantee, ours only where the guarantee forbids it
  (at-least-once tolerates it; exactly-once agrees with Jepsen);
- an empty total-queue history is valid in Jepsen and invalid here (``empty-history``):
  nothing was checked, so the check must not pass (the Kafka checker already agrees);
- not implemented: ``G0`` / ``G1c`` cycles, ``precommitted-read`` and real-time lag. Jepsen
  itself allows ``G0`` in the Kafka model, ``precommitted-read`` is specific to Kafka's
  invisible-until-commit sends, and no prism history records a transaction that both reads
  and writes logs, which ``G1c`` needs; lag is measured by the CDC and CQRS patterns.
"""

from __future__ import annotations

from typing import Any

import pytest

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.jepsen.checkers import Anomaly, Verdict, log_anomalies, total_queue
from prism_testkit.jepsen.history import History

ALO = DeliveryGuarantee.AT_LEAST_ONCE
EO = DeliveryGuarantee.EXACTLY_ONCE

Mop = tuple[Any, ...]  # ("send", log, value[, offset]) or ("poll", log, [(offset, value), ...])


class Recorder:
    """Writes Jepsen transactions into a :class:`History`, one micro-op per op."""

    def __init__(self) -> None:
        self.history = History()
        self.count = 0

    def txn(self, process: Any, outcome: str, *mops: Mop) -> str:
        self.count += 1
        txn = f"t{self.count}"
        for mop in mops:
            f, log = mop[0], mop[1]
            if f == "send":
                handle = self.history.invoke(process, "append", log, mop[2], txn=txn)
                offset = mop[3] if len(mop) > 3 else None
                if outcome == "ok":
                    handle.ok(offset=offset)
                elif outcome == "info":
                    handle.info("indefinite", offset=offset)
                else:
                    handle.fail("aborted")
            else:
                handle = self.history.invoke(process, "poll", log, txn=txn)
                records = tuple(tuple(r) for r in mop[2])
                if outcome == "ok":
                    handle.ok(value=records)
                elif outcome == "info":
                    handle.info("indefinite", value=records)
                else:
                    handle.fail("aborted")
        return txn

    def op(self, process: Any, f: str, outcome: str = "ok", **kwargs: Any) -> None:
        handle = self.history.invoke(process, f, kwargs.get("key"), kwargs.get("value"))
        getattr(handle, outcome)()

    def check(self, guarantee: DeliveryGuarantee = ALO) -> Verdict:
        return log_anomalies(self.history, guarantee)


def found(verdict: Verdict, name: str) -> list[Anomaly]:
    return verdict.anomalies.get(name, []) + verdict.tolerated.get(name, [])


# --- KAFKA: inconsistent-offsets-test -------------------------------------------------------


def test_an_unknown_send_conflicts_only_once_a_read_proves_it_committed() -> None:
    r = Recorder()
    r.txn(0, "info", ("send", "x", 1, 0), ("send", "y", 1))
    r.txn(1, "ok", ("send", "x", 2, 0))
    assert not found(r.check(), "inconsistent-offsets")
    r.txn(2, "ok", ("poll", "y", [(5, 1)]))
    (conflict,) = found(r.check(), "inconsistent-offsets")
    assert conflict.data["key"] == "x"
    assert conflict.data["offset"] == 0
    assert set(conflict.data["values"]) == {1, 2}


# --- KAFKA: g1a-test ---------------------------------------------------------------------------


def test_reading_a_failed_write_is_g1a_which_we_call_unexpected() -> None:
    r = Recorder()
    r.txn(0, "fail", ("send", "x", 2), ("send", "y", 3))
    r.txn(1, "ok", ("poll", "x", [(0, 2)]))
    (anomaly,) = found(r.check(), "unexpected")
    assert anomaly.data == {"key": "x", "value": 2}


# --- KAFKA: lost-write-test ------------------------------------------------------------------


def test_lost_write_consistent() -> None:
    r = Recorder()
    r.txn(0, "ok", ("send", "x", "a", 0))
    r.txn(0, "ok", ("send", "x", "b", 1), ("send", "x", "d", 3))
    r.txn(1, "info", ("send", "x", "c"))
    r.txn(0, "ok", ("poll", "x", [(2, "c")]))
    lost = found(r.check(), "lost-write")
    assert sorted((a.data["value"], a.data["offset"]) for a in lost) == [("a", 0), ("b", 1)]


def test_lost_write_inconsistent() -> None:
    r = Recorder()
    r.txn(0, "ok", ("send", "x", "a", 0))
    r.txn(0, "ok", ("send", "x", "b", 0), ("send", "x", "c", 2))
    r.txn(0, "ok", ("poll", "x", [(0, "b"), (2, "c")]))
    lost = found(r.check(), "lost-write")
    assert [a.data["value"] for a in lost] == ["a"]


def test_lost_write_atomic_must_have_committed() -> None:
    def history(with_poll_of_a: bool) -> Recorder:
        r = Recorder()
        r.txn(0, "info", ("send", "x", "a"), ("send", "y", "b", 0))
        r.txn(1, "info", ("send", "y", "c"))
        if with_poll_of_a:
            r.txn(2, "ok", ("poll", "x", [(0, "a")]))
        r.txn(3, "ok", ("poll", "y", [(1, "c")]))
        return r

    assert not found(history(False).check(), "lost-write")  # nothing proves b's transaction committed
    (lost,) = found(history(True).check(), "lost-write")
    assert lost.data["key"] == "y"
    assert lost.data["value"] == "b"


# --- KAFKA: poll-skip-test ---------------------------------------------------------------------


def poll_skip_history(between_first: tuple[str, Any] | None, between_second: tuple[str, Any] | None) -> Recorder:
    r = Recorder()
    r.txn(0, "ok", ("poll", "x", [(1, "a"), (2, "b")]))
    r.txn(1, "ok", ("poll", "x", [(3, "c")]))
    if between_first:
        r.op(0, between_first[0], value=between_first[1])
    r.txn(0, "ok", ("poll", "x", [(4, "d")]))
    if between_second:
        f, (keys, outcome) = between_second
        r.op(0, f, outcome, value=keys)
    r.txn(2, "ok", ("send", "x", "f", 6))
    r.txn(0, "ok", ("poll", "x", [(7, "g")]))
    r.txn(3, "info", *(("send", "x", v) for v in "abcdg"))
    return r


def skips(verdict: Verdict) -> list[tuple[int, list[int]]]:
    return [(a.data["offset"], a.data["skipped"]) for a in found(verdict, "poll-skip")]


def test_poll_skip() -> None:
    assert skips(poll_skip_history(None, None).check()) == [(4, [3]), (7, [6])]


def test_a_subscription_that_no_longer_covers_the_log_allows_skips() -> None:
    r = poll_skip_history(("subscribe", ["y"]), ("assign", (["y"], "info")))
    assert skips(r.check()) == []


def test_a_subscription_that_still_covers_the_log_keeps_the_position() -> None:
    r = poll_skip_history(("subscribe", ["x", "y"]), ("assign", (["x", "y"], "ok")))
    assert skips(r.check()) == [(4, [3]), (7, [6])]


# A re-subscription between two ops of process 0, and how many anomalies Jepsen then reports:
# one that no longer covers log x forgets its state there, one that still covers x keeps it.
REASSIGNMENTS = [
    (None, 1),
    (("subscribe", ["y"]), 0),
    (("assign", ["y"]), 0),
    (("subscribe", ["x", "y"]), 1),
    (("assign", ["x", "y"]), 1),
]


# --- KAFKA: nonmonotonic-poll-test ------------------------------------------------------------


@pytest.mark.parametrize(("between", "expected"), REASSIGNMENTS)
def test_nonmonotonic_poll(between: tuple[str, list[str]] | None, expected: int) -> None:
    r = Recorder()
    r.txn(0, "ok", *(("send", "x", v) for v in "abcd"))
    r.txn(0, "ok", ("poll", "x", [(1, "a"), (2, "b"), (3, "c")]))
    if between:
        r.op(0, between[0], value=between[1])
    r.txn(0, "ok", ("poll", "x", [(2, "b"), (3, "c"), (4, "d")]))
    anomalies = found(r.check(), "nonmonotonic-poll")
    assert len(anomalies) == expected
    if anomalies:
        assert (anomalies[0].data["expected"], anomalies[0].data["offset"]) == (4, 2)


# --- KAFKA: nonmonotonic-send-test -----------------------------------------------------------


@pytest.mark.parametrize(("between", "expected"), REASSIGNMENTS)
def test_nonmonotonic_send(between: tuple[str, list[str]] | None, expected: int) -> None:
    r = Recorder()
    r.txn(0, "ok", ("send", "x", "c", 3), ("send", "x", "d", 4))
    if between:
        r.op(0, between[0], value=between[1])
    r.txn(0, "ok", ("send", "x", "a", 1), ("send", "x", "b", 2))
    anomalies = found(r.check(), "nonmonotonic-send")
    assert [a.data["offsets"] for a in anomalies] == [[4, 1]] * expected


# --- KAFKA: int-poll-skip-test, int-nonmonotonic-poll-test ------------------------------------


def test_int_poll_skip_within_a_poll_and_between_polls_of_one_transaction() -> None:
    r = Recorder()
    r.txn(1, "info", ("send", "x", "a"), ("send", "x", "b"), ("send", "x", "d"))
    r.txn(0, "ok", ("poll", "x", [(1, "a"), (4, "d")]))
    r.op(0, "assign", value=["y"])  # Jepsen's ops are separate transactions: forget between them
    r.op(0, "assign", value=["x"])
    r.txn(0, "ok", ("poll", "x", [(1, "a")]), ("poll", "x", [(4, "d")]))
    r.op(0, "assign", value=["y"])
    r.op(0, "assign", value=["x"])
    r.txn(0, "ok", ("poll", "x", [(2, "b")]))
    internal = found(r.check(), "int-poll-skip")
    assert [(a.data["offset"], a.data["skipped"]) for a in internal] == [(4, [2]), (4, [2])]


def test_int_nonmonotonic_poll() -> None:
    r = Recorder()
    r.txn(0, "info", ("send", "x", "a"), ("send", "x", "b"), ("send", "x", "c"))
    r.txn(0, "ok", ("poll", "x", [(3, "c"), (1, "a")]))
    r.op(0, "assign", value=["y"])
    r.op(0, "assign", value=["x"])
    r.txn(0, "ok", ("poll", "x", [(2, "b"), (3, "c")]), ("poll", "x", [(3, "c")]))
    internal = found(r.check(), "int-nonmonotonic-poll")
    assert [(a.data["expected"], a.data["offset"]) for a in internal] == [(4, 1), (4, 3)]


# --- KAFKA: int-send-skip-test, int-nonmonotonic-send-test -------------------------------------


def test_int_send_skip_with_an_offset_inferred_from_a_read() -> None:
    r = Recorder()
    r.txn(0, "ok", ("send", "x", "a", 1), ("send", "x", "c"))
    r.txn(1, "info", ("send", "x", "b"))
    r.txn(2, "ok", ("poll", "x", [(2, "b"), (3, "c")]))
    verdict = r.check(EO)
    (skip,) = found(verdict, "int-send-skip")
    assert skip.data["skipped"] == [2]
    assert "int-send-skip" not in verdict.anomalies  # allowed by default, as in Jepsen: writes interleave


def test_int_nonmonotonic_send_direct_and_inferred() -> None:
    r = Recorder()
    r.txn(0, "ok", ("send", "x", "c", 3), ("send", "x", "a", 1))
    r.txn(0, "info", ("send", "y", "d"), ("send", "y", "b"))
    r.txn(1, "info", ("send", "y", "c"))
    r.txn(0, "ok", ("poll", "y", [(2, "b"), (3, "c"), (4, "d")]))
    anomalies = found(r.check(), "int-nonmonotonic-send")
    assert [(a.data["key"], a.data["offsets"]) for a in anomalies] == [("x", [3, 1]), ("y", [4, 2])]


# --- KAFKA: duplicate-test, empty-history-test, unseen-test -----------------------------------


def test_duplicate() -> None:
    r = Recorder()
    r.txn(0, "ok", ("send", "x", "a", 1))
    r.txn(1, "info", ("send", "x", "b"))
    r.txn(2, "ok", ("poll", "x", [(2, "b"), (3, "a")]))
    (duplicate,) = found(r.check(), "duplicate")
    assert duplicate.data["value"] == "a"
    assert duplicate.data["offsets"] == [1, 3]


def test_a_history_of_only_assignments_is_invalid() -> None:
    r = Recorder()
    r.op(0, "assign", value=["x"])
    verdict = r.check()
    assert set(verdict.anomalies) == {"empty-history"}


def test_unseen_at_the_end_is_an_error_and_everything_read_is_none() -> None:
    r = Recorder()
    r.txn(0, "ok", ("poll", "x", []))
    r.txn(0, "ok", ("send", "x", "a", 0), ("send", "x", "b", 1))
    r.txn(0, "ok", ("poll", "x", [(0, "a")]))
    assert [a.data["value"] for a in r.check().anomalies["unseen"]] == ["b"]
    r.txn(0, "ok", ("poll", "x", [(1, "b")]))
    assert r.check().valid


# --- CHECKER: total-queue-test -----------------------------------------------------------------


def test_total_queue_sane_recovers_an_unacknowledged_enqueue() -> None:
    h = History()
    h.invoke(1, "enqueue", "q", 1)  # never completes
    h.invoke(2, "enqueue", "q", 2).ok()
    h.invoke(3, "dequeue", "q").ok(value=1)
    h.invoke(3, "dequeue", "q").ok(value=2)
    verdict = total_queue(h, EO)
    assert verdict.valid, verdict.explain()
    assert verdict.notes == {"recovered": [1]}


def test_total_queue_pathological() -> None:
    h = History()
    h.invoke(1, "enqueue", "q", "hung")
    h.invoke(2, "enqueue", "q", "enqueued").ok()
    h.invoke(3, "enqueue", "q", "dup").ok()
    h.invoke(4, "dequeue", "q")
    h.invoke(5, "dequeue", "q").ok(value="wtf")
    h.invoke(6, "dequeue", "q").ok(value="dup")
    h.invoke(7, "dequeue", "q").ok(value="dup")
    exactly_once = total_queue(h, EO)
    names = {name: [a.data["value"] for a in group] for name, group in exactly_once.anomalies.items()}
    assert names == {"lost": ["enqueued"], "unexpected": ["wtf"], "duplicated": ["dup"]}
    at_least_once = total_queue(h, ALO)  # deliberate difference: the guarantee decides about duplicates
    assert set(at_least_once.anomalies) == {"lost", "unexpected"}
    assert set(at_least_once.tolerated) == {"duplicated"}


def test_an_empty_total_queue_history_is_invalid_unlike_jepsen() -> None:
    assert set(total_queue(History(), ALO).anomalies) == {"empty-history"}


def test_total_queue_must_have_committed() -> None:
    """Not in checker_test.clj: the Kafka workload's rule applied to queue transactions."""
    h = History()
    h.invoke("w", "enqueue", "q", "a", txn="t").info("commit timed out")
    h.invoke("w", "enqueue", "q", "b", txn="t").info("commit timed out")
    h.invoke("c", "drain", "q").ok(value=("a",))
    (lost,) = total_queue(h, ALO).anomalies["lost"]
    assert lost.data == {"key": "q", "value": "b", "txn": "t"}
