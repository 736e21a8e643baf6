"""Deliberately broken variants of real implementations (see tests/test_mutants.py).

Importing any of them registers the ``prism-mutant`` Hypothesis profile: derandomised, and
without the shrink phase, because only *whether* the suite catches the mutant matters there,
not the smallest history (shrinking a stateful failure costs most of the run).
"""

from hypothesis import Phase, settings

from prism_testkit.hunting import profiles as hypothesis_profiles

hypothesis_profiles.register_profiles()  # a -p plugin loads before prism-testkit's own plugin registers them

settings.register_profile(
    "prism-mutant", settings.get_profile(hypothesis_profiles.CI), phases=[Phase.explicit, Phase.reuse, Phase.generate]
)
