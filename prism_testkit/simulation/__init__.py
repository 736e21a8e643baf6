"""Simulated mode: examples of in-process combinations run on virtual time, in a seeded order.

- :mod:`.clock`: the one clock seam of patterns, in-process backends, suites and histories;
  real time normally, the simulated loop's virtual time during a simulated example.
- :mod:`.loop`: the simulated event loop (time jumps to the next timer when nothing is ready;
  a seed picks which ready callback runs next).
- :mod:`.guard`: during a simulated example, a watched module that reads real time, sleeps in a
  thread or starts a thread is a violation the test reports.
- :mod:`.buggify`: seeded misbehaviour within the contract that a simulable backend asks for;
- :mod:`.digest`: a history's digest, byte for byte the same when the same seed runs again.

Nothing is imported here: patterns and backends import :mod:`.clock` alone, which costs only
the standard library.

May import: the standard library only. Never another package of the core, a backend or a
pattern (they import the clock, so it must import nothing of theirs).
"""
