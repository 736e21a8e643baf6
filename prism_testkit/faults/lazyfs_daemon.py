"""The lazy filesystem's daemon: FUSE calls mapped onto :class:`~.lazyfs.LazyFilesystem`, and a
control socket through which the harness asks for a power cut.

Run as ``python -m prism_testkit.faults.lazyfs_daemon --lower L --blobs B --control NAME MOUNT``
by :mod:`prism_testkit.provision.lazymount`; it stays in the foreground until unmounted or sent
SIGTERM (libfuse then unmounts). A separate process keeps FUSE's handler threads off the test
process's GIL, and lets an embedded backend in the test process use the mount without
deadlocking on itself.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import mfusepy

from .lazyfs import LazyFilesystem, StorageFault

# The daemon trusts the kernel's offsets: O_APPEND would make pwrite ignore them (and our
# unsynced-range bookkeeping with it); O_DIRECT is not supported by every lower filesystem.
STRIPPED_OPEN_FLAGS = os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_APPEND | getattr(os, "O_DIRECT", 0)
STAT_FIELDS = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks", "st_blksize")
STATVFS_FIELDS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_namemax")


def _own_flags(flags: int) -> int:
    """The daemon's own open flags: a write-only handle is opened read-write, since an fsync
    copies its unsynced ranges out of it."""
    flags &= ~STRIPPED_OPEN_FLAGS
    if flags & os.O_ACCMODE == os.O_WRONLY:
        flags = (flags & ~os.O_ACCMODE) | os.O_RDWR
    return flags


class LazyOperations(mfusepy.Operations):
    use_ns = True
    # file-handle operations never need the path: an unlinked open file keeps working
    flag_nopath = True
    flag_nullpath_ok = True

    def __init__(self, fs: LazyFilesystem) -> None:
        self.fs = fs
        self._dirs: dict[int, str] = {}  # directory handle -> live path
        self._dir_handle = 0

    def _path(self, path: str | None) -> str:
        if path is None:  # an f-call on an unlinked open file: mfusepy passes no handle
            raise OSError(errno.ENOENT, "no path")
        return self.fs.live(path)

    def _owned_by_caller(self, live: str) -> None:
        uid, gid, _ = mfusepy.fuse_get_context()
        os.lchown(live, uid, gid)

    # -- metadata ---------------------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        if path is None:  # an open file by handle (perhaps unlinked)
            if fh is None:
                raise OSError(errno.ENOENT, "no path")
            with self.fs.lock:
                st = os.fstat(self.fs.handle(fh).fd)
        else:
            st = os.lstat(self.fs.live(path))
        attrs = {name: getattr(st, name) for name in STAT_FIELDS}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path: str, amode: int) -> int:
        if not os.path.lexists(self.fs.live(path)):
            raise OSError(errno.ENOENT, path)
        return 0  # mounted with default_permissions: the kernel checks the mode bits

    def chmod(self, path: str | None, mode: int) -> int:
        os.chmod(self._path(path), mode)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        os.lchown(self._path(path), uid, gid)
        return 0

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._path(path), follow_symlinks=False)
        else:
            os.utime(self._path(path), ns=times, follow_symlinks=False)
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self.fs.live(path))

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.fs.live(path))
        return {name: getattr(st, name) for name in STATVFS_FIELDS}

    def _checked(self, op: str, path: str, run: Any) -> Any:
        """Run one call between the armed crash's ``before`` and ``after`` checks."""
        self.fs.check(op, path, "before")
        result = run()
        self.fs.check(op, path, "after")
        return result

    # -- names (durable only once their directory is fsynced) -------------------------------
    # A call that makes an inode holds the lock until the inode has its node: the kernel reuses a
    # deleted file's number at once (ext4), and a directory fsync in another thread listing the new
    # name in between would map it to the dead node (a directory rebuilt as that dead file).

    def readdir(self, path: str | None, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._dirs[fh] if path is None else self.fs.live(path))]

    def mkdir(self, path: str, mode: int) -> int:
        live = self.fs.live(path)
        with self.fs.lock:  # a new inode gets its node before anyone can see it
            os.mkdir(live, mode)
            self._owned_by_caller(live)
            self.fs.created(live)
            self.fs.named("create", live)
        return 0

    def mknod(self, path: str, mode: int, dev: int) -> int:
        live = self.fs.live(path)
        with self.fs.lock:  # a new inode gets its node before anyone can see it
            os.mknod(live, mode, dev)
            self._owned_by_caller(live)
            self.fs.created(live)
            self.fs.named("create", live)
        return 0

    def symlink(self, target: str, source: str) -> int:
        live = self.fs.live(target)
        with self.fs.lock:  # a new inode gets its node before anyone can see it
            os.symlink(source, live)
            self._owned_by_caller(live)
            self.fs.created(live)
            self.fs.named("create", live)
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self.fs.live(source), self.fs.live(target))
        self.fs.named("create", self.fs.live(target))
        return 0

    def rename(self, old: str, new: str) -> int:
        def run() -> None:
            os.rename(self.fs.live(old), self.fs.live(new))
            self.fs.named("rename", self.fs.live(old), self.fs.live(new))

        self._checked("rename", old, run)
        return 0

    def unlink(self, path: str) -> int:
        def run() -> None:
            os.unlink(self.fs.live(path))
            self.fs.named("unlink", self.fs.live(path))

        self._checked("unlink", path, run)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self.fs.live(path))
        self.fs.named("unlink", self.fs.live(path))
        return 0

    def opendir(self, path: str) -> int:
        # flag_nopath: fsyncdir gets no path, so the handle remembers it
        with self.fs.lock:
            self._dir_handle += 1
            self._dirs[self._dir_handle] = self.fs.live(path)
            return self._dir_handle

    def releasedir(self, path: str | None, fh: int) -> int:
        self._dirs.pop(fh, None)
        return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        live = self._dirs[fh] if path is None else self.fs.live(path)
        name = "/" + os.path.relpath(live, self.fs.lower).removeprefix(".")
        self._checked("fsyncdir", name.replace("//", "/"), lambda: self.fs.sync_dir(live))
        return 0

    # -- content (durable only once the file is fsynced) ------------------------------------

    def create(self, path: str, mode: int, flags: int) -> int:
        live = self.fs.live(path)
        self.fs.check("create", path, "before")
        with self.fs.lock:  # a new inode gets its node before anyone can see it
            fd = os.open(live, _own_flags(flags) | os.O_CREAT | os.O_EXCL, mode)
            self._owned_by_caller(live)
            handle = self.fs.add_handle(fd, self.fs.created(live), flags, path)
            self.fs.named("create", live)
        self.fs.check("create", path, "after")
        return handle

    def open(self, path: str, flags: int) -> int:
        live = self.fs.live(path)
        node = self.fs.node(live)
        size = os.stat(live).st_size
        if flags & os.O_TRUNC:
            self.fs.check("truncate", path, "before")
        fd = os.open(live, _own_flags(flags))
        if flags & os.O_TRUNC:
            self.fs.written(node, 0, size, size=0)
        handle = self.fs.add_handle(fd, node, flags, path)
        if flags & os.O_TRUNC:
            self.fs.check("truncate", path, "after")
        return handle

    # Handle operations hold the lock: a power cut closes every descriptor, and a late call (the
    # kernel writing back a dead process's mapped pages) must fail, not reach a reused number.

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self.fs.lock:
            return os.pread(self.fs.handle(fh).fd, size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self.fs.lock:
            handle = self.fs.handle(fh)
            self.fs.check("write", handle.path, "before")
            written = os.pwrite(handle.fd, data, offset)
            self.fs.written(handle.node, offset, offset + written, data=data[:written])
            if handle.synchronous:
                self.fs.sync_file(handle.node, handle.fd)
            self.fs.check("write", handle.path, "after")
            return written

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if fh is not None:
            with self.fs.lock:
                handle = self.fs.handle(fh)
                self.fs.check("truncate", handle.path, "before")
                node, size, name = handle.node, os.fstat(handle.fd).st_size, handle.path
                os.ftruncate(handle.fd, length)
        elif path is not None:
            live = self.fs.live(path)
            self.fs.check("truncate", path, "before")
            node, size, name = self.fs.node(live), os.stat(live).st_size, path
            os.truncate(live, length)
        else:
            raise OSError(errno.EBADF, "truncate without a path or a handle")
        self.fs.written(node, min(size, length), max(size, length), size=length)
        self.fs.check("truncate", name, "after")
        return 0

    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> int:
        if mode != 0:  # hole punching and friends: not needed by the servers we run
            raise OSError(errno.EOPNOTSUPP, "fallocate mode")
        with self.fs.lock:
            handle = self.fs.handle(fh)
            self.fs.check("write", handle.path, "before")
            before = os.fstat(handle.fd).st_size
            os.posix_fallocate(handle.fd, offset, size)
            self.fs.written(handle.node, offset, offset + size, size=max(before, offset + size))
            self.fs.check("write", handle.path, "after")
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        return 0  # close() is not fsync: nothing becomes durable here

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        with self.fs.lock:
            handle = self.fs.handle(fh)
            self.fs.check("fsync", handle.path, "before")
            self.fs.sync_file(handle.node, handle.fd)
            self.fs.check("fsync", handle.path, "after")
        return 0

    def release(self, path: str | None, fh: int) -> int:
        self.fs.release(fh)
        return 0


class FuseWithHandles(mfusepy.FUSE):
    """mfusepy drops the file handle of libfuse 3's truncate; with ``nopath`` an ftruncate then
    arrives with neither path nor handle. Pass the handle on."""

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        fh = fip.contents.fh if fip else None
        decoded = None if path is None else path.decode(self.encoding, self.errors)
        result: int = self.operations.truncate(decoded, length, fh)
        return result


def serve_control(fs: LazyFilesystem, name: str) -> socket.socket:
    """Answer ``cut [fault]``, ``arm fault``, ``write-back``, ``stats`` and ``ping`` (one JSON line each) on an
    abstract unix socket; a fault is :class:`StorageFault` as JSON."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(4)

    def answer(line: str) -> dict[str, Any]:
        command, _, argument = line.partition(" ")
        fault = StorageFault.from_dict(json.loads(argument)) if argument else None
        if command == "cut":
            return {"ok": True, **fs.power_cut(fault)}
        if command == "arm":
            fs.arm(fault)
            return {"ok": True}
        if command == "write-back":
            return {"ok": True, **fs.write_back()}
        if command == "stats":
            return {"ok": True, **fs.stats()}
        if command == "ping":
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {command!r}"}

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                command = conn.makefile().readline().strip()
                try:
                    reply = answer(command)
                except Exception as exc:  # reported to the harness, which fails the test
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall((json.dumps(reply) + "\n").encode())

    threading.Thread(target=loop, name="lazyfs-control", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="prism-testkit lazy filesystem daemon")
    parser.add_argument("--lower", type=Path, required=True, help="the live tree (what the mount shows)")
    parser.add_argument("--blobs", type=Path, required=True, help="where the durable image keeps synced content")
    parser.add_argument("--control", required=True, help="abstract unix socket name for power cuts")
    parser.add_argument("--fsname", default="prism-lazyfs")
    parser.add_argument("mountpoint")
    args = parser.parse_args(argv)
    fs = LazyFilesystem(args.lower, args.blobs)
    serve_control(fs, args.control)
    FuseWithHandles(
        LazyOperations(fs),
        args.mountpoint,
        foreground=True,
        allow_other=True,  # servers run as other users (postgres)
        default_permissions=True,
        fsname=args.fsname,
        hard_remove=True,  # an unlinked open file is gone at once, never a .fuse_hidden name in a directory
        attr_timeout=0,  # after a power cut the kernel must not remember the lost tree
        entry_timeout=0,
        negative_timeout=0,
    )


if __name__ == "__main__":
    main()
