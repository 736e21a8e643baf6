"""Provisioning: turning a backend name into a reachable instance, or an honest reason why not.

A provisioner has two steps. :meth:`Provisioner.probe` is cheap and deterministic (is a URL
given, is the binary installed, does a Docker daemon answer) and runs at start-up in every
process, so that every xdist worker computes the same combinations. :meth:`Provisioner.start`
does the real work (start a private server, open a temp dir) once per worker, on first use.
"""

from __future__ import annotations

import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from prism_testkit.provision.workdirs import remove_tree
from prism_testkit.redaction import redact

if TYPE_CHECKING:
    from prism_testkit.provision.cluster import ClusterContract
    from prism_testkit.provision.lazymount import LazyMount, LazyMounts


class Via(StrEnum):
    """The route by which a backend's instance comes to exist for a run (``Availability.via``):
    in-process, a URL the user gave, a binary the harness starts, a container, or none (the
    availability's detail says why). Public: backend authors' provisioners return it."""

    EMBEDDED = "embedded"
    URL = "url"
    BINARY = "binary"
    CONTAINER = "container"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class Availability:
    via: Via
    detail: str  # how it will be provisioned, or the one-line reason it cannot be

    @property
    def available(self) -> bool:
        return self.via is not Via.UNAVAILABLE

    @classmethod
    def unavailable(cls, reason: str) -> Availability:
        return cls(Via.UNAVAILABLE, reason)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot name a server (``scheme://host[:port][/...]``), or None. The value is
    never echoed: a malformed URL may be all credentials."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  # raises on a port that is not a number
    except ValueError as exc:
        return f"not a valid URL ({exc}); expected SCHEME://HOST[:PORT][/...]"
    if not parts.scheme or not parts.netloc:
        return "not a URL: expected SCHEME://HOST[:PORT][/...] (e.g. postgresql://user:pass@db:5432/app)"
    if not parts.hostname:
        return "the URL names no host: expected SCHEME://HOST[:PORT][/...]"
    return None


@runtime_checkable
class ServerControl(Protocol):
    """Process control of a server the harness started itself (fault injection)."""

    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def wait_ready(self, timeout: float = 30.0) -> None: ...
    def restore(self) -> None:
        """Undo any process fault: resume a paused server, start a killed or stopped one."""
        ...

    @property
    def stopped_in_order(self) -> bool | None:
        """How the last :meth:`stop` ended: True when the server ended on its own, False when
        it outlasted its grace and was killed (it wrote what a crash writes), None before any
        stop. An orderly restart whose stop was a kill is UNSETTLED, never judged as orderly."""
        ...


@dataclass
class Endpoint:
    """Where a provisioned instance is reached. ``url`` may hold credentials: never print it;
    ``repr`` and ``str`` are redacted."""

    url: str
    via: Via
    control: ServerControl | None = None
    options: dict[str, Any] = field(default_factory=dict)
    teardown: Callable[[], None] | None = None
    # the lazy filesystem under the data dir (ProvisionContext.lazy_data_dir): power cuts
    lazy_mount: LazyMount | LazyMounts | None = None
    # When ``url`` leads to a discovery service (Redis Sentinel) rather than to the data: the URL
    # of the node that serves the data now, which a fault proxy stands in front of instead.
    direct: Callable[[], str] | None = None
    # A replicated backend's nodes (prism_testkit.clusters): what node faults and the replica
    # check act on. It is the endpoint's ``control`` as well, unless one is given.
    cluster: ClusterContract | None = None

    def __post_init__(self) -> None:
        if self.cluster is None and self.options.get("cluster") is not None:
            self.cluster = self.options["cluster"]  # a provisioner written before ``cluster=``
        if self.cluster is not None:
            if self.control is None:
                self.control = self.cluster
            self.options.setdefault("cluster", self.cluster)  # where older readers look

    def __repr__(self) -> str:
        return f"Endpoint({redact(self.url)!r}, via={self.via.value})"

    @property
    def first_url(self) -> str:
        """The URL of a cluster's first node (a cluster's URL lists every node, comma-separated):
        a proxy leads to that node alone, so the proxied client cannot bypass it); with
        ``direct``, the node serving the data now."""
        if self.direct is not None:
            return self.direct()
        return self.url.split(",")[0]

    @property
    def address(self) -> tuple[str, int]:
        """Host and port of the server (what a fault proxy forwards to)."""
        parts = urllib.parse.urlsplit(self.first_url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"endpoint {redact(self.url)} has no host:port")
        return parts.hostname, parts.port

    def rerouted(self, host: str, port: int) -> Endpoint:
        """This endpoint reached at ``host:port`` instead (through a proxy): same credentials,
        path and options, and no teardown of its own (the server belongs to the original)."""
        parts = urllib.parse.urlsplit(self.first_url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
        return Endpoint(
            parts._replace(netloc=netloc).geturl(),
            self.via,
            self.control,
            dict(self.options),
            None,
            self.lazy_mount,
            cluster=self.cluster,
        )

    __str__ = __repr__


@dataclass(frozen=True)
class ProvisionContext:
    backend: str
    url: str | None  # explicit URL from --prism-url / PRISM_<NAME>_URL, if any
    workdir: Path  # private to this backend in this process; removed at the end
    worker_id: str
    run_id: str
    # Opt-in per instance: put the data dir on a lazy filesystem (prism_testkit.provision.lazymount)
    # so a power cut can drop unsynced writes. One that does not honour it leaves
    # Endpoint.lazy_mount None, and power cuts of that instance are refused.
    lazy_data_dir: bool = False
    # The power-loss suite's twin: every start after the first follows a power cut, which leaves
    # nothing unsynced, so a server may skip start-up work that only makes durable what a process
    # crash left in the page cache (PostgreSQL's fsync of every file before crash recovery).
    cut_before_every_start: bool = False
    # server binaries chosen by --prism-binary NAME=PATH (PRISM_<NAME>_BINARY is read where used)
    binaries: Mapping[str, Path] = field(default_factory=dict)


class Provisioner(ABC):
    @abstractmethod
    def probe(self, ctx: ProvisionContext) -> Availability: ...

    @abstractmethod
    def start(self, ctx: ProvisionContext) -> Endpoint: ...

    def stop(self, endpoint: Endpoint) -> None:
        if endpoint.teardown is not None:
            endpoint.teardown()


class EmbeddedProvisioner(Provisioner):
    """For backends that live in this process or in local files: always available."""

    def __init__(self, description: str = "in this process") -> None:
        self.description = description

    def probe(self, ctx: ProvisionContext) -> Availability:
        return Availability(Via.EMBEDDED, self.description)

    def start(self, ctx: ProvisionContext) -> Endpoint:
        data_dir = ctx.workdir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        mount = mount_lazily(ctx, data_dir)

        def teardown() -> None:
            if mount is not None:
                mount.unmount()
            remove_tree(data_dir)  # never into a mount the unmount left behind

        return Endpoint(
            url=data_dir.as_uri(), via=Via.EMBEDDED, options={"path": data_dir}, teardown=teardown, lazy_mount=mount
        )


def mount_lazily(ctx: ProvisionContext, data_dir: Path) -> LazyMount | None:
    """The provisioner's data-dir hook: a lazy filesystem over ``data_dir`` when the context asks
    for one (before the server first touches it), else None. Raises when FUSE is unavailable."""
    if not ctx.lazy_data_dir:
        return None
    from prism_testkit.provision.lazymount import LazyMount

    return LazyMount.over(data_dir)
