"""What a failover may cost a backend that does not promise to survive one.

``survives_failover`` is checked both ways, as ``durable`` is: a backend that declares it must
lose nothing acknowledged across a failover, and one that does not (asynchronous replication:
``postgres-ha-async``, ``redis-sentinel``) is failed over all the same, its losses reported as
tolerated, with counts, rather than called a bug. So in an example whose history holds a
failover of such a backend (the harness's, or one the cluster made by itself), the checkers'
losses become ``lost-in-failover``. Everything else they found still fails the example: a
failover may drop acknowledged writes, never duplicate, reorder or invent them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from prism_testkit.stateful.checkers import Anomaly, Verdict
from prism_testkit.stateful.history import History, OpType

LOST_IN_FAILOVER = "lost-in-failover"


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
            excused.append(verdict)
            continue
        anomalies = {name: found for name, found in verdict.anomalies.items() if not is_loss(name)}
        tolerated: dict[str, list[Anomaly]] = {**verdict.tolerated}
        tolerated[LOST_IN_FAILOVER] = [*tolerated.get(LOST_IN_FAILOVER, []), *losses]
        excused.append(replace(verdict, anomalies=anomalies, tolerated=tolerated))
    return excused
