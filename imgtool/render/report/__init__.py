"""The HTML report: one self-contained page about a checkpoint (and, optionally, what changed since another).

``report_html(dump, against=old)`` returns the page: CSS, script and SVG pictures inline, no request to any
other address, so it works offline from file://.  ``build.py`` gathers the view data from the model and
analysis objects, ``svg.py`` draws the pictures, ``templates/`` (jinja2) lays the page out.
"""

from __future__ import annotations

import datetime
from typing import Any

from imgtool import __version__
from imgtool.analysis.changes import DumpDiff
from imgtool.model.dump import Dump
from imgtool.render.report import svg
from imgtool.render.report.build import KIND_NAMES, KINDS, STATE_NAMES, report_data

__all__ = ["report_data", "report_html"]


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("imgtool.render.report", "templates"),
                             autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                             trim_blocks=True, lstrip_blocks=True)
    env.globals.update(svg=svg, KIND_NAMES=KIND_NAMES, KINDS=KINDS, STATE_NAMES=STATE_NAMES,
                       LETTER=svg.LETTER)
    env.filters["size"] = human_bytes
    return env


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def report_html(dump: Dump, *, against: Dump | None = None, diff: DumpDiff | None = None,
                title: str | None = None) -> str:
    """The page about ``dump``; with ``against`` (an older dump) also the diff from it to ``dump``
    (``diff``: one already computed, e.g. with other options)."""
    if against is not None and diff is None:
        from imgtool.analysis.diff import compare
        from imgtool.analysis.memdiff import MemoryComparer

        diff = compare(against, dump, memory=MemoryComparer())
        diff.a, diff.b = str(against.source), str(dump.source)
    data = report_data(dump, diff, against)
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _environment().get_template("report.html.j2").render(
        d=data, title=title or f"Checkpoint {dump.source}", generated=generated, version=__version__)
