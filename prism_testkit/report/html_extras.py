"""The evidence of a failing suite test where users already look.

- ``--junitxml``: every suite test of a run with ``--prism-report-html`` carries the page's
  path (``prism_report_html``); a failing stateful test carries its timeline page
  (``prism_timeline``) and its verdict in one line (``prism_verdict``, written by
  :mod:`prism_testkit.stateful.runner`). Both paths are absolute, so a CI UI that shows a
  testcase's properties names files it can find whatever the job's working directory.
- pytest-html (``--html``): a failing suite test's row links its timeline and shows its verdict
  as extras. ``pytest_html`` is imported only when that plugin is active and writing a report:
  a run without it is left as it was.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPORT_HTML = "prism_report_html"  # junit property: the run's HTML report (--prism-report-html)
TIMELINE = "prism_timeline"  # junit property: a failing stateful test's timeline page
VERDICT = "prism_verdict"  # junit property: that test's verdict in one line


def report_html_property(config: pytest.Config, path: Path | None) -> tuple[str, str] | None:
    """The ``prism_report_html`` property of every suite test, when the run writes the page:
    its absolute path (as given, from where pytest was invoked), like ``prism_timeline``'s."""
    if path is None:
        return None
    return (REPORT_HTML, str(config.invocation_params.dir / path))


def pytest_html_active(config: pytest.Config) -> bool:
    """pytest-html is installed, not disabled (``-p no:html``) and writing a report (``--html``)."""
    return config.pluginmanager.hasplugin("html") and bool(config.getoption("htmlpath", None))


def add_extras(config: pytest.Config, report: pytest.TestReport) -> None:
    """Append to a failing test's ``report.extras`` (pytest-html >= 4) a link to its timeline
    and its verdict, from the properties the stateful runner left; nothing when it left none."""
    properties = {key: value for key, value in report.user_properties if key in (TIMELINE, VERDICT)}
    timeline, verdict = properties.get(TIMELINE), properties.get(VERDICT)
    if not isinstance(timeline, str) and not isinstance(verdict, str):
        return
    from html import escape

    from pytest_html import extras  # only here: pytest-html is active

    # untyped: pytest-html's extras are its own dicts (extras.url, extras.html)
    found: list[dict[str, Any]] = list(getattr(report, "extras", []))
    href = _href(config, Path(timeline)) if isinstance(timeline, str) else None
    if href is not None:
        found.append(extras.url(href, name="prism timeline"))
    if isinstance(verdict, str):
        link = f' <a href="{escape(href)}" target="_blank">timeline</a>' if href is not None else ""
        found.append(extras.html(f'<div class="prism-verdict">prism verdict: {escape(verdict)}{link}</div>'))
    report.extras = found  # type: ignore[attr-defined]  # pytest-html reads it


def _href(config: pytest.Config, page: Path) -> str:
    """The timeline's link from the pytest-html report: relative when the page lies under the
    report's folder (the two move together as one CI artifact), else its ``file://`` URI."""
    given = Path(os.path.expandvars(str(config.getoption("htmlpath")))).expanduser()
    folder = (config.invocation_params.dir / given).parent
    try:
        return page.relative_to(folder).as_posix()
    except ValueError:
        return page.as_uri()
