"""How a registration is stored: its versioned JSON record in the key-value store."""

from __future__ import annotations

import json

from .values import Registration

# --- records -------------------------------------------------------------------------------


def _encode(reg: Registration) -> bytes:
    record = {
        "v": 1,
        "identity": reg.identity,
        "metadata": dict(reg.metadata),
        "registered_at": reg.registered_at,
        "updated_at": reg.updated_at,
        "expires_at": reg.expires_at,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def _decode(raw: bytes, identity: str) -> Registration | None:
    """The record, or None when it is no registration of ``identity``."""
    try:
        data = json.loads(bytes(raw))
        if not isinstance(data, dict) or data.get("v") != 1 or data.get("identity") != identity:
            return None
        metadata = data["metadata"]
        if not isinstance(metadata, dict):
            return None
        for value in metadata.values():
            if not isinstance(value, str | int | float | bool):
                return None
        expires = data["expires_at"]
        if expires is not None and not isinstance(expires, int | float):
            return None
        return Registration(
            identity,
            metadata,
            float(data["registered_at"]),
            float(data["updated_at"]),
            None if expires is None else float(expires),
        )
    except (ValueError, KeyError, TypeError):
        return None
