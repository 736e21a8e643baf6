"""Mutant: a Sentinel client asks the Sentinels for the primary once, at connect, and keeps
talking to that address, so after a failover its writes go to the demoted node (a replica
answering READONLY) for good.

Loaded with ``-p tests.mutants.redis_sentinel_client_pins_the_primary``: ``RedisDriver.connect``
replaces a Sentinel-backed client by a plain one to the primary named at connect; a driver of a
single server is untouched.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from prism_testkit.backends.redis import driver

_connect = driver.RedisDriver.connect.__func__  # type: ignore[attr-defined]


async def _connect_pinned(cls: Any, name: str, capabilities: Any, endpoint: Any) -> Any:
    connected = await _connect(cls, name, capabilities, endpoint)
    if connected.sentinel is not None:
        found = connected.client
        host, port = await connected.sentinel.discover_master(found.connection_pool.service_name)
        connected.client = aioredis.Redis(host=host, port=port)
        await found.aclose()
    return connected


driver.RedisDriver.connect = classmethod(_connect_pinned)  # type: ignore[assignment]
