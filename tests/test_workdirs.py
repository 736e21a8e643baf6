"""Work dirs record their owner, and a new run removes the ones whose owner died."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from prism_testkit.workdirs import OWNER_FILE, UNOWNED_GRACE, make_workdir, sweep_abandoned


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dir_whose_owner_died_is_swept_and_live_ones_stay(tmp_path: Path) -> None:
    mine = make_workdir("run", "gw0", tmp_path)
    assert (mine / OWNER_FILE).read_text() == str(os.getpid())
    orphan = make_workdir("run", "gw1", tmp_path)
    (orphan / "postgres" / "data").mkdir(parents=True)
    (orphan / OWNER_FILE).write_text(str(dead_pid()))
    unrelated = tmp_path / "someone-else"
    unrelated.mkdir()

    assert sweep_abandoned(tmp_path) == [orphan]
    assert not orphan.exists()
    assert mine.exists()
    assert unrelated.exists()


def test_an_unowned_dir_is_swept_only_when_old(tmp_path: Path) -> None:
    fresh = tmp_path / "prism-run-gw0-fresh"
    stale = tmp_path / "prism-run-gw0-stale"
    fresh.mkdir()
    stale.mkdir()
    old = time.time() - UNOWNED_GRACE - 60
    os.utime(stale, (old, old))

    assert sweep_abandoned(tmp_path) == [stale]
    assert fresh.exists()
