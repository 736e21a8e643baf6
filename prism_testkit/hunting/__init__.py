"""Hypothesis in the harness: how examples are generated, for how long, and how failures replay.

- :mod:`.profiles`: the profiles the plugin registers (``prism-dev``, ``prism-ci``, ``prism-hunt``).
- :mod:`.strategies`: the strategies the suites share (payloads of a drawn size from a drawn seed).
- :mod:`.depth`: how many examples a stateful row draws (``--prism-depth``: a number or a named
  level; the default is the knee of the kill-rate curve in ``benchmarks/RESULTS.md``).
- :mod:`.hunt`: long hunts (``--prism-hunt``): a budget of test time split between the stateful
  tests that run a machine, the example database shared between machines, and the summary at the end.
- :mod:`.identity`: one identity per test whatever the install layout (the module's import name
  and the rest of the node id), and the shared database's keys made from it.
- :mod:`.derandomised`: a derandomised suite test's search as a function of its identity, its
  strategies and the seed (its seed from its identity, the project's literals withheld from its draws).
- :mod:`.schedule`: schedule files, what a failing stateful example issued in order (steps,
  their arguments and draws, the op each fault followed), and whether a replay reproduced it.
- :mod:`.replay`: ``prism-testkit replay FILE``, which runs a schedule's test with
  ``--prism-replay`` in this process and says whether the failure reproduced.

Nothing is imported here: the plugin loads Hypothesis only when the run uses prism-testkit.

May import: ``errors``, ``redaction``, ``options``, ``config.units``, ``provision.workdirs``
(the hunt's ledger sits beside the work dirs) and ``provision.binaries`` (a replay line carries
the run's ``--prism-binary`` choices), and ``faults.load`` for its parser only (a replay
compares the load its schedule recorded with the one asked for). Never ``registry``,
``runtime``, the rest of ``faults``, ``stateful``, ``report``, the plugin, a backend or a
pattern: the stateful runner uses the hunt, not the other way round (the replay command reaches
the runner through pytest, by option).
"""
