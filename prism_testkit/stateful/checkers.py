"""Checkers that judge a :class:`~prism_testkit.stateful.history.History` and explain what went wrong.

The definitions follow Jepsen's (the total-queue checker and the Kafka workload's anomaly
names); the code is our own. Every checker returns a :class:`Verdict`. Every anomaly carries a
*witness*: the smallest sub-history that shows it (only the invocations and completions it
needs, with their original indices), so a failure message shows a few lines, not the whole run.

What a delivery guarantee allows (see :func:`tolerated`):

| anomaly | at-least-once | exactly-once | at-most-once |
|---|---|---|---|
| lost, lost-write, unseen | invalid | invalid | tolerated |
| duplicated, duplicate | tolerated | invalid | invalid |
| int-send-skip | reported | reported | reported |
| any other | invalid | invalid | invalid |

Tolerated anomalies are still reported, in :attr:`Verdict.tolerated`, so a suite can show
them without failing. An anomaly that is only a loss seen again (an offset the lost write had
taken, given to the next one) names that loss in its ``data[FOLLOWS]``: where a failover window
tolerates the loss, it is not judged a second time (:mod:`.failover_loss`). ``empty-history``
(nothing was written or read, so nothing was checked) is invalid under every guarantee: a check
that judged nothing must not pass.

Ops sharing a ``txn`` were one transaction. Jepsen's *must have committed* rule applies: when
any value of a transaction whose outcome is unknown was read, the transaction committed, so
its other values are held to the same rules as acknowledged ones.

``tests/test_jepsen_conformance.py`` replays Jepsen's own checker test histories against
these checkers, and lists each deliberate difference.

The history conventions the checkers read are described in :mod:`prism_testkit.stateful.history`.
Values are identities: each written value should be unique (per queue / log).
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.history import History, OpType, Pair, Process

LOSS = frozenset({"lost", "lost-write", "unseen"})
# An anomaly's ``data[FOLLOWS]``: the losses, as :func:`loss_id`, it is wholly a consequence of
# (a copy count, an offset reused, a replica or read model short of them). Where every one of
# them is tolerated, it is that loss again, not a second finding (one event, one verdict: see
# :func:`prism_testkit.stateful.failover_loss.tolerate_failover_losses`).
FOLLOWS = "follows"
# A loss anomaly's ``data[ACKED]``: the history index from which what it says is gone was held
# (the latest acknowledgement among the lost writes; of a write whose outcome is unknown but
# proven, its invoke). A failover excuses the loss only if that came before the failover ended.
# Without it, the write is looked up by the loss's ``key`` and ``value`` facts in its witness.
ACKED = "acked"
# A loss anomaly's ``data[SLOTS]``: the suite slots whose backends held the lost write (absent:
# any of the test's slots). A failover excuses the loss only if it failed one of them over.
SLOTS = "slots"
LossId = tuple[Hashable, Hashable]  # (key, value) of a loss; value None: the key's latest value
DUPLICATION = frozenset({"duplicated", "duplicate"})
# Jepsen allows it by default too: one transaction's appends may interleave with others'.
INFORMATIONAL = frozenset({"int-send-skip"})
EMPTY = "empty-history"


def judged_nothing(verdicts: Sequence[Verdict]) -> bool:
    """Every verdict says only that its history wrote and read nothing (:data:`EMPTY`)."""
    return bool(verdicts) and all(set(v.anomalies) == {EMPTY} for v in verdicts)


def tolerated(name: str, guarantee: DeliveryGuarantee | None) -> bool:
    """Whether ``guarantee`` allows anomaly ``name`` (such anomalies do not invalidate)."""
    if name in INFORMATIONAL:
        return True
    if name in LOSS:
        return guarantee is DeliveryGuarantee.AT_MOST_ONCE
    if name in DUPLICATION:
        return guarantee is DeliveryGuarantee.AT_LEAST_ONCE
    return False


@dataclass(frozen=True)
class Anomaly:
    name: str  # Jepsen's name: lost, duplicated, lost-write, poll-skip...
    message: str  # one line, for humans
    witness: History  # the smallest sub-history that shows it
    data: dict[str, Any] = field(default_factory=dict)  # the facts: key, value, offsets...


def loss_id(anomaly: Anomaly) -> LossId:
    """What a loss anomaly says is gone: its ``key`` and ``value`` facts."""
    return (anomaly.data.get("key"), anomaly.data.get("value"))


def follows(anomaly: Anomaly) -> frozenset[LossId]:
    """The losses ``anomaly`` is wholly a consequence of (empty: a finding of its own)."""
    return frozenset(anomaly.data.get(FOLLOWS, ()))


@dataclass(frozen=True)
class Verdict:
    """A checker's judgement. ``anomalies`` holds what the guarantee forbids (non-empty means
    invalid); ``tolerated`` what was found but is allowed; ``counts`` the numbers (attempts,
    acknowledgements, and one entry per anomaly name found); ``notes`` values worth listing
    that are not anomalies (e.g. ``recovered``)."""

    checker: str
    guarantee: DeliveryGuarantee | None
    anomalies: dict[str, list[Anomaly]]
    tolerated: dict[str, list[Anomaly]]
    counts: dict[str, int]
    notes: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.anomalies

    @property
    def witness(self) -> History | None:
        """The smallest witness of any invalidating anomaly (``None`` when valid)."""
        found = [a for group in self.anomalies.values() for a in group]
        return min(found, key=lambda a: len(a.witness)).witness if found else None

    def witnesses(self) -> dict[str, History]:
        """The smallest witness per invalidating anomaly name."""
        return {name: min(group, key=lambda a: len(a.witness)).witness for name, group in self.anomalies.items()}

    def explain(self, per_anomaly: int = 3) -> str:
        """A readable report: the verdict, the counts, and up to ``per_anomaly`` witnesses of each anomaly."""
        title = self.checker + (f" ({self.guarantee.value})" if self.guarantee else "")
        if self.valid:
            lines = [f"{title}: valid"]
        else:
            summary = ", ".join(f"{len(group)} {name}" for name, group in self.anomalies.items())
            lines = [f"{title}: INVALID: {summary}"]
        lines.append("counts: " + " ".join(f"{name}={n}" for name, n in self.counts.items()))
        for name, values in self.notes.items():
            lines.append(f"{name}: {_listing(values)}")
        allowed = f" (allowed by {self.guarantee.value})" if self.guarantee else " (allowed)"
        for groups in (self.anomalies, self.tolerated):
            for name, group in groups.items():
                heading = "" if groups is self.anomalies else " (reported only)" if name in INFORMATIONAL else allowed
                lines.append(f"{name}{heading}: {len(group)}")
                for anomaly in group[:per_anomaly]:
                    lines.append(f"  - {anomaly.message}")
                    lines.extend("      " + line for line in anomaly.witness.render().splitlines())
                if len(group) > per_anomaly:
                    lines.append(f"  ... and {len(group) - per_anomaly} more")
        return "\n".join(lines)

    def assert_valid(self) -> None:
        """Raise ``AssertionError`` with :meth:`explain` when invalid."""
        if not self.valid:
            raise AssertionError(self.explain())


class _Findings:
    """Collects anomalies while a checker runs, then splits them by the guarantee."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.found: dict[str, list[Anomaly]] = {}

    def add(self, name: str, message: str, witness: Iterable[Pair | None], **data: Any) -> None:
        pairs = [p for p in witness if p is not None]
        anomaly = Anomaly(name, message, self.history.subhistory(pairs), data)
        self.found.setdefault(name, []).append(anomaly)

    def verdict(
        self,
        checker: str,
        guarantee: DeliveryGuarantee | None,
        counts: dict[str, int],
        notes: dict[str, list[Any]] | None = None,
    ) -> Verdict:
        bad = {n: g for n, g in self.found.items() if not tolerated(n, guarantee)}
        allowed = {n: g for n, g in self.found.items() if tolerated(n, guarantee)}
        counts = counts | {name: len(group) for name, group in self.found.items()}
        return Verdict(checker, guarantee, bad, allowed, counts, {k: v for k, v in (notes or {}).items() if v})


