"""Mutant: ``consumer_saves_before_handling`` (the log consumer saves its position before the
handler ran), loaded under its own name so the stateful consumer suite's row runs its tests.

Loaded with ``-p tests.mutants.consumer_saves_first_under_faults``.
"""

from __future__ import annotations

from tests.mutants import consumer_saves_before_handling  # noqa: F401  (patches on import)
