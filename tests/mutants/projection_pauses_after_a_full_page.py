"""Mutant: a projection following its store in the background (``run``) takes a full page for
"nothing more ready" and waits a poll interval after it, so a backlog of N pages costs N poll
intervals: nothing is lost, the read model only falls further behind than it needs to.

Loaded with ``-p tests.mutants.projection_pauses_after_a_full_page``; the event-sourcing suite
must report a pause with full pages pending.
"""

from __future__ import annotations

from prism_testkit.patterns.event_sourcing import ProjectionRunner
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ProjectionRunner,
    "run",
    "return await self.run_once() >= self.batch_size",
    "return await self.run_once() > self.batch_size  # the bug: a full page reads as drained",
)
