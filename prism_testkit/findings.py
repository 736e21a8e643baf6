"""Known findings: violations of a vendor's documented guarantee that are written up in
``docs/findings.md`` and reported upstream, so a suite that meets one reports it as that finding
instead of a plain red, and goes red again once it stops reproducing.

A suite measures what its scenario lost and hands the count to :func:`judge` with the
scenario's name, the backend and the server version the driver was told. Then, as pytest's
strict xfail would:

* a loss where a known finding of that scenario covers the backend and version is an xfail
  naming the finding, its ``docs/findings.md`` entry and the upstream issue;
* a loss no finding covers is a failure (a new bug, or one back in a release said to fix it);
* no loss where a finding says the version is affected is a failure too: the finding no longer
  reproduces, and ``docs/findings.md`` (and this registry) must say on which version it stopped;
  except for an ``intermittent`` finding (a race its scenario may miss): that run held;
* no loss and no finding: the guarantee held, the test passes.

A finding the vendor's documentation allows (its ``window``: JetStream's lazy fsync interval,
``lost-in-fsync-window``) is not a violation: a loss of a test that names that window is
recorded as ``tolerated`` under the finding's name, so the version table says which upstream
report it is; no loss there passes (a window may lose nothing).

The verdict also goes to the test's report as the ``known_finding`` user property (also in
``--junitxml``), so a run over several server versions tells which carry which finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

# the user property a judged scenario records its verdict under
PROPERTY = "known_finding"


def version_key(version: str) -> tuple[int, ...]:
    """``"2.12.1"`` -> ``(2, 12, 1)``: the numbers of a version, compared as numbers."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


@dataclass(frozen=True)
class KnownFinding:
    """One written-up violation. ``backends``: the registrations it was seen on (every setting
    that reaches the same server code). ``since`` and ``fixed_in`` bound the affected releases
    where known (None: unbounded on that side); ``seen`` lists the releases it reproduced on."""

    id: str
    scenario: str
    server: str
    backends: frozenset[str]
    summary: str
    docs: str  # the docs/findings.md entry, as a path with its anchor
    upstream: str  # the upstream issue
    seen: tuple[str, ...]
    since: str | None = None
    fixed_in: str | None = None
    # the window the vendor documents this loss in (see the module doc): tolerated, named
    window: str | None = None
    # a race the scenario can miss on an affected release (its timing is the server's): a run
    # that shows nothing there held, rather than saying the finding stopped reproducing
    intermittent: bool = False

    def affects(self, version: str | None) -> bool:
        """Whether ``version`` is an affected release. An unknown version is affected unless
        a fix is known (then which side it falls on cannot be told)."""
        if version is None:
            return self.fixed_in is None
        key = version_key(version)
        if self.since is not None and key < version_key(self.since):
            return False
        return self.fixed_in is None or key < version_key(self.fixed_in)

    def affected(self) -> str:
        """The affected releases in words, for messages."""
        bounds = [f">= {self.since}"] * bool(self.since) + [f"< {self.fixed_in}"] * bool(self.fixed_in)
        return f"{' and '.join(bounds) or 'every release (no fix known)'}, seen on {', '.join(self.seen)}"


# the window the suites name a loss within a backend's documented fsync interval
FSYNC_WINDOW = "lost-in-fsync-window"
_JEPSEN_NATS = "docs/findings.md#jepsens-nats-2121-findings-what-this-harness-injects-today"
_JETSTREAM_CLUSTERS = frozenset({"jetstream-r3", "jetstream-r3-lazy-sync", "jetstream-r5"})

