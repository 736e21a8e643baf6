"""An orderly restart that became a kill says so: the harness never passes a crash off as an
orderly stop.

``ServerProcess.stop`` escalates to SIGKILL when the server has not ended within its grace (a
server hung in its shutdown, or a machine too loaded for the bound). A test that asked for an
orderly restart (the restart suite's "acknowledged writes survive an orderly restart") would
otherwise judge what a crash leaves as what an orderly stop keeps. Driven on a real Redis
server asked to stop with a signal it ignores, so the grace runs out for real.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit import patience
from prism_testkit.interfaces import Message
from prism_testkit.provision.cluster import Cluster
from prism_testkit.provision.processes import ServerProcess
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of, started_by_harness

BACKEND = "redis-aof"


@pytest.fixture
def runtime(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of(BACKEND, "orderly", prism_binaries)


def test_an_orderly_restart_that_became_a_kill_is_unsettled_and_the_server_runs_again(
    runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, control = started_by_harness(runtime, BACKEND)
    assert isinstance(control, ServerProcess)
    monkeypatch.setattr(control, "stop_signal", signal.SIGWINCH)  # ignored: the stop cannot end in order
    monkeypatch.setitem(patience.BOUNDS, "calm-op", 0.5)  # the stop's grace (x slowness)

    with pytest.raises(patience.Unsettled, match="to stop in order") as raised:
        runtime.run(runtime.restart(BACKEND, kill=False))
    assert "killed instead" in str(raised.value)
    assert control.stopped_in_order is False
    # The verdict is the restart's, not the server's: it runs again and serves.
    driver = runtime.driver(BACKEND)
    runtime.run(driver.queue().send("after-the-restart", Message(b"served")))


def test_an_orderly_restart_that_ended_in_order_is_not_a_verdict(runtime: PrismRuntime) -> None:
    _, control = started_by_harness(runtime, BACKEND)
    assert isinstance(control, ServerProcess)
    driver = runtime.run(runtime.restart(BACKEND, kill=False))
    assert control.stopped_in_order is True
    runtime.run(driver.queue().send("after-the-restart", Message(b"served")))


@pytest.fixture
def cluster_runtime(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("jetstream-r3", "orderly-cluster", prism_binaries)


def test_a_cluster_restart_with_one_node_killed_after_its_grace_is_unsettled(
    cluster_runtime: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, control = started_by_harness(cluster_runtime, "jetstream-r3")
    cluster = cluster_runtime.endpoint("jetstream-r3").cluster
    assert isinstance(cluster, Cluster)
    monkeypatch.setattr(cluster.servers[1], "stop_signal", signal.SIGWINCH)  # node 1 ignores it
    monkeypatch.setitem(patience.BOUNDS, "calm-op", 0.5)

    with pytest.raises(patience.Unsettled, match="to stop in order"):
        cluster_runtime.run(cluster_runtime.restart("jetstream-r3", kill=False))
    assert cluster.servers[1].stopped_in_order is False
    assert control.stopped_in_order is False, "one node killed: the cluster did not stop in order"
