"""Server binaries a user chooses: ``--prism-binary NAME=PATH`` (repeatable, or the
``prism_binary`` ini lines) and ``PRISM_<NAME>_BINARY``, as pytest-redis has ``--redis-exec``.

``NAME`` is a provisioner's :attr:`~prism_testkit.provision.servers.ServerProvisioner.binary_key`
(``redis`` serves both redis backends, ``nats`` every NATS one), so one option serves every
backend that starts that server. The option wins over the environment, and either over the
binaries the provisioner finds itself. A path that is not an executable file is refused with a
:class:`~prism_testkit.errors.BadBinary` naming where it came from. Light: the options read it in
every pytest run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from prism_testkit.errors import BadBinary, RepeatedField

OPTION = "--prism-binary"


def binary_env(key: str) -> str:
    """The environment variable that chooses ``key``'s binary, e.g. ``PRISM_REDIS_BINARY``."""
    return f"PRISM_{key.upper().replace('-', '_')}_BINARY"


def binary_problem(path: str) -> str | None:
    """Why ``path`` cannot be started as a server, or None."""
    if not path or "\0" in path:
        return "is not a path"
    try:
        found = Path(path)
        if not found.exists():
            return "does not exist"
        if not found.is_file():
            return "is not a file"
    except (OSError, ValueError) as exc:
        return f"cannot be used: {exc}"
    if not os.access(found, os.X_OK):
        return "is not executable"
    return None


class RepeatedBinary(BadBinary, RepeatedField):
    """One server ``NAME`` chosen twice in one place: which binary would run is not what a reader sees."""

    def __init__(self, name: str, path: str) -> None:
        # BadBinary's attributes, set here: its __init__ would reach RepeatedField's without a field
        self.source, self.path, self.problem = f"{OPTION} {name}", path, f"chooses {name} a second time"
        RepeatedField.__init__(self, OPTION, name, f"{self.source} is given twice: give each NAME one binary")


def parse_binary_options(lines: Iterable[str]) -> dict[str, Path]:
    """``NAME=PATH`` lines as given to ``--prism-binary`` (or as the ini lines); BadBinary for one
    that cannot be used, RepeatedBinary for a NAME given twice."""
    chosen: dict[str, Path] = {}
    for line in lines:
        name, sep, path = line.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise BadBinary(OPTION, line, "takes NAME=PATH, e.g. redis=/opt/redis/bin/redis-server")
        if name in chosen:
            raise RepeatedBinary(name, path)
        problem = binary_problem(path)
        if problem is not None:
            raise BadBinary(f"{OPTION} {name}", path, problem)
        chosen[name] = Path(path).absolute()  # a node starts it from its own work dir
    return chosen


def binaries_of(ini_lines: Iterable[str], option_lines: Iterable[str]) -> dict[str, Path]:
    """The binaries the ini lines and the ``--prism-binary`` options choose: each refused if it
    names a server twice, and an option wins over an ini line for the same NAME (as a command
    line overrides the ini file)."""
    return {**parse_binary_options(ini_lines), **parse_binary_options(option_lines)}


def chosen_binary(key: str, options: Mapping[str, Path]) -> tuple[str, Path] | None:
    """(where it was chosen, the path) of the binary the user chose for ``key``, or None."""
    if key in options:
        return f"{OPTION} {key}", options[key]
    env = binary_env(key)
    given = os.environ.get(env)
    if given is None:
        return None
    problem = binary_problem(given)
    if problem is not None:
        raise BadBinary(env, given, problem)
    return env, Path(given).absolute()
