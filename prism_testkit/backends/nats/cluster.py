"""Provisioning of a JetStream cluster: N nats-server nodes, each in its own network namespace
with its own work dir, joined by cluster routes; streams are replicated on every node.

Each node listens for clients on its host's address (the harness reaches it from the root
namespace) and for routes on :data:`ROUTE_PORT`; the nodes' addresses come from the network,
so every node's config names all the others. A partition cuts the routes between namespaces
while the clients still reach every node, as in Jepsen's NATS tests.

Where namespaces cannot be made, or ``PRISM_CLUSTER_NETWORK=proxies`` asks for it, the nodes
run on loopback with ports of their own and reach each other's route ports only through a
fault proxy per link (:class:`prism_testkit.clusters.ClusterHosts` chooses); each node
advertises an unreachable route address, so what a node learns of the others from its peers
never opens a route around the proxies. The provisioning line names the mode a run used.

Built only on :mod:`prism_testkit.clusters` and the names ``prism_testkit`` exports.
"""

from __future__ import annotations

import functools
import json
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_testkit import Availability, Endpoint, ProvisionContext, ServerProcess, Via
from prism_testkit.clusters import (
    LOOPBACK,
    Cluster,
    ClusterHosts,
    LazyMount,
    LazyMounts,
    StreamStates,
    mount_lazily,
    network_mode,
)
from prism_testkit.errors import ProvisioningError

from .provision import PIP_HINT, READY_TIMEOUT, SERVER_MAX_PAYLOAD, NatsProvisioner, jetstream_answers

CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222
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


def peers_current(nodes: list[NodeAddress], cluster: Cluster) -> bool:
    """The metadata leader hears every running node (alive, not paused) as current. Until then
    the cluster refuses to place a new replicated stream ("no suitable peers for placement, peer
    offline", seen once on a cluster just started and already settled by :func:`settled`)."""
    expected = {f"n{i}" for i, server in enumerate(cluster.servers) if server.alive and i not in cluster.paused}
    leader = meta_leader(nodes)
    if leader is None:
        return False
    meta = (monitor_jsz(nodes[leader].host, nodes[leader].monitor) or {}).get("meta_cluster") or {}
    heard = {f"n{leader}"} | {
        str(peer.get("name")) for peer in meta.get("replicas") or [] if peer.get("current") and not peer.get("offline")
    }
    return expected <= heard


def stream_states(nodes: list[NodeAddress]) -> StreamStates:
    """Each node's own replica of every stream, from its monitoring endpoint (STREAM.INFO would
    give the stream leader's answer whichever node is asked): first and last sequence and the
    messages held, by node name (None: the node did not answer)."""
    found: StreamStates = {}
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


def stream_leaders(nodes: list[NodeAddress]) -> dict[str, int]:
    """Each stream's leader (by index) as the nodes report it, the first answer for a stream
    kept: a node cut off from the others may still call itself a leader they replaced."""
    found: dict[str, int] = {}
    for node in nodes:
        for account in (monitor_jsz(node.host, node.monitor) or {}).get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                name = str(stream.get("cluster", {}).get("leader") or "")
                if name.startswith("n") and name[1:].isdigit():
                    found.setdefault(str(stream["name"]), int(name[1:]))
    return found


def stream_files(stream: str) -> str:
    """The glob, in a node's work dir, of the message blocks of ``stream``'s own store
    (``<store>/jetstream/<account>/streams/<stream>/msgs/N.blk``), not of its Raft log."""
    return f"streams/{stream}/msgs/*.blk"


