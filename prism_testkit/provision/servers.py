"""The provisioning chain for backends that need a server.

In order: an explicit URL (``--prism-url NAME=URL`` or ``PRISM_<NAME>_URL``) -> a private
server started from a local binary on a free port in a temp dir -> a testcontainers container
when a Docker daemon answers -> unavailable, with a one-line reason. Services already running
on the machine are used only when given by URL: a private server is never shared by accident.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
from abc import abstractmethod
from pathlib import Path

from prism_testkit.errors import BadBinary
from prism_testkit.provision.base import (
    Availability,
    Endpoint,
    ProvisionContext,
    Provisioner,
    Via,
    mount_lazily,
    url_problem,
)
from prism_testkit.provision.binaries import OPTION, binary_env, chosen_binary
from prism_testkit.provision.processes import ServerProcess
from prism_testkit.redaction import redact

DOCKER_SOCKET = Path("/var/run/docker.sock")
VERSION_TIMEOUT = 10.0  # seconds a server binary gets to print its version


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=1.0)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        sock.connect(self._path)
        self.sock = sock


def docker_daemon_answers() -> bool:
    """True when a Docker daemon answers ``/_ping`` (DOCKER_HOST tcp URLs are trusted as given)."""
    if os.environ.get("DOCKER_HOST", "").startswith("tcp://"):
        return True
    if not DOCKER_SOCKET.exists():
        return False
    try:
        conn = _UnixHTTPConnection(str(DOCKER_SOCKET))
        conn.request("GET", "/_ping")
        return conn.getresponse().status == 200
    except OSError:
        return False


def find_binary(*candidates: str | Path) -> Path | None:
    for candidate in candidates:
        path = Path(candidate)
        if path.is_absolute():
            if path.is_file() and os.access(path, os.X_OK):
                return path
        elif found := shutil.which(str(candidate)):
            return Path(found)
    return None


def private_endpoint(url: str, server: ServerProcess, **options: object) -> Endpoint:
    """An endpoint for a server we started: process control attached, stopped at teardown."""
    return Endpoint(url=url, via=Via.BINARY, control=server, options=dict(options), teardown=server.stop)


class DataDir:
    """A private server's data dir, on a lazy filesystem when ``ctx.lazy_data_dir`` asks for it.
    Provisioners mount it before the first start and hand it to :meth:`start` and
    :meth:`endpoint`, so the mount is removed whatever happens: a failed start, or teardown
    (after the server stopped: it must never see its data dir vanish)."""

    def __init__(self, ctx: ProvisionContext, path: Path) -> None:
        self.path = path
        self.mount = mount_lazily(ctx, path)

    def start(self, server: ServerProcess) -> None:
        try:
            server.start()  # kills the server itself when it does not come up
        except BaseException:
            if self.mount is not None:
                self.mount.unmount()
            raise

    def endpoint(self, url: str, server: ServerProcess, **options: object) -> Endpoint:
        endpoint = private_endpoint(url, server, **options)
        mount = self.mount
        if mount is not None:

            def teardown() -> None:
                try:
                    server.stop()
                finally:
                    mount.unmount()

            endpoint.teardown, endpoint.lazy_mount = teardown, mount
        return endpoint


class ServerProvisioner(Provisioner):
    """Subclasses say how to find and start their server; the chain is shared."""

    #: shown in reasons, e.g. "redis-server"
    server_name: str
    #: docker image used when no binary is found and a Docker daemon answers (None: never)
    image: str | None = None
    #: the NAME of ``--prism-binary NAME=PATH`` and ``PRISM_<NAME>_BINARY`` that choose this
    #: server's binary (None: not selectable); backends that start the same server share it
    binary_key: str | None = None
    #: how to install the server, shown when it is unavailable (a system package, a pip line)
    install_hint: str | None = None

    @abstractmethod
    def binary(self) -> Path | None:
        """The local binary to start, or None when it is not installed."""

    @abstractmethod
    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        """Start a private server from ``binary`` in ``ctx.workdir`` on a free port."""

    def check_binary(self, binary: Path) -> str | None:
        """Why a binary the user chose cannot serve this backend (too old, no tools beside it), or None."""
        return None

    #: the argument that makes the server print its version and exit (None: none known; the
    #: version is then not asked, since an unknown argument may start the server instead)
    version_argument: str | None = None

    def binary_version(self, binary: Path) -> str | None:
        """The server and version ``binary`` is, for the line that says what a run would start:
        the first line it prints for :attr:`version_argument`; None where that is unknown."""
        if self.version_argument is None:
            return None
        try:
            done = subprocess.run(
                [str(binary), self.version_argument], capture_output=True, text=True, timeout=VERSION_TIMEOUT
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return next((line.strip() for line in done.stdout.splitlines() if line.strip()), None)

    def chosen_or_found_binary(self, ctx: ProvisionContext) -> Path | None:
        """The binary the user chose (``--prism-binary``, then ``PRISM_<NAME>_BINARY``), else
        :meth:`binary`. BadBinary, naming the option or variable, for a choice that cannot serve."""
        chosen = chosen_binary(self.binary_key, ctx.binaries) if self.binary_key is not None else None
        if chosen is None:
            return self.binary()
        source, path = chosen
        problem = self.check_binary(path)
        if problem is not None:
            raise BadBinary(source, path, problem)
        return path

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        raise NotImplementedError(f"{self.server_name}: no container recipe")

    def url_endpoint(self, ctx: ProvisionContext, url: str) -> Endpoint:
        return Endpoint(url=url, via=Via.URL)

    def probe(self, ctx: ProvisionContext) -> Availability:
        if ctx.url:
            problem = url_problem(ctx.url)
            if problem:  # from PRISM_<NAME>_URL: the option is checked when it is read
                return Availability.unavailable(f"the URL given for {ctx.backend} is {problem}")
            return Availability(Via.URL, f"given URL {redact(ctx.url)}")
        try:
            binary = self.chosen_or_found_binary(ctx)
        except BadBinary as exc:
            return Availability.unavailable(str(exc))
        if binary is not None:
            return Availability(Via.BINARY, f"private {self.server_name} from {binary}")
        if self.image is not None and docker_daemon_answers():
            return Availability(Via.CONTAINER, f"testcontainers image {self.image}")
        env = f"PRISM_{ctx.backend.upper().replace('-', '_')}_URL"
        docker = "no Docker daemon answers" if self.image else "no container recipe"
        found = f"no {self.server_name} binary found"
        if self.binary_key is not None:
            found += f" (choose one: {OPTION} {self.binary_key}=PATH or {binary_env(self.binary_key)})"
        install = f"; install: {self.install_hint}" if self.install_hint else ""
        return Availability.unavailable(
            f"no URL given (--prism-url {ctx.backend}=URL or {env}), {found}, {docker}{install}"
        )

    def start(self, ctx: ProvisionContext) -> Endpoint:
        availability = self.probe(ctx)
        if availability.via is Via.URL:
            assert ctx.url is not None
            return self.url_endpoint(ctx, ctx.url)
        if availability.via is Via.BINARY:
            binary = self.chosen_or_found_binary(ctx)
            assert binary is not None
            return self.start_private(ctx, binary)
        if availability.via is Via.CONTAINER:
            return self.start_container(ctx)
        raise RuntimeError(availability.detail)
