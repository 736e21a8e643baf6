"""The patterns' metrics, scraped over HTTP from prometheus-client (issue 14 §4)."""

from __future__ import annotations

import asyncio
import urllib.request
from dataclasses import dataclass
from typing import ClassVar

import pytest
from prism_testkit.backends.memstore import open_memstore
from prism_testkit.patterns.claim_check import ClaimCheck, ClaimCheckConfig, ClaimCheckQueue
from prism_testkit.patterns.tiered_storage.store import TieredStorageMetrics
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from prism_testkit.errors import ConfigurationError
from prism_testkit.interfaces import Message
from prism_testkit.metrics import PatternMetrics


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
