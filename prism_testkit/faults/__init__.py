"""Faults the harness injects, each proved injected by the suites that use it.

- :mod:`.nemesis`: kill + restart, pause / resume, latency / reset / partition / heal as
  Hypothesis rules, healed at the end of every example.
- :mod:`.proxy`: the in-process TCP proxy that delays, resets and cuts connections.
- :mod:`.linkproxies`: a cluster's nodes on loopback, joined by a proxy per link (partitions
  where network namespaces cannot be made).
- :mod:`.lazyfs` (the filesystem's model), :mod:`.lazyfs_daemon` (its FUSE process) and
  :mod:`.lazymount` (mounting it over a data dir): writes not fsynced are lost at a power cut.
- :mod:`.power_loss`: kill a server, cut the power under it, start it again.
- :mod:`.load` (``--prism-load``: its spec and seeds), :mod:`.burners` (CPU and I/O burners
  beside the run) and :mod:`.jitter` (seeded short SIGSTOP bursts of the harness's processes):
  load as a fault, found on purpose and replayed by its seed.

Nothing is imported here: the plugin loads a fault tool only when a suite uses it.

May import: ``provision`` (the processes, mounts and networks faults act on), ``jepsen.history``
(faults are recorded), ``errors``, and ``registry`` and ``runtime.env`` for their types. Never ``report``,
the runtime, the plugin, a backend or a pattern.
"""
