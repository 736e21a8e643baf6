"""Patterns are plug-ins: an out-of-tree pattern registers through the entry point and gets
namespace files, validate, explain, schema and its own suite, with no change to prism-testkit."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable

import pytest

from prism_testkit.cli import main
from prism_testkit.config.namespace_files import parse_namespaces
from prism_testkit.patterns.outbox import Outbox, OutboxConfig
from prism_testkit.registry.backends import build_registry, make_plugin_manager
from prism_testkit.registry.patterns import load_patterns
from tests.conftest import OUT_OF_TREE

NAMESPACE = """\
namespaces:
  - name: payments
    client_api: queue
    patterns:
      - type: dedupe
        config: {{window: {window}, prefix: ns-seen/}}
        slots: {{messaging: sqlite, seen: memstore}}
"""


@pytest.fixture
def dedupe(third_party: Callable[..., None]) -> None:
    """The out-of-tree pattern 'dedupe', installed as package prism-dedupe."""
    modules = {name: (OUT_OF_TREE / f"{name}.py").read_text() for name in ("dedupe", "dedupe_suite")}
    third_party("prism-dedupe", modules, {"dedupe": "dedupe"})


def test_out_of_tree_pattern_suite_runs_on_every_compatible_backend(pytester: pytest.Pytester, dedupe: None) -> None:
    pytester.makepyfile(test_dedupe=(OUT_OF_TREE / "dedupe_suite.py").read_text())
    result = pytester.runpytest_subprocess(
        "--prism-backend=memstore,sqlite,localfs", "--prism-combinations=all", "--prism-report=r.json", "-v"
    )
    result.assert_outcomes(passed=4)
    rows = json.loads((pytester.path / "r.json").read_text())["suites"]
    # localfs has neither a queue nor key-value: it fills no slot, and no row names it
    assert sorted((r["combination"]["messaging"], r["combination"]["seen"]) for r in rows) == [
        ("memstore", "memstore"),
        ("memstore", "sqlite"),
        ("sqlite", "memstore"),
        ("sqlite", "sqlite"),
    ]


def test_namespace_file_configures_the_out_of_tree_pattern_with_its_own_model(
    pytester: pytest.Pytester, dedupe: None, capsys: pytest.CaptureFixture[str]
) -> None:
    good = pytester.path / "good.yaml"
    good.write_text(NAMESPACE.format(window="10m"))
    bad = pytester.path / "bad.yaml"
    bad.write_text(NAMESPACE.format(window="soon"))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "bad.yaml: namespaces[0].patterns[0].config.window: not a duration: 'soon'" in out

    assert main(["patterns"]) == 0
    listing = capsys.readouterr().out
    assert "dedupe [P2, complexity low, implemented; plugin dedupe]" in listing
    assert "proved by suites: dedupe" in listing
    assert main(["schema"]) == 0
    assert "DedupeEntry" in json.loads(capsys.readouterr().out)["$defs"]

    # the suite runs on the backends the file names, with the file's configuration
    pytester.makepyfile(test_dedupe=(OUT_OF_TREE / "dedupe_suite.py").read_text())
    run = pytester.runpytest_subprocess("--prism-namespace", str(good), "-p", "no:cacheprovider", "-v")
    run.assert_outcomes(passed=3)  # the embedded covering set, plus the namespace's combination
    run.stdout.fnmatch_lines(["*[[]ns=payments-messaging=sqlite-seen=memstore[]] PASSED*"])


def test_a_namespace_config_is_the_model_the_pattern_code_takes() -> None:
    """One model per pattern: what validates in a file configures the real implementation."""
    registry = build_registry(make_plugin_manager())
    text = """\
        namespaces:
          - name: orders
            client_api: transact
            patterns:
              - type: outbox
                config: {log: orders-outbox, poll_interval: 250ms, lease_ttl: 5s, cleanup: mark-published}
                slots: {store: sqlite, sink: sqlite}
    """
    (namespace,) = parse_namespaces(textwrap.dedent(text), registry).namespaces
    (outbox,) = namespace.chain
    assert isinstance(outbox.config, OutboxConfig)
    assert (outbox.config.poll_interval, outbox.config.lease_ttl) == (0.25, 5.0)
    Outbox(object(), outbox.config)  # type: ignore[arg-type]  # accepted as the producer's own config
    for spec in load_patterns():
        assert spec.config.model_validate({} if spec.name != "claim-check" else {"threshold": 1, "bucket": "b"})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("[SPEC.__class__(**{**SPEC.__dict__, 'name': 'outbox'})]", "*pattern 'outbox' is already registered*"),
        ("[SPEC.__class__(**{**SPEC.__dict__, 'name': 'No Good'})]", "*pattern name 'No Good' must be lower-case*"),
        ("[SPEC.__class__(**{**SPEC.__dict__, 'client_apis': frozenset({'rpc'})})]", "*client_apis must be among*"),
        ("[SPEC.__class__(**{**SPEC.__dict__, 'config': dict})]", "*config must be a pydantic model class*"),
        ("7", "*prism_register_patterns must return a sequence of PatternSpec, got int*"),
        ("1 / 0", "*pattern registration from plugin 'bad-pattern' failed: ZeroDivisionError*"),
    ],
)
def test_a_bad_pattern_registration_stops_the_run_naming_its_plugin(
    pytester: pytest.Pytester, third_party: Callable[..., None], source: str, message: str
) -> None:
    plugin = textwrap.dedent(
        f"""
        from dedupe import SPEC
        from prism_testkit import hookimpl

        @hookimpl
        def prism_register_patterns():
            return {source}
        """
    )
    modules = {"bad_pattern": plugin, "dedupe": (OUT_OF_TREE / "dedupe.py").read_text()}
    third_party("prism-bad-pattern", modules, {"bad-pattern": "bad_pattern"})
    pytester.makepyfile("def test_nothing(): pass")
    assert pytester.runpytest().ret == pytest.ExitCode.OK  # a run that does not use prism-testkit is left alone
    result = pytester.runpytest("--prism-backend=memstore")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
