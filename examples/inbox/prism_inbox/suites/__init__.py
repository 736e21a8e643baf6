"""The inbox pattern's suites, shipped in the package: ``pytest --pyargs prism_inbox.suites``."""
