"""A stateful test over a failover cluster is proved across at least one failover: when none of
its drawn examples failed the cluster over, its run ends with a pass of examples that each do,
after their first client operations (a consensus cluster, JetStream's, loses its leader). The
sandbox's machine has no nemesis rules at all, so only that pass can fail the cluster over;
over a single server there is no such pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._sandbox_machines import WRITES_MACHINE

SUITE = (
    """
    from hypothesis.stateful import rule

    from prism_testkit import PrismEnv, Slot, prism_suite
    from prism_testkit.stateful.machine import FaultMachine
    from prism_testkit.stateful.runner import FAILOVER_PASS_EXAMPLES, StatefulRun

    pytestmark = prism_suite("failover_owed", backend=Slot.needs("keyvalue"))
    SEEN = []  # per example: the client ops completed before each failover, and how many in all


"""
    + WRITES_MACHINE
    + """
        def check(self):
            before, clients = [], 0
            for op in self.history:
                if op.process == "nemesis" and op.f in ("failover", "kill-leader") and op.type.name == "INVOKE":
                    before.append(clients)
                elif op.process != "nemesis" and op.type.name != "INVOKE":
                    clients += 1
            SEEN.append((before, clients))
            return [], "writes"


    def test_owed_failover(prism_env: PrismEnv, request) -> None:
        run = StatefulRun(prism_env, request)
        run.execute(lambda: Writes(run))
        forced = [seen for seen in SEEN if seen[0]]
        name = prism_env.combination["backend"]
        if name == "memstore":
            assert not forced and not run.failover_clusters
            return
        assert run.failover_clusters == {name} and run.failed_over == {name}
        assert len(forced) == FAILOVER_PASS_EXAMPLES, SEEN
        for before, clients in forced:
            assert before == [min(2, clients)], SEEN  # after two client ops, or at the end of a shorter one
        # a consensus cluster's leader is killed, another elected: no tolerated loss
        fault = "kill-leader" if name.startswith("jetstream") else "failover"
        assert prism_env.faults[fault] == FAILOVER_PASS_EXAMPLES
"""
)

# Every shrink attempt of a failing pass example fails over again (seconds each): the failure,
# its schedule and its replay are what this test is about, not how small Hypothesis makes it.
NO_SHRINKING = """
    from hypothesis import Phase, settings

    settings.register_profile(
        "no-shrinking", derandomize=True, database=None, phases=[Phase.explicit, Phase.reuse, Phase.generate]
    )
"""


@pytest.mark.parametrize("backend", ["redis-sentinel-wait", "jetstream-r3", "memstore"])
def test_a_test_never_failed_over_owes_a_failover_pass(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_subprocess(
        f"--prism-backend={backend}", "--hypothesis-profile=prism-ci", "-p", "no:cacheprovider", "-v"
    )
    result.assert_outcomes(passed=1)


def test_a_failure_in_the_failover_pass_replays_with_its_failover(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The pass's failover is no rule step: the schedule records it, so ``--prism-replay`` fails
    the cluster over again at the same point and the failure reproduces."""
    failing = SUITE.replace(
        '            SEEN.append((before, clients))\n            return [], "writes"',
        (
            '            SEEN.append((before, clients))\n            assert not before, "failed over"\n'
            '            return [], "writes"'
        ),
    )
    assert failing != SUITE
    pytester.makepyfile(failing)
    pytester.makeconftest(NO_SHRINKING)
    schedules = tmp_path / "schedules"
    backend = "--prism-backend=redis-sentinel-wait"
    found = pytester.runpytest_subprocess(
        backend, "--hypothesis-profile=no-shrinking", f"--prism-schedules={schedules}", "-p", "no:cacheprovider"
    )
    found.assert_outcomes(failed=1)
    (written,) = schedules.glob("*.json")
    assert json.loads(written.read_text())["forced_failovers"] == ["redis-sentinel-wait"]
    found.stdout.fnmatch_lines(["*replayed once: reproduced*"])
    replayed = pytester.runpytest_subprocess(backend, f"--prism-replay={written}", "-p", "no:cacheprovider")
    replayed.assert_outcomes(failed=1)
