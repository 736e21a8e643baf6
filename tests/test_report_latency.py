"""The latency samples a stateful test leaves for the report's plot
(:mod:`prism_testkit.stateful.latency`): client operations with their start, latency and
outcome, faults as bands, nothing of the nemesis counted as an operation."""

from __future__ import annotations

from collections.abc import Iterator

from prism_testkit.stateful.history import History
from prism_testkit.stateful.latency import MOST_OPS, Series, latency_property
from prism_testkit.stateful.timeline import fault_bands

MS = 1_000_000


def ticking(step: int = MS) -> Iterator[int]:
    return iter(range(0, 10**15, step))


def test_operations_carry_start_latency_and_outcome_and_faults_their_band() -> None:
    clock = ticking()
    h = History(clock=lambda: next(clock))
    h.invoke("writer", "write", "k", 1).ok()  # 0 -> 1 ms
    kill = h.invoke("nemesis", "kill", "memstore", None)  # 2 ms
    slow = h.invoke("writer", "write", "k", 2)  # 3 ms
    kill.ok()  # 4 ms
    slow.fail("refused")  # 5 ms
    h.invoke("reader", "read", "k", None)  # 6 ms, never completed

    found = latency_property(h, fault_bands(h), healed_at=10 * MS)

    assert found["ops"] == [[0.0, 1.0, "ok", "write"], [3.0, 2.0, "fail", "write"], [6.0, 4.0, "info", "read"]]
    assert found["faults"] == [[2.0, 4.0, "kill", "kill memstore"]]
    assert found["span_ms"] == 10.0


def test_a_long_example_keeps_at_most_its_share_of_operations_spread_over_it() -> None:
    clock = ticking()
    h = History(clock=lambda: next(clock))
    for n in range(3 * MOST_OPS):
        h.invoke("writer", "write", "k", n).ok()

    ops = latency_property(h, [])["ops"]

    assert len(ops) == MOST_OPS
    assert ops[0][0] == 0.0
    assert ops[-1][0] > 0.9 * (6 * MOST_OPS - 2)  # the last third is there too


def test_an_empty_history_has_nothing_to_plot() -> None:
    assert latency_property(History(), []) == {"ops": [], "faults": [], "span_ms": 0.0}


def test_a_passing_tests_examples_are_laid_end_to_end() -> None:
    series = Series()
    for _ in range(2):  # a simulated example's clock starts again at 0
        h = History(clock=ticking().__next__)
        h.invoke("writer", "write", "k", 1).ok()
        h.invoke("nemesis", "pause", "memstore", None).ok()
        h.invoke("nemesis", "resume", "memstore", None).ok()
        series.add(h, fault_bands(h), healed_at=None)

    found = series.as_property()

    assert [op[0] for op in found["ops"]] == [0.0, 5.0]  # the second after the first's 5 ms
    assert [band[:3] for band in found["faults"]] == [[2.0, 5.0, "pause"], [7.0, 10.0, "pause"]]
    assert found["span_ms"] == 10.0
    assert found["examples"] == 2
