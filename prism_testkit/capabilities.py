"""What a backend declares it can do: interfaces, finer capabilities and instance properties.

Capabilities are facts checked both ways by the contract suites: a declared capability must
work, an undeclared one must raise :class:`~prism_testkit.errors.NotSupported`. Properties
describe the *provisioned instance* (a memory-only broker is not durable, and says so).
"""

from __future__ import annotations

import string
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Capability(StrEnum):
    KEYVALUE = "keyvalue"
    KEYVALUE_TTL = "keyvalue.ttl"
    KEYVALUE_SCAN = "keyvalue.scan"
    KEYVALUE_CAS = "keyvalue.cas"
    PUBSUB = "pubsub"
    QUEUE = "queue"
    # a message resent with the same ``prism-message-id`` header (a producer retrying a send
    # whose acknowledgement was lost) is delivered once, within the backend's window
    QUEUE_DEDUP = "queue.dedup"
    LOG = "log"
    # truncate(log, before): records below an offset deleted, every other offset unchanged
    # (the outbox's cleanup: delete)
    LOG_TRUNCATE = "log.truncate"
    OBJECTS = "objects"
    OBJECTS_TTL = "objects.ttl"
    TRANSACTIONS = "transactions"
    # append_numbered(log, message, counter=..., header=...): the message is numbered from a
    # counter key at commit, under the commit's own locks (the outbox's per-aggregate sequence
    # without a read round trip)
    TRANSACTIONS_NUMBERING = "transactions.numbering"
    # committed key-value changes under a prefix, whole transactions in commit order, read
    # from a durable position the reader confirms (logical decoding, a change table...)
    CHANGEFEED = "changefeed"

    @property
    def interface(self) -> Capability:
        """The interface this capability belongs to (itself for an interface)."""
        return Capability(self.value.split(".", 1)[0])

    @property
    def is_interface(self) -> bool:
        return "." not in self.value


INTERFACES: tuple[Capability, ...] = tuple(c for c in Capability if c.is_interface)
MESSAGING: frozenset[Capability] = frozenset({Capability.QUEUE, Capability.LOG, Capability.PUBSUB})


# Characters of a name (key, queue, log, topic, group, object key, bucket) every backend takes:
# the namespace prefixes are made of them (prism_testkit.isolation).
NAME_BASE = string.ascii_lowercase + string.digits + "-"
# What a name may hold besides NAME_BASE unless a backend declares less: the characters drivers
# forget to escape. MQTT's wildcards ``+ #``, NATS's separator and wildcards ``. * >``, glob
# (Redis SCAN / KEYS MATCH) ``* ? [ ] \ ^``, SQL LIKE ``% _``, path and key separators
# ``/ :``, quotes, a space, upper case (distinct from lower case) and non-ASCII of two, three
# and four UTF-8 bytes. No control characters (PostgreSQL text cannot hold NUL).
NAME_CHARACTERS = string.ascii_uppercase + string.punctuation.replace("-", "") + " éß日本🙂"


def _check_name_characters(value: str) -> str:
    if len(set(value)) != len(value):
        raise ValueError("name characters must not repeat")
    if any(c in NAME_BASE for c in value):
        raise ValueError(f"name characters list only what goes beyond {NAME_BASE!r}, which every backend takes")
    return value


class DeliveryGuarantee(StrEnum):
    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


class Ordering(StrEnum):
    NONE = "none"
    PER_KEY = "per-key"
    TOTAL = "total"  # within one queue / log / topic


class BackendProperties(BaseModel):
    """Guarantees of the provisioned instance, used to select suites and parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    durable: bool = Field(description="acknowledged writes survive a kill and restart of the server")
    # A process crash (SIGKILL) leaves the OS page cache intact; a power cut does not. Only a
    # server that fsyncs (files, and directories for new names) before acknowledging survives it.
    survives_power_loss: bool = Field(
        default=False,
        description="acknowledged writes survive a power cut (every write not fsynced is lost) and restart; "
        "the power-loss suite proves it on a lazy filesystem under the data dir",
    )
    # The server's documented promise for its setting, narrower than survives_power_loss: the
    # data of every acknowledged write was fsynced first (JetStream's sync_interval: always),
    # while the names of files and directories it creates may not be yet.
    fsyncs_before_ack: bool = Field(
        default=False,
        description="every acknowledged write's data was fsynced before the acknowledgement (the names of new "
        "files and directories may not be); the power-loss suite holds it to it on data the disk already held",
    )
    survives_failover: bool = Field(
        default=False,
        description="acknowledged writes survive the loss of the primary and the promotion of a replica; "
        "the failover suite proves it on every backend whose instance can fail over",
    )
    ordering: Ordering = Ordering.TOTAL
    pubsub_delivery: DeliveryGuarantee = DeliveryGuarantee.AT_MOST_ONCE
    queue_delivery: DeliveryGuarantee = DeliveryGuarantee.AT_LEAST_ONCE
    # How often one log append call may land under faults: a client library that retries a
    # write whose acknowledgement was lost makes it at-least-once (duplicates at two offsets).
    log_delivery: DeliveryGuarantee = DeliveryGuarantee.EXACTLY_ONCE
    survives_pause: bool = Field(
        default=True,
        description="acknowledged writes stay intact when the server is paused (SIGSTOP) and resumed "
        "with requests in flight; the fault suites pause only servers that declare it",
    )
    max_payload: int | None = Field(default=None, description="largest message payload in bytes")
    # The characters the names suite draws names from (besides NAME_BASE), checked both ways: a
    # declared one must work (round trip, no aliasing with a name differing in it, prefix scans
    # that match only the prefix); an undeclared one is refused with ValueError or kept apart.
    name_characters: str = Field(
        default=NAME_CHARACTERS,
        description="characters besides a-z, 0-9 and '-' that keys, queues, logs, topics, groups and object keys "
        "may hold; the names suite draws hostile names from them",
    )
    bucket_characters: str = Field(
        default=NAME_CHARACTERS,
        description="likewise for bucket names (S3 takes none: a-z, 0-9, '-' and rules about '.')",
    )

    @model_validator(mode="after")
    def _name_characters_listed_once(self) -> BackendProperties:
        _check_name_characters(self.name_characters)
        _check_name_characters(self.bucket_characters)
        return self

    @model_validator(mode="after")
    def _power_loss_implies_crash(self) -> BackendProperties:
        if self.survives_power_loss and not self.durable:
            raise ValueError("survives_power_loss=True needs durable=True: a power cut loses more than a crash")
        return self


def parse_capabilities(values: object) -> frozenset[Capability]:
    """Capabilities from strings or enum members; a sub-capability implies its interface."""
    if isinstance(values, str | Capability):
        values = [values]
    if not isinstance(values, list | tuple | set | frozenset):
        raise TypeError(f"capabilities must be a collection of names, not {type(values).__name__}")
    caps: set[Capability] = set()
    for value in values:
        try:
            cap = Capability(value)
        except ValueError:
            known = ", ".join(c.value for c in Capability)
            raise ValueError(f"unknown capability {value!r} (known: {known})") from None
        caps.add(cap)
        caps.add(cap.interface)
    return frozenset(caps)
