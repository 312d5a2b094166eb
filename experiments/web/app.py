"""The results browser: a read-only FastAPI app over one results directory.

Pages are rendered on the server from the run store (``pages``) with autoescaped
Jinja2 templates; the stylesheet and the few lines of script come from this package,
so nothing is fetched from elsewhere and it works offline. Every route only reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    UndefinedError,
    select_autoescape,
)

from experiments.checker import VERDICTS
from experiments.web import pages
from experiments.web.results import REPORT_MD, VALIDITY, Kind, Results

# Only this origin's own stylesheet and script run; inline script or style is refused.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; "
                               "img-src 'self'; connect-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MEDIA_TYPES = {".png": "image/png", ".json": "application/json"}

Text = Annotated[str, Query(max_length=300)]


def templates() -> Environment:
    env = Environment(loader=PackageLoader("experiments.web", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(validity=VALIDITY, verdicts=VERDICTS)
    env.filters["path"] = lambda value: quote(str(value), safe="/")
    return env


def run_href(run_id: str) -> str:
    """A run's page on this server."""
    return f"/runs/{quote(run_id, safe='/')}"


def create_app(results_dir: Path) -> FastAPI:
    """The browser over ``results_dir``; it reads the directory on every request."""
    from experiments import catalog  # every page names experiments: load it now, not at a click

    assert catalog.CATALOG
    results = Results(results_dir)
    env = templates()
    app = FastAPI(title="scalelab results", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(packages=[("experiments.web", "static")]), name="static")

    @app.middleware("http")
    async def headers(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    def not_found(what: str) -> HTMLResponse:
        return page("not_found.html", 404, what=what)

    @app.get("/", response_class=HTMLResponse)
    def index(experiment: Text = "", valid: Text = "") -> HTMLResponse:
        return page("index.html", **pages.index(results, experiment, valid))

    @app.get("/runs/{run_id:path}/files/{name:path}")
    def run_file(run_id: str, name: str) -> Response:
        path = results.resolve(run_id)
        found = results.file(path, name) if path is not None else None
        if found is None:
            return not_found(f"{run_id}/{name}")
        media = MEDIA_TYPES.get(found.suffix, "text/plain; charset=utf-8")
        return FileResponse(found, media_type=media,
                            headers={"Content-Disposition": "inline"})

    @app.get("/runs/{run_id:path}/progress")
    def run_progress(run_id: str) -> Response:
        state = results.progress(run_id)
        if state is None:
            return JSONResponse({"state": "gone"}, status_code=404)
        if state["href"]:
            state["href"] = f"/runs/{state['href']}"
        return JSONResponse(state)

    @app.get("/runs/{run_id:path}", response_class=HTMLResponse)
    def run(run_id: str, verdict: Text = "") -> Response:
        path = results.resolve(run_id)
        if path is None:
            state = results.progress(run_id)  # a run in progress that has finished since
            if state is not None and state["href"]:
                return RedirectResponse(f"/runs/{quote(state['href'], safe='/')}", 303)
            return not_found(run_id)
        if results.entry(path, nested="/" in run_id).kind == Kind.SUITE:
            return not_found(f"{run_id} (a suite: /suites/{run_id})")
        view = pages.run_view(results, path)
        progress = results.progress(run_id) if view.entry.kind == Kind.PARTIAL else None
        choices = pages.run_choices(results)
        extra: dict[str, Any] = {"choices": choices, "compare_with": pages.preselected(choices,
                                                                                 view),
                                 "run_href": run_href,
                                 "events_bytes": progress["events_bytes"] if progress else ""}
        try:
            return page("run.html", **extra,
                        **pages.run_page(view, verdict if verdict in VERDICTS else ""))
        except (AttributeError, KeyError, TypeError, ValueError, UndefinedError) as exc:
            # a summary.json of an unexpected shape: say so rather than fail the page
            view.error = (f"{path / 'summary.json'}: a field has an unexpected shape "
                          f"({type(exc).__name__}: {exc})")
            view.summary = None
            return page("run.html", **extra, **pages.run_page(view, ""))

    @app.get("/suites/{suite_id}/report.md")
    def suite_report(suite_id: str) -> Response:
        path = results.resolve(suite_id, depth=1)
        found = results.file(path, REPORT_MD) if path is not None else None
        if found is None:
            return not_found(f"{suite_id}/{REPORT_MD}")
        return FileResponse(found, media_type="text/plain; charset=utf-8",
                            headers={"Content-Disposition": "inline"})

    @app.get("/suites/{suite_id}", response_class=HTMLResponse)
    def suite(suite_id: str) -> HTMLResponse:
        path = results.resolve(suite_id, depth=1)
        if path is None or results.entry(path, nested=False).kind != Kind.SUITE:
            return not_found(suite_id)
        return page("suite.html", suite=pages.suite_view(results, path),
                    count=pages.count, run_href=run_href)

    @app.get("/compare", response_class=HTMLResponse)
    def compare(a: Text = "", b: Text = "") -> HTMLResponse:
        path_a, path_b = results.resolve(a), results.resolve(b)
        if path_a is None or path_b is None:
            return not_found(f"compare {a!r} with {b!r}")
        return page("compare.html", **pages.compare_page(pages.run_view(results, path_a),
                                                         pages.run_view(results, path_b)))

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    return app
