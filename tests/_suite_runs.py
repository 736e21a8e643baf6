"""Runs of the shipped suites in the project's own tests (mutants, replays, timelines): the
modules a run needs, and Hypothesis's per-directory caches shared by every sandbox.

A suite run ``--pyargs prism_testkit.suites --prism-pattern=wal`` imports and collects every
suite module (about 50) to keep one: the others are left out with ``--ignore``, so the
package stays the initial argument and every node id reads as before (``test_wal.py::...``).
A module is left out only when its source declares none of the selected suites, and
``--prism-pattern`` would have deselected all of its tests.

Hypothesis keeps two caches in its storage directory (``.hypothesis/`` in the current
directory): the constants it extracts from each local module's source (keyed by the source's
hash) and the Unicode tables ``st.text()`` draws from (keyed by the Unicode version and
codec). A sandbox is a fresh directory, so each pytest it ran computed both again: about 2 s
of CPU each. Linked to one directory per machine (and Hypothesis version), they are computed
once; the example database beside them stays the sandbox's own. Only the suite runs here link
them: other tests assert what a run leaves in its directory.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import hypothesis

# prism_suite("name", ...) or prism_suite(\n    "name", ...): the suite a module (or class) declares
_DECLARED = re.compile(r"prism_suite\(\s*\"(\w+)\"")
# The caches a storage directory may share: both are keyed by what they were computed from.
SHARED_CACHES = ("constants", "unicode_data")
CODECS = ("utf-8",)  # st.text() and st.characters() draw from the utf-8 codec by default


@functools.cache
def suites_folder() -> Path:
    spec = importlib.util.find_spec("prism_testkit.suites")
    assert spec is not None, "prism_testkit.suites is not importable"
    assert spec.submodule_search_locations, "prism_testkit.suites is not a package"
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def declared_suites() -> dict[Path, frozenset[str]]:
    """Each suite module and the suite names it declares."""
    return {path: frozenset(_DECLARED.findall(path.read_text())) for path in sorted(suites_folder().glob("test_*.py"))}


def only_the_modules_of(suites: str) -> list[str]:
    """``--ignore`` options for every suite module that declares none of ``suites`` (a comma
    list, as ``--prism-pattern`` takes it). Refuses a name no module declares: the run would
    otherwise collect nothing and fail for another reason than the one under test."""
    wanted = {name.strip() for name in suites.split(",") if name.strip()}
    declared = declared_suites()
    found = set().union(*declared.values())
    assert wanted <= found, f"no suite module declares {sorted(wanted - found)}"
    return [f"--ignore={path}" for path, names in declared.items() if not names & wanted]


def suite_run(sandbox: Path, args: tuple[str, ...], suites: str) -> tuple[str, ...]:
    """The arguments of a run of the shipped suites named ``suites`` in ``sandbox`` (its
    directory, given the machine's Hypothesis caches): the package, only the modules that
    declare them, then ``args``."""
    share_hypothesis_caches(sandbox / ".hypothesis")
    return ("--pyargs", "prism_testkit.suites", f"--prism-pattern={suites}", *only_the_modules_of(suites), *args)


def machine_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "prism-testkit" / f"hypothesis-{hypothesis.__version__}"


def _tables_present(cache: Path) -> bool:
    tables = cache / "unicode_data" / unicodedata.unidata_version
    names = ["charmap.json.gz", *(f"codec-v2-{codec}.json.gz" for codec in CODECS)]
    return all((tables / name).is_file() for name in names)


@functools.cache
def shared_hypothesis_caches() -> Path | None:
    """The machine's directory of Hypothesis caches, its Unicode tables computed (once, by a
    Python of its own storing there, under a lock), or None where it cannot be made."""
    cache = machine_cache()
    try:
        for name in SHARED_CACHES:
            (cache / name).mkdir(parents=True, exist_ok=True)
        if _tables_present(cache):
            return cache
        with (cache / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _tables_present(cache):
                compute = (
                    "from hypothesis.internal.charmap import charmap, intervals_from_codec\n"
                    f"charmap()\nfor codec in {CODECS!r}: intervals_from_codec(codec)\n"
                )
                env = {**os.environ, "HYPOTHESIS_STORAGE_DIRECTORY": str(cache)}
                subprocess.run([sys.executable, "-c", compute], env=env, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return cache if _tables_present(cache) else None


def share_hypothesis_caches(storage: Path) -> None:
    """Link ``storage``'s (a ``.hypothesis`` directory's) cache folders to the machine's, where
    it has none of its own yet; the rest of ``storage`` (its example database) is untouched."""
    cache = shared_hypothesis_caches()
    if cache is None:
        return
    storage.mkdir(parents=True, exist_ok=True)
    for name in SHARED_CACHES:
        link = storage / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(cache / name, target_is_directory=True)
