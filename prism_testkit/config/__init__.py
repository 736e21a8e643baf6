"""Configuration: :mod:`.namespace_files` (namespace files, validated against the registered
patterns and backends, and their JSON Schema), :mod:`.units` (sizes and durations as people
write them) and :mod:`.runs` (the suite runs a namespace file adds, ``--prism-namespace``).

May import: ``registry`` (what a file names must be registered), ``capabilities``, ``errors``,
``redaction``. Never ``provision``, ``faults``, ``stateful``, ``hunting``, the runtime, the
reports, the plugin or the CLI (they read configuration), a backend or a pattern.
"""
