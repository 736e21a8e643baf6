"""Old import paths of moved modules (prism_testkit._moved): each is the moved module itself,
warns once when imported, and costs nothing to a run that imports none."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from prism_testkit._moved import MOVED


@pytest.fixture
def forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every old path unimported (restored afterwards), so importing one goes through the finder."""
    for old in MOVED:
        monkeypatch.delitem(sys.modules, old, raising=False)
        parent, _, child = old.rpartition(".")
        # a moved package's old name (prism_testkit.jepsen) is the new package: forget its child there
        monkeypatch.delattr(importlib.import_module(MOVED.get(parent, parent)), child, raising=False)


# old packages whose modules moved too (a module that became a package is a plain alias)
MOVED_PACKAGES = sorted(old for old in MOVED if any(name.startswith(old + ".") for name in MOVED))


@pytest.mark.usefixtures("forgotten")
@pytest.mark.parametrize("old", sorted(MOVED.keys() - MOVED_PACKAGES))
def test_an_old_path_is_the_moved_module_and_warns(old: str) -> None:
    new = importlib.import_module(MOVED[old])
    parent, _, child = old.rpartition(".")
    if parent in MOVED:  # a module of a moved package: the old package is imported, and warns, first
        with pytest.warns(DeprecationWarning, match=f"{parent} moved to {MOVED[parent]}"):
            importlib.import_module(parent)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        aliased = importlib.import_module(old)
    assert aliased is new
    assert aliased.__name__ == MOVED[old]
    assert aliased.__spec__ is not None
    assert aliased.__spec__.name == MOVED[old]  # the moved module's own identity is untouched
    assert getattr(sys.modules[parent], child) is new
    assert importlib.import_module(old) is new  # once: later imports find it in sys.modules


@pytest.mark.usefixtures("forgotten")
@pytest.mark.parametrize("old", MOVED_PACKAGES)
def test_an_old_package_answers_with_the_new_one_and_its_children_by_their_old_paths(
    old: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = importlib.import_module(MOVED[old])
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED[old]}"):
        package = importlib.import_module(old)
    monkeypatch.setattr(new, "probe", object(), raising=False)
    assert package.probe is new.probe  # an attribute of the new package
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018 - the attribute access is the test
    children = [o.rpartition(".")[2] for o in MOVED if o.rpartition(".")[0] == old]
    assert children
    for child in children:
        with pytest.warns(DeprecationWarning, match=f"{old}.{child} moved to {MOVED[f'{old}.{child}']}"):
            module = getattr(package, child)  # as ``from old import child`` asks
        assert module is importlib.import_module(MOVED[f"{old}.{child}"])


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
    # line 4 names a moved package and a module moved out of it: one warning each
    assert [line.split(":")[1] for line in warned] == ["3", "4", "4", "5"], done.stderr


def test_importing_the_package_and_plugin_warns_nothing() -> None:
    done = run("import prism_testkit, prism_testkit.plugin, prism_testkit.cli; import prism_testkit.provision.base")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_the_changelog_dates_the_old_paths_end() -> None:
    """The shims have an end: the changelog names the release that removes them (REMOVED_IN)."""
    from prism_testkit._moved import REMOVED_IN

    changelog = (Path(__file__).resolve().parents[1] / "CHANGELOG.md").read_text()
    section = changelog.split(f"## {REMOVED_IN}", 1)
    assert len(section) == 2, f"CHANGELOG.md has no section for {REMOVED_IN}, the release without the old paths"
    assert "prism_testkit._moved" in section[1].split("\n## ", 1)[0]
