"""Mutant: ``--prism-binary`` takes one server NAME twice and starts the last binary given, which
need not be the one a reader of the command line or the ini file sees (issue 66).

Loaded with ``-p tests.mutants.binaries_accept_a_name_twice``.
"""

from __future__ import annotations

from prism_testkit.provision import binaries
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(binaries, "parse_binary_options", "if name in chosen:", "if False:")
