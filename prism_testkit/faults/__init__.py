"""Faults the harness injects, each proved injected by the suites that use it.

- :mod:`.proxy`: the in-process TCP proxy that delays, resets and cuts connections.
- :mod:`.linkproxies`: a cluster's nodes on loopback, joined by a proxy per link (partitions
  where network namespaces cannot be made).
- :mod:`.lazyfs` (the filesystem's model) and :mod:`.lazyfs_daemon` (its FUSE process, which
  :mod:`prism_testkit.provision.lazymount` mounts over a data dir): writes not fsynced are lost
  at a power cut.
- :mod:`.power_loss`: kill a server, cut the power under it, start it again.
- :mod:`.crash_at_ack`: a crash right after an acknowledgement, with nothing in between (an
  embedded backend's writes made in a child process that is killed while its loop stands still).
- :mod:`.load` (``--prism-load``: its spec and seeds), :mod:`.burners` (CPU and I/O burners
  beside the run) and :mod:`.jitter` (seeded short SIGSTOP bursts of the harness's processes):
  load as a fault, found on purpose and replayed by its seed.
- :mod:`.interpose`: a proxy that runs hooks before or after named calls of any interface (the
  suites' in-process faults: a killed process's store, a send that fails or loses its answer).

Nothing is imported here: the plugin loads a fault tool only when a suite uses it.

The nemesis, which aims these at a combination's servers as Hypothesis rules and records them
in the history, is :mod:`prism_testkit.stateful.nemesis`: it sits above both.

May import: ``provision`` (the processes, mounts and networks faults act on), ``driver``,
``errors``, and ``registry`` for its types. Never ``stateful`` (histories record faults, faults
know nothing of histories), ``options``, ``report``, the runtime, the plugin, a backend or a
pattern.
"""
