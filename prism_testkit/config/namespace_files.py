"""Namespace files: YAML declaring, per namespace, a client API and the patterns behind it.

A namespace gives EITHER an ordered ``patterns:`` list (each naming a catalogue pattern, its
config and a registered backend in every slot) OR ``needs:`` that resolve to such a list
(RFC-014 "How Prism Selects Patterns") with a ``backends:`` map naming the backend of each role::

    namespaces:
      - name: video-uploads
        client_api: queue
        patterns:
          - type: claim-check
            config: {threshold: 1MB, bucket: videos, field: video-ref}
            slots: {messaging: sqlite, objects: localfs}
          - type: wal
            slots: {log: sqlite}
      - name: orders
        client_api: queue
        needs: {max_message_size: 100MB, transactional: true}
        backends: {messaging: postgres, objects: localfs, store: postgres}

Resolution of ``needs:`` (the resolved list is then validated like an explicit one):

=============================================  ================  ================================
need                                           adds              when
=============================================  ================  ================================
max_message_size                               claim-check       above the messaging backend's
                                                                 declared max_payload
transactional, consistency: strong,            outbox            always
delivery_guarantee: exactly_once
durability: strong, replay: true               wal               the client API can sit on a WAL
retention                                      tiered-storage    longer than one day (the hot tier)
audit                                          event-sourcing    always
=============================================  ================  ================================

``durability: strong`` also requires every backend of the chain to be durable, and ``ordered``
a backend ordering other than ``none`` on the messaging backend.

Every problem found is collected (not only the first) into one :class:`NamespaceError`, each
with the file, the path inside it (``namespaces[0].patterns[1].slots.log``) and what was
expected against what was found.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from prism_testkit.capabilities import Capability, Ordering
from prism_testkit.config.units import SIZE_PATTERN, Duration, Size
from prism_testkit.errors import ConfigurationError
from prism_testkit.redaction import redact
from prism_testkit.registry.backends import BackendRegistry, BackendSpec
from prism_testkit.registry.patterns import (
    CLIENT_APIS,
    CheckContext,
    NeedsContext,
    PatternRegistry,
    PatternSlot,
    PatternSpec,
    load_patterns,
)

__all__ = [
    "NamespaceError",
    "NamespaceFile",
    "Needs",
    "Problem",
    "ResolvedNamespace",
    "ResolvedPattern",
    "load_namespaces",
    "namespace_json_schema",
    "parse_namespaces",
    "validate_file",
]

SCHEMA_PATH = Path(__file__).with_name("namespace.schema.json")
ClientApi = Literal["queue", "pubsub", "keyvalue", "reader", "transact"]
assert get_args(ClientApi) == CLIENT_APIS  # spelled out for the type checker; one list in truth
# Schema-only (pydantic's regex engine has no look-ahead): a backend name, never "multi".
_BACKEND_NAME: dict[str, Any] = {"pattern": r"^[a-z][a-z0-9_-]*$", "not": {"const": "multi"}}


# --- problems ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    file: str
    path: str  # inside the file, e.g. namespaces[0].patterns[1].slots.log
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return redact(f"{self.file}: {self.path}: {self.message}{where}")


class NamespaceError(ConfigurationError):
    """One or more namespace files are invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in namespace configuration:\n{lines}")


# --- the file format (structure only; meaning is checked after) ---------------------------


def _enabled_flag(value: object) -> object:
    # RFC-014 writes `replay: enabled`; a YAML boolean works too.
    return {"enabled": True, "disabled": False}.get(value, value) if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(_enabled_flag, json_schema_input_type=bool | Literal["enabled", "disabled"])]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PatternEntry(_Strict):
    type: str = Field(description="name of a registered pattern")
    enabled: bool = Field(default=True, description="a disabled entry is validated by name only and not run")
    config: dict[str, Any] = Field(default_factory=dict, description="the pattern's configuration")
    slots: dict[str, str] = Field(default_factory=dict, description="slot name -> registered backend name")


