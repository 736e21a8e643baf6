"""The pattern registry: patterns register through a pluggy hook, exactly as backends do.

A registration (:class:`PatternSpec`) says what the pattern is (RFC-009 priority and
complexity), where it runs (slots: the capabilities and durability each backend needs), under
which client APIs it may sit, what it composes with and conflicts with, the pattern's own
config model (the one its code takes, so a namespace file that validates configures the real
pattern), the suites that prove it, and how ``needs:`` select it. The catalogue, ``validate``,
``explain``, ``schema`` and ``needs:`` resolution are all views of these registrations; the
core never imports a pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pluggy
from pydantic import BaseModel

from prism_testkit.errors import RegistrationError
from prism_testkit.registry.backends import make_plugin_manager, registrations
from prism_testkit.registry.pattern_spec import (  # re-exported: their old home
    CLIENT_APIS as CLIENT_APIS,
)
from prism_testkit.registry.pattern_spec import (
    DURABLE_LOG_HINT as DURABLE_LOG_HINT,
)
from prism_testkit.registry.pattern_spec import (
    MESSAGING as MESSAGING,
)
from prism_testkit.registry.pattern_spec import (
    CheckContext as CheckContext,
)
from prism_testkit.registry.pattern_spec import (
    Complexity as Complexity,
)
from prism_testkit.registry.pattern_spec import (
    ConfigProblem as ConfigProblem,
)
from prism_testkit.registry.pattern_spec import (
    NeedsContext as NeedsContext,
)
from prism_testkit.registry.pattern_spec import (
    PatternSlot as PatternSlot,
)
from prism_testkit.registry.pattern_spec import (
    PatternSpec as PatternSpec,
)
from prism_testkit.registry.pattern_spec import (
    Priority as Priority,
)
from prism_testkit.registry.pattern_spec import (
    Wanted as Wanted,
)

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass
class PatternRegistry:
    """Every registered pattern, in chain order (outer first: each before the patterns it
    must wrap, then by priority and name)."""

    specs: dict[str, PatternSpec] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # pattern name -> plugin

    def __iter__(self) -> Iterator[PatternSpec]:
        return iter(self.specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def __getitem__(self, name: str) -> PatternSpec:
        return self.specs[name]

    def __len__(self) -> int:
        return len(self.specs)

    def get(self, name: str) -> PatternSpec | None:
        return self.specs.get(name)

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted({role for spec in self for slot in spec.slots.values() for role in slot.roles}))

    def for_suite(self, suite: str) -> list[PatternSpec]:
        return [spec for spec in self if suite in spec.suites]

    def add(self, spec: object, plugin: str) -> None:
        where = f"pattern registration from plugin {plugin!r}"
        if not isinstance(spec, PatternSpec):
            raise RegistrationError(f"{where}: expected a PatternSpec, got {type(spec).__name__}")
        if not _NAME.match(spec.name):
            raise RegistrationError(f"{where}: pattern name {spec.name!r} must be lower-case letters, digits or '-'")
        if spec.name in self.specs:
            raise RegistrationError(
                f"{where}: pattern {spec.name!r} is already registered by plugin {self.origin[spec.name]!r}"
            )
        if not (isinstance(spec.config, type) and issubclass(spec.config, BaseModel)):
            raise RegistrationError(f"{where}: pattern {spec.name!r}: config must be a pydantic model class")
        if not spec.slots or not all(isinstance(s, PatternSlot) for s in spec.slots.values()):
            raise RegistrationError(f"{where}: pattern {spec.name!r} must declare its slots as PatternSlot")
        unknown = set(spec.client_apis) - set(CLIENT_APIS)
        if unknown or not spec.client_apis:
            raise RegistrationError(
                f"{where}: pattern {spec.name!r}: client_apis must be among {', '.join(CLIENT_APIS)}, "
                f"found {', '.join(sorted(spec.client_apis)) or 'none'}"
            )
        self.specs[spec.name] = spec
        self.origin[spec.name] = plugin

    def finish(self) -> PatternRegistry:
        """Check references between patterns and put them in chain order."""
        # Names of patterns that are not installed are allowed: nothing can conflict with them.
        for spec in self:
            for other in spec.before:
                if other in self.specs and spec.name in self.specs[other].before:
                    raise RegistrationError(
                        f"patterns {spec.name!r} and {other!r} each say they must come before the other"
                    )
        self.specs = {spec.name: spec for spec in _chain_order(list(self.specs.values()))}
        return self


def _chain_order(specs: Sequence[PatternSpec]) -> list[PatternSpec]:
    """Topological order of ``before`` (outer first); ties by priority, then name."""
    names = {s.name for s in specs}
    inner_of: dict[str, set[str]] = {s.name: set() for s in specs}  # pattern -> patterns that must precede it
    for s in specs:
        for inner in s.before & names:
            inner_of[inner].add(s.name)
    ordered: list[PatternSpec] = []
    placed: set[str] = set()
    remaining = sorted(specs, key=lambda s: (s.priority, s.name))
    while remaining:
        ready = next((s for s in remaining if inner_of[s.name] <= placed), None)
        if ready is None:  # a cycle through three or more patterns
            cycle = ", ".join(s.name for s in remaining)
            raise RegistrationError(f"patterns {cycle} must each come before another: their 'before' forms a cycle")
        ordered.append(ready)
        placed.add(ready.name)
        remaining.remove(ready)
    return ordered


def build_pattern_registry(pm: pluggy.PluginManager) -> PatternRegistry:
    """Every plugin's patterns, checked one by one, in chain order."""
    registry = PatternRegistry()
    for spec, plugin in registrations(pm, "prism_register_patterns", PatternSpec, "pattern"):
        registry.add(spec, plugin)
    return registry.finish()


def load_patterns() -> PatternRegistry:
    """Every pattern registered through the ``prism_testkit`` entry points (built-in ones too)."""
    return build_pattern_registry(make_plugin_manager())
