"""Unit tests of patterns.cqrs and patterns.cqrs_cdc wiring and configuration (the behaviour is
proved by prism_testkit/suites/test_cqrs.py and prism_testkit/suites/test_cqrs_cdc.py)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from prism_testkit.backends.memstore import open_memstore
from prism_testkit.config.namespace_files import NamespaceError, parse_namespaces
from prism_testkit.errors import ConfigurationError
from prism_testkit.patterns.cdc import CdcConfig
from prism_testkit.patterns.cqrs import Cqrs, CqrsConfig, UnknownReadModel
from prism_testkit.patterns.cqrs_cdc import CdcCqrs, CdcReadModel, RowChange, Rows, RowWriteModel
from prism_testkit.patterns.event_sourcing import (
    EventSourcingConfig,
    EventSourcingConfigurationError,
    EventStore,
    KeyValueViews,
    ProjectionRunner,
    RecordedEvent,
    Repository,
    ViewWriter,
)
from prism_testkit.registry.backends import build_registry, make_plugin_manager


class Nothing:
    snapshot_schema = 1

    def initial(self) -> dict[str, int]:
        return {}

    def apply(self, state: dict[str, int], event: RecordedEvent) -> dict[str, int]:
        return state


async def ignore(views: ViewWriter, event: RecordedEvent) -> None:
    return None


def store(name: str) -> EventStore:
    mem = open_memstore()
    return EventStore(mem.transactions(), mem.log(), mem.keyvalue(), EventSourcingConfig(name=name))


def test_read_models_must_exist_and_follow_the_write_models_store() -> None:
    write = store("bank")
    with pytest.raises(EventSourcingConfigurationError, match="at least one read model"):
        Cqrs(Repository(write, Nothing()), {})
    other = store("elsewhere")
    runner = ProjectionRunner(other, KeyValueViews(other.kv, "v"), ignore)
    with pytest.raises(ConfigurationError, match=r"\['v'\] follow another event store"):
        Cqrs(Repository(write, Nothing()), {"v": runner})


def test_an_unknown_read_model_names_the_known_ones() -> None:
    write = store("bank")
    cqrs = Cqrs(Repository(write, Nothing()), {"v": ProjectionRunner(write, KeyValueViews(write.kv, "v"), ignore)})
    error = UnknownReadModel("w", sorted(cqrs.read_models))
    assert str(error) == "no read model 'w'; known: v"


def test_config_refuses_non_positive_durations() -> None:
    assert CqrsConfig(lag_tolerance="500ms").lag_tolerance == pytest.approx(0.5)  # type: ignore[arg-type]  # text, parsed by the validator
    with pytest.raises(ValidationError):
        CqrsConfig(read_your_writes_timeout=0)


# --- CQRS fed by CDC: namespace files and wiring -------------------------------------------

REAL = build_registry(make_plugin_manager())


def cqrs_problems(slots: str, config: str = "{sync_from: cdc}") -> list[str]:
    text = f"""
namespaces:
  - name: catalog
    client_api: keyvalue
    patterns:
      - {{type: cqrs, slots: {slots}, config: {config}}}
"""
    with pytest.raises(NamespaceError) as info:
        parse_namespaces(text, REAL, file="catalog.yaml")
    return [str(p) for p in info.value.problems]


def test_a_namespace_configures_a_cdc_fed_read_model() -> None:
    text = """
namespaces:
  - name: catalog
    client_api: keyvalue
    patterns:
      - type: cqrs
        slots: {source: postgres, read: redis}
        config: {sync_from: cdc, lag_tolerance: 1s, cdc: {capture: catalog, prefix: "catalog/", batch_size: 50}}
