"""Mutant: the CDC connector ignores ``include_old_value: false`` and always publishes the
before-image (old rows leak to consumers that were configured not to see them).

Loaded with ``-p tests.mutants.cdc_always_includes_before_image``; the CDC suite must report a
before-image published although include_old_value is false.
"""

from __future__ import annotations

from prism_testkit.interfaces import ChangeSet
from prism_testkit.patterns.cdc import CdcConnector
from prism_testkit.patterns.cdc.events import ChangeEvent

_events = CdcConnector._events


def _with_before(self: CdcConnector, change_set: ChangeSet) -> list[ChangeEvent]:
    config = self.config
    self.config = config.model_copy(update={"include_old_value": True})  # the bug: the setting is ignored
    try:
        return _events(self, change_set)
    finally:
        self.config = config


CdcConnector._events = _with_before  # type: ignore[method-assign]
