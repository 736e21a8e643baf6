"""Mutant: a lazy filesystem's power cut answers as if it had cut and leaves every unsynced
write in place, so a node's OS crash is a mere process crash.

Loaded with ``-p tests.mutants.lazy_cut_drops_nothing``: the node-power-cut suite must fail
saying the cut did not take, never pass (or count a tolerated loss) as if it had.
"""

from __future__ import annotations

from prism_testkit.provision import lazymount


def _kept(self: lazymount.LazyMount, fault: lazymount.StorageFault | None = None) -> dict[str, int]:
    return {"unsynced_files": 0, "unsynced_bytes": 0, "open_handles": 0}


lazymount.LazyMount.power_cut = _kept  # type: ignore[method-assign]
