"""Typed errors of tiered storage, named for what went wrong."""

from __future__ import annotations

from prism_testkit.errors import PrismError


class TieredStorageError(PrismError):
    """Base of tiered storage's data errors."""


class CorruptReference(TieredStorageError):
    """A reference record that does not decode: the key cannot be located (nothing is changed)."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        super().__init__(f"reference of key {key!r} is corrupt: {detail}")


class CopyMissing(TieredStorageError):
    """The reference names a copy its tier does not hold, and did not move meanwhile: the
    value is lost (a tier lost data, or something deleted the copy behind the reference)."""

    def __init__(self, key: str, tier: str, copy: str) -> None:
        self.key, self.tier, self.copy = key, tier, copy
        super().__init__(f"key {key!r}: its reference names copy {copy!r} in tier {tier!r}, which is not there")


class VersionConflict(TieredStorageError):
    """Compare-and-set on the key's reference kept failing: other writers won every attempt.
    Nothing of this operation is visible (its copy was removed)."""

    def __init__(self, key: str, attempts: int) -> None:
        self.key, self.attempts = key, attempts
        super().__init__(f"key {key!r}: the reference changed under each of {attempts} compare-and-set attempts")
