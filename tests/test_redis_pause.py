"""A calm Redis command outlasts a stall the machine's slowness allows for.

redis-py gives every connection a fixed 5 s socket timeout: a loaded machine outran it on calm
operations, which then ended as ConnectionLost (an unknown outcome, a red in a contract test)
long before the harness's own ``calm-op`` bound. The driver's timeout is scaled like every bound.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.runtime import PrismRuntime
from tests.conftest import read_through_a_pause, runtime_of

STALL = 5.5  # seconds the server is held: past redis-py's fixed 5 s, well inside 10 s x 3
SLOWNESS = "3"  # the machine's slowness the driver is created under (its timeout: 30 s)


@pytest.fixture
def redis(prism_binaries: Mapping[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[PrismRuntime]:
    monkeypatch.setenv("PRISM_SLOWNESS", SLOWNESS)
    yield from runtime_of("redis", "pause", prism_binaries)


def test_a_read_held_past_five_seconds_is_answered_after_the_resume(redis: PrismRuntime) -> None:
    answered_while_paused, value = read_through_a_pause(redis, "redis", STALL)
    assert not answered_while_paused, "the read ended while the server was paused"
    assert value == b"before"
