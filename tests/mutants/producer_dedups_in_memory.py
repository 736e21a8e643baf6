"""Mutant: the producer remembers published content in its own memory instead of the state
slot, and forever: a restarted producer publishes duplicates, and content whose window ended is
still dropped.

Loaded with ``-p tests.mutants.producer_dedups_in_memory``.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.patterns.producer import Producer
from prism_testkit.patterns.producer import process as module

_published = Producer._published


async def _read_own_memory(self: Producer, digest: str) -> Any:
    seen = self.__dict__.setdefault("_seen_digests", {})
    return module._Mark(0.0, seen[digest]) if digest in seen else None


async def _remember(self: Producer, item: Any) -> None:
    if item.digest is not None:
        self.__dict__.setdefault("_seen_digests", {})[item.digest] = item.message_id
        self._by_digest.pop(item.digest, None)
        item.digest = None
    await _published(self, item)


Producer._read_mark = _read_own_memory  # type: ignore[method-assign]
Producer._published = _remember  # type: ignore[method-assign]
