"""The public API for replicated backends: what a provisioner of a cluster builds on.

A replicated registration (``jetstream-r3``, ``postgres-ha``, ``redis-sentinel``, or a third
party's) is a backend registration like any other whose provisioner starts several nodes and
hands the harness a :class:`Cluster`. Everything it needs for that is importable from here, and
the built-in clusters import nothing cluster-related from anywhere else
(``docs/clusters.md`` is the author's chapter):

- **the contract**: :class:`ClusterContract`, what the nemesis (node kills, leader kills,
  partitions, pauses, corruption, failovers), the runtime and the replica check call on a
  cluster; :data:`StreamState` / :data:`StreamStates`, the shape of each node's own copy for
  the replica check, and :func:`diverged` / :func:`describe_divergence`, that check itself.
  An endpoint carries its cluster as :attr:`Endpoint.cluster <prism_testkit.Endpoint>`
  (``Endpoint(url, via, cluster=cluster)``), which is its ``control`` too.
- **the cluster**: :class:`Cluster` (one :class:`~prism_testkit.ServerProcess` per node,
  ``leader``, ``settled`` and ``stream_states`` given as callables) and
  :class:`FailoverCluster` (one primary, replicas promoted by :meth:`FailoverCluster.failover`).
  A node that detects damage :meth:`Cluster.corrupt` did and will not start raises
  :class:`NodeRefusedToStart`; a cut or heal that did not take effect raises
  :class:`FaultNotInjected`.
- **hosts**: :mod:`.hosts` picks by what this machine allows: a network namespace per node as
  root, else every node on loopback behind a fault proxy per link (:class:`ClusterHosts`,
  :func:`network_mode`; :data:`NETWORK_MODE` names the environment variable that forces
  :data:`NAMESPACES` or :data:`PROXIES`). The two networks are :class:`Network` (its hosts
  are :class:`Host`, each a namespace) and :class:`LinkProxies` (its hosts are
  :class:`LoopbackHost`, all on :data:`LOOPBACK`); both are a :class:`NodeNetwork` of
  :class:`NodeHost`. :func:`namespaces_unavailable_reason` says why namespaces cannot be made.
- **work dirs**: :func:`recording_dir`, the dir a network is recorded in so the sweep after a
  crashed run removes it.
- **power loss**: :func:`mount_lazily` puts one node's data dir on a lazy filesystem (a
  :class:`LazyMount`) when the run asks for power cuts, :func:`fuse_unavailable_reason` says
  why it cannot; :class:`LazyMounts` cuts every node's power at once.

May import: ``provision`` (the cluster, networks, processes, work dirs and lazy mounts),
``faults.linkproxies`` (hosts without namespaces), ``stateful.checkers.replicas`` (the replica
check) and ``errors``. Nothing in the core imports it: it is the face the backends see.
"""

from __future__ import annotations

from prism_testkit.clusters.hosts import NAMESPACES, NETWORK_MODE, PROXIES, ClusterHosts, network_mode
from prism_testkit.faults.linkproxies import LOOPBACK, LinkProxies, LoopbackHost
from prism_testkit.provision.base import mount_lazily
from prism_testkit.provision.cluster import (
    Cluster,
    ClusterContract,
    FailoverCluster,
    NodeHost,
    NodeNetwork,
    NodeRefusedToStart,
    StreamState,
    StreamStates,
)
from prism_testkit.provision.lazymount import LazyMount, LazyMounts, fuse_unavailable_reason
from prism_testkit.provision.netns import FaultNotInjected, Host, Network, namespaces_unavailable_reason
from prism_testkit.provision.workdirs import recording_dir
from prism_testkit.stateful.checkers.replicas import describe_divergence, diverged

__all__ = [
    "LOOPBACK",
    "NAMESPACES",
    "NETWORK_MODE",
    "PROXIES",
    "Cluster",
    "ClusterContract",
    "ClusterHosts",
    "FailoverCluster",
    "FaultNotInjected",
    "Host",
    "LazyMount",
    "LazyMounts",
    "LinkProxies",
    "LoopbackHost",
    "Network",
    "NodeHost",
    "NodeNetwork",
    "NodeRefusedToStart",
    "StreamState",
    "StreamStates",
    "describe_divergence",
    "diverged",
    "fuse_unavailable_reason",
    "mount_lazily",
    "namespaces_unavailable_reason",
    "network_mode",
    "recording_dir",
]


def _conforms(cluster: Cluster, failover: FailoverCluster) -> tuple[ClusterContract, ClusterContract]:
    """Never called: the type checker proves here that both built-in clusters keep the contract."""
    return cluster, failover
