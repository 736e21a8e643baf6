"""Typed errors shared by backends, patterns and the harness.

Every error a caller may want to handle has its own class, named for what went wrong, so
``except ClaimNotFound`` reads as the situation it handles. Messages never contain credentials:
anything that may carry a URL goes through :func:`prism_testkit.redaction.redact` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class PrismError(Exception):
    """Base class of every error raised by prism-testkit code."""


# --- capability and configuration errors -------------------------------------------------


class NotSupported(PrismError):
    """The backend does not declare (and so must not perform) the requested operation."""

    def __init__(self, backend: str, capability: str, detail: str = "") -> None:
        self.backend = backend
        self.capability = capability
        suffix = f": {detail}" if detail else ""
        super().__init__(f"backend {backend!r} does not support {capability!r}{suffix}")


class RegistrationError(PrismError):
    """A plugin registered a backend that cannot be used (raised at start-up)."""


class UnknownBackend(PrismError):
    """A backend name was asked for that no plugin registered."""

    def __init__(self, names: list[str], registered: list[str]) -> None:
        self.names = names
        self.registered = registered
        known = ", ".join(registered) or "(none)"
        super().__init__(f"unknown backend(s): {', '.join(names)}; registered backends: {known}")


class ProvisioningError(PrismError):
    """A backend that was asked for explicitly could not be provisioned."""


class ClientLibraryMissing(ProvisioningError):
    """A backend's client library is not installed; the message says which extra brings it."""

    def __init__(self, backend: str, missing: list[str], hint: str) -> None:
        self.backend = backend
        self.missing = missing
        self.hint = hint
        super().__init__(f"backend {backend!r}: client library {', '.join(missing)} is not installed: {hint}")


class BadBinary(ProvisioningError):
    """A server binary chosen by ``--prism-binary NAME=PATH`` or ``PRISM_<NAME>_BINARY`` cannot be
    used; ``source`` names which, so the user knows what to fix."""

    def __init__(self, source: str, path: str | Path, problem: str) -> None:
        self.source = source
        self.path = str(path)
        self.problem = problem
        # A value with a line break or control characters is quoted: the message stays one line.
        shown = self.path if self.path.isprintable() and self.path.strip() == self.path else repr(self.path)
        super().__init__(f"{source}: {shown} {problem}")


class FaultUnavailable(ProvisioningError):
    """A fault this machine cannot inject, as a backend it cannot provision: the message says
    why and what to install. Outside ``prism_require_fit`` its tests are listed under
    UNAVAILABLE faults and skipped; with it they fail."""

    def __init__(self, fault: str, backend: str, reason: str, hint: str) -> None:
        self.fault = fault
        self.backend = backend
        self.reason = reason
        self.hint = hint
        super().__init__(f"{fault} cannot be injected into {backend!r} on this machine: {reason}; install: {hint}")


class ConfigurationError(PrismError):
    """A pattern or namespace was configured with values that cannot work."""


class RepeatedField(PrismError, ValueError):
    """An option's value gives one of its fields twice, or two fields that contradict each other.

    ``option`` is the flag (``--prism-load``), ``field`` the field given twice (``stall``): the
    message names both, so the user knows which part to remove. Refused rather than resolved:
    keeping either value silently runs something the user did not read on their command line.
    Each option's own error type subclasses it too (``except LoadSpecError`` still catches it)."""

    def __init__(self, option: str, field: str, message: str) -> None:
        self.option = option
        self.field = field
        super().__init__(message)


# --- data errors ---------------------------------------------------------------------------


class NotFound(PrismError):
    """Base for 'the thing you named is not there'."""


class KeyNotFound(NotFound):
    pass


class BucketNotFound(NotFound):
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(f"bucket {bucket!r} does not exist")


class ObjectNotFound(NotFound):
    def __init__(self, bucket: str, key: str) -> None:
        self.bucket = bucket
        self.key = key
        super().__init__(f"object {key!r} not found in bucket {bucket!r}")


class CaptureNotFound(NotFound):
    def __init__(self, capture: str) -> None:
        self.capture = capture
        super().__init__(f"change capture {capture!r} does not exist")


class CaptureLost(PrismError):
    """A change capture exists but its position is gone: the server no longer holds what it
    had confirmed (PostgreSQL 15 keeps logical slots off its standbys, so a promoted standby
    has the capture's record without its slot). Changes since the last confirm may be lost;
    recreating the capture would start it from now and skip them silently, so nothing does
    that implicitly. Drop the capture and start afresh (a snapshot) to recover."""

    def __init__(self, capture: str, detail: str) -> None:
        self.capture = capture
        self.detail = detail
        super().__init__(f"change capture {capture!r} lost its position: {detail}")


class BucketNotEmpty(PrismError):
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        super().__init__(f"bucket {bucket!r} is not empty")


class PayloadTooLarge(PrismError):
    """A payload exceeds a configured or backend maximum. Nothing was written."""

    def __init__(self, size: int, limit: int, what: str = "payload") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} of {size} bytes exceeds the maximum of {limit} bytes")


class DeliveryNotFound(PrismError):
    """An ack or nack named a delivery the queue does not hold (already acked, or unknown)."""


class TransactionAborted(PrismError):
    """A transaction could not commit; none of its writes are visible."""


class ConnectionLost(PrismError):
    """The connection to the backend broke; the outcome of the operation in flight is unknown."""


def interrupt_within(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C an error stands for, if any. CPython turns a KeyboardInterrupt raised inside
    some calls into another error that chains it (3.11 wraps one raised during a class's
    ``__set_name__``, as a dataclass field does at import, in a RuntimeError): code that reports
    errors must still stop for it."""
    return next((e for e in chained(error) if isinstance(e, KeyboardInterrupt)), None)


def chained(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every exception it chains (causes and contexts), each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]
