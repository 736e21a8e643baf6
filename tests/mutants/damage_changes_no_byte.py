"""Mutant: the harness's file damage (bit flips, truncation) reports each file as done and
leaves its bytes alone, so a scenario meant to run on damaged data runs on intact data.

Loaded with ``-p tests.mutants.damage_changes_no_byte``: the damaged-leader suite must fail
saying the damage changed no byte, never pass (or xfail) as if the damage had been there.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from prism_testkit.provision import cluster


def _untouched(paths: Sequence[Path], home: Path, *, mode: str, flips: int, rng: random.Random) -> list[str]:
    return [f"{path.relative_to(home)}: {mode} (the bug: nothing written)" for path in paths]


cluster.damage = _untouched
