"""Per-key order: :func:`per_key_order`, each consumer receives one key's values in the order
they were written (a key-value or aggregate id; any interface whose reads deliver values)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any

from prism_testkit.stateful.checkers.verdict import Verdict, _Findings, _ops
from prism_testkit.stateful.history import History, OpType, Pair, Process


@dataclass(frozen=True)
class _Written:
    """When a value was written: its first attempt's start and its first acknowledgement."""

    value: Hashable
    first_try: Pair
    first_ok: Pair

    @property
    def start(self) -> int:
        return self.first_try.invoke.index

    @property
    def end(self) -> int:
        assert self.first_ok.completion is not None
        return self.first_ok.completion.index


def _delivered(pair: Pair, written: dict[Hashable, _Written]) -> list[Hashable]:
    """The written values a read returned: a value, a list of values, or (offset, value) records."""
    value = pair.value
    if value in written:
        return [value]
    if not isinstance(value, tuple):
        return []
    values = []
    for item in value:
        if item in written:
            values.append(item)
        elif isinstance(item, tuple) and len(item) == 2 and item[1] in written:
            values.append(item[1])
    return values


def per_key_order(
    history: History,
    *,
    key: Callable[[Any], Hashable] | None = None,
    writes: Collection[str] = ("enqueue", "append", "send", "publish", "put"),
    reads: Collection[str] = ("dequeue", "poll", "drain", "receive", "get"),
    resets: Collection[str] = ("seek", "assign", "subscribe"),
) -> Verdict:
    """Per-key order: each consumer receives one key's values in the order they were written.

    The ordering key of a value is ``key(value)`` when given (e.g. the aggregate id inside the
    value), else the ``key`` of its write op. Values are identities (unique in the history).
    Only writes that do not overlap in real time are ordered: value ``b`` must come before
    ``a`` when some attempt to write ``b`` was acknowledged before the first attempt to write
    ``a`` was invoked. Each process's reads are taken in order, counting the first delivery of
    each value only (redelivery is a duplication question, not an ordering one). A ``seek``,
    ``assign`` or ``subscribe`` starts the process afresh: a consumer that repositions on
    purpose may then receive anything in any order relative to what it read before.

    - ``reordered``: a process received ``a`` and then ``b``, although ``b``'s write finished
      before ``a``'s began. One anomaly per late delivery, paired with the earlier-received
      value whose write began latest. Witness: both writes and the read(s) delivering them.
    """
    findings = _Findings(history)
    pairs = history.pairs()
    attempts: dict[Hashable, list[Pair]] = defaultdict(list)
    for pair in pairs:
        if pair.f in writes:
            attempts[pair.invoke.value].append(pair)
    written: dict[Hashable, _Written] = {}
    for value, tries in attempts.items():
        oks = [p for p in tries if p.ok]
        if oks:
            first_ok = min(oks, key=lambda p: p.completion.index if p.completion else 0)
            began = next(p for p in tries if p.type is not OpType.FAIL)  # a failed try never began the write
            written[value] = _Written(value, began, first_ok)

    def order_key(w: _Written) -> Hashable:
        return key(w.value) if key is not None else w.first_ok.key

    # (process, session) -> value -> first delivery, in order
    received: dict[tuple[Process, int], dict[Hashable, Pair]] = defaultdict(dict)
    session: dict[Process, int] = defaultdict(int)
    for pair in pairs:
        if pair.f in resets:
            session[pair.process] += 1
        elif pair.ok and pair.f in reads:
            for value in _delivered(pair, written):
                received[(pair.process, session[pair.process])].setdefault(value, pair)

    checked = 0
    for (process, _), deliveries in received.items():
        latest: dict[Hashable, tuple[_Written, Pair]] = {}  # per key: earlier delivery whose write began last
        for value, read in deliveries.items():
            checked += 1
            w = written[value]
            k = order_key(w)
            before = latest.get(k)
            if before is not None and w.end < before[0].start:
                a, a_read = before
                findings.add(
                    "reordered",
                    f"key {k!r}: {value!r} was written (acknowledged op {w.end}) before {a.value!r} "
                    f"(invoked op {a.start}), but process {process!r} received {a.value!r} first "
                    f"(ops {_ops(a_read, read)})",
                    [w.first_ok, a.first_try, a.first_ok, a_read, read],
                    key=k,
                    process=process,
                    first=a.value,
                    second=value,
                )
            if before is None or w.start > before[0].start:
                latest[k] = (w, read)
    counts = {"written": len(written), "deliveries": checked}
    return findings.verdict("per-key-order", None, counts)