"""
    (ns,) = parse_namespaces(text, REAL, file="catalog.yaml").namespaces
    (cqrs,) = ns.chain
    assert cqrs.slots == {"source": "postgres", "read": "redis"}
    config = cqrs.config
    assert isinstance(config, CqrsConfig)
    assert (config.sync_from, config.lag_tolerance) == ("cdc", 1.0)
    assert config.cdc is not None
    assert (config.cdc.capture, config.cdc.prefix, config.cdc.batch_size) == ("catalog", "catalog/", 50)


@pytest.mark.parametrize("source", ["redis", "nats", "kafka", "s3"])
def test_a_source_without_a_change_feed_is_rejected_with_the_file_path(source: str) -> None:
    (found,) = cqrs_problems(f"{{source: {source}, read: memstore}}")
    assert found.startswith(
        f"catalog.yaml: namespaces[0].patterns[0].slots.source: slot 'source' of cqrs expects a backend with "
        f"changefeed and keyvalue and keyvalue.scan and transactions, found '{source}'"
    ), found
    assert "Redis, NATS, Kafka and S3 have none" in found
    fit = found.split("registered backends that fit: ", 1)[1].split(")", 1)[0].split(", ")
    assert {"memstore", "postgres", "sqlite"} <= set(fit), found
    assert source not in fit, found


def test_the_write_slot_must_follow_sync_from() -> None:
    assert cqrs_problems("{write: postgres, read: redis}") == [
        "catalog.yaml: namespaces[0].patterns[0].config.sync_from: sync_from: cdc needs slot 'source': expected "
        "rows on a backend with a change feed (changefeed and keyvalue and "
        "keyvalue.scan and transactions), found none (line 6)",
        "catalog.yaml: namespaces[0].patterns[0].config.sync_from: slot 'write' goes with sync_from: events, found "
        "it with sync_from: cdc (line 6)",
    ]
    (found,) = cqrs_problems("{source: sqlite, read: redis}", "{cdc: {capture: c}}")[-1:]
    assert "config.cdc: a capture configures read models fed by CDC: expected sync_from: cdc" in found
    assert any("sync_from: events needs slot 'write'" in p for p in cqrs_problems("{read: redis}", "{}"))


def test_cdc_read_models_refuse_a_capture_that_filters_changes() -> None:
    mem = open_memstore()
    write = RowWriteModel(mem.transactions(), mem.keyvalue(), "w/")
    model = {"v": CdcReadModel(KeyValueViews(mem.keyvalue(), "v"), ignore_rows)}
    with pytest.raises(EventSourcingConfigurationError, match="covers 'x/'"):
        CdcCqrs(write, mem.changefeed(), model, cdc=CdcConfig(prefix="x/"))
    with pytest.raises(EventSourcingConfigurationError, match="every table, operation and before-image"):
        CdcCqrs(write, mem.changefeed(), model, cdc=CdcConfig(prefix="w/", operations=["INSERT"]))
    with pytest.raises(EventSourcingConfigurationError, match="at least one read model"):
        CdcCqrs(write, mem.changefeed(), {})


async def ignore_rows(views: ViewWriter, change: RowChange) -> None:
    return None


def test_a_command_retried_with_its_id_lands_once_and_bad_keys_are_refused() -> None:
    asyncio.run(_retried_command())


async def _retried_command() -> None:
    mem = open_memstore()
    write = RowWriteModel(mem.transactions(), mem.keyvalue(), "w/")

    async def bump(rows: Rows) -> int:
        n = (await rows.get("counters/a") or 0) + 1
        await rows.put("counters/a", n)
        return int(n)

    first = await write.execute(bump, command_id="c1")
    again = await write.execute(bump, command_id="c1")
    assert (first.result, first.duplicate, again.duplicate) == (1, False, True)
    assert await write.rows("counters") == {"counters/a": 1}

    async def bad(rows: Rows) -> None:
        await rows.put("_commands/forged", 1)

    with pytest.raises(ValueError, match="outside the '_commands' table"):
        await write.execute(bad)
    assert await write.rows("_commands") == {"_commands/c1": await write.get("_commands/c1")}
