"""Repository-level glue for the project's own tests (not shipped)."""

# The harness tests drive pytest in sandboxes; declared here rather than in addopts, so a run of
# the installed suites elsewhere does not depend on this repository's configuration.
pytest_plugins = ["pytester"]
