"""Namespace files: structure, pattern catalogue rules, needs resolution, JSON Schema."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from prism_testkit import BackendProperties, BackendSpec, Capability, EmbeddedProvisioner, Ordering
from prism_testkit.config.namespace_files import (
    SCHEMA_PATH,
    NamespaceError,
    NamespaceFile,
    load_namespaces,
    namespace_json_schema,
    parse_namespaces,
    schema_text,
)
from prism_testkit.config.units import parse_duration
from prism_testkit.errors import ConfigurationError
from prism_testkit.registry.backends import BackendRegistry, build_registry, make_plugin_manager
from prism_testkit.registry.patterns import DURABLE_LOG_HINT, Complexity, Priority, load_patterns
from tests.outoftree.bagstore import BagDriver

EXAMPLES = sorted((Path(__file__).parents[1] / "examples" / "namespaces").glob("*.yaml"))
MB = 1_000_000
WAL_LOG_HINT = f"{DURABLE_LOG_HINT} (registered backends that fit: kafka, jetstream, postgres, sqlite)"


def spec(
    name: str, *caps: str, durable: bool, max_payload: int | None = None, ordering: Ordering = Ordering.TOTAL
) -> BackendSpec:
    return BackendSpec(
        name=name,
        capabilities=frozenset(Capability(c) for c in caps),
        properties=BackendProperties(durable=durable, max_payload=max_payload, ordering=ordering),
        provisioner=EmbeddedProvisioner(),
        driver=BagDriver,  # never connected here
    )


# Stand-ins for the server backends the RFCs name, so rules are tested independently of what
# is installed (tiered storage's reference store needs compare-and-set and scan, as the real
# postgres and redis drivers declare). Core NATS is pub/sub only and keeps nothing; JetStream is a durable log.
REGISTRY = BackendRegistry(
    specs={
        s.name: s
        for s in [
            spec("kafka", "log", "pubsub", "queue", durable=True, max_payload=1 * MB),
            spec("nats", "pubsub", durable=False, max_payload=8 * MB, ordering=Ordering.NONE),
            spec("jetstream", "log", "pubsub", durable=True, max_payload=8 * MB),
            spec("s3", "objects", "objects.ttl", durable=True),
            spec(
                "postgres",
                "keyvalue",
                "keyvalue.ttl",
                "keyvalue.cas",
                "keyvalue.scan",
                "log",
                "queue",
                "transactions",
                durable=True,
                max_payload=256 * MB,
            ),
            spec("redis", "keyvalue", "keyvalue.ttl", "keyvalue.cas", "keyvalue.scan", durable=False),
            spec("memstore", *[c.value for c in Capability], durable=False),
            spec("sqlite", "keyvalue", "log", "queue", "transactions", durable=True),
        ]
    }
)


def parse(text: str, registry: BackendRegistry = REGISTRY) -> NamespaceFile:
    return parse_namespaces(textwrap.dedent(text), registry, file="ns.yaml")


def problems(text: str, registry: BackendRegistry = REGISTRY) -> list[str]:
    with pytest.raises(NamespaceError) as info:
        parse(text, registry)
    return [str(p) for p in info.value.problems]


def chain_of(text: str) -> list[tuple[str, dict[str, str]]]:
    (ns,) = parse(text).namespaces
    return [(p.name, p.slots) for p in ns.chain]


# --- catalogue ---------------------------------------------------------------------------


def test_catalogue_carries_priority_complexity_and_where_the_reference_store_lives() -> None:
    patterns = load_patterns()
    table = {info.name: (info.priority, info.complexity) for info in patterns}
    assert table == {
        "claim-check": (Priority.P0, Complexity.LOW),
        "outbox": (Priority.P0, Complexity.LOW),
        "wal": (Priority.P1, Complexity.MEDIUM),
        "tiered-storage": (Priority.P1, Complexity.MEDIUM),
        "cdc": (Priority.P1, Complexity.MEDIUM),
        "event-sourcing": (Priority.P2, Complexity.HIGH),
        "cqrs": (Priority.P2, Complexity.HIGH),
        "producer": (Priority.P1, Complexity.MEDIUM),
        "consumer": (Priority.P1, Complexity.LOW),
        "multicast-registry": (Priority.P2, Complexity.MEDIUM),
    }
    assert patterns["tiered-storage"].required_slots == ["hot", "cold", "reference"]
    assert patterns["claim-check"].implemented
    assert patterns["event-sourcing"].implemented
    assert patterns["cqrs"].implemented
    assert patterns["cdc"].implemented


def test_durations() -> None:
    assert parse_duration("30days") == parse_duration("30 days") == 30 * 86400
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_duration("infinite") == float("inf")
    with pytest.raises(ValueError, match="not a duration: 'soon'"):
        parse_duration("soon")


# --- valid files -------------------------------------------------------------------------


def test_explicit_chain_keeps_order_config_and_slots() -> None:
    (ns,) = parse(
        """
        namespaces:
          - name: video-processing
            client_api: queue
            patterns:
              - type: claim-check
                config: {threshold: 512KB, bucket: videos, field: s3_reference}
                slots: {messaging: kafka, objects: s3}
              - type: wal
                config: {retention: 7days}
                slots: {log: jetstream}
        """
    ).namespaces
    assert [p.name for p in ns.chain] == ["claim-check", "wal"]
    claim = ns.chain[0]
    assert claim.slots == {"messaging": "kafka", "objects": "s3"}
    assert claim.config.threshold == 512_000  # type: ignore[attr-defined]
    assert claim.config.field == "s3_reference"  # type: ignore[attr-defined]
    assert ns.chain[1].config.retention == 7 * 86400  # type: ignore[attr-defined]


def test_disabled_entries_are_not_part_of_the_chain() -> None:
    text = """
    namespaces:
      - name: q
        client_api: queue
        patterns:
          - {type: claim-check, config: {threshold: 1MB, bucket: b}, slots: {messaging: kafka, objects: s3}}
          - {type: tiered-storage, enabled: false}
    """
    assert [name for name, _ in chain_of(text)] == ["claim-check"]


@pytest.mark.parametrize(
    ("needs", "backends", "expected"),
    [
        # 100MB does not fit Kafka's 1MB: claim check
        (
            "{max_message_size: 100MB}",
            "{messaging: kafka, objects: s3}",
            [("claim-check", {"messaging": "kafka", "objects": "s3"})],
        ),
        # 5MB fits JetStream's 8MB: nothing to add
        ("{max_message_size: 5MB}", "{messaging: jetstream, objects: s3}", []),
        # transactional publish: outbox; strong durability: WAL on the messaging log
        (
            "{transactional: true, durability: strong}",
            "{store: postgres, messaging: jetstream}",
            [("outbox", {"store": "postgres", "sink": "jetstream"}), ("wal", {"log": "jetstream"})],
        ),
        # large + transactional (RFC-014 pattern 5): claim check outside the outbox
        (
            "{consistency: strong, max_message_size: 5GB}",
            "{store: postgres, messaging: kafka, objects: s3}",
            [
                ("claim-check", {"messaging": "kafka", "objects": "s3"}),
                ("outbox", {"store": "postgres", "sink": "kafka"}),
            ],
        ),
        # replay on a dedicated log; long retention: tiered storage with its reference store named
        (
            "{replay: enabled, retention: 30days}",
            "{messaging: kafka, log: jetstream, hot: redis, cold: s3, reference: postgres}",
            [
                ("wal", {"log": "jetstream"}),
                ("tiered-storage", {"hot": "redis", "cold": "s3", "reference": "postgres"}),
            ],
        ),
    ],
)
def test_needs_resolve_to_an_ordered_chain(
    needs: str, backends: str, expected: list[tuple[str, dict[str, str]]]
) -> None:
    text = f"""
    namespaces:
      - name: ns
        client_api: queue
        needs: {needs}
        backends: {backends}
    """
    assert chain_of(text) == expected


def test_resolved_claim_check_is_configured_from_the_needs() -> None:
    (ns,) = parse(
        """
        namespaces:
          - name: videos
            client_api: pubsub
            needs: {max_message_size: 5GB, retention: 3days}
            backends: {messaging: kafka, objects: s3, hot: redis, cold: s3, reference: postgres}
            pattern_config:
              claim-check: {field: video-ref}
        """
    ).namespaces
    claim = ns.chain[0]
    assert claim.reason == "max_message_size 5000000000 > kafka max_payload 1000000"
    assert claim.config.model_dump(include={"bucket", "max_payload", "on_consume", "ttl", "field", "threshold"}) == {
        "bucket": "videos-claims",
        "max_payload": 5_000_000_000,
        "on_consume": "keep",  # pub/sub: every subscriber reads the same object
        "ttl": 3 * 86400.0,
        "field": "video-ref",
        "threshold": 1 * MB - 64 * 1024,  # room for the reference header under Kafka's limit
    }


def test_examples_are_valid_with_the_real_registry() -> None:
    registry = build_registry(make_plugin_manager())
    assert len(EXAMPLES) >= 2
    for example in EXAMPLES:
        assert load_namespaces(example, registry).namespaces


def test_wal_accepts_sqlite_and_rejects_memstore_in_the_real_registry() -> None:
    registry = build_registry(make_plugin_manager())
    text = """
    namespaces:
      - name: w
        client_api: queue
        patterns:
          - {type: wal, slots: {log: %s}}
    """
    assert parse(text % "sqlite", registry).namespaces[0].chain[0].slots == {"log": "sqlite"}
    (message,) = problems(text % "memstore", registry)
    assert message.startswith(
        "ns.yaml: namespaces[0].patterns[0].slots.log: slot 'log' of wal expects a backend with log; durable, "
        "found 'memstore' ("
    )
    assert "; not durable); acknowledged entries must survive a crash" in message


# --- errors ------------------------------------------------------------------------------


def test_invalid_yaml_names_the_line() -> None:
    assert problems("namespaces:\n  - name: x\n    client_api: [queue\n") == [
        "ns.yaml: (root): invalid YAML: expected ',' or ']', but got '<stream end>' (line 4)"
    ]


# 1,000 levels in about 2 KB: a RecursionError in PyYAML's composer before the depth check.
DEEP_FLOW = "namespaces: " + "[" * 1000 + "]" * 1000 + "\n"
DEEP_JSON = '{"namespaces": ' + '{"a": ' * 1000 + "1" + "}" * 1001
DEEP_BLOCK = "namespaces:\n" + "".join(" " * level + "- \n" for level in range(1000))
TIER_RULE_5000_PARENS = """
namespaces:
  - name: deep
    client_api: keyvalue
    patterns:
      - type: tiered-storage
        config:
          rules: [{condition: "%s", action: demote_to_cold}]
        slots: {hot: memstore, cold: localfs, reference: sqlite}
