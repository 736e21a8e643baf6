"""The timeline of one example, as a page a person looks at: who did what, when, under which fault.

After Jepsen's ``timeline.html``: one lane per process (clients, the applier, a relay, the
nemesis), each operation a bar from its invocation to its completion, coloured by its outcome
(``ok``, ``fail``, ``info``: maybe happened; one never completed runs to the end of the page),
and each fault a band across every lane from the moment it struck to the moment it was healed.
The anomalies a checker found are marked on the operations their witnesses name and listed
beside the lanes, the smallest witness of each failing checker highlighted.

Rows are the history's events in order (as in Jepsen, where an operation's height is the
number of events it spanned), not a time scale: simulated examples run many operations at
one virtual instant, and a time scale would stack them. Each row's gutter gives its time since
the example's first event (virtual time in a simulated example), each bar its duration.

Faults come from the history itself (:func:`fault_bands`): a kill, power cut, corruption or
failover lasts from its invocation to its completion (the restart or promotion included); a
pause lasts until its ``resume``, a partition or latency until its ``heal``; whatever is still
open when the example ends lasts until the end-of-example heal (``healed_at``). A suite's own
process crash (an op named ``crash...``) is a band too. Faults the history does not hold (a load
mode stall) can be given as bands placed by time (:func:`band_at`).

The page is one self-contained file: inline CSS, no script, nothing fetched; every string that
came from a history (process names, keys, values, errors) is escaped.
"""

from __future__ import annotations

import bisect
import html
import reprlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

from prism_testkit.stateful.checkers import Verdict
from prism_testkit.stateful.history import History, Op, OpType, Process

NEMESIS = "nemesis"
ROW = 22  # px per history event
LANE = 200  # px per lane, at most (down to LANE_NARROWEST when there are many)
LANE_NARROWEST = 130
GUTTER = 104  # px: event index and time
FAULT_LABELS = 180  # px: the column, left of the lanes, where each fault band's label sits
LANES = GUTTER + FAULT_LABELS  # px: where the first lane starts
MODES = ("failing", "all", "none")  # what --prism-timelines writes

# How long a fault lasts, by the name its op was recorded under.
_OWN_INTERVAL = {  # from its invocation to its completion
    "kill": "kill",
    "kill-node": "kill",
    "kill-leader": "kill",
    "power-cut": "power-cut",
    "corrupt": "corrupt",
    "failover": "failover",
    "failover-lagging": "failover",
    "failover-by-cluster": "failover",
    "reset": "reset",
}
_UNTIL_HEALED = {"latency": "latency", "partition": "partition"}  # until a heal of its target
_UNTIL_RESUMED = {"pause": "pause"}  # until a resume of its target
_CLOSERS = {"heal", "resume"}
KINDS = (
    "kill",
    "power-cut",
    "pause",
    "partition",
    "latency",
    "failover",
    "corrupt",
    "reset",
    "stall",
    "crash",
    "other",
)

_short = reprlib.Repr()
_short.maxlist = _short.maxtuple = _short.maxset = _short.maxdict = 6
_short.maxstring = _short.maxother = 40
_long = reprlib.Repr()
_long.maxlist = _long.maxtuple = _long.maxset = _long.maxdict = 50
_long.maxstring = _long.maxother = 400


@dataclass(frozen=True)
class FaultBand:
    """One fault, from when it struck to when it was healed; rows are history positions."""

    kind: str  # one of KINDS
    name: str  # what the history recorded it as: kill-leader, partition-bridge, crash-before-checkpoint...
    target: str | None  # the backend (or the process, for a suite's own crash)
    detail: str  # the partition's sides, the node, the failover's outcome...
    start: int  # the row it struck at
    end: int | None  # the row it was healed at (inclusive); None: at the end-of-example heal
    start_ns: int
    end_ns: int | None

    def label(self) -> str:
        target = f" {self.target}" if self.target else ""
        return f"{self.name}{target}" + (f": {self.detail}" if self.detail else "")


