"""Provisioning of s3: a URL, a private moto S3 server (``python -m moto.server``), or a MinIO
container.

Never imports minio or moto in this process: moto is found with :func:`importlib.util.find_spec`
and runs in its own process.
"""

from __future__ import annotations

import importlib.util
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from prism_testkit.provision.base import Endpoint, ProvisionContext, Via
from prism_testkit.provision.processes import ServerProcess, free_port
from prism_testkit.provision.servers import ServerProvisioner, private_endpoint


def _http_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=0.5):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


class MotoProvisioner(ServerProvisioner):
    server_name = "moto S3 server (moto[server])"
    image = "minio/minio:latest"
    install_hint = "pip install 'prism-testkit[s3]'"

    def binary(self) -> Path | None:
        # find_spec("moto.server") would import moto itself: look for the module file instead.
        moto = importlib.util.find_spec("moto")
        locations = (moto.submodule_search_locations or []) if moto is not None else []
        has_server = any((Path(location) / "server.py").is_file() for location in locations)
        return Path(sys.executable) if has_server and importlib.util.find_spec("flask") is not None else None

    def start_private(self, ctx: ProvisionContext, binary: Path) -> Endpoint:
        port = free_port()
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        env = {"PATH": "/usr/bin:/bin", "MOTO_ALLOW_NONEXISTENT_REGION": "true", "PYTHONUNBUFFERED": "1"}
        argv = [str(binary), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        server = ServerProcess(
            "moto-s3",
            argv,
            port=port,
            log_path=ctx.workdir / "moto.log",
            env=env,
            cwd=ctx.workdir,
            ready=lambda: _http_answers(port),
        )
        server.start()
        # moto accepts any key pair; a random secret still exercises the redaction path
        return private_endpoint(f"s3://prism:{secrets.token_hex(12)}@127.0.0.1:{port}", server)

    def start_container(self, ctx: ProvisionContext) -> Endpoint:
        from testcontainers.minio import MinioContainer  # optional; only with a Docker daemon

        container = MinioContainer(self.image)
        container.start()
        config = container.get_config()
        access = urllib.parse.quote(config["access_key"], safe="")
        secret = urllib.parse.quote(config["secret_key"], safe="")
        return Endpoint(url=f"s3://{access}:{secret}@{config['endpoint']}", via=Via.CONTAINER, teardown=container.stop)