class Needs(_Strict):
    """What the application needs (RFC-014); resolved to patterns."""

    durability: Literal["strong", "eventual"] | None = None
    consistency: Literal["strong", "eventual"] | None = None
    max_message_size: Size | None = Field(default=None, gt=0, description="largest payload, bytes or e.g. 100MB")
    retention: Duration | None = Field(default=None, gt=0, description="seconds, or e.g. 30days, infinite")
    replay: Flag | None = None
    ordered: bool | None = None
    transactional: bool | None = None
    delivery_guarantee: Literal["at_most_once", "at_least_once", "exactly_once"] | None = None
    audit: bool | None = None
    deduplication: Duration | None = Field(
        default=None, gt=0, description="drop a message whose content was published within this window (producer)"
    )


class NamespaceModel(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=63)
    description: str = ""
    client_api: ClientApi
    patterns: list[PatternEntry] | None = Field(default=None, description="ordered: first is outermost")
    needs: Needs | None = None
    backends: dict[str, str] | None = Field(default=None, description="with needs: role -> backend name")
    pattern_config: dict[str, dict[str, Any]] | None = Field(
        default=None, description="with needs: config overrides per resolved pattern"
    )


class NamespaceFileModel(_Strict):
    namespaces: list[NamespaceModel] = Field(min_length=1)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedPattern:
    spec: PatternSpec
    config: BaseModel
    slots: dict[str, str]  # slot -> backend name
    reason: str = "listed in patterns"

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class ResolvedNamespace:
    name: str
    client_api: str
    chain: tuple[ResolvedPattern, ...]  # publish order; consume runs it in reverse
    needs: Needs | None = None
    backends: dict[str, str] = field(default_factory=dict)  # needs: role -> backend


@dataclass(frozen=True)
class NamespaceFile:
    path: str
    namespaces: tuple[ResolvedNamespace, ...]


# --- loading -------------------------------------------------------------------------------


def load_namespaces(
    path: str | Path, registry: BackendRegistry, patterns: PatternRegistry | None = None
) -> NamespaceFile:
    """Read, validate and resolve ``path``; raise :class:`NamespaceError` listing every problem.
    A missing or unreadable file raises :class:`OSError`. ``patterns`` defaults to every pattern
    registered through the entry points."""
    text = Path(path).read_text(encoding="utf-8")
    return parse_namespaces(text, registry, file=str(path), patterns=patterns)


def validate_file(
    path: str | Path, registry: BackendRegistry, patterns: PatternRegistry | None = None
) -> list[Problem]:
    try:
        load_namespaces(path, registry, patterns)
    except NamespaceError as exc:
        return exc.problems
    return []


def parse_namespaces(
    text: str, registry: BackendRegistry, *, file: str = "<string>", patterns: PatternRegistry | None = None
) -> NamespaceFile:
    try:
        _check_shape(text, file)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        detail = getattr(exc, "problem", None) or str(exc)
        raise NamespaceError(
            [Problem(file, "(root)", f"invalid YAML: {detail}", mark.line + 1 if mark else None)]
        ) from None
    lines = _Lines(text)
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise NamespaceError([Problem(file, "(root)", f"expected a mapping with a 'namespaces' list, found {found}")])
    try:
        outline = _Outline.model_validate(data)
    except ValidationError as exc:
        raise NamespaceError([_from_pydantic(file, lines, err, model=_Outline) for err in exc.errors()]) from None
    # Each namespace on its own, so one broken namespace does not hide the others' problems.
    checker = _Checker(file, lines, registry, patterns if patterns is not None else load_patterns())
    resolved: list[ResolvedNamespace] = []
    for i, raw in enumerate(outline.namespaces):
        try:
            ns = NamespaceModel.model_validate(raw)
        except ValidationError as exc:
            checker.problems.extend(_from_pydantic(file, lines, err, f"namespaces[{i}]") for err in exc.errors())
            continue
        resolved.append(checker.namespace(i, ns))
    checker.unique_names(outline.namespaces)
    if checker.problems:
        raise NamespaceError(checker.problems)
    return NamespaceFile(file, tuple(resolved))


