"""How xdist deals the tests to its workers (``-n``, ``--prism-workers``).

Two rules, both in :func:`make_scheduler`:

- **Rows of an exclusive backend** (``BackendSpec.exclusive``, such as a cluster) go to one
  worker. Each worker provisions what its tests use, so a cluster whose rows were dealt out to
  four workers would run four times over on two cores. Unless they weigh more than a worker's
  share of the run (the recorded seconds of all its tests over its workers): then the run could
  not end before that one worker did (a main job's ``jetstream-r3`` rows: 1,084 s of its
  1,123 s), so they are split by module into as many parts as they hold shares, each part on a
  worker with a cluster of its own (:func:`exclusive_parts`). The controller never collects tests: it
  sees node ids only, so it finds a row's backends in the id's combination (``slot=backend``
  pairs joined by ``-``, as :attr:`Combination.id` writes them). xdist's own ``loadgroup`` does
  not serve: it relies on rewriting node ids, which pytest 9.2 no longer allows
  (pytest-dev/pytest-xdist#1386).
- **Heaviest first**, when an earlier run's durations are known (``--prism-shard-durations``,
  the main job's last run in pytest's cache, or the main job's shipped with the package): each
  unit of work weighs its tests' recorded seconds (a test not recorded, the median of those
  recorded that took any time) and the heaviest are dealt first, so the short tests fill the end
  instead of one worker running a long test alone while the others have finished. Without
  recordings the units go out as xdist orders them: the exclusive backends' (the largest) first,
  then collection order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

EXCLUSIVE_SCOPE = "prism-exclusive"
MAX_PARTS = 3  # clusters of one backend at once, at most: each part starts (and idles) its own
RECORDED_TO_SPLIT = 0.9  # the share of a backend's rows that must have been recorded to split them


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


def heaviest_first(units: Mapping[str, Collection[str]], recorded: Mapping[str, float]) -> list[str]:
    """The units (name -> its tests' node ids) in the order to deal them, heaviest first by
    their tests' recorded seconds (:func:`prism_testkit.registry.shards.weigh`: a test not
    recorded weighs the median of those that took any time). Ties keep the given order."""
    from prism_testkit.registry.shards import weigh

    weight = weigh(units, recorded.get)
    return sorted(units, key=lambda name: -weight[name])  # stable: ties keep their order


def exclusive_parts(
    collection: Sequence[str],
    names: Collection[str],
    exclusive: Collection[str],
    recorded: Mapping[str, float],
    workers: int,
) -> dict[str, str]:
    """The scope of each exclusive backend's row in ``collection`` (node id -> scope): one per
    backend, or, for a backend whose rows weigh more than a worker's share of the whole run
    (every test's ``recorded`` seconds over ``workers``), ``ceil(weight / share)`` parts (at most
    :data:`MAX_PARTS`), its modules dealt heaviest first onto the lightest part. A backend whose
    rows were not recorded (:data:`RECORDED_TO_SPLIT`), or a run with nothing recorded: one scope
    per backend (a split by count or by the median would guess)."""
    from prism_testkit.registry.shards import split, weigh

    rows: dict[str, list[str]] = {}
    for nodeid in collection:
        if (backend := exclusive_backend(nodeid, names, exclusive)) is not None:
            rows.setdefault(backend, []).append(nodeid)
    scopes = {nodeid: f"{EXCLUSIVE_SCOPE}:{backend}" for backend, ids in rows.items() for nodeid in ids}
    if not rows or not any(nodeid in recorded for nodeid in collection):
        return scopes
    weights = weigh({nodeid: [nodeid] for nodeid in collection}, recorded.get)
    if (total := sum(weights.values())) <= 0:
        return scopes  # recorded as taking nothing (skipped where they were recorded): no weight to split by
    share = total / max(workers, 1)
    for backend, ids in rows.items():
        parts = min(MAX_PARTS, math.ceil(sum(weights[nodeid] for nodeid in ids) / share))
        if parts < 2 or sum(nodeid in recorded for nodeid in ids) < RECORDED_TO_SPLIT * len(ids):
            continue  # light, or weighed by guesses (a new backend's rows weigh the median)
        modules: dict[str, list[str]] = {}
        for nodeid in ids:
            modules.setdefault(nodeid.split("::", 1)[0], []).append(nodeid)
        if len(modules) < 2:
            continue
        module_weights = {module: sum(weights[nodeid] for nodeid in members) for module, members in modules.items()}
        for part, names_in_part in enumerate(split(module_weights, parts), start=1):
            for module in names_in_part:
                scopes.update((nodeid, f"{EXCLUSIVE_SCOPE}:{backend}:{part}") for nodeid in modules[module])
    return scopes


def make_scheduler(
    config: Any,
    log: Any,
    names: Collection[str],
    exclusive: Collection[str],
    recorded: Mapping[str, float],
    publish: Callable[[Mapping[str, str]], None] = lambda scopes: None,
) -> Any:
    """xdist's load-by-scope scheduler where every test is a scope of its own (so tests are dealt
    out one by one, as ``load`` does) except an exclusive backend's rows, which are one scope per
    backend (two clusters run side by side on two workers) or per part of a heavy one
    (:func:`exclusive_parts`); the scopes dealt heaviest first by ``recorded`` (node id ->
    seconds), or as xdist orders them when it is empty."""
    from xdist.scheduler import LoadScopeScheduling

    class PrismScheduling(LoadScopeScheduling):
        ordered = False
        scopes: dict[str, str] | None = None  # an exclusive backend's rows -> their scope

        def _split_scope(self, nodeid: str) -> str:
            if self.scopes is None:  # xdist sets the collection before it first asks
                self.scopes = exclusive_parts(self.collection or [], names, exclusive, recorded, self.numnodes)
                publish(self.scopes)
            return self.scopes.get(nodeid, nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # xdist fills its work queue in schedule() and then deals the first units through
            # here: the one place to reorder it before anything is sent
            if recorded and not self.ordered:
                self.ordered = True
                queue = dict(self.workqueue)
                self.workqueue.clear()
                self.workqueue.update((name, queue[name]) for name in heaviest_first(queue, recorded))
            super()._assign_work_unit(node)

    return PrismScheduling(config, log)
