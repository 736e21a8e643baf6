"""The producer under faults (issue #40's stateful suite): the queue machine of
:mod:`suites._queue_machine`, with every enqueue handed to a :class:`Producer` (retries with
backoff, one message id over all attempts) instead of sent directly. The total-queue checker then
judges the producer: every publish it reported published is consumed, nothing it was never handed
comes out, and duplicates appear only where the queue's declared delivery allows them.

The faults its guarantee speaks of, and the rules that inject them:

- a send that fails or whose answer is lost (proxy faults: ``latency``, ``reset_connections``,
  ``partition``, ``heal``, where the backend is networked): the producer retries, so a publish may
  land twice with one id (at-least-once) and is never reported published when it did not land;
- a server kill or pause of the queue's server (``kill_and_restart``, ``pause`` / ``resume``, from
  the nemesis, where the backend is a durable server the harness controls);
- consumer crashes, nacks and slow consumers (the queue machine's rules): the consumed side;
- a sink that refuses the next sends before they leave (``refuse_sends``: a seam in front of the
  queue, on every backend): fewer than the producer's attempts is a publish that succeeds on a
  retry; as many or more is a publish that definitely failed. ``publish_at_the_retry_bound``
  publishes across exactly those two edges (its last allowed attempt goes through, or is refused too).

Besides the total-queue verdict, the producer's own report of each publish is judged against what
its sink saw (the ``producer-outcomes`` checker): a publish reported published must have had a
send the sink answered (else ``failure-reported-as-published``: a publish acknowledged to the
application that never reached the queue), and one reported failed must not have (else
``published-reported-failed``: the application would publish it again). A publish reported failed
whose every attempt was refused before leaving is a definite failure in the history (so the
checker calls it ``unexpected`` should it ever come out of the queue); one whose attempts may
have landed is an unknown outcome. A publish reported published is acknowledged and must be
consumed (the total-queue checker calls it ``lost`` otherwise).

A publish whose retries ran out (``PublishFailed``) after an attempt that may have landed, or that
outlived the client's bound, is an unknown outcome, never a definite failure. The producer's own stop
runs before the final drain, so every message it still held is published or abandoned by then.
Not injected: a clock jump (the producer's window needs its state slot, which this machine leaves
out; the producer suite moves the dedup clock by hand).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from prism_testkit import Message, PrismEnv, Queue, Slot, patience, prism_suite
from prism_testkit.errors import ConnectionLost
from prism_testkit.interfaces import MESSAGE_ID_HEADER, QueueDelivery
from prism_testkit.patterns.producer import Producer, ProducerConfig, PublishFailed, PublishOutcome
from prism_testkit.stateful.checkers import Anomaly, Verdict
from prism_testkit.stateful.history import History
from prism_testkit.stateful.runner import StatefulRun

from ._queue_machine import QueueMachine

MAX_RETRIES = 3  # so a publish makes four attempts

pytestmark = prism_suite("stateful_producer", backend=Slot.needs("queue"))


class _CurrentQueue:
    """The producer's sink: whichever queue client the machine set last (a restart or a proxy
    replaces it; the machine looks it up outside the loop, before each operation). It refuses
    the next ``refuse`` sends before they leave, and records every send's outcome by message id:
    ``ok`` (answered), ``refused`` (never left), ``error`` (may have landed)."""

    def __init__(self, queue: Queue) -> None:
        self.current = queue
        self.refuse = 0
        self.sends: defaultdict[str, list[str]] = defaultdict(list)

    async def send(self, queue: str, message: Message) -> str:
        outcomes = self.sends[message.headers.get(MESSAGE_ID_HEADER, "")]
        if self.refuse > 0:
            self.refuse -= 1
            outcomes.append("refused")
            raise ConnectionLost("injected: the sink refused the send")
        outcomes.append("error")  # until it answers: cancelled or raising, it may have landed
        sent = await self.current.send(queue, message)
        outcomes[-1] = "ok"
        return sent

    async def receive(self, queue: str, *, wait: float = 0.0, visibility_timeout: float = 30.0) -> QueueDelivery | None:
        return await self.current.receive(queue, wait=wait, visibility_timeout=visibility_timeout)

    async def ack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.current.ack(queue, delivery)

    async def nack(self, queue: str, delivery: QueueDelivery) -> None:
        await self.current.nack(queue, delivery)


class ProducerMachine(QueueMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run)
        self.sink = _CurrentQueue(self.settled_queue())
        self.producer = Producer(
            self.sink,
            ProducerConfig(
                destination=self.name,
                max_retries=MAX_RETRIES,
                retry_backoff=patience.handed("poll"),
                retry_backoff_max=patience.handed("poll") * 5,
            ),
        )
        self.loop(self.producer.start())
        self.published = 0
        self.reported_published: dict[int, str] = {}  # value -> message id
        self.reported_failed: dict[int, str] = {}

    @rule(n=st.integers(1, MAX_RETRIES + 2))
    def refuse_sends(self, n: int) -> None:
        """The sink refuses the next ``n`` sends before they leave (counted as a fault)."""
        self.sink.refuse = n
        self.env.faults["refused-send"] += 1

    @rule(past=st.booleans())
    def publish_at_the_retry_bound(self, past: bool) -> None:
        """A publish whose sends are refused up to its last allowed attempt: that attempt goes
        through (reported published, or the application would publish it again) or, ``past``
        the bound, is refused too (reported failed, never published). The two edges of the
        retry bound, reached by construction rather than by a draw of ``refuse_sends`` that
        hits them and an enqueue right after it."""
        self.sink.refuse = MAX_RETRIES + past
        self.env.faults["refused-send"] += 1
        self.send(self.encode)

    def send(self, encode: object) -> None:
        value, self.next_value = self.next_value, self.next_value + 1
        message = Message(str(value).encode(), {"stateful": "producer"})
        self.sink.current = self.queue()

        async def publish() -> PublishOutcome | PublishFailed:
            try:
                return await self.producer.publish(message)
            except PublishFailed as failed:  # a report of the producer's, judged below
                return failed

        outcome = self.attempt("producer", "enqueue", publish, key=self.name, value=value)
        self.sink.refuse = 0  # the injected refusals belong to this publish
        if not outcome.completed:
            return
        result = outcome.result
        if isinstance(result, PublishFailed):
            self.reported_failed[value] = result.message_id
            if set(self.sink.sends.get(result.message_id, [])) == {"refused"}:
                outcome.handle.fail(f"every attempt refused before the send: {result}")
            else:
                outcome.handle.info(f"reported failed, an attempt may have landed: {result}")
            return
        assert result is not None
        self.reported_published[value] = result.message_id
        outcome.handle.ok()
        self.acknowledged.add(value)
        self.published += 1

    def extra_verdicts(self) -> list[Verdict]:
        found: dict[str, list[Anomaly]] = defaultdict(list)
        for value, message_id in self.reported_published.items():
            sends = self.sink.sends.get(message_id, [])
            if "ok" not in sends:
                found["failure-reported-as-published"].append(
                    Anomaly(
                        "failure-reported-as-published",
                        f"value {value} was reported published, but no send of it was answered (sends: {sends})",
                        History(),
                        {"value": value, "sends": sends},
                    )
                )
        for value, message_id in self.reported_failed.items():
            sends = self.sink.sends.get(message_id, [])
            if "ok" in sends:
                found["published-reported-failed"].append(
                    Anomaly(
                        "published-reported-failed",
                        f"value {value} was reported failed, but a send of it was answered (sends: {sends})",
                        History(),
                        {"value": value, "sends": sends},
                    )
                )
        counts = {
            "reported-published": len(self.reported_published),
            "reported-failed": len(self.reported_failed),
            **{name: len(group) for name, group in found.items()},
        }
        verdict = Verdict("producer-outcomes", None, dict(found), {}, counts)
        return [*super().extra_verdicts(), verdict]

    def check(self) -> tuple[list, str]:
        self.sink.current = self.settled_queue()  # healed: what the producer still holds goes out
        self.loop(self.producer.stop(within=patience.bound("stall")))
        verdicts, what = super().check()
        return verdicts, f"producer over {what}"


def test_every_publish_reported_published_is_consumed_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: ProducerMachine(run))


def test_a_publish_goes_through_the_producer(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    """Step by step: an enqueue is a producer publish (its metrics count it) and is consumed by
    the end. Fails if the machine bypasses the producer."""
    run = StatefulRun(prism_env, request)
    machine = ProducerMachine(run)
    machine.enqueue()
    machine.enqueue()
    assert machine.producer.metrics.published == 2
    assert machine.published == 2
    machine.teardown()
    assert run.judged == 1
