"""How payloads are claimed: the config model producers, consumers and namespace files share."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.config.units import Duration, Size

DEFAULT_FIELD = "prism-claim-check"
MiB = 1 << 20


class ClaimCheckConfig(BaseModel):
    """How payloads are claimed. Producers and consumers of one namespace must agree on it.

    ``threshold``: a payload is claimed when ``len(payload) > threshold`` — strictly greater,
    as RFC-009 says "payloads > 1MB go to S3"; a payload of exactly ``threshold`` bytes stays
    inline. Sizes accept ints (bytes) or strings like ``"1MB"`` / ``"8MiB"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    threshold: Size = Field(ge=0, description="claim payloads strictly larger than this (bytes)")
    bucket: str = Field(min_length=1, description="bucket holding the claimed payloads")
    key_prefix: str = Field(default="", description="prefix of every object key")
    compression: Literal["none", "gzip"] = "none"
    compression_level: int = Field(default=6, ge=1, le=9, description="gzip level")
    ttl: Duration | None = Field(default=None, gt=0, description="seconds before a stored object expires")
    on_consume: Literal["delete", "keep"] = Field(
        default="delete", description="delete the object after the message is acked, or keep it for replay"
    )
    max_payload: Size | None = Field(
        default=None, ge=0, description="reject larger payloads with PayloadTooLarge; nothing is written"
    )
    streaming_threshold: Size = Field(
        default=8 * MiB, ge=0, description="payloads larger than this move in chunks (put/get_stream)"
    )
    chunk_size: Size = Field(default=MiB, ge=1, description="size of streamed chunks (bytes)")
    field: str = Field(
        default=DEFAULT_FIELD,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="message header that carries the claim reference",
    )