""" % ("(" * 5000 + "age > 1d" + ")" * 5000)


@pytest.mark.parametrize(
    ("text", "line"), [(DEEP_FLOW, 1), (DEEP_JSON, 1), (DEEP_BLOCK, 65)], ids=["flow", "json", "block"]
)
def test_a_file_nested_too_deeply_is_one_problem_not_a_recursion_error(text: str, line: int) -> None:
    assert problems(text) == [f"ns.yaml: (root): nested more than 64 levels deep (mappings and lists) (line {line})"]


def _alias_bomb(levels: int) -> str:
    """About 600 bytes whose aliases of aliases expand to 10**levels values ("billion laughs")."""
    anchors = ['          b0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    anchors += [f"          b{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return (
        "namespaces:\n  - name: n\n    client_api: queue\n    patterns:\n      - type: claim-check\n"
        "        slots: {messaging: memstore, objects: memstore}\n        config:\n"
        + "\n".join(anchors)
        + f"\n          threshold: *a{levels}\n"
    )


def test_aliases_that_expand_past_the_limit_are_one_problem_not_a_hang() -> None:
    assert problems(_alias_bomb(8)) == [
        "ns.yaml: (root): more than 100,000 values once its aliases are expanded (line 12)"
    ]


def test_aliases_within_the_limit_are_read_as_usual() -> None:
    found = problems(_alias_bomb(2))  # 100 values: only the pattern's config is wrong
    assert found
    assert all("config" in problem for problem in found)


def test_a_tiering_rule_nested_too_deeply_is_one_problem_not_a_recursion_error() -> None:
    (problem,) = problems(TIER_RULE_5000_PARENS, build_registry(make_plugin_manager()))
    assert "config.rules[0].condition: rule ...'(((" in problem
    assert "expected at most 32 nested parentheses and NOTs, found '('" in problem
    assert len(problem) < 300  # the 10 KB rule is not echoed whole


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "ns.yaml: (root): expected a mapping with a 'namespaces' list, found an empty file"),
        ("- a\n", "ns.yaml: (root): expected a mapping with a 'namespaces' list, found a list"),
        (
            "namespaces: []\n",
            "ns.yaml: namespaces: List should have at least 1 item after validation, not 0, found [] (line 1)",
        ),
        ("namespaces: {}\n", "ns.yaml: namespaces: Input should be a valid list, found {} (line 1)"),
    ],
)
def test_file_level_structure(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_wrong_types_are_reported_per_namespace_with_their_paths() -> None:
    assert problems(
        """
        namespaces:
          - name: Bad_Name
            client_api: sideways
            patterns: {type: wal}
          - name: ok
            client_api: queue
            patterns:
              - type: wal
                slots: {log: [kafka, s3]}
                colour: red
          - name: needy
            client_api: queue
            needs: {max_message_size: huge, replay: maybe, write_rps: 5000}
            backends: {messaging: kafka}
        """
    ) == [
        "ns.yaml: namespaces[0].name: String should match pattern '^[a-z][a-z0-9-]*$', found 'Bad_Name' (line 3)",
        "ns.yaml: namespaces[0].client_api: Input should be 'queue', 'pubsub', 'keyvalue', 'reader' or 'transact', "
        "found 'sideways' (line 4)",
        "ns.yaml: namespaces[0].patterns: Input should be a valid list, found {'type': 'wal'} (line 5)",
        "ns.yaml: namespaces[1].patterns[0].slots.log: Input should be a valid string, found ['kafka', 's3'] (line 10)",
        "ns.yaml: namespaces[1].patterns[0].colour: unknown field, expected one of: type, enabled, config, slots "
        "(line 11)",
        "ns.yaml: namespaces[2].needs.max_message_size: not a size: 'huge' (use bytes, or e.g. 512KB, 1MB, 8MiB) "
        "(line 14)",
        "ns.yaml: namespaces[2].needs.replay: Input should be a valid boolean, unable to interpret input, "
        "found 'maybe' (line 14)",
        "ns.yaml: namespaces[2].needs.write_rps: unknown field, expected one of: durability, consistency, "
        "max_message_size, retention, replay, ordered, transactional, delivery_guarantee, audit, deduplication "
        "(line 14)",
    ]


def test_patterns_and_needs_are_exclusive_and_names_unique() -> None:
    assert problems(
        """
        namespaces:
          - name: a
            client_api: queue
          - name: a
            client_api: queue
            patterns: []
            backends: {messaging: kafka}
        """
    ) == [
        "ns.yaml: namespaces[0]: expected either 'patterns:' (an ordered list) or 'needs:', found neither (line 3)",
        "ns.yaml: namespaces[1].backends: 'backends:' goes with 'needs:'; with 'patterns:' give each pattern its own "
        "slots (line 8)",
        "ns.yaml: namespaces[1].name: duplicate namespace name 'a' (also namespaces[0]) (line 5)",
    ]


def test_unknown_pattern_unknown_backend_multi_and_missing_slot() -> None:
    assert problems(
        """
        namespaces:
          - name: q
            client_api: queue
            patterns:
              - type: claim-chek
              - type: claim-check
                config: {threshold: 1MB, bucket: b}
                slots: {messaging: multi}
              - type: wal
                slots: {log: kinesis}
        """
    ) == [
        "ns.yaml: namespaces[0].patterns[0].type: unknown pattern 'claim-chek' (expected one of: consumer, producer, "
        "claim-check, outbox, wal, tiered-storage, cqrs, cdc, event-sourcing, multicast-registry) (line 6)",
        "ns.yaml: namespaces[0].patterns[1].slots.messaging: 'multi' is not a backend: name the one registered backend "
        "that fills slot 'messaging', expected a backend with log or pubsub or queue (registered backends that fit: "
        "kafka, nats, jetstream, postgres, memstore, sqlite) (line 9)",
        "ns.yaml: namespaces[0].patterns[1].slots.objects: missing slot 'objects' of claim-check: expected a backend "
        "with objects (registered backends that fit: s3, memstore) (line 9)",
        "ns.yaml: namespaces[0].patterns[2].slots.log: unknown backend 'kinesis' (registered backends: jetstream, "
        "kafka, memstore, nats, postgres, redis, s3, sqlite) (line 11)",
    ]


def test_event_sourcing_conflicts_with_outbox() -> None:
    assert problems(
        """
        namespaces:
          - name: ledger
            client_api: transact
            patterns:
              - {type: outbox, slots: {store: postgres, sink: kafka}}
              - {type: event-sourcing, slots: {store: postgres}}
        """
    ) == [
        "ns.yaml: namespaces[0].patterns[1].type: pattern 'event-sourcing' conflicts with 'outbox' (RFC-009 "
        "compatibility matrix: both define where events are stored); expected one of them, found both (line 7)"
    ]


def test_event_sourcing_conflicts_with_wal() -> None:
    assert problems(
        """
        namespaces:
          - name: ledger
            client_api: transact
            patterns:
              - {type: wal, slots: {log: postgres}}
              - {type: event-sourcing, slots: {store: sqlite}}
        """
    ) == [
        "ns.yaml: namespaces[0].patterns[1].type: pattern 'event-sourcing' conflicts with 'wal' (RFC-009 "
        "compatibility matrix: both define where events are stored); expected one of them, found both (line 7)"
    ]


def test_event_sourcing_store_needs_transactions_and_durability() -> None:
    found = problems(
        """
        namespaces:
          - name: ledger
            client_api: transact
            patterns:
              - {type: event-sourcing, slots: {store: kafka}}
        """
    )
    assert len(found) == 1
    assert found[0].startswith(
        "ns.yaml: namespaces[0].patterns[0].slots.store: slot 'store' of event-sourcing expects a backend with "
        "keyvalue and log and transactions; durable, found 'kafka'"
    )


def test_event_sourcing_with_cqrs_is_accepted_and_configures_the_store() -> None:
    (ns,) = parse(
        """
        namespaces:
          - name: ledger
            client_api: transact
            patterns:
              - type: event-sourcing
                slots: {store: postgres, views: redis}
                config: {name: bank, snapshot_interval: 20}
              - {type: cqrs, slots: {write: postgres, read: redis, sync: kafka}}
        """
    ).namespaces
    assert [p.name for p in ns.chain] == ["event-sourcing", "cqrs"]
    (es,) = [p for p in ns.chain if p.name == "event-sourcing"]
    assert es.config.name == "bank"  # type: ignore[attr-defined]
    assert es.config.snapshot_interval == 20  # type: ignore[attr-defined]


def test_event_sourcing_refuses_a_finite_retention() -> None:
    (found,) = problems(
        """
        namespaces:
          - name: ledger
            client_api: transact
            patterns:
              - {type: event-sourcing, slots: {store: postgres}, config: {retention: 7days}}
        """
    )
    assert "retention" in found
    assert "keeps every event" in found


def test_wal_rejects_core_nats_and_a_backend_without_a_log() -> None:
    assert problems(
        """
        namespaces:
          - name: w1
            client_api: queue
            patterns: [{type: wal, slots: {log: nats}}]
          - name: w2
            client_api: queue
            patterns: [{type: wal, slots: {log: s3}}]
        """
    ) == [
        "ns.yaml: namespaces[0].patterns[0].slots.log: slot 'log' of wal expects a backend with log; durable, found "
        f"'nats' (pubsub; not durable; max_payload 8000000); {WAL_LOG_HINT} (line 5)",
        "ns.yaml: namespaces[1].patterns[0].slots.log: slot 'log' of wal expects a backend with log; durable, found "
        f"'s3' (objects, objects.ttl; durable); {WAL_LOG_HINT} (line 8)",
    ]


def test_claim_check_must_be_outer_to_the_pattern_storing_messages() -> None:
    assert problems(
        """
        namespaces:
          - name: releases
            client_api: pubsub
            patterns:
              - {type: outbox, slots: {store: postgres, sink: kafka}}
              - type: claim-check
                config: {threshold: 10MB, bucket: models, on_consume: delete}
                slots: {messaging: kafka, objects: s3}
        """
    ) == [
        "ns.yaml: namespaces[0].patterns[1].type: pattern 'claim-check' must come before 'outbox' (outer to it), "
        "found it after: the payload must be claimed before a store keeps the message, so the store holds only the "
        "reference (line 7)",
        "ns.yaml: namespaces[0].patterns[1].config.on_consume: claim check under pub/sub expects on_consume: keep "
        "(with a ttl), found 'delete': fan-out hands one reference to every subscriber, and the first to delete the "
        "object breaks the others (line 8)",
        "ns.yaml: namespaces[0].patterns[1].config.threshold: expected a threshold at most the messaging backend's "
        "max_payload (1000000 bytes of 'kafka'), found 10000000: payloads in between would be sent inline and "
        "rejected (line 8)",
    ]


def test_config_errors_and_client_api_mismatch() -> None:
    assert problems(
        """
        namespaces:
          - name: kv
            client_api: keyvalue
            patterns:
              - type: claim-check
                config: {threshold: 1MB, compression: zstd}
                slots: {messaging: kafka, objects: s3}
        """
    ) == [
        "ns.yaml: namespaces[0].patterns[0].type: pattern 'claim-check' cannot sit under client_api 'keyvalue' "
        "(expected one of: pubsub, queue, transact) (line 6)",
        "ns.yaml: namespaces[0].patterns[0].config.bucket: required field is missing (line 7)",
        "ns.yaml: namespaces[0].patterns[0].config.compression: Input should be 'none' or 'gzip', found 'zstd' "
        "(line 7)",
    ]


def test_needs_that_the_named_backends_cannot_satisfy() -> None:
    assert problems(
        """
        namespaces:
          - name: big
            client_api: queue
            needs: {max_message_size: 100MB}
            backends: {messaging: kafka}
          - name: safe
            client_api: queue
            needs: {durability: strong, ordered: true}
            backends: {messaging: nats, objekts: s3}
          - name: audited
            client_api: transact
            needs: {audit: true, transactional: true}
            backends: {store: postgres, messaging: kafka, log: jetstream}
        """
    ) == [
        "ns.yaml: namespaces[0].backends: max_message_size resolves to claim-check, whose slot 'objects' needs "
        "objects: expected 'objects' in backends (registered backends that fit: s3, memstore) (line 6)",
        "ns.yaml: namespaces[1].backends.objekts: unknown role 'objekts' (expected one of: cold, hot, log, messaging, "
        "objects, read, reference, registry, state, store, target, views, warm) (line 10)",
        "ns.yaml: namespaces[1].backends.messaging: durability: strong needs every backend to keep acknowledged "
        "writes across a restart: expected a durable backend, found 'nats' (durable: false) (line 10)",
        "ns.yaml: namespaces[1].backends.messaging: ordered: true needs ordered delivery: expected ordering per-key "
        "or total, found 'nats' (ordering: none) (line 10)",
        "ns.yaml: namespaces[1].backends.messaging: slot 'log' of wal expects a backend with log; durable, found "
        f"'nats' (pubsub; not durable; max_payload 8000000); {WAL_LOG_HINT} (line 10)",
        "ns.yaml: namespaces[2].needs.audit: pattern 'event-sourcing' conflicts with 'outbox' (RFC-009 "
        "compatibility matrix: both define where events are stored); expected one of them, found both (line 13)",
    ]


def test_error_is_a_configuration_error_listing_every_problem() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse("namespaces:\n  - name: a\n    client_api: queue\n    patterns: [{type: nope}, {type: nada}]\n")
    assert isinstance(info.value, NamespaceError)
    text = str(info.value)
    assert text.startswith("2 problems in namespace configuration:\n")
    assert "namespaces[0].patterns[0].type: unknown pattern 'nope'" in text
    assert "namespaces[0].patterns[1].type: unknown pattern 'nada'" in text


def test_credentials_never_appear_in_problems() -> None:
    (message,) = problems(
        """
        namespaces:
          - name: q
            client_api: queue
            patterns:
              - type: claim-check
                config: {threshold: 1KB, bucket: b, compression: "postgresql://app:s3cret@db/x"}
                slots: {messaging: kafka, objects: s3}
        """
    )
    assert message == (
        "ns.yaml: namespaces[0].patterns[0].config.compression: Input should be 'none' or 'gzip', "
        "found 'postgresql://app:***@db/x' (line 7)"
    )


# --- JSON Schema -------------------------------------------------------------------------


def test_schema_file_is_in_sync() -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "regenerate: prism-testkit schema > prism_testkit/config/namespace.schema.json"
    )


def test_schema_accepts_the_examples_and_rejects_multi() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = namespace_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    for example in EXAMPLES:
        assert list(validator.iter_errors(yaml.safe_load(example.read_text()))) == [], example
    multi = {
        "namespaces": [
            {
                "name": "x",
                "client_api": "queue",
                "patterns": [{"type": "wal", "slots": {"log": "multi"}}],
            }
        ]
    }
    assert list(validator.iter_errors(multi))
    assert json.loads(json.dumps(schema)) == schema


def test_outbox_published_by_cdc_needs_a_store_with_a_change_feed() -> None:
    text = """
        namespaces:
          - name: orders
            client_api: queue
            patterns:
              - type: outbox
                config: {publisher: {mode: cdc}}
                slots: {store: %s, sink: kafka}
        """
    assert problems(text % "postgres") == [
        "ns.yaml: namespaces[0].patterns[0].config.publisher.mode: publisher mode 'cdc' publishes what the store's "
        "change feed captures, but store 'postgres' has no change feed (backends with one: PostgreSQL logical "
        "decoding, SQLite, memstore); use mode 'relay' or such a store (line 7)"
    ]
    (outbox,) = parse(text % "memstore").namespaces[0].chain
    assert outbox.config.publisher.mode == "cdc"  # type: ignore[attr-defined]
    real = build_registry(make_plugin_manager())
    assert parse(text.replace("kafka", "memstore") % "sqlite", real).namespaces[0].chain[0].slots["store"] == "sqlite"
