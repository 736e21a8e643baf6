"""Mutant: localfs percent-encodes object keys and bucket names into file names but keeps '%'
itself as it is, so the key ``a%2Eb`` and the key ``a.b`` are one file (the classic escape
that does not escape its own escape character).

Loaded with ``-p tests.mutants.localfs_escape_character_kept``; the names suite must see the
two keys alias.
"""

from __future__ import annotations

from prism_testkit.backends import localfs

localfs._SAFE = localfs._SAFE | {ord("%")}
