"""How a registration says what installs its client library, and how that reads to a user.

``BackendSpec(extra="redis")`` names one of prism-testkit's own extras. A third party's
registration names its own with ``install=``: a pip requirement, one word such as
``"prism-rabbitmq[amqp]"`` or ``"aio-pika>=9"``, reads as its ``pip install`` line; anything
with a space in it (``"see https://example.org/install, then pip install ..."``) is shown as
written. Neither: the hint names the missing modules.
"""

from __future__ import annotations

import re

# A distribution name, optional extras and optional version clauses (PEP 508, without markers or URLs).
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VERSION = r"(?:===|==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!_-]+"
PIP_REQUIREMENT = re.compile(rf"^{_NAME}(?:\[{_NAME}(?:,{_NAME})*\])?(?:{_VERSION}(?:,{_VERSION})*)?$")


def install_hint(extra: str | None, install: str | None, requires: tuple[str, ...]) -> str:
    if install is not None:
        return f"pip install '{install}'" if PIP_REQUIREMENT.match(install) else install
    if extra is not None:
        return f"pip install 'prism-testkit[{extra}]'"
    return "install the Python distribution(s) that provide " + ", ".join(requires)


def install_problem(extra: object, install: object) -> str | None:
    """Why ``install`` cannot be shown as a hint, or None (``extra`` is checked on its own)."""
    if install is None:
        return None
    if extra is not None:
        return "give extra (one of prism-testkit's) or install (your own), not both"
    if not isinstance(install, str) or not install.strip():
        return f"install {install!r} must be a pip requirement or a sentence saying what to install"
    if any(ch in install for ch in "\r\n\0"):
        return "install must be one line"
    if " " not in install.strip() and not PIP_REQUIREMENT.match(install):
        return f"install {install!r} is neither a pip requirement (e.g. 'my-dist[extra]') nor a sentence"
    return None
