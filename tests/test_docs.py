"""Docs that run: every fenced code block of README.md, the manual (every page under docs/),
benchmarks/RESULTS.md and the examples' READMEs is executed or parsed here, or marked as a
fragment. (tests/test_docs_site.py builds the manual itself, strictly.)

The info string of a fence says what a block is: the first word is the language, as GitHub
reads it; ours is a class in braces after it, ```` ```python {.suite} ````, the attribute syntax
the manual's pymdownx.superfences accepts. (A bare second word, ```` ```python suite ````, is read
by superfences as an option it does not know: it drops the fence and the block renders as literal
backticks or one line of inline code. The manual's pages must use the braces; other files, shown
only on GitHub, may still use the bare word. tests/test_docs_site.py checks the built pages.)

* ```` ```python ```` a complete module: executed (and no name in it may be undefined, also in
  functions nothing calls); a ``prism_register_backends`` or
  ``prism_register_patterns`` hook it defines is called and its registrations checked by the
  registries, as at start-up.
* ```` ```python {.suite} ```` a complete suite module: run by pytest in an empty directory on
  memstore and sqlite, with ``--prism-require-fit`` (a suite nothing fits fails); every test
  must pass.
* ```` ```python {.fragment} ```` part of a module (names from elsewhere, ``...`` for what is left
  out, a top-level ``await``): shown, not run. ``toml``, ``yaml`` and ``json`` blocks are parsed
  unless marked ``{.fragment}`` too.
* ``bash`` blocks are commands: not run, but every ``--prism-*`` option they name must exist.
  Blocks without a language (output, layouts) are not checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),  # every page of the manual, in sub-folders too
    ROOT / "benchmarks" / "RESULTS.md",
    *sorted((ROOT / "examples").glob("*/README.md")),
]
FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^`]*)$")
FLAG = re.compile(r"\{\.(?P<flag>[\w-]+)\}|(?P<bare>[\w-]+)")  # ours: {.suite}; bare: suite
FLAGS = {"python": {"", "suite", "fragment"}, "toml": {"", "fragment"}, "yaml": {"", "fragment"}}
FLAGS |= {"json": {"", "fragment"}, "bash": {""}, "": {""}}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    flag: str
    text: str
    bare: bool = False  # the flag written without braces, which superfences cannot render

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of a Markdown file (a fence closes on a line of at least as many backticks)."""
    lines = (path.read_text() if text is None else text).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, (language, _, rest) = opening["fence"], opening["info"].strip().partition(" ")
        marked = FLAG.fullmatch(rest.strip())
        flag = rest if marked is None else marked["flag"] or marked["bare"]
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].startswith(fence) and not lines[j].strip("`")), None
        )
        if end is None:
            raise AssertionError(f"{path}:{i + 1}: a fence that never closes")
        bare = marked is not None and marked["bare"] is not None
        found.append(Block(path, i + 1, language, flag.strip(), "\n".join(lines[i + 1 : end]) + "\n", bare))
        i = end + 1
    return found


BLOCKS = [block for path in DOCS for block in blocks_of(path)]


def of_kind(language: str, flag: str = "") -> list[pytest.ParameterSet]:
    return [pytest.param(b, id=b.id) for b in BLOCKS if b.language == language and b.flag == flag]


def test_the_fences_are_read_as_written() -> None:
    text = "intro\n````python {.suite}\nx = 1\n```\nnot yet\n````\n```toml {.fragment}\na = [\n```\n```\nout\n````\n"
    found = blocks_of(ROOT / "sample.md", text + "```python fragment\n...\n```\n")
    assert [(b.line, b.language, b.flag, b.text, b.bare) for b in found] == [
        (2, "python", "suite", "x = 1\n```\nnot yet\n", False),  # a shorter fence does not close a longer one
        (7, "toml", "fragment", "a = [\n", False),
        (10, "", "", "out\n", False),  # a longer one closes a shorter one (CommonMark)
        (13, "python", "fragment", "...\n", True),  # the bare word, as GitHub-only files may write it
    ]
    with pytest.raises(AssertionError, match="never closes"):
        blocks_of(ROOT / "sample.md", "```python\nx = 1\n")


def test_every_block_says_what_it_is() -> None:
    """A typo in an info string (``python fragmnet``) would quietly stop a block being run."""
    unknown = [f"{b.id}: ```{b.language} {b.flag}" for b in BLOCKS if b.flag not in FLAGS.get(b.language, {""})]
    assert unknown == []
    assert len(of_kind("python")) >= 3
    assert len(of_kind("python", "suite")) >= 3


def test_the_manual_marks_blocks_as_superfences_reads_them() -> None:
    """```` ```python suite ```` renders as literal backticks in the manual (see the module's
    docstring): its pages write ```` ```python {.suite} ````."""
    manual = ROOT / "docs"
    bare = [f"{b.id}: ```{b.language} {b.flag}" for b in BLOCKS if b.bare and b.path.is_relative_to(manual)]
    assert bare == [], "write the flag in braces: ```python {.suite}"


