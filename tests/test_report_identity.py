"""One identity per test across machines (#51 Deliver 2, #53 item 6): a report names each test by
its node id (a path from where pytest ran) and by its package-relative identity, and the merge
matches tests by identity, so a machine that installed a package and one that runs its checkout
count a test once and contradict each other when they disagree."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prism_testkit.cli import main
from prism_testkit.hunting import identity
from prism_testkit.registry.shards import read_durations, select
from prism_testkit.report import html
from prism_testkit.report.html import default_replay
from prism_testkit.report.merge import merge_reports, read_report, totals
from prism_testkit.report.results import PrismResults
from prism_testkit.report.shape import Row

# A suite module of a made-up package, ``acme.suites``, with a plain test beside its suite test;
# ACME_RED names the test that fails on this machine.
SUITE = """
import os

from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite("acme_kv", backend=Slot.needs("keyvalue"))


def test_put(prism_env: PrismEnv) -> None:
    assert os.environ.get("ACME_RED") != "test_put", "red on this machine"


def test_plain() -> None:
    assert os.environ.get("ACME_RED") != "test_plain", "red on this machine"
"""
CHECKOUT = ("checkout",)
INSTALLED = ("venv", "lib", "python3.11", "site-packages")
PUT = "acme.suites.test_acme::test_put[backend=memstore]"
PLAIN = "acme.suites.test_acme::test_plain"


def layout(pytester: pytest.Pytester, *where: str) -> str:
    """The suite as package ``acme.suites`` under ``where``: the file to run."""
    folder = pytester.path.joinpath(*where, "acme", "suites")
    folder.mkdir(parents=True)
    for package in (folder, folder.parent):
        (package / "__init__.py").write_text("")
    (folder / "test_acme.py").write_text(SUITE)
    return str((folder / "test_acme.py").relative_to(pytester.path))


def run(pytester: pytest.Pytester, path: str, report: str, *extra: str) -> dict[str, Any]:
    # in a subprocess: each layout imports its own ``acme`` from its own folder, as two machines do
    pytester.runpytest_subprocess(
        path, "--prism-backend=memstore", f"--prism-report={report}", "-p", "no:cacheprovider", *extra
    )
    written: dict[str, Any] = json.loads((pytester.path / report).read_text())
    return written


def test_an_installed_machine_and_a_checkout_count_a_test_once(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = run(pytester, layout(pytester, *CHECKOUT), "checkout.json")
    # under xdist: a test's identity reaches the controller, which writes the report
    installed = run(pytester, layout(pytester, *INSTALLED), "installed.json", "-n", "1")
    capsys.readouterr()
    merged = pytester.path / "merged.json"
    assert main(["report", "merge", "checkout.json", "installed.json", "--json", str(merged)]) == 0
    report = json.loads(merged.read_text())
    assert {name: report["totals"][name] for name in ("passed", "failed")} == {"passed": 2, "failed": 0}  # not 4
    assert [entry["identity"] for entry in report["suites"][0]["tests"].values()] == [PUT]
    assert [entry["identity"] for entry in report["outside_suites"]["tests"].values()] == [PLAIN]
    (row,) = checkout["suites"]
    (node,) = row["tests"]
    assert node.startswith("checkout/acme/suites/test_acme.py::")  # the node id stays, for people
    assert row["tests"][node]["identity"] == PUT
    (plain,) = checkout["outside_suites"]["tests"].values()
    assert plain["identity"] == PLAIN
    assert [entry["identity"] for entry in installed["suites"][0]["tests"].values()] == [PUT]


@pytest.mark.parametrize("red", ["test_put", "test_plain"])
def test_a_pass_on_one_layout_and_a_failure_on_the_other_contradict(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], red: str
) -> None:
    run(pytester, layout(pytester, *CHECKOUT), "checkout.json")
    monkeypatch.setenv("ACME_RED", red)
    installed = run(pytester, layout(pytester, *INSTALLED), "installed.json")
    capsys.readouterr()
    for order in (["checkout.json", "installed.json"], ["installed.json", "checkout.json"]):
        assert main(["report", "merge", *order, "--json", str(pytester.path / "merged.json")]) == 2
        assert "disagree" in capsys.readouterr().err
    assert [failure["identity"] for failure in installed["failures"]] == [PUT if red == "test_put" else PLAIN]


def test_the_default_replay_of_a_shipped_suite_names_it_by_identity() -> None:
    """From the report of an out-of-tree run, ``pytest ../../main/suites/...`` runs nothing."""
    assert html.OWN_SUITES == identity.OWN_SUITES  # html names it itself: identity imports Hypothesis
    row = Row(suite="kv", combination={"backend": "memstore"})
    own = "prism_testkit.suites.test_contract_kv::test_put[backend=memstore]"
    assert default_replay("../../main/suites/test_contract_kv.py::test_put[backend=memstore]", row, own) == (
        f"pytest --pyargs '{own}' --prism-backend=memstore"
    )
    # any other test: by its node id, which pytest reads from the run's root
    other = "tests/test_mine.py::test_put[backend=memstore]"
    assert (
        default_replay(other, row, "test_mine::test_put[backend=memstore]")
        == f"pytest '{other}' --prism-backend=memstore"
    )


def test_recorded_durations_are_found_by_identity_on_another_layout(tmp_path: Path) -> None:
    recorded = {"outcome": "passed", "duration_s": 10.0, "identity": PUT}
    others = {f"t.py::test_{n}": {"outcome": "passed", "duration_s": 1.0} for n in range(6)}
    report = {
        "suites": [{"tests": {"checkout/acme/suites/test_acme.py::test_put[backend=memstore]": recorded, **others}}]
    }
    (tmp_path / "r.json").write_text(json.dumps(report))
    durations = read_durations(tmp_path / "r.json")
    assert durations[PUT] == 10.0
    identities = {"site/acme/suites/test_acme.py::test_put[backend=memstore]": PUT}
    items: list[Any] = [SimpleNamespace(nodeid=node) for node in [*identities, *(f"t.py::test_{n}" for n in range(6))]]
    first, _ = select(items, 1, 2, lambda item: identities.get(item.nodeid, item.nodeid), lambda item: None, durations)
    assert [item.nodeid for item in first] == [*identities]  # its 10 s alone against 6 x 1 s


def one_layout(folder: str, outcome: str) -> dict[str, Any]:
    """A report of a run from ``folder`` in which test_put had ``outcome`` (hand-made, as a run writes it)."""
    test = f"{folder}/acme/suites/test_acme.py::test_put[backend=memstore]"
    entry = {"outcome": outcome, "identity": PUT}
    failures = [{"test": test, "identity": PUT, "suite": "acme_kv", "when": "call"}] if outcome == "failed" else []
    row = {"suite": "acme_kv", "combination": {"backend": "memstore"}, outcome: 1, "tests": {test: entry}}
    return {"suites": [row], "failures": failures}


def test_a_test_red_on_both_layouts_is_one_failure() -> None:
    merged = merge_reports([read_report(one_layout(n, "failed"), f"{n}.json") for n in ("checkout", "site")])
    assert (totals(merged).failed, len(merged.failures)) == (1, 1)


def test_two_tests_of_one_identity_in_a_run_are_written_without_one() -> None:
    """Files of one name in folders without ``__init__.py`` (``--import-mode=importlib``) share an
    identity: the report leaves it out, or a merge would count the two as one test."""
    results = PrismResults()
    for test in ("a/test_x.py::test_y", "b/test_x.py::test_y", "c/test_z.py::test_y"):
        results.outside_suites[test] = "passed"
        results.identify(test, test.split("/")[1].replace(".py", ""))
    report = results.report()
    assert report.outside_suites is not None
    assert {test: entry.identity for test, entry in (report.outside_suites.tests or {}).items()} == {
        "a/test_x.py::test_y": None,
        "b/test_x.py::test_y": None,
        "c/test_z.py::test_y": "test_z::test_y",
    }
    assert totals(merge_reports([report])).passed == 3


# -- the harness's own suites: checkout and installed (issue 66) ---------------------------
# Only an out-of-tree package (acme) was run above; the shipped suites take the other branch of
# module_identity (named under prism_testkit.suites wherever that package lives), where a file
# suffix left in the name went unseen: ``--pyargs prism_testkit.suites.test_x.py::...`` finds
# nothing, and the report, the shards' durations and a hunt's examples key the test apart.

ROOT = Path(__file__).resolve().parent.parent
OWN_FOLDER = ROOT / "prism_testkit" / "suites"
OWN_FILES = sorted(OWN_FOLDER.glob("*.py"))
TEST = "test_x[backend=memstore]"


def own_name(path: Path) -> str:
    """What the module in ``path`` of the suites folder is imported as: the expectation."""
    return identity.OWN_SUITES if path.name == "__init__.py" else f"{identity.OWN_SUITES}.{path.stem}"


def installed_copy(tmp_path: Path) -> Path:
    """The suites folder as an installed package lays it out (site-packages/prism_testkit/suites)."""
    folder = tmp_path.joinpath(*INSTALLED, "prism_testkit", "suites")
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    for path in OWN_FILES:
        (folder / path.name).write_text("")
    return folder


@pytest.fixture(params=["checkout", "installed"])
def own_suites(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The folder the harness's suites are imported from, in either layout: installed, it is the
    folder ``prism_testkit.suites`` is found in (as on a machine that pip-installed the package)."""
    if request.param == "checkout":
        return OWN_FOLDER
    return installed_copy(tmp_path)


