"""Configuration: namespace files, their units and schema, and the suites they select."""