def check_registrations(namespace: dict[str, object], where: str) -> None:
    from prism_testkit.registry.backends import BackendRegistry
    from prism_testkit.registry.patterns import PatternRegistry

    hook = namespace.get("prism_register_backends")
    if callable(hook):
        backends = BackendRegistry()
        for spec in hook():
            backends.add(spec, where)
            _ = backends[spec.name].driver_class  # a driver given by class or "module:Class" is checked
    hook = namespace.get("prism_register_patterns")
    if callable(hook):
        patterns = PatternRegistry()
        for spec in hook():
            patterns.add(spec, where)
        patterns.finish()


def check_provisioners(namespace: dict[str, object], workdir: Path) -> None:
    """A provisioner class the block defines is made and probed: with a URL it must take it,
    without one it answers (binary found, or unavailable with a reason), not raise."""
    from prism_testkit import ProvisionContext, Provisioner

    for value in list(namespace.values()):
        if isinstance(value, type) and issubclass(value, Provisioner) and value.__module__ == namespace["__name__"]:
            provisioner = value()
            given = provisioner.probe(ProvisionContext("docs", "scheme://user:pw@db:1/", workdir, "main", "run"))
            assert given.available
            assert given.via.value == "url"
            assert provisioner.probe(ProvisionContext("docs", None, workdir, "main", "run")).detail


def undefined_names(block: Block) -> str:
    """Names used but defined nowhere (ruff's F821), also inside functions the test never calls:
    the guide once told authors to call a helper ``answers(...)`` that did not exist."""
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F821", "--output-format", "concise"]
    command += ["--stdin-filename", f"{block.path.stem}_{block.line}.py", "-"]
    done = subprocess.run(command, input=block.text, capture_output=True, text=True, timeout=60)
    return "" if done.returncode == 0 else done.stdout + done.stderr


@pytest.mark.parametrize("block", of_kind("python") + of_kind("python", "suite"))
def test_python_block_uses_only_names_it_defines(block: Block) -> None:
    assert undefined_names(block) == ""


@pytest.mark.parametrize("block", of_kind("python"))
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_block_{block.line}"}
    exec(compile(block.text, block.id, "exec"), namespace)
    check_registrations(namespace, block.id)
    check_provisioners(namespace, tmp_path)


@pytest.mark.parametrize("block", of_kind("python", "suite"))
def test_suite_block_passes(block: Block, tmp_path: Path) -> None:
    module = tmp_path / f"test_{block.path.stem.replace('-', '_')}_{block.line}.py"
    module.write_text(block.text)
    command = [sys.executable, "-m", "pytest", module.name, "-p", "no:cacheprovider", "-q", "-W", "error"]
    command += ["--prism-backend=memstore,sqlite", "--prism-require-fit", "-p", "no:randomly"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ passed in [\d.]+s( \(.*\))?", summary), tail


def test_the_guide_backend_passes_the_suites_it_fits(tmp_path: Path) -> None:
    """The author's guide's complete backend (``# mystore_prism.py``), installed as a third
    party's distribution (module and entry point), is held to the shipped contract suites it
    fits, as its author would run them."""
    (block,) = [b for b in BLOCKS if b.language == "python" and b.text.startswith("# mystore_prism.py")]
    site, run = tmp_path / "site", tmp_path / "run"
    info = site / "mystore_prism-0.1.dist-info"
    info.mkdir(parents=True)
    run.mkdir()
    (site / "mystore_prism.py").write_text(block.text)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mystore-prism\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[prism_testkit]\nmystore = mystore_prism\n")
    command = [sys.executable, "-m", "pytest", "--pyargs", "prism_testkit.suites", "--prism-backend=mystore"]
    command += ["--prism-pattern=keyvalue,capabilities,restart,names", "-q", "-p", "no:cacheprovider", "-W", "error"]
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(command, cwd=run, capture_output=True, text=True, timeout=300, env=env)
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert re.search(r"^suite +combination", done.stdout, re.MULTILINE), tail
    # skipped: the restart suite's kill tests (an embedded backend has no process to kill, and
    # a dict is declared not durable: nothing to kill right after an acknowledgement either)
    summary = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"(\d+) passed, 3 skipped, \d+ deselected in [\d.]+s( \(.*\))?", summary), tail


@pytest.mark.parametrize("block", of_kind("toml"))
def test_toml_block_parses(block: Block) -> None:
    assert tomllib.loads(block.text)


@pytest.mark.parametrize("block", of_kind("yaml"))
def test_yaml_block_parses(block: Block) -> None:
    assert yaml.safe_load(block.text)


@pytest.mark.parametrize("block", of_kind("json"))
def test_json_block_parses(block: Block) -> None:
    assert json.loads(block.text)


