"""A JetStream cluster without network namespaces: nodes on loopback, a fault proxy per link.

The fallback where namespaces cannot be made (not root, no CAP_NET_ADMIN); forced here with
``network="proxies"``. Its partitions must be as real as the namespaces' ones: an isolated node
loses its quorum while the majority keeps it, and a cut that lets traffic through fails."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.backends.nats.cluster import NatsClusterProvisioner
from prism_testkit.faults.linkproxies import LinkProxies
from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.provision.base import Endpoint
from prism_testkit.provision.cluster import Cluster
from prism_testkit.provision.netns import FaultNotInjected
from tests.conftest import cluster_in_a_temp_dir, context_for
from tests.test_jetstream_cluster import eventually_published, node_urls, publish_through

pytest.importorskip("nats")


def _provision(where: Path, binaries: Mapping[str, Path]) -> Endpoint:
    provisioner = NatsClusterProvisioner(nodes=3, sync_always=True, network="proxies")
    ctx = context_for("jetstream-r3", where, binaries)
    availability = provisioner.probe(ctx)
    if not availability.available:
        pytest.fail(f"no nats-server >= 2.10 here: {availability.detail}")
    assert "a fault proxy per link" in availability.detail, "the provisioning line names the mode"
    return provisioner.start(ctx)


@pytest.fixture(scope="module")
def endpoint(prism_binaries: Mapping[str, Path]) -> Iterator[Endpoint]:
    yield from cluster_in_a_temp_dir("prism-link-proxies-", lambda where: _provision(where, prism_binaries))


def test_the_nodes_run_on_loopback_and_reach_each_other_only_through_link_proxies(endpoint: Endpoint) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    assert endpoint.options["network"] == "proxies"
    assert isinstance(cluster.network, LinkProxies)
    for server in cluster.servers:
        assert server.argv[0] != "ip", "no node runs inside a namespace"
        assert server.pid is not None
        config = (server.cwd / "nats.conf").read_text() if server.cwd is not None else ""
        assert "advertise: 127.0.0.1:1" in config  # what peers learn of it opens no route
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert cluster.network.token not in listed
    assert asyncio.run(eventually_published(node_urls(endpoint)[0], b"hello"))


def test_an_isolated_node_loses_its_quorum_and_the_majority_keeps_it(endpoint: Endpoint) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    urls = node_urls(endpoint)
    assert asyncio.run(eventually_published(urls[0], b"before"))
    cluster.wait_settled()
    leader = cluster.leader()
    alone = next(n for n in range(3) if n != leader)
    majority = [n for n in range(3) if n != alone]
    cluster.partition([[alone], majority])
    try:
        assert not asyncio.run(publish_through(urls[alone], b"from the minority"))
        assert asyncio.run(eventually_published(urls[majority[0]], b"from the majority"))
    finally:
        cluster.restore()
    assert asyncio.run(eventually_published(urls[alone], b"healed", "recovery"))


def test_a_cut_that_lets_traffic_through_fails(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster: Cluster = endpoint.options["cluster"]
    monkeypatch.setattr(FaultProxy, "blackhole", lambda self: None)  # a proxy that ignores the cut
    try:
        with pytest.raises(FaultNotInjected):
            cluster.partition([[0], [1, 2]])
    finally:
        monkeypatch.undo()
        cluster.restore()
