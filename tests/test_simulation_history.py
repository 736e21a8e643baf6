"""The simulated order of one example depends only on its own seed, never on what ran before it
in the process (#41, kind 5): an example replayed alone in a fresh process and the same example
replayed in the middle of a run (after every example of its own test and of the tests before it)
give the same history digest. A counter, a cache or a seeded generator that outlives an example
(process-wide state in the simulation, memstore, a pattern or a suite) makes them differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A plugin for the runs below: after each stateful test (mode "run") or instead of it (mode
# "alone"), its last example's recorded steps are issued again and the digest of that history kept.
KEEP_LAST = """
import json
import os

import hashlib

from prism_testkit.hunting.schedule import Schedule, Step
from prism_testkit.stateful import runner
from prism_testkit.simulation import clock

real_execute = runner.StatefulRun.execute
real_uuid = clock.fresh_uuid
MODE = os.environ["PRISM_MODE"]
FOUND = os.environ["PRISM_DIGESTS"]
MADE = []  # the ids the simulation made up (delivery ids, event ids...): part of the example too


def fresh_uuid():
    made = real_uuid()
    MADE.append(made.hex)
    return made


clock.fresh_uuid = fresh_uuid


def reissued_digest(run, factory, steps):
    schedule = Schedule("", run.nodeid, [], {}, "", [], steps)
    MADE.clear()
    error, notes = run._reissue(factory, schedule)
    assert error is None, f"the reissued example failed: {error!r}"
    assert run.simulated, "not simulated"
    ids = hashlib.sha256(" ".join(MADE).encode()).hexdigest()[:16]
    return f"history {run.digests[-1]}, ids {ids}"


def execute(self, factory):
    found = {}
    if os.path.exists(FOUND):
        with open(FOUND) as saved:
            found = json.load(saved)
    if MODE == "alone":
        steps = [Step(**step) for step in found[self.nodeid]["steps"]]
        found[self.nodeid]["alone"] = reissued_digest(self, factory, steps)
    else:
        real_execute(self, factory)
        steps = self.recorder.steps
        found[self.nodeid] = {
            "examples": len(self.digests),
            "steps": [vars(step) for step in steps],
            "in_the_middle": reissued_digest(self, factory, steps),
        }
    with open(FOUND, "w") as out:
        json.dump(found, out)


runner.StatefulRun.execute = execute
"""

SUITES = [  # every stateful suite that runs on memstore, so on virtual time
    "prism_testkit/suites/test_stateful_queue.py",
    "prism_testkit/suites/test_stateful_log.py",
    "prism_testkit/suites/test_stateful_outbox.py",
    "prism_testkit/suites/test_stateful_claim_check.py",
    "prism_testkit/suites/test_stateful_tiered_storage.py",
    "prism_testkit/suites/test_stateful_event_sourcing.py",
    "prism_testkit/suites/test_stateful_cdc.py",
    "prism_testkit/suites/test_stateful_multicast_registry.py",
    "prism_testkit/suites/test_stateful_producer.py",
    "prism_testkit/suites/test_stateful_consumer.py",
    "prism_testkit/suites/test_stateful_pubsub.py",
    "prism_testkit/suites/test_stateful_isolation.py",
]


def pytest_run(tmp_path: Path, mode: str, *selection: str, buggify: str = "none") -> subprocess.CompletedProcess[str]:
    (tmp_path / "keep_last.py").write_text(KEEP_LAST)
    env = {name: value for name, value in os.environ.items() if name != "CI"}  # seeds, not the CI profile
    env.update(PRISM_MODE=mode, PRISM_DIGESTS=str(tmp_path / "digests.json"))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "pytest", *selection, "--prism-backend=memstore", "--prism-simulate"]
    argv.append(f"--prism-buggify={buggify}")
    argv += ["-p", "keep_last", "-p", "no:cacheprovider", "-p", "no:randomly", "--hypothesis-seed=41", "-q"]
    argv += ["-k", "under_faults", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return done


EMPTY = "e3b0c44298fc1c14"  # the digest of nothing


@pytest.mark.parametrize("buggify", ["none", "all"])
def test_an_example_replayed_alone_and_in_the_middle_of_a_run_gives_one_digest(tmp_path: Path, buggify: str) -> None:
    pytest_run(tmp_path, "run", *SUITES, buggify=buggify)
    found = json.loads((tmp_path / "digests.json").read_text())
    assert len(found) >= len(SUITES), found.keys()
    assert all(entry["examples"] > 1 for entry in found.values()), "each replay comes after other examples"
    judged = [t for t, e in found.items() if not e["in_the_middle"].startswith(f"history {EMPTY}")]
    assert len(judged) >= len(SUITES) - 2, f"most examples compared hold a history: {found}"
    for nodeid in found:  # each alone: a fresh process that runs nothing else first
        pytest_run(tmp_path, "alone", nodeid, buggify=buggify)
    found = json.loads((tmp_path / "digests.json").read_text())
    differing = {t: (e["in_the_middle"], e["alone"]) for t, e in found.items() if e["in_the_middle"] != e["alone"]}
    assert not differing, f"the history of one example depends on what ran before it: {differing}"
