"""Mutant: a migrator pass ends at the first key whose move fails, so one key's trouble (a tier
that refuses its copy) holds back every key planned after it, pass after pass.

Loaded with ``-p tests.mutants.tiered_migrator_stops_the_pass_at_a_failed_key``.
"""

from __future__ import annotations

from prism_testkit.patterns.tiered_storage import Migrator
from tests.mutants._rewrite import rewrite_line

rewrite_line(Migrator, "run_once", "moved = False", "break  # the bug: the pass ends with the failed key")
