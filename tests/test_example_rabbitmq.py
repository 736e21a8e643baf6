"""The worked example under examples/rabbitmq registers through the public API alone: its
entry point names its registration module, the registration passes the registry's checks, and
its provisioner probes without any client library. (Its suites run against a private
rabbitmq-server in .ci/run, after the package is installed.)"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from prism_testkit import Capability, ProvisionContext, Via
from prism_testkit.registry.backends import BackendRegistry

EXAMPLE = Path(__file__).parent.parent / "examples" / "rabbitmq"


@pytest.fixture
def registration(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    module = importlib.import_module("prism_rabbitmq")
    yield module
    for name in [n for n in sys.modules if n == "prism_rabbitmq" or n.startswith("prism_rabbitmq.")]:
        del sys.modules[name]


def test_the_entry_point_names_the_registration_module() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["prism_testkit"] == {"rabbitmq": "prism_rabbitmq"}
    assert "aio-pika" in " ".join(project["project"]["dependencies"])


def test_the_registration_validates(registration: ModuleType, tmp_path: Path) -> None:
    registry = BackendRegistry()
    for spec in registration.prism_register_backends():
        registry.add(spec, "rabbitmq")
    spec = registry["rabbitmq"]
    assert spec.interfaces == {Capability.QUEUE, Capability.PUBSUB}
    assert spec.properties.durable
    assert not spec.properties.survives_power_loss
    assert spec.requires == ("aio_pika",)
    ctx = ProvisionContext("rabbitmq", "amqp://guest:guest@db:5672/", tmp_path, "main", "run")
    assert spec.provisioner.probe(ctx).via is Via.URL
    if not spec.missing_requirements():  # installed: the driver string resolves and is checked
        assert spec.driver_class.__name__ == "RabbitMQDriver"


def test_the_registration_imports_no_client_library() -> None:
    """In a fresh interpreter: this process may have imported aio-pika already."""
    code = (
        "import sys; import prism_rabbitmq; prism_rabbitmq.prism_register_backends(); "
        "print(sorted({'aio_pika', 'aiormq'} & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=EXAMPLE, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
