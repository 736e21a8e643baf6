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
tolerates the loss, it is not judged a second time (:mod:`.failover`). ``empty-history``
(nothing was written or read, so nothing was checked) is invalid under every guarantee: a check
that judged nothing must not pass.

Ops sharing a ``txn`` were one transaction. Jepsen's *must have committed* rule applies: when
any value of a transaction whose outcome is unknown was read, the transaction committed, so
its other values are held to the same rules as acknowledged ones.

``tests/test_jepsen_conformance.py`` replays Jepsen's own checker test histories against
these checkers, and lists each deliberate difference.

The history conventions the checkers read are described in :mod:`prism_testkit.stateful.history`.
Values are identities: each written value should be unique (per queue / log).

One module per thing judged, each name also importable from this package:

- :mod:`.verdict`: :class:`Verdict`, :class:`Anomaly`, :func:`tolerated`, loss ids and the
  shared ``data`` keys, :func:`suite_verdict` (the verdict of a check beside its suite);
- :mod:`.queue`: :func:`total_queue`; :mod:`.pubsub`: :func:`fan_out`; :mod:`.log`:
  :func:`log_anomalies`; :mod:`.keyvalue`: :func:`per_key_order`;
- :mod:`.replicas`: each node's own copy of a replicated stream (the per-node half of a queue
  checker), and which streams the nodes disagree on once healed;
- :mod:`.failover`: the losses a failover may cost a backend that does not promise to survive
  one, tolerated, and the findings that only follow from them dropped;
- :mod:`.wal`: a write-ahead log's applies against the state its log demands.

Import :mod:`.replicas`, :mod:`.failover` and :mod:`.wal` by their module paths.

May import: ``capabilities`` and ``stateful.history``, and each other's modules (the judges
import :mod:`.verdict`), nothing else of ``stateful``: the machine, the runner and the nemesis
import the checkers, never the other way round.
"""

from __future__ import annotations

from prism_testkit.stateful.checkers.keyvalue import per_key_order
from prism_testkit.stateful.checkers.log import log_anomalies
from prism_testkit.stateful.checkers.pubsub import fan_out
from prism_testkit.stateful.checkers.queue import total_queue
from prism_testkit.stateful.checkers.verdict import (
    ACKED,
    DUPLICATION,
    EMPTY,
    FOLLOWS,
    INFORMATIONAL,
    LOSS,
    SLOTS,
    Anomaly,
    Ident,
    LossId,
    Verdict,
    follows,
    judged_nothing,
    loss_id,
    suite_verdict,
    tolerated,
)

__all__ = [
    "ACKED",
    "DUPLICATION",
    "EMPTY",
    "FOLLOWS",
    "INFORMATIONAL",
    "LOSS",
    "SLOTS",
    "Anomaly",
    "Ident",
    "LossId",
    "Verdict",
    "fan_out",
    "follows",
    "judged_nothing",
    "log_anomalies",
    "loss_id",
    "per_key_order",
    "suite_verdict",
    "tolerated",
    "total_queue",
]
