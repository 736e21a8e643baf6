"""Known findings (prism_testkit.findings): a loss a written-up finding covers is an xfail
naming it, any other loss fails, and a known finding that stops reproducing fails too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prism_testkit import findings
from prism_testkit.findings import KNOWN, KnownFinding, finding_for, judge
from prism_testkit.report.matrix import compliance_matrix, render_markdown
from prism_testkit.report.shape import parse
from prism_testkit.suites.test_contract_objects import RACED_DELETES

BUG = KNOWN["nats-server#7549"]


def judged(
    backend: str, version: str | None, lost: int, scenario: str = "damaged-leader", tolerated: str | None = None
) -> Any:
    request: Any = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    judge(
        request,
        scenario=scenario,
        backend=backend,
        version=version,
        lost=lost,
        acknowledged=100,
        detail="seen",
        replay="pytest x",
        tolerated=tolerated,
    )
    return request


def test_a_known_loss_is_an_xfail_naming_the_finding_its_entry_and_the_upstream_issue() -> None:
    with pytest.raises(pytest.xfail.Exception) as caught:
        judged("jetstream-r3", "2.12.1", lost=7)
    assert BUG.id in str(caught.value)
    assert BUG.upstream in str(caught.value)
    assert BUG.docs in str(caught.value)
    assert "lost 7 of 100" in str(caught.value)


def test_a_known_finding_that_stops_reproducing_fails_until_the_entry_is_updated() -> None:
    reproduces = r"no longer reproduces on nats-server 2\.16\.0.*update docs/findings\.md"
    with pytest.raises(pytest.fail.Exception, match=reproduces):
        judged("jetstream-r3", "2.16.0", lost=0)


def test_a_loss_no_finding_covers_fails_with_its_replay() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"(?s)lost 3 of 100.*no known finding.*replay: pytest x"):
        judged("jetstream-r3", "2.15.1", lost=3, scenario="restarted-leader")
    with pytest.raises(pytest.fail.Exception, match="no known finding"):
        judged("postgres-ha", "15.20", lost=3)


def test_no_loss_and_no_finding_passes_and_records_the_verdict() -> None:
    request = judged("jetstream-r3", "2.15.1", lost=0, scenario="restarted-leader")
    (key, value), *_ = request.node.user_properties
    assert key == findings.PROPERTY
    assert value["verdict"] == "held"
    assert value["finding"] is None


def test_a_loss_in_a_documented_window_is_recorded_as_tolerated_and_passes() -> None:
    request = judged("jetstream-r3-lazy-sync", "2.15.1", lost=5, scenario="restarted-leader", tolerated="w")
    (_key, value), *_ = request.node.user_properties
    assert (value["verdict"], value["tolerated"], value["lost"]) == ("tolerated", "w", 5)
    with pytest.raises(pytest.xfail.Exception):  # a known finding still names itself
        judged("jetstream-r3-lazy-sync", "2.12.1", lost=5, tolerated="w")
    with pytest.raises(pytest.fail.Exception, match="no known finding"):  # a window is not a pass elsewhere
        judged("jetstream-r3-lazy-sync", "2.15.1", lost=5, scenario="restarted-leader")


def test_a_loss_the_vendor_documents_is_tolerated_under_its_findings_name() -> None:
    """Jepsen's #7564 and #7567 lose writes within JetStream's documented fsync interval: the
    table names the upstream report, and a window that lost nothing is no stale finding."""
    window = findings.FSYNC_WINDOW
    for scenario, upstream in (("established-power-cut", "#7564"), ("node-power-cut-between-pauses", "#7567")):
        request = judged("jetstream-r3-lazy-sync", "2.12.1", lost=81, scenario=scenario, tolerated=window)
        (_key, value), *_ = request.node.user_properties
        assert (value["verdict"], value["finding"]) == ("tolerated", f"nats-server{upstream}")
        request = judged("jetstream-r3-lazy-sync", "2.16.0", lost=0, scenario=scenario, tolerated=window)
        assert request.node.user_properties[0][1]["verdict"] == "held"
        # the same loss where the sync setting promises it cannot happen: no finding covers it
        with pytest.raises(pytest.fail.Exception, match="no known finding"):
            judged("jetstream-r3", "2.12.1", lost=81, scenario=scenario)


def test_a_release_that_fixes_a_finding_makes_its_loss_red_again() -> None:
    fixed = KnownFinding(**{**vars(BUG), "since": "2.10.0", "fixed_in": "2.16.0"})
    assert fixed.affects("2.12.1")
    assert fixed.affects("2.15.10")
    assert not fixed.affects("2.16.0")
    assert not fixed.affects("2.9.10")
    assert not fixed.affects(None)
    assert BUG.affects(None)
    assert BUG.affects("2.99.0")
    assert ">= 2.10.0 and < 2.16.0" in fixed.affected()


def anchor(heading: str) -> str:
    """A heading's anchor as mkdocs (Python-Markdown's toc) makes it."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())


