"""Ending the harness's event loop the way :func:`asyncio.run` ends its own.

Client libraries cancel their background tasks when closed but leave the cancellation to the
next turns of the loop; a loop closed right after them destroys those tasks while pending, and
their coroutines raise into a closed loop when the garbage collector reaches them. So every task
left on the loop is cancelled and awaited (bounded), then async generators and the default
executor are finished, and only then is the loop closed.
"""

from __future__ import annotations

import asyncio
import contextlib

# Seconds the leftover tasks get to finish after cancellation; a task that ignores it is reported.
CANCEL_GRACE = 5.0
_ROUNDS = 3  # a cancelled task may start another one (a client's reconnect): look again


def close_loop(loop: asyncio.AbstractEventLoop, *, grace: float = CANCEL_GRACE) -> list[str]:
    """Cancel and await every task left on ``loop``, then close it. Returns one line per task that
    did not finish within ``grace`` seconds (a leak the caller should report)."""
    if loop.is_closed():
        return []
    stubborn: list[asyncio.Task[object]] = []
    for _ in range(_ROUNDS):
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.wait(pending, timeout=grace))
        for task in pending:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a background task's last error is not news at shutdown
        stubborn = [task for task in pending if not task.done()]
        if stubborn:
            break
    loop.run_until_complete(loop.shutdown_asyncgens())
    with contextlib.suppress(TimeoutError):  # a thread stuck in process control must not hang the run
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), grace))
    loop.close()
    return [f"task {task.get_name()} ignored cancellation: {task.get_coro()!r}" for task in stubborn]
