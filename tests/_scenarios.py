"""The unit tests' one way to run an async scenario against a fresh subject (a driver, or the
pattern's stores over one), opened per backend the fixture is parametrised with."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

T = TypeVar("T")

Runner = Callable[[Callable[[T], Awaitable[None]]], None]


def scenario_runner(open_subject: Callable[[], AbstractAsyncContextManager[T]]) -> Runner[T]:
    """A function that runs a scenario on its own event loop against a subject
    ``open_subject`` opens, closing it afterwards whatever the scenario did."""

    def run(scenario: Callable[[T], Awaitable[None]]) -> None:
        async def main() -> None:
            async with open_subject() as subject:
                await scenario(subject)

        asyncio.run(main())

    return run
