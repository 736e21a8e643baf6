"""Mutant: a JetStream cluster's ``move_stream_leader`` sends nothing, so the node chosen to
lead a stream (the damaged replica of the damaged-leader suite) never leads it.

Loaded with ``-p tests.mutants.nats_stream_leader_never_moves``: the suite must end in a
liveness verdict naming the node that never led, never in a pass.
"""

from __future__ import annotations

from prism_testkit.backends.nats import cluster as nats_cluster
from prism_testkit.clusters import Cluster


def _asks_nothing(nodes: list[nats_cluster.NodeAddress], cluster: Cluster, stream: str, to: int) -> None:
    return None  # the bug: the step-down request is never sent


nats_cluster.move_stream_leader = _asks_nothing
