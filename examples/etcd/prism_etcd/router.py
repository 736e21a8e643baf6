"""Peer traffic behind link proxies, for etcd (the cluster's proxy mode, without root).

etcd derives every member's id from its peer URLs, so all nodes must name a member by the
same URL; behind link proxies node ``a`` reaches node ``b`` at the proxy of link ``(a, b)``,
a different port for each ``a``. The two meet here: every member advertises a URL that leads
nowhere (``http://192.0.2.<b+1>:<port>``, a documentation address), and each node's peer
requests go through an HTTP proxy of its own (etcd's peer transport honours ``HTTP_PROXY``),
a :class:`PeerRouter` in this process that sends a request for member ``b`` to the link proxy
``(a, b)``. A node thus cannot reach a peer around the link proxies, and every cut the
harness makes on a link holds.

Each routed connection carries one request (``Connection: close`` is added), so a connection
is never reused for another member. The routers are threads of this process.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

FAKE_NETWORK = "192.0.2."  # TEST-NET-1: never routed, so an advertised URL leads nowhere
HEAD_LIMIT = 64 << 10
DIAL_TIMEOUT = 2.0


def advertised(node: int, port: int) -> str:
    """The peer URL member ``node`` is known by (identical on every node)."""
    return f"http://{FAKE_NETWORK}{node + 1}:{port}"


def member_of(host: str) -> int | None:
    if not host.startswith(FAKE_NETWORK):
        return None
    last = host[len(FAKE_NETWORK) :]
    return int(last) - 1 if last.isdigit() else None


def _rewrite(head: bytes) -> tuple[int | None, bytes]:
    """The member a proxied request head is for, and the head to send upstream: origin-form
    target, ``Connection: close``, no proxy headers."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = [*lines[0].split(" "), "", "", ""][:3]
    if not target.startswith("http://"):
        return None, b""
    authority, _, path = target[len("http://") :].partition("/")
    member = member_of(authority.rpartition(":")[0] or authority)
    kept = [
        line
        for line in lines[1:]
        if line and line.split(":", 1)[0].strip().lower() not in ("connection", "proxy-connection", "keep-alive")
    ]
    rewritten = [f"{method} /{path} {version}", *kept, "Connection: close", "", ""]
    return member, "\r\n".join(rewritten).encode("latin-1")


def _pump(source: socket.socket, sink: socket.socket, done: Callable[[], None]) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        done()


class PeerRouter:
    """The HTTP proxy node ``node``'s peer requests go through: ``upstream(b)`` is the
    ``(host, port)`` of the link proxy to member ``b``."""

    def __init__(self, node: int, upstream: Callable[[int], tuple[str, int]]) -> None:
        self.node = node
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.closed = False
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, name=f"etcd-peer-router-n{node}", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> Callable[[], None]:
        with self.lock:
            self.open.update(socks)

        def done() -> None:
            with self.lock:
                for sock in socks:
                    self.open.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    sock.close()

        return done

    def _serve(self, conn: socket.socket) -> None:
        done = self._track(conn)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
                chunk = conn.recv(65536)
                if not chunk:
                    done()
                    return
                head += chunk
        except OSError:
            done()
            return
        request, _, rest = head.partition(b"\r\n\r\n")
        member, rewritten = _rewrite(request + b"\r\n\r\n")
        if member is None or member == self.node:
            done()
            return
        try:
            upstream = socket.create_connection(self.upstream(member), timeout=DIAL_TIMEOUT)
            upstream.settimeout(None)
        except OSError:
            done()  # the peer looks unreachable to etcd, as a refused dial does
            return
        done = self._track(conn, upstream)
        try:
            upstream.sendall(rewritten + rest)
        except OSError:
            done()
            return
        threading.Thread(target=_pump, args=(conn, upstream, done), daemon=True).start()
        _pump(upstream, conn, done)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            socks = list(self.open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
