"""Mutant: the Kafka driver passes a consumer group's name into the group id unencoded, as it
did before the names suite: Tansu 0.6.0 reads a group id as a path, so the groups ``a/b`` and
``a//b`` (and ``a/`` and ``a``) share their commits (docs/findings.md).

Loaded with ``-p tests.mutants.kafka_group_ids_not_encoded``. The one line of
``KafkaDriver._group_consumer`` that encodes the name is rewritten in the method's own source.
"""

from __future__ import annotations

from prism_testkit.backends.kafka import driver
from tests.mutants._rewrite import rewrite_line

ENCODED = "{_encode(group)}"
BROKEN = "{group}"

rewrite_line(driver.KafkaDriver, "_group_consumer", ENCODED, BROKEN)
