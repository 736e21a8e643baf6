"""Jepsen-style testing: clients record histories while a nemesis injects faults; checkers judge.

- client: :mod:`.history` (operations as invoke / ok / fail / info) and :mod:`.client`
  (recorded, time-bounded operations on the test's event loop); suite-specific clients stay
  beside their suites in ``suites/``.
- nemesis: :mod:`.nemesis` (kill + restart, pause / resume, latency / reset / partition / heal,
  as Hypothesis rules; heal everything at the end) over :mod:`.faultproxy` (the TCP proxy that
  breaks connections).
- checker: :mod:`.checkers` (total queue, log, per-key order; a verdict for workload-specific checks).
- test: :mod:`.machine` (the base stateful machine wiring the three together) and :mod:`.runner`
  (runs it under the Hypothesis profile, fails with the smallest witness and a replay command).

Nothing is imported here: loading the plugin must not load Hypothesis's stateful machinery.
"""
