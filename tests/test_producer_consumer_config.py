"""The producer and consumer registrations: namespace files (explicit lists and ``needs:``)
resolve to them with their own config models, and what cannot work is reported."""

from __future__ import annotations

import textwrap

import pytest

from prism_testkit.config.namespace_files import NamespaceError, NamespaceFile, parse_namespaces
from prism_testkit.patterns.consumer import ConsumerConfig
from prism_testkit.patterns.producer import ProducerConfig
from prism_testkit.registry.backends import build_registry, make_plugin_manager
from prism_testkit.registry.patterns import load_patterns

REGISTRY = build_registry(make_plugin_manager())


def parse(text: str) -> NamespaceFile:
    return parse_namespaces(textwrap.dedent(text), REGISTRY, file="ns.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(NamespaceError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_both_are_registered_with_their_suites() -> None:
    patterns = load_patterns()
    assert patterns["producer"].config is ProducerConfig
    assert patterns["consumer"].config is ConsumerConfig
    assert patterns["producer"].required_slots == ["sink"]
    assert patterns["consumer"].required_slots == ["source", "state"]
    assert {"producer", "producer_consumer"} <= set(patterns["producer"].suites)
    assert {"consumer", "producer_consumer"} <= set(patterns["consumer"].suites)
    names = patterns.names
    assert names.index("producer") < names.index("claim-check") < names.index("outbox")
    assert names.index("consumer") < names.index("claim-check")


def test_an_explicit_chain_configures_the_real_producer() -> None:
    (ns,) = parse(
        """
        namespaces:
          - name: orders
            client_api: queue
            patterns:
              - type: producer
                config: {destination: orders, batch_size: 50, batch_interval: 20ms, deduplication: true,
                         dedup_window: 10m}
                slots: {sink: redis, state: redis}
        """
    ).namespaces
    (producer,) = ns.chain
    assert isinstance(producer.config, ProducerConfig)
    assert (producer.config.batch_size, producer.config.batch_interval, producer.config.dedup_window) == (
        50,
        0.02,
        600.0,
    )
    assert producer.slots == {"sink": "redis", "state": "redis"}


def test_deduplication_without_a_state_slot_is_a_problem() -> None:
    (message,) = problems(
        """
        namespaces:
          - name: orders
            client_api: queue
            patterns:
              - type: producer
                config: {deduplication: true}
                slots: {sink: redis}
        """
    )
    assert "deduplication keeps its marks in the 'state' slot" in message


def test_needs_resolve_to_producer_and_consumer() -> None:
    (ns,) = parse(
        """
        namespaces:
          - name: payments
            client_api: queue
            needs: {deduplication: 2m, delivery_guarantee: at_least_once}
            backends: {messaging: postgres, state: redis}
        """
    ).namespaces
    chain = {p.name: p for p in ns.chain}
    assert list(chain) == ["consumer", "producer"]
    producer, consumer = chain["producer"], chain["consumer"]
    assert isinstance(producer.config, ProducerConfig)
    assert (producer.config.deduplication, producer.config.dedup_window, producer.config.destination) == (
        True,
        120.0,
        "payments",
    )
    assert producer.slots == {"sink": "postgres", "state": "redis"}
    assert isinstance(consumer.config, ConsumerConfig)
    assert (consumer.config.source, consumer.config.name) == ("payments", "payments")
    assert consumer.slots == {"source": "postgres", "state": "redis"}


def test_an_at_least_once_consumer_needs_a_state_backend() -> None:
    (message,) = problems(
        """
        namespaces:
          - name: jobs
            client_api: queue
            needs: {delivery_guarantee: at_least_once}
            backends: {messaging: redis}
        """
    )
    assert "resolves to consumer, whose slot 'state' needs keyvalue: expected 'state' in backends" in message
