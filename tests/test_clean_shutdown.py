"""A run over the networked backends ends cleanly: every client is closed before its loop.

Leaks show up only at the end of a run (the garbage collector and the loop's shutdown find them),
after pytest's summary, so a run in a subprocess is the only place to see them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Suites whose faults (kills, restarts, resets, partitions) leave the most client state behind,
# on each of the three backends (the contract suites without faults add time, not leaks); Kafka
# has no queue.
SUITES = {
    "kafka": "stateful_log,pubsub,restart",
    "redis": "stateful_log,pubsub,queue,restart",
    "nats": "stateful_log,pubsub,queue,restart",
}
LEAK_SIGNS = ("Task was destroyed", "never awaited", "Unclosed", "unclosed", "Traceback")


def after_summary(output: str) -> str:
    """What a run printed after its last line of outcomes ("3 passed in 1.2s")."""
    lines = output.splitlines()
    last = max((i for i, line in enumerate(lines) if " passed" in line and " in " in line), default=None)
    assert last is not None, "the run printed no outcome line:\n" + output[-3000:]
    return "\n".join(lines[last + 1 :])


# One run per backend: each is its own process with its own clients and loop (what leaks is a
# client of that backend), and three tests spread over xdist workers where one took two minutes.
@pytest.mark.parametrize("backend", sorted(SUITES))
def test_stateful_and_contract_suites_of_a_networked_backend_end_without_leaks(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result = pytester.runpytest_subprocess(
        "--pyargs",
        "prism_testkit.suites",
        f"--prism-backend={backend}",  # named: one that cannot be provisioned is an error
        f"--prism-pattern={SUITES[backend]}",
        "-W",
        "error",
        "-p",
        "no:cacheprovider",
        "-q",
    )
    stdout, stderr = result.stdout.str(), result.stderr.str()
    assert result.ret == pytest.ExitCode.OK, stdout[-5000:] + stderr[-3000:]
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 10, outcomes  # the suites really ran
    tail = after_summary(stdout) + "\n" + stderr
    found = [sign for sign in LEAK_SIGNS if sign in tail]
    assert not found, f"leak signs after the summary: {found}\n{tail[-5000:]}"


def test_after_summary_sees_what_follows_the_outcome_line() -> None:
    output = "....\n=== 4 passed in 0.1s ===\nTask was destroyed but it is pending!\n"
    assert after_summary(output) == "Task was destroyed but it is pending!"
