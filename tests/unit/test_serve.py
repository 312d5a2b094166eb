"""``scalelab serve`` on hand-made run directories, through a real uvicorn server.

Each route: its status and what it shows; text from events and parameters escaped;
ids that leave the results directory (``..``, absolute, a symlink out) not found; a
corrupted history shown as the re-check's line-numbered error inside a 200 page; and
nothing under the results directory changed by any request.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from experiments.web import create_app
from experiments.web.cli import bind, is_loopback
from tests.conftest import REPO, wait_for

SCRIPT = "<script>alert(1)</script>"
EVIL = f"api-{SCRIPT}"  # an instance name
T0 = 1_000_000.0  # the run window opens here, on a whole second: ticks fire on the grid


def event(t: float, kind: str, work_id: str, instance: str, exec_id: str = "",
          mechanism: str = "apscheduler", **detail: Any) -> dict[str, Any]:
    return {"t": t, "kind": kind, "work_id": work_id, "mechanism": mechanism,
            "instance": instance, "pid": 7, "attempt": 1, "exec_id": exec_id,
            "detail": detail, "run": "hand-made"}


def tick(second: int, instance: str, offset: float = 0.01) -> list[dict[str, Any]]:
    """One execution of the tick due at T0 + second, on ``instance``."""
    work_id, exec_id = f"tick@{T0 + second:.3f}", f"{instance}:{second}"
    t = T0 + second + offset
    return [event(t, "start", work_id, instance, exec_id),
            event(t + 0.05, "finish", work_id, instance, exec_id)]


def write_run(directory: Path, events: list[dict[str, Any]], *, guard: str = "none",
              extra_params: dict[str, Any] | None = None, counts: dict[str, int] | None = None,
              valid: bool = True, corrupt_line: int | None = None) -> Path:
    """A scheduler-duplicates run directory as the runner writes one (without the plot)."""
    directory.mkdir(parents=True)
    lines = [json.dumps(e) for e in events]
    if corrupt_line is not None:
        lines[corrupt_line - 1] = lines[corrupt_line - 1][:25]  # truncated mid-event
    (directory / "events.jsonl").write_text("\n".join(lines) + "\n")
    faults = [{"at": round(e["t"] - T0, 3), "action": e["mechanism"], "target": e["instance"],
               "inflight": e["detail"].get("inflight"), "mid_job": False, "step": "hand-made"}
              for e in events if e["kind"] == "fault"]
    summary = {
        "experiment": "scheduler-duplicates", "platform": "local", "seed": 3,
        "run_id": directory.name,
        "parameters": {"replicas": 2, "interval": 1.0, "duration": 4.0, "guard": guard,
                       **(extra_params or {})},
        "window": {"start": T0, "end": T0 + 4, "duration": 4.0},
        "schedules": [{"job": "tick", "interval": 1.0, "epoch": 0.0, "aligned": True}],
        "late_after": 0.5,
        "expected": 4, "executions": 5, "extra_executions": 2,
        "counts": counts or {"ok": 1, "lost": 1, "duplicated": 2, "recovered": 0,
                             "unexpected": 0, "in_doubt": 0},
        "refused": 0, "ignored": 0, "late": 0, "faults": faults, "valid": valid,
        "expectation": "as stored", "topology": {"api": 2},
        "executions_by_component": {"api": 5},
    }
    (directory / "summary.json").write_text(json.dumps(summary))
    (directory / "summary.md").write_text(f"# {SCRIPT}\n")
    (directory / "logs").mkdir()
    (directory / "logs" / "api-1.log").write_text(f"started {SCRIPT}\n")
    return directory


def duplicated_history(second_instance: str) -> list[dict[str, Any]]:
    """Ticks 0 and 1 on both instances (duplicated), 2 on one (ok), 3 never (lost)."""
    return [*tick(0, "api-1"), *tick(0, second_instance, 0.02), *tick(1, "api-1"),
            *tick(1, second_instance, 0.02), *tick(2, "api-1"),
            event(T0 + 3.5, "fault", "fault:kill", "api-1", mechanism="kill", inflight=0)]


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory outside the results directory, which a symlink inside points to."""
    return write_run(tmp_path_factory.mktemp("elsewhere") / "secret-run",
                     duplicated_history("api-2"))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, outside: Path) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_run(root / "20261130T100000Z-scheduler-duplicates", duplicated_history(EVIL),
              extra_params={"note": f"<b>bold</b>{SCRIPT}"})
    write_run(root / "20261130T110000Z-scheduler-duplicates-2", duplicated_history("api-2"),
              corrupt_line=3)
    odd = write_run(root / "20261130T050000Z-scheduler-duplicates", duplicated_history("api-2"))
    summary = json.loads((odd / "summary.json").read_text())
    (odd / "summary.json").write_text(json.dumps({**summary, "faults": [SCRIPT],
                                                  "versions": [1, 2]}))
    suite = root / "20261130T120000Z-suite"
    write_run(suite / "20261130T120001Z-scheduler-duplicates", duplicated_history("api-2"))
    locked = [*tick(0, "api-1"), *tick(1, "api-2"), *tick(2, "api-1"), *tick(3, "api-2")]
    write_run(suite / "20261130T120002Z-scheduler-duplicates-2", locked, guard="redis-lock",
              counts={"ok": 4, "lost": 0, "duplicated": 0, "recovered": 0, "unexpected": 0,
                      "in_doubt": 0})
    (suite / "report.md").write_text("# suite\n")
    partial = root / "20261130T130000Z-celery-kill.partial"
    (partial / "logs").mkdir(parents=True)
    (partial / "logs" / "worker-1.log").write_text("working\n")
    (root / "20261130T080000Z-celery-kill.failed" / "logs").mkdir(parents=True)
    live_run = root / "20261130T140000Z-scheduler-duplicates.partial"
    live_run.mkdir()
    (live_run / "progress.json").write_text(json.dumps(
        {"phase": "running", "elapsed": 2.5, "total": 4.0, "clock": 4.0, "executions": 3,
         "lost": 0, "duplicated": 1, "faults": ["kill api-1"], "events": 7}))
    # the events so far; the last line is still being written
    (live_run / "events.jsonl").write_text(
        "\n".join(json.dumps(e) for e in duplicated_history("api-2")[:6]) + '\n{"t": 1')
    stopped = root / "20261130T090000Z-celery-kill.interrupted"
    (stopped / "logs").mkdir(parents=True)
    (stopped / "interrupted.json").write_text(json.dumps(
        {"state": "interrupted", "signal": "SIGINT", "phase": "draining", "clock": 12.5}))
    (root / "notes").mkdir()
    broken = root / "20261130T070000Z-scheduler-duplicates"
    broken.mkdir()
    (broken / "summary.json").write_text('{"experiment": "scheduler-dup')
    misshapen = root / "20261130T060000Z-scheduler-duplicates"
    misshapen.mkdir()
    (misshapen / "summary.json").write_text(json.dumps({
        "experiment": "scheduler-duplicates", "parameters": [SCRIPT], "counts": 3,
        "window": {"start": T0, "end": T0 + 4}}))
    (root / "outside-link").symlink_to(outside, target_is_directory=True)
    (root / "20261130T100000Z-scheduler-duplicates" / "logs" / "passwd").symlink_to(
        outside / "summary.json")
    return root


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: to prove nothing was written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size,
                                                                        st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def client(results: Path) -> Iterator[httpx.Client]:
    """A real uvicorn serving the app on a free loopback port, in a thread of this test."""
    before = tree(results)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(results), log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn to start")
    port = sock.getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        yield c
    server.should_exit = True
    thread.join(10)
    sock.close()
    assert not thread.is_alive()
    assert tree(results) == before, "a request changed the results directory"


