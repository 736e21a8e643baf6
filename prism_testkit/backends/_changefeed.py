"""Argument checks and prefix matching shared by the change feeds of every backend, so that
they reject bad input identically and agree on which keys a capture covers."""

from __future__ import annotations

from ._common import check_count, check_wait

MARK_PREFIX = "prism-cdc:"  # labels of marks travel under this prefix plus the capture name


def check_capture(capture: str) -> str:
    if not isinstance(capture, str):
        raise TypeError(f"capture must be a str, not {type(capture).__name__}")
    if not capture or "\x00" in capture:
        raise ValueError(f"capture name {capture!r} must be non-empty and free of NUL")
    return capture


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
    if "\x00" in prefix:
        raise ValueError(f"prefix {prefix!r} contains NUL")
    return prefix


def check_label(label: str) -> str:
    if not isinstance(label, str):
        raise TypeError(f"label must be a str, not {type(label).__name__}")
    return label


def check_read(limit: int, wait: float) -> tuple[int, float]:
    return check_count(limit, "limit", 1), check_wait(wait)


def check_position(position: int) -> int:
    return check_count(position, "position", 0)


def other_prefix(capture: str, existing: str, wanted: str) -> ValueError:
    return ValueError(f"capture {capture!r} already captures prefix {existing!r}, not {wanted!r}")
