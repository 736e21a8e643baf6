"""The backend registry: collects registrations from every plugin and checks them."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import pluggy

from prism_testkit.capabilities import BackendProperties
from prism_testkit.errors import RegistrationError, UnknownBackend, interrupt_within
from prism_testkit.provision.base import Provisioner
from prism_testkit.registry import hookspecs
from prism_testkit.registry.backend_spec import BackendSpec as BackendSpec  # re-exported: its old home
from prism_testkit.registry.backend_spec import _check_driver
from prism_testkit.registry.install_hints import install_problem

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_DRIVER_REF = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}$")
_TOP_LEVEL_MODULE = re.compile(rf"^{_IDENTIFIER}$")
_EXTRA = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


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
        if (problem := install_problem(spec.extra, spec.install)) is not None:
            raise RegistrationError(f"{where}: backend {spec.name!r}: {problem}")
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
        """What ``embedded`` (the default) selects: the in-process registrations but the opt-in ones."""
        return [s for s in self.specs.values() if s.embedded and not s.opt_in]

    @property
    def everyday(self) -> list[BackendSpec]:
        """What ``all`` selects: every registration but the opt-in ones."""
        return [s for s in self.specs.values() if not s.opt_in]

    @property
    def opt_in(self) -> list[BackendSpec]:
        return [s for s in self.specs.values() if s.opt_in]


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
                interrupt = interrupt_within(exc)
                if interrupt is not None:
                    raise interrupt from None  # a Ctrl-C mid-import, not a broken plugin
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
    _check_twins(registry)
    return registry


def _check_twins(registry: BackendRegistry) -> None:
    """A twin is another registered backend that has no twin of its own (once every plugin has
    registered: the twin may come from another plugin)."""
    for spec in registry:
        if spec.twin is None:
            continue
        where = f"backend registration from plugin {spec.plugin!r}: backend {spec.name!r}"
        if not isinstance(spec.twin, str) or spec.twin == spec.name:
            raise RegistrationError(f"{where}: twin must name another registered backend, got {spec.twin!r}")
        if spec.twin not in registry:
            raise RegistrationError(
                f"{where}: twin {spec.twin!r} is not a registered backend (registered: {', '.join(registry.names)})"
            )
        if registry[spec.twin].twin is not None:
            raise RegistrationError(
                f"{where}: twin {spec.twin!r} has a twin of its own ({registry[spec.twin].twin!r}): "
                "name the single-node registration"
            )
