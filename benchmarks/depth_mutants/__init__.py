"""Bugs seeded for the depth curve (``benchmarks/depth_curve.py``), beside the registered
mutants of ``tests/mutants``: each needs a longer or luckier history than most of those, so it
shows where more examples per row find more. Each module is a pytest plugin (``-p``) that
patches memstore when loaded, and names the stateful suite that should catch it (``SUITE``),
the backends to run it on (``BACKENDS``) and the output line that shows it was caught
(``EVIDENCE``, an fnmatch pattern). They are measurement inputs, not tests: nothing runs them
but the benchmark.
"""
