"""A snapshot chunk read after its low watermark sees every change the stream orders before it.

PostgreSQL writes a transaction's commit record before the transaction becomes visible (with
synchronous replication, only after the standby acknowledged it). A low mark committed in that
window comes after the transaction in the stream, yet a chunk read right after the mark does
not see it: the chunk would publish the row's older value at the high mark, after the change,
and the replica would keep it (seen once in CI as a stale row under load). Here the window is
held open on purpose: the server waits for a synchronous standby that does not exist, so the
writer's commit record is written and the writer waits, invisible, until the test lets it go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncpg
import pytest

from prism_testkit.interfaces import Message
from prism_testkit.patterns.cdc import CdcConfig, CdcConnector, Replica
from prism_testkit.runtime import PrismRuntime
from tests.conftest import runtime_of

RELOAD_POLLS = 500  # of 10 ms
HELD = 0.5  # seconds the writer stays committed-but-invisible while the connector snapshots


@pytest.fixture
def postgres(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("postgres", "watermark", prism_binaries)


class Collected:
    """The sink: what the connector published, in order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def publish(self, topic: str, message: Message) -> None:
        self.messages.append(message)


async def hold_commits(admin: asyncpg.Connection, held: bool, writer: asyncpg.Connection | None = None) -> None:
    """Make commits that ask for synchronous replication wait for a standby that never comes
    (their commit records written, they stay invisible), or let them all go. With ``writer``:
    return once that session has reloaded the setting (a reload is signalled, not awaited)."""
    if held:
        await admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    else:
        await admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
    await admin.execute("SELECT pg_reload_conf()")
    for _ in range(RELOAD_POLLS):
        if writer is None or (await writer.fetchval("SHOW synchronous_standby_names") == "nobody") == held:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer's session never reloaded synchronous_standby_names")


def test_a_chunk_read_after_the_low_mark_sees_a_commit_ordered_before_it(postgres: PrismRuntime) -> None:
    availability = postgres.availability["postgres"]
    if not availability.available:
        pytest.fail(f"postgres cannot be provisioned here: {availability.detail}")
    url = postgres.endpoint("postgres").url
    key = postgres.namespaces.new().name("orders/1")

    async def commit_locally(default: bool) -> None:
        """Make the database's sessions commit without waiting for a standby (or as before)."""
        admin = await asyncpg.connect(url)
        database = await admin.fetchval("SELECT quote_ident(current_database())")
        setting = "SET synchronous_commit = local" if default else "RESET synchronous_commit"
        await admin.execute(f"ALTER DATABASE {database} {setting}")
        await admin.close()

    # Only the writer's commits wait: the driver's sessions, opened after this, commit locally.
    postgres.run(commit_locally(True))
    driver = postgres.driver("postgres")

    async def scenario() -> tuple[bytes | None, bool]:
        admin = await asyncpg.connect(url)
        writer = await asyncpg.connect(url, server_settings={"synchronous_commit": "on"})
        kv = driver.keyvalue()
        await kv.put(key, b"old")
        published = Collected()
        prefix = key.rsplit("orders/", 1)[0]
        config = CdcConfig(capture=f"{prefix}capture", prefix=prefix, snapshot="initial", poll_interval=0.02)
        connector = CdcConnector(driver.changefeed(), kv, published, config)
        await connector.start()
        await hold_commits(admin, True, writer)
        try:
            update = asyncio.ensure_future(
                writer.execute("UPDATE prism.kv SET value = 'new'::bytea WHERE key = $1", key)
            )
            await asyncio.sleep(HELD / 5)
            assert not update.done(), "the writer's commit was not held: the test holds no window open"
            snapshot = asyncio.ensure_future(connector.drain())
            await asyncio.sleep(HELD)
            waited = not snapshot.done()
        finally:
            await hold_commits(admin, False)
        await update
        await snapshot
        await connector.drop()
        for connection in (writer, admin):
            await connection.close()
        replica = Replica()
        for message in published.messages:
            replica.apply(message)
        return replica.rows.get(key), waited

    try:
        value, waited = postgres.run(scenario())
    finally:
        postgres.run(commit_locally(False))
    assert value == b"new", f"the replica kept {value!r}: the chunk read missed a commit ordered before its low mark"
    assert waited, "the snapshot finished while a commit ordered before its low mark was still invisible"