def _judged_nothing(findings: _Findings, what: str) -> None:
    findings.add(EMPTY, f"nothing was {what}: the history checks nothing", [])


def _listing(values: list[Any], limit: int = 20) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


def _ops(*pairs: Pair) -> str:
    return ", ".join(dict.fromkeys(str(p.invoke.index) for p in pairs))


# --- total queue ---------------------------------------------------------------------------

Ident = tuple[str | None, Hashable]  # (queue, value)


def total_queue(
    history: History,
    guarantee: DeliveryGuarantee,
    *,
    enqueues: Collection[str] = ("enqueue",),
    dequeues: Collection[str] = ("dequeue",),
    drains: Collection[str] = ("drain",),
) -> Verdict:
    """Jepsen's total-queue check: every acknowledged element comes out, nothing else does.

    The history must end by draining every queue (``drain`` ops, or dequeues until one returns
    ``None``). Elements are identified by (queue key, value). With *attempted* the values of
    all enqueue invocations and *delivered* the multiset of values from ok dequeues and drains:

    - ``lost``: an enqueue completed ok, its value was never delivered, and a drain (or a
      dequeue that found the queue empty) invoked after the acknowledgement showed the queue
      without it. Witness: the enqueue and the last such drain (or empty dequeue).
    - ``unseen``: the same, but no drain or empty dequeue began after the acknowledgement, so
      nobody looked after the write and the loss is not proven (Jepsen's total-queue calls it
      lost, assuming the history ends drained). Invalid as ``lost`` is (only at-most-once
      tolerates it): a history must end by draining every queue. Witness: the enqueue.
    - ``unexpected``: a delivered value that no enqueue attempted, or whose every enqueue
      failed (``fail`` means it did not happen, so it cannot come out). Witness: the delivery
      and the failed enqueue, if any. Jepsen's total-queue (and set) checker counts a value
      whose enqueue failed among the ``recovered`` instead; we follow its Kafka checker,
      which calls a read of a failed write ``G1a``.
    - ``duplicated``: a value delivered more than once. Witness: its enqueue and the first two
      deliveries. Jepsen reports it without judging it (its verdict looks at lost and
      unexpected only): at-least-once agrees; exactly-once and at-most-once, which promise no
      redelivery, are invalid with it.
    - ``recovered`` (not an anomaly, in counts and notes): an enqueue with an unknown outcome
      (``info``, or never completed) whose value was delivered: it did happen.
    """
    findings = _Findings(history)
    attempts: dict[Ident, list[Pair]] = defaultdict(list)
    deliveries: dict[Ident, list[Pair]] = defaultdict(list)  # one entry per delivered copy
    looks: dict[str | None, list[Pair]] = defaultdict(list)  # ok drains and empty dequeues, in order
    for pair in history.pairs():
        if pair.f in enqueues:
            attempts[(pair.key, pair.invoke.value)].append(pair)
        elif pair.ok and pair.f in dequeues:
            if pair.value is None:
                looks[pair.key].append(pair)
            else:
                deliveries[(pair.key, pair.value)].append(pair)
        elif pair.ok and pair.f in drains:
            looks[pair.key].append(pair)
            for value in pair.value or ():
                deliveries[(pair.key, value)].append(pair)

    def looked_after(queue: str | None, since: Pair) -> Pair | None:
        """The last drain or empty dequeue of ``queue`` invoked after ``since`` completed."""
        return next((p for p in reversed(looks[queue]) if since.completed_before(p)), None)

    if not attempts and not deliveries:
        _judged_nothing(findings, "enqueued or dequeued")
    proof = _committed_by_reads(attempts, deliveries)
    recovered: list[Any] = []
    acknowledged = unknown = 0
    for ident, tries in attempts.items():
        queue, value = ident
        acked = next((p for p in tries if p.ok), None)
        copies = deliveries.get(ident, [])
        if acked is not None:
            acknowledged += 1
        elif any(p.type is OpType.INFO for p in tries):
            unknown += 1
            if copies:
                recovered.append(value)
        if acked is not None and not copies:
            final = looked_after(queue, acked)
            where = f", not in the drain of op {_ops(final)}" if final is not None else ", and no drain looked after it"
            findings.add(
                "lost" if final is not None else "unseen",
                f"{value!r} on {queue!r}: enqueue acknowledged (op {_ops(acked)}), never dequeued{where}",
                [acked, final],
                key=queue,
                value=value,
            )
        elif acked is None and not copies and (committed := _proven(tries, proof)) is not None:
            attempt, reader = committed
            final = looked_after(queue, attempt if attempt.completion is not None else reader)
            findings.add(
                "lost" if final is not None else "unseen",
                f"{value!r} on {queue!r}: its transaction {attempt.txn!r} committed (op {_ops(reader)} "
                "dequeued another of its values), but it was never dequeued"
                + ("" if final is not None else ", and no drain looked after it"),
                [attempt, reader, final],
                key=queue,
                value=value,
                txn=attempt.txn,
            )
    for ident, copies in deliveries.items():
        queue, value = ident
        tries = attempts.get(ident, [])
        if not tries or all(p.type is OpType.FAIL for p in tries):
            why = f"its enqueue failed (op {_ops(tries[0])})" if tries else "never enqueued"
            findings.add(
                "unexpected",
                f"{value!r} on {queue!r}: dequeued (op {_ops(copies[0])}) but {why}",
                [copies[0], *tries[:1]],
                key=queue,
                value=value,
            )
        distinct = list(dict.fromkeys(copies))  # a drain holding a value twice is one op
        if len(copies) > 1:
            source = next((p for p in tries if p.ok), tries[0] if tries else None)
            findings.add(
                "duplicated",
                f"{value!r} on {queue!r}: dequeued {len(copies)} times (ops {_ops(*distinct)})",
                [source, *distinct[:2]],
                key=queue,
                value=value,
                times=len(copies),
            )
    counts = {
        "attempted": len(attempts),
        "acknowledged": acknowledged,
        "unknown": unknown,
        "failed": len(attempts) - acknowledged - unknown,
        "dequeued": sum(len(c) for c in deliveries.values()),
        "recovered": len(recovered),
    }
    return findings.verdict("total-queue", guarantee, counts, {"recovered": recovered})


