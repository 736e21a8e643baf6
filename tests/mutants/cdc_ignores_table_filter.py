"""Mutant: the CDC connector publishes every table's changes, ignoring the configured
``tables`` (the filter only keeps out the connector's own progress key).

Loaded with ``-p tests.mutants.cdc_ignores_table_filter``; the CDC suite must report an event
of a table that was not asked for.
"""

from __future__ import annotations

from prism_testkit.patterns.cdc import CdcConnector


def _wanted(self: CdcConnector, key: str) -> bool:
    return key != self.config.snapshot_state_key  # the bug: config.tables not consulted


CdcConnector._wanted = _wanted  # type: ignore[method-assign]
