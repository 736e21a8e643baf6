"""Old import paths of moved modules (prism_testkit._moved): each is the moved module itself,
warns once when imported, and costs nothing to a run that imports none."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from prism_testkit._moved import MOVED


@pytest.fixture
def forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every old path unimported (restored afterwards), so importing one goes through the finder."""
    for old in MOVED:
        monkeypatch.delitem(sys.modules, old, raising=False)
        parent, _, child = old.rpartition(".")
        monkeypatch.delattr(importlib.import_module(parent), child, raising=False)


@pytest.mark.usefixtures("forgotten")
@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_moved_module_and_warns(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        aliased = importlib.import_module(old)
    assert aliased is new
    assert aliased.__name__ == MOVED[old]
    assert aliased.__spec__ is not None
    assert aliased.__spec__.name == MOVED[old]  # the moved module's own identity is untouched
    parent, _, child = old.rpartition(".")
    assert getattr(sys.modules[parent], child) is new
    assert importlib.import_module(old) is new  # once: later imports find it in sys.modules


@pytest.mark.usefixtures("forgotten")
def test_a_monkeypatch_through_the_old_path_reaches_the_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.warns(DeprecationWarning, match="prism_testkit.processes moved"):
        monkeypatch.setattr("prism_testkit.processes.free_port", lambda: 1)
    from prism_testkit.provision import processes

    assert processes.free_port() == 1


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False)


def test_the_warning_names_the_importing_line_and_the_statement_forms_work() -> None:
    done = run(
        "import warnings\n"
        "warnings.simplefilter('default')\n"
        "from prism_testkit.provisioning import Endpoint\n"
        "from prism_testkit.jepsen import faultproxy\n"
        "import prism_testkit.pattern_registry\n"
        "from prism_testkit.provision.base import Endpoint as E\n"
        "assert Endpoint is E and faultproxy.__name__ == 'prism_testkit.faults.proxy'\n"
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "DeprecationWarning" in line]
    assert [line.split(":")[1] for line in warned] == ["3", "4", "5"], done.stderr


def test_importing_the_package_and_plugin_warns_nothing() -> None:
    done = run("import prism_testkit, prism_testkit.plugin, prism_testkit.cli; import prism_testkit.provision.base")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
