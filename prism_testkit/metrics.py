"""The patterns' counters and gauges, exported through ``prometheus-client`` (the ``metrics``
extra). Usage::

    from prometheus_client import start_http_server
    from prism_testkit.metrics import PatternMetrics

    exported = PatternMetrics.register()  # on prometheus_client's default registry
    exported.track("outbox", "orders", relay.metrics)
    exported.track("claim_check", "videos", claim_check.metrics)
    start_http_server(9100)

Every pattern keeps its figures in a plain dataclass (``relay.metrics``, ``claim_check.metrics``
...), so this module needs to know no pattern: a field becomes ``prism_<pattern>_<field>``,
labelled with ``namespace``. An ``int`` field is a counter (``..._total``) unless the dataclass
lists it in a ``GAUGES`` class attribute; a ``float`` field is a gauge; a ``dict`` field is a
gauge with one sample per key, under the label its ``LABELS`` entry names (default ``key``).
Values are read at scrape time, so what Prometheus sees is never stale.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prism_testkit.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigurationError("metrics export needs pip install 'prism-testkit[metrics]'") from None
    return prometheus_client


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
            tracked = list(self._tracked.items())
        families: dict[str, Any] = {}

        def family(name: str, kind: str, help_text: str, labels: list[str]) -> Any:
            if name not in families:
                make = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
                families[name] = make(name, help_text, labels=labels)
            return families[name]

        for (pattern, namespace), metrics in tracked:
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
                    gauge = family(name, "gauge", what, ["namespace", label])
                    for key, number in value.items():
                        gauge.add_metric([namespace, str(key)], float(number))
                elif isinstance(value, int) and spec.name not in gauges:
                    family(name, "counter", what, ["namespace"]).add_metric([namespace], value)
                elif isinstance(value, int | float):
                    family(name, "gauge", what, ["namespace"]).add_metric([namespace], float(value))
        yield from families.values()
