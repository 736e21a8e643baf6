"""Mutant: the read-model sink takes a command's id from its journal row's key after the *last*
slash instead of the first, so a command whose id holds a slash (``client-7/retry-2``) is
remembered under another id and a read-your-writes wait for it never returns.

Loaded with ``-p tests.mutants.cqrs_cdc_command_ids_cut_at_slash``; the CQRS suite must report a
hostile command id that read-your-writes never reaches.
"""

from __future__ import annotations

from prism_testkit.patterns.cqrs_cdc import ReadModelSink
from tests.mutants._rewrite import rewrite_line

rewrite_line(
    ReadModelSink,
    "publish",
    '            commands.append(key.split("/", 1)[1])',
    '            commands.append(key.rsplit("/", 1)[1])  # the bug: the last slash',
)
