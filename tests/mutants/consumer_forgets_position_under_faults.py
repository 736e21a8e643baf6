"""Mutant: ``consumer_forgets_saved_position`` (a restarted consumer ignores the position its
predecessor saved), loaded under its own name so the stateful consumer suite's row runs its
tests.

Loaded with ``-p tests.mutants.consumer_forgets_position_under_faults``.
"""

from __future__ import annotations

from tests.mutants import consumer_forgets_saved_position  # noqa: F401  (patches on import)
