"""A stream create whose only caller stopped waiting (abandoned under a fault) and that then
fails leaves no "Task exception was never retrieved" behind: the clean-shutdown test saw one
with its traceback after a run's summary."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from prism_testkit.backends.nats.driver import NatsDriver

from prism_testkit.errors import ConnectionLost


def test_a_failed_create_nobody_waits_for_is_not_reported_as_unretrieved() -> None:
    driver = NatsDriver.__new__(NatsDriver)  # the creation bookkeeping only: no server
    driver._ready, driver._creating = set(), {}
    unretrieved: list[dict[str, Any]] = []

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionLost("backend 'nats': connection closed")

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unretrieved.append(context))
        caller = asyncio.ensure_future(driver._created_once("S", fails))
        await asyncio.sleep(0)
        create = driver._creating["S"]
        caller.cancel()  # the caller gave up; the shielded create runs on and fails
        await asyncio.wait([create])
        await asyncio.sleep(0)  # its done callbacks
        assert not driver._creating
        del caller, create
        gc.collect()

    asyncio.run(scenario())
    gc.collect()
    assert not unretrieved, unretrieved
    assert driver._ready == set()
