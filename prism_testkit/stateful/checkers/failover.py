"""What a failover may cost a backend that does not promise to survive one.

``survives_failover`` is checked both ways, as ``durable`` is: a backend that declares it must
lose nothing acknowledged across a failover, and one that does not (asynchronous replication:
``postgres-ha-async``, ``redis-sentinel``) is failed over all the same, its losses reported as
tolerated, with counts, rather than called a bug. So in an example whose history holds a
failover of such a backend (the harness's, or one the cluster made by itself), the checkers'
losses become ``lost-in-failover``. Everything else they found still fails the example: a
failover may drop acknowledged writes, never duplicate, reorder or invent them.

The excuse is scoped to what a failover can have cost: a loss is tolerated only when

- it concerns a write to a slot the failed-over backend fills (the loss's ``data[SLOTS]``,
  else any slot of the test: in a composite suite a loss on the backend that promises to
  survive stays red), and
- that write was held before the failover ended (its acknowledgement, ``data[ACKED]`` or the
  write its ``key`` and ``value`` facts name in the witness, comes before the failover op's
  completion: a write acknowledged by the new primary after the failover must survive).

A loss whose write cannot be placed in time is not excused: "could not judge" is no pass.

One event, one verdict: a finding a checker marks as wholly a consequence of losses
(``data[FOLLOWS]``: a live key left without its copy, an offset the lost write had taken given
to the next one, a replica short of what was never delivered) is that loss seen again. Where
every loss it follows is tolerated, it is dropped from the verdict (listed in its notes under
:data:`ECHOES`); where any is not, it stays, beside the loss, as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from prism_testkit.stateful.checkers.verdict import ACKED, SLOTS, Anomaly, LossId, Verdict, follows, loss_id
from prism_testkit.stateful.history import History, OpType, Pair

LOST_IN_FAILOVER = "lost-in-failover"
ECHOES = "explained-by-tolerated-loss"  # the notes entry listing the findings dropped as echoes


def is_loss(name: str) -> bool:
    """An anomaly that says acknowledged data is gone (``lost``, ``lost-write``,
    ``notification-lost``, ``unseen``), the only kind a failover excuses."""
    return name == "unseen" or "lost" in name.split("-")


def failed_over(history: History) -> set[str]:
    """The backends the nemesis failed over (or saw fail over) in ``history``."""
    return {
        str(op.key)
        for op in history
        if op.process == "nemesis" and op.type is OpType.INVOKE and op.f.startswith("failover")
    }


def leaders_lost(history: History) -> set[str]:
    """The consensus clusters whose leader the nemesis killed in ``history`` (another node is
    elected: a failover, though one that must lose nothing, so never a tolerated loss)."""
    return {
        str(op.key) for op in history if op.process == "nemesis" and op.type is OpType.INVOKE and op.f == "kill-leader"
    }


def failover_ends(history: History) -> dict[str, list[int]]:
    """Per backend, where each of its failovers in ``history`` ended: the index of the failover
    op's completion (one that never completed is open to the end of the history)."""
    ends: dict[str, list[int]] = {}
    for pair in history.pairs():
        if pair.process == "nemesis" and pair.f.startswith("failover"):
            end = pair.completion.index if pair.completion is not None else history[-1].index + 1
            ends.setdefault(str(pair.key), []).append(end)
    return ends


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def _held_from(pair: Pair) -> int:
    """From when a write was held: its acknowledgement; an unknown outcome, its invoke."""
    return pair.completion.index if pair.ok and pair.completion is not None else pair.invoke.index


def _placed(pairs: Sequence[Pair], key: Any, value: Any) -> int | None:
    """When the write of ``value`` to ``key`` among ``pairs`` was first held (``value`` None:
    the latest write of ``key``, acknowledged if any was); None when no such write is there."""
    writes = [
        p
        for p in pairs
        if p.process != "nemesis"
        and p.invoke.value is not None
        and p.type is not OpType.FAIL
        and (key is None or _same(p.key, key))
        and (value is None or _same(p.invoke.value, value))
    ]
    if not writes:
        return None
    if value is None:
        acked = [p for p in writes if p.ok]
        return _held_from(max(acked or writes, key=_held_from))
    return min(_held_from(p) for p in writes)


