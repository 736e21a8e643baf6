"""NATS backend over nats-py: core NATS pub/sub plus JetStream queues, logs, key-value and objects.

This module holds :class:`NatsDriver`, what the registration names: it connects (one NATS
connection per driver, checked for JetStream and a large enough ``max_payload``), hands out the
interfaces and cleans a namespace up; the rest lives where it is used. :mod:`.codec`: names and
message encoding; :mod:`.client`: the connection's lifecycle; :mod:`.jetstream`: the JetStream
API client every interface and the clean-up send their requests through (timeouts, resends,
stream creation); :mod:`.messaging`: key-value, queue and log; :mod:`.pubsub`: core NATS
pub/sub; :mod:`.objects`: the object store.

Durability: nats-server 2.9 fsyncs JetStream files every 2 minutes and has no
``sync_interval: always`` (2.10+), so an acknowledged write can be lost when the machine goes
down: the provisioned instance is declared **not durable**.
"""

from __future__ import annotations

from typing import Self

from nats.aio.client import Client as NATS

from prism_testkit.capabilities import Capability
from prism_testkit.driver import Driver
from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.base import Endpoint
from prism_testkit.redaction import redact

from . import MAX_PAYLOAD
from .client import ClosingClient, close_client
from .codec import token, untoken
from .jetstream import LOG_STREAM, QUEUE_STREAM, ApiError, JetStream
from .messaging import KV_BUCKET, OFFSETS_BUCKET, NatsKeyValue, NatsLog, NatsQueue
from .objects import OBJ_STREAM, NatsObjects
from .pubsub import NatsPubSub

MIN_SERVER_PAYLOAD = MAX_PAYLOAD + (64 << 10)


class NatsDriver(Driver):
    backend_name = "nats"

    def __init__(self, name: str, capabilities: frozenset[Capability], nc: NATS, *, replicas: int = 1) -> None:
        """``replicas``: each stream's copies, the node count of a clustered instance."""
        super().__init__(name, capabilities)
        self.jetstream = JetStream(name, nc, replicas)
        self._keyvalue = NatsKeyValue(self.jetstream, self.require)
        self._pubsub = NatsPubSub(self.jetstream)
        self._queue = NatsQueue(self.jetstream)
        self._log = NatsLog(self.jetstream)
        self._objects = NatsObjects(self.jetstream, self.require)

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        try:
            nc = await ClosingClient.opened(endpoint.url.split(","))  # a cluster's nodes: nats-py takes them as a list
        except Exception as exc:  # the client is closed already; a cancellation propagates as it is
            raise ProvisioningError(
                redact(f"backend {name!r}: cannot connect to {endpoint.url}: {type(exc).__name__}: {exc}")
            ) from None
        driver = cls(name, capabilities, nc, replicas=int(endpoint.options.get("replicas", 1)))
        told = nc.connected_server_version
        driver.server_version = f"{told.major}.{told.minor}.{told.patch}"
        try:
            if nc.max_payload < MIN_SERVER_PAYLOAD:
                raise ProvisioningError(
                    f"backend {name!r}: the server's max_payload is {nc.max_payload} bytes; it must be at least "
                    f"{MIN_SERVER_PAYLOAD} to carry the declared max_payload of {MAX_PAYLOAD} bytes"
                )
            await driver.jetstream.api("$JS.API.INFO")
        except ApiError as exc:
            await nc.close()
            raise ProvisioningError(f"backend {name!r}: JetStream is not available: {exc}") from None
        except BaseException:
            await nc.close()
            raise
        return driver

    async def close(self) -> None:
        await self._pubsub.close()
        await close_client(self.jetstream.nc)

    def keyvalue(self) -> NatsKeyValue:
        return self._keyvalue

    def pubsub(self) -> NatsPubSub:
        return self._pubsub

    def queue(self) -> NatsQueue:
        return self._queue

    def log(self) -> NatsLog:
        return self._log

    def objects(self) -> NatsObjects:
        return self._objects

    # --- cleanup -------------------------------------------------------------------------------

    async def _inventory(self, prefix: str) -> dict[str, list[tuple[str, str]]]:
        """What is stored under ``prefix``: kind -> [(label, stream or subject)]."""
        encoded = token(prefix)
        found: dict[str, list[tuple[str, str]]] = {"stream": [], "kv": [], "group": []}
        for stream in await self.jetstream.stream_names():
            for head, label in ((QUEUE_STREAM, "queue"), (LOG_STREAM, "log"), (OBJ_STREAM, "bucket")):
                if stream.startswith(head + encoded):
                    found["stream"].append((f"{label}:{untoken(stream[len(head) :])}", stream))
        start = len(f"$KV.{KV_BUCKET}.")
        for subject in await self.jetstream.subjects(f"KV_{KV_BUCKET}", f"$KV.{KV_BUCKET}.>"):
            if subject[start:].startswith(encoded):
                found["kv"].append((f"kv:{untoken(subject[start:])}", subject))
        start = len(f"$KV.{OFFSETS_BUCKET}.")
        for subject in await self.jetstream.subjects(f"KV_{OFFSETS_BUCKET}", f"$KV.{OFFSETS_BUCKET}.*.*"):
            log, group = subject[start:].split(".", 1)
            if log.startswith(encoded) or group.startswith(encoded):
                found["group"].append((f"group:{untoken(log)}/{untoken(group)}", subject))
        return found

    async def purge(self, prefix: str) -> None:
        found = await self._inventory(prefix)
        self._queue.forget_prefix(prefix)
        deleted = [stream for _, stream in found["stream"]]
        for stream in deleted:
            await self.jetstream.delete_stream(stream, until_unlisted=False)
        await self.jetstream.until_unlisted(deleted)  # once for them all
        # A test's end may find a cluster between leaders (the leader_change suite ends on
        # an outage): the clean-up's purges wait the election out, as its deletions do.
        for _, subject in found["kv"]:
            await self.jetstream.purge_subject(f"KV_{KV_BUCKET}", subject, repeatable=True)
        for _, subject in found["group"]:
            await self.jetstream.purge_subject(f"KV_{OFFSETS_BUCKET}", subject, repeatable=True)

    async def leftovers(self, prefix: str) -> list[str]:
        found = await self._inventory(prefix)
        return sorted(label for items in found.values() for label, _ in items)
