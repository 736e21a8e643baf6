"""A derandomised search of a suite test as a function of the test's identity, its code's
strategies and the seed only.

Hypothesis derives a derandomised run's seed from a digest of the test function and of what is
added to it (the node id, a path relative to the run's root), and its generator draws, now and
then, a literal taken from the source of every *local* module imported (not site-packages): the
same test searched differently in an installed package and an editable checkout, from another
rootdir, and after a literal was added anywhere in the project. So, while a test of a prism suite
runs derandomised (the ``prism-ci`` profile, the project's ``prism-mutant``, or any settings with
``derandomize=True``):

* its seed is :func:`seed_of` its identity (:mod:`.identity`: the module's import name and the
  rest of the node id), the same on every machine and layout;
* :func:`constants_withheld` keeps the local-constants pool out of its draws (Hypothesis's own
  constants, which do not depend on the project, stay). This replaces a Hypothesis internal for
  the duration of the test only, and only where :func:`guard_unsupported` finds the internals
  it was written against; elsewhere the search keeps the pool and the run says so once
  (:class:`ConstantsPoolWarning`). Nothing is replaced for a run, or a test, that is not a
  derandomised prism suite test.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import hypothesis
import pytest

SEED_VERSION = b"prism-testkit derandomised seed 1\0"  # changing it moves every derandomised search
SEED_BITS = 128  # as wide as the seeds Hypothesis generates itself
# The Hypothesis releases whose local-constants internals the guard was written against (and
# tests/test_derandomised.py checks): the pool is fetched by ``_get_local_constants`` through
# ``HypothesisProvider._local_constants`` and memoised per draw type in ``CONSTANTS_CACHE``.
TESTED_VERSIONS = ((6, 131), (7, 0))  # [first, past the last)


def seed_of(identity: str, part: str = "") -> int:
    """The seed of a derandomised search of the test ``identity`` (``part`` names a second
    search of the same test, e.g. its failover pass)."""
    digest = hashlib.sha384(SEED_VERSION + identity.encode() + b"\0" + part.encode()).digest()
    return int.from_bytes(digest[: SEED_BITS // 8], "big")


def _version() -> tuple[int, int]:
    major, minor = hypothesis.__version_info__[:2]
    return int(major), int(minor)


@cache
def guard_unsupported() -> str | None:
    """Why the local-constants pool cannot be withheld with this Hypothesis, or None when it can."""
    first, past = TESTED_VERSIONS
    if not first <= _version() < past:
        return f"Hypothesis {hypothesis.__version__} is outside the versions the guard knows ({first} to {past})"
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError as exc:
        return f"hypothesis.internal.conjecture.providers is gone ({exc})"
    fetch = getattr(providers, "_get_local_constants", None)
    cache_ = getattr(providers, "CONSTANTS_CACHE", None)
    provider = getattr(providers, "HypothesisProvider", None)
    pool = getattr(provider, "_local_constants", None)
    getter = getattr(pool, "func", None)  # a functools.cached_property
    if not callable(fetch) or not hasattr(getattr(cache_, "cache", None), "clear"):
        return "providers._get_local_constants or providers.CONSTANTS_CACHE moved"
    if getter is None or "_get_local_constants" not in getter.__code__.co_names:
        return "HypothesisProvider._local_constants no longer asks providers._get_local_constants"
    draw = getattr(provider, "_maybe_draw_constant", None)
    if draw is None or "_local_constants" not in draw.__code__.co_names:
        return "HypothesisProvider._maybe_draw_constant no longer draws from _local_constants"
    try:
        from hypothesis.internal.constants_ast import Constants
    except ImportError:
        return "hypothesis.internal.constants_ast.Constants moved"
    if not isinstance(getattr(providers, "_local_constants", None), Constants):
        return "the pool providers._get_local_constants returns is no longer a Constants"
    return None


class ConstantsPoolWarning(pytest.PytestWarning):
    """The derandomised searches of this run draw the project's literals (the guard cannot work here)."""


_warned = False
_depth = 0  # nested guards (a pytester run in this process) restore only at the outermost


@contextmanager
def constants_withheld() -> Iterator[bool]:
    """While inside, Hypothesis draws no constant from local modules' source. Yields whether
    the pool is withheld: False (and a warning, once) where :func:`guard_unsupported`."""
    global _warned, _depth
    reason = guard_unsupported()
    if reason is not None:
        if not _warned:
            _warned = True
            warnings.warn(
                ConstantsPoolWarning(
                    f"derandomised prism searches still draw the project's literals: {reason}; "
                    "a search may move when unrelated code changes"
                ),
                stacklevel=2,
            )
        yield False
        return
    from hypothesis.internal.conjecture import providers
    from hypothesis.internal.constants_ast import Constants

    original: Any = providers._get_local_constants
    empty = Constants()

    def no_local_constants() -> Any:
        return empty

    if _depth == 0:
        providers.CONSTANTS_CACHE.cache.clear()  # the permitted constants memoised with the pool
        providers._get_local_constants = no_local_constants
    _depth += 1
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            providers._get_local_constants = original
            providers.CONSTANTS_CACHE.cache.clear()  # ... and without it: neither outlives the guard
