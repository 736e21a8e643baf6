"""The stateful consumer suite's final drain (``drain_until_stable``) on a scripted log: an
append of unknown outcome that lands after a read is drained and judged, never called lost
(commit 3e9da7d, postgres-ha: the log read empty, then value 0 landed and was handled)."""

from __future__ import annotations

from collections.abc import Mapping

from prism_testkit.suites.test_stateful_consumer import drain_until_stable

READS = 10  # more reads than any script needs: a loop that never ends fails instead of hanging


class ScriptedLog:
    """A log holding ``values`` (offset = position), to which the values ``late[n]`` append
    themselves while drain ``n`` runs (after the read that drain aimed at)."""

    def __init__(self, values: list[int], late: Mapping[int, list[int]] | None = None) -> None:
        self.values = list(values)
        self.late = dict(late or {})
        self.drains: list[int] = []  # the end each drain aimed at
        self.reads = 0

    def read_all(self) -> dict[int, int]:
        self.reads += 1
        assert self.reads <= READS, "the log was read again and again: the drain never ended"
        return {value: offset for offset, value in enumerate(self.values)}

    def drain(self, end: int) -> None:
        assert end <= len(self.values), "a drain aimed past the log's end"
        self.values += self.late.pop(len(self.drains), [])
        self.drains.append(end)


def test_a_record_landing_after_the_first_read_and_drain_is_drained_and_kept() -> None:
    """The incident: the log read empty, value 0 landed during the first drain."""
    log = ScriptedLog([], late={0: [0]})
    assert drain_until_stable(log.read_all, log.drain) == {0: 0}
    assert log.drains == [0, 1]  # the second drain ran up to it


def test_a_record_landing_after_the_second_drain_is_drained_and_kept() -> None:
    log = ScriptedLog([10, 11], late={0: [12], 1: [13]})
    assert drain_until_stable(log.read_all, log.drain) == {10: 0, 11: 1, 12: 2, 13: 3}
    assert log.drains == [2, 3, 4]  # each drain ran up to what the read before it found


def test_a_stable_log_is_drained_once_and_read_again_after_the_drain() -> None:
    log = ScriptedLog([10, 11, 12])
    assert drain_until_stable(log.read_all, log.drain) == {10: 0, 11: 1, 12: 2}
    assert (log.drains, log.reads) == ([3], 2)  # ends: one drain, judged on a read taken after it


def test_a_log_that_lost_records_during_the_drain_ends_with_what_it_still_holds() -> None:
    """A failover without the promise drops records the drain handled: the result is the log
    as it ended, so the checker sees them gone (``lost``), and the loop ends."""
    log = ScriptedLog([10, 11, 12])
    drain = log.drain

    def drain_and_fail_over(end: int) -> None:
        drain(end)
        del log.values[1:]

    assert drain_until_stable(log.read_all, drain_and_fail_over) == {10: 0}
    assert (log.drains, log.reads) == ([3], 2)
