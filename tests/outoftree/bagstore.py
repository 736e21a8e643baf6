"""An out-of-tree backend, as a third party would write it in its own package.

A plain dict behind the basic key-value interface only (no TTL, scan or CAS), registered
through the ``prism_testkit`` entry-point group. The harness tests install it into a
pytester sandbox and expect the key-value contract suite to run against it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Self

from prism_testkit import (
    BackendProperties,
    BackendSpec,
    Capability,
    Driver,
    EmbeddedProvisioner,
    Endpoint,
    hookimpl,
)

_STORES: dict[str, dict[str, bytes]] = {}


class BagKeyValue:
    def __init__(self, driver: BagDriver) -> None:
        self.driver = driver
        self.data = driver.data

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if ttl is not None:
            self.driver.require(Capability.KEYVALUE_TTL)
        self.data[key] = bytes(value)

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        return key in self.data

    async def scan(self, prefix: str) -> AsyncIterator[str]:
        self.driver.require(Capability.KEYVALUE_SCAN)
        for key in list(self.data):
            yield key

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self.driver.require(Capability.KEYVALUE_CAS)
        return False


class BagDriver(Driver):
    def __init__(self, name: str, capabilities: frozenset[Capability], data: dict[str, bytes]) -> None:
        super().__init__(name, capabilities)
        self.data = data

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        return cls(name, capabilities, _STORES.setdefault(endpoint.url, {}))

    async def close(self) -> None:
        pass

    async def purge(self, prefix: str) -> None:
        for key in [k for k in self.data if k.startswith(prefix)]:
            del self.data[key]

    async def leftovers(self, prefix: str) -> list[str]:
        return [f"kv:{k}" for k in self.data if k.startswith(prefix)]

    def keyvalue(self) -> BagKeyValue:
        return BagKeyValue(self)


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="bagstore",
            capabilities=frozenset({Capability.KEYVALUE}),
            properties=BackendProperties(durable=False),
            provisioner=EmbeddedProvisioner(),
            driver=BagDriver,
            description="a dict, from a third-party package",
        )
    ]
