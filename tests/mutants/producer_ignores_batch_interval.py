"""Mutant: the producer flushes a batch that is not full as soon as its first message arrives
(batch_interval ignored), so batching by interval never batches.

Loaded with ``-p tests.mutants.producer_ignores_batch_interval``.
"""

from __future__ import annotations

from typing import Any

from prism_testkit.patterns.producer import Producer

_init = Producer.__init__


def _init_without_interval(self: Producer, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self.config = self.config.model_copy(update={"batch_interval": 0.0})  # the bug


Producer.__init__ = _init_without_interval  # type: ignore[method-assign]