def test_commands_name_only_options_that_exist() -> None:
    source = (ROOT / "prism_testkit" / "options.py").read_text()
    known = set(re.findall(r'"(--prism-[a-z-]+)"', source))
    assert "--prism-backend" in known
    named = {
        (option, b.id) for b in BLOCKS if b.language == "bash" for option in re.findall(r"--prism-[a-z-]*[a-z]", b.text)
    }
    assert sorted((option, where) for option, where in named if option not in known) == []


def first_bash_block(path: Path) -> str:
    return next(b.text for b in blocks_of(path) if b.language == "bash")


def test_getting_started_shows_the_readme_commands() -> None:
    """The manual repeats the README's two commands (the site has no README): word for word,
    below the page's opening (an install line and a short suite, as pytest's page opens)."""
    shown = [b.text for b in blocks_of(ROOT / "docs" / "getting-started.md") if b.language == "bash"]
    assert first_bash_block(ROOT / "README.md") in shown


def test_getting_started_opens_with_one_install_line_and_a_short_suite() -> None:
    """A newcomer sees one line to type and a suite to copy before anything long: the
    suite is a ``{.suite}`` block, so test_suite_block_passes runs it as written."""
    install, example, *_ = blocks_of(ROOT / "docs" / "getting-started.md")
    assert install.language == "bash"
    assert install.text.strip().startswith("pip install ")
    assert len(install.text.splitlines()) == 1
    assert (example.language, example.flag) == ("python", "suite")
    assert len([line for line in example.text.splitlines() if line.strip()]) <= 6


def test_the_readme_links_to_what_exists() -> None:
    """The front page's links (into docs/, benchmarks/, examples/) name files that are there; the
    manual's own links are checked by the strict site build (tests/test_docs_site.py)."""
    text = (ROOT / "README.md").read_text()
    targets = {t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t}
    assert targets, "no links found"
    assert sorted(t for t in targets if not (ROOT / t).exists()) == []


def test_the_readme_is_a_front_page() -> None:
    """About 300 lines at most: the rest belongs in the manual (docs/), and dated measurements
    in benchmarks/RESULTS.md."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert re.findall(r"\b20\d\d-\d\d-\d\d\b", text) == [], "a dated measurement belongs in benchmarks/RESULTS.md"


def test_every_specification_id_the_code_cites_is_in_the_glossary() -> None:
    """A docstring's "RFC-009" means something to a reader only if the glossary says what it is."""
    cited = {
        found
        for folder in ("prism_testkit", "tests")
        for path in (ROOT / folder).rglob("*.py")
        for found in re.findall(r"\b(?:RFC|MEMO|ADR)-\d+\b", path.read_text())
    }
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    assert cited, "no id found: the scan looks in the wrong place"
    assert not sorted(cited - set(re.findall(r"^\| ((?:RFC|MEMO|ADR)-\d+) \|", glossary, re.M)))


def newcomer_paths(text: str) -> list[str]:
    """The paths a newcomer follows in a layout page: the folders of its tree (an indented one
    under the last one above it) and every backticked path with a slash."""
    paths: list[str] = []
    tree = re.search(r"^```\n(.*?)^```", text, re.M | re.S)
    parents: list[str] = []
    for line in (tree.group(1) if tree else "").splitlines():
        if found := re.match(r"^( *)([\w.-]+/)\s", line):
            depth = len(found.group(1)) // 2
            parents = [*parents[:depth], found.group(2)]
            paths.append("".join(parents))
    paths += re.findall(r"`([\w.*-]+(?:/[\w.*-]*)+)`", text)
    return paths


def test_newcomer_paths_in_the_layout_and_contributing_exist() -> None:
    """docs/layout.md says paths are under prism_testkit/ unless they start with benchmarks/:
    each path either page names must exist, read that way (a glob must match something)."""
    missing = []
    for page in (ROOT / "docs" / "layout.md", ROOT / "CONTRIBUTING.md"):
        paths = newcomer_paths(page.read_text())
        assert paths, f"{page.name}: no path found: the scan reads the page wrongly"
        for path in paths:
            bases = [ROOT, ROOT / "prism_testkit"]
            if not any(list(base.glob(path.rstrip("/"))) for base in bases):
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, missing


def test_the_newcomer_path_scan_reads_a_tree_and_backticks() -> None:
    text = "```\nprism_testkit/   core\n  plugin/        hooks\ntests/     tests\n```\nsee `faults/load.py`\n"
    assert newcomer_paths(text) == ["prism_testkit/", "prism_testkit/plugin/", "tests/", "faults/load.py"]


def test_ci_runs_the_readmes_test_command_word_for_word() -> None:
    """`.ci/run` calls exactly the README's second command (its pytest part), durations file and all."""
    readme = first_bash_block(ROOT / "README.md").splitlines()[1].split("   #", 1)[0]
    pytest_part = readme[readme.index(".venv/bin/python -m pip install -e '.[dev]'") :]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert pytest_part in ci, f".ci/run does not run the README's test command: {pytest_part}"
    for path in re.findall(r"--prism-shard-durations=(\S+)", pytest_part):
        assert (ROOT / path).is_file(), f"the test command names {path}, which is not in the repository"