# --- fan-out (pub/sub) ----------------------------------------------------------------------


def fan_out(
    history: History,
    guarantee: DeliveryGuarantee,
    *,
    publishes: Collection[str] = ("publish",),
    subscribes: Collection[str] = ("subscribe",),
    receives: Collection[str] = ("receive",),
    drains: Collection[str] = ("drain",),
) -> Verdict:
    """Pub/sub's check: each subscriber (one process) gets what the guarantee promises of the
    messages published to its topic, judged on its own.

    A subscriber's ``subscribe`` op (key: the topic) completes ok once its subscription is
    established; its ``receive`` ops complete with the value delivered (``None``: nothing came)
    and its final ``drain`` with the values it read to the end. Publishes carry their value on
    the invoke, keyed by topic.

    - ``unexpected``: a subscriber got a value no publish to its topic attempted, or whose every
      publish failed. Witness: the delivery and the failed publish, if any.
    - ``duplicated``: a subscriber got one value more than once. Witness: its publish and the
      first two deliveries.
    - ``lost``: a publish acknowledged after the subscription was established (invoked after
      the subscribe completed ok) that the subscriber never got, although it was read to the
      end (its ``drain`` completed ok). A subscriber closed, or whose drain is ``info`` (its
      subscription ended with a client a restart replaced), is owed nothing. Witness: the
      subscribe, the publish and the drain.

    At-most-once tolerates ``lost``; at-least-once tolerates ``duplicated`` (see
    :func:`tolerated`); ``unexpected`` is invalid under every guarantee.
    """
    findings = _Findings(history)
    pairs = history.pairs()
    attempts: dict[Ident, list[Pair]] = defaultdict(list)
    acked: dict[str | None, list[Pair]] = defaultdict(list)  # per topic, ok publishes
    established: dict[Process, Pair] = {}
    final: dict[Process, Pair] = {}
    deliveries: dict[Process, dict[Hashable, list[Pair]]] = defaultdict(lambda: defaultdict(list))
    for pair in pairs:
        if pair.f in publishes:
            attempts[(pair.key, pair.invoke.value)].append(pair)
            if pair.ok:
                acked[pair.key].append(pair)
        elif pair.f in subscribes and pair.ok:
            established[pair.process] = pair
        elif pair.f in receives and pair.ok and pair.value is not None:
            deliveries[pair.process][pair.value].append(pair)
        elif pair.f in drains and pair.ok:
            final[pair.process] = pair
            for value in pair.value or ():
                deliveries[pair.process][value].append(pair)

    if not attempts and not deliveries:
        _judged_nothing(findings, "published or delivered")
    topic_of = {process: pair.key for process, pair in established.items()}
    delivered = 0
    for process, got in deliveries.items():
        topic = topic_of.get(process)
        for value, copies in got.items():
            delivered += len(copies)
            tries = attempts.get((topic, value), [])
            if not tries or all(p.type is OpType.FAIL for p in tries):
                why = f"its publish failed (op {_ops(tries[0])})" if tries else "never published"
                findings.add(
                    "unexpected",
                    f"{value!r} on {topic!r}: delivered to {process!r} (op {_ops(copies[0])}) but {why}",
                    [copies[0], *tries[:1]],
                    key=topic,
                    value=value,
                    process=process,
                )
            distinct = list(dict.fromkeys(copies))
            if len(copies) > 1:
                source = next((p for p in tries if p.ok), tries[0] if tries else None)
                findings.add(
                    "duplicated",
                    f"{value!r} on {topic!r}: delivered to {process!r} {len(copies)} times (ops {_ops(*distinct)})",
                    [source, *distinct[:2]],
                    key=topic,
                    value=value,
                    process=process,
                    times=len(copies),
                )
    owed = 0
    for process, drain in final.items():
        subscribed = established.get(process)
        if subscribed is None or subscribed.completion is None:
            continue
        topic = subscribed.key
        for publish in acked[topic]:
            if publish.invoke.index < subscribed.completion.index:
                continue  # invoked before the subscription was established: not owed
            owed += 1
            value = publish.invoke.value
            if value not in deliveries[process]:
                findings.add(
                    "lost",
                    f"{value!r} on {topic!r}: published (op {_ops(publish)}) after {process!r} subscribed "
                    f"(op {_ops(subscribed)}), never delivered to it (drained: op {_ops(drain)})",
                    [subscribed, publish, drain],
                    key=topic,
                    value=value,
                    process=process,
                )
    counts = {
        "attempted": len(attempts),
        "acknowledged": sum(len(p) for p in acked.values()),
        "subscribers": len(established),
        "drained": len(final),
        "owed": owed,
        "delivered": delivered,
    }
    return findings.verdict("fan-out", guarantee, counts)


