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

Past the clean cut, :class:`StorageFault` (seeded, so a failing example replays) chooses what
else a cut leaves, as a disk and a kernel do worse than dropping the page cache cleanly:

* ``torn-op``: one unsynced write is torn: the writes to its file before it persist, then a
  strict prefix of its bytes (or of its pages, ``granularity``), nothing after;
* ``torn-seq``: of the unsynced writes, a seeded subset persists, in no prefix order (the order
  a page cache flushes in), at least one file keeping a later write while losing an earlier one;
* ``crash``: armed before the workload (:meth:`LazyFilesystem.arm`), the machine dies just
  ``before`` or ``after`` the ``nth`` ``op`` (``write``, ``fsync``, ``fsyncdir``, ``rename``,
  ``create``, ``unlink``, ``truncate``) on a path matching ``path`` (an fnmatch pattern): from then
  on nothing becomes durable and every call fails with EIO, until the cut rebuilds the tree.

Every cut reports what it did (which file, which writes it kept), for the history, and what it
discarded: the files with unsynced content and their bytes, and the directory operations (create,
rename, unlink) no fsync of their directory followed, which a cut undoes though no byte of
content is lost (a database renamed into place, its directory never fsynced, is gone).

Files are tracked by node (the live inode), not by path, so a file renamed and then fsynced
keeps its new content under whichever name its directory last synced. This module runs in the
daemon process started by :mod:`prism_testkit.provision.lazymount`; it imports ``mfusepy`` (and
with it libfuse3) only there.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import itertools
import os
import random
import shutil
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    path: str = ""  # the name it was opened by (for crash triggers and reports)


FAULT_KINDS = ("clean", "torn-op", "torn-seq", "crash")
NAME_OPS = ("create", "rename", "unlink")  # directory operations a cut undoes unless their directory was fsynced
CRASH_OPS = ("fsync", "write", "rename", "fsyncdir", "create", "unlink", "truncate")  # mildest first
PAGE = 4096
JOURNAL_LIMIT = 256 << 20  # bytes of unsynced writes kept for torn cuts (the daemon's memory)


