"""The registry's errors: all are :class:`MulticastRegistryError`, itself a
:class:`~prism_testkit.errors.PrismError`."""

from __future__ import annotations

from prism_testkit.errors import NotFound, PrismError

# --- errors --------------------------------------------------------------------------------


class MulticastRegistryError(PrismError):
    """Base of the registry's input errors; raising one changes nothing."""


class InvalidIdentity(MulticastRegistryError, ValueError):
    def __init__(self, identity: object, detail: str) -> None:
        self.identity = identity
        super().__init__(f"invalid identity {identity!r}: {detail}")


class InvalidMetadata(MulticastRegistryError, ValueError):
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"invalid metadata at {path}: {detail}")


class InvalidFilter(MulticastRegistryError, ValueError):
    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"invalid filter at {path}: {detail}")


class IdentityNotFound(MulticastRegistryError, NotFound):
    """Update of an identity that is not registered (never, deregistered or expired)."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        super().__init__(f"identity {identity!r} is not registered (never registered, deregistered or expired)")
