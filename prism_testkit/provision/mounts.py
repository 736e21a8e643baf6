"""The mounts this process can see, and the lazy unmount the harness uses on its own.

Kept apart from the lazy filesystem so the work-dir sweep can find and detach a dead run's
mounts without starting anything.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_MNT_DETACH = 2
LAZYFS_FSNAME_PREFIX = "prism-lazyfs-"  # the source name of every lazy mount the harness makes
_ESCAPED = re.compile(rb"\\([0-7]{3})")  # mountinfo writes space, tab, newline, backslash as \ooo


@dataclass(frozen=True)
class Mount:
    mountpoint: Path
    fstype: str
    source: str


def _unescape(field: bytes) -> str:
    return os.fsdecode(_ESCAPED.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def mounts() -> list[Mount]:
    found = []
    with open("/proc/self/mountinfo", "rb") as info:
        for line in info:
            left, _, right = line.partition(b" - ")
            fstype, source = right.split()[:2]
            found.append(Mount(Path(_unescape(left.split()[4])), _unescape(fstype), _unescape(source)))
    return found


def mounts_under(directory: Path) -> list[Mount]:
    """Mounts at or below ``directory``, deepest first (the order to detach them in)."""
    inside = [m for m in mounts() if m.mountpoint == directory or m.mountpoint.is_relative_to(directory)]
    return sorted(inside, key=lambda m: len(m.mountpoint.parts), reverse=True)


def is_mounted(path: Path) -> bool:
    return any(m.mountpoint == path for m in mounts())


def detach(path: Path | str) -> None:
    """Lazy unmount (MNT_DETACH): works while a dead daemon left the mount unanswerable."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.umount2(os.fsencode(str(path)), _MNT_DETACH)
    else:
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, check=False)
