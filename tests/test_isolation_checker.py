"""The isolation checker (:mod:`prism_testkit.stateful.isolation`): every anomaly it names,
serializable histories it must pass, a table of wrong judges it must not be, and a few of
Elle's own test histories translated.

Histories are written in a small language of our own, after the one Elle's tests use: ``ax1``
appends 1 to ``x``, ``rx12`` reads ``x`` as ``[1, 2]``, ``rx`` reads ``x`` empty; one string is
one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from prism_testkit.stateful import isolation
from prism_testkit.stateful.checkers import EMPTY, Verdict, judged_nothing
from prism_testkit.stateful.history import History
from prism_testkit.stateful.isolation import FINAL, check_isolation
from prism_testkit.stateful.timeline import anomaly_marks

_MOP = re.compile(r"([ar])([a-z])(\d*)")


def mops(spec: str) -> tuple[tuple[str, str, Any], ...]:
    """``"rx12ay3"`` -> (("r", "x", (1, 2)), ("append", "y", 3))."""
    found: list[tuple[str, str, Any]] = []
    for f, key, digits in _MOP.findall(spec):
        if f == "a":
            found.append(("append", key, int(digits)))
        else:
            found.append(("r", key, tuple(int(d) for d in digits)))
    assert "".join(f"{f}{k}{d}" for f, k, d in _MOP.findall(spec)) == spec, f"cannot read {spec!r}"
    return tuple(found)


def txn(history: History, spec: str, outcome: str = "ok", process: str | None = None) -> None:
    """One transaction, invoked and completed at once (the checker does not read time)."""
    done = mops(spec)
    asked = tuple((f, k, None if f == "r" else v) for f, k, v in done)
    handle = history.invoke(process or f"c{len(history)}", "txn", value=asked)
    if outcome == "ok":
        handle.ok(value=done)
    elif outcome == "fail":
        handle.fail("TransactionAborted")
    else:
        handle.info("TimeoutError")


def history_of(*specs: str | tuple[str, str]) -> History:
    """Transactions in order; ``(spec, outcome)`` for one that failed or is unknown, and
    ``(spec, "final")`` for a read made once every client stopped."""
    history = History()
    for spec in specs:
        if isinstance(spec, tuple):
            text, outcome = spec
            if outcome == "final":
                txn(history, text, process=FINAL)
            else:
                txn(history, text, outcome)
        else:
            txn(history, spec)
    return history


def names(verdict: Verdict) -> set[str]:
    return set(verdict.anomalies)


def message(verdict: Verdict, name: str) -> str:
    return verdict.anomalies[name][0].message


# --- serializable histories --------------------------------------------------------------


@pytest.mark.parametrize(
    "specs",
    [
        ("ax1", "rx1", "ax2", "rx12"),
        ("rx", "ax1", "rx1ay1", "rx1ry1"),
        ("rxryax1", "rx1ryay2", ("rx1", "final"), ("ry2", "final")),  # write skew's shape, serialised
        ("ax1ax2", "rx12", "rx12ax3rx123"),  # own appends read back
        (("ax1", "fail"), "rx", ("ax2", "info"), "rx"),  # nobody saw the failed or the unknown append
    ],
    ids=["sequential", "reads-between", "write-skew-shape-serialised", "own-appends", "failed-and-unknown"],
)
def test_a_serializable_history_is_valid(specs: Sequence[str | tuple[str, str]]) -> None:
    verdict = check_isolation(history_of(*specs))
    assert verdict.valid, verdict.explain()


def test_a_history_without_a_committed_read_judges_nothing() -> None:
    for history in (History(), history_of("ax1", "ay2"), history_of(("rx1", "fail"))):
        verdict = check_isolation(history)
        assert names(verdict) == {EMPTY}
        assert judged_nothing([verdict])


# --- each anomaly, caught and named ------------------------------------------------------


def test_write_skew_is_g2_item_with_the_cycle_explained() -> None:
    # two transactions each read x and y (both empty) and each append to one of them
    history = history_of("rxryax1", "rxryay2", ("rx1", "final"), ("ry2", "final"))
    verdict = check_isolation(history)
    assert names(verdict) == {"G2-item"}, verdict.explain()
    text = message(verdict, "G2-item")
    assert text.startswith("write skew (G2-item): T0 -> T2 -> T0: ")
    assert "T0 read 'y' = [], without 2, which T2 appended next (rw)" in text
    assert "T2 read 'x' = [], without 1, which T0 appended next (rw)" in text
    anomaly = verdict.anomalies["G2-item"][0]
    assert anomaly.data["cycle"] == ["T0", "T2"]
    assert [op.index for op in anomaly.witness] == [0, 1, 2, 3]  # both transactions, nothing else


def test_read_skew_is_g_single() -> None:
    # a reader sees T0's append to x but not its append to y
    verdict = check_isolation(history_of("ax1ay1", "rx1ry", ("ry1", "final")))
    assert names(verdict) == {"G-single"}, verdict.explain()
    text = message(verdict, "G-single")
    assert text.startswith("read skew (G-single): ")
    assert "T0 appended 1 to 'x', which T2 read ([1]) (wr)" in text
    assert "T2 read 'y' = [], without 1, which T0 appended next (rw)" in text


def test_a_write_cycle_is_g0() -> None:
    verdict = check_isolation(history_of("ax1ay1", "ax2ay2", "rx12ry21"))
    assert "G0" in names(verdict), verdict.explain()
    assert message(verdict, "G0").startswith("write cycle (G0): ")
    assert "(ww)" in message(verdict, "G0")
    assert "(wr)" not in message(verdict, "G0")


def test_circular_information_flow_is_g1c() -> None:
    verdict = check_isolation(history_of("ax1ry1", "ax2ay1", "rx12ry1"))
    assert names(verdict) == {"G1c"}, verdict.explain()
    assert "(wr)" in message(verdict, "G1c")
    assert "(ww)" in message(verdict, "G1c")


def test_a_read_of_an_aborted_append_is_g1a() -> None:
    verdict = check_isolation(history_of(("ax1", "fail"), "rx1"))
    assert names(verdict) == {"G1a"}, verdict.explain()
    assert (
        message(verdict, "G1a")
        == "aborted read (G1a): T2 (c2) read 'x' = [1], but 1 was appended by T0 (c0), which aborted"
    )


def test_a_read_of_an_intermediate_state_is_g1b() -> None:
    verdict = check_isolation(history_of("ax1ax2", "rx1"))
    # it is also read skew: the reader saw one of the transaction's appends and not the other
    assert names(verdict) == {"G1b", "G-single"}, verdict.explain()
    assert "the state after 1 alone was never committed" in message(verdict, "G1b")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rx12ax3rx12", "[1, 2, 3]"),  # its own append missing
        ("rx12ax3rx023", "[1, 2, 3]"),  # a different prefix
        ("rx12ax3rx1234", "[1, 2, 3]"),  # an append from elsewhere, mid-transaction
        ("ax3rx", "[..., 3]"),  # its append missing from a read of an unknown state
        ("rx1rx12", "[1]"),  # two reads disagree (a non-repeatable read)
    ],
)
def test_reads_that_disagree_within_a_transaction_are_internal(spec: str, expected: str) -> None:
    verdict = check_isolation(history_of("ax1", "ax2", "ax0", "ax4", spec))
    assert "internal" in names(verdict), verdict.explain()
    assert message(verdict, "internal").endswith(f"where its own earlier reads and appends say {expected}")


def test_two_read_modify_writes_from_one_version_are_a_lost_update() -> None:
    # both read x = [1] and appended (the counter shape); the second overwrote the first
    verdict = check_isolation(history_of("ax1", "rx1ax2", "rx1ax3", ("rx13", "final")))
    assert {"lost-update", "lost"} <= names(verdict), verdict.explain()
    assert message(verdict, "lost-update") == (
        "lost update: two read-modify-write transactions of 'x' both committed from the same version [1]: "
        "T2 (c2) appended [2] and T4 (c4) appended [3]; in a serial order each would have read the other's append"
    )
    assert message(verdict, "lost").startswith("lost write: T2 (c2) appended 2 to 'x' and committed, but the final")


def test_reads_of_which_neither_is_a_prefix_are_an_incompatible_order() -> None:
    verdict = check_isolation(history_of("ax1", "ax2", "ax3", "rx12", "rx13"))
    assert "incompatible-order" in names(verdict), verdict.explain()


def test_an_element_read_twice_or_never_appended_is_named() -> None:
    verdict = check_isolation(history_of("ax1", "rx11", "rx19"))
    assert {"duplicate-elements", "unexpected"} <= names(verdict), verdict.explain()


def test_an_unknown_transaction_whose_append_was_read_committed() -> None:
    # T0's outcome is unknown, but its append to x was read: it committed, and the reader saw
    # only half of it (read skew through a transaction of unknown outcome)
    verdict = check_isolation(history_of(("ax1ay1", "info"), "rx1ry"))
    assert names(verdict) == {"G-single"}, verdict.explain()


def test_an_aborted_transactions_reads_prove_nothing() -> None:
    verdict = check_isolation(history_of("ax1ay1", ("rx1ry", "fail"), "rx1ry1"))
    assert verdict.valid, verdict.explain()


def test_snapshot_isolation_tolerates_write_skew_only() -> None:
    skew = check_isolation(history_of("rxryax1", "rxryay2", ("rx1", "final"), ("ry2", "final")), "snapshot-isolation")
    assert skew.valid, skew.explain()
    assert set(skew.tolerated) == {"G2-item"}
    assert skew.checker == "isolation (snapshot-isolation)"
    read_skew = check_isolation(history_of("ax1ay1", "rx1ry", ("ry1", "final")), "snapshot-isolation")
    assert names(read_skew) == {"G-single"}


def test_the_timeline_marks_the_cycles_transactions() -> None:
    history = history_of("rxryax1", "rxryay2", ("rx1", "final"), ("ry2", "final"))
    verdict = check_isolation(history)
    (mark,) = anomaly_marks(history, [verdict])
    assert (mark.name, mark.ops, mark.smallest) == ("G2-item", (0, 2), True)
    assert mark.message.startswith("write skew (G2-item): ")


def test_the_shortest_cycle_is_the_evidence() -> None:
    # T0 -> T2 directly (wr on x) and through T4 (wr then ww); the cycle back is one rw edge
    history = history_of("ax1ay1", "rx1ry", "rx1az1", ("ry1", "final"), ("rz1", "final"))
    verdict = check_isolation(history)
    (anomaly,) = verdict.anomalies["G-single"]
    assert anomaly.data["cycle"] == ["T0", "T2"]


# --- wrong judges the checker must not be ------------------------------------------------


def _without_kind(kind: str) -> Callable[..., Any]:
    real = isolation._edges

    def edges(*args: Any) -> list[isolation.Edge]:
        return [e for e in real(*args) if e.kind != kind]

    return edges


def _shortest_read_order(key: Any, reads: list[tuple[Any, ...]], writers: Any) -> tuple[Any, ...]:
    return min(reads, key=len) if reads else ()


def _every_transaction_committed(history: History, f: str = "txn") -> list[isolation.Txn]:
    from prism_testkit.stateful.history import OpType

    return [isolation.Txn(t.pair, t.mops, OpType.OK) for t in REAL_TRANSACTIONS(history, f)]


def _any_rw_is_g2(cycle: Sequence[isolation.Edge]) -> str:
    kinds = [e.kind for e in cycle]
    return "G2-item" if "rw" in kinds else ("G1c" if "wr" in kinds else "G0")


REAL_TRANSACTIONS = isolation.transactions

# (wrong judge, what it replaces, the replacement, a history it misjudges, the anomaly it misses)
WRONG_JUDGES: list[tuple[str, str, Callable[..., Any], tuple[str | tuple[str, str], ...], str]] = [
    (
        "ignores rw edges",
        "_edges",
        _without_kind("rw"),
        ("rxryax1", "rxryay2", ("rx1", "final"), ("ry2", "final")),
        "G2-item",
    ),
    ("ignores wr edges", "_edges", _without_kind("wr"), ("ax1ry1", "ax2ay1", "rx12ry1"), "G1c"),
    ("ignores ww edges", "_edges", _without_kind("ww"), ("ax1ay1", "ax2ay2", "rx12ry21"), "G0"),
    # the shortest read is [1]: the order 1, 2 (and T1's ww edge to T2) is never seen
    (
        "orders versions by the shortest read",
        "_version_order",
        _shortest_read_order,
        ("ax1ay1", "ax2ry", "rx1", "rx12", ("ry1", "final")),
        "G-single",
    ),
    (
        "takes unknown transactions as never committed",
        "_committed",
        lambda txns: [t for t in txns if t.ok],
        (("ax1ay1", "info"), "rx1ry"),
        "G-single",
    ),
    (
        "takes failed transactions as committed",
        "transactions",
        _every_transaction_committed,
        (("ax1", "fail"), "rx1"),
        "G1a",
    ),
    (
        "names any cycle with an rw edge write skew",
        "classify",
        _any_rw_is_g2,
        ("ax1ay1", "rx1ry", ("ry1", "final")),
        "G-single",
    ),
    (
        "leaves read-modify-writes unchecked",
        "_lost_update",
        lambda *args: None,
        ("ax1", "rx1ax2", "rx1ax3"),
        "lost-update",
    ),
    (
        "leaves a transaction's own reads unchecked",
        "_internal",
        lambda *args: None,
        ("ax1", "rx1rx12", "ax2"),
        "internal",
    ),
    ("leaves the final read unchecked", "_lost", lambda *args: None, ("ax1", "ax2", ("rx2", "final")), "lost"),
]


@pytest.mark.parametrize(
    ("judge", "target", "replacement", "specs", "missed"), WRONG_JUDGES, ids=[row[0] for row in WRONG_JUDGES]
)
def test_a_wrong_judge_misses_what_the_checker_names(
    monkeypatch: pytest.MonkeyPatch,
    judge: str,
    target: str,
    replacement: Callable[..., Any],
    specs: tuple[str | tuple[str, str], ...],
    missed: str,
) -> None:
    history = history_of(*specs)
    assert missed in names(check_isolation(history)), f"the checker itself misses {missed}"
    monkeypatch.setattr(isolation, target, replacement)
    assert missed not in names(check_isolation(history)), f"{judge!r} is no wrong judge of this history"


# --- Elle's own histories ----------------------------------------------------------------
#
# Translated from jepsen-io/elle, test/elle/list_append_test.clj at commit
# 021fb14efcc41d1c216d468bb50cde7ebd2d5cd2 (its ``checker-test``, ``graph-test`` and
# ``internal-cases-test`` blocks, named in each case). Each transaction there is a completed
# op written in the same language as ours; the anomalies are Elle's verdict for it. Deliberate
# differences: Elle names ``G-single-item`` what we call ``G-single``; Elle reports the empty
# transaction graph of the G1a history as its own anomaly, we judge it by its read.

ELLE = [
    ("checker-test G0", ("ax1ay1", "ax2ay2", "rx12ry21"), {"G0"}),
    ("checker-test G1a", (("ax1", "fail"), "rx1"), {"G1a"}),
    ("checker-test G1b", ("ax1ax2", "rx1"), {"G1b", "G-single"}),
    ("checker-test G1c", ("ax1ry1", "ax2ay1", "rx12ry1"), {"G1c"}),
    ("checker-test G-single", ("ax1ay1", "ax2ry", "rx12"), {"G-single"}),
    ("checker-test G2", ("ax1ry", "ay1rx"), {"G2-item"}),
    (
        "checker-test contradictory read orders",
        ("ax1ry1", "ax2", "ax3ay1", "rx13", "rx123"),
        {"G1c", "incompatible-order"},
    ),
    ("graph-test serializable figure 3 from Adya, Liskov, O'Neil", ("az1ax1ay1", "rx1ay2", "ry12az3", "rz13"), set()),
    ("graph-test read empty, append, read", ("rx", "ax1", "rx1"), set()),
    ("internal-cases-test read-append-read (stale)", ("ax1", "ax2", "rx12ax3rx12"), {"internal"}),
    ("internal-cases-test append-read (short read)", ("ax3rx",), {"internal"}),
]


@pytest.mark.parametrize(("block", "specs", "expected"), ELLE, ids=[row[0] for row in ELLE])
def test_elles_histories_are_judged_as_elle_judges_them(
    block: str, specs: tuple[str | tuple[str, str], ...], expected: set[str]
) -> None:
    verdict = check_isolation(history_of(*specs))
    assert names(verdict) == expected, verdict.explain()
