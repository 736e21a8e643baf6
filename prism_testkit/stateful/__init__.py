"""Stateful testing: Hypothesis machines whose clients record histories, a nemesis that
strikes faults between their steps, and checkers that judge the histories (Jepsen's client /
nemesis / checker split).

- :mod:`.history` (operations as invoke / ok / fail / info) and :mod:`.client` (recorded,
  time-bounded operations on the test's event loop); suite-specific clients stay beside their
  suites in ``prism_testkit/suites/``.
- :mod:`.checkers`, one package, a module per thing judged: the verdict every checker returns,
  total queue, pub/sub fan-out, log, per-key order, each node's own copy of a replicated stream
  (``checkers.replicas``: lost, unexpected, duplicated, and where a loss lies), a failover's
  losses tolerated where the backend does not declare ``survives_failover``
  (``checkers.failover``: on the slot it fills, acknowledged before it ended) and a
  write-ahead log's applies (``checkers.wal``).
  :mod:`.isolation` (transactions judged after Elle: list-append histories, the ww / wr
  / rw dependency graph, its cycles named G0, G1c, G-single, G2-item, with aborted and
  intermediate reads and lost updates) and :mod:`.leases` (lease writes recorded with their
  epoch and interval, judged one holder at a time on clocks that disagree).
- :mod:`.nemesis` (the faults of :mod:`prism_testkit.faults` aimed at a combination's servers
  and a cluster's nodes as Hypothesis rules, each recorded in the history and healed at the end
  of every example; after the heal, each node's copy judged by ``checkers.replicas``), as Jepsen's
  own ``jepsen.nemesis`` sits beside its checkers. :mod:`.health` (a cluster a test hands on:
  damage a test named, or copies that do not converge, rebuilt before the next test or example;
  what cannot be rebuilt is inherited damage, reported unshrunk).
- :mod:`.machine` (the base stateful machine wiring clients, the nemesis and checkers) and
  :mod:`.runner` (runs it under the Hypothesis profile, fails with the smallest witness and a
  replay command).
- :mod:`.recording` (the steps of an example as Hypothesis issues them, and issuing them again
  from a schedule file, each completed before the next): replay's half that needs a machine and
  its history; the schedule file and the replay command are ``hunting``'s, below this package.
- :mod:`.timeline` (an example as a self-contained HTML page after Jepsen's ``timeline.html``:
  a lane per process, operations as bars, faults as bands from strike to heal, anomalies
  marked; the runner writes the failing example's, ``--prism-timelines``) and :mod:`.latency`
  (an example's operations as start, latency and outcome, with its fault bands: the samples the
  HTML report plots).

The faults themselves live in :mod:`prism_testkit.faults`. Nothing is imported here: loading the
plugin must not load Hypothesis's stateful machinery.

May import: ``faults`` (the nemesis injects them), ``provision``'s cluster contract, networks
and server control (:mod:`~prism_testkit.provision.cluster`, :mod:`~prism_testkit.provision.netns`,
:mod:`~prism_testkit.provision.base`: what the nemesis aims at), ``hunting.hunt`` (the runner
hunts in rounds), ``hunting.depth`` (the examples a row draws), ``hunting.schedule`` (the file
a failure's steps are written to),
``capabilities``, ``driver``, ``errors``, ``patience``, ``redaction``, ``simulation``, and
``runtime.env`` for its type. Never ``registry`` (a machine gets its drivers from the env),
``options``, the runtime itself, the reports, the plugin, the CLI, a backend or a pattern.
"""
