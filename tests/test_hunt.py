"""Hunts: a time budget, progress, a shared example database and a summary (issue 14 §3)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prism_testkit.hunting.hunt import HuntError, HuntPlan, HuntTally, ledger_path, open_database, parse_budget

# A stateful suite with a planted bug: rare enough that a round rarely finds it at once,
# common enough that a short hunt does. Its machine judges every example like the real ones.
PLANTED = """
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.jepsen.checkers import Anomaly, suite_verdict
from prism_testkit.jepsen.history import History
from prism_testkit.jepsen.runner import StatefulRun

pytestmark = prism_suite("stateful_planted", backend=Slot.needs("keyvalue"))


class Planted(RuleBasedStateMachine):
    def __init__(self, run):
        super().__init__()
        self.run = run
        self.history = History()
        self.high = 0

    @rule(n=st.integers(0, 10_000))
    def put(self, n):
        self.history.invoke("w", "put", "k", n).ok()
        self.high += n > 9_000

    def teardown(self):
        found = {"planted": [Anomaly("planted", "three values above 9000", self.history)]} if self.high >= 3 else {}
        self.run.judge(self.history, [suite_verdict("planted", found, {"puts": len(self.history) // 2})], "planted")


def test_planted(prism_env: PrismEnv, request) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Planted(run))
"""


def test_a_budget_is_a_positive_finite_duration() -> None:
    assert parse_budget("10m") == 600
    assert parse_budget("90s") == 90
    assert parse_budget(" 2h ") == 7200
    for bad in ("0s", "infinite", "soon", "-1m"):
        with pytest.raises(HuntError, match="--prism-hunt"):
            parse_budget(bad)


def test_the_budget_is_split_over_the_hunted_tests_and_workers() -> None:
    plan = HuntPlan(budget=600, database=None, database_label=None, hunted_tests=30, workers=2)
    assert plan.allot() == pytest.approx(40, abs=0.5)  # 1200 worker-seconds over 30 tests
    plan.finished()
    plan.started -= 300  # the first test overran: 300 s gone, 29 tests to go
    assert plan.allot() == pytest.approx(300 * 2 / 29, abs=0.5)
    plan.started -= 1000  # the budget is spent: the next test gets its one round, no more
    assert plan.allot() == 0
    assert HuntPlan(budget=60, database=None, database_label=None).allot() == pytest.approx(60, abs=0.5)


def test_workers_share_one_count_so_the_last_tests_use_the_time_left(tmp_path: Path) -> None:
    """xdist hands tests to whichever worker is free: a worker cannot assume it gets half."""
    ledger = tmp_path / "run.ledger"
    first, second = (
        HuntPlan(budget=600, database=None, database_label=None, hunted_tests=4, workers=2, ledger=ledger)
        for _ in range(2)
    )
    assert first.allot() == pytest.approx(300, abs=0.5)  # 1200 worker-seconds, 4 tests
    assert first.allot() == pytest.approx(400, abs=0.5)  # the other worker is still busy: 3 left
    # The second worker starts the last test: it may use all the wall-clock time left, and
    # never more (two tests left would otherwise give it 600 s of a 600 s budget, twice over).
    assert second.allot() == pytest.approx(600, abs=0.5)
    assert second.allot() == pytest.approx(600, abs=0.5)
    assert ledger.read_text() == "...."


def test_a_hunted_test_that_skipped_counts_as_started(tmp_path: Path) -> None:
    """Two of four hunted tests skip (not applicable): the last one that hunts gets all the
    time left, not a share kept for the two that never come."""
    plan = HuntPlan(budget=600, database=None, database_label=None, hunted_tests=4, workers=1)
    plan.hunted_ids = {"a", "b", "c", "d"}
    assert plan.allot("a") == pytest.approx(150, abs=0.5)
    plan.ended("b")
    plan.ended("c")
    plan.ended("c")  # a skip reported twice (setup, teardown) counts once
    plan.ended("not-hunted")
    assert plan.allot("d") == pytest.approx(600, abs=0.5)
    plan.ended("d")  # skipped after it started hunting: already counted
    assert plan.allot("e") == pytest.approx(600, abs=0.5)


def test_a_plain_test_of_a_stateful_suite_counts_as_started_when_it_ends() -> None:
    """A test of a stateful suite that runs no machine neither hunts nor skips: its teardown
    counts it, so the hunted test after it is not kept short for it (the 58-minute hunt)."""
    plan = HuntPlan(budget=600, database=None, database_label=None, hunted_tests=3, workers=1)
    plan.hunted_ids = {"plain", "b", "c"}
    plan.ended("plain")  # its teardown report
    assert plan.allot("b") == pytest.approx(300, abs=0.5)
    plan.ended("b")  # a hunted test's own teardown counts nothing more
    assert plan.allot("c") == pytest.approx(600, abs=0.5)


def test_a_dead_runs_ledger_is_swept_and_a_live_one_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only ledger files in the harness's own parent dir; never a look-alike in the temp dir."""
    import os
    import tempfile

    from prism_testkit.provision.workdirs import workdir_parent

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    parent = workdir_parent()
    dead, live = parent / "hunt-dead.ledger", parent / "hunt-live.ledger"
    dead.write_text("..")
    live.write_text(".")
    look_alike = tmp_path / "prism-hunt-users.ledger"
    look_alike.write_text("mine")
    for old in (dead, look_alike):
        os.utime(old, (0, 0))
    assert ledger_path("new") == parent / "hunt-new.ledger"
    assert not dead.exists()
    assert live.exists()
    assert look_alike.exists()


def test_progress_is_rate_limited_but_every_test_end_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    plan = HuntPlan(budget=60, database=None, database_label=None, emit=lines.append)
    monkeypatch.setenv("PRISM_HUNT_PROGRESS_EVERY", "3600")
    tally = HuntTally(rounds=1, examples=10, faults=4, seconds=5)
    plan.progress("t", tally)
    plan.progress("t", tally)  # within the interval: not shown
    plan.progress("t", tally, final=True)
    assert len(lines) == 2
    assert "10 examples in 1 rounds, 4 faults injected" in lines[-1]


def test_a_directory_database_is_created(tmp_path: Path) -> None:
    database = open_database(str(tmp_path / "shared" / "examples"))
    database.save(b"k", b"v")
    assert list(database.fetch(b"k")) == [b"v"]


def test_a_database_url_of_an_unknown_scheme_is_refused_not_made_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HuntError, match="unsupported scheme 'ftp'") as caught:
        open_database("ftp://u:pw@x")
    assert "pw" not in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_an_unreachable_redis_database_is_a_clear_error_without_credentials() -> None:
    with pytest.raises(HuntError) as caught:
        open_database("redis://user:s3cret@127.0.0.1:1/0")
    assert "cannot reach Redis" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hunts run here leave their start ledger in this test's temp dir, not the machine's."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def hunt(pytester: pytest.Pytester, database: Path, *extra: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "--prism-backend=memstore", "--prism-hunt=40s", f"--prism-hunt-db={database}", "-p", "no:cacheprovider", *extra
    )


def test_a_hunt_finds_a_planted_failure_and_another_machine_replays_it_first(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRISM_HUNT_PROGRESS_EVERY", "0")  # a line per round
    # Under `pytest -n 2` the subprocess inherits an xdist worker's variables: the plugin must
    # still know it is no worker (it reads xdist's worker input, not the environment).
    pytester.makepyfile(test_planted=PLANTED)
    database = tmp_path / "shared-examples"

    first = hunt(pytester, database)
    first.assert_outcomes(failed=1)
    output = first.stdout.str()
    assert "three values above 9000" in output
    # progress: a line per round (the failure may come in the first one: then it says so)
    assert re.search(r"prism-hunt (hunting|FAILED) .*test_planted.*: \d+ examples in 1 rounds", output)
    assert "1 stateful tests hunted" in output  # the summary
    assert "1 failing" in output
    assert str(database) in output

    # The second machine (an xdist run here: progress comes from a worker) shares the database:
    # its first round replays the saved failure before generating anything new.
    report = tmp_path / "hunt.json"
    second = hunt(pytester, database, "-n", "1", f"--prism-report={report}")
    second.assert_outcomes(failed=1)
    replayed = re.search(r"prism-hunt \[gw0\] FAILED .*: (\d+) examples in (\d+) rounds", second.stderr.str())
    assert replayed is not None, second.stderr.str()
    assert replayed.group(2) == "1"
    # The summary lists each shrunk failure with its verdict and the command that replays it,
    # and so does the JSON report (from a worker: it crossed xdist).
    summary = second.stdout.str()
    assert re.search(r"FAILED \S*test_planted\S*: planted: INVALID \(planted\)", summary), summary
    # Its seed (and the command that draws the example again from it), its schedule file, the
    # one-line replay of that schedule, and what that replay gave when tried once.
    seed = re.search(
        r"  seed: (\d+) \(pytest \S*test_planted\S* --prism-backend=memstore .*--hypothesis-seed=(\d+)", summary
    )
    assert seed is not None, summary
    assert seed.group(1) == seed.group(2), summary
    assert re.search(r"  schedule: \S*/\.prism-schedules/\S*test_planted\S*\.json\n", summary), summary
    assert re.search(
        r"  replay: prism-testkit replay \S*\.json\n  replayed once: reproduced: planted: INVALID", summary
    )
    failures = json.loads(report.read_text())["hunt"]["failures"]
    assert [(f["failure"], f["replay"].split()[:2]) for f in failures] == [
        ("planted: INVALID (planted)", ["prism-testkit", "replay"])
    ]
    assert failures[0]["replayed"].startswith("reproduced: ")
    assert Path(failures[0]["schedule"]).is_file()
    assert "test_planted" in failures[0]["test"]

    elsewhere = hunt(pytester, tmp_path / "empty-examples", "-p", "no:randomly", "--prism-hunt=2s")
    assert "1 stateful tests hunted" in elsewhere.stdout.str()  # a fresh database: nothing replayed first


def test_a_hunt_given_a_seed_draws_the_same_rounds_on_every_run(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """--hypothesis-seed fixes the sequence of round seeds (a CI hunt that failed fails again
    with the same seed); another seed draws other rounds."""
    pytester.makepyfile(test_planted=PLANTED)

    def failing_seed(name: str, seed: int) -> str:
        result = hunt(pytester, tmp_path / name, "-p", "no:randomly", f"--hypothesis-seed={seed}")
        result.assert_outcomes(failed=1)
        found = re.search(r"  seed: (\d+) ", result.stdout.str())
        assert found is not None, result.stdout.str()
        return found.group(1)

    first = failing_seed("a", 7)
    assert failing_seed("b", 7) == first
    assert failing_seed("c", 8) != first
