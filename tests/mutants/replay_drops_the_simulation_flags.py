"""Mutant: the replay line a failing stateful test prints leaves out ``--prism-simulate`` (and
so ``--prism-buggify``): run as printed, the example is drawn on real time, without the
misbehaviour that found it, and the failure does not come back (issue 66: caught by tests/
only; now by the suites themselves, run under --prism-simulate).

Loaded with ``-p tests.mutants.replay_drops_the_simulation_flags``.
"""

from __future__ import annotations

from prism_testkit.stateful.runner import StatefulRun
from tests.mutants._rewrite import rewrite_line

rewrite_line(StatefulRun, "seed_command", "if self.simulated:", "if False:")
