"""How the NATS backend writes harness names and messages onto NATS: the name tokens every
stream, bucket and subject is built from, a message's payload, headers and key on the wire, and
the raw forms JetStream hands back (a stored message's header block, a control message's
status). Pure functions and values, no connection: every other module of the backend builds on
them, so they live apart from the code that talks to a server.

Naming. Harness names are mapped by :func:`token`, which keeps ``[A-Za-z0-9-]`` and writes every
other character as ``_XX`` (hex of its UTF-8 bytes). The result is a valid stream name, bucket
name and subject token, the mapping is injective, and it maps prefixes to prefixes, so
``purge(prefix)`` can match encoded names.

Messages. A message without headers or key is sent as a plain NATS message, readable by any
client; otherwise its headers and key travel as JSON in one header, ``Prism-Meta``, so any str
header names and values survive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from nats.aio.msg import Msg

from prism_testkit.errors import PayloadTooLarge
from prism_testkit.interfaces import Message

from .._common import freeze_message
from . import MAX_PAYLOAD

META_HEADER = "Prism-Meta"  # JSON {"h": headers, "k": key}: any str header names / values survive

_KEEP = re.compile(r"[A-Za-z0-9-]")
_ESCAPED = re.compile(r"(?:_[0-9A-F]{2})+")


# --- names ---------------------------------------------------------------------------------


def token(name: str, what: str = "name") -> str:
    """``name`` as a stream-name / subject-token safe string (injective, prefix-preserving)."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    return "".join(c if _KEEP.fullmatch(c) else "".join(f"_{b:02X}" for b in c.encode()) for c in name)


def untoken(text: str) -> str:
    return _ESCAPED.sub(lambda m: bytes.fromhex(m.group(0).replace("_", "")).decode(errors="replace"), text)


def named(name: str, what: str) -> str:
    """The token of a name the caller gave (a queue, a log, a key...): a non-empty str."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    return token(name, what)


# --- wire format ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMsg:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]


def _check_payload(message: Message) -> Message:
    stored = freeze_message(message)
    if len(stored.payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(len(stored.payload), MAX_PAYLOAD)
    return stored


def encode(message: Message) -> tuple[bytes, dict[str, str] | None]:
    stored = _check_payload(message)
    if not stored.headers and stored.key is None:
        return stored.payload, None  # a plain NATS message: readable by any client
    meta = json.dumps({"h": dict(stored.headers), "k": stored.key}, sort_keys=True, separators=(",", ":"))
    return stored.payload, {META_HEADER: meta}


def decode(data: bytes | None, headers: Mapping[str, str] | None) -> Message:
    raw = (headers or {}).get(META_HEADER)
    if raw is None:
        return Message(bytes(data or b""), {}, None)
    meta = json.loads(raw)
    return Message(bytes(data or b""), meta["h"], meta["k"])


def parse_headers(block: bytes) -> dict[str, str]:
    """The header block of a stored message (``NATS/1.0\\r\\nName: value\\r\\n...``)."""
    headers: dict[str, str] = {}
    for line in block.decode().split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers


def control_status(msg: Msg) -> str | None:
    """The status of a JetStream control message (404 no messages, 408 expired, ...)."""
    if msg.headers and not msg.data:
        return msg.headers.get("Status")
    return None
