"""Drivers given as "module:Class" strings: imported on first use, checked, and a missing client
library makes the backend unavailable with the pip hint, found without importing anything."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner
from prism_testkit.errors import ClientLibraryMissing, RegistrationError
from prism_testkit.isolation import NamespaceFactory
from prism_testkit.registry.backends import BackendRegistry, build_registry, make_plugin_manager
from prism_testkit.runtime import PrismRuntime
from tests.conftest import OUT_OF_TREE


def spec(driver: object, **kwargs: object) -> BackendSpec:
    return BackendSpec(
        name="lazy",
        capabilities=frozenset({Capability.KEYVALUE}),
        properties=BackendProperties(durable=False),
        provisioner=EmbeddedProvisioner(),
        driver=driver,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def bag_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Write a module importable as ``name`` holding the out-of-tree BagDriver."""

    def write(name: str) -> str:
        (tmp_path / f"{name}.py").write_text((OUT_OF_TREE / "bagstore.py").read_text())
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return write


def test_a_driver_string_is_imported_on_first_use(bag_module: Callable[[str], str]) -> None:
    module = bag_module("lazy_bag_first_use")
    registry = BackendRegistry()
    registry.add(spec(f"{module}:BagDriver"), "lazy-plugin")
    assert module not in sys.modules, "registration must not import the driver"
    assert registry["lazy"].driver_class.__name__ == "BagDriver"
    assert module in sys.modules


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_module_xyz:Driver", "plugin 'lazy-plugin': backend 'lazy': driver 'no_such_module_xyz:Driver' could"),
        (
            "{bag}:NoSuchClass",
            "plugin 'lazy-plugin': backend 'lazy': driver '{bag}:NoSuchClass': module '{bag}' has no",
        ),
        ("{bag}:BagKeyValue", "plugin 'lazy-plugin': backend 'lazy': driver must be a Driver subclass"),
    ],
    ids=["missing-module", "missing-class", "not-a-driver"],
)
def test_a_bad_driver_string_fails_on_first_use_naming_the_plugin(
    bag_module: Callable[[str], str], ref: str, message: str
) -> None:
    bag = bag_module("lazy_bag_bad")
    registry = BackendRegistry()
    registry.add(spec(ref.format(bag=bag)), "lazy-plugin")
    with pytest.raises(RegistrationError, match="backend registration from plugin") as raised:
        _ = registry["lazy"].driver_class
    assert message.format(bag=bag) in str(raised.value)


def test_a_driver_string_missing_a_declared_interface_is_refused(bag_module: Callable[[str], str]) -> None:
    bag = bag_module("lazy_bag_queue")
    registry = BackendRegistry()
    registry.add(_queue_spec(bag), "lazy-plugin")
    with pytest.raises(RegistrationError, match="declares queue but driver BagDriver does not implement it"):
        _ = registry["lazy"].driver_class


def _queue_spec(bag: str) -> BackendSpec:
    return BackendSpec(
        name="lazy",
        capabilities=frozenset({Capability.KEYVALUE, Capability.QUEUE}),
        properties=BackendProperties(durable=False),
        provisioner=EmbeddedProvisioner(),
        driver=f"{bag}:BagDriver",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"driver": "not a reference"}, "must be a Driver subclass or a 'package.module:ClassName' string"),
        ({"driver": "x:Y", "requires": "aiokafka"}, "requires must be a tuple of top-level module names"),
        ({"driver": "x:Y", "requires": ("redis.asyncio",)}, "requires must be a tuple of top-level module names"),
        ({"driver": "x:Y", "extra": "Not An Extra"}, "is not a pip extra name"),
    ],
    ids=["bad-reference", "requires-string", "requires-dotted", "bad-extra"],
)
def test_bad_lazy_fields_are_refused_at_registration(kwargs: dict[str, object], message: str) -> None:
    driver = kwargs.pop("driver")
    with pytest.raises(RegistrationError, match="plugin 'lazy-plugin'") as raised:
        BackendRegistry().add(spec(driver, **kwargs), "lazy-plugin")
    assert message in str(raised.value)


def test_a_missing_client_library_makes_the_backend_unavailable_with_the_hint() -> None:
    registry = BackendRegistry()
    registry.add(spec("x_not_installed.driver:D", requires=("x_not_installed",), extra="kafka"), "lazy-plugin")
    lazy = registry["lazy"]
    hint = "pip install 'prism-testkit[kafka]'"
    assert lazy.unavailable_reason() == f"client library x_not_installed is not installed: {hint}"
    with pytest.raises(ClientLibraryMissing, match=re.escape(hint)):
        _ = lazy.driver_class
    runtime = PrismRuntime(registry, [lazy], {}, NamespaceFactory(worker="lazy"))
    try:
        assert runtime.unavailable == {"lazy": lazy.unavailable_reason()}
    finally:
        runtime.close()


def test_loading_the_registry_imports_no_client_library() -> None:
    clients = ("aiokafka", "nats", "redis", "asyncpg", "minio", "moto")
    code = (
        "import sys\n"
        "from prism_testkit.registry.backends import build_registry, make_plugin_manager\n"
        "build_registry(make_plugin_manager())\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {clients!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_built_in_backends_declare_their_client_library_and_extra() -> None:
    registry = build_registry(make_plugin_manager())
    expected = {"kafka": "kafka", "nats": "nats", "postgres": "postgres", "redis": "redis", "s3": "s3"}
    for name, extra in expected.items():
        assert registry[name].extra == extra
        assert registry[name].requires
        assert isinstance(registry[name].driver, str)