def test_every_finding_names_an_entry_of_docs_findings_and_its_upstream_issue() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "findings.md").read_text(encoding="utf-8")
    anchors = {anchor(line[4:]) for line in text.splitlines() if line.startswith("### ")}
    for finding in KNOWN.values():
        page, _, entry = finding.docs.partition("#")
        assert page == "docs/findings.md", finding.docs
        assert entry in anchors, finding.docs
        assert finding.upstream.startswith("https://github.com/")
        assert finding_for(finding.scenario, next(iter(finding.backends))) is finding


KNOWN_LOSS = """
from prism_testkit import PrismEnv, Slot, findings, prism_suite

pytestmark = prism_suite("demo_findings", backend=Slot.needs("keyvalue"))

def test_reproduces(prism_env: PrismEnv, request) -> None:
    findings.judge(request, scenario="demo", backend="memstore", version="1.0", lost=3, acknowledged=9,
                   detail="seen", replay="pytest x")

def test_holds(prism_env: PrismEnv, request) -> None:
    findings.judge(request, scenario="other", backend="memstore", version="1.0", lost=0, acknowledged=9,
                   detail="seen", replay="pytest x")
"""


def test_the_report_and_the_matrix_name_a_reproduced_finding_never_a_plain_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = KnownFinding(**{**vars(BUG), "id": "demo#1", "scenario": "demo", "backends": frozenset({"memstore"})})
    monkeypatch.setitem(KNOWN, demo.id, demo)
    pytester.makepyfile(test_demo=KNOWN_LOSS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--prism-backend=memstore", "--prism-report=r.json", "-rx")
    result.assert_outcomes(passed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*demo#1=1 (known finding)*", "XFAIL*known finding demo#1 on nats-server 1.0*"])
    report = json.loads((pytester.path / "r.json").read_text())
    (row,) = report["suites"]
    assert row["known"] == {"demo#1": 1}
    cell = compliance_matrix(parse(report)).cells["demo_findings"]["memstore"]
    assert cell.status == "known finding"
    assert "🐞 1 passed, 1 skipped, demo#1 reproduced (1 test)" in render_markdown(parse(report))


RACED = KNOWN["nats-server#7798"]
RACED_COUNTS = "concurrent delete_bucket calls succeeded beyond one per bucket"


def raced(version: str | None, extra: int, backend: str = "jetstream-r3") -> Any:
    request: Any = SimpleNamespace(node=SimpleNamespace(user_properties=[]))
    judge(
        request,
        scenario=RACED_DELETES,
        backend=backend,
        version=version,
        lost=extra,
        acknowledged=24,
        detail="successes per bucket",
        replay="pytest x",
        counts=RACED_COUNTS,
    )
    return request


def test_unanswered_concurrent_deletes_are_a_finding_of_the_clusters_before_2_12_5() -> None:
    """2.12.1 and 2.12.4 left the racing deletes unanswered; 2.12.5 (#7798's in-flight tracking)
    answers each, and the code before 2.12 had the same no-op removal."""
    assert finding_for(RACED_DELETES, "jetstream-r3") is RACED
    assert finding_for(RACED_DELETES, "jetstream-r3-lazy-sync") is RACED
    # a single server deletes at once, with no proposal to race: no finding there
    assert finding_for(RACED_DELETES, "jetstream") is None
    assert finding_for(RACED_DELETES, "memstore") is None
    for affected in ("2.9.0", "2.11.17", "2.12.1", "2.12.4"):
        assert RACED.affects(affected), affected
    for fixed in ("2.12.5", "2.12.15", "2.14.0", "2.15.1"):
        assert not RACED.affects(fixed), fixed
    assert not RACED.affects(None)  # a fix is known: an unknown release is held to the contract


def test_extra_successes_are_the_named_finding_on_2_12_and_red_on_a_fixed_release() -> None:
    with pytest.raises(pytest.xfail.Exception) as caught:
        raced("2.12.1", extra=18)
    reason = str(caught.value)
    assert f"known finding {RACED.id} on nats-server 2.12.1" in reason
    assert RACED.docs in reason
    assert RACED.upstream in reason
    assert f"18 of 24 {RACED_COUNTS}" in reason
    assert "lost" not in reason  # the scenario's own words, not a write loss
    # the contract stays for a release that keeps it: a backend that succeeds twice fails
    with pytest.raises(pytest.fail.Exception, match=rf"(?s)2\.15\.1\): 1 of 24 {RACED_COUNTS}.*replay: pytest x"):
        raced("2.15.1", extra=1)
    assert raced("2.15.1", extra=0).node.user_properties[0][1]["verdict"] == "held"
    # a race a loaded machine can miss: an affected release whose deletes were all answered held
    assert raced("2.12.1", extra=0).node.user_properties[0][1]["verdict"] == "held"


def test_only_an_intermittent_finding_may_miss_on_an_affected_release() -> None:
    assert RACED.intermittent
    assert not BUG.intermittent
    with pytest.raises(pytest.fail.Exception, match="no longer reproduces"):
        judged("jetstream-r3", "2.12.1", lost=0)