@dataclass(frozen=True)
class StorageFault:
    """What a power cut leaves beyond a clean drop of the page cache; ``seed`` makes it replay.

    ``crash`` also needs ``op``, ``when`` (``before`` / ``after``), ``path`` (fnmatch on the
    mount-relative path, ``/``-rooted) and ``nth`` (1-based count of matching calls); its cut then
    leaves what was durable at that call, and ``torn`` (``torn-op`` / ``torn-seq`` / ``clean``)
    says what becomes of the writes still unsynced then."""

    kind: str = "clean"
    seed: int = 0
    granularity: str = "byte"  # torn-op: "byte", or "page" (a byte tear where the write crosses no page boundary)
    op: str = "fsync"
    when: str = "after"
    path: str = "*"
    nth: int = 1
    torn: str = "clean"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown storage fault {self.kind!r} (one of {', '.join(FAULT_KINDS)})")
        if self.kind == "crash" and (self.op not in CRASH_OPS or self.when not in ("before", "after") or self.nth < 1):
            raise ValueError(f"crash needs op in {CRASH_OPS}, when before/after, nth >= 1: {self}")
        if self.granularity not in ("byte", "page") or self.torn not in ("clean", "torn-op", "torn-seq"):
            raise ValueError(f"bad granularity or torn: {self}")

    def as_dict(self) -> dict[str, Any]:
        keys = {"clean": (), "torn-op": ("seed", "granularity"), "torn-seq": ("seed",)}.get(
            self.kind, ("seed", "op", "when", "path", "nth", "torn", "granularity")
        )
        return {"kind": self.kind, **{k: getattr(self, k) for k in keys}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StorageFault:
        return cls(**data)

    def describe(self) -> str:
        """One line that replays it: ``kind`` and its options."""
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


@dataclass(eq=False)
class Journal:
    """One unsynced change to a file's content: a write (``data`` at ``offset``) or a size change."""

    seq: int
    node: int
    offset: int
    data: bytes | None  # None: the file's size became ``offset`` (truncate, O_TRUNC, fallocate)


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
        self.journal: dict[int, list[Journal]] = {}  # node -> unsynced changes, in order
        self._seq = 0
        self.journal_limit = JOURNAL_LIMIT
        self.journal_bytes = 0
        self.unrecorded: set[int] = set()  # nodes whose later unsynced writes the journal had no room for
        self.paths: dict[int, str] = {}  # node -> the last name it was opened by
        self.trigger: StorageFault | None = None  # an armed crash
        self.seen = 0  # matching calls counted for the armed crash
        self.crashed: dict[str, Any] | None = None  # the call the machine died at
        # directory operations no fsync of their directory has followed yet: sequence -> (kind,
        # the directory nodes whose fsync each still awaits: a rename across two, both)
        self.unsynced_names: dict[int, tuple[str, set[int]]] = {}
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
        st = os.lstat(live_path)
        with self.lock:
            found = self.node_of_inode.get(st.st_ino)
            durable = None if found is None else self.image.get(found)
            if found is None or (durable is not None and durable.kind != _kind(st.st_mode)):
                # unknown, or a dead node's inode number the kernel gave to another kind of node
                return self._new_node(st.st_ino)
            return found

    def created(self, live_path: str) -> int:
        """A new inode: a fresh node, even if the kernel reuses a dead file's inode number."""
        with self.lock:
            return self._new_node(os.lstat(live_path).st_ino)

    def named(self, kind: str, *live_paths: str) -> None:
        """A directory operation (``create``, ``rename``, ``unlink``) changed the names in the
        directories holding ``live_paths``: durable only once each of them is fsynced."""
        with self.lock:
            dirs = {self.node(os.path.dirname(p)) for p in live_paths}
            self._seq += 1
            self.unsynced_names[self._seq] = (kind, dirs)

    def _unsynced_name_counts(self) -> dict[str, int]:
        counts = {"unsynced_dir_ops": len(self.unsynced_names)}
        for kind in NAME_OPS:
            counts[f"unsynced_{kind}s"] = sum(1 for k, _ in self.unsynced_names.values() if k == kind)
        return counts

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

    def written(self, node: int, start: int, end: int, data: bytes | None = None, size: int | None = None) -> None:
        """Bytes ``start..end`` changed without a sync: ``data`` written there, or the size set to ``size``."""
        if end > start:
            with self.lock:
                self.unsynced.setdefault(node, []).append((start, end))
        with self.lock:
            if data is None and size is None:
                return
            if node in self.unrecorded or self.journal_bytes + len(data or b"") > self.journal_limit:
                # Past the limit a file's later writes are not recorded until its next fsync: a
                # torn cut then keeps only writes before them, still a state a disk could leave.
                self.unrecorded.add(node)
                return
            self._seq += 1
            if data is not None:
                self.journal_bytes += len(data)
                self.journal.setdefault(node, []).append(Journal(self._seq, node, start, bytes(data)))
            else:
                assert size is not None
                self.journal.setdefault(node, []).append(Journal(self._seq, node, size, None))

    def _forget(self, node: int) -> None:
        """The node's unsynced writes are synced (or gone): its journal is not needed."""
        self.journal_bytes -= sum(len(c.data or b"") for c in self.journal.pop(node, []))
        self.unrecorded.discard(node)

    # -- a crash at a chosen call -----------------------------------------------------------

    def arm(self, fault: StorageFault | None) -> None:
        """Die at the call ``fault`` names (None disarms)."""
        with self.lock:
            if fault is not None and fault.kind != "crash":
                raise ValueError(f"only a crash is armed, not {fault.kind}")
            self.trigger, self.seen, self.crashed = fault, 0, None

    def check(self, op: str, path: str, when: str) -> None:
        """Called by every FUSE operation ``before`` and ``after`` it runs: raises EIO once the
        machine is dead (and at the armed ``before`` call itself)."""
        with self.lock:
            if self.crashed is not None:
                raise OSError(errno.EIO, "the machine crashed (lazy filesystem)")
            t = self.trigger
            if t is None or t.op != op or t.when != when or not fnmatch.fnmatchcase(path, t.path):
                return
            self.seen += 1
            if self.seen < t.nth:
                return
            self.crashed = {"op": op, "when": when, "path": path, "nth": self.seen}
            if when == "before":
                raise OSError(errno.EIO, "the machine crashed (lazy filesystem)")

    def sync_file(self, node: int, fd: int) -> None:
        """fsync: the file's unsynced ranges and its size reach the durable image."""
        with self.lock:
            self._forget(node)
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
            synced = self.node(live_path)
            for seq, (_, dirs) in list(self.unsynced_names.items()):
                dirs.discard(synced)
                if not dirs:
                    del self.unsynced_names[seq]
            durable = self._durable(synced, st, live_path)
            entries = {}
            for name in os.listdir(live_path):
                child_path = os.path.join(live_path, name)
                child_st = os.lstat(child_path)
                child = self.node(child_path)
                if child not in self.image:  # named, never synced: exists empty after a cut
                    self._durable(child, child_st, child_path)
                entries[name] = child
            durable.entries = entries

    def write_back(self) -> dict[str, Any]:
        """Everything written so far becomes durable, file contents and directory names alike,
        as the kernel's own writeback makes it seconds later (or ``sync(2)`` at once): what an
        established data dir looks like to a later power cut. Returns how much it made durable."""
        with self.lock:
            made = {"synced_files": len(self.unsynced), "synced_bytes": 0}
            made["synced_bytes"] = sum(end - start for r in self.unsynced.values() for start, end in _merge(r))
            for top, dirs, files in os.walk(self.lower):
                for name in files:
                    path = os.path.join(top, name)
                    if os.path.islink(path) or not os.path.isfile(path):
                        continue
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        self.sync_file(self.node(path), fd)
                    finally:
                        os.close(fd)
                self.sync_dir(top)
                dirs.sort()
            return made

    # -- handles ----------------------------------------------------------------------------

    def add_handle(self, fd: int, node: int, flags: int, path: str = "") -> int:
        with self.lock:
            handle = self._next_handle
            self._next_handle += 1
            self.handles[handle] = Handle(fd, node, bool(flags & SYNC_FLAGS), path)
            if path:
                self.paths[node] = path
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

    def power_cut(self, fault: StorageFault | None = None) -> dict[str, Any]:
        """Drop every unsynced change (but what ``fault`` keeps): rebuild the live tree from the
        durable image. An armed crash decides the fault when none is given."""
        with self.lock:
            report: dict[str, Any] = {
                "unsynced_files": len(self.unsynced),
                "unsynced_bytes": sum(end - start for r in self.unsynced.values() for start, end in _merge(r)),
                "open_handles": len(self.handles),
                **self._unsynced_name_counts(),
            }
            fault = fault or self.trigger or StorageFault()
            detail: dict[str, Any] = fault.as_dict()
            if fault.kind == "crash":
                detail["crashed_at"] = self.crashed  # None: the call never came, a plain cut at the end
            torn = fault.torn if fault.kind == "crash" else fault.kind
            if torn != "clean":
                detail["kept"] = self._persist_unsynced(torn, fault)
            if self.unrecorded:
                detail["unrecorded_files"] = len(self.unrecorded)  # journal full: their later writes dropped
            report["fault"] = detail
            # Files with nothing unsynced (and untouched by what the fault kept) hold their
            # durable content already: the rebuilt tree takes them as they are (a hard link to
            # the same inode) instead of a copy of their blob: copying the whole data dir at
            # every cut would cost most of the lazy filesystem's CPU.
            dirty = set(self.unsynced) | set(self.journal) | set(self.unrecorded)
            clean = self._clean_live_files(dirty)
            self.journal.clear()
            self.journal_bytes = 0
            self.unrecorded.clear()
            self.trigger, self.seen, self.crashed = None, 0, None
            for found in self.handles.values():
                with contextlib.suppress(OSError):
                    os.close(found.fd)
            self.handles.clear()
            self.unsynced.clear()
            self.unsynced_names.clear()
            fresh = self.lower.with_name(self.lower.name + ".rebuilt")
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
            inodes: dict[int, int] = {}
            self._rebuild(self.ROOT, fresh, {}, inodes, clean)
            gone = self.lower.with_name(self.lower.name + ".lost")
            os.rename(self.lower, gone)
            os.rename(fresh, self.lower)
            shutil.rmtree(gone, ignore_errors=True)
            self.node_of_inode = inodes
            self.cuts += 1
            return report

    # -- torn writes ------------------------------------------------------------------------

    def _name(self, node: int) -> str:
        return self.paths.get(node, f"(node {node})")

    def _durable_files(self) -> dict[int, list[Journal]]:
        """The journals of files that will exist after the cut (named by a synced directory)."""
        named = {child for d in self.image.values() if d.kind == "dir" for child in d.entries.values()}
        return {n: j for n, j in self.journal.items() if n in named and self.image[n].kind == "file" and j}

    def _persist_unsynced(self, torn: str, fault: StorageFault) -> list[dict[str, Any]]:
        """Write into the durable image the part of the journal that ``torn`` keeps; returns
        per file which writes (0-based, in order since its last fsync) were kept."""
        rng = random.Random(fault.seed)
        files = self._durable_files()
        kept: dict[int, list[tuple[Journal, int]]] = {}  # node -> (change, bytes of it kept)
        if torn == "torn-op":
            candidates = [
                (n, i) for n, j in sorted(files.items()) for i, c in enumerate(j) if c.data and len(c.data) > 1
            ]
            if not candidates:
                return []
            node, index = rng.choice(candidates)
            chosen = files[node][index]
            assert chosen.data is not None
            cut = self._tear_point(rng, chosen, fault.granularity)
            kept[node] = [(c, len(c.data) if c.data else 0) for c in files[node][:index]] + [(chosen, cut)]
        else:  # torn-seq
            masks = {n: [rng.random() < 0.5 for _ in j] for n, j in sorted(files.items())}
            if not any(_not_a_prefix(m) for m in masks.values()):
                longer = [n for n, j in sorted(files.items()) if len(j) > 1]
                if not longer:
                    return []
                node = rng.choice(longer)
                later = rng.randrange(1, len(files[node]))
                masks[node] = [rng.random() < 0.5 for _ in files[node]]
                masks[node][later], masks[node][rng.randrange(later)] = True, False
            for node, mask in masks.items():
                kept[node] = [
                    (c, len(c.data) if c.data else 0) for c, keep in zip(files[node], mask, strict=True) if keep
                ]
        out = []
        for node, changes in sorted(kept.items()):
            self._apply(node, changes)
            total = files[node]
            out.append(
                {
                    "path": self._name(node),
                    "writes": len(total),
                    "kept": [_index(total, c) for c, _ in changes],
                    "torn": [
                        {"write": _index(total, c), "offset": c.offset, "length": len(c.data), "kept_bytes": n}
                        for c, n in changes
                        if c.data is not None and n < len(c.data)
                    ],
                }
            )
        return out

    @staticmethod
    def _tear_point(rng: random.Random, change: Journal, granularity: str) -> int:
        """How many leading bytes of ``change`` persist: 1..len-1, at a page boundary of the file
        when ``granularity`` is page and the write crosses one."""
        assert change.data is not None
        length = len(change.data)
        if granularity == "page":
            bounds = [
                b - change.offset for b in range((change.offset // PAGE + 1) * PAGE, change.offset + length, PAGE)
            ]
            if bounds:
                return rng.choice(bounds)
        return rng.randrange(1, length)

    def _apply(self, node: int, changes: list[tuple[Journal, int]]) -> None:
        durable = self.image[node]
        blob = os.open(self.blob(node), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if not durable.has_blob:
                os.ftruncate(blob, 0)
            for change, length in changes:
                if change.data is None:
                    os.ftruncate(blob, change.offset)
                else:
                    os.pwrite(blob, change.data[:length], change.offset)
        finally:
            os.close(blob)
        durable.has_blob = True

    def _clean_live_files(self, dirty: set[int]) -> dict[int, str]:
        """Per synced file node without unsynced changes (not in ``dirty``), one of its names in
        the live tree: its content there is its blob's."""
        found: dict[int, str] = {}
        for folder, _, names in os.walk(self.lower):
            for name in names:
                live = os.path.join(folder, name)
                st = os.lstat(live)
                node = self.node_of_inode.get(st.st_ino)
                if node is None or node in dirty or node in found or not stat.S_ISREG(st.st_mode):
                    continue
                durable = self.image.get(node)
                if durable is not None and durable.kind == "file" and durable.has_blob:
                    found[node] = live
        return found

    def _rebuild(
        self, node: int, path: Path, made: dict[int, Path], inodes: dict[int, int], clean: dict[int, str]
    ) -> None:
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
                self._rebuild(child, path / name, made, inodes, clean)
        elif durable.kind == "symlink":
            os.symlink(durable.target, path)
        elif node in clean:
            os.link(clean[node], path)  # the old tree is removed below: the inode lives on here
        elif durable.has_blob:
            shutil.copyfile(self.blob(node), path)
        else:
            path.touch()
        made[node] = path
        os.lchown(path, durable.uid, durable.gid)
        if durable.kind != "symlink":
            os.chmod(path, durable.mode)
        inodes[os.lstat(path).st_ino] = node

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "cuts": self.cuts,
                "armed": None if self.trigger is None else self.trigger.as_dict(),
                "unsynced_files": len(self.unsynced),
                **self._unsynced_name_counts(),
                "open_handles": len(self.handles),
                "crashed_at": self.crashed,
            }


def _index(changes: list[Journal], change: Journal) -> int:
    return next(i for i, c in enumerate(changes) if c is change)


def _not_a_prefix(mask: list[bool]) -> bool:
    """A kept-set that is not the first k writes: some write kept after one lost."""
    return any(later and not earlier for earlier, later in itertools.pairwise(mask))
