"""Credentials never reach output."""

from __future__ import annotations

import pytest

from prism_testkit.provision.base import Endpoint, Via
from prism_testkit.redaction import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("redis://:hunter2@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("s3://AKIA123:wJalrXUtn@127.0.0.1:9000", "s3://AKIA123:***@127.0.0.1:9000"),
        ("nats://tokenvalue@host:4222", "nats://***@host:4222"),
        ("dsn host=db password=pw user=u", "dsn host=db password=*** user=u"),
        ("http://h/?x=1&secret_key=abc&y=2", "http://h/?x=1&secret_key=***&y=2"),
        ("no url here", "no url here"),
        ("failed: postgresql://u:p@a/b and redis://:q@c", "failed: postgresql://u:***@a/b and redis://:***@c"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_endpoint_repr_is_redacted() -> None:
    endpoint = Endpoint(url="postgresql://app:topsecret@db/x", via=Via.URL)
    assert "topsecret" not in repr(endpoint)
    assert "topsecret" not in str(endpoint)
    assert "topsecret" not in f"{endpoint}"
