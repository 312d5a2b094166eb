"""The results browser in a real browser: Debian's Chromium, driven by Playwright.

Two real short runs (unguarded, then with the per-tick Redis lock) go into a results
directory; ``scalelab serve`` serves it on a free loopback port in its own process;
Chromium opens the index, clicks through to the unguarded run, counts the timeline's
bars against the run's finish events, filters the units to ``duplicated`` and compares
the two runs, then watches a run in progress turn into a finished one (its page polls).
Every request the pages make must stay on the server (no CDN), and no script or policy
error may reach the console. Screenshots go to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, start_scalelab, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(400),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"no {CHROMIUM} (apt-get install chromium; .ci/run does)"),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")


@pytest.fixture
def results(scalelab: Any, tmp_path: Path) -> Path:
    """Two real runs side by side: 2 unguarded replicas, and the same with the Redis
    lock per tick; each into a directory of its own, then both into one results."""
    def run(guard: str) -> Any:
        return scalelab("run", "scheduler-duplicates", "--replicas", "2", "--duration", "3",
                        "--guard", guard, "--results", str(tmp_path / guard), timeout=150)

    results = tmp_path / "results"
    results.mkdir()
    with ThreadPoolExecutor(2) as pool:
        for guard, r in zip(("none", "redis-lock"), pool.map(run, ("none", "redis-lock")),
                            strict=True):
            assert r.returncode == 0, f"{guard}: {r.stderr[-2000:]}"
            (made,) = (tmp_path / guard).iterdir()
            # runs started in the same second: the second is named as the lab would
            target = results / made.name
            made.rename(target.with_name(target.name + "-2") if target.exists() else target)
    return results


@pytest.fixture
def server(results: Path, tmp_path: Path) -> Iterator[str]:
    """``scalelab serve`` on any free loopback port; stopped (SIGTERM) at teardown."""
    stderr = tmp_path / "serve.stderr"
    with open(stderr, "w") as err, subprocess.Popen(
            [sys.executable, "-m", "experiments.cli", "serve", "--results", str(results),
             "--port", "0"], stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)}) as proc:
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline() if ready else ""
            assert " at http://127.0.0.1:" in line, \
                f"serve printed {line!r}; stderr: {stderr.read_text()}"
            yield line.split(" at ")[1].split()[0].rstrip("/")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail("scalelab serve did not stop within 10 s of SIGTERM")


def finish_events(run_dir: Path) -> int:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return sum(1 for line in lines if line.strip() and json.loads(line)["kind"] == "finish")


WARNING = "rgb(178, 24, 43)"  # the stylesheet's --warn: lost and duplicated work
COLOUR = "e => getComputedStyle(e).color"


def progress_of(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / "progress.json").read_text()))
    except (OSError, ValueError):
        return {}


def test_browse_a_run_its_timeline_units_and_a_comparison(
        server: str, results: Path, tmp_path: Path, lab_tag: str) -> None:
    unguarded = next(d for d in results.iterdir()
                     if json.loads((d / "summary.json").read_text())["parameters"]["guard"]
                     == "none")
    summary = json.loads((unguarded / "summary.json").read_text())
    assert summary["counts"]["duplicated"] > 0
    foreign: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=ARGS, viewport={"width": 1280, "height": 900})
        try:
            def only_the_server(route: Any) -> None:
                if route.request.url.startswith(server + "/"):
                    route.continue_()
                else:
                    foreign.append(route.request.url)
                    route.abort()

            context.route("**/*", only_the_server)
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            page.goto(server + "/")
            links = page.locator("a.run-link")
            assert links.count() == 2
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)

            page.locator(f'a.run-link[href="/runs/{unguarded.name}"]').click()
            page.wait_for_url(f"**/runs/{unguarded.name}")
            assert page.locator("h1 .badge").inner_text() == "demonstrated"
            # a demonstrated run with duplicates says both: the work, in the warning colour
            dup = page.locator("p.work .outcome.c-duplicated")
            assert dup.inner_text() == f"{summary['counts']['duplicated']} duplicated"
            assert dup.evaluate(COLOUR) == WARNING
            assert page.locator("p.verdict .badge").inner_text() == "demonstrated"
            # ... and the fix beside it
            assert "--guard redis-lock" in page.locator("div.fix pre.command").inner_text()
            timeline = page.locator("svg.timeline")
            timeline.wait_for()
            finished = page.locator('svg.timeline rect.bar[data-ended-by="finish"]')
            assert finished.count() == finish_events(unguarded) > 0
            first = finished.first
            first.hover()
            hover_text = first.locator("title").text_content() or ""
            assert first.get_attribute("data-work-id") in hover_text
            lanes = page.locator("svg.timeline g.lanes text").all_text_contents()
            assert lanes == ["api-1", "api-2"]
            page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

            page.locator('a.filter[data-verdict="duplicated"]').click()
            page.wait_for_url("**verdict=duplicated*")
            rows = page.locator("table.units tr.unit")
            assert rows.count() == summary["counts"]["duplicated"]
            assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.verdict)")) == {"duplicated"}
            # each duplicated unit: which instances ran its copies, and when
            assert "api-1" in rows.first.inner_text() and "api-2" in rows.first.inner_text()
            page.screenshot(path=str(tmp_path / "units-duplicated.png"), full_page=True)

            page.locator("form.compare button").click()
            page.wait_for_url("**/compare?**")
            assert page.locator("svg.timeline").count() == 2
            differing = page.locator("table.params-diff").inner_text()
            assert "guard" in differing and "redis-lock" in differing
            page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

            # A run in progress, as the runner leaves it until it is complete: the page
            # polls, and opens the run when the directory is renamed.
            partial = results / "20991231T235959Z-scheduler-duplicates.partial"
            shutil.copytree(unguarded / "logs", partial / "logs")
            page.goto(f"{server}/runs/{partial.name}")
            assert "In progress." in page.locator("p.state").inner_text()
            for name in ("summary.json", "events.jsonl"):
                shutil.copy(unguarded / name, partial / name)
            partial.rename(partial.with_name(partial.name.removesuffix(".partial")))
            page.wait_for_url(f"**/runs/{partial.name.removesuffix('.partial')}", timeout=15_000)
            assert finished.count() == finish_events(unguarded)

            # Lost and duplicated counts in the warning colour on the index, a suite's page
            # and a run's page.
            suite = results / "20991230T000000Z-suite"
            shutil.copytree(unguarded, suite / unguarded.name)
            (suite / "report.md").write_text("# suite\n")
            for url in ("/", f"/suites/{suite.name}", f"/runs/{suite.name}/{unguarded.name}"):
                page.goto(server + url)
                cell = page.locator(".c-duplicated.some").first
                assert cell.evaluate(COLOUR) == WARNING, url
                quiet = page.locator("td.c-lost:not(.some)")  # none lost: no warning
                if quiet.count():
                    assert quiet.first.evaluate(COLOUR) != WARNING, url
            page.screenshot(path=str(tmp_path / "suite-run.png"), full_page=True)

            # A run in progress for real: its count grows between two polls; then Ctrl-C,
            # and the page opens the run as interrupted.
            live = start_scalelab(lab_tag, "run", "scheduler-duplicates", "--replicas", "2",
                                  "--duration", "30", "--no-plot", "--results", str(results))
            try:
                running = wait_for(lambda: next(results.glob("*.partial"), None), 60,
                                   "the live run's directory")
                wait_for(lambda: progress_of(running).get("executions", 0) > 0, 60,
                         "the live run's first executions")
                page.goto(f"{server}/runs/{running.name}")
                counter = '[data-field="executions"]'
                first = int(page.locator(counter).inner_text())
                page.wait_for_function(
                    "([sel, n]) => Number(document.querySelector(sel)?.textContent) > n",
                    arg=[counter, first], timeout=20_000)
                page.locator("svg.timeline rect.bar").first.wait_for(timeout=20_000)  # drawn
                page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
                live.send_signal(signal.SIGINT)
                live.communicate(timeout=60)
            finally:
                if live.poll() is None:
                    live.kill()
                live.communicate()
            assert live.returncode == 130
            page.wait_for_url("**.interrupted", timeout=15_000)
            state = page.locator("p.state").inner_text()
            assert state.startswith("Interrupted by SIGINT while running"), state
            page.goto(server + "/")
            row = page.locator(f'tr:has(a[href="/runs/{running.name.removesuffix(".partial")}'
                               f'.interrupted"])')
            assert row.locator(".badge").inner_text() == "interrupted"
        finally:
            context.close()
    assert not foreign, f"the pages asked for something off the server: {foreign}"
    assert not problems, f"the browser console reported: {problems}"
    for shot in ("index", "run", "units-duplicated", "compare", "suite-run", "live"):
        assert (tmp_path / f"{shot}.png").stat().st_size > 0
