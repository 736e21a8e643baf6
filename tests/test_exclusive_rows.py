"""The controller finds an exclusive backend's rows by their node ids alone."""

from __future__ import annotations

import pytest

from prism_testkit.registry.exclusive import exclusive_backend

NAMES = ["memstore", "jetstream", "jetstream-r3", "jetstream-r3-lazy-sync", "nats", "redis", "redis-aof"]


@pytest.mark.parametrize(
    ("nodeid", "exclusive", "expected"),
    [
        ("s/test_wal.py::test_a[log=jetstream-r3-target=memstore]", {"jetstream-r3"}, "jetstream-r3"),
        ("s/test_wal.py::test_a[log=memstore-target=jetstream-r3]", {"jetstream-r3"}, "jetstream-r3"),
        ("s/test_wal.py::test_a[log=memstore-target=jetstream-r3-7]", {"jetstream-r3"}, "jetstream-r3"),  # own param
        ("s/test_wal.py::test_a[log=jetstream-r3-lazy-sync-target=memstore]", {"jetstream-r3"}, None),
        (
            "s/test_wal.py::test_a[log=jetstream-r3-lazy-sync-target=jetstream-r3]",
            {"jetstream-r3", "jetstream-r3-lazy-sync"},
            "jetstream-r3-lazy-sync",  # the first: a row of two clusters goes with its first
        ),
        ("s/test_wal.py::test_a[log=jetstream-target=redis-aof]", {"jetstream-r3"}, None),
        ("s/test_kv.py::test_b[ns=orders-backend=jetstream-r3]", {"jetstream-r3"}, "jetstream-r3"),
        ("s/test_kv.py::test_b[backend=redis-aof]", {"redis"}, None),
        ("s/test_kv.py::test_b", {"jetstream-r3"}, None),
        ("tests/test_x.py::test_c[jetstream-r3]", {"jetstream-r3"}, None),  # not a combination
    ],
)
def test_a_rows_backends_are_read_from_its_id(nodeid: str, exclusive: set[str], expected: str | None) -> None:
    assert exclusive_backend(nodeid, NAMES, exclusive) == expected
