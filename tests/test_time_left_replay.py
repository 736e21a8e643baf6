"""The replay of a real run's time left (benchmarks.time_left), on made-up records: no run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.time_left import records_of, replay


def run(
    workers: int, tests: int, seconds: float | Callable[[int], float], module: str = "tests/test_made_up.py"
) -> list[dict[str, Any]]:
    """Tests of ``seconds`` each (or ``seconds(index)``) dealt as xdist deals them: the next to
    the first free worker."""
    free_at = [1000.0] * workers
    records = []
    for index in range(tests):
        worker = min(range(workers), key=lambda w: (free_at[w], w))
        start = free_at[worker]
        took = seconds(index) if callable(seconds) else seconds
        free_at[worker] += took
        nodeid = f"{module}::test_it[{index}]"
        records.append(
            {"kind": "test", "nodeid": nodeid, "worker": f"gw{worker}", "start": start, "stop": start + took}
        )
    return records


def test_told_the_truth_the_time_left_is_exact_and_a_slower_run_is_scaled_by_its_pace(tmp_path: Path) -> None:
    records = run(workers=3, tests=90, seconds=10.0)
    # recorded on a machine twice as fast: the pace (after 20 finished) doubles each record
    recorded = {r["nodeid"]: 5.0 for r in records}
    lines = replay(records, tmp_path, recorded, every=15.0)
    assert lines, "a tenth done within the run: lines are written"
    for elapsed, said, told, actual in lines:
        assert told == pytest.approx(actual, abs=1e-6), elapsed
        if elapsed >= 80:  # 24 finished: the pace is known
            assert said == pytest.approx(actual, abs=1e-6), elapsed
    early = [(said, actual) for elapsed, said, _, actual in lines if elapsed < 60]
    assert early, "lines before the pace is known"
    assert all(said < actual for said, actual in early), "before it, the faster machine's records are short"


def test_records_are_read_from_a_results_file_or_a_folder_of_worker_files(tmp_path: Path) -> None:
    records = run(workers=2, tests=4, seconds=1.0)
    results = tmp_path / "profile.json"
    results.write_text(json.dumps({"trials": [{"records": records}]}))
    folder = tmp_path / "records"
    folder.mkdir()
    for worker in ("gw0", "gw1"):
        lines = [json.dumps(r) for r in records if r["worker"] == worker] + [json.dumps({"kind": "server_start"})]
        (folder / f"{worker}.jsonl").write_text("\n".join(lines) + "\n")
    assert records_of(results) == records
    assert sorted(records_of(folder), key=lambda r: r["start"]) == sorted(records, key=lambda r: r["start"])


def test_a_shipped_file_keyed_by_identity_weighs_the_suites_tests_as_the_run_does(tmp_path: Path) -> None:
    # the main job reads prism_testkit/suites/durations.json.gz, keyed by identity, not node id:
    # looked up by node id alone, every test weighed the run's mean and the replay said +3,000 %
    def took(index: int) -> float:
        return 1.0 + 7.0 * (index % 3 == 0)  # siblings that differ: their mean is no record's stand-in

    records = run(workers=2, tests=40, seconds=took, module="prism_testkit/suites/test_made_up.py")
    by_identity = {f"prism_testkit.suites.test_made_up::test_it[{index}]": took(index) for index in range(40)}
    lines = replay(records, tmp_path, by_identity, every=6.0)
    assert lines
    for elapsed, said, told, _ in lines:
        assert said == pytest.approx(told, abs=1e-6), elapsed  # the records are the truth
