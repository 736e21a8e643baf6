"""Just enough of PostgreSQL's frontend/backend protocol (version 3.0) for the harness's own
sessions with its private servers: a trust-authenticated startup and simple queries whose
results come back as text, as ``psql -A -t`` prints them.

Why not a client library: provisioning never imports asyncpg (a plugin import must stay light,
and the harness's administration is synchronous), and a ``psql`` process per administrative
query cost a process and a server backend each time (about 12 ms of CPU, a few hundred times
per stateful cluster row). A :class:`Session` is one socket kept open across queries.
"""

from __future__ import annotations

import socket
import struct
import time

from prism_testkit.provision.processes import port_open

PROTOCOL_3_0 = 196608
FATAL_SEVERITIES = frozenset({"FATAL", "PANIC"})


# SQLSTATE cannot_connect_now: the server is starting up, in crash recovery or shutting down.
CANNOT_CONNECT_NOW = "57P03"


class SessionRefused(ConnectionError):
    """The server answered the startup with an error ("the database system is starting up")
    or asked for a password: no session, and no use asking again at once. ``code`` is the
    error's SQLSTATE (empty for a password asked)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class SessionLost(ConnectionError):
    """The server ended the session (a FATAL error, or the socket closed mid-answer)."""


class QueryError(Exception):
    """The server refused one query (severity ERROR); the session goes on."""


class Session:
    """One trust-authenticated session over TCP. Not thread-safe: one caller at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._deadline = 0.0

    @classmethod
    def open(cls, host: str, port: int, user: str, database: str, timeout: float) -> Session:
        """Connect and start a session within ``timeout`` seconds; raises :class:`SessionRefused`,
        :class:`TimeoutError` or another :class:`OSError`."""
        sock = socket.create_connection((host, port), timeout=timeout)
        session = cls(sock)
        try:
            session._deadline = time.monotonic() + timeout
            params = f"user\0{user}\0database\0{database}\0\0".encode()
            body = struct.pack("!i", PROTOCOL_3_0) + params
            sock.sendall(struct.pack("!i", len(body) + 4) + body)
            while True:
                kind, payload = session._message()
                if kind == b"E":
                    raise SessionRefused(_error_text(payload), _error_fields(payload).get("C", ""))
                if kind == b"R" and struct.unpack("!i", payload[:4])[0] != 0:
                    raise SessionRefused("the server wants a password: not a trust server the harness started")
                if kind == b"Z":
                    return session
        except BaseException:
            session.close()
            raise

    @classmethod
    def open_once_accepting(
        cls, host: str, port: int, user: str, database: str, timeout: float, patience: float
    ) -> Session:
        """:meth:`open`, waiting up to ``patience`` seconds while the server refuses sessions
        because it is starting up or recovering from a crash (a node the harness just restarted
        does, longer on a loaded machine); every other refusal, and the last, is raised."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return cls.open(host, port, user, database, timeout)
            except SessionRefused as refused:
                if refused.code != CANNOT_CONNECT_NOW or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def query(self, sql: str, timeout: float) -> list[list[str | None]]:
        """Run ``sql`` (one statement, its own transaction); its rows, each a list of text
        columns (None for NULL). Raises :class:`QueryError` when the server refuses it, and
        :class:`SessionLost` / :class:`TimeoutError` / :class:`OSError` when the session is gone
        (then :meth:`close` it)."""
        self._deadline = time.monotonic() + timeout
        body = sql.encode() + b"\0"
        self._sock.sendall(b"Q" + struct.pack("!i", len(body) + 4) + body)
        rows: list[list[str | None]] = []
        error: str | None = None
        while True:
            kind, payload = self._message()
            if kind == b"D":
                rows.append(_data_row(payload))
            elif kind == b"E":
                fields = _error_fields(payload)
                if fields.get("V", fields.get("S")) in FATAL_SEVERITIES:
                    raise SessionLost(_error_text(payload))
                error = _error_text(payload)
            elif kind == b"Z":
                if error is not None:
                    raise QueryError(error)
                return rows

    def close(self) -> None:
        """Say goodbye if the socket still takes it, and close it."""
        try:
            self._sock.settimeout(0.1)
            self._sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        finally:
            self._sock.close()

    def _message(self) -> tuple[bytes, bytes]:
        header = self._recv_exact(5)
        (length,) = struct.unpack("!i", header[1:])
        return header[:1], self._recv_exact(length - 4)

    def _recv_exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            self._sock.settimeout(left)
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise SessionLost("the server closed the connection")
            data += chunk
        return data


def accepts_sessions(host: str, port: int, user: str, database: str, timeout: float = 1.0) -> bool:
    """True when a real session starts: startup message, trust authentication, ReadyForQuery.

    A bare open port is not enough: during start-up and crash recovery PostgreSQL accepts TCP
    connections and then refuses the session ("the database system is starting up").
    """
    if not port_open(host, port):
        return False
    try:
        session = Session.open(host, port, user, database, timeout)
    except (OSError, struct.error):
        return False
    session.close()
    return True


def _data_row(payload: bytes) -> list[str | None]:
    (count,) = struct.unpack("!h", payload[:2])
    offset = 2
    columns: list[str | None] = []
    for _ in range(count):
        (size,) = struct.unpack("!i", payload[offset : offset + 4])
        offset += 4
        if size < 0:
            columns.append(None)
            continue
        columns.append(payload[offset : offset + size].decode())
        offset += size
    return columns


def _error_fields(payload: bytes) -> dict[str, str]:
    fields = {}
    for field in payload.split(b"\0"):
        if field:
            fields[field[:1].decode()] = field[1:].decode(errors="replace")
    return fields


def _error_text(payload: bytes) -> str:
    fields = _error_fields(payload)
    return f"{fields.get('S', 'ERROR')}:  {fields.get('M', 'no message')}"


def as_psql_text(rows: list[list[str | None]]) -> str:
    """``rows`` as ``psql -A -t`` prints them: a line per row, columns joined by ``|``, NULL
    empty; stripped."""
    return "\n".join("|".join("" if column is None else column for column in row) for row in rows).strip()
