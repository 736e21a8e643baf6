"""Mutant: ``--prism-load`` takes its ``stall`` field twice and keeps the last, so a run under
``stall:200ms@2s,...,stall:2s@200ms`` stalls as the user did not read; only ``cpu`` given twice
was ever tested (issue 66).

Loaded with ``-p tests.mutants.load_accepts_a_stall_twice``.
"""

from __future__ import annotations

from prism_testkit.faults import load
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(load, "parse", "if kind in seen:", 'if kind in seen and kind != "stall":')
