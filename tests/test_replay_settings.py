"""A replay honours every setting that shaped the failing run (#41, kind 6): simulation, buggify
(and the misbehaviour the example drew), the load mode with its seed, the failovers a failover
pass forced, the seeds. A failing schedule is written under each setting; a fresh process replays
it given nothing but the schedule (``pytest TEST --prism-replay=FILE``, and ``prism-testkit replay
FILE``), or runs the seed replay command the failure printed; the planted machine reports what it
ran under, which must be what it ran under first.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SUITE = """
import json
import os

from hypothesis.stateful import rule

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.faults.load import schedule_value
from prism_testkit.stateful.checkers import Anomaly, Verdict
from prism_testkit.stateful.machine import FaultMachine
from prism_testkit.stateful.runner import StatefulRun

pytestmark = prism_suite("replayed_settings", backend=Slot.needs("keyvalue"))


class Planted(FaultMachine):
    def __init__(self, run: StatefulRun) -> None:
        super().__init__(run, ["backend"])

    @rule()
    def observe_and_fail(self) -> None:
        run = self.prism_run
        if run.buggify and not self.misbehaviour:
            return  # under buggify the failure needs misbehaviour: it shrinks to one kind, not none
        seen = {
            "simulated": self.simulation is not None,
            "buggify": sorted(run.buggify),
            "misbehaviour": sorted(self.misbehaviour),
            "forced_failovers": sorted(run.forced_failovers),
            "load": schedule_value(run.node.config),
        }
        with open(os.environ["PRISM_OBSERVED"], "a") as out:
            out.write(json.dumps(seen) + "\\n")
        self.planted = True

    def check(self):
        # judged by a checker (not raised), so the failure prints its seed replay command too
        found = [Anomaly("planted", "planted failure", self.history)] if getattr(self, "planted", False) else []
        return [Verdict("planted", None, {"planted": found} if found else {}, {}, {"ok": 1})], "planted"


def test_planted(prism_env: PrismEnv, request) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Planted(run))
"""

SETTINGS = {
    "simulated": ["--prism-simulate"],
    "buggify": ["--prism-simulate", "--prism-buggify=all"],
    "load": ["--prism-load=stall:10ms@30s"],
    "plain": [],
}


def observed(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


SEED_REPLAY: list[str] = []  # the failure's printed seed replay command, of the latest first run


def first_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> tuple[Path, dict]:
    """Run the planted test under ``flags``; its schedule and what its failing example ran under."""
    pytester.makepyfile(test_planted=SUITE)
    monkeypatch.setenv("PRISM_OBSERVED", str(pytester.path / "first.jsonl"))
    result = pytester.runpytest_subprocess(
        "--prism-backend=memstore", "-p", "no:cacheprovider", "-p", "no:randomly", "--prism-schedules=schedules", *flags
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    (schedule,) = (pytester.path / "schedules").glob("*.json")
    commands = [
        found.group(1) for line in result.stdout.lines if (found := re.search(r"\b(pytest \S+ --prism-.*)$", line))
    ]
    SEED_REPLAY[:] = shlex.split(commands[0]) if commands else []
    # the last line: the in-process replay of the schedule, i.e. of the example it recorded
    return schedule, observed(pytester.path / "first.jsonl")[-1]


def replay_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, schedule: Path, how: str) -> dict:
    """Replay in a fresh process given only the schedule; what the replayed example ran under."""
    replayed = pytester.path / f"replay-{how}.jsonl"
    monkeypatch.setenv("PRISM_OBSERVED", str(replayed))
    data = json.loads(schedule.read_text())
    if how == "seed":  # the command the failure prints: the same seed draws the same examples again
        assert SEED_REPLAY, "the failure printed no replay command"
        argv = [sys.executable, "-m", *SEED_REPLAY, "-p", "no:cacheprovider"]
        done = subprocess.run(argv, cwd=pytester.path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, f"the failure did not come back:\n{done.stdout[-3000:]}"
        return observed(replayed)[-1]  # the last example: the shrunk failure, as in the first run
    if how == "option":
        argv = [sys.executable, "-m", "pytest", data["test"], "--prism-backend=memstore", f"--prism-replay={schedule}"]
        argv += ["-p", "no:cacheprovider", "-p", "no:randomly", "-q"]
    else:
        argv = [sys.executable, "-m", "prism_testkit", "replay", str(schedule)]
    done = subprocess.run(argv, cwd=pytester.path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, f"the failure did not reproduce:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    (seen,) = observed(replayed)
    return seen


@pytest.mark.parametrize("how", ["option", "command", "seed"])
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_a_replay_in_a_fresh_process_runs_under_the_recorded_settings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, setting: str, how: str
) -> None:
    schedule, first = first_run(pytester, monkeypatch, SETTINGS[setting])
    recorded = json.loads(schedule.read_text())
    assert recorded["simulate"] == first["simulated"] == (setting in ("simulated", "buggify"))
    assert recorded["buggify"] == first["buggify"]
    assert recorded["load"] == first["load"]
    assert (first["load"] is not None) == (setting == "load")
    if setting == "load":
        assert "seed:" in first["load"], "the load's seed is recorded, so its stalls draw again"
    if setting == "buggify":
        assert first["buggify"], "the run allowed misbehaviour"
        assert first["misbehaviour"], "and the failing example drew some"
    assert replay_alone(pytester, monkeypatch, schedule, how) == first


def test_a_replay_owes_the_failovers_its_failover_pass_forced(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure found in a failover pass replays with that pass's forced failover (a memstore
    cannot fail over, so the replay then fails saying it owes one: what matters is that it
    is owed)."""
    schedule, first = first_run(pytester, monkeypatch, [])
    assert first["forced_failovers"] == []
    data = json.loads(schedule.read_text())
    data["forced_failovers"] = ["memstore"]
    schedule.write_text(json.dumps(data))
    monkeypatch.setenv("PRISM_OBSERVED", str(pytester.path / "replay.jsonl"))
    argv = [sys.executable, "-m", "pytest", data["test"], "--prism-backend=memstore", f"--prism-replay={schedule}"]
    done = subprocess.run([*argv, "-p", "no:cacheprovider", "-q"], cwd=pytester.path, capture_output=True, text=True)
    (seen,) = observed(pytester.path / "replay.jsonl")
    assert seen["forced_failovers"] == ["memstore"], done.stdout[-3000:]
