"""Each operation's latency and the faults it ran under: what the report's latency plot of a
stateful test draws (after Jepsen's ``latency-raw`` and ``rate`` graphs).

:func:`latency_property` turns a judged example's history into plain numbers a report can carry
(and a merge keep as it is): every client operation as ``[start_ms, latency_ms, outcome, f]``
from the example's first event (virtual time in a simulated example), an operation never
completed as ``info`` lasting to the example's end, and every fault band as ``[start_ms,
end_ms, kind, label]``. An example is short (a dozen steps), so a passing test's plot lays its
examples end to end (:class:`Series`), as Jepsen plots one long run; a failing test's is its
failing example. At most :data:`MOST_OPS` operations (and :data:`MOST_FAULTS` bands) are kept,
evenly spread, so a long hunt's report stays small.

:class:`Settles` keeps a cluster row's settle times after each fault (the time the harness waited
for a cluster to serve again after a fault's heal: :attr:`Nemesis.settles
<prism_testkit.stateful.nemesis.Nemesis.settles>`) over every example of a test, as the report's
``settles``: each fault kind's count, total and longest over all of them, and at most
:data:`MOST_SETTLES` samples ``[fault, seconds, backend]`` for the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prism_testkit.stateful.history import History, OpType
from prism_testkit.stateful.timeline import NEMESIS, FaultBand

PROPERTY = "prism_latency"  # the user property a stateful test records it under
SETTLES = "prism_settles"  # ... and its settle times after each fault (a cluster row's)
MOST_OPS = 600
MOST_FAULTS = 300
MOST_SETTLES = 300


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def latency_property(history: History, bands: Sequence[FaultBand], healed_at: int | None = None) -> dict[str, Any]:
    """The latency samples of ``history`` and its faults (see the module's text)."""
    ops = list(history)
    if not ops:
        return {"ops": [], "faults": [], "span_ms": 0.0}
    t0 = ops[0].time
    end = max(ops[-1].time, healed_at or 0)
    try:
        pairs = history.pairs()
    except ValueError:  # a history a suite recorded its own way: nothing to pair
        pairs = []
    samples = []
    for pair in pairs:
        invoke, completion = pair.invoke, pair.completion
        if pair.process == NEMESIS or invoke.f.startswith("crash"):
            continue
        done = completion.time if completion is not None else end
        outcome = completion.type.value if completion is not None else OpType.INFO.value
        samples.append([_ms(invoke.time - t0), _ms(max(0, done - invoke.time)), outcome, invoke.f])
    faults = [
        [
            _ms(band.start_ns - t0),
            _ms((band.end_ns if band.end_ns is not None else end) - t0),
            band.kind,
            band.label()[:80],
        ]
        for band in bands
    ]
    return {"ops": spread(samples, MOST_OPS), "faults": spread(faults, MOST_FAULTS), "span_ms": _ms(end - t0)}


def spread(items: list[Any], most: int) -> list[Any]:
    """At most ``most`` of ``items``, evenly spread over them."""
    if len(items) <= most:
        return items
    step = len(items) / most
    return [items[int(n * step)] for n in range(most)]


class Series:
    """A test's judged examples, end to end: each one's samples shifted by the time of those
    before it (examples run one after another; a simulated one's virtual clock starts again)."""

    def __init__(self) -> None:
        self.ops: list[list[Any]] = []
        self.faults: list[list[Any]] = []
        self.span_ms = 0.0
        self.examples = 0

    def add(self, history: History, bands: Sequence[FaultBand], healed_at: int | None = None) -> None:
        one = latency_property(history, bands, healed_at)
        at = self.span_ms
        self.ops += [[round(op[0] + at, 3), *op[1:]] for op in one["ops"]]
        self.faults += [[round(band[0] + at, 3), round(band[1] + at, 3), *band[2:]] for band in one["faults"]]
        self.span_ms = round(at + one["span_ms"], 3)
        self.examples += 1
        if len(self.ops) > 4 * MOST_OPS:  # a long hunt: keep every other, still evenly spread
            self.ops = self.ops[::2]
        if len(self.faults) > 4 * MOST_FAULTS:
            self.faults = self.faults[::2]

    def as_property(self) -> dict[str, Any]:
        return {
            "ops": spread(self.ops, MOST_OPS),
            "faults": spread(self.faults, MOST_FAULTS),
            "span_ms": self.span_ms,
            "examples": self.examples,
        }


class Settles:
    """A test's settle times after each fault, over all its examples (see the module's text):
    counted exactly per fault kind, sampled for the plot."""

    def __init__(self) -> None:
        self.samples: list[list[Any]] = []
        self.kinds: dict[str, dict[str, float]] = {}

    def add(self, fault: str, backend: str, seconds: float) -> None:
        seconds = round(max(0.0, seconds), 3)
        self.samples.append([fault, seconds, backend])
        kind = self.kinds.setdefault(fault, {"count": 0, "total_s": 0.0, "max_s": 0.0})
        kind["count"] += 1
        kind["total_s"] = round(kind["total_s"] + seconds, 3)
        kind["max_s"] = max(kind["max_s"], seconds)
        if len(self.samples) > 4 * MOST_SETTLES:  # a long hunt: keep every other, still evenly spread
            self.samples = self.samples[::2]

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def as_property(self) -> dict[str, Any]:
        kinds = {fault: {**found, "count": int(found["count"])} for fault, found in sorted(self.kinds.items())}
        return {"kinds": kinds, "samples": spread(self.samples, MOST_SETTLES)}
