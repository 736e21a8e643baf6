"""What the registry hands back: a registration, one delivery's outcome, a multicast's result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .validation import Scalar

# --- values --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """One live identity as the registry holds it."""

    identity: str
    metadata: Mapping[str, Scalar]
    registered_at: float
    updated_at: float
    expires_at: float | None  # on the registry's clock; None: never expires

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class DeliveryOutcome:
    identity: str
    status: Literal["delivered", "failed"]
    reason: str | None = None  # why it failed (the last error)
    attempts: int = 0
    definite: bool = True  # a failure that cannot have delivered anything

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"


@dataclass(frozen=True)
class MulticastResult:
    multicast_id: str
    started_at: float  # the instant membership was decided (registry clock)
    outcomes: Mapping[str, DeliveryOutcome]  # identity -> outcome, one per recipient
    elapsed: float = 0.0

    @property
    def recipients(self) -> list[str]:
        return sorted(self.outcomes)

    @property
    def delivered(self) -> list[str]:
        return sorted(i for i, o in self.outcomes.items() if o.delivered)

    @property
    def failed(self) -> dict[str, DeliveryOutcome]:
        return {i: o for i, o in sorted(self.outcomes.items()) if not o.delivered}
