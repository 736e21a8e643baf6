"""The cluster pieces the uneven-replica, replica-lag and leader-change suites stand on, without
servers: how far a Redis replica reached (received against applied), when a JetStream cluster
counts as settled (every running node a current metadata peer), and that the optional
capabilities of the failover contract say so when a cluster lacks them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from prism_testkit.backends.nats import cluster as nats_cluster
from prism_testkit.backends.redis.sentinel import RedisSentinelCluster
from prism_testkit.provision.cluster import FailoverCluster


def _sentinel_cluster(info: str) -> RedisSentinelCluster:
    cluster = object.__new__(RedisSentinelCluster)
    cluster.redis = lambda node, *args: info  # type: ignore[method-assign]  # a canned INFO reply
    return cluster


def test_a_redis_replica_reports_what_it_read_and_what_it_processed() -> None:
    info = "# Replication\r\nrole:slave\r\nslave_read_repl_offset:120\r\nslave_repl_offset:100\r\n"
    assert _sentinel_cluster(info).replica_position(1) == (120, 100)


def test_a_redis_replica_without_a_read_offset_received_what_it_processed() -> None:
    info = "# Replication\r\nrole:slave\r\nslave_repl_offset:100\r\n"
    assert _sentinel_cluster(info).replica_position(1) == (100, 100)


def test_a_redis_primary_reports_its_stream_end_twice() -> None:
    info = "# Replication\r\nrole:master\r\nmaster_repl_offset:777\r\n"
    assert _sentinel_cluster(info).replica_position(0) == (777, 777)


def test_a_failover_cluster_without_the_capability_says_so() -> None:
    assert FailoverCluster.can_hold_replay is False
    cluster = object.__new__(FailoverCluster)
    for call in (
        lambda: cluster.hold_replay(1),
        lambda: cluster.release_replay(1),
        lambda: cluster.replica_position(1),
    ):
        with pytest.raises(NotImplementedError):
            call()


def _jetstream(monkeypatch: pytest.MonkeyPatch, replicas: list[dict[str, Any]], leader: int | None = 0) -> None:
    monkeypatch.setattr(nats_cluster, "meta_leader", lambda nodes: leader)
    jsz = {"meta_cluster": {"leader": f"n{leader}", "replicas": replicas}}
    monkeypatch.setattr(nats_cluster, "monitor_jsz", lambda host, port=0: jsz)


def _nodes(alive: list[bool], paused: set[int] | None = None) -> tuple[list[Any], Any]:
    nodes = [nats_cluster.NodeAddress(f"10.0.0.{i}") for i in range(len(alive))]
    cluster = SimpleNamespace(servers=[SimpleNamespace(alive=a) for a in alive], paused=paused or set())
    return nodes, cluster


@pytest.mark.parametrize(
    ("replicas", "alive", "paused", "settled"),
    [
        ([{"name": "n1", "current": True}, {"name": "n2", "current": True}], [True] * 3, set(), True),
        # a node the leader does not hear as current yet: a new R3 stream cannot be placed
        ([{"name": "n1", "current": True}, {"name": "n2", "current": False}], [True] * 3, set(), False),
        ([{"name": "n1", "current": True}, {"name": "n2", "current": True, "offline": True}], [True] * 3, set(), False),
        ([{"name": "n1", "current": True}], [True] * 3, set(), False),
        # a killed or paused node is not waited for
        ([{"name": "n1", "current": True}, {"name": "n2", "current": False}], [True, True, False], set(), True),
        ([{"name": "n1", "current": True}, {"name": "n2", "current": False}], [True] * 3, {2}, True),
    ],
)
def test_a_jetstream_cluster_is_settled_once_its_leader_hears_every_running_node(
    monkeypatch: pytest.MonkeyPatch, replicas: list[dict[str, Any]], alive: list[bool], paused: set[int], settled: bool
) -> None:
    _jetstream(monkeypatch, replicas)
    nodes, cluster = _nodes(alive, paused)
    assert nats_cluster.peers_current(nodes, cluster) is settled


def test_a_jetstream_cluster_without_a_metadata_leader_is_not_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    _jetstream(monkeypatch, [{"name": "n1", "current": True}, {"name": "n2", "current": True}], leader=None)
    nodes, cluster = _nodes([True] * 3)
    assert nats_cluster.peers_current(nodes, cluster) is False
