"""Mutant: the ``redis-aof`` server runs with ``appendfsync everysec`` (Redis's default: up to a
second of acknowledged writes only in the page cache) yet keeps declaring ``survives_power_loss``.

Loaded with ``-p tests.mutants.redis_aof_fsyncs_every_second``; a SIGKILL cannot tell the
difference, the power-loss suite must.
"""

from __future__ import annotations

from prism_testkit.backends import redis

redis.AOF_FLAGS = tuple("everysec" if flag == "always" else flag for flag in redis.AOF_FLAGS)
