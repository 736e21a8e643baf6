"""The whole table of outcomes (docs/report-outcomes.md), cell by cell, against a reference model
written here apart from the code: what each phase of a real pytest run adds to its test and row,
and how a row merges from one or two shards whatever the tests' outcomes in each.

The rule the model keeps: a red phase anywhere (any phase, any test, any shard) makes the row red.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prism_testkit.cli import main
from prism_testkit.report.matrix import compliance_matrix
from prism_testkit.report.merge import ReportMergeError, merge_reports, read_report
from prism_testkit.report.shape import parse

# ---- the reference model -------------------------------------------------------------------

SETUPS = ("passed", "error", "skipped")
CALLS = ("passed", "failed", "skipped", "xfail", "xpass", "xpass_strict")
TEARDOWNS = ("passed", "error", "skipped")
MARKED = ("xfail", "xpass", "xpass_strict")  # the calls under an xfail mark
CALL_PART = {
    "passed": "passed",
    "failed": "failed",
    "skipped": "skipped",
    "xfail": "skipped",
    "xpass": "passed",
    "xpass_strict": "failed",
}


def scenarios() -> list[tuple[str, str | None, str]]:
    """Every (setup, call, teardown) a test can have: no call after a failed or skipped setup."""
    found: list[tuple[str, str | None, str]] = []
    for setup, teardown in itertools.product(SETUPS, TEARDOWNS):
        calls: tuple[str | None, ...] = CALLS if setup == "passed" else (None,)
        found += [(setup, call, teardown) for call in calls]
    return found


def model_outcome(setup: str, call: str | None, teardown: str) -> str:
    parts = [] if setup == "passed" else [setup]
    parts += [] if call is None else [CALL_PART[call]]
    # an xfail mark makes an exception in any phase an expected failure, as pytest counts it
    if teardown == "skipped":
        parts.append("skipped")
    elif teardown == "error":
        parts.append("skipped" if call in MARKED else "error")
    return "+".join(parts)


def model_counts(outcomes: list[str]) -> dict[str, int]:
    parts = Counter(part for outcome in outcomes for part in outcome.split("+"))
    return {"passed": parts["passed"], "failed": parts["failed"], "skipped": parts["skipped"], "errors": parts["error"]}


def model_colour(outcomes: list[str]) -> str:
    parts = {part for outcome in outcomes for part in outcome.split("+")}
    return "red" if parts & {"failed", "error"} else "green" if "passed" in parts else "yellow"


def model_status(outcomes: list[str], covered: int) -> str:
    colour = model_colour(outcomes)
    if colour != "yellow":
        return {"red": "failed", "green": "passed"}[colour]
    return "covered" if covered and covered == model_counts(outcomes)["skipped"] else "skipped"


# ---- every phase of a real run ------------------------------------------------------------

MODULE = """
import pytest
from prism_testkit import PrismEnv, Slot, prism_suite

pytestmark = prism_suite({suite!r}, backend=Slot.needs("keyvalue"))

@pytest.fixture
def setup_passed():
    yield

@pytest.fixture
def setup_error():
    raise RuntimeError("setup broke")

@pytest.fixture
def setup_skipped():
    pytest.skip("skipped in setup")

@pytest.fixture
def teardown_passed():
    yield

@pytest.fixture
def teardown_skipped():
    yield
    pytest.skip("skipped in teardown")

@pytest.fixture
def teardown_error():
    yield
    raise RuntimeError("teardown broke")

{mark}
def {name}(prism_env: PrismEnv, teardown_{teardown}, setup_{setup}) -> None:
    {body}
