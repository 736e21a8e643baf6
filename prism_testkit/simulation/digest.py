"""History digests: the same seed gives the same history, byte for byte, and so the same digest.

Names that differ between runs without changing what happened (the example's namespace
prefix, made from the run id) are replaced by a placeholder before hashing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def history_digest(rendered: str, prefixes: Iterable[str] = ()) -> str:
    """A short hex digest of a rendered history with run-specific ``prefixes`` masked."""
    for prefix in sorted(set(prefixes), key=len, reverse=True):
        if prefix:
            rendered = rendered.replace(prefix, "<ns>")
    return hashlib.sha256(rendered.encode()).hexdigest()[:16]


def combined_digest(digests: Iterable[str]) -> str:
    """One digest for a test: its examples' digests in the order they ran."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]
