"""Restart contract: clients reconnect after a restart, and a backend declared durable keeps
every acknowledged write across SIGKILL + restart of the server the harness started. (SIGKILL
keeps the page cache; whether the writes were fsynced is the power-loss suite's question.)

Embedded backends and servers given by URL have no process control: for them the reconnect
test closes and reopens the driver, and the kill test is skipped with that reason.
"""

from __future__ import annotations

import pytest

from prism_testkit import Driver, PrismEnv, Slot, prism_suite

from . import _durability as durability
from ._durability import Written, missing_writes

pytestmark = prism_suite("restart", backend=Slot.one_of("keyvalue", "queue", "log", "objects"))


async def write_everything(env: PrismEnv) -> list[Written]:
    return await durability.write_everything(env.driver("backend"), env.ns)


async def assert_kept(written: list[Written], after: Driver) -> None:
    missing = await missing_writes(written, after)
    acknowledged = sum(w.acknowledged for w in written)
    assert not missing, f"lost {len(missing)} of {acknowledged} acknowledged writes: {missing[:10]}"


async def test_clients_reconnect_after_an_orderly_restart(prism_env: PrismEnv) -> None:
    written = await write_everything(prism_env)
    after = await prism_env.restart("backend", kill=False)
    if prism_env.control("backend") is None or prism_env.spec("backend").properties.durable:
        await assert_kept(written, after)
    # whatever survived, the reconnected client must work
    assert await write_everything(prism_env)


async def test_acknowledged_writes_survive_kill_and_restart(prism_env: PrismEnv) -> None:
    name = prism_env.combination["backend"]
    if prism_env.control("backend") is None:
        pytest.skip(f"{name}: no process control (embedded, or given by URL)")
    if not prism_env.spec("backend").properties.durable:
        pytest.skip(f"{name}: the provisioned instance is declared not durable across restart")
    written = await write_everything(prism_env)
    after = await prism_env.restart("backend", kill=True)
    await assert_kept(written, after)


async def test_a_non_durable_backend_works_again_after_a_kill(prism_env: PrismEnv) -> None:
    name = prism_env.combination["backend"]
    if prism_env.control("backend") is None:
        pytest.skip(f"{name}: no process control (embedded, or given by URL)")
    await write_everything(prism_env)
    after = await prism_env.restart("backend", kill=True)
    assert after is prism_env.driver("backend")
    assert await write_everything(prism_env)
