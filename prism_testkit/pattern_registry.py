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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import pluggy
from pydantic import BaseModel

from prism_testkit.combinations import Slot
from prism_testkit.errors import RegistrationError
from prism_testkit.registry import BackendSpec, make_plugin_manager, registrations

CLIENT_APIS: tuple[str, ...] = ("queue", "pubsub", "keyvalue", "reader", "transact")
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
MESSAGING = Slot.one_of("queue", "log", "pubsub")  # a slot any messaging backend fills
DURABLE_LOG_HINT = (
    "acknowledged entries must survive a crash of the log's server, so the provisioned instance must be "
    "declared durable: core NATS pub/sub, JetStream with its default two-minute fsync, a memory-only broker "
    "or Redis without AOF is not enough"
)


class Priority(StrEnum):
    P0 = "P0"
    P1 = "P1"
    P2 = "P2"


class Complexity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class PatternSlot:
    """One backend a pattern runs on. ``roles`` are the keys of a ``needs:`` namespace's
    ``backends:`` map that fill it, first present wins (a WAL takes ``log``, else ``messaging``)."""

    slot: Slot
    roles: tuple[str, ...]
    description: str
    required: bool = True
    messaging: bool = False  # carries the chain's messages to consumers
    hint: str = ""  # why the requirement exists, printed with a mismatch


@dataclass(frozen=True)
class NeedsContext:
    """What a pattern sees while ``needs:`` are resolved: the namespace, its needs and the
    registered backends named in its ``backends:`` map (role -> backend)."""

    namespace: str
    client_api: str
    needs: Any  # prism_testkit.config.namespace_files.Needs
    backends: Mapping[str, BackendSpec]
    roles: frozenset[str]  # roles named in backends:, registered or not

    @property
    def messaging(self) -> BackendSpec | None:
        return self.backends.get("messaging")


@dataclass(frozen=True)
class CheckContext:
    """What a pattern sees when its validated config is checked against its backends."""

    client_api: str
    config: BaseModel
    slots: Mapping[str, BackendSpec]  # slot -> registered backend


# (path inside the namespace, e.g. "needs.max_message_size", and why); see PatternSpec.wanted
Wanted = tuple[str, str]
# (path inside the pattern's config, e.g. "threshold", and what is wrong)
ConfigProblem = tuple[str, str]


@dataclass(frozen=True)
class PatternSpec:
    """One pattern registration.

    ``wanted`` answers, for a ``needs:`` namespace, which needs select this pattern (each with
    the path of the need and a reason; none means not selected); it may also yield problems
    through ``problems`` (paths relative to the namespace). ``defaults`` gives the config the
    resolution starts from; ``check`` finds problems that need both the config and the
    backends. ``before`` lists patterns this one must be outer to, with ``order_reason``.
    """

    name: str
    title: str
    priority: Priority
    complexity: Complexity
    slots: Mapping[str, PatternSlot]
    config: type[BaseModel]
    client_apis: frozenset[str]
    summary: str
    suites: tuple[str, ...] = ()
    conflicts: frozenset[str] = frozenset()
    before: frozenset[str] = frozenset()
    order_reason: str = "RFC-009 layers it first"
    implemented: bool = True
    wanted: Callable[[NeedsContext, Callable[[str, str], None]], Iterable[Wanted]] | None = None
    defaults: Callable[[NeedsContext], Mapping[str, Any]] | None = None
    check: Callable[[CheckContext], Iterable[ConfigProblem]] | None = None
    module: str = field(default="", compare=False)  # where the registration came from (filled in)

    @property
    def required_slots(self) -> list[str]:
        return [name for name, spec in self.slots.items() if spec.required]


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
