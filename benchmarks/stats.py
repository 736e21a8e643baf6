"""The benchmarks' method, in pure functions: interleaved trials, medians with their spread,
the verdict on a ratio, and the comparison of two results files (before / after a change).

One pair measured once, one side after the other, cannot tell 10 % from noise on a shared
machine: a background job that runs during side B makes B look slower. So a pair is measured
in ``trials`` rounds; each round runs both sides back to back (alternating which goes first,
so warm-up and drift favour neither) and gives one ratio. A row reports the median of those
per-round ratios and their spread: the interquartile range (q1 - q3), which one descheduled
trial cannot stretch, and min - max beside it. An interquartile range that contains 1.0 says
the two sides cannot be told apart on this machine: "no measurable difference", whatever the
median says. The comparison of two results files, made at different times, uses min - max.

Nothing here reads a clock except :func:`interleaved` (through the ``run`` callable it is
given), so the statistics and the comparison are unit-tested without timing anything.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

NO_DIFFERENCE = "no measurable difference"


@dataclass(frozen=True)
class Spread:
    """The median of some per-trial values with their spread."""

    median: float
    low: float  # min
    high: float  # max
    q1: float
    q3: float
    trials: int

    def overlaps(self, value: float) -> bool:
        """Whether ``value`` lies within the interquartile range."""
        return self.q1 <= value <= self.q3

    def text(self, fmt: str = ".2f", suffix: str = "x") -> str:
        quartiles, extremes = f"{self.q1:{fmt}} - {self.q3:{fmt}}", f"{self.low:{fmt}} - {self.high:{fmt}}"
        return f"{self.median:{fmt}}{suffix} ({quartiles}; {extremes})"


def summarize(values: Sequence[float]) -> Spread:
    """Median, min - max and quartiles (inclusive method: stays within min - max)."""
    if not values:
        raise ValueError("no values to summarize")
    ordered = sorted(values)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return Spread(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, len(ordered))


def verdict(ratio: Spread) -> str:
    """What a time ratio (pattern / raw) says: an interquartile range containing 1.0 says nothing."""
    if ratio.overlaps(1.0):
        return NO_DIFFERENCE
    return f"{ratio.median:.2f}x slower" if ratio.median > 1.0 else f"{1 / ratio.median:.2f}x faster"


def trial_order(names: Sequence[str], trial: int) -> list[str]:
    """The order of the sides in one trial: rotated by one each trial (A B, B A, A B ... for a
    pair), so neither side always runs first, on a cold cache or right after the other."""
    shift = trial % len(names) if names else 0
    return [*names[shift:], *names[:shift]]


async def interleaved(names: Sequence[str], trials: int, run: Callable[[str, int], Awaitable[T]]) -> dict[str, list[T]]:
    """``run(side, trial)`` for every side in every trial, interleaved; results per side, in
    trial order."""
    if trials < 1:
        raise ValueError("trials must be at least 1")
    measured: dict[str, list[T]] = {name: [] for name in names}
    for trial in range(trials):
        for name in trial_order(names, trial):
            measured[name].append(await run(name, trial))
    return measured


def ratios(raw_seconds: Sequence[float], pattern_seconds: Sequence[float]) -> list[float]:
    """Per-trial time ratios (pattern / raw: above 1.0 the pattern is slower)."""
    if len(raw_seconds) != len(pattern_seconds):
        raise ValueError("both sides need the same number of trials")
    return [p / r for r, p in zip(raw_seconds, pattern_seconds, strict=True)]


def ratio_fields(values: Sequence[float]) -> dict[str, Any]:
    """The JSON fields of a ratio row (the names the WAL rows have always used)."""
    s = summarize(values)
    return {
        "time_ratio": s.median,
        "ratio_min": s.low,
        "ratio_max": s.high,
        "ratio_q1": s.q1,
        "ratio_q3": s.q3,
        "trials": s.trials,
        "verdict": verdict(s),
        "ratios": list(values),
    }


def ratio_spread(row: dict[str, Any]) -> Spread:
    """A ratio row's spread; rows of older files without quartiles use their min - max."""
    trials = int(row.get("trials") or 1)
    median = float(row["time_ratio"])
    low, high = float(row.get("ratio_min", median)), float(row.get("ratio_max", median))
    return Spread(median, low, high, float(row.get("ratio_q1", low)), float(row.get("ratio_q3", high)), trials)


def cost_spread(row: dict[str, Any]) -> Spread:
    """A growth row's spread (a cost per operation: higher is worse)."""
    median = float(row["cost"])
    low, high = float(row.get("cost_min", median)), float(row.get("cost_max", median))
    q1, q3 = float(row.get("cost_q1", low)), float(row.get("cost_q3", high))
    return Spread(median, low, high, q1, q3, int(row.get("trials") or 1))


