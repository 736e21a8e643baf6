"""Suites run on the backends that namespace files name (``--prism-namespace FILE``).

Each pattern of a namespace adds one combination to every suite its registration names as
proof (``claim-check`` -> ``claim_check``, ``stateful_claim_check``): the namespace's backend in
each slot, with the namespace's configuration of the pattern attached for suites that want it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from prism_testkit.config.namespace_files import NamespaceError, NamespaceFile, ResolvedPattern, load_namespaces
from prism_testkit.registry.backends import BackendRegistry
from prism_testkit.registry.combinations import Combination, Slot
from prism_testkit.registry.patterns import PatternRegistry


@dataclass(frozen=True)
class NamespacePlan:
    files: tuple[NamespaceFile, ...] = ()

    def _patterns(self) -> Iterator[tuple[str, ResolvedPattern]]:
        for file in self.files:
            for namespace in file.namespaces:
                for pattern in namespace.chain:
                    yield namespace.name, pattern

    @property
    def backends(self) -> list[str]:
        """Every backend a namespace names, in first-seen order: each must be provisionable."""
        names = (b for _, p in self._patterns() for b in p.slots.values())
        return list(dict.fromkeys(names))

    def combinations(self, suite: str, slots: Mapping[str, Slot]) -> list[Combination]:
        found = []
        for namespace, pattern in self._patterns():
            if suite not in pattern.spec.suites or not set(slots) <= set(pattern.slots):
                continue
            found.append(
                Combination(
                    tuple((slot, pattern.slots[slot]) for slot in slots),
                    namespace=namespace,
                    pattern_config=pattern.config,
                )
            )
        return found


def load_plan(paths: Sequence[Path], registry: BackendRegistry, patterns: PatternRegistry) -> NamespacePlan:
    """Load and validate every file; any problem is a usage error listing all of them."""
    files: list[NamespaceFile] = []
    problems: list[str] = []
    for path in paths:
        try:
            files.append(load_namespaces(path, registry, patterns))
        except NamespaceError as exc:
            problems.extend(str(problem) for problem in exc.problems)
        except OSError as exc:
            problems.append(f"{path}: cannot read namespace file: {exc.strerror or exc}")
    if problems:
        raise pytest.UsageError("invalid namespace file(s):\n  " + "\n  ".join(problems))
    return NamespacePlan(tuple(files))
