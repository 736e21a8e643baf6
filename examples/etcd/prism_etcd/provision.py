"""Provisioning of etcd: a URL, a private single node, or a private three-node Raft cluster.

Never imports a client library: readiness, the leader, settling and each node's copy are read
from the nodes' own JSON gateways with :mod:`urllib` (:mod:`.status`).

The cluster is built only on :mod:`prism_testkit.clusters`: ``ClusterHosts`` puts each node in
a network namespace of its own as root, else every node on loopback with its peer port behind a
fault proxy per link (``PRISM_CLUSTER_NETWORK=proxies`` forces that). In that mode each node's
peer requests go through a :class:`~.router.PeerRouter` (see there why etcd needs one).
"""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path

from prism_testkit import (
    Availability,
    DataDir,
    Endpoint,
    ProvisionContext,
    Provisioner,
    ServerProcess,
    ServerProvisioner,
    Via,
    find_binary,
    free_port,
)
from prism_testkit.clusters import Cluster, ClusterHosts, LazyMount, LazyMounts, mount_lazily, network_mode
from prism_testkit.errors import ProvisioningError

from .router import PeerRouter, advertised
from .status import Members, answers, healthy

NODES = 3
CLIENT_PORT, PEER_PORT = 2379, 2380
MAX_PAYLOAD = 1 << 20  # the largest value the driver carries (checked before sending)
# etcd refuses a request above --max-request-bytes: the largest value plus its key and framing
MAX_REQUEST_BYTES = MAX_PAYLOAD + (256 << 10)
READY_TIMEOUT = 60.0
INSTALL_HINT = "apt-get install etcd-server (Debian: etcd 3.4)"
SCHEME = "etcd"


def etcd_binary() -> Path | None:
    return find_binary("/usr/bin/etcd", "etcd")


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a private node: none of the caller's ETCD_* settings (etcd reads every
    flag from ETCD_<FLAG> too) nor proxies, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("ETCD") and name.lower() not in ("http_proxy", "https_proxy", "no_proxy")
    }
    return {**env, **(extra or {})}


def node_argv(
    binary: Path,
    name: str,
    data: Path,
    *,
    client: str,
    peer_listen: str,
    peer_advertised: str,
    initial_cluster: str,
    token: str,
) -> list[str]:
    return [
        str(binary),
        f"--name={name}",
        f"--data-dir={data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer_listen}",
        f"--initial-advertise-peer-urls={peer_advertised}",
        f"--initial-cluster={initial_cluster}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={token}",
        f"--max-request-bytes={MAX_REQUEST_BYTES}",
        "--logger=zap",
        "--log-outputs=stderr",
        "--log-level=warn",
    ]


class EtcdProvisioner(ServerProvisioner):
    """One private etcd node on free ports, its data dir under the backend's work dir (on a lazy
    filesystem when the run cuts power)."""

    server_name = "etcd"
    image = None  # no container recipe: a URL or a local install
    install_hint = INSTALL_HINT

    def binary(self) -> Path | None:
        return etcd_binary()

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        root = ctx.workdir.resolve()
        data = root / "data"
        data.mkdir(parents=True, exist_ok=True)
        data_dir = DataDir(ctx, data)
        client, peer = free_port(), free_port()
        argv = node_argv(
            binary,
            "n0",
            data,
            client=f"http://127.0.0.1:{client}",
            peer_listen=f"http://127.0.0.1:{peer}",
            peer_advertised=f"http://127.0.0.1:{peer}",
            initial_cluster=f"n0=http://127.0.0.1:{peer}",
            token=f"prism-{secrets.token_hex(4)}",
        )
        server = ServerProcess(
            "etcd",
            argv,
            port=client,
            log_path=root / "etcd.log",
            env=_clean_env(),
            cwd=root,
            ready=functools.partial(healthy, ("127.0.0.1", client)),
            ready_timeout=READY_TIMEOUT,
        )
        data_dir.start(server)
        return data_dir.endpoint(f"{SCHEME}://127.0.0.1:{client}", server)