MAX_NESTING = 64  # levels of mappings and lists; a real namespace file needs fewer than ten
MAX_NODES = 100_000  # values once aliases are expanded; a real namespace file has hundreds


def _check_shape(text: str, file: str) -> None:
    """Refuse a file nested deeper than :data:`MAX_NESTING`, or larger than :data:`MAX_NODES`
    values once its aliases are expanded, before anything recursive or expanding reads it
    (PyYAML's composer, pydantic, our line finder): 1,000 levels were a RecursionError, and
    600 bytes of aliases of aliases ("billion laughs") a hang. Events are read lazily and the
    first excess stops the read, so the cost stays bounded."""
    depth = nodes = 0
    anchored: dict[str, int] = {}  # anchor -> values in what it names
    open_anchors: list[tuple[str | None, int]] = []  # per open collection: its anchor, nodes before it
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        message = None
        if isinstance(event, yaml.AliasEvent):
            nodes += anchored.get(event.anchor or "", 1)
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor:
                anchored[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            nodes += 1
            open_anchors.append((event.anchor, nodes))
            if depth > MAX_NESTING:
                message = f"nested more than {MAX_NESTING} levels deep (mappings and lists)"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, before = open_anchors.pop()
            if anchor:
                anchored[anchor] = nodes - before + 1
        if message is None and nodes > MAX_NODES:
            message = f"more than {MAX_NODES:,} values once its aliases are expanded"
        if message is not None:
            line = event.start_mark.line + 1 if event.start_mark else None
            raise NamespaceError([Problem(file, "(root)", message, line)])


class _Outline(_Strict):
    namespaces: list[Any] = Field(min_length=1)


def _path(loc: Iterable[int | str], prefix: str = "") -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_error(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        allowed = _fields_at(model, err["loc"][:-1])
        return f"unknown field, expected one of: {', '.join(allowed)}" if allowed else "unknown field"
    if kind == "value_error":  # our own validators name the bad value already
        return msg.removeprefix("Value error, ")
    return f"{msg}, found {_short(err['input'])}" if "input" in err else msg


def _fields_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Field names of the model found at ``loc`` inside ``model`` (empty when it is not a model)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        current = _model_in(current.model_fields[part].annotation)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _from_pydantic(
    file: str, lines: _Lines, err: Mapping[str, Any], prefix: str = "", model: type[BaseModel] = NamespaceModel
) -> Problem:
    path = _path(err["loc"], prefix)
    return Problem(file, path, _describe_error(err, model), lines.line(path))


class _Lines:
    """Line numbers of paths in the YAML source, for messages people can jump to."""

    def __init__(self, text: str) -> None:
        try:
            self.root: yaml.Node | None = yaml.compose(text)
        except yaml.YAMLError:
            self.root = None

    def line(self, path: str) -> int | None:
        node, found = self.root, None
        for part in _split(path):
            if node is None:
                break
            found = node.start_mark.line + 1
            node = _child(node, part)
        return node.start_mark.line + 1 if node is not None else found


def _split(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.replace("[", ".[").split("."):
        if not piece or piece == "(root)":
            continue
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return parts


def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return node.value[part] if part < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                found: yaml.Node = value
                return found
    return None


# --- meaning -------------------------------------------------------------------------------


@dataclass
class _Draft:
    """A pattern about to be validated, and where to point when something is wrong with it."""

    info: PatternSpec
    config: dict[str, Any]
    slots: dict[str, str]
    at: str  # path blamed for the pattern itself (its type, or the need that added it)
    config_at: str
    slot_at: Mapping[str, str]  # slot -> path blamed for its backend
    reason: str


class _Checker:
    def __init__(self, file: str, lines: _Lines, registry: BackendRegistry, patterns: PatternRegistry) -> None:
        self.file = file
        self.lines = lines
        self.registry = registry
        self.patterns = patterns
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        found = Problem(self.file, path, message, self.lines.line(path))
        if found not in self.problems:  # patterns sharing a role would report its backend twice
            self.problems.append(found)

    def unique_names(self, namespaces: Sequence[Any]) -> None:
        seen: dict[str, int] = {}
        for i, ns in enumerate(namespaces):
            name = ns.get("name") if isinstance(ns, dict) else None
            if not isinstance(name, str):
                continue
            if name in seen:
                self.problem(
                    f"namespaces[{i}].name", f"duplicate namespace name {name!r} (also namespaces[{seen[name]}])"
                )
            seen.setdefault(name, i)

    def namespace(self, i: int, ns: NamespaceModel) -> ResolvedNamespace:
        at = f"namespaces[{i}]"
        if (ns.patterns is None) == (ns.needs is None):
            found = "both" if ns.patterns is not None else "neither"
            self.problem(at, f"expected either 'patterns:' (an ordered list) or 'needs:', found {found}")
            return ResolvedNamespace(ns.name, ns.client_api, ())
        if ns.patterns is not None:
            for key in ("backends", "pattern_config"):
                if getattr(ns, key) is not None:
                    self.problem(
                        f"{at}.{key}",
                        f"'{key}:' goes with 'needs:'; with 'patterns:' give each pattern its own "
                        f"{'slots' if key == 'backends' else 'config'}",
                    )
            drafts = self.explicit(at, ns.patterns)
            backends: dict[str, str] = {}
        else:
            assert ns.needs is not None
            drafts = self.resolve(at, ns)
            backends = dict(ns.backends or {})
        chain = self.chain(at, ns, drafts)
        return ResolvedNamespace(ns.name, ns.client_api, chain, ns.needs, backends)

    # -- explicit lists ------------------------------------------------------------------------

    def explicit(self, at: str, entries: Sequence[PatternEntry]) -> list[_Draft]:
        drafts: list[_Draft] = []
        for j, entry in enumerate(entries):
            where = f"{at}.patterns[{j}]"
            info = self.patterns.get(entry.type)
            if info is None:
                known = ", ".join(self.patterns.names) or "none registered"
                self.problem(f"{where}.type", f"unknown pattern {entry.type!r} (expected one of: {known})")
                continue
            if not entry.enabled:
                continue
            slot_at = {name: f"{where}.slots.{name}" for name in {*info.slots, *entry.slots}}
            drafts.append(
                _Draft(
                    info,
                    entry.config,
                    dict(entry.slots),
                    f"{where}.type",
                    f"{where}.config",
                    slot_at,
                    "listed in patterns",
                )
            )
        return drafts

    # -- needs ---------------------------------------------------------------------------------

    def resolve(self, at: str, ns: NamespaceModel) -> list[_Draft]:
        needs = ns.needs
        assert needs is not None
        roles = dict(ns.backends or {})
        known_roles = self.patterns.roles
        for role, backend in list(roles.items()):
            trouble = (
                self.backend_trouble(backend)
                if role in known_roles
                else (f"unknown role {role!r} (expected one of: {', '.join(known_roles)})")
            )
            if trouble:
                self.problem(f"{at}.backends.{role}", trouble)
                roles[role] = ""  # reported: patterns using this role skip it without a second message
        for name in ns.pattern_config or {}:
            if name not in self.patterns:
                known = ", ".join(self.patterns.names)
                self.problem(f"{at}.pattern_config.{name}", f"unknown pattern {name!r} (expected one of: {known})")

        context = NeedsContext(
            namespace=ns.name,
            client_api=ns.client_api,
            needs=needs,
            backends={role: self.registry[name] for role, name in roles.items() if name in self.registry},
            roles=frozenset(roles),
        )

        def report(path: str, message: str) -> None:
            self.problem(f"{at}.{path}", message)

        drafts: list[_Draft] = []
        for info in self.patterns:  # registry order is a valid chain order
            selected = list(info.wanted(context, report)) if info.wanted else []
            if not selected:
                continue
            need_path, reason = selected[0]
            need_at = f"{at}.{need_path}"
            slots, slot_at = self.fill_roles(at, need_at, info, roles)
            defaults = dict(info.defaults(context)) if info.defaults else {}
            config = {**defaults, **(ns.pattern_config or {}).get(info.name, {})}
            drafts.append(_Draft(info, config, slots, need_at, f"{at}.pattern_config.{info.name}", slot_at, reason))
        if not drafts and not roles:
            self.problem(
                f"{at}.backends", "expected at least one backend (e.g. 'messaging: <backend>') for the client API"
            )
        self.durability(at, ns, drafts, roles)
        return drafts

    def fill_roles(
        self, at: str, need_at: str, info: PatternSpec, roles: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, str]]:
        slots: dict[str, str] = {}
        slot_at: dict[str, str] = {}
        for slot, spec in info.slots.items():
            role = next((r for r in spec.roles if r in roles), None)
            if role is not None and not roles[role]:
                continue
            if role is None:
                if spec.required:
                    names = " or ".join(f"'{r}'" for r in spec.roles)
                    self.problem(
                        f"{at}.backends",
                        f"{need_at.rsplit('.', 1)[-1]} resolves to {info.name}, whose slot {slot!r} needs "
                        f"{spec.slot.describe()}: expected {names} in backends{self.candidates(spec)}",
                    )
                continue
            slots[slot] = roles[role]
            slot_at[slot] = f"{at}.backends.{role}"
        return slots, slot_at

    def durability(self, at: str, ns: NamespaceModel, drafts: Sequence[_Draft], roles: Mapping[str, str]) -> None:
        needs = ns.needs
        assert needs is not None
        if needs.durability == "strong":
            for role, name in roles.items():
                spec = self.registry.specs.get(name)
                if spec is not None and not spec.properties.durable:
                    self.problem(
                        f"{at}.backends.{role}",
                        f"durability: strong needs every backend to keep acknowledged writes across a restart: "
                        f"expected a durable backend, found {name!r} (durable: false)",
                    )
        if needs.ordered:
            spec = self.registry.specs.get(roles.get("messaging", ""))
            if spec is not None and spec.properties.ordering is Ordering.NONE:
                self.problem(
                    f"{at}.backends.messaging",
                    f"ordered: true needs ordered delivery: expected ordering per-key or total, found {spec.name!r} "
                    f"(ordering: none)",
                )

    # -- every chain ---------------------------------------------------------------------------

    def chain(self, at: str, ns: NamespaceModel, drafts: Sequence[_Draft]) -> tuple[ResolvedPattern, ...]:
        resolved: list[ResolvedPattern] = []
        position: dict[str, int] = {}
        for k, draft in enumerate(drafts):
            info = draft.info
            if info.name in position:
                self.problem(draft.at, f"pattern {info.name!r} appears twice in the chain (a chain holds each once)")
                continue
            if ns.client_api not in info.client_apis:
                apis = ", ".join(sorted(info.client_apis))
                self.problem(
                    draft.at,
                    f"pattern {info.name!r} cannot sit under client_api {ns.client_api!r} (expected one of: {apis})",
                )
            for other in info.conflicts:
                if other in position:
                    self.problem(
                        draft.at,
                        f"pattern {info.name!r} conflicts with {other!r} (RFC-009 compatibility matrix: "
                        f"both define where events are stored); expected one of them, found both",
                    )
            for earlier in position:
                if earlier in info.before:
                    self.problem(
                        draft.at,
                        f"pattern {info.name!r} must come before {earlier!r} (outer to it), found it after: "
                        f"{info.order_reason}",
                    )
            position[info.name] = k
            config = self.config(draft)
            slots = self.slots(draft)
            if config is not None:
                self.specific(ns, draft, config)
                resolved.append(ResolvedPattern(info, config, slots, draft.reason))
        return tuple(resolved)

    def config(self, draft: _Draft) -> BaseModel | None:
        try:
            return draft.info.config.model_validate(draft.config)
        except ValidationError as exc:
            for err in exc.errors():
                path = _path(err["loc"], draft.config_at)
                self.problem(path, _describe_error(err, draft.info.config))
            return None

    def backend_trouble(self, backend: str) -> str:
        if backend == "multi":
            return "'multi' is not a backend: name the one registered backend that fills this role"
        if backend not in self.registry:
            return f"unknown backend {backend!r} (registered backends: {', '.join(self.registry.names) or 'none'})"
        return ""

    def candidates(self, spec: PatternSlot) -> str:
        fits = [b.name for b in self.registry if spec.slot.fits(b)]
        return f" (registered backends that fit: {', '.join(fits)})" if fits else " (no registered backend fits)"

    def slots(self, draft: _Draft) -> dict[str, str]:
        out: dict[str, str] = {}
        info = draft.info
        for slot in draft.slots:
            if slot not in info.slots:
                known = ", ".join(info.slots)
                self.problem(draft.slot_at[slot], f"unknown slot {slot!r} of {info.name} (expected: {known})")
        for slot, spec in info.slots.items():
            path = draft.slot_at.get(slot, "")
            backend = draft.slots.get(slot)
            if backend is None:
                if spec.required and path:  # needs: a missing role was reported already
                    self.problem(
                        path,
                        f"missing slot {slot!r} of {info.name}: expected a backend with {spec.slot.describe()}"
                        f"{self.candidates(spec)}",
                    )
                continue
            if backend == "multi":
                self.problem(
                    path,
                    f"'multi' is not a backend: name the one registered backend that fills slot {slot!r}, "
                    f"expected a backend with {spec.slot.describe()}{self.candidates(spec)}",
                )
                continue
            trouble = self.backend_trouble(backend)
            if trouble:
                self.problem(path, trouble)
                continue
            found = self.registry.specs[backend]
            if not spec.slot.fits(found):
                hint = f"; {spec.hint}" if spec.hint else ""
                self.problem(
                    path,
                    f"slot {slot!r} of {info.name} expects a backend with {spec.slot.describe()}, found "
                    f"{backend!r} ({describe_backend(found)}){hint}{self.candidates(spec)}",
                )
                continue
            out[slot] = backend
        return out

    def specific(self, ns: NamespaceModel, draft: _Draft, config: BaseModel) -> None:
        """The pattern's own rules that need both the config and the backends."""
        if draft.info.check is None:
            return
        slots = {slot: self.registry[name] for slot, name in draft.slots.items() if name in self.registry}
        for path, message in draft.info.check(CheckContext(ns.client_api, config, slots)):
            self.problem(f"{draft.config_at}.{path}", message)


def describe_backend(spec: BackendSpec, relevant: Iterable[Capability] | None = None) -> str:
    caps = spec.capabilities if relevant is None else spec.capabilities & frozenset(relevant)
    parts = [", ".join(sorted(c.value for c in caps)) or "no matching capability"]
    parts.append("durable" if spec.properties.durable else "not durable")
    if spec.properties.max_payload is not None:
        parts.append(f"max_payload {spec.properties.max_payload}")
    return "; ".join(parts)


# --- JSON Schema ---------------------------------------------------------------------------


def namespace_json_schema(patterns: PatternRegistry | None = None) -> dict[str, Any]:
    """JSON Schema of namespace files, with each registered pattern's slots and config spelled
    out, so editors complete and check them. Backends are checked by name pattern only."""
    patterns = patterns if patterns is not None else load_patterns()
    # Models built at run time from the registrations: their fields are typed Any for mypy.
    variants = [_entry_model(info) for info in patterns]
    entry: Any = Annotated[variants[0] if len(variants) == 1 else _union(variants), Field(discriminator="type")]
    # partial: merged over the defaults the resolution computes
    override_fields: dict[str, Any] = {info.name: (dict[str, Any] | None, None) for info in patterns}
    overrides: Any = create_model("PatternConfig", __config__=ConfigDict(extra="forbid"), **override_fields)
    backend_name: Any = Annotated[str | None, Field(json_schema_extra=_BACKEND_NAME)]
    role_fields: dict[str, Any] = {role: (backend_name, None) for role in patterns.roles}
    roles: Any = create_model("Backends", __config__=ConfigDict(extra="forbid"), **role_fields)
    namespace_fields: dict[str, Any] = {
        "patterns": (list[entry] | None, Field(default=None, description="ordered: first is outermost")),
        "backends": (roles | None, None),
        "pattern_config": (overrides | None, None),
    }
    namespace: Any = create_model("Namespace", __base__=NamespaceModel, **namespace_fields)
    top_fields: dict[str, Any] = {"namespaces": (list[namespace], Field(min_length=1))}
    top = create_model("NamespaceFile", __base__=NamespaceFileModel, **top_fields)
    schema = top.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "prism-testkit namespace file"
    _patch_units(schema)
    ns_def = schema["$defs"]["Namespace"]
    ns_def["oneOf"] = [
        {"required": ["patterns"], "not": {"required": ["needs"]}},
        {"required": ["needs"], "not": {"required": ["patterns"]}},
    ]
    return schema


def _union(types: list[type[BaseModel]]) -> Any:
    out: Any = types[0]
    for t in types[1:]:
        out = out | t
    return out


def _entry_model(info: PatternSpec) -> type[BaseModel]:
    slot_fields: dict[str, Any] = {}
    for slot, spec in info.slots.items():
        kind = Annotated[
            str, Field(json_schema_extra=_BACKEND_NAME, description=f"{spec.description} ({spec.slot.describe()})")
        ]
        slot_fields[slot] = (kind, ...) if spec.required else (kind | None, None)
    title = "".join(part.title() for part in info.name.split("-"))
    slots = create_model(f"{title}Slots", __config__=ConfigDict(extra="forbid"), **slot_fields)
    entry_fields: dict[str, Any] = {
        "type": (Literal[info.name], ...),
        "enabled": (bool, True),
        "config": (info.config, ...) if _has_required(info.config) else (info.config | None, None),
        "slots": (slots, ...),
    }
    return create_model(
        f"{title}Entry",
        __config__=ConfigDict(extra="forbid", title=f"{info.title} ({info.priority}, {info.complexity})"),
        **entry_fields,
    )


def _has_required(model: type[BaseModel]) -> bool:
    return any(f.is_required() for f in model.model_fields.values())


def _patch_units(node: Any) -> None:
    """Sizes and durations are ints/floats after validation but also accept '1MB' / '30days';
    ClaimCheckConfig's sizes are plain ints to pydantic's schema, so widen them here."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, prop in props.items():
                if name in ("threshold", "max_payload", "streaming_threshold", "chunk_size", "max_message_size"):
                    _widen(prop, {"type": "string", "pattern": SIZE_PATTERN})
        for value in node.values():
            _patch_units(value)
    elif isinstance(node, list):
        for value in node:
            _patch_units(value)


def _widen(prop: dict[str, Any], extra: dict[str, Any]) -> None:
    branches = prop.get("anyOf", [prop])
    for branch in branches:
        if "ge" in branch:  # pydantic leaves the constraint of an Optional[Annotated[...]] unmapped
            branch["minimum"] = branch.pop("ge")
    if any(b.get("type") == "string" for b in branches):
        return
    if "anyOf" in prop:
        prop["anyOf"].append(dict(extra))
    else:
        integer = {k: prop.pop(k) for k in list(prop) if k in ("type", "minimum", "exclusiveMinimum", "maximum")}
        prop["anyOf"] = [integer, dict(extra)]


def schema_text(patterns: PatternRegistry | None = None) -> str:
    return json.dumps(namespace_json_schema(patterns), indent=2, sort_keys=True) + "\n"