def _kind(f: str) -> str | None:
    """The band kind of a nemesis op name (None: it closes another fault, or is none)."""
    if f in _CLOSERS:
        return None
    if f in _OWN_INTERVAL:
        return _OWN_INTERVAL[f]
    for prefix, kind in (*_UNTIL_HEALED.items(), *_UNTIL_RESUMED.items()):
        if f == prefix or f.startswith(prefix + "-"):
            return kind
    if "stall" in f:
        return "stall"
    return "other"


def _detail(kind: str, invoke: Op, completion: Op | None) -> str:
    value = invoke.value
    if kind == "partition":
        if isinstance(value, tuple) and value and all(isinstance(side, tuple) for side in value):
            return "sides " + " | ".join("[" + ", ".join(map(str, side)) + "]" for side in value)
        return f"the harness | {invoke.key}" if invoke.key else ""
    parts = []
    if isinstance(value, dict):
        parts.append(", ".join(f"{k} {_short.repr(v)}" for k, v in value.items()))
    elif value is not None:
        parts.append(_short.repr(value))
    done = completion.value if completion is not None else None
    if isinstance(done, dict) and done is not value:
        parts.append("→ " + ", ".join(f"{k} {_short.repr(v)}" for k, v in done.items() if k != "damaged"))
    return " ".join(p for p in parts if p)


def fault_bands(history: History, healed_at: int | None = None) -> list[FaultBand]:
    """The faults of ``history``, each from its start to its heal (see the module's text).
    ``healed_at``: when the end-of-example heal ran (its time, on the history's clock)."""
    ops = list(history)
    position = {op.index: n for n, op in enumerate(ops)}
    try:
        pairs = history.pairs()
    except ValueError:  # a history a suite recorded its own way: its faults cannot be paired
        return []
    bands: list[FaultBand] = []
    open_: list[tuple[str, str, FaultBand]] = []  # (closer, target, band) still open
    for pair in sorted(pairs, key=lambda p: p.invoke.index):
        invoke, completion = pair.invoke, pair.completion
        if pair.process != NEMESIS and not invoke.f.startswith("crash"):
            continue
        kind = "crash" if pair.process != NEMESIS else _kind(invoke.f)
        start = position[invoke.index]
        done = position[completion.index] if completion is not None else None
        done_ns = completion.time if completion is not None else None
        if kind is None:  # a heal or a resume: it ends the open faults of its target
            closing = "heal" if invoke.f == "heal" else "resume"
            for entry in [e for e in open_ if e[0] == closing and e[1] == (invoke.key or "")]:
                open_.remove(entry)
                end_row = done if done is not None else start
                end_ns = done_ns if done_ns is not None else invoke.time
                bands.append(replace(entry[2], end=end_row, end_ns=end_ns))
            continue
        target = invoke.key if pair.process == NEMESIS else str(pair.process)
        band = FaultBand(kind, invoke.f, target, _detail(kind, invoke, completion), start, done, invoke.time, done_ns)
        if kind in _UNTIL_HEALED.values():
            open_.append(("heal", invoke.key or "", band))
        elif kind in _UNTIL_RESUMED.values():
            open_.append(("resume", invoke.key or "", band))
        else:
            bands.append(band)
    for _, _, band in open_:  # healed only by the end of the example
        bands.append(replace(band, end=None, end_ns=healed_at))
    return sorted(bands, key=lambda b: (b.start, b.name))


def band_at(
    history: History, kind: str, name: str, target: str | None, start_ns: int, end_ns: int, detail: str = ""
) -> FaultBand | None:
    """A fault the history does not hold (a load mode stall), placed by its times: from the
    first event at or after ``start_ns`` to the last at or before ``end_ns``; None when no
    event of the history falls in or after it."""
    times = [op.time for op in history]
    start = bisect.bisect_left(times, start_ns)
    if start >= len(times):
        return None
    end = max(start, bisect.bisect_right(times, end_ns) - 1)
    return FaultBand(kind if kind in KINDS else "other", name, target, detail, start, end, start_ns, end_ns)


