"""Mutant: ``max_metadata_bytes`` is ignored: metadata of any size (within the per-field
limits) is accepted and written, where the registry promises :class:`InvalidMetadata`.

Loaded with ``-p tests.mutants.multicast_registry_metadata_size_unchecked``.
"""

from __future__ import annotations

from prism_testkit.patterns import multicast_registry as mr
from prism_testkit.patterns.multicast_registry import registry

_check_metadata = mr.check_metadata


def check_metadata(metadata: object, limit: int) -> dict[str, mr.Scalar]:
    return _check_metadata(metadata, 2**62)  # the bug: the configured limit is never applied


# Replaced where the registry looks it up (it imports the name from .validation).
registry.check_metadata = check_metadata  # type: ignore[attr-defined]