KNOWN: dict[str, KnownFinding] = {
    finding.id: finding
    for finding in (
        KnownFinding(
            id="nats-server#7549",
            scenario="damaged-leader",
            server="nats-server",
            backends=_JETSTREAM_CLUSTERS,
            summary=(
                "a replica whose message blocks were damaged recovers with a gap in the middle of the "
                "stream and, once it leads, serves the stream without those acknowledged messages"
            ),
            docs="docs/findings.md#damaged-message-blocks-on-one-replica-lose-acknowledged-messages-once-it-leads",
            upstream="https://github.com/nats-io/nats-server/issues/7549",
            seen=("2.12.1", "2.15.1"),
        ),
        KnownFinding(
            id="nats-server#7556",
            scenario="snapshot-corruption",
            server="nats-server",
            backends=_JETSTREAM_CLUSTERS,
            summary=(
                "a node whose metadata snapshot was damaged drops it, forgets the streams it recorded "
                "and deletes its own copy of each as orphaned"
            ),
            docs="docs/findings.md#corrupt-raft-snapshots-on-a-minority-a-node-deletes-its-copy-of-the-stream-as-orphaned",
            upstream="https://github.com/nats-io/nats-server/issues/7556",
            seen=("2.12.1",),
            # 2.14.0 refuses to start over a damaged snapshot ("NRG: Snapshot error handling") and
            # truncates a log left without one ("NRG: WAL must align with snapshot"); 2.15.1 holds.
            fixed_in="2.14.0",
        ),
        KnownFinding(
            id="nats-server#7564",
            scenario="established-power-cut",
            server="nats-server",
            backends=frozenset({"jetstream-r3-lazy-sync"}),
            summary=(
                "with the default fsync interval, a power cut of every node loses the writes acknowledged "
                "within the interval (NATS documents the window)"
            ),
            docs=_JEPSEN_NATS,
            upstream="https://github.com/nats-io/nats-server/issues/7564",
            seen=("2.12.1", "2.15.1"),
            window=FSYNC_WINDOW,
        ),
        KnownFinding(
            id="nats-server#7567",
            scenario="node-power-cut-between-pauses",
            server="nats-server",
            backends=frozenset({"jetstream-r3-lazy-sync"}),
            summary=(
                "with the default fsync interval, one node's OS crash between pauses of the others lets a "
                "majority form without writes it acknowledged (NATS documents the risk of its default)"
            ),
            docs=_JEPSEN_NATS,
            upstream="https://github.com/nats-io/nats-server/issues/7567",
            seen=("2.12.1", "2.15.1"),
            window=FSYNC_WINDOW,
        ),
        KnownFinding(
            id="nats-server#7798",
            scenario="concurrent-bucket-deletes",
            server="nats-server",
            backends=_JETSTREAM_CLUSTERS,
            summary=(
                "of concurrent STREAM.DELETE requests of one clustered stream, those proposed before the first "
                "was applied are applied as no-ops and never answered; a client that resends an unanswered delete "
                "then reads the resend's 'stream not found' as its own deletion"
            ),
            docs="docs/findings.md#concurrent-deletes-of-one-clustered-stream-the-later-ones-are-never-answered",
            # no upstream report names the symptom: the pull request whose in-flight tracking answers them
            upstream="https://github.com/nats-io/nats-server/pull/7798",
            seen=("2.12.1", "2.12.4"),
            # the same unanswered no-op removal is in the code of 2.9.0 to 2.11.17 (read, not run)
            fixed_in="2.12.5",
            # a loaded machine spreads the racers' deletes apart: 2.12.1 then answered all 24 once
            intermittent=True,
        ),
    )
}


def finding_for(scenario: str, backend: str) -> KnownFinding | None:
    """The known finding of ``scenario`` on ``backend``, if one is written up."""
    return next((f for f in KNOWN.values() if f.scenario == scenario and backend in f.backends), None)


def judge(
    request: pytest.FixtureRequest,
    *,
    scenario: str,
    backend: str,
    version: str | None,
    lost: int,
    acknowledged: int,
    detail: str,
    replay: str,
    tolerated: str | None = None,
    counts: str | None = None,
) -> None:
    """Return when the guarantee held and no finding says it should not have; otherwise xfail
    (a known finding reproduced) or fail (a new loss, or a known one that stopped reproducing),
    as the module's doc says. ``detail`` says what was seen, ``replay`` how to see it again.
    ``tolerated`` names the window the backend documents a loss in (``lost-in-fsync-window``):
    a loss there is recorded as ``tolerated`` and returns (the suite counts it, shown as such),
    so the version table shows it beside the findings rather than leaving the row out.
    ``counts`` words what ``lost`` of ``acknowledged`` counts where a scenario's harm is not a lost
    write (e.g. deletes answered done that removed nothing), so its messages do not say "lost"."""
    finding = finding_for(scenario, backend)
    documented = finding is not None and finding.window is not None and finding.window == tolerated
    applies = finding is not None and not documented and finding.affects(version)
    server = f"{finding.server if finding else 'server'} {version or '(version unknown)'}"
    verdict = "held" if not lost else "known" if applies else "tolerated" if tolerated else "lost"
    if applies and not lost and not (finding is not None and finding.intermittent):
        verdict = "no longer reproduces"
    request.node.user_properties.append(
        (
            PROPERTY,
            {
                "scenario": scenario,
                "backend": backend,
                "version": version,
                "finding": finding.id if finding else None,
                "verdict": verdict,
                "lost": lost,
                "acknowledged": acknowledged,
                **({"tolerated": tolerated} if tolerated else {}),
                **({"counts": counts} if counts else {}),
            },
        )
    )
    if verdict in ("held", "tolerated"):
        return
    if lost and applies:
        assert finding is not None
        pytest.xfail(
            f"known finding {finding.id} on {server}: {finding.summary} ({finding.docs}; {finding.upstream}): "
            f"{_measured(lost, acknowledged, counts)}: {detail}"
        )
    if lost:
        pytest.fail(
            f"{backend} ({server}){': ' if counts else ' '}{_measured(lost, acknowledged, counts)}"
            f"{'' if counts else ' writes'} in scenario "
            f"{scenario!r}, which no known finding covers on this version: {detail}\nreplay: {replay}",
            pytrace=False,
        )
    assert finding is not None
    pytest.fail(
        f"the known finding {finding.id} no longer reproduces on {server}: {scenario!r}{': ' if counts else ' '}"
        f"{_measured(lost, acknowledged, counts)} ({detail}); it is recorded as affecting {finding.affected()}: "
        f"update {finding.docs.split('#')[0]} and prism_testkit/findings.py (its fixed_in)\nreplay: {replay}",
        pytrace=False,
    )


def _measured(lost: int, acknowledged: int, counts: str | None) -> str:
    """What a scenario measured, in the words of its messages: "lost 3 of 9 acknowledged", or
    "3 of 9 <counts>" where the scenario words its own count."""
    if counts is not None:
        return f"{lost} of {acknowledged} {counts}"
    return f"lost {lost} of {acknowledged} acknowledged" if lost else f"lost nothing of {acknowledged} acknowledged"
