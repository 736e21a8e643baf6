"""Keep credentials out of everything we print: ids, summaries, reports and exceptions."""

from __future__ import annotations

import re

# scheme://user:password@host  or  scheme://token@host
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")
# password=..., secret_key=..., token=... in query strings or DSNs
_SECRET_PARAMS = re.compile(
    r"(?P<name>\b(?:password|passwd|pwd|secret|secret_key|secret_access_key|token|access_key|api_key)=)"
    r"(?P<value>[^&\s;]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with user info and secret parameters of any URL replaced by ``***``.

    The user name is kept when there is a password, because it helps debugging and is not a
    secret on its own: ``postgresql://app:s3cret@db/x`` becomes ``postgresql://app:***@db/x``.
    """

    def userinfo(match: re.Match[str]) -> str:
        user, sep, _secret = match.group("userinfo").partition(":")
        return f"{match.group('scheme')}{user}:***@" if sep else f"{match.group('scheme')}***@"

    text = _USERINFO.sub(userinfo, text)
    return _SECRET_PARAMS.sub(lambda m: f"{m.group('name')}***", text)


def printable(text: str, stream: object = None) -> str:
    """``text`` that ``stream`` (default: standard output) can encode: a file name given as
    undecodable bytes reaches Python with lone surrogates, which ``print`` refuses with a
    UnicodeEncodeError; they are shown as ``\\udcXX`` escapes instead."""
    import sys

    encoding = getattr(stream or sys.stdout, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding, "replace")