# --- transactions: must have committed --------------------------------------------------


def _committed_by_reads(
    attempts: dict[Any, list[Pair]], reads: dict[Any, list[Pair]] | dict[Any, Pair]
) -> dict[str, Pair]:
    """Transactions proven committed by a read: txn -> the first read of any of its values.
    (A read of a value whose write failed is judged on its own, as an unexpected read.)"""
    proof: dict[str, Pair] = {}
    for ident, tries in attempts.items():
        seen = reads.get(ident)
        if not seen:
            continue
        reader = seen[0] if isinstance(seen, list) else seen
        for attempt in tries:
            if attempt.txn is not None and attempt.type is not OpType.FAIL:
                proof.setdefault(attempt.txn, reader)
    return proof


def _proven(tries: list[Pair], proof: dict[str, Pair]) -> tuple[Pair, Pair] | None:
    """The unknown-outcome attempt whose transaction a read proved committed, with that read."""
    for attempt in tries:
        if attempt.type is OpType.INFO and attempt.txn in proof:
            return attempt, proof[attempt.txn]
    return None


# --- log anomalies -------------------------------------------------------------------------


@dataclass
class _Log:
    """Everything observed about one log: who wrote what, and what each offset was seen to hold."""

    attempts: dict[Hashable, list[Pair]] = field(default_factory=lambda: defaultdict(list))
    acked: list[Pair] = field(default_factory=list)  # ok appends, in history order
    # offset -> value -> first op showing that value there
    at: dict[int, dict[Hashable, Pair]] = field(default_factory=lambda: defaultdict(dict))
    seen: dict[Hashable, Pair] = field(default_factory=dict)  # value -> first read that returned it
    reads: list[tuple[Pair, int]] = field(default_factory=list)  # ok reads with their highest offset
    drains: list[Pair] = field(default_factory=list)

    def observe(self, offset: int, value: Hashable, evidence: Pair) -> None:
        self.at[offset].setdefault(value, evidence)

    def evidence(self, offset: int) -> Pair:
        return next(iter(self.at[offset].values()))


@dataclass
class _Cursor:
    """A consumer's position in one log: the next offset it should read, and the op that set it
    (``by_record``: set by a record that op returned, so a step from it is internal to the op).
    ``otherwise``: where the consumer is if polls of unknown outcome since then did happen
    (just past the records each returned); the next read may start at any of these."""

    next: int
    anchor: Pair
    by_record: bool = False
    otherwise: tuple[_Cursor, ...] = ()

    def fits(self, offset: int, known: list[int]) -> bool:
        """Whether reading ``offset`` next neither goes back nor jumps over an existing offset."""
        if offset < self.next:
            return False
        return bisect.bisect_left(known, self.next) == bisect.bisect_left(known, offset)


