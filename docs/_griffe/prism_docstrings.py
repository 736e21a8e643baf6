"""Griffe extension for the manual's API reference (docs/reference/, mkdocs.yml's mkdocstrings).

Two things the docstrings need that mkdocstrings does not do alone:

* The docstrings cross-reference in Sphinx's roles (``:class:`~prism_testkit.errors.NotSupported```,
  ``:func:`until```, ``:mod:`.hosts```). Each becomes an optional cross-reference: a link where the
  target has a page in the reference, plain code where it has none (so the strict build has
  nothing to warn about). A leading ``~`` shows the last name only, as in Sphinx; a short or
  relative name is looked up from the documented object outwards (its class, module, package).
* A paragraph that ends in Sphinx's ``::`` (``Usage::``) introduces an indented literal block:
  the marker becomes ``:`` (or goes, alone on its line), and the block is Markdown's indented
  code block.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?P<kind>class|func|meth|mod|attr|data|exc|obj|const):`(?P<target>[^`]+)`")
TITLED = re.compile(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>")
CALLABLE = {"func", "meth"}
# Sphinx's literal-block marker: "Usage::" shows as "Usage:", a "::" alone on its line not at all;
# the indented block after it is a code block in Markdown too
LITERAL_MARKER = re.compile(r"(?m)(?:(?<=\S)(?P<colon>::)|^[ \t]*::)[ \t]*$")


def canonical(path: str, known: griffe.ModulesCollection) -> str | None:
    """Where the object named ``path`` is defined (a re-export names its home), or None if unknown."""
    try:
        found = known.get_member(path)
        return str(found.target_path) if found.is_alias else str(found.path)
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def resolve(target: str, scope: griffe.Object, known: griffe.ModulesCollection) -> str:
    """The full dotted path of ``target`` as seen from ``scope``, or ``target`` itself if unknown."""
    name = target.lstrip(".")
    if target.startswith("prism_testkit.") or target == "prism_testkit":
        return canonical(target, known) or target
    where: griffe.Object | None = scope
    while where is not None:
        found = canonical(f"{where.path}.{name}", known)
        if found is not None:
            return found
        where = where.parent
    return name


def rewrite(text: str, scope: griffe.Object, known: griffe.ModulesCollection) -> str:
    def one(match: re.Match[str]) -> str:
        target = match["target"].strip()
        titled = TITLED.fullmatch(target)  # Sphinx's explicit title: :attr:`Endpoint.cluster <prism_testkit.Endpoint>`
        if titled is not None:
            target = titled["target"]
        short = target.startswith("~")
        target = target.lstrip("~")
        shown = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
        if titled is not None:
            shown = titled["title"]
        elif match["kind"] in CALLABLE and not shown.endswith(")"):
            shown += "()"
        identifier = resolve(target.rstrip("()"), scope, known)
        return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(shown)}</code></autoref>'

    text = LITERAL_MARKER.sub(lambda match: ":" if match["colon"] else "", text)
    return ROLE.sub(one, text)


def walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and member.parent is obj:
            found += walk(member)  # type: ignore[arg-type]
    return found


class PrismDocstrings(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path != "prism_testkit":
            return
        for obj in walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj, loader.modules_collection)
