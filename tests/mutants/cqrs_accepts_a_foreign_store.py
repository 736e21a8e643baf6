"""Mutant: CQRS no longer checks that its read models follow the write model's event store, so
a read model wired to another store silently never shows a command (read-your-writes waits on
positions of the wrong log).

Loaded with ``-p tests.mutants.cqrs_accepts_a_foreign_store``; the CQRS suite must report the
mis-wiring accepted.
"""

from __future__ import annotations

from collections.abc import Mapping

from prism_testkit.patterns.cqrs import Cqrs, CqrsConfig, CqrsMetrics
from prism_testkit.patterns.event_sourcing import EventSourcingConfigurationError, ProjectionRunner, Repository


def _init(
    self: Cqrs, write: Repository, read_models: Mapping[str, ProjectionRunner], config: CqrsConfig | None = None
) -> None:
    if not read_models:
        raise EventSourcingConfigurationError("CQRS needs at least one read model")
    self.write = write  # the bug: no check of the read models' store
    self.read_models = dict(read_models)
    self.config = CqrsConfig() if config is None else config
    self.metrics = CqrsMetrics()


Cqrs.__init__ = _init  # type: ignore[method-assign]
