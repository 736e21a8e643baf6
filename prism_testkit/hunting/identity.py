"""One identity per test, whatever the machine's install layout, and the example-database keys
made from it.

A pytest node id is a path relative to the run's root: a checkout runs
``prism_testkit/suites/test_stateful_wal.py::test_x[memstore]``, a machine that installed the package runs
``.venv/lib/python3.11/site-packages/prism_testkit/suites/test_stateful_wal.py::test_x[memstore]``.
A test's identity is its module's import name and the rest of its node id:
``prism_testkit.suites.test_stateful_wal::test_x[memstore]`` on both. A file is named by its
packages (the folders above it with an ``__init__.py``): the folders are the import names, for the
harness's own suites as for an out-of-tree author's.

Hypothesis keys a test's examples by a digest of its function and of what the harness adds to
it, the node id among them; a hunt's shared database is seen through :class:`IdentityKeyedDatabase`,
which keys every example of the test that is hunting by the digest of its identity instead, so
every layout reads and writes the same entries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis.database import ExampleDatabase

OWN_SUITES = "prism_testkit.suites"
DIGEST_SIZE = hashlib.sha384().digest_size  # Hypothesis's keys start with a sha384 digest (function_digest)
KEY_VERSION = b"prism-testkit example key 1\0"  # changing it forgets every saved example: don't


@lru_cache(maxsize=1024)
def module_identity(path: Path) -> str:
    """The import name of the module in ``path``, the same in every layout (see the module)."""
    path = Path(path).resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.name:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def identity_of(item: pytest.Item) -> str:
    """``module::Class::test[params]``: the node id with its path replaced by the module's name."""
    _, separator, rest = item.nodeid.partition("::")
    module = module_identity(Path(item.path))
    return f"{module}::{rest}" if separator else module


def own_suite_identity(nodeid: str) -> str | None:
    """The identity of a test of the harness's own suites from its node id alone, in any layout
    (an xdist controller sees node ids, never items); None for any other test."""
    path, separator, rest = nodeid.partition("::")
    folders = path.split("/")
    if not separator or folders[-3:-1] != OWN_SUITES.split(".") or not folders[-1].endswith(".py"):
        return None
    return f"{OWN_SUITES}.{folders[-1].removesuffix('.py')}::{rest}"


def command_target(item: pytest.Item) -> list[str]:
    """The arguments that name ``item`` on a pytest command line from any directory: a test of
    the harness's own suites by its identity under ``--pyargs``
    (``--pyargs prism_testkit.suites.test_stateful_wal::test_x[memstore]``: the same in a
    checkout, an installed package and an author's project); any other by its node id, which
    pytest reads from the run's root directory."""
    identity = identity_of(item)
    if identity.startswith(f"{OWN_SUITES}.") and "::" in identity:
        return ["--pyargs", identity]
    return [item.nodeid]


def identity_key(identity: str) -> bytes:
    """The example-database key of the test ``identity`` (a sha384 digest, as Hypothesis's are)."""
    return hashlib.sha384(KEY_VERSION + identity.encode()).digest()


class IdentityKeyedDatabase(ExampleDatabase):
    """A shared example database as the hunting test sees it: while a test is bound, every key
    Hypothesis asks for (its digest, and the same with ``.secondary``, ``.pareto``...) is keyed
    by the test's identity; unbound, keys pass through as Hypothesis made them."""

    def __init__(self, shared: ExampleDatabase) -> None:
        super().__init__()
        self.shared = shared
        self.identity: str | None = None

    def __repr__(self) -> str:
        return f"IdentityKeyedDatabase({self.shared!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdentityKeyedDatabase) and self.shared == other.shared

    def __hash__(self) -> int:
        return hash(("IdentityKeyedDatabase", id(self.shared)))

    def bind(self, identity: str | None) -> None:
        self.identity = identity

    def holds(self, identity: str) -> bool:
        """Whether a failing example of test ``identity`` is saved (its primary key)."""
        return any(True for _ in self.shared.fetch(identity_key(identity)))

    def key(self, key: bytes) -> bytes:
        if self.identity is None or len(key) < DIGEST_SIZE:
            return key
        return identity_key(self.identity) + key[DIGEST_SIZE:]

    def fetch(self, key: bytes) -> Iterable[bytes]:
        return self.shared.fetch(self.key(key))

    def save(self, key: bytes, value: bytes) -> None:
        self.shared.save(self.key(key), value)

    def delete(self, key: bytes, value: bytes) -> None:
        self.shared.delete(self.key(key), value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.shared.move(self.key(src), self.key(dest), value)
