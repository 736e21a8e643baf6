"""Each node's own view, read with the standard library only (no client library): what a
node is ready, the cluster settled, the leader and each node's copy are made of.

Every probe is bounded by :data:`PROBE_TIMEOUT` (a second): a paused or cut-off node must
never block the harness, and it answers ``None``.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Collection, Sequence
from typing import Any

from prism_testkit.clusters import StreamStates

PROBE_TIMEOUT = 1.0
ALL_KEYS = base64.b64encode(b"\x00").decode()  # key "\0" with range_end "\0": every key
STREAM = "kv"  # the one "stream" of the replica check: the node's whole key space

Node = tuple[str, int]  # (host, client port)


def post(node: Node, path: str, body: dict[str, Any], timeout: float = PROBE_TIMEOUT) -> dict[str, Any] | None:
    """POST ``body`` as JSON to the node's gRPC gateway; the answer, or None when the node did
    not answer with a JSON object within ``timeout``."""
    host, port = node
    request = urllib.request.Request(
        f"http://{host}:{port}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            found = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def status(node: Node) -> dict[str, Any] | None:
    """``/v3/maintenance/status`` of this node alone: its member id (``header.member_id``), the
    leader it knows (``leader``, 0 or absent when none), its Raft and applied indexes."""
    return post(node, "/v3/maintenance/status", {})


def answers(node: Node) -> bool:
    """Ready: the node serves its gateway (whether or not it has a leader yet)."""
    return status(node) is not None


def healthy(node: Node) -> bool:
    """A single node is ready once it has elected itself and serves a linearizable read."""
    return post(node, "/v3/kv/range", {"key": ALL_KEYS, "range_end": ALL_KEYS, "count_only": True}) is not None


def member_id(view: dict[str, Any] | None) -> str | None:
    found = ((view or {}).get("header") or {}).get("member_id")
    return str(found) if found else None


def leader_id(view: dict[str, Any] | None) -> str | None:
    found = (view or {}).get("leader")
    return str(found) if found and str(found) != "0" else None


class Members:
    """Member id -> node index, learnt from each node's own status (ids are derived from the
    peer URLs, so they never change for this cluster): a leader that was just killed can
    still be named by the nodes that remember it."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = list(nodes)
        self.ids: dict[str, int] = {}

    def learn(self, index: int, view: dict[str, Any] | None) -> None:
        found = member_id(view)
        if found is not None:
            self.ids[found] = index

    def views(self, skip: Collection[int] = ()) -> dict[int, dict[str, Any] | None]:
        found = {}
        for index, node in enumerate(self.nodes):
            if index in skip:
                continue
            found[index] = view = status(node)
            self.learn(index, view)
        return found

    def leader(self) -> int | None:
        """The node that leads now, as the first node that knows a leader names it."""
        for view in self.views().values():
            named = leader_id(view)
            if named is not None and named in self.ids:
                return self.ids[named]
        return None

    def stream_leaders(self) -> dict[str, int]:
        """The leader of the one stream, :data:`STREAM`: etcd has one Raft group, whose leader
        serves every key."""
        leader = self.leader()
        return {} if leader is None else {STREAM: leader}

    def settled(self, paused: Collection[int]) -> bool:
        """Every running node (paused nodes skipped: they cannot answer until resumed) answers,
        knows the same leader, and has applied every entry it has; the leader is one of them."""
        views = self.views(skip=set(paused))
        leaders = {leader_id(view) for view in views.values()}
        if not views or None in views.values() or len(leaders) != 1 or None in leaders:
            return False
        (leader,) = leaders
        if leader not in self.ids or self.ids[leader] in paused:
            return False
        return all(
            int(view.get("raftAppliedIndex") or 0) >= int(view.get("raftIndex") or 0)
            for view in views.values()
            if view is not None
        )

    def stream_states(self) -> StreamStates:
        """Each node's own copy: a serializable read (answered from that node's store, never
        forwarded to the leader) of how many keys it holds, at which revision. Two nodes hold
        the same data exactly when both are equal: every write raises the revision by one."""
        found: StreamStates = {}
        for index, node in enumerate(self.nodes):
            body = {"key": ALL_KEYS, "range_end": ALL_KEYS, "count_only": True, "serializable": True}
            answer = post(node, "/v3/kv/range", body)
            if answer is None:
                found[f"n{index}"] = None
                continue
            revision = int((answer.get("header") or {}).get("revision") or 0)
            found[f"n{index}"] = {STREAM: (1, revision, int(answer.get("count") or 0))}
        return found
