"""A derandomised search of a suite test is a function of its identity, its strategies and the
seed only (issue 51 left item, prism_testkit.hunting.derandomised): not of the install layout
or the rootdir (Hypothesis seeds it from the node id, a path relative to the run's root), nor of
the literals of unrelated local modules (Hypothesis's local-constants pool)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis.internal.conjecture import providers

from prism_testkit.hunting import derandomised
from prism_testkit.hunting.derandomised import constants_withheld, guard_unsupported, seed_of

LITERAL = 918_273_645  # in no other source of the project: drawn only from the module below


def test_the_guard_knows_this_hypothesis() -> None:
    """Fails when Hypothesis's internals moved (or a release outside the tested ones is
    installed): the guard would stop withholding the pool, and the searches move again. Read
    providers.py of the new release, then adjust the guard and TESTED_VERSIONS."""
    assert guard_unsupported() is None, guard_unsupported()


def test_the_guard_withholds_local_literals_only_while_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "prism_unrelated_literals.py").write_text(f"SENTINEL = {LITERAL}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "prism_unrelated_literals", raising=False)
    __import__("prism_unrelated_literals")
    original = providers._get_local_constants

    def pool() -> set[object]:
        return set(providers.HypothesisProvider(None)._local_constants.set_for_type("integer"))

    # Hypothesis does draw from a local module's literals: the guard has something to withhold
    assert LITERAL in pool()
    with constants_withheld() as withheld:
        assert withheld
        assert pool() == set()
        with constants_withheld():  # nested (a pytester run in this process): still withheld
            assert pool() == set()
        assert pool() == set()
    assert providers._get_local_constants is original
    assert LITERAL in pool()


def test_an_unsupported_hypothesis_keeps_the_pool_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(derandomised, "_version", lambda: (7, 0))
    monkeypatch.setattr(derandomised, "_warned", False)
    derandomised.guard_unsupported.cache_clear()
    try:
        original = providers._get_local_constants
        with (
            pytest.warns(derandomised.ConstantsPoolWarning, match="still draw the project's literals"),
            constants_withheld() as withheld,
        ):
            held = (withheld, providers._get_local_constants)
        assert held == (False, original)
    finally:
        derandomised.guard_unsupported.cache_clear()


def test_a_seed_is_its_identitys() -> None:
    identity = "prism_testkit.suites.test_stateful_wal::test_x[backend=memstore]"
    assert seed_of(identity) == seed_of(identity)
    assert len({seed_of(identity), seed_of(identity, "failover pass"), seed_of(identity + "x")}) == 3
    assert 0 <= seed_of(identity) < 2**derandomised.SEED_BITS


# An author's suite package: a @given test and a stateful one, each writing what it drew, and
# each checking that the pool is withheld while it runs (and a plain test that it is not).
SUITE = """
import json
import os

from hypothesis import given, strategies as st
from hypothesis.internal.conjecture import providers
from hypothesis.stateful import RuleBasedStateMachine, rule

from prism_testkit import PrismEnv, Slot, prism_suite
from prism_testkit.stateful.checkers import suite_verdict
from prism_testkit.stateful.history import History
from prism_testkit.stateful.runner import StatefulRun

pytestmark = prism_suite("stateful_drawn", backend=Slot.needs("keyvalue"))


def keep(name, values):
    assert providers._get_local_constants.__qualname__ != "_get_local_constants", "the pool is not withheld"
    with open(os.path.join(os.environ["PRISM_DRAWS"], name), "a") as out:
        out.write(json.dumps(values) + "\\n")


@given(values=st.lists(st.integers(), min_size=40, max_size=40))
def test_given(prism_env: PrismEnv, values) -> None:
    keep("given", values)


class Drawn(RuleBasedStateMachine):
    def __init__(self, run):
        super().__init__()
        self.run = run
        self.history = History()

    @rule(n=st.integers(), more=st.lists(st.integers(), max_size=8))
    def put(self, n, more):
        keep("stateful", [n, *more])
        self.history.invoke("w", "put", "k", n).ok()

    def teardown(self):
        self.run.judge(self.history, [suite_verdict("drawn", {}, {"puts": len(self.history) // 2})], "drawn")


def test_stateful(prism_env: PrismEnv, request) -> None:
    run = StatefulRun(prism_env, request)
    run.execute(lambda: Drawn(run))
"""

PLAIN = """
from hypothesis import given, settings, strategies as st
from hypothesis.internal.conjecture import providers


@settings(derandomize=True, database=None, max_examples=5)
@given(st.integers())
def test_plain(n):
    assert providers._get_local_constants.__qualname__ == "_get_local_constants", "a plain test was patched"
"""

# Unrelated code with literals of its own, as a commit elsewhere in a project adds them
LITERALS = "NUMBERS = [" + ", ".join(str(LITERAL + 7919 * i) for i in range(200)) + "]\n"


def run_from(root: Path, folder: str, *, literals: bool = False) -> dict[str, list[str]]:
    """Run the author's suites laid out at ``root/folder`` from ``root``; what each test drew."""
    package = root / folder / "drawnsuites"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "test_drawn.py").write_text(SUITE)
    (package / "test_plain.py").write_text(PLAIN)
    if literals:
        (root / "unrelated_literals.py").write_text(LITERALS)
        (root / "conftest.py").write_text("import unrelated_literals  # noqa: F401\n" + LITERALS)
    draws = root / "draws"
    draws.mkdir()
    env = {**os.environ, "PRISM_DRAWS": str(draws), "PYTHONPATH": str(root)}
    env.pop("CI", None)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", str(package.relative_to(root)), f"--rootdir={root}"),
            *("--prism-backend=memstore", "--hypothesis-profile=prism-ci", "-p", "no:cacheprovider", "-q"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout, done.stdout[-2000:]
    return {name: (draws / name).read_text().splitlines() for name in ("given", "stateful")}


def test_a_derandomised_search_moves_with_neither_the_layout_nor_unrelated_literals(tmp_path: Path) -> None:
    here = run_from(tmp_path / "checkout", ".")
    elsewhere = run_from(tmp_path / "installed", "venv/lib/python3.11/site-packages")  # another node id, one identity
    with_literals = run_from(tmp_path / "edited", "venv/lib/python3.11/site-packages", literals=True)
    for name in ("given", "stateful"):
        assert len(set(here[name])) >= 10, here[name]  # a search, not one example
        assert elsewhere[name] == here[name], f"{name}: the layout moved the search"
        assert with_literals[name] == here[name], f"{name}: unrelated literals moved the search"
    assert all(isinstance(n, int) for line in here["given"] for n in json.loads(line))
