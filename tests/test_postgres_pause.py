"""A paused PostgreSQL answers nobody, open connections included.

PostgreSQL's backends call setsid(), so a SIGSTOP of the postmaster's process group stopped the
postmaster alone: every connection opened before the pause went on reading and writing through
a server the nemesis recorded as paused, and a suite's pause rule proved nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from prism_testkit.runtime import PrismRuntime
from tests.conftest import read_through_a_pause, runtime_of

UNANSWERED = 1.0  # seconds a read through a paused server must stay unanswered


@pytest.fixture
def postgres(prism_binaries: Mapping[str, Path]) -> Iterator[PrismRuntime]:
    yield from runtime_of("postgres", "pause", prism_binaries)


def test_a_pause_holds_the_reads_of_a_connection_opened_before_it(postgres: PrismRuntime) -> None:
    answered, value = read_through_a_pause(postgres, "postgres", UNANSWERED)
    assert not answered, "a connection opened before the pause was answered while the server was paused"
    assert value == b"before", "the held read did not complete after the resume"
