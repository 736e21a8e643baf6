"""Redis backends: two registrations that share one driver and differ only in how the private
server persists:

* ``redis``: ``--save "" --appendonly no``. Everything lives in memory only, so a kill or a
  restart of the server loses every write: declared **not durable**.
* ``redis-aof``: ``--appendonly yes --appendfsync always``. Redis fsyncs the AOF before it
  answers a write, so an acknowledged write survives SIGKILL: declared durable. Given a URL,
  the driver checks the server's ``appendonly`` / ``appendfsync`` settings (when CONFIG is
  allowed) and refuses a server that cannot keep that promise.

Registration only: the driver (:mod:`.driver`, imports redis-py) is loaded when a Redis
backend is first connected, the provisioner lives in :mod:`.provision`.
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, DeliveryGuarantee, Ordering
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from .provision import RedisProvisioner

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
AOF_FLAGS = ("--save", "", "--appendonly", "yes", "--appendfsync", "always")


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
    ]