"""
BODY = {
    "passed": "pass",
    "failed": "assert False, 'call failed'",
    "skipped": "pytest.skip('skipped in the call')",
    "xfail": "assert False, 'expected'",
    "xpass": "pass",
    "xpass_strict": "pass",
    None: "pass",
}
MARK = {"xfail": "@pytest.mark.xfail(strict=False)", "xpass": "@pytest.mark.xfail(strict=False)"}
MARK["xpass_strict"] = "@pytest.mark.xfail(strict=True)"
ANSI = {"31": "red", "32": "green", "33": "yellow"}


def scenario_name(setup: str, call: str | None, teardown: str) -> str:
    return f"test_setup_{setup}_call_{call or 'none'}_teardown_{teardown}"


def test_every_phase_outcome_of_a_real_run_lands_in_its_test_row_colour_and_cell(pytester: pytest.Pytester) -> None:
    """One suite (one row) per scenario, so each row's colour is that scenario's alone."""
    cases = scenarios()
    for setup, call, teardown in cases:
        name = scenario_name(setup, call, teardown)
        module = MODULE.format(
            suite=name.removeprefix("test_"),
            mark=MARK.get(call or "", ""),
            name=name,
            setup=setup,
            teardown=teardown,
            body=BODY[call],
        )
        pytester.makepyfile(**{name: module})
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--color=yes", "--prism-backend=memstore", "--prism-report=r.json"
    )
    report = json.loads((pytester.path / "r.json").read_text())
    rows = {row["suite"]: row for row in report["suites"]}
    assert len(rows) == len(cases)
    lines = {}
    for line in result.stdout.lines:  # the terminal's table: one coloured line per row
        match = re.match(r"^\x1b\[(3[123])m(setup_\S+)\s", line)
        if match:
            lines[match.group(2)] = ANSI[match.group(1)]
    cells = compliance_matrix(parse(report)).dump()["cells"]
    for setup, call, teardown in cases:
        suite = scenario_name(setup, call, teardown).removeprefix("test_")
        outcome = model_outcome(setup, call, teardown)
        row = rows[suite]
        (entry,) = row["tests"].values()
        assert entry["outcome"] == outcome, suite
        assert {name: row[name] for name in ("passed", "failed", "skipped", "errors")} == model_counts([outcome]), suite
        assert lines[suite] == model_colour([outcome]), suite
        assert cells[suite]["memstore"]["status"] == model_status([outcome], 0), suite
    # and the report's totals are pytest's own
    counted = model_counts([model_outcome(*case) for case in cases])
    assert report["totals"] == counted
    parsed = result.parseoutcomes()
    assert parsed.get("errors", 0) == counted["errors"]
    assert parsed.get("failed", 0) == counted["failed"]
    assert parsed.get("passed", 0) + parsed.get("xpassed", 0) == counted["passed"]
    assert parsed.get("skipped", 0) + parsed.get("xfailed", 0) == counted["skipped"]


# ---- every way to merge a row from one or two shards ---------------------------------------

COVERED = {"outcome": "skipped", "covered_by": {"cluster": "single"}}
# every entry a shard can hold for one test: each scenario's outcome, and a skip left to the twin
ENTRIES = [{"outcome": o} for o in dict.fromkeys(model_outcome(*case) for case in scenarios())] + [COVERED]


def entry_id(entry: dict[str, Any] | None) -> str:
    return "absent" if entry is None else ("covered" if entry.get("covered_by") else entry["outcome"])


def model_merge(first: dict[str, Any] | None, second: dict[str, Any] | None) -> dict[str, Any] | None:
    """None: the two shards contradict each other."""
    if first is None or second is None:
        found = first or second
        assert found is not None
        return found
    if first.get("covered_by") and not second.get("covered_by"):
        return second
    if second.get("covered_by") and not first.get("covered_by"):
        return first
    return first if first["outcome"] == second["outcome"] else None


def shard_row(tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A row as a run writes it, for one shard's share of the tests."""
    outcomes = [entry["outcome"] for entry in tests.values()]
    row: dict[str, Any] = {"suite": "keyvalue", "combination": {"backend": "cluster"}, **model_counts(outcomes)}
    row.update(anomalies={}, tolerated={}, faults={}, verdicts={}, duration_s=0.0)
    covered = [entry for entry in tests.values() if entry.get("covered_by")]
    if covered:
        row["covered"] = len(covered)
        row["covered_by"] = {"cluster": "single"}
    row["tests"] = {test: dict(entry, duration_s=0.0) for test, entry in tests.items()}
    return row


