"""Provisioning of a JetStream cluster: N nats-server nodes, each in its own network namespace
with its own work dir, joined by cluster routes; streams are replicated on every node.

Each node listens for clients on its host's address (the harness reaches it from the root
namespace) and for routes on :data:`ROUTE_PORT`; the nodes' addresses come from the network,
so every node's config names all the others. A partition cuts the routes between namespaces
while the clients still reach every node, as in Jepsen's NATS tests.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from prism_testkit.errors import ProvisioningError
from prism_testkit.faults.lazymount import LazyMount, LazyMounts
from prism_testkit.provision.base import Availability, Endpoint, ProvisionContext, Via, mount_lazily
from prism_testkit.provision.cluster import Cluster
from prism_testkit.provision.netns import Network, namespaces_unavailable_reason
from prism_testkit.provision.processes import ServerProcess
from prism_testkit.provision.workdirs import recording_dir

from .provision import PIP_HINT, READY_TIMEOUT, SERVER_MAX_PAYLOAD, NatsProvisioner, jetstream_answers

CLIENT_PORT = 4222
ROUTE_PORT = 6222
MONITOR_PORT = 8222


def node_healthy(address: str) -> bool:
    """The node's JetStream answers and /healthz says its streams and consumers are current: a
    restarted cluster answers account info before its streams have elected leaders again."""
    if not jetstream_answers(address, CLIENT_PORT):
        return False
    try:
        with urllib.request.urlopen(f"http://{address}:{MONITOR_PORT}/healthz", timeout=1.0) as answer:
            return bool(answer.status == 200 and json.loads(answer.read()).get("status") == "ok")
    except (OSError, ValueError):
        return False


def monitor_jsz(address: str) -> dict[str, Any] | None:
    url = f"http://{address}:{MONITOR_PORT}/jsz?streams=true&consumers=true"
    try:
        with urllib.request.urlopen(url, timeout=1.0) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found
    except (OSError, ValueError):
        return None


def _has_leader(asset: dict[str, Any]) -> bool:
    return bool(asset.get("cluster", {}).get("leader"))


def settled(addresses: list[str]) -> bool:
    """Every stream and consumer has a leader again (as one reachable node sees it): until
    then a client's requests to them time out, though /healthz already says ok."""
    for address in addresses:
        jsz = monitor_jsz(address)
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


def stream_states(addresses: list[str]) -> dict[str, dict[str, tuple[int, int, int]] | None]:
    """Each node's own replica of every stream, from its monitoring endpoint (STREAM.INFO would
    give the stream leader's answer whichever node is asked): first and last sequence and the
    messages held, by node name (None: the node did not answer)."""
    found: dict[str, dict[str, tuple[int, int, int]] | None] = {}
    for node, address in enumerate(addresses):
        jsz = monitor_jsz(address)
        if jsz is None:
            found[f"n{node}"] = None
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
        found[f"n{node}"] = streams
    return found


def meta_leader(addresses: list[str]) -> int | None:
    """The node (by index) leading the cluster's metadata, when one node can tell."""
    for address in addresses:
        jsz = monitor_jsz(address)
        name = (jsz or {}).get("meta_cluster", {}).get("leader") or ""
        if name.startswith("n") and name[1:].isdigit():
            return int(name[1:])
    return None


class NatsClusterProvisioner(NatsProvisioner):
    """A private JetStream cluster of ``nodes`` servers, with ``sync_interval: always`` or
    nats-server's default two-minute interval."""

    image = None  # no container recipe: nodes run in network namespaces of this machine

    def __init__(self, *, nodes: int = 3, sync_always: bool = True) -> None:
        super().__init__(sync_always=sync_always)
        self.nodes = nodes
        self.server_name = f"{nodes}-node cluster of nats-server >= 2.10"
        self.install_hint = PIP_HINT

    def binary(self) -> Path | None:
        # Both durability settings on the same, newest server: only sync_interval differs.
        return NatsProvisioner(sync_always=True).binary()

    def probe(self, ctx: ProvisionContext) -> Availability:
        if ctx.url is None and (reason := namespaces_unavailable_reason()) is not None:
            # No fault proxies between nodes yet: without namespaces there is no cluster here.
            return Availability.unavailable(f"a cluster runs one node per network namespace: {reason}")
        return super().probe(ctx)

    def _node_config(self, path: Path, node: int, network: Network, store: Path) -> Path:
        host = network.hosts[node]
        routes = ", ".join(f"nats-route://{h.address}:{ROUTE_PORT}" for h in network.hosts if h is not host)
        sync = ", sync_interval: always" if self.sync_always else ""
        path.write_text(
            "# written by prism-testkit: one node of a private JetStream cluster\n"
            f"server_name: n{node}\n"
            f"listen: {host.address}:{CLIENT_PORT}\n"
            f"http: {host.address}:{MONITOR_PORT}\n"
            f"max_payload: {SERVER_MAX_PAYLOAD}\n"
            f'jetstream {{ store_dir: "{store}"{sync} }}\n'
            # no_advertise: clients use the nodes they are given, so a proxied client stays proxied
            f"cluster {{ name: prism, listen: {host.address}:{ROUTE_PORT}, no_advertise: true, routes: [{routes}] }}\n"
        )
        return path

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        workdir = ctx.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        network = Network.create(self.nodes, recording_dir() or workdir)
        servers = []
        mounts: list[LazyMount] = []
        for node, host in enumerate(network.hosts):
            home = workdir / f"n{node}"
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
            config = self._node_config(home / "nats.conf", node, network, store)
            servers.append(
                ServerProcess(
                    f"nats-server n{node}",
                    host.argv([str(binary), "-c", str(config)]),
                    host=host.address,
                    port=CLIENT_PORT,
                    log_path=home / "nats-server.log",
                    cwd=home,
                    ready=functools.partial(node_healthy, host.address),
                    ready_timeout=READY_TIMEOUT,
                )
            )
        addresses = [h.address for h in network.hosts]
        lazy = LazyMounts(mounts) if mounts else None
        cluster = Cluster(
            servers,
            network,
            probe_port=ROUTE_PORT,
            leader=functools.partial(meta_leader, addresses),
            settled=functools.partial(settled, addresses),
            mounts=lazy,
            stream_states=functools.partial(stream_states, addresses),
        )
        started = time.monotonic()
        try:
            cluster.start()
        except BaseException:
            cluster.close()
            raise
        url = ",".join(f"nats://{h.address}:{CLIENT_PORT}" for h in network.hosts)
        return Endpoint(
            url=url,
            via=Via.BINARY,
            control=cluster,
            options={"replicas": self.nodes, "cluster": cluster, "start_seconds": time.monotonic() - started},
            teardown=cluster.close,
            lazy_mount=lazy,
        )

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        raise ProvisioningError("a JetStream cluster is not provisioned in containers")
