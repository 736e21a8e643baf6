"""A five-node JetStream cluster, as Jepsen runs NATS: a minority of two cut off cannot take a
write while the three-node majority goes on, and once healed every node's own replica of the
R5 stream catches up (the per-node check the stateful suites run after each example)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.backends.nats.cluster import NatsClusterProvisioner
from prism_testkit.provision.base import Endpoint
from prism_testkit.provision.cluster import Cluster
from prism_testkit.stateful import nemesis as nemesis_module
from prism_testkit.stateful.nemesis import PARTITIONS, partition_groups
from tests.conftest import cluster_in_a_temp_dir, provision_cluster
from tests.test_jetstream_cluster import eventually_published, nemesis_on, node_urls, publish_through

pytest.importorskip("nats")
NODES = 5


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = asyncio.new_event_loop()
    yield made
    made.close()


@pytest.fixture(scope="module")
def endpoint(loop: asyncio.AbstractEventLoop, prism_binaries: Mapping[str, Path]) -> Iterator[Endpoint]:
    provisioner = NatsClusterProvisioner(nodes=NODES, sync_always=True)
    yield from cluster_in_a_temp_dir(
        "prism-r5-", lambda where: provision_cluster("jetstream-r5", provisioner, where, prism_binaries)
    )


def test_a_partition_cuts_off_the_largest_minority_or_the_leader_alone() -> None:
    """Of three nodes one, of five two (from the drawn node on); the leader is cut off alone;
    a bridge leaves one node linked to two sides that cannot reach each other."""
    assert partition_groups("isolate-node", 3, 4, None) == [[1], [0, 2]]
    assert partition_groups("isolate-node", 5, 4, None) == [[4, 0], [1, 2, 3]]
    assert partition_groups("isolate-leader", 5, 0, 3) == [[3], [0, 1, 2, 4]]
    assert partition_groups("bridge", 5, 2, None) == [[0, 1], [3, 4]]
    assert set(PARTITIONS) == {"isolate-node", "isolate-leader", "bridge"}


def test_a_minority_of_two_loses_its_quorum_and_every_replica_catches_up(
    endpoint: Endpoint, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    assert cluster.size == NODES
    assert endpoint.options["replicas"] == NODES
    urls = node_urls(endpoint)
    assert asyncio.run(eventually_published(urls[0], b"before", replicas=NODES))
    cluster.wait_settled()
    nemesis, _ = nemesis_on(cluster, loop, "jetstream-r5")
    minority, majority = partition_groups("isolate-node", NODES, 1, None)
    monkeypatch.setattr(nemesis_module, "REPLICAS_CONVERGE", 0.5)
    cluster.partition([minority, majority])  # proved: a connection across it must fail
    try:
        for node in minority:
            assert not asyncio.run(publish_through(urls[node], b"from the minority", replicas=NODES))
        for n in range(3):
            assert asyncio.run(eventually_published(urls[majority[0]], b"apart %d" % n, replicas=NODES))
        (apart,) = nemesis.replica_verdicts()
    finally:
        cluster.restore()
    assert not apart.valid, "a minority cut off while the majority wrote holds every write"
    monkeypatch.setattr(nemesis_module, "REPLICAS_CONVERGE", 30.0)
    (healed,) = nemesis.replica_verdicts()
    assert healed.valid, healed.explain()
    assert asyncio.run(eventually_published(urls[minority[0]], b"healed", replicas=NODES))
