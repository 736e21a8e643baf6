"""``--prism-depth`` (issue 49): how many examples each stateful row draws. A number or a named
level; a cluster's declared count (``stateful_examples``) is its count at the default depth and
scales with the depth; the header, the JSON report and the summary say the depth each row ran
at and the summary names the command that goes deeper; a bad value is one usage error line."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from prism_testkit.hunting import depth as depths
from prism_testkit.hunting.depth import DEFAULT, LEVELS, BadDepth, Depth, parse
from tests._stateful_sources import RECORDING_MACHINE, SLOW_MEMSTORE

# A stateful suite that records the max_examples of every search it makes.
SUITE = (
    """
from hypothesis.stateful import rule

import prism_testkit.stateful.runner as runner
from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

pytestmark = prism_suite("deep", backend=Slot.needs("keyvalue"))
ASKED = []
"""
    + RECORDING_MACHINE
    + """def test_examples(prism_env: PrismEnv, request) -> None:
    ASKED.clear()
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Puts(run))
    print(f"ASKED {prism_env.combination['backend']} {ASKED}")
"""
)


def asked(result: pytest.RunResult) -> dict[str, list[int]]:
    """backend -> the max_examples of the searches its row made, from the suite's prints."""
    found = {}
    for line in result.outlines:
        if "ASKED " in line:  # -s: after the module's name on its line
            backend, counts = line.partition("ASKED ")[2].split(" ", 1)
            found[backend] = json.loads(counts.rstrip("."))
    return found


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(SUITE)
    report = pytester.path / "report.json"
    return pytester.runpytest_subprocess(
        "--hypothesis-profile=prism-ci", "-p", "no:cacheprovider", "-s", f"--prism-report={report}", *args
    )


@pytest.fixture
def slowstore(third_party: Callable[..., None]) -> None:
    third_party("prism-slowstore", {"slowstore": SLOW_MEMSTORE}, {"slowstore": "slowstore"})


def test_names_and_numbers_parse_to_a_depth() -> None:
    assert parse(None) == Depth(DEFAULT)
    assert parse("quick") == Depth(1, name="quick", given=True)
    assert parse(" Deep ") == Depth(LEVELS["deep"], name="deep", given=True)
    assert parse("default").examples == DEFAULT
    assert parse("5") == Depth(5, given=True)
    assert parse("5").label() == "5"
    assert parse(None).label() == f"{DEFAULT} (default)"
    assert parse("deep").label() == f"{LEVELS['deep']} (deep)"


@pytest.mark.parametrize("bad", ["0", "-3", "2.5", "shallow", "1e3", "100001", "\x00", "twelve"])
def test_a_bad_depth_is_a_typed_error_naming_what_is_expected(bad: str) -> None:
    with pytest.raises(BadDepth, match="--prism-depth must be a number of examples per stateful row") as caught:
        parse(bad)
    assert "quick (1)" in str(caught.value)
    assert "deep (48)" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_capped_row_draws_its_cap_at_the_default_and_scales_with_the_depth() -> None:
    assert Depth(DEFAULT).for_row(3) == 3
    assert Depth(DEFAULT).for_row(None) == DEFAULT
    assert parse("quick").for_row(2) == 1  # never below one example
    assert parse("deep").for_row(2) == 2 * LEVELS["deep"] // DEFAULT
    assert parse("7").for_row(None) == 7


def test_deeper_is_the_next_level_or_a_hunt() -> None:
    assert depths.deeper_command(parse("quick")) == "--prism-depth=deep"
    assert depths.deeper_command(parse(None)) == "--prism-depth=deep"
    assert depths.deeper_command(parse("deep")) == depths.HUNT_HINT
    assert depths.deeper_command(parse("500")) == depths.HUNT_HINT


