"""Mutant: memstore's ``compare_and_set`` reads the current value, waits for the answer (a
round trip), and then writes unconditionally: concurrent put-if-absent calls from several
clients all win.

Loaded with ``-p tests.mutants.kv_put_if_absent_looks_first``; the key-value contract suite's
concurrent compare-and-set tests must fail.
"""

from __future__ import annotations

import asyncio

from prism_testkit.backends.memstore import _MemKeyValue

_compare_and_set = _MemKeyValue.compare_and_set


async def _look_then_write(self: _MemKeyValue, key: str, expected: bytes | None, new: bytes) -> bool:
    current = await self.get(key)
    await asyncio.sleep(0)  # the bug: the comparison and the write are two steps
    if current != expected:
        return False
    await self.put(key, new)
    return True


_MemKeyValue.compare_and_set = _look_then_write  # type: ignore[method-assign]
