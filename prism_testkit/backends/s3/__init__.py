"""s3: an object store over the S3 API, with ``objects.ttl``.

Registration only: the driver (:mod:`.driver`, imports minio) is loaded when the backend is
first connected; the provisioner (:mod:`.provision`) runs moto's S3 server in a subprocess.
"""

from __future__ import annotations

from prism_testkit.capabilities import BackendProperties, Capability, Ordering
from prism_testkit.registry.backends import BackendSpec
from prism_testkit.registry.hookspecs import hookimpl

from .provision import MotoProvisioner

CAPABILITIES: frozenset[Capability] = frozenset({Capability.OBJECTS, Capability.OBJECTS_TTL})
# moto keeps objects in memory. Bucket names are S3's: a-z, 0-9, '-' and '.' under rules of
# their own (no '..', not first or last), so no character beyond the namespace's is declared.
PROPERTIES = BackendProperties(durable=False, survives_power_loss=False, ordering=Ordering.TOTAL, bucket_characters="")


@hookimpl
def prism_register_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            name="s3",
            capabilities=CAPABILITIES,
            properties=PROPERTIES,
            provisioner=MotoProvisioner(),
            driver="prism_testkit.backends.s3.driver:S3Driver",
            requires=("minio",),
            extra="s3",
            embedded=False,
            description="object store over the S3 API (private in-memory moto server)",
        )
    ]
