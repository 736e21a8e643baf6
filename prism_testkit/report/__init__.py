"""What a run reports: :mod:`.results` (rows per suite x combination, the terminal summary and
the JSON report), :mod:`.shape` (the one typed model of a report, with its schema version, that
the writer, the merge and the renderers share), :mod:`.merge` (a CI matrix's reports into one),
:mod:`.matrix` (backend x suite, as JSON and Markdown),
:mod:`.html` (the report as one self-contained page; :mod:`.plots` draws its latency plots with
matplotlib, an optional extra; :mod:`.html_extras` puts a failing test's timeline and verdict
where users already look: junit properties and pytest-html's extras), :mod:`.versions` (known
finding x server version, from runs on several server binaries) and :mod:`.cli`
(``prism-testkit report``); :mod:`.unavailable_faults` lists the faults this machine cannot inject, like
backends it cannot provision; :mod:`.progress` is a long run's progress line (suites done/total,
time left).

May import: ``errors``, ``redaction``, and ``registry.shards`` for its check of a shard's K/N
(a leaf: one parser, not two). It reads pytest's reports and the JSON it wrote, never a backend,
the registry of backends or the runtime."""
