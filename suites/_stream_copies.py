"""The copies each node of a cluster holds of a stream, and moving a stream's leadership node
by node: shared by the suites that damage or cut one node and judge what each copy serves
(``test_contract_damaged_leader``, ``test_contract_node_power_cut``,
``test_contract_snapshot_corruption``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prism_testkit import patience
from prism_testkit.provision.cluster import Cluster, StreamStates

ASK_AGAIN = 2.0  # seconds (x slowness) before a step-down that moved nothing is asked again


async def states(cluster: Cluster) -> StreamStates:
    assert cluster.stream_states is not None
    return await asyncio.to_thread(cluster.stream_states)


async def stream_of_log(cluster: Cluster, first: Callable[[], Awaitable[None]]) -> str:
    """The one stream whose copies grew when the log's first record was acknowledged."""

    def newest(copies: StreamStates) -> dict[str, int]:
        found: dict[str, int] = {}
        for held in copies.values():
            for stream, (_first, last, _held) in (held or {}).items():
                found[stream] = max(found.get(stream, 0), last)
        return found

    before = newest(await states(cluster))
    await first()
    grown = await patience.until(
        lambda: states(cluster),
        lambda now: any(seq > before.get(s, 0) for s, seq in newest(now).items()),
        what="replica: a node to report the stream the log's first record went to",
    )
    streams = [s for s, seq in newest(grown).items() if seq > before.get(s, 0)]
    assert len(streams) == 1, f"one append grew {streams}: which stream holds the log is unclear"
    return streams[0]


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