def bars(html: str, ended_by: str = "finish") -> int:
    return html.count(f'data-ended-by="{ended_by}"')


# --- the index ----------------------------------------------------------------------------

def test_index_lists_every_directory_as_what_it_is(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    page = r.text
    for name in ("20261130T100000Z-scheduler-duplicates", "20261130T120000Z-suite",
                 "20261130T120001Z-scheduler-duplicates", "20261130T130000Z-celery-kill.partial",
                 "20261130T080000Z-celery-kill.failed", "notes"):
        assert name in page
    assert "secret-run" not in page and "outside-link" not in page  # a symlink out of the tree
    for state in ("demonstrated", "in progress", "could not run", "not a run", "unreadable",
                  "interrupted"):
        assert f">{state}</span>" in page
    # newest first: the partial (13:00) before the suite (12:00) before the 08:00 failure
    assert (page.index("T130000Z") < page.index("T120000Z-suite") < page.index("T100000Z")
            < page.index("T080000Z"))
    # the corrupted run's summary.json is fine: the index lists it (its page re-checks)
    assert "20261130T110000Z-scheduler-duplicates-2" in page


def test_index_filters_by_experiment_and_validity(client: httpx.Client) -> None:
    kill = client.get("/", params={"experiment": "celery-kill"}).text
    assert "celery-kill.partial" in kill and "celery-kill.failed" in kill
    assert "T100000Z-scheduler-duplicates" not in kill
    failed = client.get("/", params={"valid": "could-not-run"}).text
    assert "celery-kill.failed" in failed and "celery-kill.partial" not in failed
    held = client.get("/", params={"valid": "demonstrated",
                                   "experiment": "scheduler-duplicates"}).text
    assert "T120001Z-scheduler-duplicates" in held and "celery-kill" not in held.split("<tbody>")[1]


# --- a run --------------------------------------------------------------------------------

RUN = "20261130T100000Z-scheduler-duplicates"
SUITE_RUN = "20261130T120000Z-suite/20261130T120001Z-scheduler-duplicates"


def test_run_page_is_the_recheck(client: httpx.Client) -> None:
    r = client.get(f"/runs/{SUITE_RUN}")
    assert r.status_code == 200
    page = r.text
    # the re-check's sentence, not the stored "as stored"
    assert "unguarded, 2 replicas, each tick runs once per replica: duplicated 2 (theory 4" in page
    assert "as stored" not in page
    # the counts are as stored; today's judge finds the lost tick outside its theory
    assert "expected: stored 4" not in page and "duplicated: stored" not in page
    assert "verdict: stored demonstrated, re-checked not demonstrated" in page
    assert '<svg class="timeline"' in page
    assert bars(page) == 5  # one bar per finish event of the history
    assert page.count('class="lost"') == 1  # tick 3 never ran
    assert "fault-kill" in page  # the kill on api-1
    for link in ("files/events.jsonl", "files/summary.md", "files/logs/api-1.log"):
        assert f'href="/runs/{SUITE_RUN}/{link}"' in page
        assert client.get(f"/runs/{SUITE_RUN}/{link}").status_code == 200


def test_units_filter_by_verdict(client: httpx.Client) -> None:
    page = client.get(f"/runs/{SUITE_RUN}", params={"verdict": "duplicated"}).text
    rows = page.count('<tr class="unit" data-verdict="duplicated">')
    assert rows == 2 and page.count('<tr class="unit"') == 2
    assert f"tick@{T0:.3f}" in page and f"tick@{T0 + 2:.3f}" not in page.split('id="units"')[1]
    lost = client.get(f"/runs/{SUITE_RUN}", params={"verdict": "lost"}).text
    assert lost.count('<tr class="unit" data-verdict="lost">') == 1


def test_text_from_events_and_parameters_is_escaped(client: httpx.Client) -> None:
    for url in ("/", f"/runs/{RUN}", f"/compare?a={RUN}&b={SUITE_RUN}"):
        page = client.get(url).text
        assert SCRIPT not in page and "<b>bold</b>" not in page, url
    page = client.get(f"/runs/{RUN}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the instance's lane, escaped
    assert "&lt;b&gt;bold&lt;/b&gt;" in page  # the parameter, escaped
    assert bars(page) == 5
    # files are served as plain text, never as HTML
    log = client.get(f"/runs/{RUN}/files/logs/api-1.log")
    assert log.headers["content-type"].startswith("text/plain") and SCRIPT in log.text
    assert log.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in log.headers["content-security-policy"]


@pytest.mark.parametrize("url", [
    "/runs/..", "/runs/%2E%2E", "/runs/%2E%2E/%2E%2E/etc", "/runs/%2Fetc", "/runs//etc",
    "/runs/outside-link", "/runs/outside-link/files/summary.json", "/runs/notes/%2E%2E",
    f"/runs/{RUN}/files/%2E%2E/%2E%2E/20261130T120000Z-suite/report.md",
    f"/runs/{RUN}/files/%2Fetc%2Fpasswd", f"/runs/{RUN}/files/logs/passwd",
    f"/runs/{RUN}/files/logs", "/runs/no-such-run", "/suites/%2E%2E", "/suites/outside-link",
    f"/suites/{RUN}", "/compare?a=..&b=notes", "/compare?a=outside-link&b=notes",
])
def test_ids_outside_the_results_directory_are_not_found(client: httpx.Client, url: str) -> None:
    # http.client sends the path as written (httpx would resolve the dot segments first)
    conn = http.client.HTTPConnection("127.0.0.1", client.base_url.port, timeout=10)
    try:
        conn.request("GET", url)
        r = conn.getresponse()
        body = r.read().decode()
    finally:
        conn.close()
    assert r.status == 404, url
    assert "secret-run" not in body and "hand-made" not in body


def test_a_corrupted_history_is_a_line_numbered_error_inside_the_page(
        client: httpx.Client, results: Path) -> None:
    run = "20261130T110000Z-scheduler-duplicates-2"
    r = client.get(f"/runs/{run}")
    assert r.status_code == 200
    events = results / run / "events.jsonl"
    assert f"{events}:3: not a JSON event, corrupted or truncated" in r.text
    assert "What its stored <code>summary.json</code> says" in r.text
    assert "<svg" not in r.text
    assert client.get("/").status_code == 200


def test_an_unreadable_summary_is_listed_and_explained(client: httpx.Client,
                                                       results: Path) -> None:
    run = "20261130T070000Z-scheduler-duplicates"
    assert f"{results / run / 'summary.json'}:1: not valid JSON" in client.get("/").text
    r = client.get(f"/runs/{run}")
    assert r.status_code == 200
    assert f"{results / run / 'summary.json'}:1: not valid JSON, corrupted or truncated" in r.text
    misshapen = "20261130T060000Z-scheduler-duplicates"
    assert "&#39;parameters&#39; and &#39;counts&#39; must be objects" in client.get("/").text
    page = client.get(f"/runs/{misshapen}")
    assert page.status_code == 200 and SCRIPT not in page.text
    odd = client.get("/runs/20261130T050000Z-scheduler-duplicates")  # faults: a string
    assert odd.status_code == 200 and "a field has an unexpected shape" in odd.text
    assert SCRIPT not in odd.text


def test_a_run_in_progress_polls_and_follows_its_rename(
        client: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = "20261130T130000Z-celery-kill.partial"
    page = client.get(f"/runs/{run}").text
    assert "In progress." in page and f'data-poll="/runs/{run}/progress"' in page
    assert 'href="/runs/20261130T130000Z-celery-kill.partial/files/logs/worker-1.log"' in page
    state = client.get(f"/runs/{run}/progress").json()
    assert state == {"state": "in-progress", "events_bytes": -1, "href": None, "status": None}
    failed = client.get("/runs/20261130T080000Z-celery-kill.failed")
    assert failed.status_code == 200 and "Could not run." in failed.text
    assert "Not a run." in client.get("/runs/notes").text


def test_progress_of_a_finished_run_points_to_its_page(tmp_path: Path) -> None:
    """The runner renames ``<name>.partial`` when done: the poll then names the new page."""
    from experiments.web.results import Results

    results = Results(tmp_path)
    (tmp_path / "20261130T140000Z-celery-kill.partial").mkdir()
    assert results.progress("20261130T140000Z-celery-kill.partial") == {
        "state": "in-progress", "events_bytes": -1, "href": None, "status": None}
    (tmp_path / "20261130T140000Z-celery-kill.partial").rename(
        tmp_path / "20261130T140000Z-celery-kill")
    assert results.progress("20261130T140000Z-celery-kill.partial") == {
        "state": "done", "events_bytes": None, "href": "20261130T140000Z-celery-kill",
        "status": None}
    assert results.progress("../x.partial") is None


def test_a_finished_partial_redirects_to_the_run(client: httpx.Client, results: Path) -> None:
    """A link to ``<name>.partial`` kept from before the rename leads to the run."""
    r = client.get("/runs/20261130T120000Z-suite/20261130T120001Z-scheduler-duplicates.partial",
                   follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/runs/{SUITE_RUN}"


def test_a_live_run_shows_its_counts_and_its_timeline_so_far(client: httpx.Client) -> None:
    run = "20261130T140000Z-scheduler-duplicates.partial"
    page = client.get(f"/runs/{run}").text
    assert '<b class="n" data-field="executions">3</b>' in page
    assert '<span class="c-duplicated some">duplicated so far' in page
    assert "kill api-1" in page
    assert bars(page, "finish") == 3  # the whole lines written so far, drawn
    assert client.get(f"/runs/{run}/progress").json()["status"]["duplicated"] == 1


def test_an_interrupted_run_says_what_interrupted_it(client: httpx.Client) -> None:
    page = client.get("/runs/20261130T090000Z-celery-kill.interrupted").text
    assert "<b>Interrupted</b> by SIGINT while draining, 12.5 s after it began." in page
    assert "Could not run" not in page
    index = client.get("/").text
    row = index.split('href="/runs/20261130T090000Z-celery-kill.interrupted"')[1]
    assert '<span class="badge v-interrupted">interrupted</span>' in row.split("</tr>")[0]


def test_lost_and_duplicated_work_is_in_the_warning_colour_beside_the_claim(
        client: httpx.Client) -> None:
    index = client.get("/").text
    assert '<td class="n c-duplicated some">2</td>' in index
    assert '<td class="n c-lost some">1</td>' in index
    assert '<td class="n c-duplicated">0</td>' in index  # none: no warning
    suite = client.get("/suites/20261130T120000Z-suite").text
    assert '<td class="n c-duplicated some">2</td>' in suite
    page = client.get(f"/runs/{SUITE_RUN}").text
    # duplicates, and a claim judged apart (a lost tick is outside the unguarded theory)
    assert '<span class="badge v-not-demonstrated">not demonstrated</span>' in page
    assert '<span class="outcome c-duplicated some">2 duplicated</span>' in page
    assert '<span class="outcome c-lost some">1 lost</span>' in page
    assert page.index("What happened to the work") < page.index("The claim:") < page.index(
        '<svg class="timeline"') < page.index("<h2>What ran</h2>")  # opens on the timeline


def test_a_failure_shows_its_fix_and_the_run_that_measured_it(client: httpx.Client) -> None:
    page = client.get(f"/runs/{SUITE_RUN}").text
    fix = page.split('<div class="fix">')[1].split("</div>")[0]
    assert "scalelab run scheduler-duplicates --replicas 2 --duration 4 --guard redis-lock" in fix
    locked = "20261130T120000Z-suite/20261130T120002Z-scheduler-duplicates-2"
    assert f'<a class="fix-run" href="/runs/{locked}">' in fix
    # the compare form offers the newest other run of the same experiment first
    assert f'<option value="{locked}" selected>' in page
    ok = client.get(f"/runs/{locked}").text
    assert '<div class="fix">' not in ok  # nothing lost or duplicated: no fix to offer


# --- a suite, and two runs ----------------------------------------------------------------

def test_suite_page_links_every_cell_to_its_runs(client: httpx.Client) -> None:
    r = client.get("/suites/20261130T120000Z-suite")
    assert r.status_code == 200
    page = r.text
    assert 'href="/suites/20261130T120000Z-suite/report.md"' in page
    # "Scheduling / AsyncIOScheduler", counted from the unguarded run (re-checked: 4 due, 5 ran)
    assert (f'<a class="cell-run" href="/runs/{SUITE_RUN}"' in page
            and "4 due ticks ran 5 times" in page)
    locked = "20261130T120000Z-suite/20261130T120002Z-scheduler-duplicates-2"
    assert f'<a class="cell-run" href="/runs/{locked}"' in page
    assert "Redis lock per tick: duplicated 0/4, lost 0/4" in page
    assert client.get("/suites/20261130T120000Z-suite/report.md").text == "# suite\n"


def test_compare_shows_what_differs_and_both_timelines(client: httpx.Client) -> None:
    locked = "20261130T120000Z-suite/20261130T120002Z-scheduler-duplicates-2"
    r = client.get("/compare", params={"a": SUITE_RUN, "b": locked})
    assert r.status_code == 200
    page = r.text
    diff = page.split('<table class="params-diff">')[1].split("</table>")[0]
    assert "<th>guard</th><td>none</td><td>redis-lock</td>" in diff
    assert "replicas" not in diff
    assert "<th>duplicated</th><td class=\"n\">2</td><td class=\"n\">0</td>" in page
    assert page.count('<svg class="timeline"') == 2
    assert bars(page) == 5 + 4


def test_no_route_writes(client: httpx.Client) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.request(method, f"/runs/{RUN}").status_code == 405
        assert client.request(method, f"/runs/{RUN}/files/summary.md").status_code == 405


# --- the command --------------------------------------------------------------------------

def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments.cli", "serve", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_serve_refuses_a_missing_results_dir_and_a_port_in_use(tmp_path: Path) -> None:
    missing = serve("--results", str(tmp_path / "none"), cwd=tmp_path)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip().count("\n") == 0
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "results.json").write_text("{}")
    a_file = serve("--results", str(tmp_path / "results.json"), cwd=tmp_path)
    assert a_file.returncode == 2 and a_file.stderr.strip().count("\n") == 0
    assert "is a file, not a results directory" in a_file.stderr
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        busy = serve("--results", str(tmp_path), "--port", str(port), cwd=tmp_path)
    finally:
        taken.close()
    assert busy.returncode == 2, busy.stderr
    assert busy.stderr.strip() == f"scalelab: error: port {port} on 127.0.0.1 is in use " \
                                  "(pick another with --port)"


def test_only_loopback_is_private() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert not is_loopback("example.org")


# --- the timeline, pure -------------------------------------------------------------------

def test_timeline_marks_pauses_component_faults_and_unfinished_work() -> None:
    from experiments import timeline as model
    from experiments.checker import Schedule, check
    from experiments.store import parse_event
    from experiments.web import timeline

    raw = [*tick(0, "api-1"), *tick(0, "api-2", 0.02),
           event(T0 + 0.5, "fault", "fault:pause", "api-2", mechanism="pause"),
           event(T0 + 1.01, "start", f"tick@{T0 + 1:.3f}", "api-1", "api-1:1"),
           event(T0 + 1.2, "fault", "fault:kill", "api-1", mechanism="kill", inflight=1),
           event(T0 + 1.5, "fault", "fault:resume", "api-2", mechanism="resume"),
           event(T0 + 2.0, "fault", "fault:scale", "api", mechanism="scale-up", replicas=3),
           event(T0 + 2.5, "fault", "fault:broker", "broker", mechanism="broker-outage")]
    events = [parse_event(json.dumps(e), f"line {i}") for i, e in enumerate(raw, 1)]
    window = (T0, T0 + 3)
    result = check(events, window, [Schedule("tick", 1.0)])
    t = model.build(events, result, window)
    assert t.lanes == ["api-1", "api-2", "(never ran)"]
    ended = sorted((b.lane, b.ended_by, b.category) for b in t.bars)
    assert ended == [("api-1", "fault", "interrupted"), ("api-1", "finish", "duplicated"),
                     ("api-2", "finish", "duplicated")]
    # lost: the tick the kill interrupted, on its lane; the tick nobody ran, on its own lane
    assert {(lane, work_id) for lane, _, work_id in t.lost} == {
        ("api-1", f"tick@{T0 + 1:.3f}"), ("(never ran)", f"tick@{T0 + 2:.3f}")}
    marks = {(f.lane, f.action, f.start, f.end) for f in t.faults}
    assert ("api-2", "pause", 0.5, 1.5) in marks  # shaded from the pause to the resume
    assert (None, "scale-up", 2.0, None) in marks  # a component: across every lane
    assert any(f.action == "broker-outage" and f.end is not None for f in t.faults)
    d = timeline.draw(t)
    assert len(d.bars) == 3 and len(d.spans) == 2 and len(d.lines) == 2
    assert all(r.w >= 1.5 for r in d.bars)

    in_progress = model.build(events, None, None)  # a run not yet judged
    assert {b.category for b in in_progress.bars} == {"pending", "interrupted"}
    assert not in_progress.lost


def test_timeline_draws_at_most_max_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.store import parse_event
    from experiments.web import timeline

    monkeypatch.setattr(timeline, "MAX_BARS", 10)
    raw = [e for s in range(30) for e in tick(s, "api-1")]
    events = [parse_event(json.dumps(e), f"line {i}") for i, e in enumerate(raw, 1)]
    d = timeline.draw(timeline.build(events, None, (T0, T0 + 30)))
    assert len(d.bars) == 10 and d.left_out == 20
