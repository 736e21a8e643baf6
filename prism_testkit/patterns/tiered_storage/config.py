"""The tiered storage configuration: one pydantic model for namespace files and for code.

Rules are strings in the model (RFC-009's ``condition`` / ``action`` pairs) and are parsed by
:mod:`.rules` while the model validates, so a namespace file with a bad rule fails at load
time with the rule's path, never when the migrator first runs.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prism_testkit.config.units import Duration, Size
from prism_testkit.errors import ConfigurationError

from .rules import TIERS, Action, Rule, parse_condition

DAY = 86400.0


class TierSettings(BaseModel):
    """One tier. ``ttl``: how long a value stays in this tier before the migrator demotes it to
    the next slower tier; in the slowest configured tier it is the value's retention (reads
    see it as gone once it ran out). ``capacity``: bytes of values the tier may hold; above
    it the migrator demotes the least recently read values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttl: Duration | None = Field(default=None, gt=0, description="seconds in this tier (None: no limit)")
    capacity: Size | None = Field(default=None, gt=0, description="bytes this tier may hold (None: no limit)")


class TierRule(BaseModel):
    """``condition`` in the rule grammar, ``action`` ``promote_to_<tier>`` / ``demote_to_<tier>``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    condition: str = Field(description="e.g. 'access_count > 10' or 'age > 1_day AND tier == hot'")
    action: str = Field(description="promote_to_<tier> or demote_to_<tier>")

    @field_validator("condition")
    @classmethod
    def _parses(cls, value: str) -> str:
        parse_condition(value)  # RuleSyntaxError is a ValueError: pydantic reports it here
        return value

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        try:
            Action.parse(value)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return value

    def compile(self) -> Rule:
        return Rule(parse_condition(self.condition), Action.parse(self.action), self.condition)


def _default_tiers() -> dict[str, TierSettings]:
    return {"hot": TierSettings(ttl=DAY), "cold": TierSettings()}


def _default_rules() -> list[TierRule]:
    return [
        TierRule(condition="access_count > 10 AND tier != hot", action="promote_to_hot"),
        TierRule(condition="age > 1_day AND tier == hot", action="demote_to_cold"),
    ]


class TieredStorageConfig(BaseModel):
    """Tiered storage (RFC-009 §1): tiers, rules, where references and copies are named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: dict[str, TierSettings] = Field(
        default_factory=_default_tiers, description="the tiers in use (hot, warm, cold), each with ttl and capacity"
    )
    rules: list[TierRule] = Field(default_factory=_default_rules, description="evaluated in order; first match wins")
    write_tier: str = Field(default="hot", description="the tier a put writes to")
    reference_prefix: str = Field(default="tier-ref/", description="key prefix of reference records")
    data_prefix: str = Field(default="tier-data/", description="name prefix of the copies in every tier")
    bucket: str = Field(default="tiered-storage", min_length=1, description="bucket of object-store tiers")
    stream_threshold: Size = Field(default=8 << 20, gt=0, description="values above this stream to object tiers")
    chunk_size: Size = Field(default=1 << 20, gt=0)
    max_value_size: Size | None = Field(default=None, gt=0, description="puts above this are refused")
    gc_grace: Duration = Field(
        default=3600.0, gt=0, description="an unreferenced copy younger than this may be a write in flight: kept"
    )
    migration_batch: int = Field(default=100, ge=1, description="keys moved per migrator pass at most")
    max_attempts: int = Field(default=8, ge=1, description="compare-and-set retries before a VersionConflict")

    @field_validator("tiers")
    @classmethod
    def _known_tiers(cls, tiers: dict[str, TierSettings]) -> dict[str, TierSettings]:
        unknown = sorted(set(tiers) - set(TIERS))
        if unknown:
            raise ValueError(f"unknown tier(s) {', '.join(unknown)}: expected among {', '.join(TIERS)}")
        if not tiers:
            raise ValueError("expected at least one tier")
        return {name: tiers[name] for name in TIERS if name in tiers}  # fastest first

    @model_validator(mode="after")
    def _rules_name_configured_tiers(self) -> TieredStorageConfig:
        configured = ", ".join(self.tiers)
        if self.write_tier not in self.tiers:
            raise ValueError(f"write_tier {self.write_tier!r} is not a configured tier ({configured})")
        for number, rule in enumerate(self.rules):
            compiled = rule.compile()
            named = compiled.condition.tiers() | {compiled.action.target}
            missing = sorted(named - set(self.tiers), key=TIERS.index)
            if missing:
                raise ValueError(
                    f"rules[{number}] ({rule.condition} -> {rule.action}) names tier {missing[0]!r}, "
                    f"which is not configured (tiers: {configured})"
                )
        if self.reference_prefix.startswith(self.data_prefix) or self.data_prefix.startswith(self.reference_prefix):
            raise ValueError(
                "reference_prefix and data_prefix must not be prefixes of each other: references and copies "
                "may share a store, and each is found by scanning its prefix"
            )
        return self

    @cached_property
    def compiled_rules(self) -> tuple[Rule, ...]:
        return tuple(rule.compile() for rule in self.rules)

    @cached_property
    def counts_accesses(self) -> bool:
        """Whether reads must record themselves (a compare-and-set per read): only when a rule
        reads access_count or idle, or a capacity evicts the least recently read."""
        used = set().union(*(rule.condition.fields() for rule in self.compiled_rules))
        return bool(used & {"access_count", "idle"}) or any(t.capacity is not None for t in self.tiers.values())

    @property
    def order(self) -> tuple[str, ...]:
        """The configured tiers, fastest first."""
        return tuple(self.tiers)

    def next_slower(self, tier: str) -> str | None:
        order = self.order
        index = order.index(tier)
        return order[index + 1] if index + 1 < len(order) else None
