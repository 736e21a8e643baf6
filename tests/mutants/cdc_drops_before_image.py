"""Mutant: the CDC connector never puts the before-image into its events, whatever
``include_old_value`` says, so updates and deletes arrive without the old row.

Loaded with ``-p tests.mutants.cdc_drops_before_image``; the CDC suite must report an update or
a delete without its before-image.
"""

from __future__ import annotations

import dataclasses

from prism_testkit.interfaces import ChangeSet
from prism_testkit.patterns.cdc import CdcConnector
from prism_testkit.patterns.cdc.events import ChangeEvent

_events = CdcConnector._events


def _without_before(self: CdcConnector, change_set: ChangeSet) -> list[ChangeEvent]:
    return [dataclasses.replace(e, before=None) for e in _events(self, change_set)]  # the bug


CdcConnector._events = _without_before  # type: ignore[method-assign]
