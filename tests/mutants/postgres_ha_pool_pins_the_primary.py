"""Mutant: the PostgreSQL driver's pool resolves the primary of a multi-host URL once, at connect,
and opens every later connection to that one host, so after a failover its writes go to the
demoted node (a standby) for good.

Loaded with ``-p tests.mutants.postgres_ha_pool_pins_the_primary``: the driver's
``asyncpg.create_pool`` is given a one-host DSN naming the server a first connection reached.
"""

from __future__ import annotations

import types
import urllib.parse
from typing import Any

import asyncpg

from prism_testkit.backends.postgres import driver


async def _pool_of_the_first_primary(dsn: str, **options: Any) -> Any:
    parts = urllib.parse.urlsplit(dsn)
    if "," in parts.netloc:
        probe = await asyncpg.connect(dsn=dsn)
        try:
            host, port = await probe.fetchrow("SELECT host(inet_server_addr()), inet_server_port()")
        finally:
            await probe.close()
        userinfo = parts.netloc.rpartition("@")[0]
        dsn = parts._replace(netloc=f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}").geturl()
    return await asyncpg.create_pool(dsn=dsn, **options)


driver.asyncpg = types.SimpleNamespace(  # type: ignore[attr-defined]  # swaps the module driver calls
    **{**vars(asyncpg), "create_pool": _pool_of_the_first_primary}
)
