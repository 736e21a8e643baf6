"""Power-loss contract: a backend declared ``survives_power_loss`` keeps every acknowledged write
when the power is cut — the server killed and every write it did not fsync discarded (files, and
the names in directories never fsynced) — and restarted.

Each backend gets a private twin instance whose data dir lies on the harness's lazy filesystem
(:mod:`prism_testkit.provision.lazymount`). Backends durable across a process crash but not declared
to survive power loss run too: what they lose is counted as tolerated (``lost-in-power-cut``),
not failed, so the report shows what the missing fsync costs. Not durable at all: nothing to prove.
FUSE unavailable: the fault cannot be injected, as a backend that cannot be provisioned; the row is
listed under UNAVAILABLE faults with the reason and the install hint and skipped, or fails where
every suite must fit (``prism_require_fit``, ``--prism-pattern=power_loss``). The twin does not
start: the test fails with the reason, never passes.

Beyond the clean cut, each backend meets the lazy filesystem's storage faults
(:data:`prism_testkit.faults.power_loss.SUITE_FAULTS`, seeded so a row replays): a torn write,
unsynced writes persisted as a non-prefix subset, and a crash just before or after a chosen
fsync or write, after which every call fails as on a dead machine. Writes the crash interrupts
are not acknowledged; every write acknowledged before must survive, and the server must come
back (``refused to start`` is its own outcome, failed where power loss is claimed). The fault's
detail (which file, which writes kept, where the crash hit) goes to the report with the row.

A backend that fsyncs on a timer, or acknowledges before it fsyncs, keeps a write a cut at the
end of a workload comes late for. So a backend declared to survive power loss (or to fsync every
acknowledged write's data first) also meets many cuts, each right after an acknowledgement
(``prism_testkit/suites/_ack_crash.py``): the server SIGKILLed as the test's next statement, or an embedded
backend's writer process killed while its event loop stands still after answering, and then
every unsynced write dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from prism_testkit import Driver, PrismEnv, Slot, findings, prism_suite
from prism_testkit.errors import NotSupported
from prism_testkit.faults.crash_at_ack import EmbeddedWriter, Write, perform
from prism_testkit.faults.power_loss import SUITE_FAULTS, PowerLossInstance

from ._ack_crash import Targets, crash_rounds, interfaces_of, rounds_for
from ._durability import missing_writes, write_everything
from ._helpers import replay_command

pytestmark = prism_suite("power_loss", backend=Slot.one_of("keyvalue", "queue", "log", "objects"))


async def durable_instance(prism_env: PrismEnv) -> PowerLossInstance:
    """The backend's instance on a lazy filesystem; a skip for one declared durable neither
    across a crash nor a power loss, or given by URL (its disk is out of reach)."""
    name = prism_env.combination["backend"]
    if not prism_env.spec("backend").properties.durable:
        pytest.skip(f"{name}: declared durable neither across a crash nor a power loss")
    try:
        return await prism_env.power_loss_instance("backend")
    except NotSupported as exc:
        pytest.skip(str(exc))


LOST = "lost-in-power-cut"


@pytest.mark.parametrize("fault_name", list(SUITE_FAULTS))
async def test_acknowledged_writes_survive_a_power_cut(
    prism_env: PrismEnv, request: pytest.FixtureRequest, fault_name: str
) -> None:
    fault = SUITE_FAULTS[fault_name]
    name = prism_env.combination["backend"]
    props = prism_env.spec("backend").properties
    instance = await durable_instance(prism_env)
    crash = fault.kind == "crash"
    if crash:
        await instance.arm(fault)
    written = await write_everything(instance.driver, prism_env.ns, until_error=crash)
    acknowledged = sum(w.acknowledged for w in written)
    stopped = next((w.error for w in written if w.error), "")
    if not crash:
        assert acknowledged > 0, f"{name}: nothing was written, so nothing could be lost"
    outcome, refused = "survived", ""
    try:
        after = await instance.cut_power(None if crash else fault)
    except Exception as exc:
        refused = f"{type(exc).__name__}: {exc}"[-1500:]  # a start-up error ends with the server log's tail
        outcome, missing = "refused to start", [f"all {acknowledged}: it did not come back ({refused})"] * acknowledged
    else:
        missing = await missing_writes(written, after)
        if missing:
            outcome = "lost"
    detail = instance.faults[-1] if instance.faults else {}
    discarded = instance.cuts[-1] if instance.cuts else {}
    replay = replay_command(__name__, name, fault_name)
    request.node.user_properties.append(
        (
            "power_loss",
            {
                "backend": name,
                "fault": fault_name,
                "outcome": outcome,
                "acknowledged": acknowledged,
                "lost": len(missing),
                "discarded": discarded,
                "detail": detail,
                "stopped_by": stopped,
                "replay": replay,
            },
        )
    )
    if not props.survives_power_loss:
        prism_env.tolerated[LOST] += len(missing)
        return
    assert not refused, (
        f"{name} declares survives_power_loss but did not come back after a {fault.describe()} power cut "
        f"({detail}): {refused}\nreplay: {replay}"
    )
    prism_env.anomalies["lost"] += len(missing)
    assert not missing, (
        f"{name} declares survives_power_loss but lost {len(missing)} of {acknowledged} acknowledged writes "
        f"in a {fault.describe()} power cut (the cut discarded {discarded}; {detail}): {missing[:10]}\nreplay: {replay}"
    )


WINDOW = findings.FSYNC_WINDOW


async def test_acknowledged_writes_to_established_data_survive_a_power_cut(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """A clean power cut of data the disk already held (Jepsen's NATS #7564 on an established
    stream, not only a fresh one): a first round of writes creates every stream, bucket, queue
    and key; the lazy filesystem then writes everything back, as the kernel does on its own
    seconds later, so every directory and file is on disk; a second round into the same ones is
    acknowledged and the power is cut. What the second round lost is judged by what the server
    documents: a backend that survives power loss, or that fsyncs every write before
    acknowledging it (``fsyncs_before_ack``: JetStream's ``sync_interval: always``), may lose
    nothing (a loss is red, or the known finding that covers it); one that syncs on an interval
    loses what that documented window held, tolerated as ``lost-in-fsync-window``."""
    name = prism_env.combination["backend"]
    props = prism_env.spec("backend").properties
    instance = await durable_instance(prism_env)
    await write_everything(instance.driver, prism_env.ns)
    made = await instance.write_back()
    written = await write_everything(instance.driver, prism_env.ns, again="+again")
    acknowledged = sum(w.acknowledged for w in written)
    assert acknowledged > 0, f"{name}: nothing was written after the write-back, so nothing could be lost"
    replay = replay_command(__name__, name, "established")
    try:
        after = await instance.cut_power(None)
    except Exception as exc:
        refused = f"{type(exc).__name__}: {exc}"[-1500:]
        pytest.fail(
            f"{name} did not come back after a clean power cut of established data: {refused}\nreplay: {replay}"
        )
    missing = await missing_writes(written, after)
    discarded = instance.cuts[-1] if instance.cuts else {}
    request.node.user_properties.append(
        (
            "power_loss",
            {
                "backend": name,
                "fault": "established",
                "outcome": "lost" if missing else "survived",
                "acknowledged": acknowledged,
                "lost": len(missing),
                "discarded": discarded,
                "detail": {"written_back": made},
                "stopped_by": "",
                "replay": replay,
            },
        )
    )
    window = None if props.survives_power_loss or props.fsyncs_before_ack else WINDOW
    if window is not None:
        prism_env.tolerated[window] += len(missing)  # the server's documented fsync interval
    findings.judge(
        request,
        scenario="established-power-cut",
        backend=name,
        version=after.server_version,
        lost=len(missing),
        acknowledged=acknowledged,
        detail=f"the cut discarded {discarded} after {made} was written back; missing: {missing[:10]}",
        replay=replay,
        tolerated=window,
    )


async def test_each_acknowledged_write_survives_a_power_cut_right_after_it(
    prism_env: PrismEnv, request: pytest.FixtureRequest
) -> None:
    """Rounds of writes, each round's last acknowledgement followed at once by a power cut: the
    server (or an embedded backend's writer process) SIGKILLed as the next statement, every
    unsynced write dropped, the instance started again. Held to what the backend declares: one
    that survives power loss keeps every acknowledged write; one that fsyncs each write's data
    before acknowledging it (``fsyncs_before_ack``, whose new names may not be durable yet)
    keeps every write into a queue, log, bucket and key space the disk already held: before each
    of its rounds the lazy filesystem writes back what the server made so far (the targets, and
    the files a restart creates), as the kernel would seconds later."""
    name = prism_env.combination["backend"]
    props = prism_env.spec("backend").properties
    if not (props.survives_power_loss or props.fsyncs_before_ack):
        pytest.skip(
            f"{name}: declares neither survives_power_loss nor fsyncs_before_ack "
            "(what a power cut takes from it is counted, as tolerated, by the tests above)"
        )
    instance = await durable_instance(prism_env)
    targets = Targets(prism_env.ns, interfaces_of(instance.driver))
    await targets.prepare(instance.driver)
    control = instance.endpoint.control
    plugins = request.config.known_args_namespace.plugins
    writer = EmbeddedWriter(instance.spec, instance.endpoint, plugins) if control is None else None

    async def crash(writes: Sequence[Write]) -> tuple[Driver, list[int | None]]:
        if not props.survives_power_loss:
            # its promise covers data, not new names: what the server made so far (the targets,
            # and whatever files its restart created) is on disk, as the kernel's writeback leaves it
            await instance.write_back()
        if writer is not None:
            results = await writer.write_then_crash(writes)  # the writer is dead when it returns
        else:
            assert control is not None
            results = [await perform(instance.driver, w) for w in writes]
            control.kill()  # the next statement after the last acknowledgement
        return await instance.cut_power(None), results

    found = await crash_rounds(targets, crash, rounds_for(instance.endpoint))
    prism_env.anomalies["lost"] += sum(len(lost) for lost in found.lost)
    claim = "survives_power_loss" if props.survives_power_loss else "fsyncs_before_ack"
    assert not found.rounds_lost, (
        f"{name} declares {claim} but {found.verdict()}; the last cut discarded "
        f"{instance.cuts[-1] if instance.cuts else {}}\n"
        f"replay: {replay_command(__name__, name, 'right_after')}"
    )
