"""The progress line's time left weighs each suite's remaining tests by what its tests took."""

from __future__ import annotations

from pathlib import Path

import prism_testkit.suites
import pytest

from prism_testkit.report.progress import Progress, named_dirs, outside


def ran(progress: Progress, suite: str, tests: int, seconds_each: float) -> None:
    for _ in range(tests):
        progress.spend(suite, seconds_each)
        progress.finished(suite)


def test_the_time_left_counts_slow_suites_by_their_own_pace_not_the_runs_mean(tmp_path: Path) -> None:
    progress = Progress(tmp_path)
    progress.collected(["keyvalue"] * 100 + ["stateful_wal"] * 10)
    ran(progress, "keyvalue", 100, 0.1)
    ran(progress, "stateful_wal", 2, 30.0)
    # 70 worker-seconds in 35 s of wall: two workers busy; 8 stateful tests x 30 s left
    assert progress.left(elapsed=35.0) == pytest.approx(8 * 30.0 / 2)
    assert "about 2 min left" in progress.line(35.0)


def test_a_suite_not_started_counts_at_the_runs_mean(tmp_path: Path) -> None:
    progress = Progress(tmp_path)
    progress.collected(["queue"] * 10 + ["outbox"] * 10)
    ran(progress, "queue", 10, 2.0)
    assert progress.left(elapsed=20.0) == pytest.approx(20.0)


def test_without_durations_the_estimate_is_by_count(tmp_path: Path) -> None:
    progress = Progress(tmp_path)
    progress.collected(["queue"] * 10)
    for _ in range(5):
        progress.finished("queue")
    assert progress.left(elapsed=10.0) == pytest.approx(10.0)


def test_tests_outside_the_suites_count_in_the_totals_and_the_time_left(tmp_path: Path) -> None:
    """A project's own tests share the workers with its suites: an estimate without them said a
    third of the time the project's test run still needed."""
    progress = Progress(tmp_path)
    progress.collected(["keyvalue"] * 10 + [outside("tests/test_a.py::test_x")] * 10)
    ran(progress, "keyvalue", 10, 1.0)
    ran(progress, outside("tests/test_a.py::test_x"), 5, 3.0)
    # 25 worker-seconds in 25 s of wall; 5 outside tests x 3 s left
    assert progress.left(elapsed=25.0) == pytest.approx(15.0)
    line = progress.line(25.0)
    assert "keyvalue 10/10" in line
    assert "tests/test_a.py" not in line  # the moved list names suites only
    assert "(all suites 10/10, other tests 5/10, about 15s left)" in line


def test_under_xdist_tests_outside_the_suites_are_grouped_by_module(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text('pytestmark = prism_suite("queue")\n')
    progress = Progress(tmp_path)
    progress.collected_ids(["test_suite.py::test_one[a]", "test_suite.py::test_one[b]", "tests/test_a.py::test_x"])
    assert progress.sizes == {"queue": 2, outside("tests/test_a.py::test_y"): 1}


def test_every_xdist_workers_collection_counts_the_run_once(tmp_path: Path) -> None:
    # Each worker collects the whole run and reports it: two workers must not double the totals.
    (tmp_path / "test_suite.py").write_text('pytestmark = prism_suite("queue")\n')
    ids = ["test_suite.py::test_one[a]", "test_suite.py::test_one[b]", "tests/test_a.py::test_x"]
    progress = Progress(tmp_path)
    for _worker in range(2):
        progress.collected_ids(ids)
    assert progress.sizes == {"queue": 2, outside("tests/test_a.py::test_x"): 1}
    ran(progress, "queue", 1, 1.0)
    assert "queue 1/2 (all suites 1/2, other tests 0/1" in progress.line(1.0)


def test_node_ids_outside_the_rootdir_are_read_from_the_directories_the_command_named(tmp_path: Path) -> None:
    # `pytest --pyargs prism_testkit.suites -n 2` from an empty directory: node ids are relative
    # to the package, not the rootdir; the line said "all suites 1/0, other tests 0/32"
    suites = tmp_path / "installed" / "suites"
    suites.mkdir(parents=True)
    (suites / "test_suite.py").write_text('pytestmark = prism_suite("queue")\n')
    asked: list[int] = []

    def elsewhere() -> list[Path]:
        asked.append(1)
        return [suites]

    progress = Progress(tmp_path / "empty", elsewhere)
    progress.collected_ids(["test_suite.py::test_one[a]", "test_suite.py::test_one[b]"])
    assert progress.sizes == {"queue": 2}
    assert asked == [1]  # once, and only because the rootdir lacked the module


def test_the_rootdir_suffices_for_node_ids_inside_it(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text('pytestmark = prism_suite("queue")\n')

    def elsewhere() -> list[Path]:
        raise AssertionError("asked for other directories though the rootdir holds every module")

    progress = Progress(tmp_path, elsewhere)
    progress.collected_ids(["test_suite.py::test_one[a]"])
    assert progress.sizes == {"queue": 1}


def test_the_directories_named_are_paths_or_packages(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    found = named_dirs(["tests/test_a.py::test_x", "prism_testkit.suites", "no.such.package"], tmp_path, pyargs=True)
    assert found == [tmp_path / "tests", Path(prism_testkit.suites.__path__[0])]
    assert named_dirs(["prism_testkit.suites"], tmp_path, pyargs=False) == []
