"""The claim reference a message carries instead of its payload, and the claim check's errors
(which name the reference they concern)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prism_testkit.errors import NotFound, PrismError

# --- errors --------------------------------------------------------------------------------


class ClaimCheckError(PrismError):
    """Base of the claim check's data errors.

    ``raw`` is the undecoded delivery, record or message the error came from when an adapter
    raised it, so the caller can still ack/nack/dead-letter a delivery whose claim is broken
    (otherwise it would be redelivered forever).
    """

    raw: object | None = None


class InvalidClaimReference(ClaimCheckError):
    """A claim header that cannot be parsed, or that points outside the configured bucket/prefix."""

    def __init__(self, detail: str, header: str | None = None) -> None:
        self.detail = detail
        self.header = header
        super().__init__(f"invalid claim reference: {detail}")


class ClaimNotFound(ClaimCheckError, NotFound):
    """The claimed object is missing: deleted, expired by its TTL, or its bucket is gone."""

    def __init__(self, reference: ClaimReference) -> None:
        self.reference = reference
        super().__init__(
            f"claimed object {reference.key!r} not found in bucket {reference.bucket!r} (deleted or expired)"
        )


class ChecksumMismatch(ClaimCheckError):
    """The restored payload is not the payload that was claimed (corrupt or replaced object)."""

    def __init__(self, reference: ClaimReference, expected: str, actual: str) -> None:
        self.reference = reference
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"claimed object {reference.key!r} in bucket {reference.bucket!r} is corrupt: "
            f"expected {expected}, got {actual}"
        )


# --- the reference -------------------------------------------------------------------------


class ClaimReference(BaseModel):
    """What travels in the message instead of the payload (RFC-033's ClaimCheckMessage)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    bucket: str = Field(min_length=1)
    key: str = Field(min_length=1)
    size: int = Field(ge=0, description="bytes of the original payload")
    checksum: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256 of the original payload")
    compression: Literal["none", "gzip"]
    stored_size: int = Field(ge=0, description="bytes of the stored (possibly compressed) object")
    expires_at: float | None = Field(default=None, description="unix time the object expires")

    def to_header(self) -> str:
        """Compact JSON, with a version so the format can evolve."""
        return json.dumps({"v": 1, **self.model_dump()}, separators=(",", ":"))

    @classmethod
    def from_header(cls, header: str) -> ClaimReference:
        try:
            data = json.loads(header)
        except (TypeError, ValueError) as exc:
            raise InvalidClaimReference(f"not JSON ({exc})", header) from None
        if not isinstance(data, dict):
            raise InvalidClaimReference("not a JSON object", header)
        version = data.pop("v", None)
        if version != 1:
            raise InvalidClaimReference(f"unsupported version {version!r} (expected 1)", header)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors())
            raise InvalidClaimReference(problems, header) from None