def api_request(node: NodeAddress, subject: str, payload: bytes, timeout: float = 1.0) -> dict[str, Any] | None:
    """One JetStream API request through ``node`` and its JSON answer, or None (no answer, no
    responders, not JSON). A raw protocol exchange, as :func:`jetstream_answers`: it works from
    any thread, with or without an event loop."""
    try:
        with socket.create_connection((node.host, node.client), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if not sock.recv(4096).startswith(b"INFO "):
                return None
            sock.sendall(
                b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n'
                b"SUB _INBOX.prism_api 1\r\n"
                + f"PUB {subject} _INBOX.prism_api {len(payload)}\r\n".encode()
                + payload
                + b"\r\n"
            )
            deadline = time.monotonic() + timeout
            buffer = b""
            while time.monotonic() < deadline:
                part = sock.recv(65536)
                if not part:
                    return None
                buffer += part
                if b"HMSG _INBOX.prism_api" in buffer or b"-ERR" in buffer:
                    return None  # 503 no responders, or refused
                _, sep, rest = buffer.partition(b"MSG _INBOX.prism_api 1 ")
                if not sep or b"\r\n" not in rest:
                    continue
                size, _, body = rest.partition(b"\r\n")
                if len(body) >= int(size):
                    found = json.loads(body[: int(size)])
                    return found if isinstance(found, dict) else None
            return None
    except (OSError, ValueError):
        return None


def move_stream_leader(nodes: list[NodeAddress], cluster: Cluster, stream: str, to: int) -> None:
    """Ask ``stream``'s leader to step down in favour of node ``to``
    (``$JS.API.STREAM.LEADER.STEPDOWN`` with a preferred peer; a server before 2.11 ignores the
    preference and lets the others elect one). Sent through the first running node that
    answers; the caller watches :func:`stream_leaders` for the move."""
    request = json.dumps({"placement": {"preferred": f"n{to}"}}).encode()
    subject = f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}"
    for index, node in enumerate(nodes):
        running = cluster.servers[index].alive and index not in cluster.paused
        if running and api_request(node, subject, request) is not None:
            return


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
        return network_mode(self.network)

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

    def _network(self, workdir: Path) -> tuple[ClusterHosts, list[NodeAddress], list[list[str]]]:
        """The hosts, where each node listens, and each node's routes to the others."""
        hosts = ClusterHosts.open(self.nodes, peer_port=ROUTE_PORT, workdir=workdir, mode=self.network)
        nodes = [
            NodeAddress(hosts.address(i), hosts.port(i, CLIENT_PORT), hosts.peer_port(i), hosts.port(i, MONITOR_PORT))
            for i in range(self.nodes)
        ]
        routes = [
            ["nats-route://{}:{}".format(*hosts.peer(a, b)) for b in range(self.nodes) if b != a]
            for a in range(self.nodes)
        ]
        return hosts, nodes, routes

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        workdir = ctx.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        hosts, nodes, routes = self._network(workdir)
        servers = []
        mounts: list[LazyMount] = []
        for index, node in enumerate(nodes):
            home = workdir / f"n{index}"
            store = home / "jetstream"
            store.mkdir(parents=True, exist_ok=True)
            try:  # each node's data dir on its own lazy filesystem, when power cuts are asked for
                mount = mount_lazily(ctx, store)
            except BaseException:
                LazyMounts(mounts).unmount()
                hosts.close()
                raise
            if mount is not None:
                mounts.append(mount)
            config = self._node_config(home / "nats.conf", index, node, routes[index], store)
            servers.append(
                ServerProcess(
                    f"nats-server n{index}",
                    hosts.argv(index, [str(binary), "-c", str(config)]),
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
            hosts.network,
            probe_port=hosts.probe_port,
            leader=functools.partial(meta_leader, nodes),
            mounts=lazy,
            stream_states=functools.partial(stream_states, nodes),
            stream_leaders=functools.partial(stream_leaders, nodes),
            stream_files=stream_files,
        )
        cluster.move_stream_leader = functools.partial(move_stream_leader, nodes, cluster)
        # every stream led again, and every running node a current peer of the metadata group
        cluster.settled = lambda: settled(nodes) and peers_current(nodes, cluster)
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
            options={
                "replicas": self.nodes,
                "start_seconds": time.monotonic() - started,
                "network": hosts.mode,
                "monitor": [f"{n.host}:{n.monitor}" for n in nodes],
            },
            teardown=cluster.close,
            lazy_mount=lazy,
            cluster=cluster,
        )

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        raise ProvisioningError("a JetStream cluster is not provisioned in containers")
