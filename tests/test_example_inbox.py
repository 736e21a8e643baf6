"""The worked pattern example under examples/inbox registers through the public API alone: its
entry point names its registration module, the registration passes the pattern registry's
checks, its suite declares the slots the registration names and passes on memstore and sqlite
when the package is installed as a third party's, and .ci/run runs that suite from outside
the repository on every built-in backend that fits."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from prism_testkit.registry.patterns import PatternRegistry

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "inbox"


@pytest.fixture
def registration(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    module = importlib.import_module("prism_inbox")
    yield module
    for name in [n for n in sys.modules if n == "prism_inbox" or n.startswith("prism_inbox.")]:
        del sys.modules[name]


def test_the_entry_point_names_the_registration_module_and_ships_the_suites() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["prism_testkit"] == {"inbox": "prism_inbox"}
    assert project["project"]["dependencies"] == ["prism-testkit"]
    assert "prism_inbox.suites" in project["tool"]["setuptools"]["packages"]


def test_the_registration_validates(registration: ModuleType) -> None:
    registry = PatternRegistry()
    for spec in registration.prism_register_patterns():
        registry.add(spec, "inbox")
    spec = registry.finish()["inbox"]
    assert spec.suites == ("inbox",)
    assert set(spec.slots) == {"store", "messaging"}
    assert spec.config.__name__ == "InboxConfig"


def test_the_suite_declares_the_registered_name_and_slots(registration: ModuleType) -> None:
    """Nothing in the harness checks this: a registration naming another suite, or slots the
    suite lacks, would only make namespace files skip the suite and the catalogue list no proof."""
    suite = importlib.import_module("prism_inbox.suites.test_inbox")
    (declaration,) = suite.pytestmark.args  # the SuiteDeclaration: name and slots
    assert declaration.name in registration.SPEC.suites
    assert set(declaration.slots) == set(registration.SPEC.slots)


def test_ci_runs_the_suite_from_outside_the_repository() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    lines = script.splitlines()
    at, run = next((i, line) for i, line in enumerate(lines) if "--pyargs prism_inbox.suites" in line)
    assert run.lstrip().startswith('(cd "$examples" &&'), "run from the temp dir, not the repository root"
    assert "--prism-backend=all" in run
    assert "-e examples/inbox" in script
    # the examples share one environment: the backend packages leave it before this run's `all`
    # (installed, it added 16 rabbitmq and etcd rows to the inbox's 147)
    uninstall = next(i for i, line in enumerate(lines) if "pip uninstall" in line)
    assert uninstall < at
    assert {"prism-rabbitmq", "prism-etcd"} <= set(lines[uninstall].split())


def test_the_suite_passes_when_installed_as_a_third_partys(tmp_path: Path) -> None:
    """The package on the path with a dist-info naming its entry point, as pip leaves it; the
    suite run with --pyargs from an empty directory (sqlite is the durable store the kill test
    asks for)."""
    site, run = tmp_path / "site", tmp_path / "run"
    info = site / "prism_inbox-0.1.dist-info"
    info.mkdir(parents=True)
    run.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: prism-inbox\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[prism_testkit]\ninbox = prism_inbox\n")
    command = [sys.executable, "-m", "pytest", "--pyargs", "prism_inbox.suites", "--prism-backend=memstore,sqlite"]
    command += ["-q", "-p", "no:cacheprovider", "-W", "error", "--prism-require-fit"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE)])}
    done = subprocess.run(command, cwd=run, capture_output=True, text=True, timeout=600, env=env)
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert re.search(r"^inbox +store=sqlite messaging=memstore", done.stdout, re.MULTILINE), tail
    assert re.fullmatch(r"\d+ passed in [\d.]+s( \(.*\))?", done.stdout.strip().splitlines()[-1]), tail
