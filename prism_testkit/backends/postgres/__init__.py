"""postgres: a durable server backend over PostgreSQL (key-value, queue, log, transactions).

Registration only: the driver (:mod:`.driver`, imports asyncpg) is loaded when the backend is
first connected; the provisioner (:mod:`.provision`) starts a private cluster without it, and
:mod:`.ha` a primary with streaming standbys (``postgres-ha``, ``postgres-ha-async``).
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, Ordering
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from .ha import PostgresHaProvisioner
from .provision import PostgresProvisioner

# bytea holds at most 1 GiB and the whole Bind message must stay below that too; a limit well
# under it, enforced here with PayloadTooLarge, is one we can honestly promise.
MAX_PAYLOAD = 256 << 20

CAPABILITIES: frozenset[Capability] = frozenset(
    {
        Capability.KEYVALUE,
        Capability.KEYVALUE_TTL,
        Capability.KEYVALUE_SCAN,
        Capability.KEYVALUE_CAS,
        Capability.QUEUE,
        Capability.LOG,
        Capability.LOG_TRUNCATE,
        Capability.TRANSACTIONS,
        Capability.TRANSACTIONS_NUMBERING,
        # logical decoding; withheld by the driver on a server (given by URL) whose
        # wal_level is not logical
        Capability.CHANGEFEED,
    }
)

# fsync=on and synchronous_commit=on (the defaults, forced for the private server): a write that
# returned has been flushed to the WAL and survives a kill of the server.
PROPERTIES = BackendProperties(durable=True, survives_power_loss=True, ordering=Ordering.TOTAL, max_payload=MAX_PAYLOAD)
HA_PROPERTIES = BackendProperties(durable=True, ordering=Ordering.TOTAL, max_payload=MAX_PAYLOAD)
# Synchronous: a commit returns once a standby has flushed it, and the failover promotes the most
# advanced standby, so every acknowledged commit is on the new primary (the failover suite checks).
HA_SYNC_PROPERTIES = HA_PROPERTIES.model_copy(update={"survives_failover": True})


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="postgres",
            capabilities=CAPABILITIES,
            properties=PROPERTIES,
            provisioner=PostgresProvisioner(),
            driver="prism_testkit.backends.postgres.driver:PostgresDriver",
            requires=("asyncpg",),
            extra="postgres",
            embedded=False,
            description="PostgreSQL (asyncpg, fsync on): durable key-value, queue, log, transactions "
            "and a change feed (logical decoding)",
        ),
        # A primary and two standbys, one network namespace each; clients follow the primary
        # through a multi-host URL with target_session_attrs=read-write. Both variants are
        # durable (every node fsyncs; a crash of every node keeps what the primary acknowledged).
        # Neither is declared to survive a power cut: the nodes' data dirs are not put on lazy
        # filesystems yet, so no power-cut test has proved it. survives_failover: synchronous
        # yes, as long as the most advanced standby is promoted (the failover does);
        # asynchronous no (its loss is measured and tolerated by the failover suite).
        # Logical replication slots (the change feed) stay on the old primary in PostgreSQL 15.
        BackendSpec(
            name="postgres-ha",
            capabilities=CAPABILITIES,
            properties=HA_SYNC_PROPERTIES,
            provisioner=PostgresHaProvisioner(nodes=3, synchronous=True),
            driver="prism_testkit.backends.postgres.driver:PostgresDriver",
            requires=("asyncpg",),
            extra="postgres",
            embedded=False,
            description="PostgreSQL primary + 2 streaming standbys, synchronous (ANY 1, synchronous_commit=on)",
            exclusive=True,  # three postmasters per worker would starve 2 cores
            twin="postgres",  # the same driver on one server: it runs the rows replication cannot change
        ),
        BackendSpec(
            name="postgres-ha-async",
            capabilities=CAPABILITIES,
            properties=HA_PROPERTIES,
            provisioner=PostgresHaProvisioner(nodes=3, synchronous=False),
            driver="prism_testkit.backends.postgres.driver:PostgresDriver",
            requires=("asyncpg",),
            extra="postgres",
            embedded=False,
            description="PostgreSQL primary + 2 streaming standbys, asynchronous: a failover may lose "
            "acknowledged commits",
            exclusive=True,
            twin="postgres",
        ),
    ]
