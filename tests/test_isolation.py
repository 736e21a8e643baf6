"""Namespaces: unique, backend-safe, and never a prefix of a sibling."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from prism_testkit.isolation import NamespaceFactory

SAFE = re.compile(r"^[a-z0-9-]+$")


def test_sibling_namespaces_are_not_prefixes_of_each_other() -> None:
    factory = NamespaceFactory(run="abc123", worker="gw0")
    spaces = [factory.new() for _ in range(12)]
    for a in spaces:
        for b in spaces:
            if a is not b:
                assert not b.owns(a.name("k"))


def test_children_are_owned_by_their_parent_only() -> None:
    factory = NamespaceFactory(run="abc123", worker="gw1")
    parent, other = factory.new(), factory.new()
    child = parent.child()
    assert parent.owns(child.name("x"))
    assert not other.owns(child.name("x"))
    assert child.prefix != parent.child().prefix


@given(base=st.text(max_size=40))
def test_names_are_safe_for_every_backend(base: str) -> None:
    name = NamespaceFactory(run="Run-ID!", worker="gw/3").new().name(base)
    assert SAFE.match(name), name
    assert not name.endswith("-")
    assert len(name) <= 63  # S3 bucket limit, for bases up to 40 characters
