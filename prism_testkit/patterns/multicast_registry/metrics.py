"""The registry's counters and gauges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass
class MulticastRegistryMetrics:
    """Counters of the registry (``prism_multicast_registry_<field>``)."""

    GAUGES: ClassVar[tuple[str, ...]] = ("multicasts_in_flight", "live_identities")

    registrations: int = 0
    updates: int = 0
    deregistrations: int = 0
    rejected_inputs: int = 0
    multicasts: int = 0
    deliveries: int = 0
    delivery_failures: int = 0
    delivery_retries: int = 0
    expired_skipped: int = 0  # stored records an enumeration ignored because they had expired
    corrupt_records: int = 0  # keys under the prefix whose value is no registration
    backend_ttl_unsupported: int = 0
    multicasts_in_flight: int = 0
    live_identities: int = 0  # live identities the last full enumeration saw
    last_multicast_seconds: float = 0.0
