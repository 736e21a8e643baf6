"""Each pytest process's private temp dir (server data dirs, logs, embedded stores), and the
sweep of dirs left by processes that died without cleaning up.

A process normally removes its dir when it closes its runtime. A worker killed by a signal
(SIGTERM, SIGKILL, an OOM kill, a crashed xdist worker) cannot, and its servers die with it
(parent-death signal) but their data stays. So every dir records its owner's pid, and each new
run removes the dirs whose owner is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "prism-"
OWNER_FILE = "owner.pid"
# A dir without an owner file (its process died between creating it and writing the file, or
# an older version made it) is swept only once it is clearly not being set up right now.
UNOWNED_GRACE = 3600.0


def make_workdir(run: str, worker: str, root: Path | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{run}-{worker}-", dir=root))
    (path / OWNER_FILE).write_text(str(os.getpid()))
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _abandoned(path: Path, now: float) -> bool:
    try:
        pid = int((path / OWNER_FILE).read_text())
    except FileNotFoundError:
        return now - path.stat().st_mtime > UNOWNED_GRACE
    except ValueError:
        return True
    return pid != os.getpid() and not _alive(pid)


def sweep_abandoned(root: Path | None = None) -> list[Path]:
    """Remove the work dirs of dead processes under ``root`` (the temp dir); returns them."""
    base = Path(root or tempfile.gettempdir())
    now = time.time()
    removed = []
    for path in base.glob(f"{PREFIX}*"):
        try:
            if path.is_dir() and not path.is_symlink() and _abandoned(path, now):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue  # vanished meanwhile, or not ours to read
    return removed
