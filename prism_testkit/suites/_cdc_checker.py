"""The CDC workload's checker (kept beside its workload, as Jepsen keeps workload checkers):
judges delivered change events against the writers' ledger and the source's final state.
It stays here, not in :mod:`prism_testkit.stateful.checkers`: it reads the CDC pattern's own
events (``ChangeEvent``, ``Replica``, ``decode``), and the stateful layer imports no pattern.

Writers give every put a unique value ``<tag>|<key>`` (``tag`` names the transaction), so an
event's value says which transaction wrote it; every committed transaction puts at least one
key, so its deletes are attributed through the transaction id its puts arrived with.

Anomalies (Jepsen's names where one exists):

* ``lost``: a write of a committed transaction that no event carries (but of a transaction
  superseded by the snapshot that replaced a lost capture);
* ``aborted-read``: an event carrying a value of a rolled-back transaction;
* ``unexpected``: a value nobody wrote;
* ``split-transaction``: one transaction's events under several transaction ids, or a
  transaction delivered with fewer events than its ``total`` (``partial-transaction``), but
  one of a superseded transaction cut short in an epoch that a later epoch's truncate voided
  (a connector died mid-transaction and the capture was lost before another resumed it: its
  rest arrives only as the rows it left, through the new epoch's snapshot);
* ``reordered``: a key's events out of its commit order;
* ``inconsistent-duplicate``: one event id delivered with different content;
* ``diverged``: the replica built from the delivered events differs from the source;
* ``duplicated``: one event delivered more than once (allowed: at-least-once).
* ``empty-history``: nothing was written or delivered, so nothing was checked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

from prism_testkit import DeliveryGuarantee, Message
from prism_testkit.patterns.cdc import ChangeEvent, Replica, decode
from prism_testkit.stateful.checkers import ACKED, EMPTY, FOLLOWS, Anomaly, Verdict, tolerated
from prism_testkit.stateful.history import History

Write = tuple[str, bytes | None]  # (key, value put, or None for a delete)
Txn = tuple[int, str]  # (epoch, transaction id) of streamed events


def value_of(tag: str, key: str) -> bytes:
    return f"{tag}|{key}".encode()


def tag_of(value: bytes) -> str:
    return value.decode().split("|", 1)[0]


@dataclass
class Ledger:
    """What the writers did: committed transactions in commit order per key, and the tags of
    rolled-back ones. ``seeded`` are values written before the capture existed (snapshot)."""

    committed: dict[str, list[Write]] = field(default_factory=dict)  # tag -> writes
    key_order: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # key -> tags
    rolled_back: set[str] = field(default_factory=set)
    seeded: set[bytes] = field(default_factory=set)
    maybe: dict[str, list[Write]] = field(default_factory=dict)  # outcome unknown (a fault hit the commit)
    excused: set[str] = field(default_factory=set)  # superseded by a snapshot after a lost capture
    # tag -> the history index of its commit's acknowledgement (unknown outcome: its invoke): a
    # failover excuses the loss of a write only when it was held before the failover ended
    acked: dict[str, int] = field(default_factory=dict)

    def commit(self, tag: str, writes: list[Write], acked: int | None = None) -> None:
        self.committed[tag] = writes
        if acked is not None:
            self.acked[tag] = acked
        for key, _ in writes:
            self.key_order[key].append(tag)

    def superseded(self, tags: set[str]) -> None:
        """Transactions committed (or of unknown outcome) before a lost capture was replaced:
        the ones not read before the loss reach the stream only as the rows they left, through
        the new epoch's snapshot. None of their writes is counted lost, nor one cut short in an
        epoch a later truncate voided; convergence still judges the result."""
        self.excused |= tags

    def unknown(self, tag: str, writes: list[Write], invoked: int | None = None) -> None:
        """A transaction that may or may not have committed: never lost, but if any of its
        changes arrives, all must (Jepsen's "must have committed"). ``invoked``: the history
        index of its invoke, from when it may have been held."""
        self.maybe[tag] = writes
        if invoked is not None:
            self.acked[tag] = invoked
        for key, _ in writes:
            self.key_order[key].append(tag)


def check(ledger: Ledger, delivered: list[Message], source: dict[str, bytes], *, ordered: bool = True) -> Verdict:
    """Judges ``delivered`` against ``ledger`` and ``source`` (the module docstring names the
    anomalies): each event kept once, the streamed ones indexed by transaction, then values,
    transactions, per-key order and the replica classified in turn."""
    findings = _CdcFindings()
    wrote = ledger.committed or ledger.maybe or ledger.rolled_back or ledger.seeded
    if not (wrote or delivered or source):
        # Nothing written, delivered or left in the source: a check that judged nothing must
        # not pass as judged (the runner counts it vacuous; a test of only those fails).
        findings.add(EMPTY, "nothing was written or delivered: the history checks nothing")
    index = _index_events(ledger, _classify_redeliveries(findings, delivered))
    _classify_values(findings, ledger, index)
    voided = _classify_partial_transactions(findings, ledger, index)
    never = _classify_committed(findings, ledger, index)
    if ordered:
        _classify_key_order(findings, ledger, index)
    _classify_convergence(findings, ledger, delivered, source, never)
    counts = {"delivered": len(delivered), "events": len(index.events), "committed": len(ledger.committed)}
    excused: dict[str, int] = {}
    if ledger.excused:
        excused["superseded"] = len(ledger.excused)  # not judged lost: written before a lost capture was replaced
    if voided:
        excused["voided-partial"] = voided  # cut short in an epoch a later truncate voided (superseded)
    return findings.verdict(counts, excused)


class _CdcFindings:
    """The anomalies found so far. Events are judged, not operations: every witness is one
    empty history, and each message names the events instead."""

    def __init__(self) -> None:
        self.found: dict[str, list[Anomaly]] = defaultdict(list)
        self.empty = History()

    def add(self, name: str, message: str, **data: object) -> None:
        self.found[name].append(Anomaly(name, message, self.empty, dict(data)))

    def verdict(self, counts: dict[str, int], excused: dict[str, int]) -> Verdict:
        """At-least-once: a duplicate is tolerated. ``excused`` counts what was not judged, listed
        after the anomalies' counts."""
        guarantee = DeliveryGuarantee.AT_LEAST_ONCE
        anomalies = {n: g for n, g in self.found.items() if not tolerated(n, guarantee)}
        allowed = {n: g for n, g in self.found.items() if tolerated(n, guarantee)}
        counts = counts | {n: len(g) for n, g in self.found.items()} | excused
        return Verdict("cdc-checker", guarantee, anomalies, allowed, counts)


def _classify_redeliveries(findings: _CdcFindings, delivered: list[Message]) -> list[ChangeEvent]:
    """Each event once, as it was first delivered; a redelivery is ``duplicated``, and one with
    other content ``inconsistent-duplicate`` too."""
    first: dict[str, ChangeEvent] = {}
    for message in delivered:
        event = decode(message)
        if event.event_id in first:
            # ts_ms is when it was published (Debezium's processing time): it may differ
            if replace(event, ts_ms=0) != replace(first[event.event_id], ts_ms=0):
                findings.add("inconsistent-duplicate", f"event {event.event_id} redelivered with other content")
            findings.add("duplicated", f"event {event.event_id} delivered again", event=event.event_id)
            continue
        first[event.event_id] = event
    return list(first.values())


@dataclass(frozen=True)
class _CdcIndex:
    """The events and transactions :func:`check` judges, gathered once."""

    events: list[ChangeEvent]  # each delivered event once
    everything: dict[str, list[Write]]  # tag -> writes, committed or of unknown outcome
    streamed: list[ChangeEvent]  # the events not from a snapshot, in delivery order
    by_txid: dict[Txn, list[ChangeEvent]]
    txids_of_tag: dict[str, set[Txn]]  # the streamed transactions a tag's values arrived in
    truncated: int  # the last epoch that began with a truncate: every earlier epoch is void


def _index_events(ledger: Ledger, events: list[ChangeEvent]) -> _CdcIndex:
    """The streamed events grouped by transaction, and the transactions each tag arrived in:
    the partial, split, lost and order checks all read them."""
    streamed = [e for e in events if not e.snapshot]
    # A transaction is (epoch, txid): each epoch decodes another capture, after a failover on
    # another server, whose transaction ids may repeat the old primary's.
    by_txid: dict[Txn, list[ChangeEvent]] = defaultdict(list)
    for event in streamed:
        by_txid[event.epoch, event.txid].append(event)
    txids_of_tag: dict[str, set[Txn]] = defaultdict(set)
    for event in streamed:
        if event.after is not None:
            txids_of_tag[tag_of(event.after)].add((event.epoch, event.txid))
    return _CdcIndex(
        events,
        everything={**ledger.committed, **ledger.maybe},
        streamed=streamed,
        by_txid=by_txid,
        txids_of_tag=txids_of_tag,
        truncated=max((e.epoch for e in events if e.op == "t"), default=0),
    )


def _classify_values(findings: _CdcFindings, ledger: Ledger, index: _CdcIndex) -> None:
    """Each value an event carries: of a rolled-back transaction, ``aborted-read``; written by
    nobody (no transaction, no seed), ``unexpected``."""
    committed_values = {value_of(tag, key) for tag, writes in index.everything.items() for key, v in writes if v}
    for event in index.events:
        if event.after is None:
            continue
        if tag_of(event.after) in ledger.rolled_back:
            findings.add("aborted-read", f"{event.op} of {event.key} carries rolled-back value {event.after!r}")
        elif event.after not in committed_values and event.after not in ledger.seeded:
            findings.add("unexpected", f"{event.op} of {event.key} carries a value nobody wrote: {event.after!r}")


def _classify_partial_transactions(findings: _CdcFindings, ledger: Ledger, index: _CdcIndex) -> int:
    """Each streamed transaction short of its ``total`` events is a ``partial-transaction``, but
    one of a superseded transaction a later truncate voided. Returns how many were voided."""
    voided = 0
    for (epoch, txid), group in index.by_txid.items():
        if len(group) == group[0].total and sorted(e.total_order for e in group) == list(range(1, len(group) + 1)):
            continue
        tags = {tag_of(e.after) for e in group if e.after is not None}
        if epoch < index.truncated and tags and tags <= ledger.excused:
            # Cut short by the capture's loss (a connector died mid-transaction and its epoch
            # ended before one resumed it): the truncate of a later epoch voids these events for
            # every consumer, and that epoch's snapshot brings the rows. Convergence judges them.
            voided += 1
            continue
        why = ", voided, but not superseded" if epoch < index.truncated else ""
        where = f" (epoch {epoch}{why})" if epoch or why else ""
        findings.add(
            "partial-transaction", f"transaction {txid}{where}: {len(group)} of {group[0].total} events delivered"
        )
    return voided


def _classify_committed(findings: _CdcFindings, ledger: Ledger, index: _CdcIndex) -> set[tuple[str, str]]:
    """Each transaction that committed (or of unknown outcome, once any of it arrived): under
    several transaction ids, ``split-transaction``; each write of it its own transactions' events
    never carried, ``lost``, unless a snapshot superseded it. Returns the (tag, key) judged lost."""
    never: set[tuple[str, str]] = set()
    for tag, writes in index.everything.items():
        txids = index.txids_of_tag.get(tag, set())
        if tag in ledger.maybe and not txids:
            continue  # it did not commit, as far as anyone can tell
        if len(txids) > 1:
            names = sorted(f"{txid}@{epoch}" if epoch else txid for epoch, txid in txids)
            findings.add("split-transaction", f"transaction {tag} arrived as {len(txids)} transactions: {names}")
        got = {(e.key, e.after) for txid in txids for e in index.by_txid[txid]}
        for key, value in writes:
            want = (key, None if value is None else value_of(tag, key))
            if want not in got and tag not in ledger.excused:
                never.add((tag, key))
                what = "delete" if value is None else "put"
                when = {ACKED: ledger.acked[tag]} if tag in ledger.acked else {}
                findings.add(
                    "lost",
                    f"{what} of {key} by committed {tag} never delivered",
                    key=key,
                    value=want[1],
                    tag=tag,
                    **when,
                )
    return never


def _classify_key_order(findings: _CdcFindings, ledger: Ledger, index: _CdcIndex) -> None:
    """Each key's streamed puts against its commit order: out of it, ``reordered``."""
    for key, tag_order in ledger.key_order.items():
        seen: list[str] = []
        for event in index.streamed:
            if event.key == key and event.after is not None:
                seen.append(tag_of(event.after))
        in_order = [
            t for t in tag_order if t in seen and any(v is not None for k, v in index.everything[t] if k == key)
        ]
        if seen != in_order:
            findings.add("reordered", f"{key}: delivered {seen}, committed {in_order}", key=key)


def _classify_convergence(
    findings: _CdcFindings,
    ledger: Ledger,
    delivered: list[Message],
    source: dict[str, bytes],
    never: set[tuple[str, str]],
) -> None:
    """The replica every delivery built (redeliveries included) against the source: apart,
    ``diverged``, witnessed by the rows missing, extra and stale."""
    replica = Replica()
    for message in delivered:
        replica.apply(message)
    if replica.rows == source:
        return
    missing = sorted(set(source) - set(replica.rows))
    extra = sorted(set(replica.rows) - set(source))
    stale = sorted(k for k in set(source) & set(replica.rows) if source[k] != replica.rows[k])
    # One event, one verdict: a row whose source state is the last write of its key, judged
    # lost (never delivered), cannot be in the replica; when every row apart is such a row,
    # the divergence is those losses seen again (FOLLOWS), else a finding of its own.
    apart = [*missing, *extra, *stale]
    lost_last = [(key, source.get(key)) for key in apart if _lost_last(ledger, key, source.get(key), never)]
    echo = {FOLLOWS: tuple(lost_last)} if len(lost_last) == len(apart) else {}
    findings.add(
        "diverged", f"replica differs from the source: missing {missing}, extra {extra}, stale {stale}", **echo
    )


def _lost_last(ledger: Ledger, key: str, held: bytes | None, never: set[tuple[str, str]]) -> bool:
    """Whether the source holds ``held`` at ``key`` (None: no row) because of the last write of
    ``key`` in commit order, one judged lost (its ``(tag, key)`` in ``never``)."""
    everything = {**ledger.committed, **ledger.maybe}
    for tag in reversed(ledger.key_order.get(key, [])):
        for written, value in everything.get(tag, []):
            if written == key:
                return (tag, key) in never and held == (None if value is None else value_of(tag, key))
    return False
