"""The claim check under faults: the queue machine (:mod:`suites._queue_machine`) sending its
values through :class:`~prism_testkit.patterns.claim_check.ClaimCheckQueue`, with payloads on both sides of
the threshold, while the nemesis breaks the queue's server and the object store's.

The faults its guarantee speaks of, and the rules that inject them:

- a consumer crash holding a delivery, or a nack (``crash_consumer``, ``nack``): the message
  comes back, and its object must still be there;
- a server kill or pause of the queue or the object store (``kill_and_restart``, ``pause`` /
  ``resume``, from :class:`~prism_testkit.stateful.nemesis.NemesisRules`, where the backend is a
  server the harness controls);
- proxy faults on either (``latency``, ``reset_connections``, ``partition``, ``heal``, where
  the backend is networked): sends and receives of unknown outcome;
- a slow consumer: a delivery held past its visibility timeout (every step lets real time pass);
- an object lost behind the pattern's back (``lose_object``): the claimed object of an
  acknowledged, not yet consumed message is deleted from the store directly.

Besides the total-queue verdict (every acknowledged message delivered and processed), every
delivery must restore its exact payload, or say why it cannot. For a value whose object was
lost, the typed :class:`~prism_testkit.patterns.claim_check.ClaimNotFound` is the right
outcome: the consumer dead-letters the message (acks it), the history records it delivered
(process ``dead-letter``) and the count ``reported-missing`` goes up. Everything else is an
anomaly: ``ClaimNotFound`` for a value whose object nobody removed (``dangling-claim``), a
payload that comes back different or empty (``corrupt``), and a message that never comes back
(``lost``, from the total-queue checker). A claim check that deletes the object before the
consumer acknowledged the message, so a redelivery finds nothing, and one that reads a missing
object as an empty payload, are caught here (tests/mutants).
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterable, Mapping
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from prism_testkit import Capability, Message, PrismEnv, Queue, Slot, patience, prism_suite
from prism_testkit.interfaces import ObjectInfo, ObjectStore, QueueDelivery
from prism_testkit.patterns.claim_check import (
    ClaimCheck,
    ClaimCheckConfig,
    ClaimCheckError,
    ClaimCheckQueue,
    ClaimNotFound,
)
from prism_testkit.stateful.checkers import Anomaly, Verdict, suite_verdict
from prism_testkit.stateful.history import History
from prism_testkit.stateful.runner import StatefulRun

from ._queue_machine import QueueMachine

pytestmark = prism_suite("stateful_claim_check", messaging=Slot.needs("queue"), objects=Slot.needs("objects"))

THRESHOLD = 64  # bytes: small, so claimed payloads are cheap
SIZES = (0, THRESHOLD, THRESHOLD + 1, 16 * THRESHOLD)  # inline, inline at the boundary, claimed


def payload(value: int, size: int) -> bytes:
    """``size`` bytes that name ``value`` and can be checked byte for byte."""
    head = f"{value}:".encode()
    return head + bytes((value + i) % 251 for i in range(size - len(head)))


# The value whose send is running. Set before each send's task is created: a task copies the
# context it was created in, so even a put that lands after its send was abandoned names its
# own value.
SENDING: contextvars.ContextVar[int] = contextvars.ContextVar("sending")


class RecordingObjects:
    """The object client the claim check writes through, noting which value each object it
    puts belongs to; everything else goes straight to ``inner``."""

    def __init__(self, inner: ObjectStore, keys: dict[int, tuple[str, str]]) -> None:
        self.inner = inner
        self.keys = keys  # value -> (bucket, key) of its claimed object

    def _note(self, bucket: str, key: str) -> None:
        value = SENDING.get(None)
        if value is not None:
            self.keys[value] = (bucket, key)

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        self._note(bucket, key)
        return await self.inner.put(bucket, key, data, metadata=metadata, ttl=ttl)

    async def put_stream(
        self,
        bucket: str,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        metadata: Mapping[str, str] | None = None,
        ttl: float | None = None,
    ) -> ObjectInfo:
        self._note(bucket, key)
        return await self.inner.put_stream(bucket, key, chunks, metadata=metadata, ttl=ttl)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ClaimCheckMachine(QueueMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, ["messaging", "objects"], slot="messaging")
        objects = self.env.driver("objects")
        config = ClaimCheckConfig(
            threshold=THRESHOLD,
            bucket=self.ns.name("claims"),
            # A TTL where the store has one: objects of sends with an unknown outcome expire.
            ttl=patience.handed("outlive-run") if objects.supports(Capability.OBJECTS_TTL) else None,
        )
        self.claim_check = ClaimCheck(objects.objects(), config)
        self.loop(self.claim_check.ensure_bucket())
        self.claims = ClaimCheckQueue(self.client("messaging").queue(), self.claim_check)
        self.broken: dict[str, list[Anomaly]] = {"dangling-claim": [], "corrupt": []}
        self.objects_of: dict[int, tuple[str, str]] = {}  # value -> its claimed object
        self.objects_lost: set[int] = set()  # values whose object lose_object removed
        self.reported_missing: list[int] = []  # deliveries of those that raised ClaimNotFound

    def _wired(self, messaging: Queue, objects: ObjectStore) -> ClaimCheckQueue:
        # One ClaimCheckQueue for the whole example (it remembers which delivery holds which
        # claim until the ack); only the clients under it change after a restart.
        self.claims.inner = messaging
        self.claim_check.objects = RecordingObjects(objects, self.objects_of)
        return self.claims

    def queue(self) -> Queue:
        return self._wired(self.client("messaging").queue(), self.client("objects").objects())

    def settled_queue(self) -> Queue:
        return self._wired(self.env.driver("messaging").queue(), self.env.driver("objects").objects())

    @rule(size=st.sampled_from(SIZES))
    def enqueue(self, size: int) -> None:
        def encode(value: int) -> Message:
            SENDING.set(value)  # before the send's task exists: see SENDING
            # The value also travels in a header: a dangling claim has no payload to read it from.
            return Message(payload(value, size), {"size": str(size), "value": str(value)})

        self.send(encode)

    @rule(which=st.integers(0, 7))
    def lose_object(self, which: int) -> None:
        """Nemesis: the object of an acknowledged, not yet consumed claimed message is deleted
        from the store directly, behind the pattern's back (an operator, a lifecycle rule, a
        store that lost it). Its delivery must then raise ``ClaimNotFound``. With no such
        message, a no-op (which messages are acknowledged depends on timing: no precondition)."""
        candidates = sorted(
            v for v in self.objects_of if v in self.acknowledged and v not in self.consumed | self.objects_lost
        )
        if not candidates:
            return
        value = candidates[which % len(candidates)]
        bucket, key = self.objects_of[value]
        objects = self.env.driver("objects").objects()  # the store itself, never the proxy

        async def delete() -> bool:
            if not await objects.exists(bucket, key):
                # Already gone, and not by this rule: the pattern lost it. Taking the blame here
                # would let its ClaimNotFound pass (a masked dangling claim).
                return False
            await objects.delete(bucket, key)
            return True

        target = self.nemesis.targets["objects"]
        handle = self.history.invoke("nemesis", "lose-object", target.backend, {"value": value, "key": key})
        try:
            deleted = self.bounded(delete())
        except Exception as exc:  # a paused or restarting store: the object may be gone or not
            handle.info(exc)
            deleted = True  # maybe: ClaimNotFound is a right answer for it from now on
        else:
            handle.ok(value=deleted)
        if deleted:
            self.objects_lost.add(value)
            self.env.faults["lose-object"] += 1  # the report row's count of what it survived

    def witness(self, message: Message) -> History:
        """The enqueue of the value ``message`` carries: where the broken claim was made."""
        value = int(message.headers.get("value", "-1"))
        return self.history.subhistory(p for p in self.history.pairs() if p.f == "enqueue" and p.invoke.value == value)

    def decode(self, delivery: QueueDelivery) -> int:
        data = bytes(delivery.message.payload)
        # The header names the value even when the payload came back empty or mangled.
        value = int(delivery.message.headers.get("value", data.split(b":", 1)[0] or b"-1"))
        size = int(delivery.message.headers.get("size", "-1"))
        if data != payload(value, size):
            self.broken["corrupt"].append(
                Anomaly(
                    "corrupt", f"value {value} came back as {len(data)} other bytes", self.witness(delivery.message)
                )
            )
        return value

    async def take(self, queue: Queue, *, wait: float, visibility: float) -> QueueDelivery | None:
        while True:
            try:
                return await queue.receive(self.name, wait=wait, visibility_timeout=visibility)
            except ClaimCheckError as exc:
                if not isinstance(exc.raw, QueueDelivery):
                    raise
                # The message is useless without its payload: drop it (ack the raw delivery), as
                # a consumer would dead-letter it, and report the claim it pointed to. An ack
                # that fails after a fault has an unknown outcome: it may have taken effect (the
                # message is gone) or not (it comes back and is dead-lettered again); either way
                # this delivery was handled, as a processed delivery whose ack was lost is.
                try:
                    await self.claims.ack(self.name, exc.raw)
                except Exception:
                    if not self.faulted:
                        raise
                value = int(exc.raw.message.headers.get("value", "-1"))
                if not (isinstance(exc, ClaimNotFound) and value in self.objects_lost):
                    self.broken["dangling-claim"].append(
                        Anomaly("dangling-claim", f"{type(exc).__name__}: {exc}", self.witness(exc.raw.message))
                    )
                    return None
                # Reported missing: the right answer for an object lose_object removed. The
                # message was delivered and handled (dead-lettered), so it is not lost; the
                # consumer (or the drain) goes on to the next message.
                self.reported_missing.append(value)
                self.history.invoke("dead-letter", "dequeue", self.name).ok(value=value)

    def extra_verdicts(self) -> list[Verdict]:
        counts = {
            "claimed": self.claim_check.metrics.claims_created,
            "objects-lost": len(self.objects_lost),
            "reported-missing": len(self.reported_missing),
        }
        return [suite_verdict("claim-check", self.broken, counts)]


def test_claim_check_restores_every_acknowledged_payload_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: ClaimCheckMachine(run))


def test_an_object_lost_behind_the_patterns_back_is_reported_missing(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """``lose_object``, step by step: a claimed message is acknowledged, its object is deleted
    behind the pattern's back, and its delivery must raise ``ClaimNotFound`` (reported missing,
    not a dangling claim, and not lost). Fails if the rule does not fire."""
    run = StatefulRun(prism_env, request)
    machine = ClaimCheckMachine(run)
    machine.enqueue(size=16 * THRESHOLD)
    assert machine.acknowledged == {0}, "the claimed message was not acknowledged"
    machine.lose_object(0)
    assert machine.objects_lost == {0}, "lose_object removed no object"
    patience.repeat_until(
        machine.receive,
        lambda: bool(machine.held or machine.reported_missing),
        what="the message whose object was lost to be delivered",
    )
    assert not machine.held, "the message whose object was lost was delivered with a payload"
    assert machine.reported_missing == [0]
    machine.teardown()
    assert run.judged == 1
