"""A bucket deleted on a JetStream cluster is gone for whoever lists next.

The meta leader answers a stream's deletion before every node has applied it, so a listing
right after may still name the stream: the main job's tiered-storage row on `jetstream-r3`
found its deleted cold bucket as a leftover (2026-11-24, under load). The driver's deletion
returns once no listing names it. The lag is made here by a listing that still names the
stream three times after its deletion, so the test fails whenever a deletion does not wait.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.backends.nats.driver import NatsDriver
from prism_testkit.backends.nats.objects import OBJ_STREAM
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of

LAGGING_LISTINGS = 3


@pytest.fixture(scope="module")
def cluster(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("jetstream-r3", "deletion", prism_binaries)


def test_a_deleted_bucket_is_not_listed_once_its_deletion_returns(
    cluster: PrismRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not cluster.availability["jetstream-r3"].available:
        pytest.fail(f"jetstream-r3 cannot be provisioned here: {cluster.availability['jetstream-r3'].detail}")
    driver = cluster.driver("jetstream-r3")
    assert isinstance(driver, NatsDriver)
    ns = cluster.namespaces.new()
    bucket = ns.name("cold")
    js = driver.jetstream  # the driver's JetStream client: its deletions list streams
    real_names = js.stream_names
    lagging: list[str] = []

    async def names_that_lag() -> list[str]:
        names = await real_names()
        if lagging:
            return [*names, lagging.pop()]  # a node that has not applied the deletion yet
        return names

    async def scenario() -> list[str]:
        objects = driver.objects()
        await objects.create_bucket(bucket)
        (stream,) = [s for s in await js.stream_names() if s.startswith(OBJ_STREAM)]  # the module's only bucket
        monkeypatch.setattr(js, "stream_names", names_that_lag)
        lagging.extend([stream] * LAGGING_LISTINGS)
        await objects.delete_bucket(bucket)
        return await driver.leftovers(ns.prefix)

    assert cluster.run(scenario()) == []
    assert not lagging, "the deletion returned while a listing still named the stream"
