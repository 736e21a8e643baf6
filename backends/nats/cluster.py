"""Provisioning of a JetStream cluster: N nats-server nodes, each in its own network namespace
with its own work dir, joined by cluster routes; streams are replicated on every node.

Each node listens for clients on its host's address (the harness reaches it from the root
namespace) and for routes on :data:`ROUTE_PORT`; the nodes' addresses come from the network,
so every node's config names all the others. A partition cuts the routes between namespaces
while the clients still reach every node, as in Jepsen's NATS tests.

Where namespaces cannot be made, or ``PRISM_CLUSTER_NETWORK=proxies`` asks for it, the nodes
run on loopback with ports of their own and reach each other's route ports only through a
fault proxy per link (:mod:`prism_testkit.faults.linkproxies`); each node advertises an
unreachable route address, so what a node learns of the others from its peers never opens a
route around the proxies. The provisioning line names the mode a run used.
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.lazymount import LazyMount, LazyMounts
from prism_testkit.faults.linkproxies import LOOPBACK, LinkProxies
from prism_testkit.provision.base import Availability, Endpoint, ProvisionContext, Via, mount_lazily
from prism_testkit.provision.cluster import Cluster, NodeNetwork
from prism_testkit.provision.netns import Network, namespaces_unavailable_reason
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.workdirs import recording_dir

from .provision import PIP_HINT, READY_TIMEOUT, SERVER_MAX_PAYLOAD, NatsProvisioner, jetstream_answers

CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222
NETWORK_MODE = "PRISM_CLUSTER_NETWORK"  # "namespaces" or "proxies"; unset: namespaces where they can be made
UNREACHABLE_ROUTE = f"{LOOPBACK}:1"  # advertised in proxy mode: nothing listens on port 1


@dataclass(frozen=True)
class NodeAddress:
    """Where one node listens: its host's address, for clients, routes and monitoring."""

    host: str
    client: int = CLIENT_PORT
    route: int = ROUTE_PORT
    monitor: int = MONITOR_PORT


def node_healthy(node: NodeAddress) -> bool:
    """The node's JetStream answers and /healthz says its streams and consumers are current: a
    restarted cluster answers account info before its streams have elected leaders again."""
    if not jetstream_answers(node.host, node.client):
        return False
    try:
        with urllib.request.urlopen(f"http://{node.host}:{node.monitor}/healthz", timeout=1.0) as answer:
            return bool(answer.status == 200 and json.loads(answer.read()).get("status") == "ok")
    except (OSError, ValueError):
        return False


def monitor_jsz(address: str, port: int = MONITOR_PORT) -> dict[str, Any] | None:
    url = f"http://{address}:{port}/jsz?streams=true&consumers=true"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except (OSError, ValueError):
        return None


def _has_leader(asset: dict[str, Any]) -> bool:
    return bool(asset.get("cluster", {}).get("leader"))


def settled(nodes: list[NodeAddress]) -> bool:
    """Every stream and consumer has a leader again (as one reachable node sees it): until
    then a client's requests to them time out, though /healthz already says ok."""
    for node in nodes:
        jsz = monitor_jsz(node.host, node.monitor)
        if jsz is None:
            continue
        if not jsz.get("meta_cluster", {}).get("leader"):
            return False
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                consumers = stream.get("consumer_detail") or []
                if not _has_leader(stream) or not all(_has_leader(c) for c in consumers):
                    return False
        return True
    return False


def stream_states(nodes: list[NodeAddress]) -> dict[str, dict[str, tuple[int, int, int]] | None]:
    """Each node's own replica of every stream, from its monitoring endpoint (STREAM.INFO would
    give the stream leader's answer whichever node is asked): first and last sequence and the
    messages held, by node name (None: the node did not answer)."""
    found: dict[str, dict[str, tuple[int, int, int]] | None] = {}
    for index, node in enumerate(nodes):
        jsz = monitor_jsz(node.host, node.monitor)
        if jsz is None:
            found[f"n{index}"] = None
            continue
        streams = {}
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                state = stream.get("state") or {}
                streams[str(stream["name"])] = (
                    int(state.get("first_seq", 0)),
                    int(state.get("last_seq", 0)),
                    int(state.get("messages", 0)),
                )
        found[f"n{index}"] = streams
    return found


def meta_leader(nodes: list[NodeAddress]) -> int | None:
    """The node (by index) leading the cluster's metadata, when one node can tell."""
    for node in nodes:
        jsz = monitor_jsz(node.host, node.monitor)
        name = (jsz or {}).get("meta_cluster", {}).get("leader") or ""
        if name.startswith("n") and name[1:].isdigit():
            return int(name[1:])
    return None


