"""Per-test and per-example namespaces: unique name prefixes that every backend accepts.

Names are lower-case letters, digits and hyphens, which fits S3 buckets, Kafka topics, NATS
stream names, Redis keys and SQL values alike. Every prefix ends in '-', so no prefix is a
prefix of a sibling's ('t1-' never matches 't10-...').
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from dataclasses import dataclass, field

_SAFE = re.compile(r"[^a-z0-9]+")


def run_id() -> str:
    """Shared by the xdist controller and its workers (pytest-xdist sets PYTEST_XDIST_TESTRUNUID)."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    return _SAFE.sub("", uid.lower())[:6] if uid else secrets.token_hex(3)


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@dataclass
class Namespace:
    prefix: str
    _children: itertools.count = field(default_factory=lambda: itertools.count(1), repr=False)

    def name(self, base: str = "x") -> str:
        """A name inside this namespace, e.g. ``pt-a1b2c3-gw0-t4-orders``."""
        cleaned = _SAFE.sub("-", base.lower()).strip("-") or "x"
        return f"{self.prefix}{cleaned}"

    def child(self) -> Namespace:
        """A fresh namespace nested in this one (one per Hypothesis example)."""
        return Namespace(f"{self.prefix}e{next(self._children)}-")

    def owns(self, name: str) -> bool:
        return name.startswith(self.prefix)


class NamespaceFactory:
    """Hands out one namespace per test within a process."""

    def __init__(self, run: str | None = None, worker: str | None = None) -> None:
        self.run = _SAFE.sub("", (run or run_id()).lower())
        self.worker = _SAFE.sub("", (worker or worker_id()).lower())
        self._tests = itertools.count(1)

    @property
    def prefix(self) -> str:
        """What every namespace of this process starts with (for run-wide leak checks)."""
        return f"pt-{self.run}-{self.worker}-"

    def new(self) -> Namespace:
        return Namespace(f"{self.prefix}t{next(self._tests)}-")
