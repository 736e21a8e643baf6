"""close_loop ends the tasks a client library leaves behind before the loop closes."""

from __future__ import annotations

import asyncio

from prism_testkit.runtime.loop_shutdown import close_loop


def test_leftover_tasks_are_cancelled_and_awaited_before_the_loop_closes() -> None:
    loop = asyncio.new_event_loop()
    cleaned: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("background")

    async def start() -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(background())
        await asyncio.sleep(0)  # started: it now waits in its sleep
        return task

    task = loop.run_until_complete(start())
    never_started = loop.create_task(background())  # created but never run, like a reconnect task
    assert close_loop(loop) == []
    assert loop.is_closed()
    assert task.cancelled()
    assert never_started.cancelled()
    assert cleaned == ["background"]  # the started one ran its cleanup; the other never began


def test_a_task_that_ignores_cancellation_is_reported() -> None:
    loop = asyncio.new_event_loop()
    # The task is destroyed pending once the loop is closed; that message is expected here.
    loop.set_exception_handler(lambda _loop, _context: None)

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    loop.run_until_complete(asyncio.sleep(0))
    task = loop.create_task(stubborn(), name="stubborn")
    loop.run_until_complete(asyncio.sleep(0))
    reported = close_loop(loop, grace=0.1)
    assert len(reported) == 1
    assert "stubborn" in reported[0]
    assert not task.done()  # left to the caller to report: it could not be ended


def test_a_closed_loop_is_left_alone() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    assert close_loop(loop) == []