def _returned(pair: Pair) -> Any:
    """What a read returned: an ok one's value, or what an info or fail one recorded before
    its outcome was lost or it was undone (``None``, unknown, unless its completion carries a
    value of its own)."""
    if pair.ok:
        return pair.value
    completion = pair.completion
    if completion is not None and completion.value != pair.invoke.value:
        return completion.value
    return None


def _records(pair: Pair) -> list[tuple[int, Hashable]]:
    records = []
    for record in _returned(pair) or ():
        if not (isinstance(record, tuple) and len(record) == 2 and isinstance(record[0], int)):
            raise ValueError(f"op {pair.invoke.index} ({pair.f}): expected (offset, value) records, got {record!r}")
        records.append((record[0], record[1]))
    return records


def log_anomalies(
    history: History,
    guarantee: DeliveryGuarantee,
    *,
    appends: Collection[str] = ("append",),
    polls: Collection[str] = ("poll",),
    drains: Collection[str] = ("drain",),
    seeks: Collection[str] = ("seek",),
    resets: Collection[str] = ("assign", "subscribe"),
) -> Verdict:
    """The Kafka workload's anomalies over append-only logs (each op's ``key`` names its log).

    Inputs: ``append`` invokes carry the value and complete ok with the ``offset`` it got;
    ``poll`` completes ok with a list of ``(offset, value)`` records, read in that order;
    ``drain`` is a final poll to the end, starting at its invoke ``offset`` (default 0);
    ``seek`` (ok, with the next ``offset`` to read) moves a consumer, ``assign``/``subscribe``
    reassign it: the consumer keeps its position in the logs the op's ``value`` (a list of log
    names; else its ``key``) still covers and forgets the others, as Jepsen does.

    A poll or drain that failed did not happen and moves nothing, but the records it returned
    before it was undone (``fail(value=...)``: a poll in a transaction that then aborted) are
    still checked, within the poll and against the position the last read that happened left,
    and join the version order (offsets, duplicates): as in Jepsen, a consumer must return
    right records even in a transaction that aborts. They do not count as reads for
    ``lost-write`` or ``unexpected``. The records of a poll whose outcome is unknown
    (``info(value=...)``) are checked the same way and do count as reads; the consumer is then
    either where it was (the poll did not happen; Jepsen's only choice) or just past them, and
    its next read may start at either. An unknown-outcome poll that recorded nothing forgets
    the position. An ok drain looked at the log even when it returned nothing. A poll's invoke
    ``offset`` (where ``Log.read`` was asked to start) sets the position only when it is
    unknown: later requests are not trusted, the records returned are what is checked, so a
    consumer that computes a wrong offset shows up as a skip. The *version order*
    of a log is what every ok append and every read says each offset holds.

    - ``inconsistent-offsets``: one offset seen holding two different values (by appends'
      acknowledgements or reads). Witness: one op showing each value.
    - ``duplicate``: one value at two offsets. Witness: one op showing each offset.
    - ``lost-write``: an acknowledged append whose value no read ever returned, although a read
      returned an offset at or above the append's (Jepsen's rule: readers saw the log past
      it), or a drain invoked after the append's acknowledgement missed it. Witness: the
      append and that read. (A reader that starts mid-log without a seek can make this rule
      accuse a write it simply never looked at: record seeks, or rely on drains.)
    - ``unseen``: an acknowledged append never read, with no read covering it. Nobody looked,
      so it is no proof of loss, but it is invalid as ``lost-write`` is (only at-most-once
      tolerates it): a history must end by reading every log, as Jepsen's (whose ``unseen``
      is an error too).
    - ``unexpected``: a value read from a log that no append attempted, or whose appends all
      failed (Jepsen's ``G1a``). When the failed append had been given an offset, its data
      holds it as ``failed_offset``, and the message says whether the read found the value at
      that very offset (the aborted record itself was read). A failed append's offset never
      joins the version order: the record was undone, so it proves nothing the log holds.
    - ``poll-skip``: a consumer's next record (in its own sequence of reads, within a poll or
      across polls) is past the offset it should read next, and an offset it jumped over
      exists in the version order. Witness: the read (or seek) that set the position, the
      read that skipped, and one op showing a skipped offset.
    - ``nonmonotonic-poll``: a consumer's next record is at or below an offset it already read,
      with no seek in between. Witness: the op that set the position and the read.
    - ``nonmonotonic-send``: one process's appends to a log got decreasing offsets: acknowledged
      ones, and ones of unknown outcome carrying the offset they were given (``info(offset=...)``)
      once they provably happened (their transaction proven committed, or their value read), as
      Jepsen judges ``:info`` sends. A failed append's offset takes no part.
    - ``int-poll-skip`` / ``int-nonmonotonic-poll``: the same, between two records of one poll.
    - ``int-send-skip`` / ``int-nonmonotonic-send``: appends of one transaction (same ``txn``)
      to a log at offsets with others' records between them (reported only), or decreasing.
    - ``empty-history``: nothing appended and nothing read.

    Position anomalies are invalid under every guarantee: a consumer that rewinds or skips on
    purpose (at-least-once replay from a committed offset, say) records a ``seek``.
    """
    findings = _Findings(history)
    pairs = history.pairs()
    logs: dict[str | None, _Log] = defaultdict(_Log)
    returned = [p for p in pairs if (p.f in polls or p.f in drains) and _records(p)]
    reads = [p for p in returned if p.type is not OpType.FAIL]  # aborted ones only show offsets

    # Version order: acknowledgements first, so an offset's evidence is its append when there is one.
    for pair in pairs:
        if pair.f not in appends:
            continue
        log = logs[pair.key]
        log.attempts[pair.invoke.value].append(pair)
        if pair.ok:
            log.acked.append(pair)
            if pair.offset is not None:
                log.observe(pair.offset, pair.invoke.value, pair)
    for pair in reads:
        log = logs[pair.key]
        records = _records(pair)
        for offset, value in records:
            log.observe(offset, value, pair)
            log.seen.setdefault(value, pair)
        log.reads.append((pair, max(offset for offset, _ in records)))
    for pair in returned:
        if pair.type is OpType.FAIL:
            for offset, value in _records(pair):
                logs[pair.key].observe(offset, value, pair)
    for pair in pairs:  # an ok drain looked, even when it found nothing
        if pair.ok and pair.f in drains:
            logs[pair.key].drains.append(pair)
    if not any(log.attempts for log in logs.values()) and not returned:
        _judged_nothing(findings, "appended or read")

    attempts = {(name, value): tries for name, log in logs.items() for value, tries in log.attempts.items()}
    seen = {(name, value): reader for name, log in logs.items() for value, reader in log.seen.items()}
    proof = _committed_by_reads(attempts, seen)
    for log in logs.values():  # an unknown append's offset joins the version order once it committed
        for tries in log.attempts.values():
            for attempt in tries:
                if attempt.type is OpType.INFO and attempt.txn in proof and attempt.offset is not None:
                    log.observe(attempt.offset, attempt.invoke.value, attempt)
    recovered: list[Any] = []
    _send_order_anomalies(findings, pairs, logs, proof, appends=appends, resets=resets)
    for name, log in logs.items():
        _offset_anomalies(findings, name, log)
        _write_anomalies(findings, name, log, recovered, proof)
    _transaction_send_anomalies(findings, pairs, logs, appends, proof)
    _position_anomalies(findings, pairs, logs, polls=polls, drains=drains, seeks=seeks, resets=resets)

    counts = {
        "logs": len(logs),
        "attempted": sum(len(log.attempts) for log in logs.values()),
        "acknowledged": sum(len(log.acked) for log in logs.values()),
        "read": sum(len(_records(p)) for p in reads),
        "recovered": len(recovered),
    }
    return findings.verdict("log", guarantee, counts, {"recovered": recovered})


