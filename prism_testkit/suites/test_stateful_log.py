"""The log under faults: appends, two consumers polling from their own positions, group offset
commits, consumers restarting from their committed offset, and a nemesis.

Each consumer records its polls as ``(offset, value)`` records and a restart as a ``seek`` to
the offset its group committed, so a backend that hands back a wrong group offset shows up as
a ``poll-skip`` (or ``nonmonotonic-poll``), and one that loses or rewrites records as
``lost-write`` / ``inconsistent-offsets``. At the end every fault is healed, the log is read
from offset 0 to its end and Jepsen's log checker judges the whole history.

The faults its guarantee speaks of, and the rules that inject them:

- a consumer crash: it restarts from its group's committed offset (``restart_consumer``),
  whatever it polled after its last ``commit``;
- a slow consumer: each consumer polls at its own pace (``poll`` picks one), so one may lag
  the other and the end of the log by any number of records;
- a server kill (or power cut, on a lazy mount) or pause of the log's server (``kill_and_restart``,
  ``pause`` / ``resume``, from :class:`~prism_testkit.stateful.nemesis.NemesisRules`, where the
  backend is a durable server the harness controls);
- proxy faults on its connections (``latency``, ``reset_connections``, ``partition``, ``heal``, where
  the backend is networked): operations of unknown outcome;

Not injected: a clock jump (no part of the log's guarantee reads a clock), and a target write
failure or a lost copy (a log has no second store).
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from prism_testkit import Log, Message, PrismEnv, Slot, prism_suite
from prism_testkit.interfaces import Record
from prism_testkit.stateful.checkers import Verdict, log_anomalies
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

pytestmark = prism_suite("stateful_log", backend=Slot.needs("log"))

CONSUMERS = 2
POLL_LIMIT = 4  # small batches: more polls, more chances to skip
POLL_WAIT = 0.1  # s


def encode(value: int) -> Message:
    return Message(str(value).encode(), {"stateful": "log"})


def records(found: list[Record]) -> tuple[tuple[int, int], ...]:
    return tuple((record.offset, int(record.message.payload)) for record in found)


class LogMachine(FaultMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, ["backend"])
        self.name = self.ns.name("log")
        self.next_value = 0
        self.position = [0] * CONSUMERS  # next offset each consumer reads

    def log(self) -> Log:
        return self.client("backend").log()

    def group(self, consumer: int) -> str:
        return self.ns.name(f"group-{consumer}")

    @rule()
    def append(self) -> None:
        value, self.next_value = self.next_value, self.next_value + 1
        outcome = self.attempt(
            "producer", "append", lambda: self.log().append(self.name, encode(value)), key=self.name, value=value
        )
        if outcome.completed:
            outcome.handle.ok(offset=outcome.result)

    @rule(consumer=st.integers(0, CONSUMERS - 1))
    def poll(self, consumer: int) -> None:
        start = self.position[consumer]
        outcome = self.attempt(
            f"consumer-{consumer}",
            "poll",
            lambda: self.log().read(self.name, start, limit=POLL_LIMIT, wait=POLL_WAIT),
            key=self.name,
            offset=start,
        )
        if not outcome.completed:
            return  # position unknown to the checker; we read from the same place again
        found = records(outcome.result or [])
        outcome.handle.ok(value=found)
        if found:
            self.position[consumer] = found[-1][0] + 1

    @rule(consumer=st.integers(0, CONSUMERS - 1))
    def commit(self, consumer: int) -> None:
        position = self.position[consumer]
        outcome = self.attempt(
            f"consumer-{consumer}",
            "commit",
            lambda: self.log().commit(self.name, self.group(consumer), position),
            key=self.name,
            offset=position,
        )
        if outcome.completed:
            outcome.handle.ok()

    @rule(consumer=st.integers(0, CONSUMERS - 1))
    def restart_consumer(self, consumer: int) -> None:
        """The consumer restarts and resumes from its group's committed offset."""
        outcome = self.attempt(
            f"consumer-{consumer}",
            "seek",
            lambda: self.log().committed(self.name, self.group(consumer)),
            key=self.name,
        )
        if outcome.completed:
            resumed = outcome.result or 0
            outcome.handle.ok(offset=resumed)
            self.position[consumer] = resumed

    def check(self) -> tuple[list[Verdict], str]:
        found = self.recovering(self._read_all)
        self.history.invoke("reader", "drain", self.name, offset=0).ok(value=found)
        # The suite never retries an append; a backend whose client library does declares it.
        guarantee = self.env.spec("backend").properties.log_delivery
        return [log_anomalies(self.history, guarantee)], f"log {self.name} ({guarantee})"

    async def _read_all(self) -> tuple[tuple[int, int], ...]:
        log = self.env.driver("backend").log()
        end = await log.end_offset(self.name)
        found: list[Record] = []
        while not found or found[-1].offset + 1 < end:
            batch = await log.read(self.name, found[-1].offset + 1 if found else 0, limit=100)
            if not batch:
                break  # end_offset promised more than read gives: the checker sees what is there
            found += batch
        return records(found)


def test_log_keeps_every_acknowledged_append_in_order_under_faults(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: LogMachine(run))


def test_a_consumer_restart_resumes_from_its_committed_offset(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """``restart_consumer``, step by step: a consumer polls past its group's committed offset
    and restarts, so it must read from the committed offset again. Fails if the restart does
    not move the consumer back."""
    run = StatefulRun(prism_env, request)
    machine = LogMachine(run)
    for _ in range(3):
        machine.append()
    machine.poll(0)
    machine.commit(0)
    committed = machine.position[0]
    assert committed > 0, "the consumer read nothing"
    machine.append()
    machine.poll(0)
    assert machine.position[0] > committed, "the consumer read nothing past its commit"
    machine.restart_consumer(0)
    assert machine.position[0] == committed, "the restart did not resume from the committed offset"
    machine.poll(0)
    machine.teardown()
    assert run.judged == 1
