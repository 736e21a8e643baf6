"""The patterns' metrics, scraped over HTTP from prometheus-client (issue 14 §4)."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.errors import ConfigurationError
from prism_testkit.interfaces import Message
from prism_testkit.pattern_sdk.metrics import PatternMetrics, exposition
from prism_testkit.patterns.cdc.cache import CacheMetrics
from prism_testkit.patterns.cdc.connector import CdcMetrics
from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig, ClaimCheckMetrics, ClaimCheckQueue
from prism_testkit.patterns.cqrs import CqrsMetrics
from prism_testkit.patterns.outbox import OutboxMetrics, RelayMetrics
from prism_testkit.patterns.outbox_cdc import PublisherMetrics
from prism_testkit.patterns.tiered_storage.store import TieredStorageMetrics
from prism_testkit.patterns.wal import ApplierMetrics, WalGauges


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_claim_check_in_use_is_scraped_with_its_counts() -> None:
    async def use() -> ClaimCheck:
        driver = open_memstore()
        claim_check = ClaimCheck(driver.objects(), ClaimCheckConfig(threshold=1024, bucket="b"))
        await claim_check.ensure_bucket()
        queue = ClaimCheckQueue(driver.queue(), claim_check)
        for size in (10, 5000, 6000):  # one inline, two claimed
            await queue.send("q", Message(b"x" * size, {}))
        delivery = await queue.receive("q")
        assert delivery is not None
        await queue.ack("q", delivery)
        return claim_check

    claim_check = asyncio.run(use())
    registry = CollectorRegistry()
    exported = PatternMetrics.register(registry)
    exported.track("claim_check", "videos", claim_check.metrics)
    samples = scrape(registry)
    namespace = (("namespace", "videos"),)
    assert samples[("prism_claim_check_claims_created_total", namespace)] == 2
    assert samples[("prism_claim_check_claims_deleted_total", namespace)] == claim_check.metrics.claims_deleted
    assert samples[("prism_claim_check_checksum_mismatches_total", namespace)] == 0

    claim_check.metrics.claims_created += 5  # read at scrape time, never stale
    assert scrape(registry)[("prism_claim_check_claims_created_total", namespace)] == 7
    exported.untrack("claim_check", "videos")
    assert not any(name.startswith("prism_claim_check") for name, _ in scrape(registry))


def test_gauges_dict_fields_and_several_namespaces() -> None:
    @dataclass
    class RelayLike:
        GAUGES: ClassVar[frozenset[str]] = frozenset({"position"})
        published: int = 3
        position: int = 41
        lag_seconds: float = 0.25

    registry = CollectorRegistry()
    exported = PatternMetrics.register(registry)
    exported.track("outbox", "orders", RelayLike())
    exported.track("outbox", "refunds", RelayLike(published=1))
    tiers = TieredStorageMetrics(tier_size={"hot": 100, "cold": 9000}, promotion_count=2)
    exported.track("tiered_storage", "logs", tiers)
    samples = scrape(registry)
    assert samples[("prism_outbox_published_total", (("namespace", "orders"),))] == 3
    assert samples[("prism_outbox_published_total", (("namespace", "refunds"),))] == 1
    assert samples[("prism_outbox_position", (("namespace", "orders"),))] == 41
    assert samples[("prism_outbox_lag_seconds", (("namespace", "orders"),))] == 0.25
    assert samples[("prism_tiered_storage_tier_size", (("namespace", "logs"), ("tier", "cold")))] == 9000
    assert samples[("prism_tiered_storage_promotion_count_total", (("namespace", "logs"),))] == 2


def test_only_metrics_dataclasses_and_plain_names_are_tracked() -> None:
    exported = PatternMetrics()
    with pytest.raises(ConfigurationError, match="metrics dataclass"):
        exported.track("outbox", "n", {"published": 1})
    with pytest.raises(ConfigurationError, match="letters, digits"):
        exported.track("out-box", "n", TieredStorageMetrics())


# --- one exposition per pattern, valid Prometheus text (issue 23 §6) -------------------------

# Every pattern's metrics dataclass, as the collector tracks it: (pattern name, an instance with
# a little of everything set).
EXPOSED = [
    ("cdc", CdcMetrics(events_published=3, replication_lag_seconds=0.25, position=7)),
    ("cdc_cache", CacheMetrics(hits=2, invalidation_lag_seconds=0.5)),
    ("claim_check", ClaimCheckMetrics()),
    ("outbox", OutboxMetrics()),
    ("outbox_relay", RelayMetrics()),
    ("outbox_cdc", PublisherMetrics()),
    ("wal", WalGauges(lag_seconds=1.5, unapplied_entries=4)),
    ("wal_applier", ApplierMetrics()),
    ("tiered_storage", TieredStorageMetrics(tier_size={"hot": 10, "cold": 20}, promotion_count=1)),
    ("cqrs", CqrsMetrics(commands=2)),
]
LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


@pytest.mark.parametrize(("pattern", "metrics"), EXPOSED, ids=[pattern for pattern, _ in EXPOSED])
def test_each_pattern_has_one_valid_exposition_with_help_type_and_base_units(pattern: str, metrics: object) -> None:
    text = exposition(pattern, 'ns "eu"', metrics)
    parsed = list(text_string_to_metric_families(text))
    assert parsed, text
    typed: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            typed[name] = kind
        elif line.startswith("# HELP "):
            helped.add(line.split(" ")[2])
        else:
            sample = LINE.match(line)
            assert sample is not None, f"not a sample line: {line!r}"
            name = sample["name"]
            assert name in typed, f"{name}: sample before its # TYPE"
            assert name in helped, f"{name}: sample before its # HELP"
            assert name.startswith(f"prism_{pattern}_"), name
            assert (typed[name] == "counter") == name.endswith("_total"), f"{name} is a {typed[name]}"
            assert not name.endswith(("_ms", "_ms_total")), f"{name}: seconds are the base unit"
            assert sample["labels"].startswith('namespace="ns \\"eu\\""'), line
    for family in parsed:
        for exported in family.samples:
            assert set(exported.labels) <= {"namespace", *getattr(metrics, "LABELS", {}).values()}, exported


@pytest.mark.parametrize(("pattern", "metrics"), EXPOSED, ids=[pattern for pattern, _ in EXPOSED])
def test_a_pattern_s_own_exposition_is_what_the_collector_exports(pattern: str, metrics: object) -> None:
    registry = CollectorRegistry()
    PatternMetrics.register(registry).track(pattern, "ns", metrics)
    assert samples_of(exposition(pattern, "ns", metrics)) == samples_of(generate_latest(registry).decode())


def samples_of(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_cdc_connector_speaks_the_collector_s_names() -> None:
    """It used to say prism_cdc_events_published{capture=...} and confirmed_position, in ms."""
    text = CdcMetrics(events_published=3, replication_lag_seconds=0.25, position=7).exposition("orders")
    assert 'prism_cdc_events_published_total{namespace="orders"} 3' in text
    assert 'prism_cdc_replication_lag_seconds{namespace="orders"} 0.25' in text
    assert 'prism_cdc_position{namespace="orders"} 7' in text
    assert "# TYPE prism_cdc_events_published_total counter" in text
    assert "capture=" not in text
    assert "_ms" not in text


def test_prism_metrics_writes_each_test_s_final_pattern_metrics_as_one_valid_exposition(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    written = pytester.path / "out" / "metrics.prom"
    written.parent.mkdir()
    result = pytester.runpytest_subprocess(
        "--pyargs",
        "prism_testkit.suites",
        "--prism-pattern=claim_check,cdc",
        "--prism-backend=memstore",
        f"--prism-metrics={written}",
        "-p",
        "no:cacheprovider",
        "-q",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines([f"prism-testkit metrics written to {written}"])
    text = written.read_text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    created = families["prism_claim_check_claims_created"]  # the parser names a counter without _total
    assert created.type == "counter"
    tests = {sample.labels["test"] for sample in created.samples}
    assert any("test_claim_check" in test for test in tests), tests
    assert sum(sample.value for sample in created.samples) > 0  # the claim checks' real, final counts
    for family in families.values():
        assert f"# TYPE {family.samples[0].name if family.type == 'counter' else family.name} {family.type}" in text
        for sample in family.samples:
            assert set(sample.labels) - {"tier", "key", "model"} == {"test", "namespace"}, sample
    series = [(sample.name, tuple(sorted(sample.labels.items()))) for f in families.values() for sample in f.samples]
    assert len(series) == len(set(series)), "a series appears twice"
