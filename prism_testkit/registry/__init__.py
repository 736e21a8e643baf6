"""Registrations, layered without a cycle: :mod:`.backend_spec`, :mod:`.slots` and
:mod:`.pattern_spec` say what one registration is; :mod:`.hookspecs` the hooks that return
them; :mod:`.backends` and :mod:`.patterns` collect and check them; :mod:`.combinations`
expands a suite's slots over the registered backends.

May import: ``capabilities``, ``driver``, ``errors``, ``options`` and ``provision.base`` (a
registration names its provisioner). Never a backend or a pattern: they import the registry."""
