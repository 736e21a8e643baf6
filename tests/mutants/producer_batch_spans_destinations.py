"""Mutant: the producer cuts its batches by size alone, so messages handed over for two
destinations within one batch's time share a batch, and a batch sink (one destination per call:
an outbox transaction) gets the whole batch for its first message's destination. Every other
message lands at the wrong destination, reported published. (The producer's own code before
issue 66.)

Loaded with ``-p tests.mutants.producer_batch_spans_destinations``; the producer suite's test
of a batch to two destinations must fail.
"""

from __future__ import annotations

from prism_testkit.patterns.producer import Producer
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    Producer,
    "_next_batch",
    "while count < min(size, len(self._buffer)) and self._buffer[count].destination == destination:",
    "while count < min(size, len(self._buffer)):  # the bug: a batch takes any destination",
)
