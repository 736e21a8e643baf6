"""Mutant: the harness's file damage reports each file as done and leaves its bytes alone (the
bug of ``damage_changes_no_byte``), met by the snapshot-corruption suite instead.

Loaded with ``-p tests.mutants.snapshot_damage_changes_no_byte``: the suite must fail saying the
damage changed no byte of the minority's snapshot files, never pass (or xfail as nats-server
#7556) as if the snapshots had been damaged.
"""

from __future__ import annotations

from tests.mutants import damage_changes_no_byte  # noqa: F401  (importing it replaces the damage)
