"""Hunts: a time budget, progress, a shared example database and a summary (issue 14 §3)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from prism_testkit.hunting.hunt import (
    HuntError,
    HuntPlan,
    HuntTally,
    failure_lines,
    ledger_path,
    open_database,
    parse_budget,
)
from prism_testkit.hunting.identity import IdentityKeyedDatabase, module_identity
from prism_testkit.simulation.clock import ManualClock
from tests._install_venv import REPOSITORY, pytest_in

# A stateful suite with a planted bug (``needed`` values above ``above`` in its draws), its
# machine judging every example like the real ones.
MACHINE = """
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.stateful.checkers import Anomaly, suite_verdict
from prism_testkit.stateful.history import History
from prism_testkit.stateful.runner import StatefulRun

pytestmark = prism_suite("stateful_{suite}", backend=Slot.needs("keyvalue"))


class {machine}(RuleBasedStateMachine):
    def __init__(self, run):
        super().__init__()
        self.run = run
        self.history = History()
        self.high = 0

    @rule(n=st.integers(0, 10_000))
    def put(self, n):
        self.history.invoke("w", "put", "k", n).ok()
        self.high += n > {above}

    def teardown(self):
        found = {{"{suite}": [Anomaly("{suite}", "{what}", self.history)]}} if self.high >= {needed} else {{}}
        self.run.judge(self.history, [suite_verdict("{suite}", found, {{"puts": len(self.history) // 2}})], "{suite}")
"""

# Planted: rare enough that a round rarely finds it at once, common enough that a short hunt does.
PLANTED = (
    MACHINE.format(suite="planted", machine="Planted", above=9_000, needed=3, what="three values above 9000")
    + """

def test_planted(prism_env: PrismEnv, request) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Planted(run))
"""
)

# Easy: any round finds it (one value above 5000 in its 120 draws); beside it a plain test that
# drives the machine step by step (it hunts nothing) and a second hunting test.
EASY = (
    MACHINE.format(suite="easy", machine="Easy", above=5_000, needed=1, what="a value above 5000")
    + """

def test_easy(prism_env: PrismEnv, request) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Easy(run))


def test_plain(prism_env: PrismEnv, request) -> None:
    run = StatefulRun(prism_env, request)
    machine = Easy(run)
    machine.put(1)
    machine.teardown()


def test_other(prism_env: PrismEnv, request) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Easy(run))
"""
)


def test_a_budget_is_a_positive_finite_duration() -> None:
    assert parse_budget("10m") == 600
    assert parse_budget("90s") == 90
    assert parse_budget(" 2h ") == 7200
    for bad in ("0s", "infinite", "soon", "-1m"):
        with pytest.raises(HuntError, match="--prism-hunt"):
            parse_budget(bad)


def plan_of(*tests: str, budget: float = 600, workers: int = 1, **more: Any) -> HuntPlan:
    plan = HuntPlan(budget=budget, database=None, database_label=None, workers=workers, **more)
    plan.hunted_ids = set(tests)
    return plan


def test_the_budget_is_split_over_the_hunted_tests_and_workers() -> None:
    clock = ManualClock()
    plan = plan_of(*(f"t{n}" for n in range(30)), workers=2, clock=clock)
    assert plan.allot("t0") == pytest.approx(40)  # 1200 worker-seconds over 30 tests
    clock.now += 340  # the first test overran by 300 s
    plan.finished()
    assert plan.allot("t1") == pytest.approx(860 / 29)  # 1200 - 340 over 29 tests
    clock.now += 2000  # this one overran by far more: the budget is spent
    plan.finished()
    assert plan.allot("t2") == 0  # the next test gets its one round, no more
    assert plan_of("only", budget=60).allot("only") == pytest.approx(60)


def test_the_budget_is_test_time_not_wall_time() -> None:
    """Time before the first hunted test (collection, servers starting) and between hunted
    tests (plain tests, other suites) is not taken from the hunt."""
    clock = ManualClock()
    plan = plan_of("a", "b", clock=clock)
    clock.now += 500  # servers starting, other suites' tests
    assert plan.allot("a") == pytest.approx(300)
    clock.now += 300
    plan.finished()
    clock.now += 900  # a plain test between them
    assert plan.allot("b") == pytest.approx(300)


def test_workers_share_one_count_so_the_last_tests_use_the_time_left(tmp_path: Path) -> None:
    """xdist hands tests to whichever worker is free: a worker cannot assume it gets half."""
    ledger, clock = tmp_path / "run.ledger", ManualClock()
    first, second = (plan_of("a", "b", "c", "d", workers=2, ledger=ledger, clock=clock) for _ in range(2))
    assert first.allot("a") == pytest.approx(300)  # 1200 worker-seconds, 4 tests
    assert second.allot("b") == pytest.approx(300)  # 900 left, 3 tests
    clock.now += 100
    second.finished()  # b ended 200 s early: the tests after it get that time
    assert second.allot("c") == pytest.approx(400)  # 1200 - 300 (a, still hunting) - 100 (b), 2 tests
    clock.now += 200
    first.finished()  # a took its 300 s
    # The last test may take what is left of the pool (400 s), but never more than what is left
    # of its own worker's budget: 600 - 300.
    assert first.allot("d") == pytest.approx(300)
    lines = ledger.read_text().splitlines()
    assert sum(1 for line in lines if '"start"' in line) == 4


def test_a_worker_never_hunts_longer_than_the_budget() -> None:
    clock = ManualClock()
    plan = plan_of("a", "b", workers=2, clock=clock)
    assert plan.allot("a") == pytest.approx(600)  # 1200 worker-seconds over 2 tests, at most 600 each
    clock.now += 600
    plan.finished()
    assert plan.allot("b") == 0  # this worker's 600 s are spent, however much the pool holds


def test_a_hunted_test_that_skipped_counts_as_started(tmp_path: Path) -> None:
    """Two of four hunted tests skip (not applicable): the last one that hunts gets all the
    time left, not a share kept for the two that never come."""
    clock = ManualClock()
    plan = plan_of("a", "b", "c", "d", clock=clock)
    assert plan.allot("a") == pytest.approx(150)
    clock.now += 150
    plan.finished()
    plan.ended("b")
    plan.ended("c")
    plan.ended("c")  # a skip reported twice (setup, teardown) counts once
    plan.ended("not-hunted")
    assert plan.allot("d") == pytest.approx(450)
    clock.now += 450
    plan.finished()
    plan.ended("d")  # skipped after it started hunting: already counted
    assert plan.allot("e") == 0  # a test collection did not count: the budget is spent


def test_only_the_selected_tests_that_run_a_machine_share_the_budget(pytester: pytest.Pytester) -> None:
    """Plain tests of a stateful suite (a machine driven step by step) and tests deselected by
    ``-k`` get no share: the one test that hunts gets the whole budget."""
    pytester.makepyfile(test_stateful_easy=EASY)
    result = pytester.runpytest_subprocess(
        "--prism-backend=memstore", "--prism-hunt=30s", "-k", "not other", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=1, passed=1, deselected=1)
    output = result.stdout.str()
    assert re.search(r"prism-hunt FAILED \S*::test_easy\S*: \d+ examples in \d+ rounds, .* of 30s", output), output
    assert len(re.findall(r"prism-hunt FAILED", output)) == 1, output  # said once, when the test ends


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


def test_a_redis_database_keeps_a_failure_for_eight_days_after_its_last_write(
    prism_binaries: Mapping[str, Path],
) -> None:
    """What docs/hunting.md promises of a ``redis://`` database, on a real Redis: an entry is
    read back under the ``prism-hunt:`` prefix and expires 8 days after it was last written
    (a later write of the same test starts its 8 days again)."""
    import redis

    from tests.conftest import runtime_of

    eight_days = 8 * 24 * 3600
    for runtime in runtime_of("redis", "hunt-db", prism_binaries):
        availability = runtime.availability["redis"]
        if not availability.available:
            pytest.fail(f"redis cannot be provisioned here: {availability.detail}")
        url = runtime.endpoint("redis").url
        database = open_database(url)
        database.save(b"test-key", b"failing example")
        assert list(database.fetch(b"test-key")) == [b"failing example"]
        client = redis.Redis.from_url(url)
        try:
            (key,) = [k for k in client.keys(b"prism-hunt:*") if b"test-key" in k]
            client.expire(key, 60)  # as if written long ago: the next write restarts the clock
            database.save(b"test-key", b"another failing example")
            assert eight_days - 60 <= client.ttl(key) <= eight_days
        finally:
            client.close()


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
    # It came from the database, not from a seed (the round's seed would search afresh): the
    # summary names the database and the test's identity, and the command that replays from
    # there; then its schedule file, the one-line replay of that schedule, and what that replay
    # gave when tried once.
    assert re.search(rf"  from the database {database}, saved under test_planted::test_planted\[", summary), summary
    assert "\n  seed: " not in summary
    assert re.search(
        rf"  replay from the database: pytest \S*test_planted\S* --prism-backend=memstore .*--prism-hunt-db={database}",
        summary,
    )
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


# -- one identity per test, whatever the layout (issue 51) ----------------------------------


def test_the_suites_identity_is_the_same_installed_and_checked_out(tmp_path: Path) -> None:
    checkout = Path(__file__).parents[1] / "prism_testkit" / "suites" / "test_stateful_wal.py"
    assert module_identity(checkout) == "prism_testkit.suites.test_stateful_wal"
    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "prism_testkit" / "suites"
    installed.mkdir(parents=True)
    for folder in (installed, installed.parent):
        (folder / "__init__.py").write_text("")
    (installed / "test_stateful_wal.py").write_text("")
    assert module_identity(installed / "test_stateful_wal.py") == "prism_testkit.suites.test_stateful_wal"


def test_a_shared_database_keys_a_tests_examples_by_its_identity() -> None:
    """Two layouts digest the test differently (its node id differs); bound to one identity,
    they read and write the same entries, sub-keys (``.secondary``) included."""
    from hypothesis.database import InMemoryExampleDatabase

    shared = InMemoryExampleDatabase()
    here, there = IdentityKeyedDatabase(shared), IdentityKeyedDatabase(shared)
    here.bind("pkg.test_stateful_x::test_y[backend=memstore]")
    there.bind("pkg.test_stateful_x::test_y[backend=memstore]")
    here.save(b"a" * 48, b"failing")
    here.save(b"a" * 48 + b".secondary", b"older")
    assert list(there.fetch(b"b" * 48)) == [b"failing"]
    assert list(there.fetch(b"b" * 48 + b".secondary")) == [b"older"]
    assert there.holds("pkg.test_stateful_x::test_y[backend=memstore]")
    there.bind("pkg.test_stateful_x::test_y[backend=sqlite]")  # another test: nothing saved
    assert list(there.fetch(b"b" * 48)) == []
    there.bind(None)  # unbound: keys as Hypothesis made them
    assert list(there.fetch(b"a" * 48)) == []


def layout(pytester: pytest.Pytester, *where: str) -> str:
    """The EASY suite as package ``acme.suites`` under ``where``: the file to run."""
    folder = pytester.path.joinpath(*where, "acme", "suites")
    folder.mkdir(parents=True)
    for package in (folder, folder.parent):
        (package / "__init__.py").write_text("")
    (folder / "test_stateful_easy.py").write_text(EASY)
    # Replays only what the example database holds: a test run under it fails only from there
    # (registered before Hypothesis loads the profile named on the command line).
    pytester.makeconftest(
        "from hypothesis import Phase, settings\nsettings.register_profile('reuse-only', phases=[Phase.reuse])\n"
    )
    return str((folder / "test_stateful_easy.py").relative_to(pytester.path))


def hunt_easy(pytester: pytest.Pytester, path: str, database: Path, *extra: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        path, "-k", "test_easy", "--prism-backend=memstore", f"--prism-hunt-db={database}", "-p", "no:cacheprovider",
        "-p", "no:randomly", *extra,
    )  # fmt: skip


def hunt_summary(result: pytest.RunResult) -> str:
    output = result.stdout.str()
    return output[output.index("prism-testkit hunt") :]


def failure_replays(result: pytest.RunResult) -> list[str]:
    """The lines indented under each ``replay:`` of the failure messages in the whole output
    (pytest prints an error's lines after ``E``), the command first."""
    lines = [line.removeprefix("E") for line in result.stdout.lines]

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    found = []
    for at, line in enumerate(lines):
        if line.strip() == "replay:":
            under = []
            for later in lines[at + 1 :]:
                if indent(later) <= indent(line):
                    break
                under.append(later.strip())
            found.append("\n".join(under))
    assert found, result.stdout.str()
    return found


def test_an_installed_and_a_checked_out_layout_share_a_failure_even_under_a_seed(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The same suite at two paths (a checkout's and an install's node ids differ): a failure
    one saves, the other replays from the shared database alone (its profile draws nothing),
    and given --hypothesis-seed it still reads the database."""
    checkout = layout(pytester, "checkout")
    installed = layout(pytester, "venv", "lib", "python3.11", "site-packages")
    database = tmp_path / "shared-examples"

    found = hunt_easy(pytester, checkout, database, "--prism-hunt=30s")
    found.assert_outcomes(failed=1)
    # Found afresh: the seed replays it, and the failure message names the shared database it
    # was saved in, not .hypothesis/ (nothing of this run is saved there).
    for replay in failure_replays(found):
        assert "--hypothesis-seed=" in replay.splitlines()[0], replay
        assert f"database {database}" in replay, replay
    assert ".hypothesis" not in found.stdout.str()

    # Under "reuse-only" a test runs only what the database holds: a fresh one, nothing.
    fresh = hunt_easy(pytester, installed, tmp_path / "fresh", "--prism-hunt=1s", "--hypothesis-profile=reuse-only")
    fresh.assert_outcomes(skipped=1)
    # ... and the hunt's summary says so: a skip is no failure
    assert "0 failing, 1 skipped" in hunt_summary(fresh), hunt_summary(fresh)
    assert "FAILED" not in fresh.stdout.str()
    replayed = hunt_easy(
        pytester, installed, database, "--prism-hunt=1s", "--hypothesis-profile=reuse-only", "--hypothesis-seed=3"
    )
    replayed.assert_outcomes(failed=1)
    summary = hunt_summary(replayed)
    assert "easy: INVALID (easy)" in summary
    # The replay names the database and the test's identity, and the command that replays from
    # there; not a seed (it would search afresh) and not .hypothesis/ (the failure is not there).
    identity = "acme.suites.test_stateful_easy::test_easy[backend=memstore]"
    assert f"from the database {database}, saved under {identity}" in summary, summary
    assert re.search(rf"replay from the database: pytest \S+ .*--prism-hunt=1s --prism-hunt-db={database}", summary)
    assert "\n  seed: " not in summary
    # So does the failure message itself: the command that replays from the database comes
    # first (the seed's would search afresh, for minutes on a real suite); the seed's follows,
    # labelled as such.
    for replay in failure_replays(replayed):
        first, *rest = replay.splitlines()
        assert f"--prism-hunt-db={database}" in first, replay
        assert "--hypothesis-seed" not in first, replay
        assert any("searches afresh" in line and "--hypothesis-seed=" in line for line in rest), replay
    assert ".hypothesis" not in replayed.stdout.str()


# A third party's backend that silently loses data: memstore's, but its logs acknowledge every
# append with the next offset and keep only the first two. Distributed as backends are (a
# ``prism_testkit`` entry point: the harness reads no other registration), from the project's
# own directory, which ``python -m pytest`` puts on sys.path.
LEAKY_LOG = """
import dataclasses

from prism_testkit import hookimpl
from prism_testkit.backends import memstore

KEPT = 2


class LeakyLogState(memstore._LogState):
    def __init__(self):
        super().__init__()
        self.acknowledged = 0

    def append(self, message):
        self.acknowledged += 1
        if self.acknowledged <= KEPT:
            super().append(message)
        return self.acknowledged - 1


class LeakyStore(memstore._Store):
    def append(self, log, message):
        offset = self.logs.setdefault(log, LeakyLogState()).append(message)
        self.signals.notify(f"log:{log}")
        return offset


STORES = {}


class LeakyDriver(memstore.MemstoreDriver):
    backend_name = "leakylog"

    @classmethod
    async def connect(cls, name, capabilities, endpoint):
        return cls(name, capabilities, STORES.setdefault(endpoint.url, LeakyStore()))


@hookimpl
def prism_register_backends():
    spec = next(s for s in memstore.prism_register_backends() if s.name == "memstore")
    return [dataclasses.replace(spec, name="leakylog", driver=LeakyDriver, description="loses appends")]
"""
LEAKY_SUITE = "prism_testkit.suites.test_stateful_log"
LEAKY_TEST = "test_log_keeps_every_acknowledged_append_in_order_under_faults"


def leaky_project(folder: Path) -> Path:
    """A user's project dir holding the leaky backend's distribution, and a ``-p reuse_only``
    plugin that registers the profile replaying only what the example database holds."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leakylog.py").write_text(LEAKY_LOG)
    info = folder / "prism_leakylog-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: prism-leakylog\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[prism_testkit]\nleakylog = leakylog\n")
    (folder / "reuse_only.py").write_text(
        "from hypothesis import Phase, settings\n\nsettings.register_profile('reuse-only', phases=[Phase.reuse])\n"
    )
    return folder


def test_a_pip_installed_and_an_editable_machine_share_a_hunts_failure(
    pytester: pytest.Pytester, tmp_path: Path, installed: Path
) -> None:
    """Issue 51, on a real install: a hunt on this checkout's editable venv finds a third party's
    lost appends with a shipped suite; a venv that pip-installed the wheel runs the same suite
    by ``--pyargs`` and fails in its first round from the shared database alone."""
    database = tmp_path / "shared-examples"
    suite = ("--pyargs", LEAKY_SUITE, "-k", LEAKY_TEST, "--prism-backend=leakylog", "-p", "no:randomly")

    leaky_project(pytester.path)
    found = pytester.runpytest_subprocess(
        *suite, "--prism-hunt=30s", f"--prism-hunt-db={database}", "-p", "no:cacheprovider"
    )
    found.assert_outcomes(failed=1)
    assert "log: INVALID (lost-write)" in found.stdout.str()
    assert f"failures found are saved in {database}" in found.stdout.str()
    assert (
        f"{REPOSITORY / 'prism_testkit' / 'suites' / 'test_stateful_log.py'}:" in found.stdout.str()
    )  # the checkout's suite

    elsewhere = leaky_project(tmp_path / "installed-machine")
    replayed = pytest_in(
        installed, elsewhere, *suite, "-p", "reuse_only", "--hypothesis-profile=reuse-only",
        "--prism-hunt=1s", f"--prism-hunt-db={database}",
    )  # fmt: skip
    output = replayed.stdout + replayed.stderr
    assert replayed.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert f"{installed.parents[1]}/lib/python" in output  # the installed suite ran...
    assert f"{REPOSITORY}/prism_testkit/" not in output  # ...and nothing of the checkout
    summary = replayed.stdout[replayed.stdout.index("prism-testkit hunt") :]
    assert re.search(r"hunted .*: \d+ examples in 1 rounds, .* 1 failing", summary), summary
    assert "log: INVALID (lost-write)" in summary
    identity = f"{LEAKY_SUITE}::{LEAKY_TEST}[backend=leakylog]"
    assert f"from the database {database}, saved under {identity}" in summary, summary
    assert f"replay from the database: pytest --pyargs '{identity}' " in summary, summary
    assert f"--prism-hunt=1s --prism-hunt-db={database}" in summary
    assert "\n  seed: " not in summary


def test_a_seeded_hunt_writes_the_shared_database(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """--hypothesis-seed alone makes Hypothesis bypass every database: a seeded hunt must not
    (its summary says its failures are saved there)."""
    path = layout(pytester, "here")
    database = tmp_path / "shared-examples"
    seeded = hunt_easy(pytester, path, database, "--prism-hunt=30s", "--hypothesis-seed=7")
    seeded.assert_outcomes(failed=1)
    assert f"failures found are saved in {database}" in seeded.stdout.str()
    replayed = hunt_easy(pytester, path, database, "--prism-hunt=1s", "--hypothesis-profile=reuse-only")
    replayed.assert_outcomes(failed=1)


def test_a_failure_from_the_database_is_replayed_from_there_not_from_its_seed() -> None:
    nodeid = "prism_testkit/suites/test_stateful_x.py::test_y[backend=memstore]"
    plan = HuntPlan(budget=60, database=None, database_label="/shared/examples")
    plan.identities[nodeid] = "prism_testkit.suites.test_stateful_x::test_y"
    plan.from_database[nodeid] = True
    seed_command = (
        "PRISM_SLOWNESS=2 pytest 'prism_testkit/suites/test_stateful_x.py::test_y[backend=memstore]' "
        "--prism-backend=memstore --prism-binary=redis=/opt/redis-server -p no:randomly --hypothesis-seed=42"
    )
    hunt: dict[str, Any] = {
        "test": nodeid,
        "failed": True,
        "failure": "x: INVALID (lost)",
        "seed": 42,
        "seed_replay": seed_command,
        "replay": seed_command,  # no schedule was written: the replay was the seed's
    }
    plan.annotate(hunt["test"], hunt)
    expected = (
        "PRISM_SLOWNESS=2 pytest 'prism_testkit/suites/test_stateful_x.py::test_y[backend=memstore]' "
        "--prism-backend=memstore --prism-binary=redis=/opt/redis-server -p no:randomly --prism-hunt=1s "
        "--prism-hunt-db=/shared/examples"
    )
    assert hunt["replay"] == hunt["database_replay"] == expected
    assert hunt["identity"] == "prism_testkit.suites.test_stateful_x::test_y"
    lines = failure_lines(hunt)
    assert lines[1].startswith("  from the database /shared/examples, saved under prism_testkit.suites.test_stateful_x")
    assert f"  replay: {expected}" in lines
    assert not [line for line in lines if "seed" in line.split(":")[0] or "hypothesis-seed" in line]