@pytest.mark.usefixtures("slowstore")
def test_the_depth_sets_every_rows_examples_and_the_header_report_and_summary_say_it(
    pytester: pytest.Pytester,
) -> None:
    result = run_suite(pytester, "--prism-backend=slowstore,memstore", "--prism-depth=5")
    result.assert_outcomes(passed=2)
    # memstore draws the depth (above none of the profile's 30); slowstore its cap scaled: 3 * 5 / 12
    assert asked(result) == {"memstore": [5], "slowstore": [2]}
    result.stdout.fnmatch_lines(
        [
            "*slowstore: *; stateful tests over it draw 2 examples each (hunts: the profile's)",
            "prism-testkit depth: 5 examples per stateful row (--prism-depth=5; deeper: --prism-depth=deep)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "prism-testkit depth: 2 stateful tests drew 2/5 examples each (--prism-depth=5); "
            "to search deeper: pytest * --prism-depth=deep",
            "  or hunt for a time instead: pytest * --prism-hunt=30m",
        ]
    )
    assert not [line for line in result.outlines if "--prism-depth=5 --prism-depth=deep" in line]
    report = json.loads((pytester.path / "report.json").read_text())
    depth_of = {row["combination"]["backend"]: row["depth"] for row in report["suites"]}
    assert depth_of == {"memstore": 5, "slowstore": 2}
    assert {entry["depth"] for row in report["suites"] for entry in row["tests"].values()} == {2, 5}
    assert report["depth"]["asked"] == "5"
    assert report["depth"]["drawn"] == [2, 5]
    assert report["depth"]["deeper"].endswith("--prism-depth=deep")


def test_without_the_option_a_row_draws_the_default(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, "--prism-backend=memstore")
    result.assert_outcomes(passed=1)
    assert asked(result) == {"memstore": [DEFAULT]}
    result.stdout.fnmatch_lines([f"prism-testkit depth: {DEFAULT} examples per stateful row (the default; deeper: *"])
    report = json.loads((pytester.path / "report.json").read_text())
    assert [row["depth"] for row in report["suites"]] == [DEFAULT]


def test_an_asked_depth_goes_past_the_profiles_count(pytester: pytest.Pytester) -> None:
    """prism-ci asks for 30 examples, which the default depth lowers to its own; a depth the run
    asks for is drawn even where it is above the profile's."""
    result = run_suite(pytester, "--prism-backend=memstore", "--prism-depth=quick")
    assert asked(result) == {"memstore": [1]}
    pytester.makeini("[pytest]\nprism_depth = 31\n")
    result = run_suite(pytester, "--prism-backend=memstore")
    assert asked(result) == {"memstore": [31]}
    # the prism-hunt profile's 5,000 examples (without --prism-hunt) give way to an asked depth too
    result = run_suite(pytester, "--prism-backend=memstore", "--hypothesis-profile=prism-hunt", "--prism-depth=2")
    assert asked(result) == {"memstore": [2]}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("--prism-depth=0", "*--prism-depth must be a number of examples per stateful row from 1*not '0'*"),
        ("--prism-depth=shallow", "*--prism-depth must be *quick (1), default (12), deep (48)*not 'shallow'*"),
        ("--prism-depth=", "*--prism-depth is empty: give a number of examples per stateful row*"),
    ],
)
def test_a_bad_depth_is_one_usage_error_line(pytester: pytest.Pytester, given: str, expected: str) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess(given, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str()


def test_a_depth_beside_a_hunt_is_a_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("--prism-depth=deep", "--prism-hunt=1s", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*--prism-depth has no effect with --prism-hunt*"])


def test_a_proofs_own_run_keeps_its_depth_whatever_the_outer_run_asks(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Issue 65: the project's test command (what .ci/run runs) asks --prism-depth=2; the proofs
    (tests/test_mutants.py and the others) run the shipped suites in a pytest of their own, as
    here, at the default depth or the one they name. The outer depth must not reach them (an
    environment variable or an ini setting would): this test fails if it does, under CI's depth."""
    from tests._suite_runs import suite_run

    monkeypatch.setenv("PYTHONPATH", str(request.config.rootpath))
    result = pytester.runpytest_subprocess(
        *suite_run(pytester.path, ("--prism-backend=memstore",), "stateful_queue"),
        *("-p", "no:cacheprovider", "--collect-only", "-q"),
    )
    outer = depths.of(request.config)
    shown = [line for line in result.outlines if line.startswith("prism-testkit depth:")]
    assert shown == [
        f"prism-testkit depth: {DEFAULT} examples per stateful row (the default; deeper: --prism-depth=deep)"
    ], f"the outer run's depth ({outer.source()}) reached the proof's own run: {shown}"
