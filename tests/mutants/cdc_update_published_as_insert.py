"""Mutant: the CDC connector classifies changes by their after-image only, so an update (a
before-image and an after-image) is published with op ``c`` like an insert.

Loaded with ``-p tests.mutants.cdc_update_published_as_insert``; the CDC suite must report an
update published with the wrong op code.
"""

from __future__ import annotations

from prism_testkit.interfaces import KeyChange
from prism_testkit.patterns.cdc import connector
from prism_testkit.patterns.cdc.events import Op


def _op(change: KeyChange) -> Op:
    return "d" if change.after is None else "c"  # the bug: updates look like inserts


connector._op = _op
