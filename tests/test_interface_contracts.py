"""The contracts are stated where authors look: every error a contract suite expects from an
interface (``pytest.raises(X)``) is named in the docstrings of that interface's protocols in
``prism_testkit.interfaces``, and every message it matches (``match=...``) is quoted there.
A suite that starts checking a new failure fails this test until the docstring says so."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from pathlib import Path

import pytest

from prism_testkit import errors as errors_module
from prism_testkit import interfaces
from tests._parsing import parse

SUITES = Path(__file__).parent.parent / "prism_testkit" / "suites"
# contract suite -> the protocols whose docstrings state its contract
PROTOCOLS: dict[str, list[type]] = {
    "keyvalue": [interfaces.KeyValue],
    "queue": [interfaces.Queue],
    "log": [interfaces.Log, interfaces.TruncatableLog],
    "objects": [interfaces.ObjectStore],
    "transactions": [interfaces.Transaction, interfaces.NumberingTransaction, interfaces.Transactions],
    "changefeed": [interfaces.ChangeFeed],
    "pubsub": [interfaces.PubSub, interfaces.Subscription],
}


def documented(protocols: list[type]) -> str:
    """The docstrings of the protocols and of their own methods."""
    texts = [inspect.getdoc(p) or "" for p in protocols]
    texts += [inspect.getdoc(member) or "" for p in protocols for member in vars(p).values() if callable(member)]
    return "\n".join(texts)


def expected_failures(source: str) -> tuple[set[str], set[str]]:
    """(error class names, match patterns) of the module's ``pytest.raises`` calls, leaving out
    exceptions the module defines itself (they only prove that the block's own error propagates)."""
    tree = parse(source)
    local = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    errors: set[str] = set()
    matches: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and ast.unparse(node.func) == "pytest.raises" and node.args):
            continue
        name = node.args[0].id if isinstance(node.args[0], ast.Name) else None
        # an error class: a builtin or one of prism_testkit.errors (not a variable holding one)
        if name is not None and name not in local and (hasattr(builtins, name) or hasattr(errors_module, name)):
            errors.add(name)
        matches.update(
            k.value.value
            for k in node.keywords
            if k.arg == "match" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
        )
    return errors, matches


def test_every_contract_suite_is_mapped() -> None:
    suites = {p.stem.removeprefix("test_contract_") for p in SUITES.glob("test_contract_*.py")}
    # about drivers, servers and replicated clusters, not one interface each
    interface_suites = suites - {
        "capabilities",
        "restart",
        "power_loss",
        "failover",
        "failover_uneven",
        "leader_change",
        "replica_lag",
        "damaged_leader",
        "node_power_cut",
        "snapshot_corruption",
        "names",  # every interface's names, hostile
    }
    assert interface_suites == set(PROTOCOLS)


def test_the_reader_finds_what_a_suite_expects() -> None:
    source = (
        "class Boom(Exception): ...\n"
        "def t():\n"
        "    with pytest.raises(Boom): ...\n"
        "    with pytest.raises(ValueError, match='a|b'): ...\n"
        "    with pytest.raises(DeliveryNotFound): ...\n"
        "    with pytest.raises(expected): ...\n"
    )
    assert expected_failures(source) == ({"ValueError", "DeliveryNotFound"}, {"a|b"})


@pytest.mark.parametrize("suite", sorted(PROTOCOLS))
def test_the_interface_names_every_failure_its_contract_suite_checks(suite: str) -> None:
    errors, matches = expected_failures((SUITES / f"test_contract_{suite}.py").read_text())
    text = documented(PROTOCOLS[suite])
    missing = sorted(name for name in errors if not re.search(rf"\b{name}\b", text))
    assert missing == [], f"interfaces.py does not say when these are raised: {missing}"
    unquoted = sorted(m for m in matches if not any(part in text for part in m.split("|")))
    assert unquoted == [], f"interfaces.py never quotes these messages: {unquoted}"