@dataclass(frozen=True)
class Mark:
    """An anomaly, where the page shows it: its name, message and the ops its witness names."""

    checker: str
    name: str
    message: str
    ops: tuple[int, ...]  # indices of the invocations its witness names (the bars' ids)
    smallest: bool  # the smallest witness of its checker


@dataclass
class Timeline:
    """What one page shows."""

    title: str
    history: History
    verdicts: Sequence[Verdict] = ()
    summary: str = ""  # the verdict in one line (INVALID (1 lost), UNSETTLED...)
    notes: Sequence[str] = ()  # more lines under the title: the replay command, the digest
    faults: Sequence[FaultBand] = ()
    virtual: bool = False  # simulated: the times are virtual
    prefixes: Sequence[str] = ()  # namespace prefixes, shown as "~" in keys and values
    failed: bool | None = None  # None: failed when a verdict is invalid
    marks: list[Mark] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.marks:
            self.marks = anomaly_marks(self.history, self.verdicts)


def anomaly_marks(history: History, verdicts: Iterable[Verdict]) -> list[Mark]:
    """Every anomaly of ``verdicts`` (invalidating first, then tolerated), with the invocations
    its witness names; the smallest witness of each failing checker that names an operation
    flagged."""
    invoke_of = _invocations(history)
    marks = []
    for verdict in verdicts:
        naming = [a for group in verdict.anomalies.values() for a in group if len(a.witness)]
        smallest = min(naming, key=lambda a: len(a.witness)).witness if naming else None
        for groups in (verdict.anomalies, verdict.tolerated):
            for name, group in groups.items():
                for anomaly in group:
                    ops = tuple(dict.fromkeys(invoke_of.get(op.index, op.index) for op in anomaly.witness))
                    is_smallest = smallest is not None and anomaly.witness is smallest
                    marks.append(Mark(verdict.checker, name, anomaly.message, ops, is_smallest))
    return marks


def _invocations(history: History) -> dict[int, int]:
    """Each op's index -> the index of its invocation (a completion points to its invoke)."""
    found: dict[int, int] = {}
    open_: dict[Process, int] = {}
    for op in history:
        if op.type is OpType.INVOKE:
            open_[op.process] = op.index
            found[op.index] = op.index
        else:
            found[op.index] = open_.pop(op.process, op.index)
    return found


# --- rendering ---------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _masked(text: str, prefixes: Sequence[str]) -> str:
    for prefix in sorted((p for p in prefixes if p), key=len, reverse=True):
        text = text.replace(prefix, "~")
    return text


def _ms(ns: int) -> str:
    ms = ns / 1e6
    if ms >= 10_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


@dataclass(frozen=True)
class _Bar:
    invoke: Op
    completion: Op | None
    lane: int
    start: int
    end: int  # inclusive row


def _lanes_and_bars(ops: Sequence[Op]) -> tuple[list[Process], list[_Bar]]:
    lanes: list[Process] = []
    for op in ops:
        if op.process not in lanes and op.process != NEMESIS:
            lanes.append(op.process)
    if any(op.process == NEMESIS for op in ops):
        lanes.append(NEMESIS)
    lane_of = {p: n for n, p in enumerate(lanes)}
    bars: list[_Bar] = []
    open_: dict[Process, tuple[Op, int]] = {}
    last = len(ops) - 1
    for row, op in enumerate(ops):
        if op.type is OpType.INVOKE:
            if op.process in open_:  # malformed: close the earlier one where it stands
                first, at = open_.pop(op.process)
                bars.append(_Bar(first, None, lane_of[op.process], at, row - 1))
            open_[op.process] = (op, row)
        elif op.process in open_:
            first, at = open_.pop(op.process)
            bars.append(_Bar(first, op, lane_of[op.process], at, row))
        else:  # a completion without its invocation (a sub-history): a bar of its own row
            bars.append(_Bar(op, op, lane_of[op.process], row, row))
    for first, at in open_.values():  # never completed: it may happen at any time after
        bars.append(_Bar(first, None, lane_of[first.process], at, last))
    return lanes, bars


