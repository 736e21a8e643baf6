"""Restart contract: clients reconnect after a restart, and a backend declared durable keeps
every acknowledged write across SIGKILL + restart of the server the harness started. (SIGKILL
keeps the page cache; whether the writes were fsynced is the power-loss suite's question.)

Embedded backends and servers given by URL have no process control: for them the reconnect
test closes and reopens the driver, and the kill test is skipped with that reason.

One kill at the end of a workload finds a write saved by luck when the backend acknowledges it
before saving it (a broker that saves on a timer passed that test in 6 of 8 runs). So a durable
backend also meets many kills, each right after an acknowledgement (``prism_testkit/suites/_ack_crash.py``):
the server SIGKILLed as the test's next statement, or an embedded backend's writer process
SIGKILLed while its event loop stands still after answering.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from prism_testkit import Driver, PrismEnv, Slot, prism_suite
from prism_testkit.faults.crash_at_ack import EmbeddedWriter, Write, perform
from prism_testkit.provision.base import Via

from . import _durability as durability
from ._ack_crash import Targets, crash_rounds, interfaces_of, rounds_for
from ._durability import Written, missing_writes
from ._helpers import replay_command

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


async def test_each_acknowledged_write_survives_a_kill_right_after_it(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """Rounds of writes, each round's last acknowledgement followed at once by SIGKILL: of the
    server (its client says no goodbye), or of the process an embedded backend writes from
    (stopped on its pipe, its event loop not turning). Every acknowledged write must read back."""
    name = prism_env.combination["backend"]
    spec = prism_env.spec("backend")
    if not spec.properties.durable:
        pytest.skip(f"{name}: the provisioned instance is declared not durable across restart")
    endpoint = prism_env.runtime.endpoint(name)
    control = prism_env.control("backend")
    if control is None and endpoint.via is not Via.EMBEDDED:
        pytest.skip(f"{name}: no process control (given by URL)")
    targets = Targets(prism_env.ns, interfaces_of(prism_env.driver("backend")))
    await targets.prepare(prism_env.driver("backend"))
    writer = EmbeddedWriter(spec, endpoint, request.config.known_args_namespace.plugins) if control is None else None

    async def crash(writes: Sequence[Write]) -> tuple[Driver, list[int | None]]:
        if writer is not None:
            results = await writer.write_then_crash(writes)  # the writer is dead when it returns
        else:
            assert control is not None
            results = [await perform(prism_env.driver("backend"), w) for w in writes]
            control.kill()  # the next statement after the last acknowledgement
        return await prism_env.restart("backend", kill=True), results

    found = await crash_rounds(targets, crash, rounds_for(endpoint))
    prism_env.anomalies["lost"] += sum(len(lost) for lost in found.lost)
    assert not found.rounds_lost, (
        f"{name} declares durable but {found.verdict()}\nreplay: {replay_command(__name__, name, 'right_after')}"
    )
