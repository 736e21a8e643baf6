"""A registration's install hint: prism-testkit's own extra, a third party's distribution and
extra, or free text; refused at registration when it cannot be shown."""

from __future__ import annotations

import re

import pytest

from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner
from prism_testkit.errors import ClientLibraryMissing, RegistrationError
from prism_testkit.registry.backends import BackendRegistry


def spec(**kwargs: object) -> BackendSpec:
    return BackendSpec(
        name="thirdparty",
        capabilities=frozenset({Capability.KEYVALUE}),
        properties=BackendProperties(durable=False),
        provisioner=EmbeddedProvisioner(),
        driver="x_not_installed_q.driver:D",
        requires=("x_not_installed_q",),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"extra": "kafka"}, "pip install 'prism-testkit[kafka]'"),
        ({"install": "prism-rabbitmq[amqp]"}, "pip install 'prism-rabbitmq[amqp]'"),
        ({"install": "prism-rabbitmq[amqp,tls]>=1.2,<2"}, "pip install 'prism-rabbitmq[amqp,tls]>=1.2,<2'"),
        ({"install": "aio-pika"}, "pip install 'aio-pika'"),
        (
            {"install": "ask your platform team for the mystore wheel"},
            "ask your platform team for the mystore wheel",
        ),
        ({}, "install the Python distribution(s) that provide x_not_installed_q"),
    ],
    ids=["own-extra", "dist-extra", "dist-extras-version", "dist", "free-text", "none"],
)
def test_the_hint_reads_as_the_registration_gave_it(kwargs: dict[str, object], hint: str) -> None:
    registry = BackendRegistry()
    registry.add(spec(**kwargs), "third-party-plugin")
    found = registry["thirdparty"]
    assert found.install_hint == hint
    assert found.unavailable_reason() == f"client library x_not_installed_q is not installed: {hint}"
    with pytest.raises(ClientLibraryMissing, match=re.escape(hint)):
        _ = found.driver_class


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra": "kafka", "install": "prism-x[y]"}, "not both"),
        ({"install": ""}, "must be a pip requirement or a sentence"),
        ({"install": 42}, "must be a pip requirement or a sentence"),
        ({"install": "pip install x\nrm -rf /"}, "must be one line"),
        ({"install": "prism-x[y"}, "is neither a pip requirement"),
        ({"install": "x;rm"}, "is neither a pip requirement"),
    ],
    ids=["both", "empty", "not-a-string", "two-lines", "unclosed-extra", "shell"],
)
def test_a_hint_that_cannot_be_shown_is_refused_at_registration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RegistrationError, match="plugin 'third-party-plugin': backend 'thirdparty'") as raised:
        BackendRegistry().add(spec(**kwargs), "third-party-plugin")
    assert message in str(raised.value)
