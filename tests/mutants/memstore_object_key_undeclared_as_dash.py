"""Mutant: memstore's buckets write every character its backend does not declare for names
(memstore declares all but control characters) as ``-`` in an object key, silently: ``u\\tv``
and ``u-v`` are one object.

Loaded with ``-p tests.mutants.memstore_object_key_undeclared_as_dash``; the names suite must
see the object keys alias (issue 53 item 4).
"""

from __future__ import annotations

from prism_testkit.backends import memstore
from prism_testkit.capabilities import NAME_BASE
from prism_testkit.interfaces import ObjectInfo

DECLARED = frozenset(NAME_BASE + memstore.PROPERTIES.name_characters)


def _mapped(key: str) -> str:
    return "".join(c if c in DECLARED else "-" for c in key)  # the bug: an alias, not a refusal


_get = memstore._Bucket.get
_put = memstore._Bucket.put
_delete = memstore._Bucket.delete


def _get_mapped(self: memstore._Bucket, key: str) -> memstore._StoredObject:
    return _get(self, _mapped(key))


def _put_mapped(self: memstore._Bucket, key: str, stored: memstore._StoredObject) -> ObjectInfo:
    return _put(self, _mapped(key), stored)


def _delete_mapped(self: memstore._Bucket, key: str) -> None:
    _delete(self, _mapped(key))


memstore._Bucket.get = _get_mapped  # type: ignore[method-assign]  # the mutant's replacement
memstore._Bucket.put = _put_mapped  # type: ignore[method-assign]  # the mutant's replacement
memstore._Bucket.delete = _delete_mapped  # type: ignore[method-assign]  # the mutant's replacement
