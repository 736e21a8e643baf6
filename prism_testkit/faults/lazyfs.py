"""A lazy filesystem: a FUSE passthrough whose power cut loses every write that was not synced.

The idea is Jepsen's LazyFS (a crash loses what the page cache held), built here from scratch.
The live tree (``lower``) plays the page cache: every operation reaches it at once, so running
processes see their writes. Beside it, a *durable image* plays the disk: it changes only when
a program asks for it, as a real disk would after

* ``fsync`` / ``fdatasync`` of a file (or a write through an ``O_SYNC`` / ``O_DSYNC`` handle):
  the file's content and size;
* ``fsync`` of a directory: which names the directory holds (creates, renames, unlinks).

A power cut (:meth:`LazyFilesystem.power_cut`) rebuilds the live tree from the durable image:
a file created but never named by a synced directory is gone, a rename without a directory
fsync is undone, an unsynced append disappears. Content existing when the filesystem is
mounted counts as durable (the machine booted with that disk).

Files are tracked by node (the live inode), not by path, so a file renamed and then fsynced
keeps its new content under whichever name its directory last synced. This module runs in the
daemon process started by :mod:`prism_testkit.faults.lazymount`; it imports ``mfusepy`` (and
with it libfuse3) only there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

SYNC_FLAGS = os.O_SYNC | os.O_DSYNC
COPY_CHUNK = 1 << 20


@dataclass
class DurableNode:
    """What the disk holds for one file, directory or symlink."""

    kind: str  # "file", "dir" or "symlink"
    mode: int
    uid: int
    gid: int
    entries: dict[str, int] = field(default_factory=dict)  # dir: synced name -> node id
    target: str = ""  # symlink
    has_blob: bool = False  # file: synced content stored in the blob dir (else empty)


@dataclass
class Handle:
    fd: int
    node: int
    synchronous: bool  # opened with O_SYNC / O_DSYNC: every write is synced


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file"


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    offset = start
    while offset < end:
        chunk = os.pread(src, min(COPY_CHUNK, end - offset), offset)
        if not chunk:
            break
        os.pwrite(dst, chunk, offset)
        offset += len(chunk)


class LazyFilesystem:
    """The model: live tree, durable image, unsynced ranges. Independent of FUSE, so the
    bookkeeping can be driven directly; :class:`LazyOperations` maps FUSE calls onto it."""

    ROOT = 0

    def __init__(self, lower: Path, blobs: Path) -> None:
        self.lower = lower
        self.blobs = blobs
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.image: dict[int, DurableNode] = {}
        self.node_of_inode: dict[int, int] = {}
        self.unsynced: dict[int, list[tuple[int, int]]] = {}  # node -> byte ranges written since its fsync
        self.handles: dict[int, Handle] = {}
        self._next_node = self.ROOT
        self._next_handle = 1
        self.cuts = 0
        self._adopt(self.lower, is_root=True)

    # -- identity ---------------------------------------------------------------------------

    def live(self, path: str) -> str:
        return os.path.join(self.lower, path.lstrip("/"))

    def _new_node(self, inode: int) -> int:
        node = self._next_node
        self._next_node += 1
        self.node_of_inode[inode] = node
        return node

    def node(self, live_path: str) -> int:
        inode = os.lstat(live_path).st_ino
        with self.lock:
            found = self.node_of_inode.get(inode)
            return found if found is not None else self._new_node(inode)

    def created(self, live_path: str) -> int:
        """A new inode: a fresh node, even if the kernel reuses a dead file's inode number."""
        with self.lock:
            return self._new_node(os.lstat(live_path).st_ino)

    def blob(self, node: int) -> Path:
        return self.blobs / str(node)

    # -- what is durable --------------------------------------------------------------------

    def _adopt(self, path: Path, is_root: bool = False) -> int:
        """Everything already on disk at mount time is durable."""
        st = os.lstat(path)
        node = self._new_node(st.st_ino)
        durable = DurableNode(_kind(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        self.image[node] = durable
        if durable.kind == "dir":
            for entry in sorted(os.listdir(path)):
                durable.entries[entry] = self._adopt(path / entry)
        elif durable.kind == "symlink":
            durable.target = os.readlink(path)
        else:
            shutil.copyfile(path, self.blob(node))
            durable.has_blob = True
        return node

    def _durable(self, node: int, st: os.stat_result, live_path: str) -> DurableNode:
        durable = self.image.get(node)
        if durable is None:
            durable = self.image[node] = DurableNode(_kind(st.st_mode), 0, 0, 0)
            if durable.kind == "symlink":
                durable.target = os.readlink(live_path)
        durable.mode, durable.uid, durable.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        return durable

    def written(self, node: int, start: int, end: int) -> None:
        if end > start:
            with self.lock:
                self.unsynced.setdefault(node, []).append((start, end))

    def sync_file(self, node: int, fd: int) -> None:
        """fsync: the file's unsynced ranges and its size reach the durable image."""
        with self.lock:
            st = os.fstat(fd)
            durable = self._durable(node, st, "")
            flags = os.O_WRONLY | os.O_CREAT
            out = os.open(self.blob(node), flags, 0o600)
            try:
                for start, end in _merge(self.unsynced.pop(node, [])):
                    _copy_range(fd, out, start, min(end, st.st_size))
                os.ftruncate(out, st.st_size)
            finally:
                os.close(out)
            durable.has_blob = True

    def sync_dir(self, live_path: str) -> None:
        """fsync of a directory: its current names (and what they point at) become durable."""
        with self.lock:
            st = os.lstat(live_path)
            durable = self._durable(self.node(live_path), st, live_path)
            entries = {}
            for name in os.listdir(live_path):
                child_path = os.path.join(live_path, name)
                child_st = os.lstat(child_path)
                child = self.node(child_path)
                if child not in self.image:  # named, never synced: exists empty after a cut
                    self._durable(child, child_st, child_path)
                entries[name] = child
            durable.entries = entries

    # -- handles ----------------------------------------------------------------------------

    def add_handle(self, fd: int, node: int, flags: int) -> int:
        with self.lock:
            handle = self._next_handle
            self._next_handle += 1
            self.handles[handle] = Handle(fd, node, bool(flags & SYNC_FLAGS))
            return handle

    def handle(self, fh: int) -> Handle:
        found = self.handles.get(fh)
        if found is None:  # opened before a power cut: that file is gone
            raise OSError(errno.EIO, "file handle from before a power cut")
        return found

    def release(self, fh: int) -> None:
        with self.lock:
            found = self.handles.pop(fh, None)
        if found is not None:
            os.close(found.fd)

    # -- the power cut ----------------------------------------------------------------------

    def power_cut(self) -> dict[str, int]:
        """Drop every unsynced change: rebuild the live tree from the durable image."""
        with self.lock:
            report = {
                "unsynced_files": len(self.unsynced),
                "unsynced_bytes": sum(end - start for r in self.unsynced.values() for start, end in _merge(r)),
                "open_handles": len(self.handles),
            }
            for found in self.handles.values():
                with contextlib.suppress(OSError):
                    os.close(found.fd)
            self.handles.clear()
            self.unsynced.clear()
            fresh = self.lower.with_name(self.lower.name + ".rebuilt")
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
            inodes: dict[int, int] = {}
            self._rebuild(self.ROOT, fresh, {}, inodes)
            gone = self.lower.with_name(self.lower.name + ".lost")
            os.rename(self.lower, gone)
            os.rename(fresh, self.lower)
            shutil.rmtree(gone, ignore_errors=True)
            self.node_of_inode = inodes
            self.cuts += 1
            return report

    def _rebuild(self, node: int, path: Path, made: dict[int, Path], inodes: dict[int, int]) -> None:
        durable = self.image[node]
        if node in made:
            if durable.kind == "file":
                os.link(made[node], path)  # a hard link: one node, two names
            return  # a directory synced under two parents lands under the first only
        if durable.kind == "dir":
            if node != self.ROOT:
                path.mkdir()
            made[node] = path
            for name, child in sorted(durable.entries.items()):
                self._rebuild(child, path / name, made, inodes)
        elif durable.kind == "symlink":
            os.symlink(durable.target, path)
        elif durable.has_blob:
            shutil.copyfile(self.blob(node), path)
        else:
            path.touch()
        made[node] = path
        os.lchown(path, durable.uid, durable.gid)
        if durable.kind != "symlink":
            os.chmod(path, durable.mode)
        inodes[os.lstat(path).st_ino] = node

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"cuts": self.cuts, "unsynced_files": len(self.unsynced), "open_handles": len(self.handles)}
