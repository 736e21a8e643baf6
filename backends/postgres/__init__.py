"""postgres: a durable server backend over PostgreSQL (key-value, queue, log, transactions).

Registration only: the driver (:mod:`.driver`, imports asyncpg) is loaded when the backend is
first connected; the provisioner (:mod:`.provision`) starts a private cluster without it.
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, Ordering
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

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
        )
    ]