def _send_order_anomalies(
    findings: _Findings,
    pairs: list[Pair],
    logs: dict[str | None, _Log],
    proof: dict[str, Pair],
    *,
    appends: Collection[str],
    resets: Collection[str],
) -> None:
    """``nonmonotonic-send``: one process's appends to a log, in its own order, at decreasing
    offsets. An append takes part when its offset is known to hold it: acknowledged, or of
    unknown outcome with the offset it was given (``info(offset=...)``) once it provably
    happened (its transaction was proven committed, or its value was read), as Jepsen's
    analysis judges ``:info`` sends whose effects were visible. Another unknown append, or a
    failed one, changes nothing."""
    last_sent: dict[tuple[Process, str | None], Pair] = {}
    for pair in pairs:
        if pair.f in resets and pair.type is not OpType.FAIL:  # Jepsen forgets sends to logs no longer assigned
            covered = _assigned(pair)
            for place in [s for s in last_sent if s[0] == pair.process and s[1] not in covered]:
                del last_sent[place]
        if pair.f not in appends or pair.offset is None or not _placed(pair, logs[pair.key], proof):
            continue
        previous = last_sent.get((pair.process, pair.key))
        if (
            previous is not None
            and (pair.txn is None or previous.txn != pair.txn)  # within one: int-nonmonotonic-send
            and previous.offset is not None
            and pair.offset <= previous.offset
        ):
            unknown = [p for p in (previous, pair) if not p.ok]
            why = f"; op {_ops(*unknown)} had an unknown outcome but provably happened" if unknown else ""
            # The earlier append acknowledged and never read (judged lost): its offset given
            # again is that loss seen again (FOLLOWS), not a second finding.
            gone = previous.ok and previous.invoke.value not in logs[pair.key].seen
            findings.add(
                "nonmonotonic-send",
                f"process {pair.process!r} appended to {pair.key!r} at offset {pair.offset} "
                f"after offset {previous.offset} (ops {_ops(previous, pair)}){why}",
                [previous, pair],
                key=pair.key,
                offsets=[previous.offset, pair.offset],
                **({FOLLOWS: ((pair.key, previous.invoke.value),)} if gone else {}),
            )
        last_sent[(pair.process, pair.key)] = pair


def _placed(append: Pair, log: _Log, proof: dict[str, Pair]) -> bool:
    """Whether the offset ``append`` completed with is known to hold its value."""
    if append.ok:
        return True
    if append.type is not OpType.INFO:
        return False
    return append.txn in proof or append.invoke.value in log.seen