class EtcdClusterProvisioner(Provisioner):
    """A private three-node etcd cluster (Raft), in namespaces or behind link proxies."""

    def probe(self, ctx: ProvisionContext) -> Availability:
        if ctx.url is not None:
            return Availability(Via.URL, "the cluster at the given URL (every node, comma-separated)")
        binary = etcd_binary()
        if binary is None:
            return Availability.unavailable(f"no etcd binary found ({INSTALL_HINT})")
        try:
            _, how = network_mode()
        except ProvisioningError as exc:
            return Availability.unavailable(str(exc))
        return Availability(Via.BINARY, f"private {NODES}-node etcd cluster from {binary}; {how}")

    def start(self, ctx: ProvisionContext) -> Endpoint:
        if ctx.url is not None:
            return Endpoint(ctx.url, Via.URL)
        binary = etcd_binary()
        if binary is None:
            raise ProvisioningError(f"no etcd binary found ({INSTALL_HINT})")
        workdir = ctx.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        hosts = ClusterHosts.open(NODES, peer_port=PEER_PORT, workdir=workdir)
        clients = [(hosts.address(i), hosts.port(i, CLIENT_PORT)) for i in range(NODES)]
        # Namespaces: node b's peer URL is b itself for everyone. Behind link proxies each node
        # reaches b at another port, which etcd cannot be told (a member's id is derived from
        # its one URL): every member advertises a URL leading nowhere, and a router per node
        # sends its peer requests through that node's link proxies.
        direct = all(
            hosts.peer(a, b) == (hosts.address(b), hosts.peer_port(b))
            for a in range(NODES)
            for b in range(NODES)
            if a != b
        )
        routers: list[PeerRouter] = []
        if direct:
            urls = [f"http://{hosts.address(b)}:{hosts.peer_port(b)}" for b in range(NODES)]
        else:
            urls = [advertised(b, hosts.peer_port(b)) for b in range(NODES)]
            routers = [PeerRouter(a, functools.partial(hosts.peer, a)) for a in range(NODES)]
        initial = ",".join(f"n{b}={url}" for b, url in enumerate(urls))
        token = f"prism-{secrets.token_hex(4)}"
        servers: list[ServerProcess] = []
        mounts: list[LazyMount] = []

        def close_routers() -> None:
            for router in routers:
                router.close()

        try:
            for i, node in enumerate(clients):
                home = workdir / f"n{i}"
                data = home / "data"
                data.mkdir(parents=True, exist_ok=True)
                mount = mount_lazily(ctx, data)  # None unless this run cuts power
                if mount is not None:
                    mounts.append(mount)
                argv = node_argv(
                    binary,
                    f"n{i}",
                    data,
                    client=f"http://{node[0]}:{node[1]}",
                    peer_listen=f"http://{hosts.address(i)}:{hosts.peer_port(i)}",
                    peer_advertised=urls[i],
                    initial_cluster=initial,
                    token=token,
                )
                env = _clean_env({"HTTP_PROXY": routers[i].url} if routers else None)
                servers.append(
                    ServerProcess(
                        f"etcd n{i}",
                        hosts.argv(i, argv),
                        host=node[0],
                        port=node[1],
                        log_path=home / "etcd.log",
                        env=env,
                        cwd=home,
                        ready=functools.partial(answers, node),
                        ready_timeout=READY_TIMEOUT,
                    )
                )
        except BaseException:
            LazyMounts(mounts).unmount()
            close_routers()
            hosts.close()
            raise
        lazy = LazyMounts(mounts) if mounts else None
        members = Members(clients)
        cluster = Cluster(servers, hosts.network, probe_port=hosts.probe_port, mounts=lazy)
        cluster.leader = members.leader
        cluster.settled = functools.partial(members.settled, cluster.paused)  # the set it keeps
        cluster.stream_states = members.stream_states
        cluster.stream_leaders = members.stream_leaders  # one Raft group: the leader of every key

        def close() -> None:
            try:
                cluster.close()
            finally:
                close_routers()

        try:
            cluster.start()  # every node ready, then settled
        except BaseException:
            close()
            raise
        members.views()  # every member's id, while every node answers
        url = ",".join(f"{SCHEME}://{host}:{port}" for host, port in clients)
        return Endpoint(url, Via.BINARY, cluster=cluster, teardown=close, lazy_mount=lazy)
