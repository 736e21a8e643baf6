"""The NATS driver's key-value reads (direct gets) when the bucket's stream is not there.

A direct get from a missing stream has no one to answer it: nats-server 2.10+ says "no
responders", 2.9 (Debian's: ``--prism-binary nats=/usr/sbin/nats-server``) stays silent until the
request times out. Either way a read of a key whose stream another client deleted is "absent",
not a lost connection, and a write afterwards creates the stream again. Each backend here runs
its own private server, so deleting the shared bucket touches no other test.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.backends.nats.messaging import KV_BUCKET
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of

KV_STREAM = f"KV_{KV_BUCKET}"  # the stream behind the driver's key-value bucket


@pytest.fixture(params=["nats", "jetstream"])
def runtime(request: pytest.FixtureRequest, prism_binaries: Mapping[str, Path]) -> Iterator[tuple[PrismRuntime, str]]:
    for made in runtime_of(request.param, "direct", prism_binaries):
        yield made, request.param


async def delete_behind_its_back(url: str, stream: str) -> None:
    import nats

    other = await nats.connect(url)
    try:
        await other.request(f"$JS.API.STREAM.DELETE.{stream}", b"", timeout=5)
    finally:
        await other.close()


def test_a_key_whose_stream_another_client_deleted_reads_as_absent(runtime: tuple[PrismRuntime, str]) -> None:
    rt, name = runtime
    driver = rt.driver(name)
    kv = driver.keyvalue()

    async def scenario() -> tuple[bytes | None, bytes | None, bytes | None, bytes | None]:
        missing_bucket = await kv.get("never-written")  # before the stream exists at all
        await kv.put("k", b"v1")
        first = await kv.get("k")  # the stream is known now: a direct get
        await delete_behind_its_back(rt.endpoint(name).url, KV_STREAM)
        gone = await kv.get("k")
        await kv.put("k", b"v2")  # the stream is created again
        return missing_bucket, first, gone, await kv.get("k")

    assert rt.run(scenario()) == (None, b"v1", None, b"v2")


def test_a_deleted_key_reads_as_absent_by_direct_get(runtime: tuple[PrismRuntime, str]) -> None:
    rt, name = runtime
    kv = rt.driver(name).keyvalue()

    async def scenario() -> tuple[bytes | None, bool, bytes | None, bool]:
        await kv.put("k", b"v")
        seen = await kv.get("k")
        deleted = await kv.delete("k")
        return seen, deleted, await kv.get("k"), await kv.exists("k")

    assert rt.run(scenario()) == (b"v", True, None, False)
