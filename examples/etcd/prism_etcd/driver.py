"""The etcd driver: key-value over etcd's v3 JSON gateway (``/v3/kv/*``), on asyncio streams.

No client library: a request is one HTTP/1.1 POST of JSON with base64 keys and values, on a
kept-alive connection per node (:class:`_Node`). The endpoint's URL lists every node
(``etcd://host:port,etcd://host:port,...``); the driver sends to one node at a time and moves
to the next when that one fails, as etcd's own client does. Any member serves every request:
a follower forwards writes to the leader, and a read is linearizable (etcd's default, a
ReadIndex round through the leader), so a stale read is impossible whichever node answers.

* **Bounded.** Every attempt is bounded (a connect by :data:`CONNECT_TIMEOUT`, a request by
  :data:`REQUEST_TIMEOUT`, both scaled by the machine's slowness): a killed, paused or cut-off
  node costs one bound, never a hang.
* **Reads move on**: a read that fails on one node is sent to the next (reads are safe to
  resend). **Writes do not**: a write whose request was sent may have been committed, so its
  failure raises :class:`ConnectionLost` (outcome unknown) and the next operation starts on
  the next node; only a write that never left (the connect failed) goes to the next node.
* **compare-and-set** is one transaction: compare the value (or, for ``None``, that the key
  was never created) and put on success.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, Self

from prism_testkit import Capability, Driver, Endpoint
from prism_testkit.errors import ConnectionLost, PayloadTooLarge
from prism_testkit.patience import slowness

from .provision import MAX_PAYLOAD

CONNECT_TIMEOUT = 1.0  # s, x slowness: a dead or cut-off node is skipped after this
REQUEST_TIMEOUT = 4.0  # s, x slowness: an election after a leader kill fits well within it
IDLE_KEPT = 8  # idle connections kept per node


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _key(key: str) -> str:
    return _b64(key.encode())


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (``\\0``: to the end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


class _Failed(Exception):
    """One attempt on one node failed; ``sent`` says whether the request may have arrived."""

    def __init__(self, why: str, *, sent: bool) -> None:
        super().__init__(why)
        self.sent = sent


class _Refused(Exception):
    """etcd answered with an error (an HTTP status other than 200)."""

    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        super().__init__(str(answer.get("error") or answer.get("message") or status))
        self.status = status
        self.answer = answer


class _Node:
    """One member's gateway: kept-alive HTTP/1.1 connections, one request at a time each."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open: set[asyncio.StreamWriter] = set()  # idle or in use: every one is closed by close()
        self.closed = False

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            self._drop(writer)
        if self.closed:
            raise _Failed("the driver is closed", sent=False)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT * slowness()
            )
        except (OSError, TimeoutError) as exc:
            raise _Failed(f"connect: {type(exc).__name__}", sent=False) from None
        self.open.add(writer)
        return reader, writer

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self.open.discard(writer)
        writer.close()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await self._connection()
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        try:
            status, answer, keep = await asyncio.wait_for(
                self._exchange(reader, writer, head + payload), REQUEST_TIMEOUT * slowness()
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self._drop(writer)
            raise _Failed(f"{path}: {type(exc).__name__}", sent=True) from None
        except BaseException:  # cancelled mid-request: the connection's state is unknown
            self._drop(writer)
            raise
        if keep and not self.closed and len(self.idle) < IDLE_KEPT:
            self.idle.append((reader, writer))
        else:
            self._drop(writer)
        if status != 200:
            raise _Refused(status, answer)
        return answer

    @staticmethod
    async def _exchange(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, dict[str, Any], bool]:
        writer.write(request)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.decode("latin-1").split(" ", 2)
        status = int(parts[1])
        headers: dict[str, str] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
        else:
            body = bytearray(await reader.readexactly(int(headers.get("content-length", "0"))))
        keep = headers.get("connection", "").lower() != "close"
        answer = json.loads(body) if body else {}
        if not isinstance(answer, dict):
            raise ValueError("not a JSON object")
        return status, answer, keep

    def close(self) -> None:
        """Close every connection, idle or in use (an operation still running on one then
        fails): the harness may close a driver with operations still running on it."""
        self.closed = True
        self.idle.clear()
        for writer in list(self.open):
            self._drop(writer)


def _nodes(url: str) -> list[_Node]:
    """``etcd://h1:p1,etcd://h2:p2`` (or ``etcd://h1:p1,h2:p2``): one node per member."""
    found = []
    for part in url.split(","):
        part = part.strip()
        parts = urllib.parse.urlsplit(part if "://" in part else f"etcd://{part}")
        if parts.hostname is None or parts.port is None:
            raise ValueError("an etcd URL names each node as etcd://HOST:PORT")
        found.append(_Node(parts.hostname, parts.port))
    return found


class EtcdDriver(Driver):
    def __init__(self, name: str, capabilities: frozenset[Capability], nodes: list[_Node]) -> None:
        super().__init__(name, capabilities)
        self.nodes = nodes
        # the node tried first: a random one, as etcd's client balancer spreads its clients
        self.current = random.randrange(len(nodes))
        self._keyvalue = EtcdKeyValue(self)

    @classmethod
    async def connect(cls, name: str, capabilities: frozenset[Capability], endpoint: Endpoint) -> Self:
        try:
            nodes = _nodes(endpoint.url)
        except ValueError as exc:
            raise ConnectionLost(f"etcd: {exc}") from None
        driver = cls(name, capabilities, nodes)
        await driver.call("/v3/maintenance/status", {}, read=True)  # one member answers
        return driver

    async def call(self, path: str, body: dict[str, Any], *, read: bool) -> dict[str, Any]:
        """``body`` POSTed to ``path`` on the current node, then on the next ones where that is
        safe (see the module's doc); ConnectionLost names every node tried."""
        tried = []
        for step in range(len(self.nodes)):
            index = (self.current + step) % len(self.nodes)
            node = self.nodes[index]
            try:
                answer = await node.post(path, body)
            except _Failed as failed:
                tried.append(f"{node}: {failed}")
                self.current = (index + 1) % len(self.nodes)  # the next operation starts elsewhere
                if failed.sent and not read:
                    break
                continue
            except _Refused as refused:
                # no leader, a leader change or a timeout inside etcd: a write's outcome is unknown
                tried.append(f"{node}: {refused}")
                self.current = (index + 1) % len(self.nodes)
                if not read:
                    break
                continue
            self.current = index
            return answer
        raise ConnectionLost(f"etcd {path}: {'; '.join(tried)}")

    async def close(self) -> None:
        for node in self.nodes:
            node.close()

    async def purge(self, prefix: str) -> None:
        raw = prefix.encode()
        await self.call("/v3/kv/deleterange", {"key": _b64(raw), "range_end": _b64(_range_end(raw))}, read=False)

    async def leftovers(self, prefix: str) -> list[str]:
        return [key async for key in self._keyvalue.scan(prefix, required=False)]

    def keyvalue(self) -> EtcdKeyValue:
        return self._keyvalue


class EtcdKeyValue:
    def __init__(self, driver: EtcdDriver) -> None:
        self.driver = driver

    async def get(self, key: str) -> bytes | None:
        answer = await self.driver.call("/v3/kv/range", {"key": _key(key)}, read=True)
        kvs = answer.get("kvs") or []
        return base64.b64decode(kvs[0].get("value") or "") if kvs else None

    async def put(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        if ttl is not None:
            self.driver.require(Capability.KEYVALUE_TTL)  # not declared: raises NotSupported
        if len(value) > MAX_PAYLOAD:
            raise PayloadTooLarge(len(value), MAX_PAYLOAD, "value")
        await self.driver.call("/v3/kv/put", {"key": _key(key), "value": _b64(bytes(value))}, read=False)

    async def delete(self, key: str) -> bool:
        answer = await self.driver.call("/v3/kv/deleterange", {"key": _key(key)}, read=False)
        return int(answer.get("deleted") or 0) > 0

    async def exists(self, key: str) -> bool:
        answer = await self.driver.call("/v3/kv/range", {"key": _key(key), "count_only": True}, read=True)
        return int(answer.get("count") or 0) > 0

    async def scan(self, prefix: str, *, required: bool = True) -> AsyncIterator[str]:
        if required:
            self.driver.require(Capability.KEYVALUE_SCAN)
        raw = prefix.encode()
        start = raw or b"\x00"
        body = {"key": _b64(start), "range_end": _b64(_range_end(raw)), "keys_only": True}
        answer = await self.driver.call("/v3/kv/range", body, read=True)
        for kv in answer.get("kvs") or []:
            yield base64.b64decode(kv.get("key") or "").decode()

    async def compare_and_set(self, key: str, expected: bytes | None, new: bytes) -> bool:
        self.driver.require(Capability.KEYVALUE_CAS)
        if len(new) > MAX_PAYLOAD:
            raise PayloadTooLarge(len(new), MAX_PAYLOAD, "value")
        if expected is None:  # absent: the key's create revision is 0
            compare = {"key": _key(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        else:
            compare = {"key": _key(key), "target": "VALUE", "result": "EQUAL", "value": _b64(bytes(expected))}
        body = {
            "compare": [compare],
            "success": [{"request_put": {"key": _key(key), "value": _b64(bytes(new))}}],
        }
        answer = await self.driver.call("/v3/kv/txn", body, read=False)
        return bool(answer.get("succeeded"))
