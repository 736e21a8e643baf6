"""The claim check under faults: the queue machine (:mod:`suites._queue_machine`) sending its
values through :class:`~prism_testkit.patterns.claim_check.ClaimCheckQueue`, with payloads on both sides of
the threshold, while the nemesis breaks the queue's server and the object store's.

Besides the total-queue verdict (every acknowledged message delivered and processed), every
delivery must restore its exact payload: a claim whose object is gone (``dangling-claim``) or
whose payload comes back different (``corrupt``) is an anomaly. A claim check that deletes the
object before the consumer acknowledged the message, so a redelivery finds nothing, is caught
here (tests/mutants).
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule
from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig, ClaimCheckError, ClaimCheckQueue

from prism_testkit import Capability, Message, PrismEnv, Queue, Slot, prism_suite
from prism_testkit.interfaces import QueueDelivery
from prism_testkit.jepsen.checkers import Anomaly, Verdict, suite_verdict
from prism_testkit.jepsen.history import History
from prism_testkit.jepsen.runner import StatefulRun

from ._queue_machine import QueueMachine

pytestmark = prism_suite("stateful_claim_check", messaging=Slot.needs("queue"), objects=Slot.needs("objects"))

THRESHOLD = 64  # bytes: small, so claimed payloads are cheap
SIZES = (0, THRESHOLD, THRESHOLD + 1, 16 * THRESHOLD)  # inline, inline at the boundary, claimed


def payload(value: int, size: int) -> bytes:
    """``size`` bytes that name ``value`` and can be checked byte for byte."""
    head = f"{value}:".encode()
    return head + bytes((value + i) % 251 for i in range(size - len(head)))


class ClaimCheckMachine(QueueMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, ["messaging", "objects"], slot="messaging")
        objects = self.env.driver("objects")
        config = ClaimCheckConfig(
            threshold=THRESHOLD,
            bucket=self.ns.name("claims"),
            # A TTL where the store has one: objects of sends with an unknown outcome expire.
            ttl=3600.0 if objects.supports(Capability.OBJECTS_TTL) else None,
        )
        self.claim_check = ClaimCheck(objects.objects(), config)
        self.loop(self.claim_check.ensure_bucket())
        self.claims = ClaimCheckQueue(self.client("messaging").queue(), self.claim_check)
        self.broken: dict[str, list[Anomaly]] = {"dangling-claim": [], "corrupt": []}

    def _wired(self, messaging: Queue, objects: object) -> ClaimCheckQueue:
        # One ClaimCheckQueue for the whole example (it remembers which delivery holds which
        # claim until the ack); only the clients under it change after a restart.
        self.claims.inner = messaging
        self.claim_check.objects = objects  # type: ignore[assignment]
        return self.claims

    def queue(self) -> Queue:
        return self._wired(self.client("messaging").queue(), self.client("objects").objects())

    def settled_queue(self) -> Queue:
        return self._wired(self.env.driver("messaging").queue(), self.env.driver("objects").objects())

    @rule(size=st.sampled_from(SIZES))
    def enqueue(self, size: int) -> None:  # type: ignore[override]
        # The value also travels in a header: a dangling claim has no payload to read it from.
        self.send(lambda value: Message(payload(value, size), {"size": str(size), "value": str(value)}))

    def witness(self, message: Message) -> History:
        """The enqueue of the value ``message`` carries: where the broken claim was made."""
        value = int(message.headers.get("value", "-1"))
        return self.history.subhistory(p for p in self.history.pairs() if p.f == "enqueue" and p.invoke.value == value)

    def decode(self, delivery: QueueDelivery) -> int:
        data = bytes(delivery.message.payload)
        value = int(data.split(b":", 1)[0])
        size = int(delivery.message.headers.get("size", "-1"))
        if data != payload(value, size):
            self.broken["corrupt"].append(
                Anomaly(
                    "corrupt", f"value {value} came back as {len(data)} other bytes", self.witness(delivery.message)
                )
            )
        return value

    async def take(self, queue: Queue, *, wait: float, visibility: float) -> QueueDelivery | None:
        try:
            return await queue.receive(self.name, wait=wait, visibility_timeout=visibility)
        except ClaimCheckError as exc:
            if not isinstance(exc.raw, QueueDelivery):
                raise
            # The message is useless without its payload: drop it (ack the raw delivery), as a
            # consumer would dead-letter it, and report the claim it pointed to.
            await self.claims.ack(self.name, exc.raw)
            self.broken["dangling-claim"].append(
                Anomaly("dangling-claim", f"{type(exc).__name__}: {exc}", self.witness(exc.raw.message))
            )
            return None

    def extra_verdicts(self) -> list[Verdict]:
        counts = {"claimed": self.claim_check.metrics.claims_created}
        return [suite_verdict("claim-check", self.broken, counts)]


def test_claim_check_restores_every_acknowledged_payload_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: ClaimCheckMachine(run))
