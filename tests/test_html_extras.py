"""A failing stateful test's evidence where users already look
(:mod:`prism_testkit.report.html_extras`): pytest-html's row links its timeline and shows its
verdict; ``--junitxml`` names the timeline and the run's HTML report by absolute paths; a run
without pytest-html active is left as it was."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html import escape, unescape
from pathlib import Path
from typing import Any

import pytest

from tests._suite_runs import suite_run

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("pytest_html")  # the dev extra installs it

# the seeded bug of tests/mutants: a queue that acks on delivery loses a message (simulated: cheap)
MUTANT = ("-p", "tests.mutants.queue_acks_on_delivery", "--prism-backend=memstore", "--prism-simulate")
# a conftest of the sandbox that says whether pytest-html's extras were ever imported (pytest
# itself imports the package, for its version, even under -p no:html; the plugin, not then)
SPY = """
import sys

def pytest_unconfigure(config):
    with open("imported.txt", "w") as f:
        f.write(str("pytest_html.extras" in sys.modules))
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeconftest(SPY)
    return pytester.runpytest_subprocess(
        *suite_run(pytester.path, MUTANT, "stateful_queue"),
        *("--hypothesis-profile=prism-mutant", "-p", "no:cacheprovider", "-k", "under_faults"),
        *("--junitxml=out/junit.xml", "--prism-report=out/report.json", "-W", "error"),  # pytest-html warns nothing
        *args,
    )


def properties(junit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for prop in ET.parse(junit).iter("property"):
        found.setdefault(prop.get("name", ""), []).append(prop.get("value", ""))
    return found


def pytest_html_tests(page: Path) -> dict[str, list[dict[str, Any]]]:
    """The tests of a pytest-html report, as its page holds them (JSON in an attribute)."""
    blob = re.search(r'data-jsonblob="([^"]*)"', page.read_text())
    assert blob is not None
    tests: dict[str, list[dict[str, Any]]] = json.loads(unescape(blob.group(1)))["tests"]
    return tests


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["serial", "xdist"])  # extras travel from a worker
def test_a_failing_suite_test_links_its_timeline_and_verdict_in_pytest_html_and_junit(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    out = pytester.path / "out"
    html = ("--html=out/tests.html", "--self-contained-html", "--prism-report-html=out/prism.html")
    result = run(pytester, *workers, *html)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]

    found = properties(out / "junit.xml")
    [timeline] = {Path(p) for p in found["prism_timeline"]}
    assert timeline.is_absolute()
    assert timeline.is_file()
    assert timeline.parent == out / "prism-timelines"  # beside --prism-report
    [verdict] = set(found["prism_verdict"])
    assert re.search(r"INVALID \(\d+ lost\)", verdict), verdict  # how many: the search's, not the guarantee's
    # every suite test names the run's page, absolute like the timeline, and the page is there
    assert {Path(p) for p in found["prism_report_html"]} == {out / "prism.html"}
    assert (out / "prism.html").is_file()
    suite_tests = sum(1 for case in ET.parse(out / "junit.xml").iter("testcase"))
    assert len(found["prism_report_html"]) == suite_tests

    [row] = [
        row for rows in pytest_html_tests(out / "tests.html").values() for row in rows if row["result"] == "Failed"
    ]
    href = timeline.relative_to(out).as_posix()  # relative: the report and its timelines travel together
    assert {"name": "prism timeline", "format_type": "url", "content": href}.items() <= row["extras"][0].items()
    assert ">prism timeline</a>" in "".join(row["resultsTableRow"])  # in the row's links column
    [shown] = [extra["content"] for extra in row["extras"] if extra["format_type"] == "html"]
    assert f"prism verdict: {escape(verdict)}" in shown
    assert f'href="{href}"' in shown
    assert (pytester.path / "imported.txt").read_text() == "True"


def test_without_pytest_html_active_nothing_imports_it_and_junit_is_as_before(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = run(pytester, "-p", "no:html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    assert (pytester.path / "imported.txt").read_text() == "False"
    found = properties(pytester.path / "out" / "junit.xml")
    assert "prism_report_html" not in found  # no --prism-report-html: no page to name
    [timeline] = found["prism_timeline"]
    assert Path(timeline).is_file()
    assert found["prism_verdict"]
    result.stdout.no_fnmatch_line("*pytest-html*")
