"""What a failover may cost a backend that does not promise to survive one.

``survives_failover`` is checked both ways, as ``durable`` is: a backend that declares it must
lose nothing acknowledged across a failover, and one that does not (asynchronous replication:
``postgres-ha-async``, ``redis-sentinel``) is failed over all the same, its losses reported as
tolerated, with counts, rather than called a bug. So in an example whose history holds a
failover of such a backend (the harness's, or one the cluster made by itself), the checkers'
losses become ``lost-in-failover``. Everything else they found still fails the example: a
failover may drop acknowledged writes, never duplicate, reorder or invent them.

One event, one verdict: a finding a checker marks as wholly a consequence of losses
(``data[FOLLOWS]``: a live key left without its copy, an offset the lost write had taken given
to the next one, a replica short of what was never delivered) is that loss seen again. Where
every loss it follows is tolerated, it is dropped from the verdict (listed in its notes under
:data:`ECHOES`); where any is not, it stays, beside the loss, as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from prism_testkit.stateful.checkers import Anomaly, LossId, Verdict, follows, loss_id
from prism_testkit.stateful.history import History, OpType

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


def tolerate_failover_losses(
    verdicts: Sequence[Verdict], history: History, without_the_promise: Iterable[str]
) -> list[Verdict]:
    """``verdicts`` with their losses tolerated as :data:`LOST_IN_FAILOVER` when a backend of
    ``without_the_promise`` (not declaring ``survives_failover``) was failed over."""
    if not failed_over(history) & set(without_the_promise):
        return list(verdicts)
    excused = []
    for verdict in verdicts:
        losses = [a for name, found in verdict.anomalies.items() if is_loss(name) for a in found]
        if not losses:
            excused.append(without_echoes(verdict))  # a checker's own tolerated losses echo too
            continue
        anomalies = {name: found for name, found in verdict.anomalies.items() if not is_loss(name)}
        tolerated: dict[str, list[Anomaly]] = {**verdict.tolerated}
        tolerated[LOST_IN_FAILOVER] = [*tolerated.get(LOST_IN_FAILOVER, []), *losses]
        excused.append(without_echoes(replace(verdict, anomalies=anomalies, tolerated=tolerated)))
    return excused


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
