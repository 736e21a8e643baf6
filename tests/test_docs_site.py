"""The manual builds: ``mkdocs build`` in strict mode (mkdocs.yml says ``strict: true``), so a
broken link or anchor, a page left out of the nav, a nav entry without its page, an include
that is missing or an API reference entry that does not resolve fails this test. MkDocs,
Material and mkdocstrings come with the ``docs`` extra (part of ``dev``): without them this is a
failure of the project's own run, never a skip.

A strict build still passes when an example renders broken: a fence Markdown did not take as a
fence (```` ```python suite ````, an info string pymdownx.superfences rejects) comes out as
literal backticks, or as one line of inline code. So the built pages are read too
(:func:`broken_blocks`): no literal fence outside code, no inline code that begins with a
fence's info string, and each page has a code block for every fenced block of its source."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest
import yaml

from tests.test_docs import blocks_of

ROOT = Path(__file__).parent.parent
# a collapsed block's inline code starts with the fence's info string: ``python {.suite}\n...``
LANGUAGES = "python|bash|sh|console|toml|yaml|json|text|ini"
INFO_LINE = re.compile(rf"(?:{LANGUAGES})(?: +(?:[a-z]+|\{{[^}}\n]*\}}))*\n")


def nav_pages(entries: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [str(value)]
    return pages


class CodeReader(HTMLParser):
    """Counts a page's code blocks and notes what a broken fence leaves behind."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []  # the enclosing pre / code / script / style elements
        self.inline: list[str] | None = None  # text of the inline <code> being read
        self.blocks = 0
        self.broken: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("pre", "code", "script", "style"):
            return
        if tag == "pre":
            self.blocks += 1
        if tag == "code" and "pre" not in self.open:
            self.inline = []
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            return
        self.open.pop()
        if tag == "code" and self.inline is not None and "pre" not in self.open:
            text, self.inline = "".join(self.inline), None
            if INFO_LINE.match(text):
                self.broken.append(f"a block collapsed into inline code: {text[:60]!r}")

    def handle_data(self, data: str) -> None:
        if self.inline is not None:
            self.inline.append(data)
        if not self.open and "```" in data:
            self.broken.append(f"a literal fence: {data.strip()[:60]!r}")


def broken_blocks(html: str, fenced: int = 0) -> list[str]:
    """What is wrong with one built page whose source has ``fenced`` fenced blocks."""
    reader = CodeReader()
    reader.feed(html)
    reader.close()
    short = [f"{reader.blocks} code blocks for {fenced} fenced in the source"] if reader.blocks < fenced else []
    return reader.broken + short


def built_page(site: Path, page: Path) -> Path:
    relative = page.relative_to(ROOT / "docs").with_suffix("")
    return site / (relative.parent if relative.name == "index" else relative) / "index.html"


def rendered_as_the_manual_does(text: str) -> str:
    """Markdown with mkdocs.yml's extensions, without a site build."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    names: list[str] = []
    settings: dict[str, dict[str, object]] = {}
    for entry in config["markdown_extensions"]:
        name = entry if isinstance(entry, str) else next(iter(entry))
        names.append(name)
        settings[name] = {} if isinstance(entry, str) else (entry[name] or {})
    return markdown.markdown(text, extensions=names, extension_configs=settings)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("manual") / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(built)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return built


def test_the_manual_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    # the dated measurements are shown in the manual from benchmarks/RESULTS.md, not copied
    shown = (site / "benchmark-results" / "index.html").read_text()
    assert "Power cuts and storage faults" in shown


def test_every_example_renders_as_a_code_block(site: Path) -> None:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    broken = [
        f"{page.relative_to(ROOT)}: {problem}"
        for page in pages
        for problem in broken_blocks(built_page(site, page).read_text(), len(blocks_of(page)))
    ]
    assert broken == []
    assert sum(len(blocks_of(page)) for page in pages) > 50  # the pages were read


def test_the_check_finds_a_broken_block() -> None:
    """The info string the manual used to write, in a paragraph (literal backticks) and after
    a list item (collapsed into inline code), is found; the braces render as a block."""
    body = 'x = 1\n\n\nprint("spaced")\n```\n'
    for before in ("Some text.\n\n", "* an item\n\n"):
        html = rendered_as_the_manual_does(f"{before}```python suite\n{body}")
        assert broken_blocks(html, fenced=1) != []
    assert broken_blocks(rendered_as_the_manual_does("Text.\n\n```python suite\nx = 1\ny = 2\n```\n")) != []
    assert broken_blocks(rendered_as_the_manual_does(f"Some text.\n\n```python {{.suite}}\n{body}"), fenced=1) == []
    found = broken_blocks("<p>Run <code>prism-testkit report\nhtml</code> then ```.</p>")
    assert found == ["a literal fence: 'then ```.'"]  # a wrapped inline code span is no block


def test_the_api_reference_is_generated_from_the_docstrings(site: Path) -> None:
    """mkdocstrings renders the modules a suite and a backend import, by the import path
    users write (``prism_testkit.backends.memstore``, installed from ``prism_testkit/backends/``), and the
    docstrings' Sphinx roles become code or links, never raw ``:class:`...``` text."""
    reference = site / "reference"
    pages = {path.parent.name: path.read_text() for path in reference.glob("*/index.html")}
    expected = {
        "interfaces": "prism_testkit.interfaces.KeyValue",
        "registration": "prism_testkit.registry.hookspecs.prism_register_backends",
        "suites": "prism_testkit.runtime.env.PrismEnv",
        "isolation": "prism_testkit.isolation.Namespace",
        "patience": "prism_testkit.patience.until",
        "clusters": "prism_testkit.clusters",
        "provisioning": "prism_testkit.provision.base.Provisioner",
        "embedded-backends": "prism_testkit.backends.memstore.open_memstore",
        "stateful": "prism_testkit.stateful.machine.FaultMachine",
    }
    assert {name: f'id="{anchor}"' in pages.get(name, "") for name, anchor in expected.items()} == dict.fromkeys(
        expected, True
    )
    roles = re.compile(r":(?:class|func|meth|mod|attr|data|exc):`")
    assert sorted(name for name, html in pages.items() if roles.search(html)) == []
    assert 'class="autorefs autorefs-internal"' in pages["clusters"]  # a role that became a link


def test_every_page_is_in_the_nav() -> None:
    """Said here too, with the page named, so the message tells what to add to mkdocs.yml."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["strict"] is True
    in_nav = set(nav_pages(config["nav"]))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert sorted(pages - in_nav) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(in_nav - pages) == [], "nav entries without a page"


def test_the_nav_reads_tutorial_how_to_reference_explanation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    sections = [next(iter(entry)) for entry in config["nav"] if isinstance(entry, dict)]
    assert sections == ["Home", "Tutorial", "How-to guides", "Reference", "Explanation"]