class NatsClusterProvisioner(NatsProvisioner):
    """A private JetStream cluster of ``nodes`` servers, with ``sync_interval: always`` or
    nats-server's default two-minute interval. ``network``: ``namespaces``, ``proxies`` or
    None (``PRISM_CLUSTER_NETWORK``, else namespaces where they can be made, else proxies)."""

    image = None  # no container recipe: nodes run on this machine

    def __init__(self, *, nodes: int = 3, sync_always: bool = True, network: str | None = None) -> None:
        super().__init__(sync_always=sync_always)
        self.nodes = nodes
        self.network = network
        self.server_name = f"{nodes}-node cluster of nats-server >= 2.10"
        self.install_hint = PIP_HINT

    def binary(self) -> Path | None:
        # Both durability settings on the same, newest server: only sync_interval differs.
        return NatsProvisioner(sync_always=True).binary()

    def network_mode(self) -> tuple[str, str]:
        """``namespaces`` or ``proxies``, and why (what the provisioning line says)."""
        asked = self.network or os.environ.get(NETWORK_MODE, "").strip() or None
        if asked not in (None, "namespaces", "proxies"):
            raise ProvisioningError(f"{NETWORK_MODE}={asked!r}: give 'namespaces' or 'proxies'")
        if asked == "proxies":
            return "proxies", "a fault proxy per link between nodes on loopback, as asked"
        reason = namespaces_unavailable_reason()
        if reason is None:
            return "namespaces", "one network namespace per node"
        if asked == "namespaces":
            raise ProvisioningError(f"{NETWORK_MODE}=namespaces, but {reason}")
        return "proxies", f"a fault proxy per link between nodes on loopback ({reason})"

    def probe(self, ctx: ProvisionContext) -> Availability:
        found = super().probe(ctx)
        if ctx.url is not None or not found.available:
            return found
        try:
            _, how = self.network_mode()
        except ProvisioningError as exc:
            return Availability.unavailable(str(exc))
        return Availability(found.via, f"{found.detail}; {how}")

    def _node_config(self, path: Path, index: int, node: NodeAddress, routes: list[str], store: Path) -> Path:
        sync = ", sync_interval: always" if self.sync_always else ""
        # no_advertise: clients use the nodes they are given, so a proxied client stays proxied
        cluster = f"name: prism, listen: {node.host}:{node.route}, no_advertise: true, routes: [{', '.join(routes)}]"
        if node.host == LOOPBACK:  # behind link proxies: what peers learn of this node leads nowhere
            cluster += f", advertise: {UNREACHABLE_ROUTE}"
        path.write_text(
            "# written by prism-testkit: one node of a private JetStream cluster\n"
            f"server_name: n{index}\n"
            f"listen: {node.host}:{node.client}\n"
            f"http: {node.host}:{node.monitor}\n"
            f"max_payload: {SERVER_MAX_PAYLOAD}\n"
            f'jetstream {{ store_dir: "{store}"{sync} }}\n'
            f"cluster {{ {cluster} }}\n"
        )
        return path

    def _network(self, workdir: Path) -> tuple[NodeNetwork, list[NodeAddress], list[list[str]]]:
        """The network, where each node listens, and each node's routes to the others."""
        mode, _ = self.network_mode()
        if mode == "namespaces":
            network = Network.create(self.nodes, recording_dir() or workdir)
            nodes = [NodeAddress(h.address) for h in network.hosts]
            routes = [[f"nats-route://{o.host}:{o.route}" for o in nodes if o is not n] for n in nodes]
            return network, nodes, routes
        nodes = [NodeAddress(LOOPBACK, free_port(), free_port(), free_port()) for _ in range(self.nodes)]
        proxies = LinkProxies.create([n.route for n in nodes])
        routes = [
            [f"nats-route://{LOOPBACK}:{proxies.link_port(a, b)}" for b in range(self.nodes) if b != a]
            for a in range(self.nodes)
        ]
        return proxies, nodes, routes

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        workdir = ctx.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        network, nodes, routes = self._network(workdir)
        servers = []
        mounts: list[LazyMount] = []
        for index, (node, host) in enumerate(zip(nodes, network.hosts, strict=True)):
            home = workdir / f"n{index}"
            store = home / "jetstream"
            store.mkdir(parents=True, exist_ok=True)
            try:  # each node's data dir on its own lazy filesystem, when power cuts are asked for
                mount = mount_lazily(ctx, store)
            except BaseException:
                LazyMounts(mounts).unmount()
                network.close()
                raise
            if mount is not None:
                mounts.append(mount)
            config = self._node_config(home / "nats.conf", index, node, routes[index], store)
            servers.append(
                ServerProcess(
                    f"nats-server n{index}",
                    host.argv([str(binary), "-c", str(config)]),
                    host=node.host,
                    port=node.client,
                    log_path=home / "nats-server.log",
                    cwd=home,
                    ready=functools.partial(node_healthy, node),
                    ready_timeout=READY_TIMEOUT,
                )
            )
        lazy = LazyMounts(mounts) if mounts else None
        cluster = Cluster(
            servers,
            network,
            probe_port=ROUTE_PORT,
            leader=functools.partial(meta_leader, nodes),
            settled=functools.partial(settled, nodes),
            mounts=lazy,
            stream_states=functools.partial(stream_states, nodes),
        )
        started = time.monotonic()
        try:
            cluster.start()
        except BaseException:
            cluster.close()
            raise
        url = ",".join(f"nats://{n.host}:{n.client}" for n in nodes)
        return Endpoint(
            url=url,
            via=Via.BINARY,
            control=cluster,
            options={
                "replicas": self.nodes,
                "cluster": cluster,
                "start_seconds": time.monotonic() - started,
                "network": "namespaces" if isinstance(network, Network) else "proxies",
                "monitor": [f"{n.host}:{n.monitor}" for n in nodes],
            },
            teardown=cluster.close,
            lazy_mount=lazy,
        )

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        raise ProvisioningError("a JetStream cluster is not provisioned in containers")
