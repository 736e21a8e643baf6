"""What one backend registration says: its capabilities, properties, provisioner and driver."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field

from prism_testkit.capabilities import BackendProperties, Capability, parse_capabilities
from prism_testkit.driver import Driver, implemented_interfaces
from prism_testkit.errors import ClientLibraryMissing, RegistrationError
from prism_testkit.provision.base import Provisioner
from prism_testkit.registry.install_hints import install_hint


@dataclass(frozen=True)
class BackendSpec:
    """One backend registration.

    ``driver`` is the :class:`Driver` subclass, or a ``"package.module:ClassName"`` string that
    is imported the first time the backend is connected: a registration whose driver needs a
    client library then costs nothing until that backend is used, and a missing library makes
    the backend unavailable instead of breaking every pytest run. ``requires`` names the
    top-level modules of those libraries (checked with :func:`importlib.util.find_spec`, never
    imported), ``extra`` the pip extra of prism-testkit that installs them, or ``install`` what
    installs them for a third party's registration (see :mod:`.install_hints`).
    """

    name: str
    capabilities: frozenset[Capability]
    properties: BackendProperties
    provisioner: Provisioner
    driver: type[Driver] | str
    embedded: bool = False  # part of the default selection (no server needed)
    # left out of --prism-backend=all (listed in the header) until named: for registrations
    # whose rows are still being brought up, such as the clusters
    opt_in: bool = False
    # every row that uses it runs on one xdist worker (its xdist_group), so a heavy instance
    # such as a cluster is started once per run, not once per worker
    exclusive: bool = False
    # a stateful test over a combination holding it draws at most this many examples (None: the
    # profile's), for a backend whose every example costs seconds (a cluster's leader kill waits
    # out a raft election); a hunt's profile is honoured whatever this says
    stateful_examples: int | None = None
    # the single-node registration that runs this one's driver code (a cluster names its
    # server's): rows whose outcome replication cannot change run on the twin only, and this
    # registration's are shown as "covered by <twin>" (see prism_testkit.registry.twins)
    twin: str | None = None
    # runs in this process without threads or sockets, so --prism-simulate can run it on virtual
    # time (prism_testkit.simulation); a third party's in-process backend may declare it too
    simulable: bool = False
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None
    install: str | None = None  # e.g. "prism-rabbitmq[amqp]", or a sentence saying what to install
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
        return install_hint(self.extra, self.install, self.requires)

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
