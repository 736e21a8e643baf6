"""The backend registry: collects registrations from every plugin and checks them."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pluggy

from prism_testkit import hookspecs
from prism_testkit.capabilities import BackendProperties, Capability, parse_capabilities
from prism_testkit.driver import Driver, implemented_interfaces
from prism_testkit.errors import RegistrationError, UnknownBackend
from prism_testkit.provisioning import Provisioner

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class BackendSpec:
    """One backend registration."""

    name: str
    capabilities: frozenset[Capability]
    properties: BackendProperties
    provisioner: Provisioner
    driver: type[Driver]
    embedded: bool = False  # part of the default selection (no server needed)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", parse_capabilities(list(self.capabilities)))

    @property
    def interfaces(self) -> frozenset[Capability]:
        return frozenset(c for c in self.capabilities if c.is_interface)


@dataclass
class BackendRegistry:
    specs: dict[str, BackendSpec] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # backend name -> plugin that registered it

    def __iter__(self) -> Iterator[BackendSpec]:
        return iter(self.specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def __getitem__(self, name: str) -> BackendSpec:
        return self.specs[name]

    @property
    def names(self) -> list[str]:
        return sorted(self.specs)

    def add(self, spec: object, plugin: str) -> None:
        """Register ``spec`` on behalf of ``plugin``, or raise :class:`RegistrationError`."""
        where = f"backend registration from plugin {plugin!r}"
        if not isinstance(spec, BackendSpec):
            raise RegistrationError(f"{where}: expected a BackendSpec, got {type(spec).__name__}")
        if not _NAME.match(spec.name):
            raise RegistrationError(
                f"{where}: backend name {spec.name!r} must be lower-case letters, digits, '-' or '_'"
            )
        if spec.name in self.specs:
            raise RegistrationError(
                f"{where}: backend {spec.name!r} is already registered by plugin {self.origin[spec.name]!r}"
            )
        if not isinstance(spec.provisioner, Provisioner):
            raise RegistrationError(f"{where}: backend {spec.name!r} has no provisioner")
        if not (isinstance(spec.driver, type) and issubclass(spec.driver, Driver)):
            raise RegistrationError(f"{where}: backend {spec.name!r}: driver must be a Driver subclass")
        missing = spec.interfaces - implemented_interfaces(spec.driver)
        if missing:
            names = ", ".join(sorted(c.value for c in missing))
            raise RegistrationError(
                f"{where}: backend {spec.name!r} declares {names} but driver "
                f"{spec.driver.__qualname__} does not implement it"
            )
        if not isinstance(spec.properties, BackendProperties):
            raise RegistrationError(f"{where}: backend {spec.name!r}: properties must be BackendProperties")
        self.specs[spec.name] = spec
        self.origin[spec.name] = plugin

    def select(self, names: Iterable[str]) -> list[BackendSpec]:
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in self.specs]
        if unknown:
            raise UnknownBackend(unknown, self.names)
        return [self.specs[n] for n in wanted]

    @property
    def embedded(self) -> list[BackendSpec]:
        return [s for s in self.specs.values() if s.embedded]


def make_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Like pluggy's loader, but a plugin that fails to import is named in the error."""
    # Our own distribution first: a third-party backend that reuses a built-in name is the one
    # reported as the duplicate, whatever the order of sys.path.
    dists = sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["name"] != "prism-testkit")
    for dist in dists:
        for ep in dist.entry_points:
            if ep.group != hookspecs.ENTRY_POINT_GROUP or pm.is_blocked(ep.name):
                continue
            where = f"plugin {ep.name!r} (entry point {ep.value!r} of distribution {dist.metadata['name']!r})"
            if pm.get_plugin(ep.name) is not None:
                if pm.get_plugin(ep.name) is not _loaded_value(ep):
                    raise RegistrationError(f"{where}: another plugin is already registered as {ep.name!r}")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise RegistrationError(f"{where} could not be loaded: {type(exc).__name__}: {exc}") from exc
            pm.register(plugin, name=ep.name)


def _loaded_value(ep: importlib.metadata.EntryPoint) -> object:
    try:
        return ep.load()
    except Exception:
        return None


def build_registry(pm: pluggy.PluginManager) -> BackendRegistry:
    """Call every plugin's registration hook one by one, so a failure names its plugin."""
    registry = BackendRegistry()
    for impl in pm.hook.prism_register_backends.get_hookimpls():
        plugin = impl.plugin_name
        try:
            specs = impl.function()
        except RegistrationError:
            raise
        except Exception as exc:  # a crash inside a third-party plugin
            raise RegistrationError(
                f"backend registration from plugin {plugin!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if specs is None:
            continue
        if isinstance(specs, BackendSpec):
            specs = [specs]
        try:
            items = list(specs)
        except TypeError:
            raise RegistrationError(
                f"backend registration from plugin {plugin!r}: prism_register_backends must return "
                f"a sequence of BackendSpec, got {type(specs).__name__}"
            ) from None
        for spec in items:
            registry.add(spec, plugin)
    return registry
