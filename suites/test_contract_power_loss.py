"""Power-loss contract: a backend declared ``survives_power_loss`` keeps every acknowledged write
when the power is cut — the server killed and every write it did not fsync discarded (files, and
the names in directories never fsynced) — and restarted.

Each backend gets a private twin instance whose data dir lies on the harness's lazy filesystem
(:mod:`prism_testkit.faults.lazymount`). Backends durable across a process crash but not declared
to survive power loss run too: what they lose is counted as tolerated (``lost-in-power-cut``),
not failed, so the report shows what the missing fsync costs. Not durable at all: nothing to prove.
FUSE unavailable: the fault cannot be injected, as a backend that cannot be provisioned; the row is
listed under UNAVAILABLE faults with the reason and the install hint and skipped, or fails where
every suite must fit (``prism_require_fit``, ``--prism-pattern=power_loss``). The twin does not
start: the test fails with the reason, never passes.
"""

from __future__ import annotations

import pytest

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.errors import NotSupported

from ._durability import missing_writes, write_everything

pytestmark = prism_suite("power_loss", backend=Slot.one_of("keyvalue", "queue", "log", "objects"))

LOST = "lost-in-power-cut"


async def test_acknowledged_writes_survive_a_power_cut(prism_env: PrismEnv, request: pytest.FixtureRequest) -> None:
    name = prism_env.combination["backend"]
    props = prism_env.spec("backend").properties
    if not props.durable:
        pytest.skip(f"{name}: declared durable neither across a crash nor a power loss")
    try:
        instance = await prism_env.power_loss_instance("backend")
    except NotSupported as exc:  # given by URL: we cannot reach its disk
        pytest.skip(str(exc))
    written = await write_everything(instance.driver, prism_env.ns)
    acknowledged = sum(w.acknowledged for w in written)
    assert acknowledged > 0, f"{name}: nothing was written, so nothing could be lost"
    try:
        after = await instance.cut_power()
        missing = await missing_writes(written, after)
    except Exception as exc:
        if props.survives_power_loss:
            raise
        missing = [f"all {acknowledged}: it did not come back ({type(exc).__name__}: {exc})"] * acknowledged
    discarded = instance.cuts[-1] if instance.cuts else {}
    request.node.user_properties.append(
        ("power_loss", {"backend": name, "acknowledged": acknowledged, "lost": len(missing), "discarded": discarded})
    )
    if not props.survives_power_loss:
        prism_env.tolerated[LOST] += len(missing)
        return
    prism_env.anomalies["lost"] += len(missing)
    assert not missing, (
        f"{name} declares survives_power_loss but lost {len(missing)} of {acknowledged} acknowledged writes "
        f"in a power cut (the cut discarded {discarded}): {missing[:10]}"
    )
