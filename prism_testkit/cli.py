"""``prism-testkit`` (also ``python -m prism_testkit``): validate and explain namespace files,
print their JSON Schema, list the registered patterns (the catalogue) and backends (with what
can be provisioned here), merge the reports of a CI matrix (``report merge``), and replay a
failing stateful example from its schedule file (``replay FILE``, :mod:`prism_testkit.hunting.replay`,
which has exit codes of its own: 1 the failure reproduced, 0 it did not, 2 bad input, 3 not run).

Exit codes: 0 all valid, 1 a file has problems (each printed as ``FILE: path: message``),
2 usage errors (bad arguments, a file that cannot be read, backends that fail to register).
``report merge``: 0 merged and every suite passed, 1 merged with failures, 2 unreadable or
contradicting reports. A reader that stops early (``| head``) ends the command quietly with 0.
``--format json`` gives the data of ``validate``, ``explain``, ``patterns`` and ``backends`` as
JSON; ``-`` as a FILE reads standard input.
Everything printed goes through :func:`redact`, since configs may carry URLs with credentials.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from prism_testkit.config.namespace_files import (
    NamespaceError,
    NamespaceFile,
    Problem,
    ResolvedNamespace,
    ResolvedPattern,
    describe_backend,
    load_namespaces,
    parse_namespaces,
    schema_text,
)
from prism_testkit.errors import BadBinary, ConfigurationError, PrismError
from prism_testkit.hunting.replay import add_replay_command, run_replay_command
from prism_testkit.provision.base import Availability, ProvisionContext, Via
from prism_testkit.provision.binaries import OPTION, chosen_binary, parse_binary_options
from prism_testkit.provision.servers import ServerProvisioner
from prism_testkit.redaction import printable, redact
from prism_testkit.registry.backend_spec import BackendSpec
from prism_testkit.registry.backends import BackendRegistry, build_registry, make_plugin_manager
from prism_testkit.registry.patterns import PatternRegistry, PatternSpec, build_pattern_registry
from prism_testkit.report.cli import add_report_commands, run_report_command

OK, INVALID, USAGE = 0, 1, 2
STDIN = "-"  # as a FILE: read standard input
STDIN_LABEL = "<stdin>"  # how problems name it


def version() -> str:
    try:
        return importlib.metadata.version("prism-testkit")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        # An argument given as undecodable bytes is echoed in the message: keep it printable.
        self.print_usage(sys.stderr)
        self.exit(USAGE, printable(redact(f"{self.prog}: error: {message}\n"), sys.stderr))


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="prism-testkit", description="Namespace files of prism-testkit.")
    parser.add_argument("--version", action="version", version=f"prism-testkit {version()}")
    data = _ArgumentParser(add_help=False)  # the commands that print data
    data.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", parents=[data], help="check namespace files against the registered patterns and backends"
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="namespace files ('-': standard input)")
    explain = commands.add_parser("explain", parents=[data], help="print each namespace's resolved pattern chain")
    explain.add_argument("file", metavar="FILE", help="a namespace file ('-': standard input)")
    commands.add_parser("schema", help="print the JSON Schema of namespace files")
    commands.add_parser(
        "patterns", parents=[data], help="list the registered patterns: slots, client APIs, config, suites"
    )
    backends = commands.add_parser(
        "backends",
        parents=[data],
        help="list the registered backends: the plugin that registered each, whether it can be provisioned "
        "here (and why not), and the server binary and version it would start",
    )
    backends.add_argument(
        OPTION,
        dest="prism_binary",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="the server binary to start for NAME (repeatable), as pytest's --prism-binary",
    )
    add_report_commands(commands)
    add_replay_command(commands)
    return parser


def _out(text: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    print(printable(redact(text), stream), file=stream)


def _out_json(data: object) -> None:
    _out(json.dumps(data, indent=2, ensure_ascii=False))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader stopped early (``| head -1``): it has what it wanted, as with pip and ruff.
        # Standard output is pointed at /dev/null so the interpreter's final flush stays quiet.
        _silence_stdout()
        return OK


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # a stream without a file descriptor (tests)
        pass


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error (or the version)
        return exc.code if isinstance(exc.code, int) else USAGE
    if args.command == "report":
        return run_report_command(args)  # reads JSON files only: no plugin is loaded
    if args.command == "replay":
        return run_replay_command(args)  # pytest loads the plugins itself
    try:
        pm = make_plugin_manager()
        patterns = build_pattern_registry(pm)
        needs_backends = args.command in ("validate", "explain", "backends")
        registry = build_registry(pm) if needs_backends else BackendRegistry()
    except PrismError as exc:
        _out(f"prism-testkit: error: cannot load plugins: {exc}", sys.stderr)
        return USAGE
    as_json = getattr(args, "format", "text") == "json"
    if args.command == "schema":
        sys.stdout.write(schema_text(patterns))
        return OK
    if args.command == "patterns":
        if as_json:
            _out_json([pattern_data(spec, patterns.origin.get(spec.name, "?")) for spec in patterns])
        else:
            for line in describe_patterns(patterns):
                _out(line)
        return OK
    if args.command == "backends":
        try:
            binaries = _chosen_binaries(args.prism_binary, registry)
        except (BadBinary, ConfigurationError) as exc:
            _out(f"prism-testkit: error: {exc}", sys.stderr)
            return USAGE
        return _backends(registry, as_json, binaries)
    if args.command == "validate":
        return _validate(args.files, registry, patterns, as_json)
    return _explain(args.file, registry, patterns, as_json)


def describe_patterns(patterns: PatternRegistry) -> list[str]:
    """The catalogue: every registered pattern in chain order (outer first)."""
    lines = []
    for spec in patterns:
        status = "implemented" if spec.implemented else "not implemented (validated only)"
        origin = patterns.origin.get(spec.name, "?")
        lines.append(f"{spec.name} [{spec.priority}, complexity {spec.complexity}, {status}; plugin {origin}]")
        lines.append(f"  {spec.summary}")
        lines.append(f"  client APIs: {', '.join(sorted(spec.client_apis))}")
        for slot, role in spec.slots.items():
            optional = "" if role.required else " (optional)"
            lines.append(f"  slot {slot}{optional}: {role.slot.describe()} - {role.description}")
        lines.append(
            f"  config: {spec.config.__module__}.{spec.config.__qualname__} ({', '.join(spec.config.model_fields)})"
        )
        if spec.before:
            lines.append(f"  comes before: {', '.join(sorted(spec.before))}")
        if spec.conflicts:
            lines.append(f"  conflicts with: {', '.join(sorted(spec.conflicts))}")
        lines.append(f"  proved by suites: {', '.join(spec.suites) or 'none yet'}")
    return lines


def pattern_data(spec: PatternSpec, plugin: str) -> dict[str, Any]:
    """One catalogue entry as JSON (``patterns --format json``)."""
    return {
        "name": spec.name,
        "plugin": plugin,
        "priority": str(spec.priority),
        "complexity": str(spec.complexity),
        "implemented": spec.implemented,
        "summary": spec.summary,
        "client_apis": sorted(spec.client_apis),
        "slots": {
            slot: {"required": role.required, "needs": role.slot.describe(), "description": role.description}
            for slot, role in spec.slots.items()
        },
        "config": {
            "model": f"{spec.config.__module__}.{spec.config.__qualname__}",
            "fields": list(spec.config.model_fields),
        },
        "before": sorted(spec.before),
        "conflicts": sorted(spec.conflicts),
        "suites": list(spec.suites),
    }


def _chosen_binaries(lines: Sequence[str], registry: BackendRegistry) -> dict[str, Path]:
    """``--prism-binary`` lines, checked as pytest checks them: BadBinary for a bad one,
    ConfigurationError for a NAME no registered backend starts a server from."""
    chosen = parse_binary_options(lines)
    known = sorted({key for spec in registry if (key := getattr(spec.provisioner, "binary_key", None))})
    for name in chosen:
        if name not in known:
            raise ConfigurationError(
                f"{OPTION} {name}=...: no backend starts a server named {name!r}; known: {', '.join(known)}"
            )
    return chosen


@dataclass(frozen=True)
class BinaryChoice:
    """The server binary a backend would start here: where, what version, who chose it."""

    path: Path
    version: str | None
    chosen_by: str  # "chosen by --prism-binary nats", "chosen by PRISM_NATS_BINARY", or "the default"

    def line(self) -> str:
        return f"{self.path} ({self.version or 'version unknown'}; {self.chosen_by})"


def probe_backend(
    spec: BackendSpec, workdir: Path, binaries: Mapping[str, Path] | None = None
) -> tuple[Availability, BinaryChoice | None]:
    """How ``spec`` would be provisioned here, or why it cannot be, without starting anything:
    a missing client library first, then the provisioner's own probe (URL, binary, Docker);
    with the binary it would start, when it starts one."""
    from prism_testkit.runtime import url_from_environment

    reason = spec.unavailable_reason()
    if reason is not None:
        return Availability.unavailable(reason), None
    context = ProvisionContext(
        backend=spec.name,
        url=url_from_environment(spec.name),
        workdir=workdir / spec.name,
        worker_id="cli",
        run_id="backends",
        binaries=dict(binaries or {}),
    )
    try:
        availability = spec.provisioner.probe(context)
        return availability, _binary_choice(spec, context) if availability.via is Via.BINARY else None
    except Exception as exc:  # a third party's probe must not hide the other backends
        return Availability.unavailable(f"its provisioner's probe failed: {type(exc).__name__}: {exc}"), None


def _binary_choice(spec: BackendSpec, context: ProvisionContext) -> BinaryChoice | None:
    provisioner = spec.provisioner
    if not isinstance(provisioner, ServerProvisioner):
        return None
    path = provisioner.chosen_or_found_binary(context)
    if path is None:
        return None
    key = provisioner.binary_key
    chosen = chosen_binary(key, context.binaries) if key is not None else None
    return BinaryChoice(path, provisioner.binary_version(path), f"chosen by {chosen[0]}" if chosen else "the default")


def backend_data(
    spec: BackendSpec, plugin: str, availability: Availability, binary: BinaryChoice | None = None
) -> dict[str, Any]:
    """One registered backend as JSON (``backends --format json``)."""
    return {
        "name": spec.name,
        "plugin": plugin,
        "embedded": spec.embedded,
        "description": spec.description,
        "capabilities": sorted(c.value for c in spec.capabilities),
        "properties": spec.properties.model_dump(mode="json"),
        "available": availability.available,
        "via": availability.via.value,
        "detail": availability.detail,
        "binary": None
        if binary is None
        else {"path": str(binary.path), "version": binary.version, "chosen_by": binary.chosen_by},
    }


def _backends(registry: BackendRegistry, as_json: bool, binaries: Mapping[str, Path]) -> int:
    with tempfile.TemporaryDirectory(prefix="prism-backends-") as workdir:
        found = [
            (spec, registry.origin.get(spec.name, "?"), *probe_backend(spec, Path(workdir), binaries))
            for spec in registry
        ]
    if as_json:
        _out_json([backend_data(spec, plugin, availability, binary) for spec, plugin, availability, binary in found])
        return OK
    for spec, plugin, availability, binary in found:
        _out(f"{spec.name} [{'embedded, ' if spec.embedded else ''}plugin {plugin}]")
        if spec.description:
            _out(f"  {spec.description}")
        _out(f"  capabilities: {', '.join(sorted(c.value for c in spec.capabilities))}")
        if availability.available:
            _out(f"  provisioned here: {availability.via.value} ({availability.detail})")
        else:
            _out(f"  UNAVAILABLE here: {availability.detail}")
        if binary is not None:
            _out(f"  binary: {binary.line()}")
    return OK


def _read(path: str, registry: BackendRegistry, patterns: PatternRegistry) -> NamespaceFile:
    if path == STDIN:
        return parse_namespaces(sys.stdin.read(), registry, file=STDIN_LABEL, patterns=patterns)
    return load_namespaces(path, registry, patterns)


def _load(
    path: str, registry: BackendRegistry, patterns: PatternRegistry, problems: list[Problem] | None = None
) -> NamespaceFile | int:
    """The resolved file, or the exit code of its failure. Problems are printed, or collected
    into ``problems`` when it is given (JSON output)."""
    try:
        return _read(path, registry, patterns)
    except NamespaceError as exc:
        if problems is not None:
            problems.extend(exc.problems)
        else:
            for problem in exc.problems:
                _out(str(problem))
        return INVALID
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _out(f"prism-testkit: error: {path}: cannot read: {reason}", sys.stderr)
        return USAGE


def _problem_data(problem: Problem) -> dict[str, Any]:
    return {"path": problem.path, "message": problem.message, "line": problem.line}


def _validate(paths: Sequence[str], registry: BackendRegistry, patterns: PatternRegistry, as_json: bool) -> int:
    worst = OK
    files = []
    for path in paths:
        problems: list[Problem] | None = [] if as_json else None
        result = _load(path, registry, patterns, problems)
        label = STDIN_LABEL if path == STDIN else path
        if isinstance(result, int):
            worst = max(worst, result)
            if problems is not None:
                error = None if result == INVALID else "cannot read"
                files.append(
                    {"file": label, "ok": False, "error": error, "problems": [_problem_data(p) for p in problems]}
                )
            continue
        count = len(result.namespaces)
        files.append({"file": label, "ok": True, "namespaces": count, "problems": []})
        if not as_json:
            _out(f"{label}: ok ({count} namespace{'s' if count != 1 else ''})")
    if as_json:
        _out_json({"ok": worst == OK, "files": files})
    return worst


def _explain(path: str, registry: BackendRegistry, patterns: PatternRegistry, as_json: bool) -> int:
    problems: list[Problem] | None = [] if as_json else None
    result = _load(path, registry, patterns, problems)
    if isinstance(result, int):
        if problems:
            _out_json(
                {"file": STDIN_LABEL if path == STDIN else path, "problems": [_problem_data(p) for p in problems]}
            )
        return result
    if as_json:
        _out_json({"file": result.path, "namespaces": [namespace_data(ns) for ns in result.namespaces]})
        return OK
    for namespace in result.namespaces:
        for line in explain_namespace(namespace, registry):
            _out(line)
    return OK


def namespace_data(ns: ResolvedNamespace) -> dict[str, Any]:
    """One resolved namespace as JSON (``explain --format json``): the chain, outer first."""
    return {
        "name": ns.name,
        "client_api": ns.client_api,
        "needs": None if ns.needs is None else ns.needs.model_dump(exclude_none=True, mode="json"),
        "backends": dict(ns.backends),
        "chain": [
            {
                "pattern": pattern.spec.name,
                "priority": str(pattern.spec.priority),
                "complexity": str(pattern.spec.complexity),
                "implemented": pattern.spec.implemented,
                "why": pattern.reason,
                "slots": {slot: pattern.slots.get(slot) for slot in pattern.spec.slots},
                "config": pattern.config.model_dump(exclude_defaults=True, mode="json"),
            }
            for pattern in ns.chain
        ],
    }


def explain_namespace(ns: ResolvedNamespace, registry: BackendRegistry) -> list[str]:
    lines = [f"namespace {ns.name} (client_api: {ns.client_api})"]
    if ns.needs is not None:
        given = ns.needs.model_dump(exclude_none=True)
        lines.append("  needs: " + (", ".join(f"{k}={v}" for k, v in given.items()) or "(none)"))
    if not ns.chain:
        backends = ", ".join(f"{role} -> {name}" for role, name in ns.backends.items())
        lines.append(f"  no patterns: the client API talks to the backend directly ({backends or 'none'})")
        return lines
    names = [p.name for p in ns.chain]
    lines.append(f"  publish: {' -> '.join([*names, 'backend'])}")
    lines.append(f"  consume: {' -> '.join(['backend', *reversed(names)])}")
    for index, pattern in enumerate(ns.chain, 1):
        lines.extend(_explain_pattern(index, pattern, registry))
    return lines


def _explain_pattern(index: int, pattern: ResolvedPattern, registry: BackendRegistry) -> list[str]:
    info: PatternSpec = pattern.spec
    status = "implemented" if info.implemented else "not implemented (validated only)"
    lines = [
        f"  {index}. {info.name} [{info.priority}, complexity {info.complexity}, {status}]",
        f"     {info.summary}",
        f"     why: {pattern.reason}",
    ]
    width = max(len(slot) for slot in info.slots)
    for slot, spec in info.slots.items():
        backend = pattern.slots.get(slot)
        if backend is None:
            lines.append(f"     {slot:<{width}} -> (not used)")
            continue
        relevant = spec.slot.all_of | spec.slot.any_of
        lines.append(f"     {slot:<{width}} -> {backend} ({describe_backend(registry[backend], relevant)})")
    config = pattern.config.model_dump(exclude_defaults=True, mode="json")
    if config:
        lines.append("     config: " + ", ".join(f"{k}={v}" for k, v in config.items()))
    return lines


if __name__ == "__main__":
    sys.exit(main())