def test_every_shipped_suite_is_named_by_its_import_name_without_a_suffix(own_suites: Path) -> None:
    assert len(OWN_FILES) > 20  # the glob found the suites
    named = {path.name: identity.module_identity(own_suites / path.name) for path in OWN_FILES}
    assert {name: module for name, module in named.items() if module != own_name(OWN_FOLDER / name)} == {}
    assert not [module for module in named.values() if module.endswith(".py") or "/" in module]


def test_every_shipped_suites_identity_imports_the_file_it_was_made_from() -> None:
    """The name must be importable: ``--pyargs`` and a replay find the module by it."""
    for path in OWN_FILES:
        spec = importlib.util.find_spec(identity.module_identity(path))
        assert spec is not None, path
        assert spec.origin is not None, path
        assert Path(spec.origin).resolve() == path.resolve()


def test_a_shipped_suites_test_is_replayed_by_its_identity_under_pyargs(own_suites: Path) -> None:
    from prism_testkit.hunting.replay import _test_arguments

    for path in OWN_FILES:
        if not path.name.startswith("test_"):
            continue
        where = own_suites / path.name
        expected = f"{own_name(path)}::{TEST}"
        item: Any = SimpleNamespace(nodeid=f"{os.path.relpath(where)}::{TEST}", path=where)
        assert identity.identity_of(item) == expected
        assert identity.command_target(item) == ["--pyargs", expected]
        # a schedule file records the test by its absolute path: its replay names it the same way
        assert _test_arguments(f"{where.absolute()}::{TEST}") == ["--pyargs", expected]
        row = Row(suite="kv", combination={"backend": "memstore"})
        assert default_replay(item.nodeid, row, expected) == f"pytest --pyargs '{expected}' --prism-backend=memstore"
