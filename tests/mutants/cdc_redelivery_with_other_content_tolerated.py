"""Mutant (a wrong judge, issue 66 item 2): the CDC checker takes an event redelivered with other
content for a plain duplicate, which at-least-once tolerates.

Loaded with ``-p tests.mutants.cdc_redelivery_with_other_content_tolerated``; see
``JUDGE_MUTANTS`` in ``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "_classify_redeliveries",
    '                findings.add("inconsistent-duplicate", f"event {event.event_id} redelivered with other content")',
    "                pass  # the bug: any redelivery is a duplicate",
)
