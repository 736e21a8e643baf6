"""Pub/sub: :func:`fan_out`, each subscriber judged on its own against what was published to its
topic after it subscribed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Hashable
from dataclasses import dataclass

from prism_testkit.capabilities import DeliveryGuarantee
from prism_testkit.stateful.checkers.verdict import Ident, Verdict, _Findings, _judged_nothing, _ops
from prism_testkit.stateful.history import History, OpType, Pair, Process


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
    index = _index_pubsub(history, publishes, subscribes, receives, drains)
    if not index.attempts and not index.deliveries:
        _judged_nothing(findings, "published or delivered")
    delivered = _classify_deliveries(findings, index.attempts, index.established, index.deliveries)
    owed = _classify_owed(findings, index.acked, index.established, index.final, index.deliveries)
    counts = {
        "attempted": len(index.attempts),
        "acknowledged": sum(len(p) for p in index.acked.values()),
        "subscribers": len(index.established),
        "drained": len(index.final),
        "owed": owed,
        "delivered": delivered,
    }
    return findings.verdict("fan-out", guarantee, counts)


@dataclass(frozen=True)
class _PubSubIndex:
    """What :func:`fan_out` judges, gathered in one pass over the history."""

    attempts: dict[Ident, list[Pair]]
    acked: dict[str | None, list[Pair]]  # per topic, ok publishes
    established: dict[Process, Pair]  # each subscriber's ok subscribe
    final: dict[Process, Pair]  # each subscriber's ok drain
    deliveries: dict[Process, dict[Hashable, list[Pair]]]


def _index_pubsub(
    history: History,
    publishes: Collection[str],
    subscribes: Collection[str],
    receives: Collection[str],
    drains: Collection[str],
) -> _PubSubIndex:
    """One pass over the history: each value's publish attempts, each topic's acknowledged
    publishes, and each subscriber's subscribe, drain and deliveries."""
    attempts: dict[Ident, list[Pair]] = defaultdict(list)
    acked: dict[str | None, list[Pair]] = defaultdict(list)
    established: dict[Process, Pair] = {}
    final: dict[Process, Pair] = {}
    deliveries: dict[Process, dict[Hashable, list[Pair]]] = defaultdict(lambda: defaultdict(list))
    for pair in history.pairs():
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
    return _PubSubIndex(attempts, acked, established, final, deliveries)


def _classify_deliveries(
    findings: _Findings,
    attempts: dict[Ident, list[Pair]],
    established: dict[Process, Pair],
    deliveries: dict[Process, dict[Hashable, list[Pair]]],
) -> int:
    """Each value a subscriber got: ``unexpected`` when no publish to its topic could have sent
    it, ``duplicated`` when it came more than once. Returns the copies delivered."""
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
    return delivered


def _classify_owed(
    findings: _Findings,
    acked: dict[str | None, list[Pair]],
    established: dict[Process, Pair],
    final: dict[Process, Pair],
    deliveries: dict[Process, dict[Hashable, list[Pair]]],
) -> int:
    """Each publish a drained subscriber was owed and never got, as ``lost``. Returns how many
    were owed."""
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
    return owed
