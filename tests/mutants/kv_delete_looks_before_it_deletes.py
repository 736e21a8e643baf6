"""Mutant: memstore's key-value ``delete`` looks whether the key exists, waits for the answer
(a round trip, as a driver sending GET and then DEL does), and then deletes: every one of
several concurrent deletes of one key saw it and reports "existed" (issue 53: an outside
author's driver did so in 50 of 50 trials).

Loaded with ``-p tests.mutants.kv_delete_looks_before_it_deletes``; the key-value contract
suite's concurrent-delete test must fail.
"""

from __future__ import annotations

import asyncio

from prism_testkit.backends.memstore import _MemKeyValue


async def _delete(self: _MemKeyValue, key: str) -> bool:
    existed = await self.exists(key)
    await asyncio.sleep(0)  # the bug: the answer is a look taken before the delete
    self._store.kv.delete(key)
    return existed


_MemKeyValue.delete = _delete  # type: ignore[method-assign]
