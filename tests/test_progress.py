"""The progress line's time left weighs each suite's remaining tests by what its tests took."""

from __future__ import annotations

from pathlib import Path

import pytest

from prism_testkit.report.progress import Progress


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
