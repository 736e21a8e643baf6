"""The etcd driver: key-value over etcd's v3 JSON gateway (``/v3/kv/*``), on asyncio streams.

No client library: a request is one HTTP/1.1 POST of JSON with base64 keys and values, on a
kept-alive connection per node (:class:`_Node`). The endpoint's URL lists every node
(``etcd://host:port,etcd://host:port,...``); the driver sends to one node at a time and moves
to the next when that one fails, as etcd's own client does. Any member serves every request:
a follower forwards writes to the leader, and a read is linearizable (etcd's default, a
ReadIndex round through the leader), so a stale read is impossible whichever node answers.

* **Bounded.** Every attempt is bounded (a connect by :data:`CONNECT_TIMEOUT`, a request by
  :data:`REQUEST_TIMEOUT`, both scaled by the machine's slowness) and every operation by
  :data:`OPERATION_BOUND`: a killed, paused or cut-off node costs one attempt, never a hang.
* **Resent until answered, applied once.** A failed attempt is sent again to the next node,
  round after round, until the operation's bound. Reads are safe to resend. A write is made
  safe: it is one transaction that applies it only if a marker key of this operation (the
  key, a NUL, ``prism-op``, a NUL, an id) was never created, and creates it, recording what it
  did (``delete``: whether the key existed; ``compare_and_set``: whether it wrote). A resend of
  a write an earlier send applied (a follower forwarded it, then the answer was lost with the
  leader) finds the marker and answers what it recorded. etcd has no idempotency key of its
  own, and a write forwarded to a leader that dies waits out the server's request timeout
  (7 s) before it fails as "request timed out": without the marker its outcome is unknown.
  ``scan`` never lists markers; a purge of the key's prefix removes them.
* **compare-and-set** is one (inner) transaction: compare the value (or, for ``None``, that
  the key was never created) and put on success.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any, Self

from prism_testkit import Capability, Driver, Endpoint
from prism_testkit.errors import ConnectionLost, PayloadTooLarge
from prism_testkit.patience import slowness

from .provision import MAX_PAYLOAD

CONNECT_TIMEOUT = 1.0  # s, x slowness: a dead or cut-off node is skipped after this
REQUEST_TIMEOUT = 4.0  # s, x slowness: one request to one node
# s: one operation, resent over the nodes (each write with its marker, so resending is safe),
# below the 15 s a durable backend's write must return or raise within
OPERATION_BOUND = 12.0
ROUND_PAUSE = 0.1  # s between two rounds over the nodes
MARKER = "\x00prism-op\x00"  # operation markers: KEY + MARKER + id, never listed by scan
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

    async def post(self, path: str, body: dict[str, Any], left: float) -> dict[str, Any]:
        """One request, bounded by :data:`REQUEST_TIMEOUT` and by ``left`` (the operation's)."""
        reader, writer = await self._connection()
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        try:
            status, answer, keep = await asyncio.wait_for(
                self._exchange(reader, writer, head + payload), max(0.1, min(left, REQUEST_TIMEOUT * slowness()))
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
        safe: always for a read (``read``), for a write only while its request never left (a
        write with an operation marker, :meth:`write`, is safe to resend and passes ``read``).
        Rounds over the nodes go on until :data:`OPERATION_BOUND`; ConnectionLost names the
        last failure of each node tried."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OPERATION_BOUND
        tried: dict[str, str] = {}
        step = 0
        while True:
            index = (self.current + step) % len(self.nodes)
            node = self.nodes[index]
            step += 1
            try:
                answer = await node.post(path, body, deadline - loop.time())
            except (_Failed, _Refused) as failed:
                tried[str(node)] = str(failed)
                self.current = (index + 1) % len(self.nodes)  # the next operation starts elsewhere
                sent = not isinstance(failed, _Failed) or failed.sent
                refused = isinstance(failed, _Refused) and failed.status < 500  # a bad request
                if refused or (sent and not read) or loop.time() >= deadline:
                    break
                if step % len(self.nodes) == 0:  # every node failed once: a breath, then again
                    await asyncio.sleep(min(ROUND_PAUSE, max(0.0, deadline - loop.time())))
                continue
            self.current = index
            return answer
        raise ConnectionLost(f"etcd {path}: {'; '.join(f'{n}: {why}' for n, why in tried.items())}")

    async def write(self, key: str, ops: list[dict[str, Any]], result: dict[str, Any] | None = None) -> bool:
        """Apply ``ops`` once, whichever node answers and however often it is resent: one
        transaction that applies them only if this operation's marker key (under ``key``, so
        a purge of its prefix removes it) was never created, and creates it; ``result`` (an
        inner transaction) records "1" or "0" in the marker for what it did. A resend of an
        operation that was applied meanwhile finds the marker and reads what it recorded.
        Returns what the operation did (True for a plain put)."""
        marker = _key(f"{key}{MARKER}{uuid.uuid4().hex}")
        if result is None:
            applied = [*ops, {"request_put": {"key": marker, "value": _b64(b"1")}}]
        else:
            inner = dict(result)
            inner["success"] = [*inner.get("success", []), {"request_put": {"key": marker, "value": _b64(b"1")}}]
            inner["failure"] = [*inner.get("failure", []), {"request_put": {"key": marker, "value": _b64(b"0")}}]
            applied = [{"request_txn": inner}]
        body = {
            "compare": [{"key": marker, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": applied,
            "failure": [{"request_range": {"key": marker}}],
        }
        answer = await self.call("/v3/kv/txn", body, read=True)  # safe to resend: the marker
        responses = answer.get("responses") or [{}]
        if answer.get("succeeded"):
            if result is None:
                return True
            return bool((responses[0].get("response_txn") or {}).get("succeeded"))
        kvs = (responses[0].get("response_range") or {}).get("kvs") or [{}]
        return base64.b64decode(kvs[0].get("value") or "") == b"1"  # applied by an earlier send

    async def close(self) -> None:
        for node in self.nodes:
            node.close()

    async def purge(self, prefix: str) -> None:
        raw = prefix.encode()
        # deleting a range again deletes nothing more: safe to resend
        await self.call("/v3/kv/deleterange", {"key": _b64(raw), "range_end": _b64(_range_end(raw))}, read=True)

    async def leftovers(self, prefix: str) -> list[str]:
        # Not the operation markers: the driver's bookkeeping, which purge(prefix) deletes with
        # the keys (a prefix of a key is one of its markers'); a pattern that deleted every key
        # it wrote has left nothing of its own behind.
        return [key async for key in self._keyvalue.keys(prefix) if MARKER not in key]

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
        await self.driver.write(key, [{"request_put": {"key": _key(key), "value": _b64(bytes(value))}}])

    async def delete(self, key: str) -> bool:
        exists = {"key": _key(key), "target": "CREATE", "result": "GREATER", "create_revision": "0"}
        gone = {"compare": [exists], "success": [{"request_delete_range": {"key": _key(key)}}]}
        return await self.driver.write(key, [], result=gone)

    async def exists(self, key: str) -> bool:
        answer = await self.driver.call("/v3/kv/range", {"key": _key(key), "count_only": True}, read=True)
        return int(answer.get("count") or 0) > 0

    def scan(self, prefix: str) -> AsyncIterator[str]:
        self.driver.require(Capability.KEYVALUE_SCAN)
        return self._scan(prefix)

    async def _scan(self, prefix: str) -> AsyncIterator[str]:
        async for key in self.keys(prefix):
            if MARKER not in key:
                yield key

    async def keys(self, prefix: str) -> AsyncIterator[str]:
        """Every key starting with ``prefix``, operation markers included."""
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
        cas = {"compare": [compare], "success": [{"request_put": {"key": _key(key), "value": _b64(bytes(new))}}]}
        return await self.driver.write(key, [], result=cas)
