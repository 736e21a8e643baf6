"""The copies each node of a cluster holds of a stream, and moving a stream's leadership node
by node: shared by the suites that damage or cut one node and judge what each copy serves
(``test_contract_damaged_leader``, ``test_contract_node_power_cut``,
``test_contract_snapshot_corruption``), and finding which stream a write went to
(``test_contract_leader_change``, ``test_contract_replica_lag`` too)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prism_testkit import patience
from prism_testkit.provision.cluster import Cluster, StreamStates

ASK_AGAIN = 2.0  # seconds (x slowness) before a step-down that moved nothing is asked again


async def states(cluster: Cluster) -> StreamStates:
    assert cluster.stream_states is not None
    return await asyncio.to_thread(cluster.stream_states)


def grown(before: StreamStates, after: StreamStates) -> set[str]:
    """The streams whose newest copy's last sequence grew from ``before`` to ``after``."""

    def newest(copies: StreamStates) -> dict[str, int]:
        found: dict[str, int] = {}
        for held in copies.values():
            for stream, (_first, last, _held) in (held or {}).items():
                found[stream] = max(found.get(stream, 0), last)
        return found

    was = newest(before)
    return {stream for stream, seq in newest(after).items() if seq > was.get(stream, 0)}


async def streams_grown_by(cluster: Cluster, write: Callable[[], Awaitable[object]], *, what: str) -> set[str]:
    """The streams whose copies grew when ``write`` (``what``) was acknowledged: where it lives."""
    before = await states(cluster)
    await write()
    after = await patience.until(
        lambda: states(cluster),
        lambda now: bool(grown(before, now)),
        what=f"replica: a node to report the stream {what} went to",
    )
    return grown(before, after)


async def stream_of(cluster: Cluster, write: Callable[[], Awaitable[object]], *, what: str) -> str:
    """The one stream ``write`` (``what``) grew."""
    streams = await streams_grown_by(cluster, write, what=what)
    assert len(streams) == 1, f"{what} grew {sorted(streams)}: which stream holds it is unclear"
    return streams.pop()


async def stream_of_log(cluster: Cluster, first: Callable[[], Awaitable[None]]) -> str:
    """The one stream whose copies grew when the log's first record was acknowledged."""
    return await stream_of(cluster, first, what="the log's first record")


async def lead(cluster: Cluster, stream: str, node: int) -> None:
    """Move ``stream``'s leadership to ``node``: its leader is asked to step down in favour of
    it, again whenever another node takes over or a request moved nothing for a while. A node
    that never takes it is a liveness verdict (UNSETTLED), never a pass."""
    leaders, move = cluster.stream_leaders, cluster.move_stream_leader
    assert leaders is not None
    assert move is not None
    asked: list[tuple[int | None, float]] = []  # (the leader asked to step down, when)
    loop = asyncio.get_running_loop()

    async def probe() -> int | None:
        now = (await asyncio.to_thread(leaders)).get(stream)
        if now is not None and now != node:
            fresh = not asked or asked[-1][0] != now
            if fresh or loop.time() - asked[-1][1] > ASK_AGAIN * patience.slowness():
                asked.append((now, loop.time()))
                await asyncio.to_thread(move, stream, node)
        return now

    await patience.until(probe, lambda now: now == node, what=f"leader: n{node} to lead {stream}")
