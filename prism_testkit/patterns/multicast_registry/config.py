"""How a registry stores identities and reaches them: the config model code and namespace files share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from prism_testkit.config.units import Duration, Size

# --- configuration -------------------------------------------------------------------------


class MulticastRegistryConfig(BaseModel):
    """How a registry stores identities and reaches them. Every process sharing a registry
    must agree on ``key_prefix`` and ``destination_prefix``."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key_prefix: str = Field(default="multicast-registry/", description="prefix of every registry key")
    destination_prefix: str = Field(
        default="identity-", description="identity x is reached at <destination_prefix>x (queue or topic)"
    )
    default_ttl: Duration | None = Field(default=None, gt=0, description="TTL of a registration that gives none")
    max_ttl: Duration | None = Field(default=None, gt=0, description="reject registrations with a longer TTL")
    backend_ttl: bool = Field(default=True, description="also let the backend evict expired records (keyvalue.ttl)")
    eviction_grace: Duration = Field(default=5.0, ge=0, description="seconds the backend keeps a record past expiry")
    max_metadata_bytes: Size = Field(default=16384, ge=2, description="largest metadata, as JSON bytes")
    max_concurrency: int = Field(default=16, ge=1, le=1024, description="sends of one multicast at once")
    attempts: int = Field(default=1, ge=1, le=100, description="tries per identity before its outcome is failed")
    retry_backoff: Duration = Field(default=0.05, ge=0, description="seconds before the first retry (doubles)")
    graceful_timeout: Duration = Field(default=30.0, ge=0, description="stop(): seconds in-flight multicasts get")