def _outcome(bar: _Bar) -> str:
    if bar.completion is None or bar.completion.type is OpType.INVOKE:
        return "info"
    return bar.completion.type.value


def _op_text(bar: _Bar, prefixes: Sequence[str]) -> tuple[str, str]:
    """A bar's short label and its full description (the tooltip)."""
    invoke, done = bar.invoke, bar.completion
    short = [invoke.f]
    full = [f"#{invoke.index} {invoke.process} {invoke.f}"]
    if invoke.key is not None:
        short.append(_masked(invoke.key, prefixes))
        full.append(f"key {invoke.key}")
    if invoke.value is not None:
        short.append(_masked(_short.repr(invoke.value), prefixes))
        full.append(f"value {_long.repr(invoke.value)}")
    outcome = _outcome(bar)
    if done is None:
        full.append("never completed: outcome unknown (it may have happened, at any time after)")
    else:
        full.append(f"{outcome} after {_ms(done.time - invoke.time)} (#{done.index})")
        if done.value is not None and done.value != invoke.value:
            short.append("→ " + _masked(_short.repr(done.value), prefixes))
            full.append(f"returned {_long.repr(done.value)}")
        if done.offset is not None:
            short.append(f"@{done.offset}")
            full.append(f"offset {done.offset}")
        if done.error is not None:
            full.append(f"error {done.error}")
    if invoke.txn is not None:
        full.append(f"txn {invoke.txn}")
    return " ".join(short), "\n".join(_masked(line, prefixes) for line in full)