def shard_report(tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    suites = [shard_row(tests)] if tests else []
    backends = [{"backend": "cluster", "provisioned": "embedded"}]
    return {"suites": suites, "no_runnable_combinations": [], "not_applicable": [], "backends": backends}


def check_merge(shards: list[dict[str, dict[str, Any]]], exit_code: int | None = None) -> None:
    """Merge the shards (in every order) and compare the row, its colour and cell to the model."""
    expected: dict[str, dict[str, Any] | None] = {}
    for shard in shards:
        for test, entry in shard.items():
            expected[test] = model_merge(expected[test], entry) if test in expected else entry
    contradiction = any(entry is None for entry in expected.values())
    for order in itertools.permutations(shards):
        loaded = [read_report(shard_report(shard), f"shard{i}.json") for i, shard in enumerate(order)]
        if contradiction:
            with pytest.raises(ReportMergeError, match="disagree"):
                merge_reports(loaded)
            continue
        merged = merge_reports(loaded)
        (row,) = merged.dump()["suites"]
        outcomes = [entry["outcome"] for entry in expected.values() if entry is not None]
        covered = sum(1 for entry in expected.values() if entry is not None and entry.get("covered_by"))
        assert {test: entry["outcome"] for test, entry in row["tests"].items()} == {
            test: entry["outcome"] for test, entry in expected.items() if entry is not None
        }
        assert {name: row[name] for name in ("passed", "failed", "skipped", "errors")} == model_counts(outcomes)
        assert int(row.get("covered", 0)) == covered
        status = compliance_matrix(merged).cells["keyvalue"]["cluster"].status
        assert status == model_status(outcomes, covered)
    if exit_code is not None:
        assert exit_code == (2 if contradiction else 1 if model_colour(outcomes) == "red" else 0)


@pytest.mark.parametrize("second", [None, *ENTRIES], ids=entry_id)
@pytest.mark.parametrize("first", ENTRIES, ids=entry_id)
def test_one_test_merged_from_one_or_two_shards_follows_the_table(
    first: dict[str, Any], second: dict[str, Any] | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards = [{"t::a": first}] + ([{"t::a": second}] if second is not None else [{"t::b": {"outcome": "passed"}}])
    paths = []
    for i, shard in enumerate(shards):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(shard_report(shard)))
    code = main(["report", "merge", *map(str, paths)])
    capsys.readouterr()
    check_merge(shards, exit_code=code)


TESTS = ("t::a", "t::b", "t::c")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(TESTS), st.sampled_from(ENTRIES), st.sampled_from(("one", "two", "both"))),
        min_size=1,
        max_size=6,
    )
)
@example([("t::a", COVERED, "one"), ("t::b", {"outcome": "skipped"}, "two")])  # covered and skipped: skipped
@example([("t::a", COVERED, "one"), ("t::b", COVERED, "two")])  # every skip covered: covered
@example([("t::a", COVERED, "both"), ("t::b", {"outcome": "skipped+error"}, "two")])
def test_a_row_of_several_tests_split_over_shards_is_red_when_any_phase_is(
    placements: list[tuple[str, dict[str, Any], str]],
) -> None:
    """A row's tests spread over two shards however Hypothesis likes (a test may sit in both,
    with the same or another outcome): the merge equals the model, whatever the order."""
    one: dict[str, dict[str, Any]] = {}
    two: dict[str, dict[str, Any]] = {}
    for test, entry, where in placements:
        for shard in (one, two) if where == "both" else (one,) if where == "one" else (two,):
            shard.setdefault(test, entry)
    check_merge([shard for shard in (one, two) if shard])
