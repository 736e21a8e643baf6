"""prism_testkit.stateful.client and .nemesis without servers: how client errors are recorded before
and after a fault, abandoned operations settled late, and the faults offered as Hypothesis rules."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from hypothesis.stateful import RULE_MARKER

from prism_testkit import patience
from prism_testkit.stateful.client import RecordedClient
from prism_testkit.stateful.history import History, OpType
from prism_testkit.stateful.machine import FaultMachine


class Faults:
    """Stands in for the nemesis: whether a fault was injected."""

    def __init__(self) -> None:
        self.injected = False


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def recorded(loop: asyncio.AbstractEventLoop, faults: Faults) -> RecordedClient:
    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return loop.run_until_complete(coro)

    return RecordedClient(History(), run, lambda: faults.injected)


async def broken() -> None:
    raise ConnectionError("reset by peer")


def types(client: RecordedClient) -> list[OpType]:
    return [op.type for op in client.history]


def test_an_error_before_any_fault_is_a_bug_and_propagates(loop: asyncio.AbstractEventLoop) -> None:
    client = recorded(loop, Faults())
    with pytest.raises(ConnectionError):
        client.attempt("p", "enqueue", broken)
    assert types(client) == [OpType.INVOKE, OpType.INFO]


def test_an_error_after_a_fault_is_an_unknown_outcome(loop: asyncio.AbstractEventLoop) -> None:
    faults = Faults()
    faults.injected = True
    client = recorded(loop, faults)
    outcome = client.attempt("p", "enqueue", broken)
    assert not outcome.completed
    assert isinstance(outcome.error, ConnectionError)
    assert types(client) == [OpType.INVOKE, OpType.INFO]


def test_a_definite_failure_is_recorded_as_fail_even_before_a_fault(loop: asyncio.AbstractEventLoop) -> None:
    async def refused() -> None:
        raise ValueError("payload over the limit")

    client = recorded(loop, Faults())
    outcome = client.attempt("p", "enqueue", refused)
    assert isinstance(outcome.error, ValueError)
    assert types(client) == [OpType.INVOKE, OpType.FAIL]


def test_an_operation_past_its_bound_is_abandoned_and_settled_late(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(patience.BOUNDS, "faulted-op", 0.05)
    monkeypatch.setenv("PRISM_SLOWNESS", "1")  # the bound as set, whatever the machine's load (else x up to 8)
    faults = Faults()
    faults.injected = True
    client = recorded(loop, faults)
    late: list[Any] = []

    async def slow() -> str:
        await asyncio.sleep(0.2)
        return "answered"

    outcome = client.attempt("p", "dequeue", slow, on_late=late.append)
    assert isinstance(outcome.error, TimeoutError)
    assert types(client) == [OpType.INVOKE, OpType.INFO]
    assert late == []
    loop.run_until_complete(client.settle_strays())
    assert late == ["answered"]
    assert client.strays == []


def test_every_fault_is_a_hypothesis_rule_of_the_base_machine() -> None:
    # Rules, not setup steps: the shrinker can drop each fault a failure does not need.
    # Hypothesis finds rules the same way: members of the class that carry its rule marker.
    names = {name for name, member in inspect.getmembers(FaultMachine) if hasattr(member, RULE_MARKER)}
    assert {"kill_and_restart", "pause", "resume", "latency", "reset_connections", "partition", "heal"} <= names
