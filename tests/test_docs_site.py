"""The manual builds: ``mkdocs build`` in strict mode (mkdocs.yml says ``strict: true``), so a
broken link or anchor, a page left out of the nav, a nav entry without its page or an include
that is missing fails this test. MkDocs and Material come with the ``docs`` extra (part of
``dev``): without them this is a failure of the project's own run, never a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent


def nav_pages(entries: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [str(value)]
    return pages


def test_the_manual_builds_strictly(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (tmp_path / "site" / "index.html").is_file()
    # the dated measurements are shown in the manual from benchmarks/RESULTS.md, not copied
    shown = (tmp_path / "site" / "benchmark-results" / "index.html").read_text()
    assert "Power cuts and storage faults" in shown


def test_every_page_is_in_the_nav() -> None:
    """Said here too, with the page named, so the message tells what to add to mkdocs.yml."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True
    in_nav = set(nav_pages(config["nav"]))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert sorted(pages - in_nav) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(in_nav - pages) == [], "nav entries without a page"
