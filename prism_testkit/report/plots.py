"""The HTML report's plots of a stateful test's latest judged example, drawn with matplotlib
(an optional extra: ``pip install 'prism-testkit[plots]'``): each operation's latency over time,
coloured by outcome, with the faults as bands across it (Jepsen's ``latency-raw``), and
operations per second by outcome (Jepsen's ``rate``). The samples are the report's (a test
entry's ``latency``: :mod:`prism_testkit.stateful.latency`). A cluster row also gets its settle
times after each fault (:func:`settle_figure`: one dot per settle, a row per fault kind).

matplotlib is imported on the first plot, never by a run that draws none; without it the page
says how to get them (:data:`MISSING`). A figure is a PNG (drawn faster than SVG, and smaller),
embedded in the page as a ``data:`` image (nothing fetched, no markup from the run in the page's
DOM), without the metadata that would differ from draw to draw: the same samples draw the same
bytes (a merge's page equals the run's).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import warnings
from typing import Any

MISSING = "latency plots need matplotlib: pip install 'prism-testkit[plots]'"
OUTCOME_COLOURS = {"ok": "#2f9e44", "fail": "#e8590c", "info": "#5c7cfa"}
FAULT_COLOURS = {
    "kill": "#fa5252",
    "power-cut": "#c2255c",
    "pause": "#fab005",
    "partition": "#7950f2",
    "latency": "#15aabf",
    "failover": "#e64980",
    "corrupt": "#862e9c",
    "stall": "#868e96",
    "crash": "#f76707",
}
RATE_BINS = 20  # the rate plot's buckets over the example
DPI = 100


def available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


# untyped: a report's ``latency`` is whatever its file holds (a hand may have written it)
def latency_figure(latency: dict[str, Any]) -> str:
    """The figure of one example's samples as a ``data:image/png`` URI."""
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    ops: list[list[Any]] = latency.get("ops") or []
    span = max(float(latency.get("span_ms") or 0.0), max((op[0] + op[1] for op in ops), default=0.0), 1e-3)
    # a degenerate sample (one point, a zero span) draws with matplotlib's warnings; the page is
    # drawn at the end of a run, where a warning under -W error would lose the report
    with matplotlib.rc_context({"font.size": 8}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = Figure(figsize=(7.5, 3.4), dpi=DPI)
        top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        figure.subplots_adjust(left=0.09, right=0.86, top=0.97, bottom=0.13, hspace=0.08)
        by_kind: dict[str, list[tuple[float, float]]] = {}
        for start, end, kind, _label in latency.get("faults") or []:
            width = max(end - start, span / 400)  # an instant fault stays visible
            by_kind.setdefault(str(kind), []).append((start / 1e3, width / 1e3))
        for kind, ranges in by_kind.items():  # one artist per kind and axes: a hunt has thousands
            colour = FAULT_COLOURS.get(kind, "#adb5bd")
            for axes in (top, bottom):
                axes.broken_barh(ranges, (0, 1), transform=axes.get_xaxis_transform(), color=colour, alpha=0.18, lw=0)
            top.plot([], [], color=colour, alpha=0.4, lw=6, label=kind)
        for outcome, colour in OUTCOME_COLOURS.items():
            mine = [op for op in ops if op[2] == outcome]
            if mine:
                latencies = [max(op[1], 1e-3) for op in mine]
                top.plot([op[0] / 1e3 for op in mine], latencies, ".", ms=3, color=colour, label=outcome)
        top.set_yscale("log")
        top.set_ylabel("latency (ms)")
        top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        width = span / RATE_BINS
        edges = [n * width for n in range(RATE_BINS + 1)]
        for outcome, colour in OUTCOME_COLOURS.items():
            counts = [0] * RATE_BINS
            for op in ops:
                if op[2] == outcome:
                    counts[min(int(op[0] / width), RATE_BINS - 1)] += 1
            if any(counts):
                rates = [count / (width / 1e3) for count in counts]
                bottom.stairs(rates, [edge / 1e3 for edge in edges], color=colour, label=outcome)
        bottom.set_ylabel("ops/s")
        examples = latency.get("examples")
        several = isinstance(examples, int) and examples > 1
        bottom.set_xlabel(f"time (s): its {examples} examples, end to end" if several else "time (s) in the example")
        bottom.set_xlim(0, span / 1e3)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def fault_colour(fault: str) -> str:
    """The colour of a fault's family (``kill-leader`` is a kill), grey for a heal."""
    return next((colour for kind, colour in FAULT_COLOURS.items() if fault.startswith(kind)), "#868e96")


def settle_figure(samples: list[list[Any]]) -> str:
    """A cluster row's settle times (``[fault, seconds, backend]`` samples) as a ``data:image/png``
    URI: a row per fault kind, a dot per settle at the seconds it took, the median marked."""
    import matplotlib
    from matplotlib.figure import Figure

    by_kind: dict[str, list[float]] = {}
    for fault, seconds, *_ in samples:
        by_kind.setdefault(str(fault), []).append(float(seconds))
    kinds = sorted(by_kind)
    with matplotlib.rc_context({"font.size": 8}), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = Figure(figsize=(4.6, 1.0 + 0.3 * len(kinds)), dpi=DPI, layout="constrained")
        axes = figure.subplots()
        for row, kind in enumerate(kinds):
            found = sorted(by_kind[kind])
            # spread a kind's dots a little up and down, by their order: the same samples, the same figure
            jitter = [((n % 5) - 2) * 0.06 for n in range(len(found))]
            axes.plot(found, [row + j for j in jitter], "o", ms=3.5, alpha=0.7, color=fault_colour(kind))
            median = found[len(found) // 2]
            axes.plot([median, median], [row - 0.3, row + 0.3], color="#1d232a", lw=1.2)
        axes.set_yticks(range(len(kinds)), kinds)
        axes.set_ylim(-0.6, len(kinds) - 0.4)
        longest = max((max(found) for found in by_kind.values()), default=0.0) or 1.0
        axes.set_xlim(-0.03 * longest, 1.05 * longest)  # a settle of no time still shows whole
        axes.set_xlabel("seconds until the cluster served again as a whole")
        axes.grid(axis="x", color="#e4e6ea", lw=0.6)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()
