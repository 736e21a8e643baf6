"""What one pattern registration says: RFC-009 priority and complexity, slots, client APIs,
compositions and conflicts, its config model and the suites that prove it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from prism_testkit.registry.backend_spec import BackendSpec
from prism_testkit.registry.slots import Slot

CLIENT_APIS: tuple[str, ...] = ("queue", "pubsub", "keyvalue", "reader", "transact")
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
