"""Provisioning of the Redis backends: a URL, a private redis-server, or a container.

Never imports redis-py: probing and starting a server must work without the client library."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from prism_testkit.errors import ProvisioningError
from prism_testkit.provision.base import Endpoint, ProvisionContext, Via
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.servers import DataDir, ServerProvisioner, find_binary
from prism_testkit.provision.system_packages import hint

AOF_DIR = "appendonlydir"  # Redis 7's default appenddirname
READY_TIMEOUT = 30.0  # seconds for a private server to answer PING (it may replay an AOF first)


def answers_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when the server answers PING with PONG (not LOADING while it replays the AOF)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProvisioner(ServerProvisioner):
    server_name = "redis-server"
    image = "redis:7-alpine"
    binary_key = "redis"
    version_argument = "--version"
    install_hint = hint("redis")

    def __init__(self, flags: tuple[str, ...], durable: bool) -> None:
        self.flags = flags
        self.durable = durable

    def binary(self) -> Path | None:
        return find_binary("/usr/bin/redis-server", "redis-server")

    def url_endpoint(self, ctx: ProvisionContext, url: str) -> Endpoint:
        return Endpoint(url=url, via=Via.URL, options={"require_durable": self.durable})

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        data = ctx.workdir.resolve() / "data"
        data.mkdir(parents=True, exist_ok=True)
        if "--appendonly" in self.flags:
            # Redis 7.0 creates its AOF dir at first start and fsyncs inside it, never the dir that
            # names it: a power cut then loses the whole AOF. Made by us, the dir is on disk first.
            (data / AOF_DIR).mkdir(exist_ok=True)
        data_dir = DataDir(ctx, data)
        port = free_port()
        argv = [
            str(binary),
            "--daemonize",
            "no",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            *self.flags,
            # A slow subscriber must not be cut off while it drains payloads up to MAX_PAYLOAD.
            "--client-output-buffer-limit",
            "pubsub 256mb 64mb 60",
        ]
        server = ServerProcess(
            "redis-server",
            argv,
            port=port,
            log_path=ctx.workdir / "redis.log",
            cwd=data,
            ready=lambda: answers_ping("127.0.0.1", port),
            ready_timeout=READY_TIMEOUT,
        )
        data_dir.start(server)
        return data_dir.endpoint(f"redis://127.0.0.1:{port}/0", server, data_dir=str(data))

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        try:
            from testcontainers.redis import RedisContainer
        except ImportError as exc:
            raise ProvisioningError("redis: testcontainers is not installed") from exc
        command = " ".join(["redis-server", *(f or "''" for f in self.flags)])
        container = RedisContainer(self.image).with_command(command)
        container.start()
        try:
            url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        except BaseException:
            with contextlib.suppress(Exception):
                container.stop()
            raise
        return Endpoint(url=url, via=Via.CONTAINER, teardown=container.stop)
