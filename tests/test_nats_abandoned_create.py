"""A stream create whose only caller stopped waiting (abandoned under a fault) and that then
fails leaves no "Task exception was never retrieved" behind: the clean-shutdown test saw one
with its traceback after a run's summary."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from prism_testkit.backends.nats.jetstream import JetStream
from prism_testkit.errors import ConnectionLost


def test_a_failed_create_nobody_waits_for_is_not_reported_as_unretrieved() -> None:
    js = JetStream.__new__(JetStream)  # the creation bookkeeping only: no server
    js._ready, js._creating = set(), {}
    unretrieved: list[dict[str, Any]] = []

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionLost("backend 'nats': connection closed")

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: unretrieved.append(context))
        caller = asyncio.ensure_future(js._created_once("S", fails))
        await asyncio.sleep(0)
        create = js._creating["S"]
        caller.cancel()  # the caller gave up; the shielded create runs on and fails
        await asyncio.wait([create])
        await asyncio.sleep(0)  # its done callbacks
        assert not js._creating
        del caller, create
        gc.collect()

    asyncio.run(scenario())
    gc.collect()
    assert not unretrieved, unretrieved
    assert js._ready == set()
