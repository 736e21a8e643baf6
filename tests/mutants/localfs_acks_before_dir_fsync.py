"""Mutant: localfs answers a put once the object's files are written, fsynced and renamed into
place, and fsyncs the bucket's directory (which makes the renames durable) only at the next turn
of the event loop, yet keeps declaring ``survives_power_loss=True``: a store that acknowledges
before its new names are on disk (the broker of issue 53 renamed its database into place and
never fsynced the directory).

A power cut at the end of a workload comes after the directory fsync; one right after the
acknowledgement (the power-loss suite's rounds) must lose the put of every round.

Loaded with ``-p tests.mutants.localfs_acks_before_dir_fsync``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import prism_testkit.backends.localfs as localfs

_fsync_dir = localfs._fsync_dir
_put = localfs._LocalObjects.put
_deferred: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("deferred", default=None)


def _fsync_dir_later(path: Path) -> None:
    later = _deferred.get()
    if later is None:
        _fsync_dir(path)
    else:
        later.append(path)  # a put's: fsynced after its answer


def _fsync_all(paths: list[Path]) -> None:
    for path in paths:
        _fsync_dir(path)


async def _put_answered_first(
    self: Any, bucket: str, key: str, data: bytes, **kwargs: Mapping[str, str] | float | None
) -> Any:
    later: list[Path] = []
    token = _deferred.set(later)  # asyncio.to_thread copies the context: the put's thread sees it
    try:
        info = await _put(self, bucket, key, data, **kwargs)  # type: ignore[arg-type]
    finally:
        _deferred.reset(token)
    asyncio.get_running_loop().create_task(asyncio.to_thread(_fsync_all, later))
    return info


localfs._fsync_dir = _fsync_dir_later
localfs._LocalObjects.put = _put_answered_first  # type: ignore[method-assign]
