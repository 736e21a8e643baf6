"""The harness side of the lazy filesystem: mount it over a data directory, cut the power,
unmount — and never leave a mount behind.

A data dir on a lazy mount is how an instance is provisioned for power cuts, so this lives with
provisioning; the filesystem itself (its model, :mod:`prism_testkit.faults.lazyfs`, and its
FUSE process, :mod:`prism_testkit.faults.lazyfs_daemon`) is a fault, run as a separate process
and never imported here: a storage fault reaches the daemon as the JSON of its ``as_dict()``.

:meth:`LazyMount.over` moves a directory's content aside (``<dir>.lazyfs/lower``), starts the
daemon (:mod:`prism_testkit.faults.lazyfs_daemon`) and mounts the lazy view at the directory's own path, so a server
keeps its configured data dir. Cleanup runs on every path: :meth:`LazyMount.unmount` at the
provisioner's teardown, ``atexit`` on Ctrl-C, the daemon's parent-death signal when the test
process is killed, and the next run's work-dir sweep (:mod:`prism_testkit.provision.workdirs`) for a mount
whose owner died anyway: it lives inside the dead run's work dir.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.mounts import LAZYFS_FSNAME_PREFIX, detach, is_mounted
from prism_testkit.provision.netns import FaultNotInjected
from prism_testkit.provision.process_identity import stamp
from prism_testkit.provision.processes import stop_all
from prism_testkit.provision.workdirs import record_process

MOUNT_TIMEOUT = 15.0
_PR_SET_PDEATHSIG = 1
_LIVE: set[LazyMount] = set()


class StorageFault(Protocol):
    """What a mount needs of a storage fault (:class:`prism_testkit.faults.lazyfs.StorageFault`):
    its description, which the daemon reads back."""

    def as_dict(self) -> dict[str, Any]: ...


def fuse_unavailable() -> tuple[str, str] | None:
    """(why a lazy filesystem cannot be mounted here, how to make it possible), or None when it can."""
    from prism_testkit.provision.system_packages import hint

    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (FUSE is not available in this kernel or container)", hint("dev-fuse")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is not readable and writable by this user", "run as root, or give this user /dev/fuse"
    if importlib.util.find_spec("mfusepy") is None:
        return "mfusepy is not installed", "pip install 'prism-testkit[powerloss]'"
    if ctypes.util.find_library("fuse3") is None:
        return "libfuse3 is not installed", hint("fuse3")
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        return "fusermount3 is not installed", hint("fuse3")
    return None


def fuse_unavailable_reason() -> str | None:
    """Why a lazy filesystem cannot be mounted here, with the install hint, or None when it can."""
    found = fuse_unavailable()
    return None if found is None else f"{found[0]} ({found[1]})"


def _die_with_parent() -> None:
    os.setsid()  # Ctrl-C in the terminal is for pytest, which unmounts in order
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # libfuse unmounts on SIGTERM


class LazyMount:
    """One lazy filesystem mounted over ``mountpoint``."""

    def __init__(self, mountpoint: Path, state: Path) -> None:
        self.mountpoint = mountpoint
        self.state = state
        self.control = f"prism-lazyfs-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._daemon: subprocess.Popen[bytes] | None = None
        self.cuts: list[dict[str, int]] = []
        self.faults: list[dict[str, Any]] = []  # per cut: the fault and what it kept (history detail)

    @classmethod
    def over(cls, directory: Path) -> LazyMount:
        """Mount a lazy filesystem over ``directory``; what it holds now counts as durable."""
        reason = fuse_unavailable_reason()
        if reason is not None:
            raise ProvisioningError(f"cannot mount a lazy filesystem over {directory.name}: {reason}")
        directory = directory.resolve()
        state = directory.with_name(f".{directory.name}.lazyfs")
        state.mkdir()
        lower = state / "lower"
        mode = directory.stat()
        os.rename(directory, lower)
        directory.mkdir()  # the mountpoint; the mount shows lower's owner and mode
        os.chown(directory, mode.st_uid, mode.st_gid)
        mount = cls(directory, state)
        mount._start(lower)
        return mount

    def _start(self, lower: Path) -> None:
        argv = [
            sys.executable,
            "-m",
            "prism_testkit.faults.lazyfs_daemon",
            "--lower",
            str(lower),
            "--blobs",
            str(self.state / "blobs"),
            "--control",
            self.control,
            "--fsname",
            f"{LAZYFS_FSNAME_PREFIX}{os.getpid()}",
            str(self.mountpoint),
        ]
        with open(self.state / "daemon.log", "ab") as log:
            self._daemon = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        _LIVE.add(self)
        record_process(stamp(self._daemon.pid))  # its own session: the sweep after a crash ends it
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not (is_mounted(self.mountpoint) and self._answers()):
            if self._daemon.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.unmount()
                raise ProvisioningError(f"the lazy filesystem over {self.mountpoint.name} did not mount: {tail}")
            time.sleep(0.02)

    def _request(self, command: str, timeout: float = 120.0) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect("\0" + self.control)
            sock.sendall(command.encode() + b"\n")
            reply: dict[str, object] = json.loads(sock.makefile().readline() or "{}")
        if not reply.get("ok"):
            raise ProvisioningError(f"lazy filesystem {command!r} failed: {reply.get('error', 'no answer')}")
        return reply

    def _answers(self) -> bool:
        try:
            self._request("ping", timeout=1.0)
        except (OSError, ProvisioningError, ValueError):
            return False
        return True

    def arm(self, fault: StorageFault | None) -> None:
        """Crash the machine at the call a ``crash`` fault names (None disarms); the next
        :meth:`power_cut` then leaves what was durable at that call."""
        self._request("arm" + ("" if fault is None else " " + json.dumps(fault.as_dict())))

    def power_cut(self, fault: StorageFault | None = None) -> dict[str, int]:
        """Discard every unsynced write (the server must be stopped: its open files are gone),
        but what ``fault`` keeps (default: the armed crash, else a clean cut). Returns what was
        discarded: unsynced files and bytes, directory operations (creates, renames, unlinks) no
        directory fsync followed, handles still open; the fault's detail (which
        writes it kept, where a crash hit) is appended to :attr:`faults`."""
        reply = self._request("cut" + ("" if fault is None else " " + json.dumps(fault.as_dict())))
        report = {k: v for k, v in reply.items() if isinstance(v, int) and k != "ok"}
        self.cuts.append(report)
        detail = reply.get("fault")
        self.faults.append(dict(detail) if isinstance(detail, dict) else {})
        return report

    def write_back(self) -> dict[str, int]:
        """Make every write so far durable, as the kernel's writeback would a few seconds on
        (files and directory names): the data dir is established for a later cut. Returns the
        unsynced files and bytes it made durable."""
        reply = self._request("write-back")
        return {k: v for k, v in reply.items() if isinstance(v, int) and k != "ok"}

    def armed(self) -> dict[str, Any] | None:
        """The crash the filesystem itself holds armed (as :meth:`StorageFault.as_dict`), or None."""
        found = self._request("stats", timeout=MOUNT_TIMEOUT).get("armed")
        return dict(found) if isinstance(found, dict) else None

    def cuts_taken(self) -> int:
        """How many power cuts the filesystem itself has taken (its daemon counts them)."""
        cuts = self._request("stats", timeout=MOUNT_TIMEOUT)["cuts"]
        if not isinstance(cuts, int):
            raise ProvisioningError(f"lazy filesystem 'stats' gave no cut count: {cuts!r}")
        return cuts

    def unmount(self) -> None:
        """Unmount and stop the daemon; idempotent, and safe when the daemon already died."""
        daemon, self._daemon = self._daemon, None
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()  # libfuse unmounts on SIGTERM
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)
        if is_mounted(self.mountpoint):
            detach(self.mountpoint)
        _LIVE.discard(self)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.state / "daemon.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def __repr__(self) -> str:
        return f"LazyMount({str(self.mountpoint)!r})"


class LazyMounts:
    """The lazy filesystems of a cluster's nodes, cut together: a coordinated power failure.
    Every node must be stopped first, as for one mount."""

    def __init__(self, mounts: list[LazyMount]) -> None:
        self.mounts = mounts
        self.cuts: list[dict[str, int]] = []
        self.faults: list[dict[str, Any]] = []

    def arm(self, fault: StorageFault | None) -> None:
        """Arm (or disarm) every node's crash; each node's filesystem must report it armed as
        asked, or :class:`FaultNotInjected` names the nodes that are not."""
        for mount in self.mounts:
            mount.arm(fault)
        wanted = None if fault is None else fault.as_dict()
        missed = [node for node, mount in enumerate(self.mounts) if mount.armed() != wanted]
        if missed:
            raise FaultNotInjected(
                f"crash of {len(self.mounts)} nodes: node {', '.join(map(str, missed))} is not "
                + ("armed with it" if fault is not None else "disarmed")
            )

    def power_cut(self, fault: StorageFault | None = None) -> dict[str, int]:
        """Cut every node's power; what was discarded, summed over the nodes (each node's
        fault detail in :attr:`faults`, one list per cut). Every node's filesystem must have
        taken exactly one cut, as it counts them, or :class:`FaultNotInjected` names the nodes
        that kept their unsynced writes."""
        before = [mount.cuts_taken() for mount in self.mounts]
        total: dict[str, int] = {}
        details = []
        for mount in self.mounts:
            for key, value in mount.power_cut(fault).items():
                total[key] = total.get(key, 0) + value
            details.append(mount.faults[-1])
        missed = [
            node
            for node, (mount, was) in enumerate(zip(self.mounts, before, strict=True))
            if mount.cuts_taken() != was + 1
        ]
        if missed:
            raise FaultNotInjected(
                f"power cut of {len(self.mounts)} nodes: node {', '.join(map(str, missed))} took no cut "
                "(its lazy filesystem kept its unsynced writes)"
            )
        self.faults.append({"nodes": details})
        self.cuts.append(total)
        return total

    def power_cut_node(self, node: int, fault: StorageFault | None = None) -> dict[str, int]:
        """Cut one node's power, an OS crash of that machine alone (the node must be stopped):
        its unsynced writes dropped (but what ``fault`` keeps), every other node's kept. Each
        filesystem counts its cuts: ``node``'s must have taken exactly one and every other none,
        or :class:`FaultNotInjected` says which did not. Returns what ``node``'s cut discarded."""
        before = [mount.cuts_taken() for mount in self.mounts]
        report = self.mounts[node].power_cut(fault)
        after = [mount.cuts_taken() for mount in self.mounts]
        wrong = [i for i, (was, now) in enumerate(zip(before, after, strict=True)) if now != was + (i == node)]
        if wrong:
            raise FaultNotInjected(
                f"power cut of node {node} of {len(self.mounts)}: "
                + ", ".join(f"node {i} took {after[i] - before[i]} cut(s)" for i in wrong)
                + f" (node {node} must take one, the others none)"
            )
        self.faults.append({"node": node, **self.mounts[node].faults[-1]})
        self.cuts.append(report)
        return report

    def write_back(self) -> dict[str, int]:
        """Every node's writes so far made durable (see :meth:`LazyMount.write_back`), summed."""
        total: dict[str, int] = {}
        for mount in self.mounts:
            for key, value in mount.write_back().items():
                total[key] = total.get(key, 0) + value
        return total

    def unmount(self) -> None:
        for mount in self.mounts:
            mount.unmount()

    def __repr__(self) -> str:
        return f"LazyMounts({len(self.mounts)} nodes)"


def unmount_all() -> None:
    stop_all()  # servers first: they must not see their data dir vanish while they run
    for mount in list(_LIVE):
        with contextlib.suppress(Exception):
            mount.unmount()


atexit.register(unmount_all)
