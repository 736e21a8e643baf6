"""Mutant (a wrong judge, issue 66 item 2): the CDC checker's per-key order never looks at the
first event delivered.

Loaded with ``-p tests.mutants.cdc_order_skips_the_first_event``; see ``JUDGE_MUTANTS`` in
``tests/test_mutants.py``.
"""

from __future__ import annotations

import prism_testkit.suites._cdc_checker as cdc_checker

from ._rewrite import rewrite_function_line

rewrite_function_line(
    cdc_checker,
    "_classify_key_order",
    "            if event.key == key and event.after is not None:",
    ("            if event.key == key and event.after is not None and event is not index.streamed[0]:  # the bug"),
)
