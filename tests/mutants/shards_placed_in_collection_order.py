"""Mutant: a shard's units are named by their place in collection order, not by the tests'
identities, so ties (equal weights: every split by count) are broken by the order pytest happened
to collect in, and two machines that collect in another order split differently: a test runs in
two shards, or in none (issue 66).

Loaded with ``-p tests.mutants.shards_placed_in_collection_order``.
"""

from __future__ import annotations

from prism_testkit.registry import shards
from tests.mutants._rewrite import rewrite_function_line

rewrite_function_line(shards, "select", "name = identity(item)", 'name = f"{len(units):09d}"')
