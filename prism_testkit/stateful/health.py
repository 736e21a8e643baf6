"""A cluster handed from test to test: proved fit for the next one, or rebuilt.

A test may leave a cluster in a state the harness cannot prove equal across its nodes: a known
finding reproduced (nats-server #7556: a node forgets the streams it recorded), copies that stay
apart after the heal, the leftovers of a failed test. Handed on, that damage turns into reds of
tests that did nothing wrong. Jepsen's rule is one test, one fresh cluster; starting one per test
would cost what a healthy cluster never needs, so a cluster is checked where damage may have
happened and rebuilt only where it did (:func:`ensure_healthy`):

* damage a test named (:meth:`~prism_testkit.runtime.PrismRuntime.mark_damaged`: a loss judged
  by :mod:`prism_testkit.findings`, streams outside an example's namespace still apart) is
  rebuilt before the cluster serves again;
* a cluster a failed test ran on, one whose nodes were killed since it was last checked, and
  every cluster at the start of a stateful example must show converged copies, or be rebuilt
  (named against the test that used it last).

What is rebuilt is reported (:data:`PROPERTY`, the report's ``rebuilt``): before which test, left
by which, and why. A cluster that cannot be rebuilt (given by URL) and is damaged raises
:class:`InheritedDamage`: at the start of a stateful example the failure does not depend on the
example's steps, so it stops at once, unshrunk (:meth:`StatefulRun.execute` reports it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from prism_testkit.errors import ProvisioningError
from prism_testkit.patience import Unsettled
from prism_testkit.stateful.checkers.replicas import describe_divergence
from prism_testkit.stateful.nemesis import settled_divergence

if TYPE_CHECKING:
    from prism_testkit.provision.cluster import ClusterContract
    from prism_testkit.runtime.env import PrismEnv

PROPERTY = "prism_rebuilt"  # user property: the clusters rebuilt before a test or one of its examples


@dataclass(frozen=True)
class Rebuilt:
    """A cluster rebuilt before ``before`` ran (or one of its examples), because ``left_by``
    left it damaged: ``why``."""

    backend: str
    left_by: str
    why: str
    before: str

    def describe(self) -> str:
        return f"{self.backend} rebuilt before {self.before}: left damaged by {self.left_by}: {self.why}"


class InheritedDamage(KeyboardInterrupt):
    """A damaged cluster found before an example's first step that could not be rebuilt.

    A ``KeyboardInterrupt`` on purpose: Hypothesis shrinks any ``Exception``, and a failure that
    does not depend on the example's steps would be shrunk for minutes; an interrupt it passes
    through at once. :meth:`~prism_testkit.stateful.runner.StatefulRun.execute` catches it and
    fails the test with it as ``inherited``; it never reaches pytest as an interrupt."""

    def __init__(self, found: str) -> None:
        super().__init__(found)
        self.found = found

    def __str__(self) -> str:
        return f"inherited: found at the start: {self.found}"


def clusters_of(env: PrismEnv) -> Iterator[tuple[str, ClusterContract]]:
    """The combination's backends that are clusters, each once."""
    for backend in dict.fromkeys(env.combination.slots.values()):
        cluster = env.runtime.endpoint(backend).cluster
        if cluster is not None:
            yield backend, cluster


def ensure_healthy(env: PrismEnv, test: str, *, always: bool = False) -> list[Rebuilt]:
    """Rebuild each cluster of ``env``'s combination that is named damaged, or that may be
    damaged (a failed test ran on it, its nodes were killed since the last check, or
    ``always``) and whose copies do not converge. What was rebuilt; raises
    :class:`InheritedDamage` for damage that cannot be rebuilt away."""
    runtime = env.runtime
    rebuilt = []
    for backend, cluster in list(clusters_of(env)):
        why = runtime.damaged.get(backend) or _divergence(env, backend, cluster, always)
        if why is not None:
            left_by, what = why
            try:
                runtime.rebuild(backend)
                runtime.driver(backend)
            except ProvisioningError as exc:
                raise InheritedDamage(f"{backend}, left damaged by {left_by}: {what} (not rebuilt: {exc})") from None
            rebuilt.append(Rebuilt(backend, left_by, what, test))
            cluster = runtime.endpoint(backend).cluster or cluster
        runtime.suspect.discard(backend)
        runtime.kills_checked[backend] = cluster.kills
    return rebuilt


def note_used(env: PrismEnv, test: str) -> None:
    """``test`` used ``env``'s clusters last (an example of it ended, or it did): damage found
    from now on, before another test names it, is named against it."""
    for backend, _ in clusters_of(env):
        env.runtime.last_test[backend] = test


def _divergence(env: PrismEnv, backend: str, cluster: ClusterContract, always: bool) -> tuple[str, str] | None:
    """(who left it, what is apart) when ``cluster``'s copies do not converge, where a check is due."""
    runtime = env.runtime
    due = always or backend in runtime.suspect or runtime.kills_checked.get(backend) != cluster.kills
    if not due or cluster.stream_states is None:
        return None
    left_by = runtime.last_test.get(backend, "the run's start")
    try:
        found = settled_divergence(cluster.stream_states)
    except Unsettled as exc:
        return left_by, f"copies still changing: {exc}"
    return (left_by, f"replicas still apart: {describe_divergence(found)}") if found else None


def as_properties(rebuilt: list[Rebuilt]) -> list[dict[str, str]]:
    return [asdict(entry) for entry in rebuilt]