def _offset_anomalies(findings: _Findings, name: str | None, log: _Log) -> None:
    offsets_of: dict[Hashable, list[int]] = defaultdict(list)
    for offset in sorted(log.at):
        held = log.at[offset]
        for value in held:
            offsets_of[value].append(offset)
        if len(held) > 1:
            (v1, p1), (v2, p2) = list(held.items())[:2]
            # An acknowledged value no read ever returned is judged lost (lost-write, unseen):
            # when the others at this offset are one value, the offset was given again after
            # that loss, which is the loss seen again (FOLLOWS), not a second finding.
            gone = [v for v in held if v not in log.seen and any(p.ok for p in log.attempts.get(v, []))]
            echo = {FOLLOWS: tuple((name, v) for v in gone)} if gone and len(held) - len(gone) <= 1 else {}
            findings.add(
                "inconsistent-offsets",
                f"offset {offset} of {name!r} holds {v1!r} (op {_ops(p1)}) and {v2!r} (op {_ops(p2)})",
                [p1, p2],
                key=name,
                offset=offset,
                values=list(held),
                **echo,
            )
    for value, offsets in offsets_of.items():
        if len(offsets) > 1:
            p1, p2 = log.at[offsets[0]][value], log.at[offsets[1]][value]
            findings.add(
                "duplicate",
                f"{value!r} is at offsets {offsets} of {name!r} (ops {_ops(p1, p2)})",
                [p1, p2],
                key=name,
                value=value,
                offsets=offsets,
            )


def _write_anomalies(
    findings: _Findings, name: str | None, log: _Log, recovered: list[Any], proof: dict[str, Pair]
) -> None:
    for value, reader in log.seen.items():
        tries = log.attempts.get(value, [])
        if not tries or all(p.type is OpType.FAIL for p in tries):
            why = f"its append failed (op {_ops(tries[0])})" if tries else "never appended"
            given = next((p.offset for p in tries if p.offset is not None), None)
            facts: dict[str, Any] = {}
            if given is not None:
                why += f" after it was given offset {given}"
                if value in log.at.get(given, {}):
                    why += "; the aborted record itself was read"
                facts["failed_offset"] = given
            findings.add(
                "unexpected",
                f"{value!r} read from {name!r} (op {_ops(reader)}) but {why}",
                [reader, *tries[:1]],
                key=name,
                value=value,
                **facts,
            )
        elif not any(p.ok for p in tries):
            recovered.append(value)
    reported: set[Hashable] = set()
    # Acknowledged appends, then unknown-outcome ones whose transaction a read proved committed
    # (their value must be readable from when that read completed, if they never completed).
    committed: list[tuple[Pair, Pair, Pair | None]] = [(a, a, None) for a in log.acked]
    for tries in log.attempts.values():
        if not any(p.ok for p in tries) and (proven := _proven(tries, proof)) is not None:
            attempt, proving = proven
            committed.append((attempt, attempt if attempt.completion is not None else proving, proving))
    for append, since, proving_read in committed:
        value = append.invoke.value
        if value in log.seen or value in reported:
            continue
        reported.add(value)
        offset = append.offset
        beyond = None
        if offset is not None:
            beyond = next((p for p, highest in log.reads if highest >= offset), None)
        covering = beyond or next((d for d in log.drains if since.completed_before(d)), None)
        why = "a later drain missed it" if beyond is None else "a read went past its offset"
        if proving_read is not None and covering is not None:
            findings.add(
                "lost-write",
                f"{value!r} appended to {name!r} (op {_ops(append)}) in transaction {append.txn!r}, which "
                f"committed (op {_ops(proving_read)} read another of its values), was never read; "
                f"{why} (op {_ops(covering)})",
                [append, proving_read, covering],
                key=name,
                value=value,
                txn=append.txn,
            )
            continue
        if covering is None:
            findings.add(
                "unseen",
                f"{value!r} appended to {name!r} (op {_ops(append)}, offset {offset}) was never read",
                [append],
                key=name,
                value=value,
                offset=offset,
            )
            continue
        findings.add(
            "lost-write",
            f"{value!r} appended to {name!r} at offset {offset} (op {_ops(append)}) was never read; "
            f"{why} (op {_ops(covering)})",
            [append, covering],
            key=name,
            value=value,
            offset=offset,
        )


def _position_anomalies(
    findings: _Findings,
    pairs: list[Pair],
    logs: dict[str | None, _Log],
    *,
    polls: Collection[str],
    drains: Collection[str],
    seeks: Collection[str],
    resets: Collection[str],
) -> None:
    known = {name: sorted(log.at) for name, log in logs.items()}
    cursors: dict[tuple[Process, str | None], _Cursor] = {}
    for pair in pairs:
        where = (pair.process, pair.key)
        if pair.f not in seeks and pair.f not in resets and pair.f not in polls and pair.f not in drains:
            continue
        if pair.f in resets:
            if pair.type is not OpType.FAIL:  # it did not happen: the assignment stands
                covered = _assigned(pair)
                for place in [c for c in cursors if c[0] == pair.process and c[1] not in covered]:
                    del cursors[place]
            continue
        if pair.f in seeks:
            if pair.ok and pair.offset is not None:
                cursors[where] = _Cursor(pair.offset, pair)
            elif pair.type is OpType.INFO:  # it may have moved the consumer: position unknown
                cursors.pop(where, None)
            continue
        if _returned(pair) is None and not pair.ok:  # what it returned is unknown
            if pair.type is OpType.INFO:  # and it may have moved the consumer
                cursors.pop(where, None)
            continue
        before = cursors.get(where)
        cursor = before
        if pair.f in drains:
            cursor = _Cursor(pair.invoke.offset or 0, pair)
        elif cursor is None and pair.invoke.offset is not None:  # a first read names where it starts
            cursor = _Cursor(pair.invoke.offset, pair)
        start = cursor
        for offset, _value in _records(pair):
            if cursor is not None:
                _check_step(findings, pair, cursor, offset, known.get(pair.key, []), logs[pair.key])
            cursor = _Cursor(offset + 1, pair, by_record=True)
        if pair.type is OpType.INFO and cursor is not None and cursor is not start:
            # Either it did not happen (the consumer is where it was) or it did (just past its records).
            stayed = before if before is not None else start
            if stayed is not None:
                cursor = _Cursor(stayed.next, stayed.anchor, stayed.by_record, (*stayed.otherwise, cursor))
            else:
                cursor = None
        elif pair.type is OpType.FAIL:  # undone: the position stands
            cursor = before
        if cursor is None:
            cursors.pop(where, None)
        else:
            cursors[where] = cursor


