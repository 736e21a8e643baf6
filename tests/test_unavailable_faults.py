"""A fault this machine cannot inject is like a backend it cannot provision: without FUSE the
power-loss rows are listed under UNAVAILABLE faults with the reason and the install hint, and the
run does not fail for them; a run that must fit every suite (``prism_require_fit``) still fails.

FUSE is taken away by making libfuse3 unfindable (``ctypes.util.find_library``), as on a machine
without the ``fuse3`` package: the harness's own probe must notice."""

from __future__ import annotations

import ctypes.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from prism_testkit.errors import FaultUnavailable
from prism_testkit.faults.power_loss import SUITE_FAULTS, power_loss_unavailable
from prism_testkit.provision import lazymount
from prism_testkit.report.matrix import render_markdown
from prism_testkit.report.merge import merge_reports
from prism_testkit.report.shape import parse

ROOT = Path(__file__).resolve().parent.parent
SUITE = ("--pyargs", "prism_testkit.suites.test_contract_power_loss")
HEADING = "*prism-testkit: UNAVAILABLE faults (not injected)*"
REASON = "power loss: libfuse3 is not installed"
HINT = "  install: Debian/Ubuntu: apt-get install fuse3 (scripts/bootstrap does it); elsewhere: *"
ROWS = ["  power_loss  backend=localfs", "  power_loss  backend=sqlite"]
# the suite runs each backend once per storage fault, once on established data, once in cuts right after acks
KINDS = len(SUITE_FAULTS) + 2
# Installed with -p in a pytest subprocess (and so in its xdist workers): libfuse3 is not found.
NO_LIBFUSE3 = """
    import ctypes.util

    _real = ctypes.util.find_library
    ctypes.util.find_library = lambda name: None if name == "fuse3" else _real(name)
"""


@pytest.fixture
def without_libfuse3(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if name == "fuse3" else real(name))


@pytest.mark.usefixtures("without_libfuse3")
def test_without_libfuse3_the_power_cut_is_an_unavailable_fault_with_the_hint() -> None:
    found = power_loss_unavailable("sqlite")
    assert isinstance(found, FaultUnavailable)
    assert (found.fault, found.backend, found.reason) == ("power loss", "sqlite", "libfuse3 is not installed")
    assert "apt-get install fuse3" in found.hint
    assert "install: Debian/Ubuntu: apt-get install fuse3" in str(found)


def test_with_fuse_here_nothing_is_unavailable() -> None:
    """The machine these tests run on has FUSE (the bootstrap installs it): the probe says so."""
    assert lazymount.fuse_unavailable() is None
    assert power_loss_unavailable("sqlite") is None


def test_no_dev_fuse_names_the_container_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda path: path != "/dev/fuse" and real(path))
    found = power_loss_unavailable("postgres")
    assert found is not None
    assert found.reason.startswith("no /dev/fuse")
    assert "--device /dev/fuse" in found.hint


@pytest.mark.usefixtures("without_libfuse3")
@pytest.mark.parametrize("project_ini", [False, True], ids=["user-project", "this-repository"])
def test_the_main_job_lists_the_rows_and_does_not_fail(pytester: pytest.Pytester, project_ini: bool) -> None:
    """As a user's project runs it, and as the README's main job runs it in this repository (whose
    pyproject insists on fit for the project's own run: the command lifts it)."""
    args = [*SUITE, "--prism-backend=memstore,sqlite,localfs", "--prism-report=r.json", "-rs"]
    if project_ini:
        pytester.makeini("[pytest]\nprism_require_fit = true\n")
        args += ["-o", "prism_require_fit=false"]
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    result.assert_outcomes(skipped=3 * KINDS)  # memstore: not durable, nothing to prove
    result.stdout.fnmatch_lines([HEADING, REASON, HINT, *ROWS])
    result.stdout.fnmatch_lines(["SKIPPED*UNAVAILABLE fault: power loss cannot be injected into 'localfs'*"])
    report = json.loads((pytester.path / "r.json").read_text())
    [fault] = report["unavailable_faults"]
    assert fault["fault"] == "power loss"
    assert fault["reason"] == "libfuse3 is not installed"
    assert "apt-get install fuse3" in fault["hint"]
    assert fault["rows"] == [
        {"suite": "power_loss", "combination": {"backend": "localfs"}},
        {"suite": "power_loss", "combination": {"backend": "sqlite"}},
    ]
    assert report["totals"] == {"passed": 0, "failed": 0, "skipped": 3 * KINDS, "errors": 0}


@pytest.mark.usefixtures("without_libfuse3")
@pytest.mark.parametrize("insist", [["-o", "prism_require_fit=true"], ["--prism-pattern=power_loss"]])
def test_a_run_that_must_fit_every_suite_still_fails(pytester: pytest.Pytester, insist: list[str]) -> None:
    result = pytester.runpytest(*SUITE, "--prism-backend=memstore,sqlite", *insist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=KINDS, skipped=KINDS)
    result.stdout.fnmatch_lines(
        [
            "_* test_acknowledged_writes_survive_a_power_cut[[]backend=sqlite-clean[]] _*",
            "power loss cannot be injected into 'sqlite' on this machine: "
            "libfuse3 is not installed; install: Debian/Ubuntu: apt-get install fuse3*",
            HEADING,
            REASON,
            HINT,
            "  power_loss  backend=sqlite",
            "FAILED *backend=sqlite*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_under_xdist_the_controller_lists_what_the_workers_could_not_inject(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(no_libfuse3=NO_LIBFUSE3)
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{pytester.path}")
    result = pytester.runpytest_subprocess(
        *SUITE, "-p", "no_libfuse3", "--prism-backend=sqlite,localfs", "-n", "2", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines([HEADING, REASON, HINT, *ROWS])


def _job(backend: str) -> dict[str, Any]:
    fault = {"fault": "power loss", "reason": "libfuse3 is not installed", "hint": "apt-get install fuse3"}
    row = {"suite": "power_loss", "combination": {"backend": backend}}
    return {"suites": [], "unavailable_faults": [{**fault, "rows": [row]}]}


def test_a_ci_matrix_merge_keeps_every_jobs_unavailable_rows_and_shows_them_in_markdown() -> None:
    merged = merge_reports([parse(_job("sqlite")), parse(_job("postgres"))])
    [fault] = merged.unavailable_faults
    assert [row.combination["backend"] for row in fault.rows] == ["postgres", "sqlite"]
    text = render_markdown(merged)
    assert "### Unavailable faults (not injected)" in text
    assert (
        "- **power loss**: libfuse3 is not installed; install: apt-get install fuse3 "
        "(rows: power_loss backend=postgres, power_loss backend=sqlite)" in text
    )
    assert "unavailable_faults" not in merge_reports([parse({"suites": []})]).dump()
