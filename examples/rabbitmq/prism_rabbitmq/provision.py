"""Provisioning of rabbitmq: a URL, or a private ``rabbitmq-server`` from the local install.

Never imports the client library: readiness is an AMQP protocol-header exchange on a socket.

A private node needs its own identity, not only its own port: a node name (registered with
epmd), an inter-node distribution port, a data dir (``RABBITMQ_MNESIA_BASE``), a log dir,
a config file, an enabled-plugins file and an Erlang cookie. The cookie is read from
``$HOME/.erlang.cookie`` and created there when missing, so ``HOME`` points into the private
dir: the node never reads (or writes) the system's ``/var/lib/rabbitmq/.erlang.cookie``, and
it runs as whoever runs the tests, root included.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from prism_testkit import (
    DataDir,
    Endpoint,
    ProvisionContext,
    ServerProcess,
    ServerProvisioner,
    Via,
    find_binary,
    free_port,
)

# Largest payload the driver carries on every interface; the private server's
# max_message_size leaves room for properties and headers above it.
MAX_PAYLOAD = 4 << 20
# Punctuation an AMQP queue name may hold (0-9-1's grammar as pamqp checks it): the names
# suite is handed these, upper case, and nothing else.
NAME_PUNCTUATION = "-_.:@#,/+ "
SERVER_MAX_MESSAGE_SIZE = MAX_PAYLOAD + (1 << 20)
# The first start creates the database (about 10 s on a small machine); a restart after a
# kill recovers it (about 5 s).
READY_TIMEOUT = 90.0

# Debian's /usr/sbin/rabbitmq-server is a wrapper that, run as root, switches to the
# rabbitmq user through `su`, which drops every RABBITMQ_* variable: start the real script.
DEBIAN_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def answers_amqp(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the node answers the AMQP 0-9-1 protocol header with connection.start (a
    method frame on channel 0): its listener is up, which happens last in its boot."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(AMQP_HEADER)
            return sock.recv(7).startswith(b"\x01\x00\x00")
    except OSError:
        return False


def _server_script() -> Path | None:
    found = find_binary(DEBIAN_SCRIPT)
    if found is not None:
        return found
    on_path = find_binary("rabbitmq-server")  # a generic-unix tarball's sbin/ on PATH
    if on_path is not None and on_path.resolve().name == "rabbitmq-server":
        return on_path
    return None  # only the Debian wrapper: it would lose our environment


class RabbitMQProvisioner(ServerProvisioner):
    server_name = "rabbitmq-server"
    image = None  # no container recipe: a URL or a local install

    def binary(self) -> Path | None:
        return _server_script()

    def url_endpoint(self, ctx: ProvisionContext, url: str) -> Endpoint:
        # the registry token keys the names this run declared (see driver.NameRegistry)
        return Endpoint(url=url, via=Via.URL, options={"registry": uuid.uuid4().hex})

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        root = ctx.workdir.resolve()
        data = root / "mnesia"  # RabbitMQ's database, queues and messages: the data dir
        data.mkdir(parents=True, exist_ok=True)
        data_dir = DataDir(ctx, data)
        home, logs = root / "home", root / "log"
        home.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        port, dist_port = free_port(), free_port()
        config = root / "rabbitmq.conf"
        config.write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{port}",
                    f"max_message_size = {SERVER_MAX_MESSAGE_SIZE}",
                    # a nearly full CI disk or a busy machine must not block every publisher
                    "disk_free_limit.absolute = 10MB",
                    "vm_memory_high_watermark.relative = 0.8",
                    "log.console = true",
                    "log.console.level = warning",
                    "log.file = false",
                    "",
                ]
            )
        )
        plugins = root / "enabled_plugins"
        plugins.write_text("[].\n")  # no management plugin: starts faster, nothing else listens
        (root / "rabbitmq-env.conf").write_text("")
        env = {
            **os.environ,
            "HOME": str(home),  # $HOME/.erlang.cookie: a private cookie, created at first start
            "RABBITMQ_NODENAME": f"prism-{ctx.worker_id}-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_USE_LONGNAME": "false",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(data),
            "RABBITMQ_LOG_BASE": str(logs),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(root / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
        }
        server = ServerProcess(
            "rabbitmq-server",
            [str(binary)],
            port=port,
            log_path=ctx.workdir / "rabbitmq.log",
            env=env,
            cwd=root,
            ready=lambda: answers_amqp("127.0.0.1", port),
            ready_timeout=READY_TIMEOUT,
        )
        data_dir.start(server)
        return data_dir.endpoint(f"amqp://guest:guest@127.0.0.1:{port}/", server, registry=uuid.uuid4().hex)
