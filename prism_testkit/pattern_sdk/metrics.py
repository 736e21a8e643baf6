"""The patterns' counters and gauges, exported through ``prometheus-client`` (the ``metrics``
extra). Usage::

    from prometheus_client import start_http_server
    from prism_testkit.pattern_sdk.metrics import PatternMetrics

    exported = PatternMetrics.register()  # on prometheus_client's default registry
    exported.track("outbox", "orders", relay.metrics)
    exported.track("claim_check", "videos", claim_check.metrics)
    start_http_server(9100)

Every pattern keeps its figures in a plain dataclass (``relay.metrics``, ``claim_check.metrics``
...), so this module needs to know no pattern: a field becomes ``prism_<pattern>_<field>``,
labelled with ``namespace``. An ``int`` field is a counter (``..._total``) unless the dataclass
lists it in a ``GAUGES`` class attribute; a ``float`` field is a gauge; a ``dict`` field is a
gauge with one sample per key, under the label its ``LABELS`` entry names (default ``key``).
Times are in seconds (fields end in ``_seconds``), sizes in bytes: Prometheus' base units.
Values are read at scrape time, so what Prometheus sees is never stale.

This is the only naming rule: a pattern's own text (``CdcMetrics.exposition``,
``WalGauges.prometheus`` ...) is :func:`exposition` over its dataclass, so a scrape, the
``--prism-metrics`` file and a pattern's own output carry the same names and labels.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from prism_testkit.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry


# --- instances created while the harness records (``--prism-metrics``) ----------------------

_recording: list[tuple[str, object]] | None = None
M = TypeVar("M")


def tracked(pattern: str, metrics: M) -> M:
    """``metrics`` (a new pattern instance's dataclass), remembered when the harness records
    which patterns a test used; returned unchanged. Outside a recording it costs one check."""
    if _recording is not None:
        _recording.append((pattern, metrics))
    return metrics


@contextmanager
def recording() -> Iterator[list[tuple[str, object]]]:
    """Collect ``(pattern, metrics)`` of every pattern instance created in the block."""
    global _recording
    previous, _recording = _recording, []
    try:
        yield _recording
    finally:
        _recording = previous


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError("metrics export needs pip install 'prism-testkit[metrics]'") from None
    return prometheus_client


@dataclass
class Family:
    """One metric family: its name without the counter's ``_total``, and its samples."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name


def families(tracked: Iterable[tuple[str, str, object]]) -> list[Family]:
    """The families of ``(pattern, namespace, metrics dataclass)`` triples, merged by name."""
    found: dict[str, Family] = {}

    def family(name: str, kind: Literal["counter", "gauge"], help_text: str, labels: tuple[str, ...]) -> Family:
        if name not in found:
            found[name] = Family(name, kind, help_text, labels)
        return found[name]

    for pattern, namespace, metrics in tracked:
        gauges = set(getattr(metrics, "GAUGES", ()))
        label_names = dict(getattr(metrics, "LABELS", {}))
        for spec in dataclasses.fields(metrics):  # type: ignore[arg-type]
            value = getattr(metrics, spec.name)
            name = f"prism_{pattern}_{spec.name}"
            what = f"{pattern} {spec.name.replace('_', ' ')}"
            if isinstance(value, bool):
                continue
            if isinstance(value, dict):
                label = label_names.get(spec.name, "key")
                gauge = family(name, "gauge", what, ("namespace", label))
                for key, number in value.items():
                    gauge.samples.append(((namespace, str(key)), float(number)))
            elif isinstance(value, int) and spec.name not in gauges:
                family(name, "counter", what, ("namespace",)).samples.append(((namespace,), float(value)))
            elif isinstance(value, int | float):
                family(name, "gauge", what, ("namespace",)).samples.append(((namespace,), float(value)))
    return list(found.values())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value == int(value) and abs(value) < 2**53 else repr(value)


def render(found: Iterable[Family]) -> str:
    """Prometheus' text format (0.0.4): ``# HELP`` and ``# TYPE`` before each family's samples."""
    lines = []
    for family in found:
        lines.append(f"# HELP {family.sample_name} {family.help}")
        lines.append(f"# TYPE {family.sample_name} {family.kind}")
        for values, number in family.samples:
            labels = ",".join(f'{name}="{_escape(value)}"' for name, value in zip(family.labels, values, strict=True))
            lines.append(f"{family.sample_name}{{{labels}}} {_number(number)}")
    return "\n".join(lines) + "\n" if lines else ""


def exposition(pattern: str, namespace: str, metrics: object) -> str:
    """One pattern instance's metrics in Prometheus' text format."""
    return render(families([(pattern, namespace, metrics)]))


def samples(pattern: str, metrics: object) -> dict[str, float]:
    """Sample name -> value of one instance's unlabelled metrics (dict fields are left out)."""
    return {
        family.sample_name: family.samples[0][1]
        for family in families([(pattern, "", metrics)])
        if family.labels == ("namespace",)
    }


class PatternMetrics:
    """A prometheus-client collector over the metrics dataclasses of pattern instances."""

    def __init__(self) -> None:
        self._tracked: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()  # scrapes run on the HTTP server's thread

    @classmethod
    def register(cls, registry: CollectorRegistry | None = None) -> PatternMetrics:
        """A new collector, registered on ``registry`` (default: prometheus_client's own)."""
        client = _client()
        collector = cls()
        (registry if registry is not None else client.REGISTRY).register(collector)
        return collector

    def track(self, pattern: str, namespace: str, metrics: object) -> None:
        """Export ``metrics`` (a pattern's metrics dataclass) as ``prism_<pattern>_*``."""
        if not dataclasses.is_dataclass(metrics) or isinstance(metrics, type):
            raise ConfigurationError(f"track() takes a pattern's metrics dataclass, not {type(metrics).__name__}")
        if not pattern.replace("_", "").isalnum():
            raise ConfigurationError(f"pattern name {pattern!r}: letters, digits and underscores only")
        with self._lock:
            self._tracked[(pattern, namespace)] = metrics

    def untrack(self, pattern: str, namespace: str) -> None:
        with self._lock:
            self._tracked.pop((pattern, namespace), None)

    def describe(self) -> list[Metric]:
        return []  # families depend on what is tracked; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        core = _client().metrics_core
        with self._lock:
            tracked = [(pattern, namespace, metrics) for (pattern, namespace), metrics in self._tracked.items()]
        for family in families(tracked):
            make = core.CounterMetricFamily if family.kind == "counter" else core.GaugeMetricFamily
            exported = make(family.name, family.help, labels=list(family.labels))
            for values, number in family.samples:
                exported.add_metric(list(values), number)
            yield exported


# --- the --prism-metrics file ---------------------------------------------------------------


# untyped (here and below): a family as a user property, plain JSON that xdist carries to the controller
def final_metrics(namespace: str, created: Iterable[tuple[str, object]]) -> list[dict[str, Any]]:
    """The families of the pattern instances one test created, as JSON (xdist carries it to the
    controller). Each instance is labelled with the test's namespace, numbered from the second
    instance of a pattern on (a Hypothesis test makes one per example)."""
    namespace = namespace.rstrip("-")
    seen: dict[str, int] = {}
    tracked = []
    for pattern, metrics in created:
        seen[pattern] = seen.get(pattern, 0) + 1
        tracked.append((pattern, namespace if seen[pattern] == 1 else f"{namespace}#{seen[pattern]}", metrics))
    return [dataclasses.asdict(family) for family in families(tracked)]


def per_test_exposition(per_test: Iterable[tuple[str, list[dict[str, Any]]]]) -> str:
    """One exposition of every test's final metrics, each sample labelled with its ``test``."""
    merged: dict[str, Family] = {}
    for test, found in per_test:
        for record in found:
            labels = ("test", *record["labels"])
            family = merged.setdefault(record["name"], Family(record["name"], record["kind"], record["help"], labels))
            for values, number in record["samples"]:
                family.samples.append(((test, *values), float(number)))
    return render(merged.values())
