"""Issue 53: ``prism-testkit replay`` of a schedule recorded under ``--prism-simulate`` and
``--prism-buggify`` runs it again in those modes (the ``--prism-replay`` path was tested; the
command line a user is told to run never was)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prism_testkit.hunting.schedule import read

ROOT = Path(__file__).resolve().parent.parent
MUTANT = "tests.mutants.queue_acks_on_delivery"
KINDS = "late,unknown-outcome"
# The derandomised search of the machine (seeded by the test's identity, the project's literals
# withheld: prism_testkit.hunting.derandomised) first loses an acked message, simulated and
# buggified so, at its 17th example (measured: 16 pass): the run draws that many.
DEPTH = 17


def run(args: list[str], cwd: Path, *, pythonpath: bool) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name not in ("CI", "PYTHONPATH")}
    if pythonpath:
        env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_prism_testkit_replay_runs_a_simulated_buggified_schedule_in_its_modes(tmp_path: Path) -> None:
    schedules, elsewhere = tmp_path / "schedules", tmp_path / "elsewhere"
    elsewhere.mkdir()
    failed = run(
        [
            *("-m", "pytest", "--pyargs", "prism_testkit.suites", "--prism-pattern=stateful_queue"),
            *("--prism-backend=memstore", "-k", "under_faults", "-p", MUTANT, "-p", "no:cacheprovider"),
            *("--prism-simulate", f"--prism-buggify={KINDS}", "--hypothesis-profile=prism-mutant"),
            f"--prism-schedules={schedules}",
            f"--prism-depth={DEPTH}",
        ],
        tmp_path,
        pythonpath=True,
    )
    assert failed.returncode == pytest.ExitCode.TESTS_FAILED, failed.stdout[-3000:]
    [written] = schedules.glob("*.json")
    schedule = read(written)
    assert schedule.simulate
    assert schedule.buggify == sorted(KINDS.split(","))

    # As a user runs it: the command the failure printed, from another directory.
    replayed = run(["-m", "prism_testkit", "replay", str(written)], elsewhere, pythonpath=False)
    assert replayed.returncode == 1, replayed.stdout[-3000:] + replayed.stderr[-2000:]
    lines = replayed.stdout.strip().splitlines()
    assert lines[0].startswith("prism-testkit replay: running pytest --pyargs "), lines[0]
    assert " 'prism_testkit.suites.test_stateful_queue::test_queue_delivers_every_" in lines[0], lines[0]
    assert "../" not in replayed.stdout, "a test id that reads as a path outside the run's root"
    assert " --prism-simulate " in lines[0], lines[0]
    assert f" --prism-buggify={','.join(schedule.buggify)}" in lines[0], lines[0]
    assert "prism-testkit simulation: 1 stateful tests on virtual time, 0 on real time" in replayed.stdout
    assert lines[-1].startswith(f"replay of {written}: reproduced: "), lines[-1]
