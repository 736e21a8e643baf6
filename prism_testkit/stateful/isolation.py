"""An isolation checker after Jepsen's Elle: list-append transactions judged by their dependency graph.

A transaction is one op (``f="txn"``) whose value is a tuple of micro-operations over keys
(Elle's list-append workload):

- ``("r", key, None)`` on the invoke, ``("r", key, (1, 4, 7))`` on an ``ok`` completion: the
  key's whole list as the transaction read it (``()`` for an absent key);
- ``("append", key, element)``: appends ``element`` to the key's list. Elements are identities:
  each is appended once, by one transaction, so a read names the writer of every element it holds.

``ok`` means committed, ``fail`` certainly not applied, ``info`` unknown. An unknown transaction
one of whose elements was read committed (Jepsen's *must have committed*); one nobody saw is
left out of the graph.

Why list-append: a read of a list gives every key's version order directly (each read is a
prefix of the next, the longest read is the order), so every dependency below is a fact of the
history, not a guess. With registers the order of writes is invisible once overwritten.

The dependency graph (Adya's, as Elle builds it) over committed transactions:

- ``ww``: ``T2`` appended the element right after ``T1``'s in a key's version order;
- ``wr``: ``T2`` read a list whose last element ``T1`` appended;
- ``rw`` (anti-dependency): ``T1`` read a list and ``T2`` appended the next element after it:
  ``T1`` did not see ``T2``'s write, so ``T1`` must come before ``T2``.

A cycle means no serial order exists. Cycles are classified as Elle does and each is reported
with its shortest cycle (breadth-first), every edge explained in words:

- ``G0``: ``ww`` edges only (a write cycle);
- ``G1c``: ``ww`` and ``wr`` edges, at least one ``wr`` (circular information flow);
- ``G-single``: exactly one ``rw`` edge (read skew: a reader saw part of another transaction);
- ``G2-item``: two or more ``rw`` edges (write skew: each of two transactions read what the
  other then changed).

Besides cycles: ``G1a`` (an ok read of an element whose transaction failed), ``G1b`` (an ok read
ending in an element its transaction followed with another append to the same key: an
intermediate state), ``internal`` (a transaction's reads disagree with each other or with its
own appends), ``lost-update`` (two committed transactions read one key at the same version and
both appended to it: a read-modify-write whose base another overwrote), ``incompatible-order``
(two reads of a key of which neither is a prefix of the other: no version order exists),
``duplicate-elements`` (an element twice in one read), ``unexpected`` (an element nobody
appended) and ``lost`` (a committed element missing from a final read, one made by process
``final`` once every client stopped). A history with no committed read judges nothing
(``empty-history``).

:data:`LEVELS` says what each level forbids; ``serializable`` (what ``transactions`` promises)
forbids all of the above. Snapshot isolation allows ``G2-item`` (reported as tolerated).

The code is our own; the ideas (list-append, the edge and cycle vocabulary, explaining each
step) are Elle's: Kingsbury and Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
Observations" (VLDB 2020), and jepsen-io/elle.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prism_testkit.stateful.checkers import ACKED, EMPTY, Anomaly, Verdict
from prism_testkit.stateful.history import History, OpType, Pair

READ = "r"
APPEND = "append"
FINAL = "final"  # the process whose reads come after every client stopped

# How each anomaly reads in a message: the name a reader knows first, Adya's name after it.
TITLES = {
    "G0": "write cycle (G0)",
    "G1a": "aborted read (G1a)",
    "G1b": "intermediate read (G1b)",
    "G1c": "circular information flow (G1c)",
    "G-single": "read skew (G-single)",
    "G2-item": "write skew (G2-item)",
    "lost-update": "lost update",
    "internal": "internal inconsistency",
    "incompatible-order": "incompatible order",
    "duplicate-elements": "duplicate elements",
    "unexpected": "unexpected element",
    "lost": "lost write",
}
ALL = frozenset(TITLES)
# What each level forbids. Snapshot isolation allows write skew; everything else it forbids too.
LEVELS: dict[str, frozenset[str]] = {
    "serializable": ALL,
    "snapshot-isolation": ALL - {"G2-item"},
}
MAX_CYCLES = 5  # per kind: the shortest few say everything; more only lengthen the message


@dataclass(frozen=True)
class Txn:
    """One transaction: its pair in the history, the micro-ops it ran (with what its reads
    returned, when it completed ok) and its outcome."""

    pair: Pair
    mops: tuple[tuple[str, Any, Any], ...]
    status: OpType

    @property
    def name(self) -> str:
        return f"T{self.pair.invoke.index}"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.pair.process})"

    @property
    def ok(self) -> bool:
        return self.status is OpType.OK

    def appends(self, key: Any) -> list[Any]:
        return [v for f, k, v in self.mops if f == APPEND and k == key]

    def external_reads(self) -> list[tuple[Any, tuple[Any, ...]]]:
        """Reads of a key before this transaction appended to it: the state others left."""
        written: set[Any] = set()
        found: list[tuple[Any, tuple[Any, ...]]] = []
        for f, k, v in self.mops:
            if f == APPEND:
                written.add(k)
            elif f == READ and k not in written and v is not None:
                found.append((k, tuple(v)))
        return found


@dataclass(frozen=True)
class Edge:
    """A dependency ``source -> target`` of one kind on one key, with why it holds."""

    source: Txn
    target: Txn
    kind: str  # ww, wr, rw
    key: Any
    why: str


@dataclass
class Analysis:
    """What the checker inferred: transactions, committed ones, version orders and edges."""

    txns: list[Txn]
    committed: list[Txn]
    orders: dict[Any, tuple[Any, ...]]
    edges: list[Edge]
    writers: dict[tuple[Any, Any], Txn] = field(default_factory=dict)


def transactions(history: History, f: str = "txn") -> list[Txn]:
    """The transactions of ``history`` (ops named ``f``), in invocation order."""
    found: list[Txn] = []
    for pair in history.pairs():
        if pair.f != f:
            continue
        status = pair.type
        value = pair.completion.value if status is OpType.OK and pair.completion is not None else pair.invoke.value
        mops = tuple((str(m[0]), m[1], m[2]) for m in (value or ()))
        if status is not OpType.OK:  # what an unfinished read returned is no evidence
            mops = tuple((fn, k, None if fn == READ else v) for fn, k, v in mops)
        found.append(Txn(pair, mops, status))
    return found


def _show(values: Sequence[Any]) -> str:
    return "[" + ", ".join(repr(v) for v in values) + "]"


def _writers(txns: Iterable[Txn]) -> dict[tuple[Any, Any], Txn]:
    writers: dict[tuple[Any, Any], Txn] = {}
    for txn in txns:
        for f, k, v in txn.mops:
            if f != APPEND:
                continue
            if (k, v) in writers:
                raise ValueError(f"element {v!r} of key {k!r} is appended twice: elements must be unique")
            writers[(k, v)] = txn
    return writers


def _version_order(key: Any, reads: list[tuple[Any, ...]], writers: dict[tuple[Any, Any], Txn]) -> tuple[Any, ...]:
    """The longest read, extended by what its last writer appended after its last element (a
    transaction's appends to one key are adjacent), or, with nothing read, the appends of the
    only transaction that may have appended to the key."""
    longest = max(reads, key=len, default=())
    order = list(dict.fromkeys(longest))
    if order:
        last = writers.get((key, order[-1]))
        if last is not None:
            mine = last.appends(key)
            order += [v for v in mine[mine.index(order[-1]) + 1 :] if v not in order]
        return tuple(order)
    candidates = {id(t): t for (k, _), t in writers.items() if k == key and t.status is not OpType.FAIL}
    if len(candidates) == 1:
        (only,) = candidates.values()
        return tuple(only.appends(key))
    return ()


def analyse(history: History, f: str = "txn") -> tuple[Analysis, list[tuple[str, str, list[Txn], dict[str, Any]]]]:
    """The dependency graph of ``history`` and the non-cycle anomalies found building it
    (each ``(name, message, transactions of its witness, facts)``)."""
    txns = transactions(history, f)
    writers = _writers(txns)
    found: list[tuple[str, str, list[Txn], dict[str, Any]]] = []

    committed = _committed(txns)
    is_committed = {id(t) for t in committed}

    reads_by_key: dict[Any, list[tuple[Txn, tuple[Any, ...]]]] = defaultdict(list)
    for txn in txns:
        if not txn.ok:
            continue
        _internal(txn, found)
        for key, read in txn.external_reads():
            reads_by_key[key].append((txn, read))
            _read_facts(txn, key, read, writers, found)

    orders: dict[Any, tuple[Any, ...]] = {}
    edges: list[Edge] = []
    keys = set(reads_by_key) | {k for k, _ in writers}
    for key in sorted(keys, key=repr):
        reads = reads_by_key.get(key, [])
        order = _version_order(key, [r for _, r in reads], writers)
        orders[key] = order
        longest_reader = max(reads, key=lambda tr: len(tr[1]), default=None)
        for txn, read in reads:
            if tuple(dict.fromkeys(read)) != order[: len(dict.fromkeys(read))] and longest_reader is not None:
                other = longest_reader[0]
                found.append(
                    (
                        "incompatible-order",
                        f"{TITLES['incompatible-order']}: reads of {key!r} disagree: {txn.label} read "
                        f"{_show(read)}, {other.label} read {_show(longest_reader[1])}: neither is a prefix "
                        "of the other, so no order of its appends explains both",
                        [txn, other],
                        {"key": key, "reads": [read, longest_reader[1]]},
                    )
                )
        edges += _edges(key, order, reads, writers, is_committed)
        _lost_update(key, txns, found)
        _lost(key, reads, writers, found)
    return Analysis(txns, committed, orders, edges, writers), found


def _committed(txns: list[Txn]) -> list[Txn]:
    """The ok transactions, and the unknown ones an ok read proves committed (Jepsen's *must
    have committed*: one of their elements was read)."""
    seen: set[tuple[Any, Any]] = set()
    for txn in txns:
        if txn.ok:
            for fn, k, v in txn.mops:
                if fn == READ and v is not None:
                    seen.update((k, e) for e in v)
    return [t for t in txns if t.ok or (t.status is OpType.INFO and any(a in seen for a in _appended(t)))]


def _appended(txn: Txn) -> list[tuple[Any, Any]]:
    return [(k, v) for f, k, v in txn.mops if f == APPEND]


def _internal(txn: Txn, found: list[tuple[str, str, list[Txn], dict[str, Any]]]) -> None:
    """Each read agrees with the transaction's earlier reads and its own appends of the key."""
    known: dict[Any, list[Any]] = {}  # the key's list as this transaction must now see it
    tail: dict[Any, list[Any]] = defaultdict(list)  # appended since, the key's state unknown
    for f, k, v in txn.mops:
        if f == APPEND:
            if k in known:
                known[k].append(v)
            else:
                tail[k].append(v)
            continue
        if v is None:
            continue
        read = list(v)
        if k in known:
            expected, ok = known[k], read == known[k]
        else:
            expected = ["...", *tail[k]]
            ok = not tail[k] or read[-len(tail[k]) :] == tail[k]
        if not ok:
            shown = "[" + ", ".join("..." if e == "..." else repr(e) for e in expected) + "]"
            found.append(
                (
                    "internal",
                    f"{TITLES['internal']}: {txn.label} read {k!r} = {_show(read)} where its own earlier "
                    f"reads and appends say {shown}",
                    [txn],
                    {"key": k, "read": tuple(read), "expected": tuple(expected)},
                )
            )
        known[k] = read
        tail.pop(k, None)


def _read_facts(
    txn: Txn,
    key: Any,
    read: tuple[Any, ...],
    writers: dict[tuple[Any, Any], Txn],
    found: list[tuple[str, str, list[Txn], dict[str, Any]]],
) -> None:
    """What one committed read shows on its own: duplicates, unknown, aborted and intermediate elements."""
    doubled = sorted({e for e in read if read.count(e) > 1}, key=repr)
    if doubled:
        found.append(
            (
                "duplicate-elements",
                f"{TITLES['duplicate-elements']}: {txn.label} read {key!r} = {_show(read)}, holding "
                f"{_show(doubled)} more than once though each was appended once",
                [txn],
                {"key": key, "read": read},
            )
        )
    for element in dict.fromkeys(read):
        writer = writers.get((key, element))
        if writer is None:
            found.append(
                (
                    "unexpected",
                    f"{TITLES['unexpected']}: {txn.label} read {key!r} = {_show(read)}, but no "
                    f"transaction appended {element!r}",
                    [txn],
                    {"key": key, "element": element},
                )
            )
        elif writer.status is OpType.FAIL and writer is not txn:
            found.append(
                (
                    "G1a",
                    f"{TITLES['G1a']}: {txn.label} read {key!r} = {_show(read)}, but {element!r} was "
                    f"appended by {writer.label}, which aborted",
                    [writer, txn],
                    {"key": key, "element": element},
                )
            )
    if read:
        last = read[-1]
        writer = writers.get((key, last))
        if writer is not None and writer is not txn:
            mine = writer.appends(key)
            if mine.index(last) < len(mine) - 1:
                found.append(
                    (
                        "G1b",
                        f"{TITLES['G1b']}: {txn.label} read {key!r} = {_show(read)}, ending in "
                        f"{last!r}, but {writer.label} appended {_show(mine)} to {key!r}: the state "
                        f"after {last!r} alone was never committed",
                        [writer, txn],
                        {"key": key, "element": last},
                    )
                )


def _edges(
    key: Any,
    order: tuple[Any, ...],
    reads: list[tuple[Txn, tuple[Any, ...]]],
    writers: dict[tuple[Any, Any], Txn],
    committed: set[int],
) -> list[Edge]:
    edges: list[Edge] = []
    for before, after in itertools.pairwise(order):
        a, b = writers.get((key, before)), writers.get((key, after))
        if a is not None and b is not None and a is not b and id(a) in committed and id(b) in committed:
            why = f"{a.name} appended {before!r} to {key!r}, and {b.name} appended {after!r} right after it"
            edges.append(Edge(a, b, "ww", key, why))
    for txn, read in reads:
        distinct = tuple(dict.fromkeys(read))
        if distinct != order[: len(distinct)]:
            continue  # an incompatible read: reported, and no edge can be trusted from it
        if distinct:
            writer = writers.get((key, distinct[-1]))
            if writer is not None and writer is not txn and id(writer) in committed:
                why = f"{writer.name} appended {distinct[-1]!r} to {key!r}, which {txn.name} read ({_show(read)})"
                edges.append(Edge(writer, txn, "wr", key, why))
        if len(distinct) < len(order):
            following = order[len(distinct)]
            writer = writers.get((key, following))
            if writer is not None and writer is not txn and id(writer) in committed:
                why = (
                    f"{txn.name} read {key!r} = {_show(read)}, without {following!r}, which {writer.name} appended next"
                )
                edges.append(Edge(txn, writer, "rw", key, why))
    return edges


def _lost_update(key: Any, txns: list[Txn], found: list[tuple[str, str, list[Txn], dict[str, Any]]]) -> None:
    """Committed read-modify-writes of ``key`` from one version: all but one lost their base."""
    bases: dict[tuple[Any, ...], list[Txn]] = defaultdict(list)
    for txn in txns:
        if not txn.ok or not txn.appends(key):
            continue
        base = next((read for k, read in txn.external_reads() if k == key), None)
        if base is not None:
            bases[base].append(txn)
    for base, group in bases.items():
        if len(group) < 2:
            continue
        many, both = ("two", "both") if len(group) == 2 else (str(len(group)), "all")
        appended = " and ".join(f"{t.label} appended {_show(t.appends(key))}" for t in group)
        found.append(
            (
                "lost-update",
                f"{TITLES['lost-update']}: {many} read-modify-write transactions of {key!r} {both} "
                f"committed from the same version {_show(base)}: {appended}; in a serial order each "
                "would have read the other's append",
                group,
                {"key": key, "base": base},
            )
        )


def _lost(
    key: Any,
    reads: list[tuple[Txn, tuple[Any, ...]]],
    writers: dict[tuple[Any, Any], Txn],
    found: list[tuple[str, str, list[Txn], dict[str, Any]]],
) -> None:
    """Committed appends a final read of the key does not hold."""
    finals = [(t, r) for t, r in reads if t.pair.process == FINAL]
    if not finals:
        return
    reader, final = finals[-1]
    for (k, element), writer in writers.items():
        if k == key and writer.ok and element not in final:
            found.append(
                (
                    "lost",
                    f"{TITLES['lost']}: {writer.label} appended {element!r} to {key!r} and committed, "
                    f"but the final read {reader.name} found {key!r} = {_show(final)}",
                    [writer, reader],
                    # committed then: a failover excuses its loss only if it ended later
                    {"key": key, "element": element, ACKED: (writer.pair.completion or writer.pair.invoke).index},
                )
            )


# --- cycles --------------------------------------------------------------------------------


def _shortest_path(start: Txn, goal: Txn, adjacent: dict[int, list[Edge]]) -> list[Edge] | None:
    """The fewest edges from ``start`` to ``goal`` (breadth first), or None."""
    came: dict[int, Edge | None] = {id(start): None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node is goal:
            path: list[Edge] = []
            while (edge := came[id(node)]) is not None:
                path.append(edge)
                node = edge.source
            return path[::-1]
        for edge in adjacent.get(id(node), []):
            if id(edge.target) not in came:
                came[id(edge.target)] = edge
                queue.append(edge.target)
    return None


def _adjacency(edges: Iterable[Edge], kinds: frozenset[str]) -> dict[int, list[Edge]]:
    adjacent: dict[int, list[Edge]] = defaultdict(list)
    for edge in edges:
        if edge.kind in kinds:
            adjacent[id(edge.source)].append(edge)
    return adjacent


def classify(cycle: Sequence[Edge]) -> str:
    """Elle's name of a cycle, from the kinds of its edges."""
    kinds = [e.kind for e in cycle]
    anti = kinds.count("rw")
    if anti == 1:
        return "G-single"
    if anti > 1:
        return "G2-item"
    return "G1c" if "wr" in kinds else "G0"


def cycles(edges: Sequence[Edge]) -> dict[str, list[list[Edge]]]:
    """The shortest cycle through each edge, by kind (at most :data:`MAX_CYCLES` each): G0
    through ww edges alone, G1c through ww and wr, G-single closing an rw edge with ww and wr
    edges, G2-item closing one through any path that holds another rw edge."""
    found: dict[str, list[list[Edge]]] = defaultdict(list)
    seen: set[frozenset[int]] = set()
    searches = [
        ("ww", frozenset({"ww"})),
        ("wr", frozenset({"ww", "wr"})),
        ("rw", frozenset({"ww", "wr"})),
        ("rw", frozenset({"ww", "wr", "rw"})),
    ]
    for through, kinds in searches:
        adjacent = _adjacency(edges, kinds)
        for edge in edges:
            if edge.kind != through:
                continue
            back = _shortest_path(edge.target, edge.source, adjacent)
            if back is None:
                continue
            cycle = [edge, *back]
            first = min(range(len(cycle)), key=lambda i: cycle[i].source.pair.invoke.index)
            cycle = cycle[first:] + cycle[:first]  # from its earliest transaction: one reading per cycle
            nodes = frozenset(id(e.source) for e in cycle)
            name = classify(cycle)
            if nodes in seen or len(found[name]) >= MAX_CYCLES:
                continue
            seen.add(nodes)
            found[name].append(cycle)
    return dict(found)


def describe_cycle(cycle: Sequence[Edge]) -> str:
    """``T1 -> T2 -> T1: <edge>; <edge>``, each edge explained with its kind."""
    names = [e.source.name for e in cycle] + [cycle[0].source.name]
    steps = "; ".join(f"{e.why} ({e.kind})" for e in cycle)
    return f"{' -> '.join(names)}: {steps}"


# --- the verdict ---------------------------------------------------------------------------


def check_isolation(history: History, level: str = "serializable", *, f: str = "txn") -> Verdict:
    """Judge the list-append transactions of ``history`` at isolation ``level`` (a key of
    :data:`LEVELS`): what the level forbids invalidates, what it allows is reported as tolerated."""
    forbidden = LEVELS[level]
    analysis, found = analyse(history, f)
    for name, group in cycles(analysis.edges).items():
        for cycle in group:
            txns = [e.source for e in cycle]
            facts = {
                "cycle": [t.name for t in txns],
                "edges": [(e.source.name, e.target.name, e.kind, e.key) for e in cycle],
            }
            found.append((name, f"{TITLES[name]}: {describe_cycle(cycle)}", txns, facts))
    anomalies: dict[str, list[Anomaly]] = {}
    tolerated: dict[str, list[Anomaly]] = {}
    for name, message, txns, facts in found:
        witness = history.subhistory(t.pair for t in txns)
        (anomalies if name in forbidden else tolerated).setdefault(name, []).append(
            Anomaly(name, message, witness, facts)
        )
    committed_reads = sum(1 for t in analysis.txns if t.ok for fn, _, v in t.mops if fn == READ and v is not None)
    if not committed_reads:
        anomalies[EMPTY] = [
            Anomaly(EMPTY, "no committed transaction read anything: the history checks nothing", History())
        ]
    counts = {
        "transactions": len(analysis.txns),
        "committed": sum(1 for t in analysis.txns if t.ok),
        "aborted": sum(1 for t in analysis.txns if t.status is OpType.FAIL),
        "unknown": sum(1 for t in analysis.txns if t.status is OpType.INFO),
        "edges": len(analysis.edges),
    }
    counts |= {name: len(group) for name, group in (anomalies | tolerated).items()}
    return Verdict(f"isolation ({level})", None, anomalies, tolerated, counts)