_CSS = """
body{font:13px/1.35 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
  background:#fafbfc}
header{padding:12px 18px;border-bottom:1px solid #d8dde6;background:#fff}
h1{font-size:17px;margin:0 0 4px}
h2{font-size:14px;margin:14px 0 6px}
.summary{font-weight:600}.summary.bad{color:#b3261e}.summary.good{color:#1b7a3d}
.notes{margin:6px 0 0;color:#4a5263;white-space:pre-wrap;font:12px ui-monospace,Menlo,Consolas,monospace}
main{display:flex;flex-wrap:wrap;align-items:flex-start;gap:18px;padding:12px 18px}
.scroll{flex:0 1 auto;min-width:0;overflow:auto;max-height:88vh;border:1px solid #d8dde6;background:#fff}
.timeline{position:relative}
.heads{position:sticky;top:0;z-index:5;display:flex;background:#eef1f6;border-bottom:1px solid #c9d0dc}
.heads div{box-sizing:border-box;padding:4px 6px;font-weight:600;overflow:hidden;text-overflow:ellipsis;
  white-space:nowrap;border-left:1px solid #d8dde6}
.heads .gutter-head{border-left:0;color:#4a5263;font-weight:500}
.body{position:relative}
.row{position:absolute;left:0;box-sizing:border-box;border-top:1px solid #f0f2f5;
  font:11px/20px ui-monospace,Menlo,Consolas,monospace;color:#6b7385;padding-left:6px;white-space:nowrap}
.lane{position:absolute;top:0;bottom:0;border-left:1px solid #e3e7ee}
.lane.nemesis{background:#f6f2fb}
.lane.labels{background:#fbfbfd;border-left:1px solid #c9d0dc}
.band{position:absolute;z-index:1;box-sizing:border-box;border-top:2px solid;border-bottom:2px dashed;
  opacity:.9}
.band .tag{position:absolute;left:2px;top:1px;max-width:168px;overflow:hidden;
  font-size:11px;font-weight:600;padding:0 4px;
  border-radius:3px;background:rgba(255,255,255,.85);line-height:13px;overflow-wrap:anywhere}
.band.open{border-bottom:0}
.band.kill{background:rgba(214,69,65,.13);border-color:#c0392b}.band.kill .tag{color:#a52a1f}
.band.power-cut{background:rgba(120,40,140,.14);border-color:#7d3c98}.band.power-cut .tag{color:#6c2e85}
.band.pause{background:rgba(241,196,15,.18);border-color:#b7950b}.band.pause .tag{color:#8a6d00}
.band.partition{background:rgba(230,126,34,.15);border-color:#d35400}.band.partition .tag{color:#a84300}
.band.latency{background:rgba(52,152,219,.10);border-color:#2e86c1}.band.latency .tag{color:#1f618d}
.band.failover{background:rgba(26,188,156,.14);border-color:#17a589}.band.failover .tag{color:#117864}
.band.corrupt{background:rgba(100,100,100,.14);border-color:#555}.band.corrupt .tag{color:#333}
.band.reset,.band.other{background:rgba(127,140,141,.12);border-color:#7f8c8d}
.band.reset .tag,.band.other .tag{color:#515a5a}
.band.stall{background:rgba(93,109,126,.13);border-color:#5d6d7e}.band.stall .tag{color:#34495e}
.band.crash{background:rgba(192,57,43,.10);border-color:#922b21}.band.crash .tag{color:#922b21}
.op{position:absolute;z-index:2;box-sizing:border-box;margin-left:4px;padding:1px 5px;border-radius:3px;
  font:11px/16px ui-monospace,Menlo,Consolas,monospace;overflow:hidden;white-space:nowrap;
  text-overflow:ellipsis;border:1px solid rgba(0,0,0,.18);color:#10141c;text-decoration:none}
.op.ok{background:#9fd3ff}
.op.fail{background:#ffc56b}
.op.info{background:repeating-linear-gradient(45deg,#f7b8dc,#f7b8dc 6px,#fbd3ea 6px,#fbd3ea 12px)}
.op.open{border-bottom:2px dashed #8e3b6b}
.op.anomalous{border:2px solid #c62828;box-shadow:0 0 0 1px #fff inset}
.op.witness{outline:3px solid #ffd600;outline-offset:1px;z-index:3}
.op:target{outline:3px solid #1a73e8;z-index:4}
.op .badge{display:inline-block;margin-right:4px;padding:0 4px;border-radius:3px;background:#c62828;
  color:#fff;font-weight:700}
aside{flex:0 0 330px;max-width:330px}
aside section{background:#fff;border:1px solid #d8dde6;padding:8px 12px;margin-bottom:12px}
aside ul{margin:0;padding-left:18px}
aside li{margin:3px 0}
.anomaly .name{font-weight:700;color:#b3261e}.anomaly.tolerated .name{color:#8a6d00}
.anomaly .msg{display:block;color:#2c3342;word-break:break-word}
.anomaly.smallest{background:#fff8c4;border-radius:3px;padding:2px 4px}
.legend span{display:inline-block;margin:2px 8px 2px 0}
.sw{display:inline-block;width:18px;height:11px;border:1px solid rgba(0,0,0,.25);vertical-align:middle;
  margin-right:4px;border-radius:2px}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
"""


