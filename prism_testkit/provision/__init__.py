"""Turning a backend name into a reachable instance, and everything that outlives a test.

- :mod:`.base`: the provisioning chain's types (context, endpoint, availability, provisioners).
- :mod:`.servers`: private servers started from local binaries, then containers.
- :mod:`.processes` and :mod:`.process_identity`: server processes, and which process a pid
  still names.
- :mod:`.workdirs` and :mod:`.mounts`: each process's work dir, and the sweep that removes only
  what a dead run of the harness made.
- :mod:`.lazymount`: a data dir on a lazy filesystem (the instance a power cut can hit), its
  daemon started as a process of its own (:mod:`prism_testkit.faults.lazyfs_daemon`).
- :mod:`.netns` and :mod:`.cluster`: hosts as network namespaces, and a replicated backend's
  nodes on them.
- :mod:`.binaries`: the server binaries a user chooses (``--prism-binary``, ``PRISM_<NAME>_BINARY``).
- :mod:`.system_packages`: what the machine needs besides Python packages, and the bootstrap that
  installs it (standard library only: it runs before any virtual environment exists).

May import: ``errors``, ``redaction``, ``capabilities``, ``patience``. Never ``faults`` (they
act on what is provisioned), ``options`` (it reads URLs with :func:`.base.url_problem`),
``registry``, ``report``, the runtime, ``hunting``, ``stateful``, the plugin, the CLI or a backend.
The public face of the cluster pieces is :mod:`prism_testkit.clusters`.
"""
