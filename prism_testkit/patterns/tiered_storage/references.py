"""Reference records: per key, which tier holds its current copy and what the rules need.

A record is stored as compact JSON under ``reference_prefix + key`` in the reference store and
is only ever replaced with compare-and-set on its exact bytes. Every write and every migration
names a *new* copy (a token unique to that write), so a record's bytes never repeat (no ABA)
and an older copy can never be mistaken for the current one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import prism_testkit.simulation.clock as clocks

from .errors import CorruptReference

EXPIRED = "expired"  # the copy token of a tombstone (never a real token: those start with digits)
_FIELDS = ("tier", "version", "copy", "size", "written_at", "moved_at", "last_access", "access_count")


def new_copy_token(now: float) -> str:
    """A copy name unique to one write: its creation time in ms (GC keeps young orphans, which
    may be writes still in flight) and random bits (a counter in a simulated example, so a
    replay names the same copies)."""
    return f"{int(now * 1000):013d}-{clocks.fresh_uuid().hex[-12:]}"


def token_time(token: str) -> float | None:
    """When the copy named ``token`` was created (None when the name is not ours)."""
    stamp, _, _ = token.partition("-")
    return int(stamp) / 1000 if stamp.isdigit() else None


@dataclass(frozen=True)
class Reference:
    tier: str
    version: int  # +1 on every change of the record (write, move, access)
    copy: str  # the copy token inside the tier
    size: int
    written_at: float  # when the value was written (rules: age)
    moved_at: float  # when it entered its tier (rules: age_in_tier, tier ttl)
    last_access: float  # rules: idle
    access_count: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, key: str, raw: bytes) -> Reference:
        try:
            data = json.loads(bytes(raw))
            if not isinstance(data, dict) or set(data) != set(_FIELDS):
                raise ValueError(f"expected the fields {', '.join(_FIELDS)}")
            return cls(**data)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CorruptReference(key, str(exc)) from None

    def moved(self, tier: str, copy: str, now: float) -> Reference:
        return replace(self, tier=tier, copy=copy, version=self.version + 1, moved_at=now)

    def tombstone(self) -> Reference:
        """The record of an expired value whose copy is gone (reads see no value)."""
        return replace(self, version=self.version + 1, copy=EXPIRED)

    @property
    def expired_marker(self) -> bool:
        return self.copy == EXPIRED

    def accessed(self, now: float) -> Reference:
        return replace(self, version=self.version + 1, last_access=now, access_count=self.access_count + 1)

    def facts(self, now: float) -> dict[str, float | int | str]:
        """What rule conditions read."""
        return {
            "tier": self.tier,
            "age": now - self.written_at,
            "age_in_tier": now - self.moved_at,
            "idle": now - self.last_access,
            "access_count": self.access_count,
            "size": self.size,
        }
