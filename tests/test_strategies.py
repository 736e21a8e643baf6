"""The shared Hypothesis strategies reach the sizes and shapes they promise."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from prism_testkit.hunting.strategies import compressible_bytes, payloads, random_bytes, sized_payloads

SEARCH = settings(max_examples=2_000, database=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("size", [0, 99, 100, 101])
def test_payloads_reach_the_boundary_sizes(size: int) -> None:
    assert len(find(payloads(100, 10_000), lambda p: len(p) == size, settings=SEARCH)) == size


def test_payloads_reach_large_and_compressible_values() -> None:
    # Search on sizes only: the found example's repr stays small.
    big = find(payloads(100, 1 << 20).map(len), lambda n: n > (1 << 19), settings=SEARCH)
    assert big <= 1 << 20
    sizes = payloads(100, 1 << 16).map(lambda p: (len(p), len(zlib.compress(p))))
    size, packed = find(sizes, lambda s: s[0] > 4096 and s[1] < s[0] / 10, settings=SEARCH)
    assert packed < size / 10


def test_payloads_never_exceed_max_size() -> None:
    with pytest.raises(NoSuchExample):
        find(payloads(100, 500), lambda p: len(p) > 500, settings=SEARCH)


@settings(max_examples=50, database=None)
@given(st.data())
def test_sized_strategies_respect_their_bounds(data: st.DataObject) -> None:
    assert 10 <= len(data.draw(sized_payloads(10, 5000))) <= 5000
    assert 10 <= len(data.draw(compressible_bytes(10, 5000))) <= 5000


def test_random_bytes_replay_from_the_seed() -> None:
    assert random_bytes(1000, 5) == random_bytes(1000, 5) != random_bytes(1000, 6)
    assert random_bytes(0, 1) == b""


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        sized_payloads(10, 5)
    with pytest.raises(ValueError):
        payloads(-1, 10)
