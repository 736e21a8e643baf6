"""Registrations, layered without a cycle: :mod:`.backend_spec`, :mod:`.slots` and
:mod:`.pattern_spec` say what one registration is; :mod:`.hookspecs` the hooks that return
them; :mod:`.backends` and :mod:`.patterns` collect and check them; :mod:`.combinations`
expands a suite's slots over the registered backends; :mod:`.install_hints` turns a
registration's ``extra`` or ``install`` into the line a user runs; :mod:`.xdist_scheduler` keeps an
exclusive backend's rows (a cluster's) on one xdist worker and deals the tests heaviest first by
an earlier run's durations, and :mod:`.shards` keeps those rows on one shard of
``--prism-shard=K/N``; :mod:`.twins` leaves a replicated
backend's rows that only repeat its single-node twin's to the twin ("covered by <twin>").

May import: ``capabilities``, ``driver``, ``errors`` and ``provision.base`` (a registration
names its provisioner). Never ``options`` (it reads ``--prism-combinations`` into
:class:`.slots.Expansion`), ``faults`` or anything above, a backend or a pattern: they import
the registry."""
