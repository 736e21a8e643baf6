"""Mutant: ``producer_reports_failure_as_published`` (a publish whose sends all failed reported
published), loaded under its own name so the stateful producer suite's row runs every test.

Loaded with ``-p tests.mutants.producer_failure_published_under_faults``.
"""

from __future__ import annotations

from tests.mutants import producer_reports_failure_as_published  # noqa: F401  (patches on import)
