"""Mutant: the NATS driver's pub/sub puts the topic into the subject as it is, unescaped: a
topic holding NATS's separator or wildcards (``a.*``, ``a.>``) subscribes to other topics'
messages, and one holding a space breaks the protocol line.

Loaded with ``-p tests.mutants.nats_topic_not_escaped``. The two lines of ``NatsPubSub`` that
escape the topic are rewritten in the methods' own source.
"""

from __future__ import annotations

from prism_testkit.backends.nats import pubsub
from tests.mutants._rewrite import rewrite_line

ESCAPED = "f\"prism.ps.{named(topic, 'topic')}\""
BROKEN = 'f"prism.ps.{topic}"'  # the bug: the topic is not escaped

rewrite_line(pubsub.NatsPubSub, "publish", ESCAPED, BROKEN)
rewrite_line(pubsub.NatsPubSub, "subscribe", ESCAPED, BROKEN)