def render_html(timeline: Timeline) -> str:
    """The page of ``timeline``: one self-contained HTML document."""
    ops = list(timeline.history)
    prefixes = timeline.prefixes
    lanes, bars = _lanes_and_bars(ops)
    t0 = ops[0].time if ops else 0
    rows = max(1, len(ops))
    lane_width = max(LANE_NARROWEST, min(LANE, 720 // max(1, len(lanes))))
    width = GUTTER + lane_width * max(1, len(lanes)) + FAULT_LABELS
    height = rows * ROW
    marks_of: dict[int, list[Mark]] = {}
    for mark in timeline.marks:
        for index in mark.ops:
            marks_of.setdefault(index, []).append(mark)
    failing = any(not v.valid for v in timeline.verdicts) if timeline.failed is None else timeline.failed
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # nothing may be fetched: no scripts at all, styles and images only from this page
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">',
        f"<title>{_e(_masked(timeline.title, prefixes))} · timeline</title>",
        f"<style>{_CSS}</style></head><body>",
        "<header>",
        f"<h1>{_e(_masked(timeline.title, prefixes))}</h1>",
    ]
    if timeline.summary:
        parts.append(
            f'<div class="summary {"bad" if failing else "good"}">{_e(_masked(timeline.summary, prefixes))}</div>'
        )
    clock = "virtual time (a simulated example)" if timeline.virtual else "time on the test machine's monotonic clock"
    facts = [f"{len(ops)} events, {len(bars)} operations, {len(timeline.faults)} faults; {clock}"]
    parts.append(
        f'<div class="notes">{_e(chr(10).join([*facts, *(_masked(n, prefixes) for n in timeline.notes)]))}</div>'
    )
    parts.append("</header><main>")
    # the lanes
    parts.append(f'<div class="scroll"><div class="timeline" style="width:{width}px">')
    parts.append('<div class="heads">')
    parts.append(f'<div class="gutter-head" style="width:{GUTTER}px">event · time</div>')
    parts.append(f'<div class="faults-head" style="width:{FAULT_LABELS}px">faults</div>')
    for lane in lanes:
        kind = " nemesis" if lane == NEMESIS else ""
        parts.append(f'<div class="lane-head{kind}" style="width:{lane_width}px" title="{_e(lane)}">{_e(lane)}</div>')
    parts.append("</div>")
    parts.append(f'<div class="body" style="height:{height}px">')
    for n, lane in enumerate(lanes):
        kind = " nemesis" if lane == NEMESIS else ""
        parts.append(
            f'<div class="lane{kind}" data-lane="{_e(lane)}" '
            f'style="left:{LANES + n * lane_width}px;width:{lane_width}px"></div>'
        )
    parts.append(f'<div class="lane labels" style="left:{GUTTER}px;width:{FAULT_LABELS}px"></div>')
    for row, op in enumerate(ops):
        stamp = f"#{op.index} +{_ms(op.time - t0)}"
        parts.append(f'<div class="row" style="top:{row * ROW}px;width:{width}px;height:{ROW}px">{_e(stamp)}</div>')
    for band in timeline.faults:
        end = band.end if band.end is not None else rows - 1
        top, span = band.start * ROW, max(ROW, (end - band.start + 1) * ROW)
        healed = (
            f"healed {_ms(band.end_ns - band.start_ns)} later"
            if band.end_ns is not None and band.end is not None
            else "healed at the end of the example"
            + (f", {_ms(band.end_ns - band.start_ns)} later" if band.end_ns else "")
        )
        label = _masked(band.label(), prefixes)
        title = f"{label}\nstruck at +{_ms(band.start_ns - t0)}; {healed}"
        kind = band.kind if band.kind in KINDS else "other"
        still = " open" if band.end is None else ""
        parts.append(
            f'<div class="band {kind}{still}" data-fault="{_e(band.name)}" '
            f'style="top:{top}px;height:{span}px;left:{GUTTER}px;width:{width - GUTTER}px" title="{_e(title)}">'
            f'<span class="tag">{_e(label)}</span></div>'
        )
    for bar in bars:
        label, full = _op_text(bar, prefixes)
        outcome = _outcome(bar)
        classes = ["op", outcome]
        if bar.completion is None:
            classes.append("open")
        marked = marks_of.get(bar.invoke.index, [])
        badge = ""
        if marked:
            classes.append("anomalous")
            names = list(dict.fromkeys(m.name for m in marked))
            badge = f'<span class="badge">{_e(", ".join(names))}</span>'
            full += "\n" + "\n".join(f"{m.checker}: {m.name}: {m.message}" for m in marked)
        if any(m.smallest for m in marked):
            classes.append("witness")
        top = bar.start * ROW + 2
        span = (bar.end - bar.start + 1) * ROW - 4
        anomalies = f' data-anomalies="{_e(" ".join(dict.fromkeys(m.name for m in marked)))}"' if marked else ""
        parts.append(
            f'<a class="{" ".join(classes)}" id="op-{bar.invoke.index}" href="#op-{bar.invoke.index}" '
            f'data-process="{_e(bar.invoke.process)}" data-outcome="{outcome}"{anomalies} '
            f'style="top:{top}px;height:{span}px;left:{LANES + bar.lane * lane_width}px;width:{lane_width - 8}px" '
            f'title="{_e(full)}">{badge}{_e(label)}</a>'
        )
    parts.append("</div></div></div>")
    parts.append(_aside(timeline, t0))
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _aside(timeline: Timeline, t0: int) -> str:
    prefixes = timeline.prefixes
    parts = ["<aside>", '<section class="anomalies"><h2>Anomalies</h2>']
    if timeline.marks:
        parts.append("<ul>")
        for mark in timeline.marks:
            bad = any(mark.name in v.anomalies for v in timeline.verdicts if v.checker == mark.checker)
            classes = "anomaly" + ("" if bad else " tolerated") + (" smallest" if mark.smallest else "")
            links = ", ".join(f'<a href="#op-{i}">#{i}</a>' for i in mark.ops) or "no operation named"
            smallest = " · <b>smallest witness</b>" if mark.smallest else ""
            allowed = "" if bad else " (tolerated)"
            parts.append(
                f'<li class="{classes}" data-anomaly="{_e(mark.name)}"><span class="name">{_e(mark.name)}</span>'
                f"{allowed} <small>{_e(mark.checker)}</small>{smallest}"
                f'<span class="msg">{_e(_masked(mark.message, prefixes))}</span>ops {links}</li>'
            )
        parts.append("</ul>")
    else:
        parts.append("<p>none found</p>")
    parts.append("</section>")
    for verdict in timeline.verdicts:
        counts = " ".join(f"{k}={v}" for k, v in verdict.counts.items())
        state = "valid" if verdict.valid else "INVALID"
        parts.append(
            f'<section class="verdict"><h2>{_e(verdict.checker)}: {state}</h2><code>{_e(counts)}</code></section>'
        )
    parts.append('<section class="faults"><h2>Faults</h2>')
    if timeline.faults:
        parts.append("<ul>")
        for band in timeline.faults:
            until = "the end-of-example heal" if band.end is None else f"+{_ms((band.end_ns or band.start_ns) - t0)}"
            parts.append(
                f'<li data-kind="{_e(band.kind)}">{_e(_masked(band.label(), prefixes))} '
                f"<small>+{_ms(band.start_ns - t0)} → {_e(until)}</small></li>"
            )
        parts.append("</ul>")
    else:
        parts.append("<p>none injected</p>")
    parts.append("</section>")
    swatches = [("#9fd3ff", "ok: it happened"), ("#ffc56b", "fail: it did not happen")]
    swatches.append(("#f7b8dc", "info: unknown, maybe happened"))
    legend = "".join(f'<span><i class="sw" style="background:{c}"></i>{_e(t)}</span>' for c, t in swatches)
    parts.append(
        '<section class="legend"><h2>Reading it</h2>'
        f"{legend}<p>Rows are the history's events in order; a bar runs from an operation's invocation to its "
        "completion (a dashed end: never completed). Bands are faults, from the moment they struck to their heal. "
        "A red border marks an operation an anomaly names, a yellow outline the smallest witness. Hover for "
        "details; the numbers are the history's op indices, as in the failure message.</p></section>"
    )
    parts.append("</aside>")
    return "\n".join(parts)


def write_timeline(path: str | PathLike[str], timeline: Timeline) -> Path:
    """Write the page of ``timeline`` to ``path`` (its folders made); the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(timeline), encoding="utf-8")
    return target
