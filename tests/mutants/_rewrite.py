"""One line of a real method rewritten in its own source: how a mutant breaks a retry or a rule
without a copy of the method that would drift from the original."""

from __future__ import annotations

import inspect
import sys
import textwrap
from types import ModuleType


def rewrite_line(owner: type, method: str, line: str, broken: str) -> None:
    """Install ``owner.method`` with ``line`` of its source replaced by ``broken``, compiled in
    the method's own module (its names, its postponed annotations). Refuses when the line is no
    longer there exactly once: a mutant that silently breaks nothing would pass as caught."""
    source = textwrap.dedent(inspect.getsource(getattr(owner, method)))
    assert source.count(line) == 1, f"{owner.__name__}.{method} no longer has the line {line!r}"
    module = sys.modules[owner.__module__]
    flags = annotations.compiler_flag  # the module's sources use postponed annotations too
    code = compile(source.replace(line, broken), str(module.__file__), "exec", flags, dont_inherit=True)
    scope: dict[str, object] = {}
    exec(code, vars(module), scope)
    setattr(owner, method, scope[method])


def rewrite_function_line(module: ModuleType, function: str, line: str, broken: str) -> None:
    """:func:`rewrite_line` for a module-level function: ``module.function`` replaced, in its
    module (so its module's other functions call the broken one), by its source with ``line``
    replaced by ``broken``; refused when the line is no longer there exactly once. A package
    above the module that re-exports the function (``prism_testkit.stateful.checkers``) hands
    out the broken one too, so ``from package import function`` imports what was rewritten."""
    real = getattr(module, function)
    source = textwrap.dedent(inspect.getsource(real))
    assert source.count(line) == 1, f"{module.__name__}.{function} no longer has the line {line!r}"
    flags = annotations.compiler_flag
    code = compile(source.replace(line, broken), str(module.__file__), "exec", flags, dont_inherit=True)
    exec(code, vars(module))  # defines the broken function in the module, over the real one
    parts = module.__name__.split(".")
    for package in (sys.modules.get(".".join(parts[:n])) for n in range(1, len(parts))):
        if package is not None and getattr(package, function, None) is real:
            setattr(package, function, getattr(module, function))
