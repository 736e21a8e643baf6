"""``prism-testkit``: validate and explain namespace files, print their JSON Schema, list the
registered patterns (the catalogue), merge the reports of a CI matrix (``report merge``).

Exit codes: 0 all valid, 1 a file has problems (each printed as ``FILE: path: message``),
2 usage errors (bad arguments, a file that cannot be read, backends that fail to register).
``report merge``: 0 merged and every suite passed, 1 merged with failures, 2 unreadable or
contradicting reports.
Everything printed goes through :func:`redact`, since configs may carry URLs with credentials.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from prism_testkit.config.namespace_files import (
    NamespaceError,
    NamespaceFile,
    ResolvedNamespace,
    ResolvedPattern,
    describe_backend,
    load_namespaces,
    schema_text,
)
from prism_testkit.errors import PrismError
from prism_testkit.pattern_registry import PatternRegistry, PatternSpec, build_pattern_registry
from prism_testkit.redaction import redact
from prism_testkit.registry import BackendRegistry, build_registry, make_plugin_manager
from prism_testkit.report_cli import add_report_commands, run_report_command

OK, INVALID, USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prism-testkit", description="Namespace files of prism-testkit.")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="check namespace files against the registered patterns and backends"
    )
    validate.add_argument("files", nargs="+", metavar="FILE")
    explain = commands.add_parser("explain", help="print each namespace's resolved pattern chain")
    explain.add_argument("file", metavar="FILE")
    commands.add_parser("schema", help="print the JSON Schema of namespace files")
    commands.add_parser("patterns", help="list the registered patterns: slots, client APIs, config, suites")
    add_report_commands(commands)
    return parser


def _out(text: str, stream: TextIO | None = None) -> None:
    print(redact(text), file=stream or sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return exc.code if isinstance(exc.code, int) else USAGE
    if args.command == "report":
        return run_report_command(args)  # reads JSON files only: no plugin is loaded
    try:
        pm = make_plugin_manager()
        patterns = build_pattern_registry(pm)
        registry = build_registry(pm) if args.command in ("validate", "explain") else BackendRegistry()
    except PrismError as exc:
        _out(f"prism-testkit: error: cannot load plugins: {exc}", sys.stderr)
        return USAGE
    if args.command == "schema":
        sys.stdout.write(schema_text(patterns))
        return OK
    if args.command == "patterns":
        for line in describe_patterns(patterns):
            _out(line)
        return OK
    if args.command == "validate":
        return _validate(args.files, registry, patterns)
    return _explain(args.file, registry, patterns)


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


def _load(path: str, registry: BackendRegistry, patterns: PatternRegistry) -> NamespaceFile | int:
    try:
        return load_namespaces(path, registry, patterns)
    except NamespaceError as exc:
        for problem in exc.problems:
            _out(str(problem))
        return INVALID
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _out(f"prism-testkit: error: {path}: cannot read: {reason}", sys.stderr)
        return USAGE


def _validate(paths: Sequence[str], registry: BackendRegistry, patterns: PatternRegistry) -> int:
    worst = OK
    for path in paths:
        result = _load(path, registry, patterns)
        if isinstance(result, int):
            worst = max(worst, result)
            continue
        count = len(result.namespaces)
        _out(f"{path}: ok ({count} namespace{'s' if count != 1 else ''})")
    return worst


def _explain(path: str, registry: BackendRegistry, patterns: PatternRegistry) -> int:
    result = _load(path, registry, patterns)
    if isinstance(result, int):
        return result
    for namespace in result.namespaces:
        for line in explain_namespace(namespace, registry):
            _out(line)
    return OK


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
