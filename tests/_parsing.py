"""Parsing Python source in the tests that read the project's code.

CPython 3.11's ``ast.parse`` is not re-entrant: a garbage collection during its tree building
can run a finalizer that formats a traceback (asyncio's "Task exception was never retrieved"
from an earlier test's client), and formatting one parses its source line for the carets. The
outer parse then fails with ``SystemError: AST constructor recursion depth mismatch`` (seen in
the project's test run on 3.11.7). Collection is held off for the parse alone.
"""

from __future__ import annotations

import ast
import gc


def parse(source: str) -> ast.Module:
    collecting = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if collecting:
            gc.enable()
