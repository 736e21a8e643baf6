"""A cluster's hosts, chosen by what this machine allows: a network namespace per node where
namespaces can be made (root, or ``CAP_NET_ADMIN``, and the ``ip`` command), else every node on
loopback with a fault proxy on each link between nodes. The choice is automatic;
``PRISM_CLUSTER_NETWORK=namespaces|proxies`` (or ``mode=``) forces one.

A provisioner asks :class:`ClusterHosts` where node ``i`` listens (:meth:`~ClusterHosts.address`,
:meth:`~ClusterHosts.port`) and where node ``a`` dials node ``b``'s peer port
(:meth:`~ClusterHosts.peer`), and writes its nodes' configs from those answers alone: the same
provisioner then runs in both modes. Partitions, heals and their proofs are the network's
(:attr:`~ClusterHosts.network`), which :class:`~prism_testkit.provision.cluster.Cluster` drives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prism_testkit.errors import ProvisioningError
from prism_testkit.faults.linkproxies import LOOPBACK, LinkProxies
from prism_testkit.provision.cluster import NodeNetwork
from prism_testkit.provision.netns import Network, namespaces_unavailable_reason
from prism_testkit.provision.processes import free_port
from prism_testkit.provision.workdirs import recording_dir

NETWORK_MODE = "PRISM_CLUSTER_NETWORK"  # "namespaces" or "proxies"; unset: namespaces where they can be made
NAMESPACES, PROXIES = "namespaces", "proxies"


def network_mode(asked: str | None = None) -> tuple[str, str]:
    """``namespaces`` or ``proxies``, and why, in words a provisioning line can show. ``asked``
    (else :data:`NETWORK_MODE` from the environment) forces one; unset, namespaces are used
    where :func:`~prism_testkit.provision.netns.namespaces_unavailable_reason` says they can be
    made, link proxies otherwise. Asking for namespaces where they cannot be made raises
    :class:`~prism_testkit.errors.ProvisioningError` with the reason."""
    asked = asked or os.environ.get(NETWORK_MODE, "").strip() or None
    if asked not in (None, NAMESPACES, PROXIES):
        raise ProvisioningError(f"{NETWORK_MODE}={asked!r}: give {NAMESPACES!r} or {PROXIES!r}")
    if asked == PROXIES:
        return PROXIES, "a fault proxy per link between nodes on loopback, as asked"
    reason = namespaces_unavailable_reason()
    if reason is None:
        return NAMESPACES, "one network namespace per node"
    if asked == NAMESPACES:
        raise ProvisioningError(f"{NETWORK_MODE}=namespaces, but {reason}")
    return PROXIES, f"a fault proxy per link between nodes on loopback ({reason})"


@dataclass
class ClusterHosts:
    """Where each of ``size`` nodes runs and how the nodes reach each other. Made by
    :meth:`open`; its :attr:`network` goes into the cluster, which closes it."""

    network: NodeNetwork
    mode: str  # NAMESPACES or PROXIES
    why: str  # the mode in words (for the provisioning line)
    peer_ports: list[int]  # the port each node listens on for its peers
    _ports: dict[tuple[int, int], int] = field(default_factory=dict)

    @classmethod
    def open(cls, size: int, *, peer_port: int, workdir: Path, mode: str | None = None) -> ClusterHosts:
        """Hosts for ``size`` nodes whose peers talk to each other on ``peer_port`` (the port
        every node would use on a host of its own). With namespaces each node has its own
        address and every port as given; on loopback each node gets free ports of its own
        and its peer port sits behind a proxy per link. What a network creates is recorded in
        this process's work dir (``workdir`` when none is set), so a crashed run's is swept."""
        chosen, why = network_mode(mode)
        if chosen == NAMESPACES:
            network = Network.create(size, recording_dir() or workdir)
            return cls(network, chosen, why, [peer_port] * size)
        ports = [free_port() for _ in range(size)]
        return cls(LinkProxies.create(ports), chosen, why, ports)

    @property
    def size(self) -> int:
        return len(self.peer_ports)

    @property
    def namespaces(self) -> bool:
        return self.mode == NAMESPACES

    @property
    def probe_port(self) -> int:
        """The port a partition's proof connects to (the cluster's ``probe_port``)."""
        return self.peer_ports[0]

    def address(self, node: int) -> str:
        """The address ``node`` listens on: its namespace's, or loopback."""
        return self.network.hosts[node].address

    def port(self, node: int, default: int) -> int:
        """The port ``node`` listens on for a service whose usual port is ``default`` (clients,
        monitoring): ``default`` itself in a namespace of its own; on loopback a free port,
        the same one each time it is asked for."""
        if self.namespaces:
            return default
        if (node, default) not in self._ports:
            self._ports[(node, default)] = free_port()
        return self._ports[(node, default)]

    def peer_port(self, node: int) -> int:
        """The port ``node`` listens on for its peers (replication, routes, Raft)."""
        return self.peer_ports[node]

    def peer(self, a: int, b: int) -> tuple[str, int]:
        """Where node ``a`` dials node ``b``'s peer port: ``b`` itself, or the proxy of link
        ``(a, b)``. A node's config must name its peers only by this."""
        network = self.network
        if isinstance(network, LinkProxies):
            return LOOPBACK, network.link_port(a, b)
        return self.address(b), self.peer_ports[b]

    def argv(self, node: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run on ``node``'s host (inside its namespace, or as it is)."""
        return self.network.hosts[node].argv(argv)

    def close(self) -> None:
        """Remove the network (when no cluster took it over yet)."""
        self.network.close()
