"""The nemesis's server faults are proved to fire, not only declared: a stateful suite run on a
server the nemesis can kill must show each fault kind in its report row's ``faults`` counts
(issue 27: every fault a machine's guarantee speaks of is proved injected). Under the CI
profile the search is derandomised, so a rule the search stopped drawing fails here every
time, not now and then. On ``postgres-ha`` the failovers fire too, the one with a standby
lagging at the promotion included (issue 26). That each fault really cuts, pauses or kills is proved where it is
built (tests/test_faultproxy.py, tests/test_netns.py, tests/test_processes.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_FAULTS = {"kill", "pause", "partition", "latency", "reset"}
SUITES = ("stateful_queue", "stateful_log")
# The derandomised search of stateful_log on postgres (seeded by the test's identity, the
# project's literals withheld: prism_testkit.hunting.derandomised) first pauses the server at
# its 14th example (measured: none at 13, one pause at 14, two at 15): the run draws 15.
POSTGRES_DEPTH = 15


def _fault_counts(tmp_path: Path, backend: str, depth: int | None = None) -> dict[str, dict[str, int]]:
    """Each stateful suite's ``faults`` counts from the report of a CI-profile run on ``backend``."""
    report = tmp_path / "report.json"
    argv = [sys.executable, "-m", "pytest", "--pyargs", "prism_testkit.suites", f"--prism-backend={backend}"]
    argv += [f"--prism-pattern={','.join(SUITES)}", f"--prism-report={report}", "-p", "no:cacheprovider", "-q"]
    argv += [f"--prism-depth={depth}"] if depth is not None else []
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    rows = {row["suite"]: row["faults"] for row in json.loads(report.read_text())["suites"]}
    assert set(rows) == set(SUITES)
    return rows


def test_every_server_fault_fires_in_the_stateful_suites_on_a_killable_server(tmp_path: Path) -> None:
    rows = _fault_counts(tmp_path, "postgres", POSTGRES_DEPTH)
    never = {suite: sorted(SERVER_FAULTS - set(rows[suite])) for suite in SUITES}
    assert not any(never.values()), f"fault rules that never fired: {never}"


def test_failovers_fire_on_postgres_ha_some_with_a_lagging_standby(tmp_path: Path) -> None:
    """On a cluster that declares ``survives_failover`` the kill rule aimed at the primary
    fails it over: every row shows a failover, and the flag that holds a standby back through
    the promotion is drawn in the run (one draw inside one rule: which row gets it is the
    derandomised search's, so the run as a whole is asked, not each row)."""
    rows = _fault_counts(tmp_path, "postgres-ha")
    failovers = {suite: faults.get("failover", 0) + faults.get("failover-lagging", 0) for suite, faults in rows.items()}
    assert all(failovers.values()), f"rows without a failover: {rows}"
    assert sum(faults.get("failover-lagging", 0) for faults in rows.values()) > 0, f"no lagging failover: {rows}"
