"""Mutant: the read-model sink hands every row change to the read models' handlers with
``before`` None, dropping the before-image the capture delivered, so a handler that folds the
old row out (a change's delta) sees every update as an insert.

Loaded with ``-p tests.mutants.cqrs_cdc_sink_drops_before_image``; the CQRS suite must report a
row change whose before-image is not the row as it was.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs_cdc import ReadModelSink
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ReadModelSink,
    "publish",
    "        before = None if e.snapshot else _load(e.before, key)",
    "        before = None  # the bug: the before-image dropped",
)
