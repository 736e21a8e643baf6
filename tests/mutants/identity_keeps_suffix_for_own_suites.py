"""Mutant: the identity of a test of the harness's own suites keeps its file's ``.py`` suffix
(``prism_testkit.suites.test_stateful_wal.py::...``): its replay under ``--pyargs`` finds nothing,
and a report, a shard's recorded durations and a hunt's examples key it apart from the same
test named by an out-of-tree package's rule (issue 66). The shipped suites and an author's
are named by one rule since the folders became the import names, so it breaks both.

Loaded with ``-p tests.mutants.identity_keeps_suffix_for_own_suites``.
"""

from __future__ import annotations

from prism_testkit.hunting import identity
from tests.mutants._rewrite import rewrite_function_line

identity.module_identity.cache_clear()
rewrite_function_line(
    identity,
    "module_identity",
    'parts = [] if path.name == "__init__.py" else [path.stem]',
    'parts = [] if path.name == "__init__.py" else [path.name]  # the bug: the suffix stays',
)
