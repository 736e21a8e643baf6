"""Mutant: ``consumer_acks_before_handling`` (a queue message acked before its handler ran),
loaded under its own name so the stateful consumer suite's row runs its tests.

Loaded with ``-p tests.mutants.consumer_acks_first_under_faults``.
"""

from __future__ import annotations

from tests.mutants import consumer_acks_before_handling  # noqa: F401  (patches on import)
