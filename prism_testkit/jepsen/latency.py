"""Each operation's latency over one example, and the faults it ran under: what the report's
latency plot of a stateful test draws (after Jepsen's ``latency-raw`` and ``rate`` graphs).

:func:`latency_property` turns a judged example's history into plain numbers a report can carry
(and a merge keep as it is): every client operation as ``[start_ms, latency_ms, outcome, f]``
from the example's first event (virtual time in a simulated example), an operation never
completed as ``info`` lasting to the example's end, and every fault band as ``[start_ms,
end_ms, kind, label]``. At most :data:`MOST_OPS` operations are kept, evenly spread over the
example, so a long hunt's report stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prism_testkit.jepsen.history import History, OpType
from prism_testkit.jepsen.timeline import NEMESIS, FaultBand

PROPERTY = "prism_latency"  # the user property a stateful test records it under
MOST_OPS = 600


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
    if len(samples) > MOST_OPS:
        step = len(samples) / MOST_OPS
        samples = [samples[int(n * step)] for n in range(MOST_OPS)]
    faults = [
        [
            _ms(band.start_ns - t0),
            _ms((band.end_ns if band.end_ns is not None else end) - t0),
            band.kind,
            band.label()[:80],
        ]
        for band in bands
    ]
    return {"ops": samples, "faults": faults, "span_ms": _ms(end - t0)}
