"""etcd: a replicated key-value backend for prism-testkit, registered from its own distribution.

Two registrations: ``etcd`` (one private node) and ``etcd-r3`` (a private three-node Raft
cluster built on :mod:`prism_testkit.clusters`), with the same driver and capabilities; the
cluster names the single node as its twin, so only what replication can change runs on it
when both are selected. Registration only: the driver (:mod:`.driver`) is named by a string,
the provisioners (:mod:`.provision`) start servers without any client library.
"""

from __future__ import annotations

from prism_testkit import BackendProperties, BackendSpec, Capability, hookimpl

from .provision import MAX_PAYLOAD, EtcdClusterProvisioner, EtcdProvisioner

# keyvalue.ttl is not declared: etcd's leases have whole seconds of TTL, a minimum of about
# 1.5 x the election timeout, and expire on the leader's 0.5 s sweep, while the contract asks
# for a 0.3 s key to be gone within a further second (see README.md).
CAPABILITIES: frozenset[Capability] = frozenset(
    {Capability.KEYVALUE, Capability.KEYVALUE_CAS, Capability.KEYVALUE_SCAN}
)

PROPERTIES = BackendProperties(
    # etcd fsyncs its write-ahead log before it answers a put: the restart suite kills the node
    # (SIGKILL) and finds every acknowledged write again.
    durable=True,
    # Not claimed: not proved here (the power_loss suite needs FUSE); README.md says what a run showed.
    survives_power_loss=False,
    survives_pause=True,  # the stateful suites pause the node (and the cluster's nodes one by one)
    max_payload=MAX_PAYLOAD,  # checked by the driver; the server's --max-request-bytes is above it
)

CLUSTER_PROPERTIES = BackendProperties(
    # A write is acknowledged once a majority logged it (fsynced): losing one node of three,
    # the leader included, loses nothing acknowledged. Not a FailoverCluster (Raft elects by
    # itself), so the failover suite does not apply; the nemesis kills and isolates the leader.
    durable=True,
    survives_power_loss=False,
    survives_pause=True,
    max_payload=MAX_PAYLOAD,
)

DRIVER = "prism_etcd.driver:EtcdDriver"


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="etcd",
            capabilities=CAPABILITIES,
            properties=PROPERTIES,
            provisioner=EtcdProvisioner(),
            driver=DRIVER,
            embedded=False,
            description="etcd 3.4, one node: key-value (compare-and-set, prefix scan) over the v3 JSON gateway",
        ),
        BackendSpec(
            name="etcd-r3",
            capabilities=CAPABILITIES,  # the same as its twin's
            properties=CLUSTER_PROPERTIES,
            provisioner=EtcdClusterProvisioner(),
            driver=DRIVER,  # every node in the URL; moves to the next node when one fails
            embedded=False,
            exclusive=True,  # one worker starts the cluster
            stateful_examples=2,  # a leader kill waits out an election: fewer, longer examples
            twin="etcd",
            description="etcd 3.4, three-node Raft cluster: the same key-value, linearizable reads",
        ),
    ]
