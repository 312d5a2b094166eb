"""A suite as one self-contained HTML file: ``report.html``, for a CI job to keep.

The same pages the browser serves, made once and written beside the suite's
``report.md``: each run re-checked from its ``events.jsonl``, its work and its claim
said apart, its fix when it lost or duplicated work, and its timeline drawn inline as
SVG; the stylesheet inline too. It needs no server and fetches nothing; links lead to
the files stored in the suite's directory, relative to it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

from experiments import findings
from experiments.checker import VERDICTS
from experiments.web import pages, timeline
from experiments.web.app import templates
from experiments.web.results import Results

REPORT_HTML = "report.html"


def render(suite_dir: Path) -> str:
    """The report of the suite stored in ``suite_dir``."""
    suite_dir = suite_dir.resolve()
    results = Results(suite_dir.parent)
    view = pages.suite_view(results, suite_dir)
    prefix = view.id + "/"

    def href(run_id: str, name: str = "") -> str:
        """A run's directory (or a file in it), relative to the suite's directory."""
        relative = run_id.removeprefix(prefix)
        return quote(relative, safe="/") + ("/" + quote(name, safe="/") if name else "/")

    drawings = {r.id: timeline.draw(r.timeline) for r in view.runs if r.timeline is not None}
    css = (files("experiments.web") / "static" / "style.css").read_text(encoding="utf-8")
    return templates().get_template("report.html").render(
        suite=view, drawings=drawings, css=css, href=href, findings=findings,
        count=pages.count, verdicts=VERDICTS,
        run_href=lambda run_id: "#" + run_id.rpartition("/")[2])  # its section, on the page


def write(suite_dir: Path) -> Path:
    """Write ``report.html`` into the suite's directory; returns its path."""
    path = suite_dir / REPORT_HTML
    path.write_text(render(suite_dir), encoding="utf-8")
    return path
