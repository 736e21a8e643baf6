"""A real, non-editable install of prism-testkit: the wheel built from this checkout, installed
without extras into a fresh virtual environment (the ``installed`` fixture of conftest.py).

The environment is built once and cached (keyed by a hash of everything the wheel is built
from), under a file lock so xdist workers share it; later runs cost only the pytest calls. A
venv that cannot be built is an error of the tests that need it, never a skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
# What the wheel is built from (pyproject finds every package under prism_testkit/).
SOURCES = ("pyproject.toml", "README.md", "prism_testkit")


def _source_files() -> list[Path]:
    files = []
    for name in SOURCES:
        path = REPOSITORY / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [f for f in candidates if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"]
    return files


def _source_hash() -> str:
    digest = hashlib.sha256()
    for file in _source_files():
        digest.update(str(file.relative_to(REPOSITORY)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prism-testkit" / "install-venvs"


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def _build_venv(target: Path) -> None:
    """Build the wheel from a copy of the sources (so the checkout gets no build/ or
    egg-info) and install it, without extras, into a new venv at ``target``."""
    with tempfile.TemporaryDirectory(prefix="prism-wheel-") as tmp:
        src, wheels = Path(tmp) / "src", Path(tmp) / "wheels"
        for name in SOURCES:
            path = REPOSITORY / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                src.mkdir(exist_ok=True)
                shutil.copy2(path, src / name)
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)])
        (wheel,) = wheels.glob("prism_testkit-*.whl")
        building = target.with_name(target.name + f".building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(building)])
        run([str(building / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])
        # Built aside and renamed into place, so a half-built venv is never taken for a cached
        # one. (Its scripts' shebangs name the old path; the tests run ``python -m pytest``.)
        building.rename(target)


def installed_python() -> Path:
    """The python of the cached venv holding this checkout's prism-testkit without extras,
    built first if the sources changed."""
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / _source_hash()
    python = target / "bin" / "python"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            for stale in root.iterdir():  # older source states: one venv is enough
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
            _build_venv(target)
    return python


def pytest_in(python: Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest`` in ``project``, as a user of that python would run it: without this
    run's pytest, prism and Python variables (PYTHONPATH would reach the checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_", "PYTHON"))}
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
