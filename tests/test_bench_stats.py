"""The benchmarks' statistics and their comparison mode: pure functions on given numbers
(nothing here reads a clock or times anything)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from benchmarks import growth, run
from benchmarks.stats import (
    NO_DIFFERENCE,
    Spread,
    classify,
    compare,
    compare_files,
    interleaved,
    loglog_slope,
    ratio_fields,
    ratios,
    summarize,
    trial_order,
    verdict,
)
from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.checkers import log_anomalies, total_queue


def test_summarize_gives_median_min_max_and_quartiles() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.low, s.high, s.q1, s.q3, s.trials) == (3.0, 1.0, 5.0, 2.0, 4.0, 5)


def test_summarize_of_one_value_is_that_value_everywhere() -> None:
    assert summarize([1.5]) == Spread(1.5, 1.5, 1.5, 1.5, 1.5, 1)


def test_summarize_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_ratios_are_pattern_over_raw_per_trial() -> None:
    assert ratios([1.0, 2.0], [1.5, 2.0]) == [1.5, 1.0]
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.1, 1.2, 1.3], "1.20x slower"),
        ([0.9, 0.95, 1.2, 1.3, 1.4], NO_DIFFERENCE),  # the IQR holds 1.0, whatever the median says
        ([0.95, 1.0, 1.05], NO_DIFFERENCE),
        ([1.0, 1.0, 1.4, 1.5, 1.6], NO_DIFFERENCE),  # touching 1.0 is overlapping it
        ([0.5, 1.2, 1.25, 1.3, 3.0], "1.25x slower"),  # one disturbed trial per side does not hide it
        ([0.4, 0.5, 0.8], "2.00x faster"),
    ],
)
def test_verdict_says_no_measurable_difference_when_the_interquartile_range_holds_one(
    values: list[float], expected: str
) -> None:
    assert verdict(summarize(values)) == expected


def test_ratio_fields_keep_the_per_trial_ratios_and_the_spread() -> None:
    fields = ratio_fields([1.4, 1.2, 1.6])
    assert fields["time_ratio"] == 1.4
    assert (fields["ratio_min"], fields["ratio_max"], fields["trials"]) == (1.2, 1.6, 3)
    assert fields["ratios"] == [1.4, 1.2, 1.6]
    assert fields["verdict"] == "1.40x slower"


def test_trial_order_alternates_so_no_side_always_runs_first() -> None:
    assert [trial_order(["A", "B"], t) for t in range(4)] == [["A", "B"], ["B", "A"], ["A", "B"], ["B", "A"]]
    assert trial_order(["A", "B", "C"], 1) == ["B", "C", "A"]


def test_interleaved_runs_every_side_once_per_trial_in_alternating_order() -> None:
    calls: list[tuple[str, int]] = []

    async def side(name: str, trial: int) -> str:
        calls.append((name, trial))
        return f"{name}{trial}"

    measured = asyncio.run(interleaved(["raw", "pattern"], 3, side))
    assert calls == [("raw", 0), ("pattern", 0), ("pattern", 1), ("raw", 1), ("raw", 2), ("pattern", 2)]
    assert measured == {"raw": ["raw0", "raw1", "raw2"], "pattern": ["pattern0", "pattern1", "pattern2"]}
    with pytest.raises(ValueError):
        asyncio.run(interleaved(["raw"], 0, side))


def test_ratio_row_compares_time_per_operation_trial_by_trial() -> None:
    raw = [run.Sample(100, 1.0, []), run.Sample(100, 2.0, [])]  # a slow trial on both sides...
    pattern = [run.Sample(50, 0.6, []), run.Sample(50, 1.2, [])]  # ...cancels out in the ratio
    row = run.ratio_row("c", "raw", raw, "pattern", pattern)
    assert row["ratios"] == pytest.approx([1.2, 1.2])
    assert row["verdict"] == "1.20x slower"
    assert row["raw_rate"] == pytest.approx(75.0)


@pytest.mark.parametrize(
    ("before", "after", "higher_is_worse", "expected"),
    [
        ((1.0, 1.2), (1.3, 1.5), True, "regression"),
        ((1.0, 1.2), (1.1, 1.5), True, "within spread"),  # overlapping spreads are noise
        ((1.3, 1.5), (1.0, 1.2), True, "improvement"),
        ((100, 120), (60, 90), False, "regression"),  # a rate that fell beyond its spread
        ((100, 120), (130, 150), False, "improvement"),
        ((100, 120), (90, 110), False, "within spread"),
    ],
)
def test_classify_counts_a_change_only_beyond_both_spreads(
    before: tuple[float, float], after: tuple[float, float], higher_is_worse: bool, expected: str
) -> None:
    def spread(bounds: tuple[float, float]) -> Spread:
        low, high = bounds
        return Spread((low + high) / 2, low, high, low, high, 5)

    assert classify(spread(before), spread(after), higher_is_worse) == expected


def _ratio_row(combination: str, low: float, median: float, high: float) -> dict:
    return {
        "combination": combination,
        "raw": "transaction(put)",
        "pattern": "outbox",
        "time_ratio": median,
        "ratio_min": low,
        "ratio_max": high,
        "trials": 5,
    }


BEFORE = {
    "outbox": [_ratio_row("store=sqlite", 1.1, 1.2, 1.3), _ratio_row("store=memstore", 2.0, 2.5, 3.0)],
    "wal": [{"log": "sqlite", "writers": 64, "pattern": "g", "time_ratio": 0.6, "ratio_min": 0.5, "ratio_max": 0.7}],
    "operations": [{"backend": "sqlite", "operation": "kv.put", "rate": 1000.0, "rate_min": 900.0, "rate_max": 1100}],
    "growth": [{"measure": "log.read(1)", "backend": "sqlite", "size": 1000, "unit": "us/op", "cost": 50}],
}
AFTER = {
    "outbox": [
        _ratio_row("store=sqlite", 1.4, 1.5, 1.6),  # beyond the spread: a regression
        _ratio_row("store=memstore", 2.2, 2.4, 2.9),  # within it
        _ratio_row("store=postgres", 1.0, 1.1, 1.2),  # only after: not compared
    ],
    "wal": [{"log": "sqlite", "writers": 64, "pattern": "g", "time_ratio": 0.3, "ratio_min": 0.2, "ratio_max": 0.4}],
    "operations": [{"backend": "sqlite", "operation": "kv.put", "rate": 700.0, "rate_min": 650.0, "rate_max": 800}],
    "growth": [{"measure": "log.read(1)", "backend": "sqlite", "size": 1000, "unit": "us/op", "cost": 90}],
}


def test_compare_flags_regressions_beyond_the_spread_and_lists_them_first() -> None:
    changes = compare(BEFORE, AFTER)
    assert [(c.section, c.status) for c in changes] == [
        ("growth", "regression"),
        ("operations", "regression"),
        ("outbox", "regression"),
        ("wal", "improvement"),
        ("outbox", "within spread"),
    ]
    assert changes[2].row == "combination=store=sqlite raw=transaction(put) pattern=outbox"
    assert (changes[0].kind, changes[1].kind) == ("us/op", "ops/s")


def test_compare_of_a_file_with_itself_finds_nothing() -> None:
    assert {c.status for c in compare(BEFORE, BEFORE)} == {"within spread"}


def test_compare_rows_without_a_spread_use_their_single_value() -> None:
    old = {"outbox": [{"combination": "x", "raw": "r", "pattern": "p", "time_ratio": 1.2}]}
    new = {"outbox": [{"combination": "x", "raw": "r", "pattern": "p", "time_ratio": 1.25}]}
    (change,) = compare(old, new)
    assert change.status == "regression"  # one measurement each: any difference is beyond a zero spread


def test_compare_mode_exits_one_on_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps(BEFORE))
    after.write_text(json.dumps(AFTER))
    assert run.main(["compare", str(before), str(after)]) == 1
    out = capsys.readouterr().out
    assert "3 regression(s) beyond the spread, 5 rows compared" in out
    assert "| regression | outbox | combination=store=sqlite" in out
    assert run.main(["compare", str(before), str(before)]) == 0
    changes, table = compare_files(before, before)
    assert len(changes) == 5
    assert table.startswith("## Compare:")


@pytest.mark.parametrize(
    ("costs", "slope"),
    [([1.0, 1.0, 1.0], 0.0), ([1.0, 10.0, 100.0], 1.0), ([1.0, 100.0, 10000.0], 2.0)],
)
def test_loglog_slope_reads_flat_linear_and_quadratic(costs: list[float], slope: float) -> None:
    assert loglog_slope([1e3, 1e4, 1e5], costs) == pytest.approx(slope)


def test_loglog_slope_needs_two_distinct_sizes() -> None:
    with pytest.raises(ValueError):
        loglog_slope([10], [1.0])
    with pytest.raises(ValueError):
        loglog_slope([10, 10], [1.0, 2.0])


def test_growth_histories_are_valid_for_their_checkers() -> None:
    # the checker growth rows time a full walk over a valid history: an invalid one would stop early
    total_queue(growth.queue_history(50), DeliveryGuarantee.AT_LEAST_ONCE).assert_valid()
    log_anomalies(growth.log_history(250), DeliveryGuarantee.AT_LEAST_ONCE).assert_valid()


def test_growth_slopes_and_table() -> None:
    rows = [growth.row("log.read(1) vs log length", "memstore", n, "us/op", [2.0, 2.0, 2.0]) for n in (10, 100)]
    rows += [growth.row("queue.receive+ack vs depth", "sqlite", n, "us/op", [n / 10]) for n in (10, 100, 1000)]
    slopes = growth.with_slopes(rows)
    assert [(s["backend"], round(s["slope"], 6)) for s in slopes] == [("memstore", 0.0), ("sqlite", 1.0)]
    table = "\n".join(growth.markdown(rows, slopes))
    assert "| log.read(1) vs log length | memstore | us/op | 2.0 (2.0 - 2.0) | 2.0 (2.0 - 2.0) | - | +0.00 |" in table
    assert "| +1.00 |" in table


def test_compare_needs_the_whole_ranges_apart_not_only_the_quartiles() -> None:
    # two runs at different times: disjoint interquartile ranges alone are run-to-run noise
    assert classify(Spread(1.2, 1.0, 1.6, 1.15, 1.25, 5), Spread(1.4, 1.1, 1.8, 1.35, 1.45, 5), True) == "within spread"
    assert classify(Spread(1.2, 1.0, 1.3, 1.15, 1.25, 5), Spread(1.4, 1.31, 1.8, 1.35, 1.45, 5), True) == "regression"


def test_producer_consumer_rows_share_each_trials_raw_side_and_a_failure_is_one_row() -> None:
    from benchmarks import producer_consumer as pc

    measured = {"raw loop": [1.0, 2.0, 1.0], "batch 16": [1.5, 3.0, 1.5], "dedup": [0.5, 1.0, 0.5]}
    rows = pc.rows_of("sink=queue on x", "raw loop", 100, measured)
    assert [(r["pattern"], r["ratios"]) for r in rows] == [("batch 16", [1.5, 1.5, 1.5]), ("dedup", [0.5, 0.5, 0.5])]
    assert rows[0]["raw_us"] == pytest.approx(10_000.0)
    assert rows[0]["verdict"] == "1.50x slower"

    class Named:
        name = "broken"

    async def failing() -> list[dict]:
        raise ConnectionError("server gone")

    errors = asyncio.run(pc.isolated("producer", Named(), failing()))  # type: ignore[arg-type]
    assert errors == [{"combination": "producer on broken", "error": "ConnectionError: server gone"}]
    table = "\n".join(pc.markdown("Producer", rows + errors))
    assert "| 1.50x (1.50 - 1.50; 1.50 - 1.50) | 1.50x slower |" in table
    assert "| producer on broken | - | - | - | - | - | failed: ConnectionError: server gone | - |" in table
    assert compare({"producer": rows}, {"producer": rows})
    assert not compare({"producer": errors}, {"producer": errors})
