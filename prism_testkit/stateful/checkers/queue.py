"""Durable queues: :func:`total_queue`, Jepsen's total-queue check (every acknowledged element
comes out, nothing else does)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.checkers._committed import _committed_by_reads, _proven
from prism_testkit.stateful.checkers.verdict import Ident, Verdict, _Findings, _judged_nothing, _ops
from prism_testkit.stateful.history import History, OpType, Pair


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
    index = _index_queue(history, enqueues, dequeues, drains)
    if not index.attempts and not index.deliveries:
        _judged_nothing(findings, "enqueued or dequeued")
    acknowledged, unknown, recovered = _classify_enqueues(findings, index)
    _classify_deliveries(findings, index)
    counts = {
        "attempted": len(index.attempts),
        "acknowledged": acknowledged,
        "unknown": unknown,
        "failed": len(index.attempts) - acknowledged - unknown,
        "dequeued": sum(len(c) for c in index.deliveries.values()),
        "recovered": len(recovered),
    }
    return findings.verdict("total-queue", guarantee, counts, {"recovered": recovered})


@dataclass(frozen=True)
class _QueueIndex:
    """What :func:`total_queue` judges, gathered in one pass over the history."""

    attempts: dict[Ident, list[Pair]]
    deliveries: dict[Ident, list[Pair]]  # one entry per delivered copy
    looks: dict[str | None, list[Pair]]  # ok drains and empty dequeues, in order


def _index_queue(
    history: History, enqueues: Collection[str], dequeues: Collection[str], drains: Collection[str]
) -> _QueueIndex:
    """One pass over the history: each element's enqueue attempts and delivered copies, and
    each queue's looks."""
    attempts: dict[Ident, list[Pair]] = defaultdict(list)
    deliveries: dict[Ident, list[Pair]] = defaultdict(list)
    looks: dict[str | None, list[Pair]] = defaultdict(list)
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
    return _QueueIndex(attempts, deliveries, looks)


def _looked_after(looks: dict[str | None, list[Pair]], queue: str | None, since: Pair) -> Pair | None:
    """The last drain or empty dequeue of ``queue`` invoked after ``since`` completed."""
    return next((p for p in reversed(looks[queue]) if since.completed_before(p)), None)


def _classify_enqueues(findings: _Findings, index: _QueueIndex) -> tuple[int, int, list[Any]]:
    """Each attempted element as acknowledged, unknown or failed; an acknowledged (or proven
    committed) one never delivered as ``lost`` or ``unseen``. Returns the acknowledged and
    unknown counts and the recovered values (unknown outcome, but delivered)."""
    proof = _committed_by_reads(index.attempts, index.deliveries)
    recovered: list[Any] = []
    acknowledged = unknown = 0
    for ident, tries in index.attempts.items():
        queue, value = ident
        acked = next((p for p in tries if p.ok), None)
        copies = index.deliveries.get(ident, [])
        if acked is not None:
            acknowledged += 1
        elif any(p.type is OpType.INFO for p in tries):
            unknown += 1
            if copies:
                recovered.append(value)
        if acked is not None and not copies:
            final = _looked_after(index.looks, queue, acked)
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
            final = _looked_after(index.looks, queue, attempt if attempt.completion is not None else reader)
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
    return acknowledged, unknown, recovered


def _classify_deliveries(findings: _Findings, index: _QueueIndex) -> None:
    """Each delivered element: ``unexpected`` when no enqueue of it could have happened,
    ``duplicated`` when it came out more than once."""
    for ident, copies in index.deliveries.items():
        queue, value = ident
        tries = index.attempts.get(ident, [])
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
