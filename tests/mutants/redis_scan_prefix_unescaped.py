"""Mutant: the Redis driver hands a scan's prefix to ``SCAN MATCH`` as it is, unescaped, so
the glob characters in it match other keys: ``scan("k?")`` lists ``kx``, ``scan("a[x]b")``
lists ``axb``.

Loaded with ``-p tests.mutants.redis_scan_prefix_unescaped``; the names suite's prefix scans
must list more than the prefix.
"""

from __future__ import annotations

from prism_testkit.backends.redis import driver


def _unescaped(text: str) -> str:
    return text  # the bug: glob characters keep their meaning


driver.glob_escape = _unescaped
