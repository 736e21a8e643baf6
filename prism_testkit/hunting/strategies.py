"""Hypothesis strategies shared by the suites (claim check, outbox, WAL...).

Large values are derived from drawn integers (a size and a seed), never drawn byte by byte:
Hypothesis stays fast and within its entropy budget, shrinking still works on the size, and
every example replays exactly from its seed (``os.urandom`` would break replay).
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

__all__ = [
    "compressible_bytes",
    "payloads",
    "random_bytes",
    "sized_payloads",
]

# Above this, content comes from a seed rather than from Hypothesis' own byte draws.
_DRAWN_BYTES_LIMIT = 256


def random_bytes(size: int, seed: int) -> bytes:
    """``size`` incompressible bytes, the same for the same ``seed``."""
    return random.Random(seed).randbytes(size) if size else b""


def _repeat(unit: bytes, size: int) -> bytes:
    if size == 0:
        return b""
    return (unit * (size // len(unit) + 1))[:size]


def sized_payloads(min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    """Incompressible payloads with a length in ``[min_size, max_size]``."""
    if min_size < 0 or max_size < min_size:
        raise ValueError(f"need 0 <= min_size <= max_size, got {min_size}, {max_size}")
    return st.builds(random_bytes, st.integers(min_size, max_size), st.integers(0, 2**32 - 1))


def compressible_bytes(min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    """Highly repetitive payloads (a short unit repeated) with a length in ``[min_size, max_size]``."""
    if min_size < 0 or max_size < min_size:
        raise ValueError(f"need 0 <= min_size <= max_size, got {min_size}, {max_size}")
    return st.builds(_repeat, st.binary(min_size=1, max_size=16), st.integers(min_size, max_size))


def payloads(threshold: int, max_size: int) -> st.SearchStrategy[bytes]:
    """Payloads around a size ``threshold``, for patterns that treat sizes differently.

    Mixes: empty; small binary drawn directly (shrinks to readable bytes); exactly
    ``threshold - 1``, ``threshold`` and ``threshold + 1`` bytes; incompressible payloads of any
    size up to ``max_size``, above the threshold, and in the upper half up to ``max_size``; and
    highly compressible ones up to ``max_size``.
    """
    if threshold < 0 or max_size < 0:
        raise ValueError(f"threshold and max_size must be >= 0, got {threshold}, {max_size}")
    seeds = st.integers(0, 2**32 - 1)
    boundary = sorted({n for n in (threshold - 1, threshold, threshold + 1) if 0 <= n <= max_size})
    options: list[st.SearchStrategy[bytes]] = [
        st.just(b""),
        st.binary(max_size=min(max_size, _DRAWN_BYTES_LIMIT)),
        sized_payloads(0, max_size),
        compressible_bytes(0, max_size),
    ]
    if boundary:
        options.insert(1, st.builds(random_bytes, st.sampled_from(boundary), seeds))
    if threshold + 1 <= max_size:
        # Claimed payloads (above the threshold) deserve their own share of the examples, and
        # so do large ones: integer draws favour small values, a plain range rarely reaches max_size.
        options.append(sized_payloads(threshold + 1, max_size))
        options.append(sized_payloads(max(threshold + 1, max_size // 2), max_size))
    return st.one_of(options)
