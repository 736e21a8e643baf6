"""A proxied driver the harness closed to reconnect it is never handed out again.

After faults on a backend's proxy, :meth:`PrismRuntime.heal` closes the proxied driver and
connects a new one. When that connect failed (under load, in a main job), the closed driver
stayed the runtime's proxied driver, and the next example's first operation met "this Redis
driver was closed" with no fault injected in it: a red blamed on the backend for an error of the
harness's own making (the heal's failure itself was lost behind Hypothesis's FlakyStrategyDefinition).
Driven here by a connect that fails once, on a real server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from prism_testkit import patience
from prism_testkit.driver import Driver
from prism_testkit.errors import ProvisioningError
from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.interfaces import Message
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of

BACKEND = "redis-aof"


@pytest.fixture
def runtime(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of(BACKEND, "reconnect", prism_binaries)


@dataclass
class Refusals:
    """The backend's connects refused while ``refusing``; ``count`` of those refused."""

    refusing: bool = True
    count: int = 0


def refused_connects(runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch, *, first: int | None = None) -> Refusals:
    """Refuse the backend driver class's connects (only the ``first`` ones, when given), with
    the reconnect's recovery bound shortened so a refused heal gives up in a moment."""
    monkeypatch.setitem(patience.BOUNDS, "recovery", 0.3)
    driver_class = runtime.registry[BACKEND].driver_class
    connect = driver_class.connect
    refusals = Refusals()

    async def flaky(name: str, capabilities: Any, endpoint: Any) -> Any:
        if refusals.refusing and (first is None or refusals.count < first):
            refusals.count += 1
            raise ProvisioningError(f"backend {name!r}: connect refused (injected by the test)")
        return await connect(name, capabilities, endpoint)

    monkeypatch.setattr(driver_class, "connect", flaky)
    return refusals


def faulted(runtime: PrismRuntime) -> tuple[Driver, FaultProxy]:
    """The proxied driver and its proxy, after a fault on the proxy (the heal must reconnect)."""
    if not runtime.availability[BACKEND].available:
        pytest.fail(f"{BACKEND} cannot be provisioned here: {runtime.availability[BACKEND].detail}")
    driver, proxy = runtime.run(runtime.proxied(BACKEND))
    proxy.reset()
    return driver, proxy


def send_through(runtime: PrismRuntime, queue: str) -> None:
    driver, _ = runtime.run(runtime.proxied(BACKEND))
    runtime.run(driver.queue().send(queue, Message(b"after the heal")))


def test_a_reconnect_refused_for_a_moment_is_tried_again_within_the_recovery_bound(
    runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main job's case: one attempt ran out under load (redis-py's own 5 s connect timeout),
    and the heal's error failed an example no fault had touched."""
    before, _ = faulted(runtime)
    refusals = refused_connects(runtime, monkeypatch, first=2)
    runtime.heal([BACKEND])
    assert refusals.count == 2
    after, _ = runtime.run(runtime.proxied(BACKEND))
    assert after is not before
    send_through(runtime, runtime.namespaces.new().name("q"))


def test_after_a_reconnect_failed_at_the_heal_the_next_example_gets_an_open_driver(
    runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, _ = faulted(runtime)
    refusals = refused_connects(runtime, monkeypatch)
    with pytest.raises(ProvisioningError, match="injected by the test"):
        runtime.heal([BACKEND])  # the old driver is closed, its successor does not connect
    assert refusals.count >= 1
    refusals.refusing = False

    after, _ = runtime.run(runtime.proxied(BACKEND))  # what the next example's client() asks
    assert after is not before, "the driver the heal closed was handed out again"
    send_through(runtime, runtime.namespaces.new().name("q"))  # no fault in force: it must work
    runtime.heal([BACKEND])  # nothing left to reconnect
    assert runtime.run(runtime.proxied(BACKEND))[0] is after


def test_while_the_backend_cannot_be_connected_the_error_says_so_not_a_closed_driver(
    runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, _ = faulted(runtime)
    refusals = refused_connects(runtime, monkeypatch)
    with pytest.raises(ProvisioningError, match="injected by the test"):
        runtime.heal([BACKEND])
    # Asked for again while the backend still cannot be connected: the connect's error, never
    # the closed driver (an operation on it would read as the backend's lost connection).
    with pytest.raises(ProvisioningError, match="injected by the test"):
        runtime.run(runtime.proxied(BACKEND))
    refusals.refusing = False
    assert runtime.run(runtime.proxied(BACKEND))[0] is not before


def test_a_heal_after_a_failed_reconnect_connects_without_closing_anything_else(
    runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, _ = faulted(runtime)
    refusals = refused_connects(runtime, monkeypatch)
    with pytest.raises(ProvisioningError):
        runtime.heal([BACKEND])
    refusals.refusing = False

    runtime.heal([BACKEND])  # the next test's (or example's) heal opens the successor
    after, _ = runtime.run(runtime.proxied(BACKEND))
    assert after is not before
    send_through(runtime, runtime.namespaces.new().name("q"))
