"""Issue 53: the replay line of a failing stateful test of the shipped suites works out of tree.

An author running ``--pyargs prism_testkit.suites`` from a project of their own was printed a
replay naming the test by its node id, a path into the run's root (``test_stateful_queue.py::...``
or ``../../../main/suites/...``) that pytest cannot find from anywhere else. The replay names it
by its identity under ``--pyargs`` instead: the same in a checkout, an installed package and an
author's project.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTANT = "tests.mutants.queue_acks_on_delivery"
TEST = "prism_testkit.suites.test_stateful_queue::test_queue_delivers_every_acknowledged_message_under_faults"


def pytest_in(cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", MUTANT, "-p", "no:cacheprovider"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_replay_line_of_a_shipped_suite_runs_from_another_directory(tmp_path: Path) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    failed = pytest_in(
        project,
        [
            *("--pyargs", "prism_testkit.suites", "--prism-pattern=stateful_queue", "--prism-backend=memstore"),
            *("-k", "under_faults", "--hypothesis-profile=prism-mutant"),
        ],
    )
    assert failed.returncode == pytest.ExitCode.TESTS_FAILED, failed.stdout[-3000:]
    lines = failed.stdout.splitlines()
    replay = next(lines[i + 1] for i, line in enumerate(lines) if line.strip() == "E       replay:")
    words = shlex.split(replay.removeprefix("E").strip())
    assert words[:3] == ["pytest", "--pyargs", f"{TEST}[backend=memstore]"], replay

    again = pytest_in(elsewhere, words[1:])
    assert again.returncode == pytest.ExitCode.TESTS_FAILED, again.stdout[-3000:]
    assert "1 failed" in again.stdout.splitlines()[-1], again.stdout[-2000:]
    assert "INVALID (" in again.stdout


def test_no_suite_writes_a_replay_that_only_runs_inside_this_checkout() -> None:
    # A replay a suite writes itself (a durability or failover verdict's) goes through
    # prism_testkit/suites/_helpers.replay_command; ``pytest prism_testkit/suites...`` names a path
    # only this checkout has.
    in_tree = re.compile(r"pytest (prism_testkit/)?suites\b")
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted((ROOT / "prism_testkit" / "suites").glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if in_tree.search(line)
    ]
    assert not found, "replays naming the checkout's prism_testkit/suites/ path:\n" + "\n".join(found)
