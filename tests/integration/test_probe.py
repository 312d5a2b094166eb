"""`scalelab probe` on apps that are not the lab's own: the shop examples, and one written here.

The naive shop (a scheduler in every replica, early acks, BackgroundTasks) is caught —
reports run twice, an email lost with its worker; the fixed one (one beat, acks late
with an idempotency key, Celery for the webhook) loses nothing and runs nothing
twice under the same faults. An app the lab has never seen is probed without a line
of it changed.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from experiments import store
from experiments.probe.pytest_plugin import Probe, scalelab_probe  # noqa: F401 - the fixture
from tests.conftest import REPO

pytestmark = pytest.mark.slow
SHOP = REPO / "examples" / "shop"
# The shop's hourly report every 2 s, short emails and webhooks, tasks delivered again
# 1 s after their worker died (the fixed shop's visibility timeout).
SHOP_ENV = ("--env", "SHOP_BROKER_URL={broker}", "--env", "SHOP_REPORT_SECONDS=2",
            "--env", "SHOP_EMAIL_SECONDS=0.3", "--env", "SHOP_WEBHOOK_SECONDS=0.3",
            "--env", "SHOP_VISIBILITY_TIMEOUT=1")
FAULTS = ("--fault", "kill:worker", "--fault", "rolling-restart:api")


def probe_shop(scalelab: Any, version: str, junit: Path,
               *extra: str) -> tuple[int, dict[str, Any]]:
    r = scalelab("probe", "--app-dir", str(SHOP / version), "--asgi", "shop.main:app",
                 "--celery", "shop.tasks:app", "--workload", str(SHOP / "orders.yaml"),
                 "--workers", "2", "--duration", "10", "--drain", "15", "--json", "--no-plot",
                 "--junit", str(junit), *SHOP_ENV, *FAULTS, *extra, timeout=300)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, r.summary


def failed_cases(junit: Path) -> set[str]:
    """The JUnit test cases that failed (one per job, task and function of the app)."""
    cases = ET.parse(junit).getroot().iter("testcase")
    return {str(c.get("name")) for c in cases if c.find("failure") is not None}


@pytest.mark.timeout(360)
def test_the_naive_shop_is_caught(scalelab: Any, tmp_path: Path) -> None:
    code, s = probe_shop(scalelab, "naive", tmp_path / "junit.xml")
    by_what = s["measured"]["by_what"]
    assert code == 1 and not s["valid"]
    # every API replica ran the hourly report: periods run more than once
    assert by_what["apscheduler hourly-report"].get("duplicated", 0) >= 3, by_what
    # the worker killed mid-email took it (acknowledged on delivery) with it
    assert by_what["celery shop.send_confirmation"].get("lost", 0) >= 1, by_what
    assert by_what["unit email"].get("lost", 0) >= 1, by_what
    assert s["mid_job_faults"]["with_work_in_flight"] >= 1
    assert {"apscheduler hourly-report", "celery shop.send_confirmation",
            "unit email"} <= failed_cases(tmp_path / "junit.xml")


@pytest.mark.timeout(360)
def test_the_fixed_shop_passes_under_the_same_faults(scalelab: Any, tmp_path: Path) -> None:
    code, s = probe_shop(scalelab, "fixed", tmp_path / "junit.xml", "--beat", "1")
    by_what = s["measured"]["by_what"]
    assert code == 0 and s["valid"], (s["expectation"], by_what)
    assert s["counts"]["lost"] == s["counts"]["duplicated"] == 0
    assert {"celery shop.hourly_report", "celery shop.notify_webhook",
            "celery shop.send_confirmation", "unit email"} <= set(by_what)
    assert s["mid_job_faults"]["with_work_in_flight"] >= 1  # the kill did strike mid-task
    assert not failed_cases(tmp_path / "junit.xml")


UNSEEN = '''
from contextlib import asynccontextmanager

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from starlette.applications import Starlette


def tick():
    pass


@asynccontextmanager
async def lifespan(app):
    scheduler = AsyncIOScheduler()
    scheduler.add_job(tick, "interval", seconds=1)
    scheduler.start()
    yield
    scheduler.shutdown()


app = Starlette(lifespan=lifespan)
'''


@pytest.mark.timeout(240)
def test_an_app_the_lab_never_saw_has_its_scheduler_duplicates_counted(
        lab_tag: str, tmp_path: Path, scalelab_probe: Probe) -> None:  # noqa: F811
    app_dir = tmp_path / "ticker"
    app_dir.mkdir()
    (app_dir / "ticker.py").write_text(textwrap.dedent(UNSEEN))
    result = scalelab_probe(asgi="ticker:app", app_dir=app_dir, replicas=3, duration=6.0,
                            drain=3.0)
    assert result.duplicated >= 3 and not result.valid, result.by_what
    assert set(result.by_what) == {"apscheduler tick"}  # the job's name: its id is random
    finished_on: dict[str, set[str]] = defaultdict(set)
    for line in (result.directory / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["kind"] == "finish":
            finished_on[event["work_id"]].add(event["instance"])
    # a period's tick ran once in each of the three replicas
    assert max(len(on) for on in finished_on.values()) == 3
    # the run directory is any experiment's: re-checked from its files alone, it agrees
    again = store.recheck(result.directory)
    assert again.differences == [] and again.summary["counts"] == result.counts


@pytest.fixture
def not_apps(tmp_path: Path) -> Path:
    (tmp_path / "mod.py").write_text(textwrap.dedent('''
        from starlette.applications import Starlette

        asgi = Starlette()
        celery = object()

        def view(request):
            return None
        '''))
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    return tmp_path


@pytest.mark.parametrize(("args", "says"), [
    ((), "give the app to probe"),
    (("--asgi", "broken:app"), "'broken:app' does not import: ModuleNotFoundError"),
    (("--asgi", "mod"), "is not an import path of the form module:attribute"),
    (("--asgi", "mod:nothing"), "module 'mod' has no 'nothing'"),
    (("--asgi", "mod:view"), "'mod:view' is not an ASGI app"),
    (("--asgi", "mod:celery"), "'mod:celery' is not an ASGI app"),
    (("--celery", "mod:asgi"), "'mod:asgi' is not a Celery app object; it is Starlette"),
    (("--asgi", "mod:asgi", "--env", "NO_VALUE"), "--env takes NAME=VALUE"),
    (("--asgi", "mod:asgi", "--fault", "explode"), "unknown fault"),
    (("--asgi", "mod:asgi", "--workload", "missing.yaml"), "workload file"),
    (("--asgi", "mod:asgi", "--replicas", "99"), "must be at most 16, not 99"),
    (("--asgi", "mod:asgi", "--platform", "kubernetes"), "the local platform only"),
    (("--asgi", "mod:asgi", "--fork-server"), "--fork-server does not apply"),
])
def test_bad_input_is_one_line_and_exit_2(scalelab_here: Any, not_apps: Path,
                                           args: tuple[str, ...], says: str) -> None:
    r = scalelab_here("probe", "--app-dir", str(not_apps), *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert says in lines[0], lines[0]


def test_help_documents_the_options(scalelab_here: Any) -> None:
    r = scalelab_here("probe", "--help")
    assert r.returncode == 0
    for option in ("--asgi", "--celery", "--app-dir", "--workload", "--env", "--fault",
                   "--replicas", "--workers", "--beat", "--duration", "--seed", "--results"):
        assert option in r.stdout, option


UNSEEN4 = '''
from contextlib import asynccontextmanager

from apscheduler import AsyncScheduler
from apscheduler.triggers.interval import IntervalTrigger
from starlette.applications import Starlette


def tick():
    pass


@asynccontextmanager
async def lifespan(app):
    async with AsyncScheduler() as scheduler:  # its own memory store: one per replica
        await scheduler.add_schedule(tick, IntervalTrigger(seconds=1), id="tick")
        await scheduler.start_in_background()
        yield


app = Starlette(lifespan=lifespan)
'''


@pytest.mark.timeout(240)
def test_an_apscheduler_4_app_has_its_duplicates_counted_from_its_events(
        lab_tag: str, tmp_path: Path, scalelab_probe: Probe) -> None:  # noqa: F811
    from chaos import apscheduler4

    app_dir = tmp_path / "ticker4"
    app_dir.mkdir()
    (app_dir / "ticker4.py").write_text(textwrap.dedent(UNSEEN4))
    # The lab keeps the pre-release apart from APScheduler 3: the app's PYTHONPATH finds it.
    result = scalelab_probe(asgi="ticker4:app", app_dir=app_dir, replicas=3, duration=6.0,
                            drain=3.0, env={"PYTHONPATH": str(apscheduler4.ensure_installed())})
    assert result.duplicated >= 3 and not result.valid, result.by_what
    assert set(result.by_what) == {"apscheduler tick"}
    schedules = result.summary["schedules"]
    assert schedules == [{"job": "tick", "interval": 1.0, "epoch": 0.0, "aligned": True}]


FAILING = {
    "payments.py": '''
        import os

        from celery import Celery

        app = Celery("payments", broker=os.environ["PAYMENTS_BROKER"])


        @app.task(name="payments.charge")
        def charge():
            pass


        @app.task(name="payments.refund")
        def refund():
            raise ValueError("the bank said no")
        ''',
    "api.py": '''
        from fastapi import BackgroundTasks, FastAPI

        from payments import charge, refund

        app = FastAPI()


        def receipt():
            raise RuntimeError("the printer is out of paper")


        @app.post("/pay")
        def pay(background_tasks: BackgroundTasks):
            charge.delay()
            refund.delay()
            background_tasks.add_task(receipt)
            return {"ok": True}
        ''',
}


@pytest.mark.timeout(240)
def test_work_that_raises_is_lost_not_done(lab_tag: str, tmp_path: Path,
                                           scalelab_probe: Probe) -> None:  # noqa: F811
    app_dir = tmp_path / "payments"
    app_dir.mkdir()
    for name, source in FAILING.items():
        (app_dir / name).write_text(textwrap.dedent(source))
    result = scalelab_probe(asgi="api:app", celery="payments:app", app_dir=app_dir,
                            replicas=1, workers=1, duration=4.0, drain=10.0,
                            env={"PAYMENTS_BROKER": "{broker}"},
                            workload={"requests": [{"method": "POST", "path": "/pay",
                                                    "rate": 2}]})
    by_what = result.by_what
    paid = by_what["celery payments.charge"]["ok"]
    assert paid >= 6 and by_what["celery payments.refund"] == {"lost": paid}, by_what
    assert by_what["backgroundtasks receipt"] == {"lost": paid}, by_what
    assert result.summary["refused"] == 2 * paid  # each ended without its effect


JOBS = '''
import os
import time

from celery import Celery

app = Celery("jobs", broker=os.environ["JOBS_BROKER"])  # Celery's default: early acks


@app.task(name="jobs.resize")
def resize(image):
    time.sleep(0.3)
'''


@pytest.mark.timeout(240)
def test_tasks_the_harness_publishes_are_counted_and_lost_with_their_worker(
        lab_tag: str, tmp_path: Path, scalelab_probe: Probe) -> None:  # noqa: F811
    app_dir = tmp_path / "jobs"
    app_dir.mkdir()
    (app_dir / "jobs.py").write_text(textwrap.dedent(JOBS))
    result = scalelab_probe(celery="jobs:app", app_dir=app_dir, workers=1, duration=6.0,
                            drain=8.0, env={"JOBS_BROKER": "{broker}"}, faults=["kill"],
                            workload={"tasks": [{"task": "jobs.resize", "args": ["a.png"],
                                                 "rate": 4}]})
    counts = result.by_what["celery jobs.resize"]
    assert result.summary["requests"]["acknowledged"] == sum(counts.values()) >= 20, counts
    assert counts.get("lost", 0) >= 1 and counts.get("ok", 0) >= 10, counts
    assert result.summary["mid_job_faults"]["with_work_in_flight"] == 1
