"""The backend registry: collects registrations from every plugin and checks them."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pluggy

from prism_testkit import hookspecs
from prism_testkit.capabilities import BackendProperties, Capability, parse_capabilities
from prism_testkit.driver import Driver, implemented_interfaces
from prism_testkit.errors import ClientLibraryMissing, RegistrationError, UnknownBackend
from prism_testkit.provisioning import Provisioner

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DRIVER_REF = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}$")
_TOP_LEVEL_MODULE = re.compile(rf"^{_IDENTIFIER}$")
_EXTRA = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class BackendSpec:
    """One backend registration.

    ``driver`` is the :class:`Driver` subclass, or a ``"package.module:ClassName"`` string that
    is imported the first time the backend is connected: a registration whose driver needs a
    client library then costs nothing until that backend is used, and a missing library makes
    the backend unavailable instead of breaking every pytest run. ``requires`` names the
    top-level modules of those libraries (checked with :func:`importlib.util.find_spec`, never
    imported), ``extra`` the pip extra of prism-testkit that installs them.
    """

    name: str
    capabilities: frozenset[Capability]
    properties: BackendProperties
    provisioner: Provisioner
    driver: type[Driver] | str
    embedded: bool = False  # part of the default selection (no server needed)
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None
    plugin: str = field(default="?", init=False, compare=False)  # set by the registry

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", parse_capabilities(list(self.capabilities)))
        if not isinstance(self.requires, str):  # a bare string is refused by the registry
            object.__setattr__(self, "requires", tuple(self.requires))

    @property
    def interfaces(self) -> frozenset[Capability]:
        return frozenset(c for c in self.capabilities if c.is_interface)

    @property
    def install_hint(self) -> str:
        if self.extra is not None:
            return f"pip install 'prism-testkit[{self.extra}]'"
        return "install the Python distribution(s) that provide " + ", ".join(self.requires)

    def missing_requirements(self) -> list[str]:
        """The modules of ``requires`` that cannot be found (none is imported to find out)."""
        return [name for name in self.requires if not _importable(name)]

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot be used in this environment whatever is provisioned, or None."""
        missing = self.missing_requirements()
        if not missing:
            return None
        return f"client library {', '.join(missing)} is not installed: {self.install_hint}"

    @property
    def driver_class(self) -> type[Driver]:
        """The driver class, imported and checked on first use."""
        resolved = self.__dict__.get("_driver_class")
        if resolved is None:
            resolved = self._resolve_driver()
            object.__setattr__(self, "_driver_class", resolved)
        return resolved

    def _resolve_driver(self) -> type[Driver]:
        if not isinstance(self.driver, str):
            return self.driver  # checked when it was registered
        missing = self.missing_requirements()
        if missing:
            raise ClientLibraryMissing(self.name, missing, self.install_hint)
        where = f"backend registration from plugin {self.plugin!r}: backend {self.name!r}"
        module_name, _, class_name = self.driver.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise RegistrationError(
                f"{where}: driver {self.driver!r} could not be imported: {type(exc).__name__}: {exc}"
            ) from exc
        driver = getattr(module, class_name, None)
        if driver is None:
            raise RegistrationError(f"{where}: driver {self.driver!r}: module {module_name!r} has no {class_name!r}")
        _check_driver(where, self, driver)
        checked: type[Driver] = driver
        return checked


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: imported already, without a __spec__
        return module in sys.modules


def _check_driver(where: str, spec: BackendSpec, driver: object) -> None:
    """``driver`` is a Driver subclass that implements every interface ``spec`` declares."""
    if not (isinstance(driver, type) and issubclass(driver, Driver)):
        raise RegistrationError(f"{where}: driver must be a Driver subclass")
    missing = spec.interfaces - implemented_interfaces(driver)
    if missing:
        names = ", ".join(sorted(c.value for c in missing))
        raise RegistrationError(f"{where} declares {names} but driver {driver.__qualname__} does not implement it")


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
        if isinstance(spec.driver, str):
            if not _DRIVER_REF.match(spec.driver):
                raise RegistrationError(
                    f"{where}: backend {spec.name!r}: driver {spec.driver!r} must be a Driver subclass "
                    "or a 'package.module:ClassName' string"
                )
        else:
            _check_driver(f"{where}: backend {spec.name!r}", spec, spec.driver)
        if isinstance(spec.requires, str) or not all(
            isinstance(m, str) and _TOP_LEVEL_MODULE.match(m) for m in spec.requires
        ):
            raise RegistrationError(
                f"{where}: backend {spec.name!r}: requires must be a tuple of top-level module names, "
                f"got {spec.requires!r}"
            )
        if spec.extra is not None and not (isinstance(spec.extra, str) and _EXTRA.match(spec.extra)):
            raise RegistrationError(f"{where}: backend {spec.name!r}: extra {spec.extra!r} is not a pip extra name")
        if not isinstance(spec.properties, BackendProperties):
            raise RegistrationError(f"{where}: backend {spec.name!r}: properties must be BackendProperties")
        object.__setattr__(spec, "plugin", plugin)
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
            if not pm.get_hookcallers(plugin):
                raise RegistrationError(_registers_nothing(where, ep, plugin))


def _registers_nothing(where: str, ep: importlib.metadata.EntryPoint, plugin: object) -> str:
    """A module that loads but implements no hook is most often not the one installed: a local
    directory or module of the same name, earlier on sys.path, shadows it."""
    found = getattr(plugin, "__file__", None) or "a namespace package (no __init__.py)"
    top = ep.value.split(":")[0].split(".")[0]
    return (
        f"{where} loaded {found}, which registers nothing (no prism_register_backends or "
        f"prism_register_patterns marked with @prism_testkit.hookimpl); if that is not your package, "
        f"a local directory or module named {top!r} shadows it: run from another directory or rename it"
    )


def _loaded_value(ep: importlib.metadata.EntryPoint) -> object:
    try:
        return ep.load()
    except Exception:
        return None


def registrations(pm: pluggy.PluginManager, hook: str, spec_type: type[T], kind: str) -> Iterator[tuple[T, str]]:
    """Call every plugin's ``hook`` one by one and yield (registration, plugin), so a crash or
    a wrong return value names its plugin. Shared by the backend and the pattern registries."""
    for impl in getattr(pm.hook, hook).get_hookimpls():
        plugin = impl.plugin_name
        try:
            specs = impl.function()
        except RegistrationError:
            raise
        except Exception as exc:  # a crash inside a third-party plugin
            raise RegistrationError(
                f"{kind} registration from plugin {plugin!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if specs is None:
            continue
        if isinstance(specs, spec_type):
            specs = [specs]
        if not isinstance(specs, Iterable):
            raise RegistrationError(
                f"{kind} registration from plugin {plugin!r}: {hook} must return "
                f"a sequence of {spec_type.__name__}, got {type(specs).__name__}"
            )
        for spec in list(specs):
            yield spec, plugin


def build_registry(pm: pluggy.PluginManager) -> BackendRegistry:
    """Every plugin's backends, checked one by one."""
    registry = BackendRegistry()
    for spec, plugin in registrations(pm, "prism_register_backends", BackendSpec, "backend"):
        registry.add(spec, plugin)
    return registry
