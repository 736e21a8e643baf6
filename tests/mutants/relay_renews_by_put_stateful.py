"""Mutant: :mod:`.relay_renews_by_put` (the outbox relay renews its lease with a plain put, so
a renewal after a takeover replaces the successor's lease), loaded for the stateful outbox
suite, whose own judge must see both relays holding it (``one-lease-holder``: a relay that
wrote the lease while the other held a later epoch), on relays whose clocks disagree.

Loaded with ``-p tests.mutants.relay_renews_by_put_stateful``.
"""

from __future__ import annotations

import tests.mutants.relay_renews_by_put  # noqa: F401  (the rewrite happens on import)