def held_from(anomaly: Anomaly, history: History | None = None) -> int | None:
    """The history index from which the writes ``anomaly`` says are gone were held (the latest
    of them): its ``data[ACKED]``; else the writes its ``key`` and ``value`` (or ``values``)
    facts name, looked up among its witness's client operations, then in ``history`` (a
    checker that judged without the history leaves its witness empty); None when any of them
    cannot be placed."""
    acked = anomaly.data.get(ACKED)
    if acked is not None:
        return int(acked)
    key, value = loss_id(anomaly)
    values = anomaly.data.get("values")
    wanted = list(values) if isinstance(values, list | tuple) and values else [value]
    found: list[int] = []
    for one in wanted:
        held = _placed(anomaly.witness.pairs(), key, one)
        if held is None and history is not None and (key is not None or one is not None):
            held = _placed(history.pairs(), key, one)  # never the whole history's latest write
        if held is None:
            return None
        found.append(held)
    return max(found)


def excused(
    anomaly: Anomaly, ends: Mapping[str, Sequence[int]], slots: Mapping[str, str] | None, history: History | None = None
) -> bool:
    """Whether a failover in ``ends`` (backend -> where each failover ended, only the backends
    without the promise) can have cost ``anomaly``'s loss: one of its slots' backends failed
    over after its write was held. ``slots``: the test's slot -> backend (None: any backend)."""
    named = anomaly.data.get(SLOTS)
    if slots is None:
        backends: set[str] = set(ends)
    else:
        backends = {backend for slot, backend in slots.items() if named is None or slot in named}
    held = held_from(anomaly, history)
    return held is not None and any(held < end for backend in backends for end in ends.get(backend, ()))


def tolerate_failover_losses(
    verdicts: Sequence[Verdict],
    history: History,
    without_the_promise: Iterable[str],
    slots: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """``verdicts`` with their losses tolerated as :data:`LOST_IN_FAILOVER` where a failover of
    a backend of ``without_the_promise`` (not declaring ``survives_failover``) can have cost
    them (see the module docstring and :func:`excused`). ``slots``: the test's slot ->
    backend, which a loss's ``data[SLOTS]`` names (None: a loss concerns every backend)."""
    unpromised = set(without_the_promise)
    ends = {backend: found for backend, found in failover_ends(history).items() if backend in unpromised}
    if not ends:
        return list(verdicts)
    judged = []
    for verdict in verdicts:
        losses = [a for name, found in verdict.anomalies.items() if is_loss(name) for a in found]
        forgiven = [a for a in losses if excused(a, ends, slots, history)]
        if not forgiven:
            judged.append(without_echoes(verdict))  # a checker's own tolerated losses echo too
            continue
        anomalies: dict[str, list[Anomaly]] = {}
        for name, found in verdict.anomalies.items():
            kept = [a for a in found if not any(a is f for f in forgiven)]
            if kept:
                anomalies[name] = kept
        tolerated: dict[str, list[Anomaly]] = {**verdict.tolerated}
        tolerated[LOST_IN_FAILOVER] = [*tolerated.get(LOST_IN_FAILOVER, []), *forgiven]
        judged.append(without_echoes(replace(verdict, anomalies=anomalies, tolerated=tolerated)))
    return judged


def tolerated_losses(verdict: Verdict) -> set[LossId]:
    """What ``verdict`` tolerates as gone, by :func:`loss_id`: its tolerated losses that are
    findings of their own (an echo of a loss is not a second loss)."""
    return {loss_id(a) for found in verdict.tolerated.values() for a in found if is_loss(a.name) and not follows(a)}


def without_echoes(verdict: Verdict) -> Verdict:
    """``verdict`` without the findings that only follow from losses it tolerates (see the
    module docstring), invalidating or tolerated: those losses are already named, once. A
    finding that follows any loss not tolerated, or follows none, stays."""
    gone = tolerated_losses(verdict)
    echoes: list[str] = []
    counts = dict(verdict.counts)
    recounted: set[str] = set()

    def kept(groups: dict[str, list[Anomaly]]) -> dict[str, list[Anomaly]]:
        out: dict[str, list[Anomaly]] = {}
        for name, found in groups.items():
            for anomaly in found:
                if follows(anomaly) and follows(anomaly) <= gone:
                    echoes.append(f"{anomaly.name}: {anomaly.message}")
                    if anomaly.name in counts:  # the count says what was found, not twice
                        counts[anomaly.name] -= 1
                        recounted.add(anomaly.name)
                else:
                    out.setdefault(name, []).append(anomaly)
        return out

    anomalies, tolerated = kept(verdict.anomalies), kept(verdict.tolerated)
    if not echoes:
        return verdict
    counts = {name: n for name, n in counts.items() if n or name not in recounted}
    notes = {**verdict.notes, ECHOES: [*verdict.notes.get(ECHOES, []), *echoes]}
    return replace(verdict, anomalies=anomalies, tolerated=tolerated, counts=counts, notes=notes)
