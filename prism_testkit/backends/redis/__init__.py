"""Redis backends: two single-server registrations that share one driver and differ only in
how the private server persists, and two replicated ones behind Sentinel:

* ``redis``: ``--save "" --appendonly no``. Everything lives in memory only, so a kill or a
  restart of the server loses every write: declared **not durable**.
* ``redis-aof``: ``--appendonly yes --appendfsync always``. Redis fsyncs the AOF before it
  answers a write, so an acknowledged write survives SIGKILL: declared durable. Given a URL,
  the driver checks the server's ``appendonly`` / ``appendfsync`` settings (when CONFIG is
  allowed) and refuses a server that cannot keep that promise.
* ``redis-sentinel``: a primary, two replicas and three Sentinels (AOF always on every node),
  the primary found through the Sentinels; asynchronous replication, so not
  ``survives_failover``.
* ``redis-sentinel-wait``: the same, every write followed by ``WAIT 1``: fewer writes lost at a
  failover, none when the harness fails it over, but not ``survives_failover`` (a failover the
  Sentinels start on their own can promote the replica that lacks a confirmed write).

Registration only: the driver (:mod:`.driver`, imports redis-py) is loaded when a Redis
backend is first connected, the provisioner lives in :mod:`.provision`, and :mod:`.sentinel`
starts a primary, replicas and three Sentinels (``redis-sentinel``, ``redis-sentinel-wait``).
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from .provision import RedisProvisioner
from .sentinel import RedisSentinelProvisioner

# Redis strings and bulk arguments may be 512 MB, but a subscriber is disconnected when its
# output buffer passes the pub/sub hard limit (32 MB by default), and every message is held
# in memory several times on its way through. 16 MiB is a limit we can honestly carry on every
# interface, also on a server with default settings; larger payloads raise PayloadTooLarge.
MAX_PAYLOAD = 16 << 20

CAPABILITIES: frozenset[Capability] = frozenset(
    {
        Capability.KEYVALUE,
        Capability.KEYVALUE_TTL,
        Capability.KEYVALUE_SCAN,
        Capability.KEYVALUE_CAS,
        Capability.PUBSUB,
        Capability.QUEUE,
        Capability.LOG,
    }
)

# Persistence flags of the private server per registration.
VOLATILE_FLAGS = ("--save", "", "--appendonly", "no")
AOF_FLAGS: tuple[str, ...] = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")

# The Sentinel clusters: durable (every node fsyncs its AOF before it answers); pub/sub does not
# follow a failover (a subscriber stays on the old primary's connection until it breaks).
SENTINEL_PROPERTIES = BackendProperties(
    durable=True,
    survives_failover=False,  # asynchronous replication
    ordering=Ordering.TOTAL,
    pubsub_delivery=DeliveryGuarantee.AT_MOST_ONCE,
    queue_delivery=DeliveryGuarantee.AT_LEAST_ONCE,
    max_payload=MAX_PAYLOAD,
)
# redis-sentinel-wait shares these: WAIT 1 acknowledges a write once *a* replica has it, and the
# Sentinels rank replicas by the offsets of their last INFO of each, so they can promote the
# one without it. Seen: every node paused, the Sentinels failed over on their own as the nodes
# resumed, and acknowledged writes were gone (docs/findings.md). Redis documents that WAIT is
# not strong consistency.


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="redis",
            capabilities=CAPABILITIES,
            properties=BackendProperties(
                durable=False,  # no RDB snapshots, no AOF: a kill or restart loses everything
                survives_power_loss=False,
                ordering=Ordering.TOTAL,
                pubsub_delivery=DeliveryGuarantee.AT_MOST_ONCE,
                queue_delivery=DeliveryGuarantee.AT_LEAST_ONCE,
                max_payload=MAX_PAYLOAD,
            ),
            provisioner=RedisProvisioner(VOLATILE_FLAGS, durable=False),
            driver="prism_testkit.backends.redis.driver:RedisDriver",
            requires=("redis",),
            extra="redis",
            embedded=False,
            description="Redis in memory only (no RDB, no AOF): key-value, pub/sub, queue and log; not durable",
        ),
        BackendSpec(
            name="redis-aof",
            capabilities=CAPABILITIES,
            properties=BackendProperties(
                durable=True,  # AOF fsynced before every reply
                survives_power_loss=True,  # ... so a power cut loses nothing acknowledged either
                ordering=Ordering.TOTAL,
                pubsub_delivery=DeliveryGuarantee.AT_MOST_ONCE,  # pub/sub is never persisted
                queue_delivery=DeliveryGuarantee.AT_LEAST_ONCE,
                max_payload=MAX_PAYLOAD,
            ),
            provisioner=RedisProvisioner(AOF_FLAGS, durable=True),
            driver="prism_testkit.backends.redis.driver:RedisDriver",
            requires=("redis",),
            extra="redis",
            embedded=False,
            description="Redis with appendonly=yes, appendfsync=always: durable key-value, queue and log",
        ),
        # Three hosts (network namespaces), each a redis-server with appendfsync always and a
        # Sentinel; the driver finds the primary through the Sentinels. Replication is
        # asynchronous: a write is acknowledged by the primary alone, so a failover loses what
        # had not reached the promoted replica (measured by the failover suite and
        # tests/test_redis_sentinel.py). Exclusive like postgres-ha (one worker owns the cluster).
        BackendSpec(
            name="redis-sentinel",
            capabilities=CAPABILITIES,
            properties=SENTINEL_PROPERTIES,
            provisioner=RedisSentinelProvisioner(nodes=3, wait_replicas=0),
            driver="prism_testkit.backends.redis.driver:RedisSentinelDriver",
            requires=("redis",),
            extra="redis",
            embedded=False,
            description="Redis primary + 2 replicas + 3 Sentinels (AOF always, asynchronous replication): "
            "a failover may lose acknowledged writes",
            exclusive=True,
            # the driver on one server with the same persistence (AOF always, durable): it runs the
            # rows replication cannot change
            twin="redis-aof",
        ),
        # The same cluster, every write followed by WAIT 1 on its connection: acknowledged once a
        # replica has it. It loses less than redis-sentinel at a failover, not nothing (above).
        BackendSpec(
            name="redis-sentinel-wait",
            capabilities=CAPABILITIES,
            properties=SENTINEL_PROPERTIES,
            provisioner=RedisSentinelProvisioner(nodes=3, wait_replicas=1),
            driver="prism_testkit.backends.redis.driver:RedisSentinelDriver",
            requires=("redis",),
            extra="redis",
            embedded=False,
            description="redis-sentinel with WAIT 1 after every write (acknowledged once a replica has it): "
            "a failover loses less, not nothing",
            exclusive=True,
            twin="redis-aof",
        ),
    ]
