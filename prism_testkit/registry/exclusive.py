"""Rows of an exclusive backend (``BackendSpec.exclusive``, such as a cluster) on one xdist
worker. Each worker provisions what its tests use, so a cluster whose rows were dealt out to
four workers would run four times over on two cores. The controller never collects tests: it
sees node ids only, so it finds a row's backends in the id's combination (``slot=backend``
pairs joined by ``-``, as :attr:`Combination.id` writes them). xdist's own ``loadgroup`` does not
serve: it relies on rewriting node ids, which pytest 9.2 no longer allows
(pytest-dev/pytest-xdist#1386)."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

EXCLUSIVE_SCOPE = "prism-exclusive"


def exclusive_backend(nodeid: str, names: Collection[str], exclusive: Collection[str]) -> str | None:
    """The first backend of ``exclusive`` the test ``nodeid`` runs on, or None. At each ``=`` of
    its parameters the longest registered name (of ``names``) that ends there or at a ``-`` is
    the backend, so ``jetstream-r3`` is not mistaken for a longer ``jetstream-r3-lazy-sync``."""
    if not exclusive or "[" not in nodeid:
        return None
    params = nodeid[nodeid.index("[") + 1 : nodeid.rindex("]") if nodeid.endswith("]") else len(nodeid)]
    by_length = sorted(names, key=len, reverse=True)
    for at in (m.end() for m in re.finditer("=", params)):
        rest = params[at:]
        named = next((n for n in by_length if rest.startswith(n) and rest[len(n) : len(n) + 1] in ("", "-")), None)
        if named in exclusive:
            return named
    return None


def make_scheduler(config: Any, log: Any, names: Collection[str], exclusive: Collection[str]) -> Any:
    """xdist's load-by-scope scheduler where every test is a scope of its own (so tests are dealt
    out one by one, as ``load`` does) except an exclusive backend's rows, which are one scope per
    backend (two clusters run side by side on two workers): the largest, so handed out first."""
    from xdist.scheduler import LoadScopeScheduling

    class ExclusiveRowsScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            backend = exclusive_backend(nodeid, names, exclusive)
            return nodeid if backend is None else f"{EXCLUSIVE_SCOPE}:{backend}"

    return ExclusiveRowsScheduling(config, log)
