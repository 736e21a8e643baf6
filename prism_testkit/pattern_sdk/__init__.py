"""The pattern SDK: what every pattern is built from, whichever backend it runs on.

* :mod:`.lifecycle`: one lifecycle for every long-running pattern process (start, health,
  a graceful stop within a bound then a forced one, batch loops with their bounds);
* :mod:`.chain`: patterns composed in order between a client API and a backend;
* :mod:`.metrics`: every pattern's counters and gauges named one way, as Prometheus text and
  through ``prometheus-client``, and the per-test record the plugin's ``--prism-metrics`` reads.

Every pattern imports it and it imports no pattern; the registration side (what a pattern
declares to the harness) is :mod:`prism_testkit.registry.patterns`.

May import: ``errors``, ``interfaces`` and ``simulation`` (the clock a lifecycle's bounds read).
"""