def _assigned(pair: Pair) -> set[str | None]:
    """The logs an assign / subscribe op gives its process: its value's names, else its key."""
    value = pair.invoke.value
    if isinstance(value, tuple):
        return set(value)
    return {pair.key} if pair.key is not None else set()


def _transaction_send_anomalies(
    findings: _Findings,
    pairs: list[Pair],
    logs: dict[str | None, _Log],
    appends: Collection[str],
    proof: dict[str, Pair],
) -> None:
    """Jepsen's int-send-skip / int-nonmonotonic-send: one committed transaction's appends to
    a log, in the order it made them, land out of order or with others' records between. An
    append's offset is the one it was given, else the one a read found its value at."""
    sends: dict[tuple[str, str | None], list[tuple[Pair, int]]] = defaultdict(list)
    for pair in pairs:
        if pair.f not in appends or pair.txn is None or not (pair.ok or pair.txn in proof):
            continue
        log = logs[pair.key]
        offset = pair.offset
        if offset is None:
            offset = next((o for o in sorted(log.at) if pair.invoke.value in log.at[o]), None)
        if offset is not None:
            sends[(pair.txn, pair.key)].append((pair, offset))
    for (txn, name), group in sends.items():
        log = logs[name]
        known = sorted(log.at)
        ours = {offset for _, offset in group}
        for (before, first), (after, then) in itertools.pairwise(group):
            if then <= first:
                findings.add(
                    "int-nonmonotonic-send",
                    f"transaction {txn!r} appended to {name!r} at offset {then} after offset "
                    f"{first} (ops {_ops(before, after)})",
                    [before, after],
                    key=name,
                    txn=txn,
                    offsets=[first, then],
                )
                continue
            between = known[bisect.bisect_right(known, first) : bisect.bisect_left(known, then)]
            others = [o for o in between if o not in ours]
            if others:
                findings.add(
                    "int-send-skip",
                    f"transaction {txn!r} appended to {name!r} at offsets {first} and {then} "
                    f"with other records at {others} between them (ops {_ops(before, after, log.evidence(others[0]))})",
                    [before, after, log.evidence(others[0])],
                    key=name,
                    txn=txn,
                    skipped=others,
                )


def _check_step(findings: _Findings, pair: Pair, cursor: _Cursor, offset: int, known: list[int], log: _Log) -> None:
    if cursor.otherwise and not cursor.fits(offset, known) and any(o.fits(offset, known) for o in cursor.otherwise):
        return  # the poll of unknown outcome happened, and this read carries on from it
    who, name, expected = pair.process, pair.key, cursor.next
    same_txn = pair.txn is not None and cursor.anchor.txn == pair.txn
    internal = "int-" if cursor.by_record and (cursor.anchor is pair or same_txn) else ""
    if offset < expected:
        findings.add(
            f"{internal}nonmonotonic-poll",
            f"process {who!r} read offset {offset} of {name!r} when offset {expected} was next, "
            f"without a seek (ops {_ops(cursor.anchor, pair)})",
            [cursor.anchor, pair],
            key=name,
            process=who,
            expected=expected,
            offset=offset,
        )
    elif offset > expected:
        skipped = known[bisect.bisect_left(known, expected) : bisect.bisect_left(known, offset)]
        if skipped:
            evidence = log.evidence(skipped[0])
            findings.add(
                f"{internal}poll-skip",
                f"process {who!r} read offset {offset} of {name!r} when offset {expected} was next, "
                f"skipping existing offsets {skipped} (ops {_ops(cursor.anchor, pair)}; "
                f"offset {skipped[0]} shown by op {_ops(evidence)})",
                [cursor.anchor, pair, evidence],
                key=name,
                process=who,
                expected=expected,
                offset=offset,
                skipped=skipped,
            )


# --- per-key order -------------------------------------------------------------------------


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


def suite_verdict(checker: str, found: dict[str, list[Anomaly]], counts: dict[str, int]) -> Verdict:
    """The verdict of a workload-specific check that lives beside its suite (as Jepsen keeps
    workload checkers beside their workload): every non-empty group of ``found`` invalidates."""
    anomalies = {name: group for name, group in found.items() if group}
    return Verdict(checker, None, anomalies, {}, counts | {n: len(g) for n, g in anomalies.items()})
