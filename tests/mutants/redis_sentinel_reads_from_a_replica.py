"""Mutant: a Sentinel client reads keys from a replica (read scaling), so a read while the
replica lags returns a value the primary already overwrote.

Loaded with ``-p tests.mutants.redis_sentinel_reads_from_a_replica``: ``RedisKeyValue.get``
asks a replica Sentinel names (``slave_for``) instead of the primary; writes still go to the
primary, and a driver of a single server (no Sentinel) is untouched.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.backends._common import as_bytes
from prism_testkit.backends.redis import driver

_primary_get = driver.RedisKeyValue.get


async def _get_from_a_replica(self: Any, key: str) -> bytes | None:
    owner = self._driver
    if owner.sentinel is None:
        return await _primary_get(self, key)
    replica = getattr(owner, "mutant_replica", None)
    if replica is None:
        replica = owner.sentinel.slave_for(owner.client.connection_pool.service_name)
        owner.mutant_replica = replica
    with owner.guard():
        value = await replica.get(driver._key("kv", key))
    return None if value is None else as_bytes(value)


driver.RedisKeyValue.get = _get_from_a_replica  # type: ignore[method-assign]