def rate_spread(row: dict[str, Any]) -> Spread:
    median = float(row["rate"])
    low, high = float(row.get("rate_min", median)), float(row.get("rate_max", median))
    q1, q3 = float(row.get("rate_q1", low)), float(row.get("rate_q3", high))
    return Spread(median, low, high, q1, q3, int(row.get("trials") or 1))


# --- comparing two results files ---------------------------------------------------------

# Fields that name a row (the rest are measurements). A row is the same row in two files when
# its section and these fields agree.
IDENTITY = ("backend", "combination", "log", "writers", "raw", "pattern", "operation", "size", "measure")
# Sections whose rows are time ratios (higher is worse) or rates (lower is worse).
RATIO_SECTIONS = ("claim_check", "outbox", "tiered_storage", "wal", "driver_vs_raw", "producer", "consumer")
RATE_SECTIONS = ("operations", "run_profile_rates")
COST_SECTIONS = ("growth", "run_profile")


@dataclass(frozen=True)
class Change:
    section: str
    row: str
    before: Spread
    after: Spread
    kind: str  # "time ratio", "ops/s" or a growth row's unit
    status: str  # "regression", "improvement" or "within spread"


def row_name(row: dict[str, Any]) -> str:
    return " ".join(f"{field}={row[field]}" for field in IDENTITY if row.get(field) is not None)


def classify(before: Spread, after: Spread, higher_is_worse: bool) -> str:
    """A change counts only beyond the spread: the after min - max lies wholly on the worse (or
    better) side of the before min - max. Overlapping ranges are noise.

    Wider than the verdict's interquartile range on purpose: the two files come from runs at
    different times, under different load, which interleaving within a run cannot cancel. Two
    runs of the same code on this machine differed in 7 of 48 ratio rows by their interquartile
    ranges, and in 1 by min - max."""
    if after.low > before.high:
        return "regression" if higher_is_worse else "improvement"
    if after.high < before.low:
        return "improvement" if higher_is_worse else "regression"
    return "within spread"


def _rows(results: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for row in results.get(section) or []:
        if isinstance(row, dict):
            rows[row_name(row)] = row
    return rows


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Every row found in both results, classified; rows found in only one are skipped."""
    changes: list[Change] = []
    kinds: list[tuple[Iterable[str], str, Callable[[dict[str, Any]], Spread], bool]] = [
        (RATIO_SECTIONS, "time ratio", ratio_spread, True),
        (RATE_SECTIONS, "ops/s", rate_spread, False),
        (COST_SECTIONS, "cost", cost_spread, True),
    ]
    for sections, kind, spread_of, higher_is_worse in kinds:
        for section in sections:
            old, new = _rows(before, section), _rows(after, section)
            for name in old.keys() & new.keys():
                if not {"time_ratio", "rate", "cost"} & old[name].keys():
                    continue
                b, a = spread_of(old[name]), spread_of(new[name])
                unit = old[name].get("unit", kind)
                changes.append(Change(section, name, b, a, unit, classify(b, a, higher_is_worse)))
    order = {"regression": 0, "improvement": 1, "within spread": 2}
    return sorted(changes, key=lambda c: (order[c.status], c.section, c.row))


def compare_markdown(changes: Sequence[Change], before: str, after: str) -> str:
    regressions = sum(c.status == "regression" for c in changes)
    lines = [
        f"## Compare: {before} -> {after}",
        "",
        f"{regressions} regression(s) beyond the spread, {len(changes)} rows compared. A change counts only when "
        "the two ranges (min - max over the trials) do not overlap.",
        "",
        "| status | section | row | measure | before | after |",
        "|---|---|---|---|---:|---:|",
    ]
    for c in changes:
        fmt, suffix = {"time ratio": (".2f", "x"), "ops/s": (".0f", "")}.get(c.kind, (".1f", ""))
        lines.append(
            f"| {c.status} | {c.section} | {c.row} | {c.kind} | {c.before.text(fmt, suffix)} "
            f"| {c.after.text(fmt, suffix)} |"
        )
    return "\n".join(lines) + "\n"


def compare_files(before: Path, after: Path) -> tuple[list[Change], str]:
    changes = compare(json.loads(before.read_text()), json.loads(after.read_text()))
    return changes, compare_markdown(changes, str(before), str(after))


def spread_dict(spread: Spread) -> dict[str, Any]:
    return asdict(spread)


def loglog_slope(sizes: Sequence[float], costs: Sequence[float]) -> float:
    """The least-squares slope of log(cost) against log(size): ~0 flat, ~1 linear, ~2 quadratic
    (for a per-operation cost: 0 means it does not grow with the size)."""
    if len(sizes) != len(costs) or len(sizes) < 2:
        raise ValueError("need at least two (size, cost) points")
    xs, ys = [math.log(s) for s in sizes], [math.log(c) for c in costs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        raise ValueError("sizes must differ")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
