"""``scalelab probe``: the command, and the one function the command and the pytest
plugin share (check the app loads, then run it as an experiment).

The user's modules are first imported in a process of their own
(``python -m services.probe.check``), never in the harness: an import path that does
not import, an app that is not ASGI, a Celery app that is not one is said in one line
(exit 2) before anything starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from chaos.platforms import choose
from experiments.model import BadInput
from experiments.options import RUN_KEYS, param_option
from experiments.probe import requests
from experiments.probe.spec import PARAMS, SPEC
from experiments.runner import Run
from experiments.summary import UNTESTED, exit_code, outcome
from services.probe import load

CHECK_TIMEOUT = 120.0  # seconds to import the user's app once (a busy machine, a big app)


def values_of(*, workload: Path | None = None, env: Sequence[str] = (),
              faults: Sequence[str] = (), **given: Any) -> dict[str, Any]:
    """The probe's checked parameter values from what a user gives (a file, NAME=VALUE
    pairs, a list of faults, the rest as the options say)."""
    pairs: dict[str, str] = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadInput(f"--env takes NAME=VALUE, not {item!r}")
        pairs[name] = value
    values = SPEC.values({
        **given,
        "workload": requests.read(workload) if workload is not None else "",
        "env": json.dumps(pairs, sort_keys=True) if pairs else "",
        "faults": ",".join(faults),
        "app_dir": str(Path(given.get("app_dir") or ".").resolve()),
    })
    SPEC.experiment(values)  # bad combinations are refused before the app is imported
    return values


def check_app(values: Mapping[str, Any]) -> None:
    """Import the app as an instance would, in its own process; BadInput if it cannot."""
    if not Path(values["app_dir"]).is_dir():
        raise BadInput(f"--app-dir {values['app_dir']!r} is not a directory")
    env = {**os.environ, load.APP_DIR: str(values["app_dir"]), load.APP_ENV: values["env"],
           load.ASGI: values["asgi"], load.CELERY: values["celery"],
           # a broker URL of the right form where nothing listens: importing connects nowhere
           "SCALELAB_BROKER_URL": "redis://127.0.0.1:1/0"}
    try:
        done = subprocess.run([sys.executable, "-m", "services.probe.check"], env=env,
                              capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BadInput(f"importing the app took more than {CHECK_TIMEOUT:g} s") from None
    if done.returncode:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise BadInput(lines[-1])


def run_probe(values: Mapping[str, Any], *, seed: int, results: Path, quiet: bool = True,
              plot: bool = True, platform_options: Mapping[str, Any] | None = None) -> Run:
    """Check the app loads, then run the probe on the local platform."""
    from experiments.suite import execute

    given = dict(platform_options or {})
    if given.pop("platform", "local") != "local":
        raise BadInput("the probe runs on the local platform only (docs/probe.md says what "
                       "it would need on Kubernetes)")
    if given.get("fork_server"):
        raise BadInput("the probe execs every instance, so your app is imported fresh: "
                       "--fork-server does not apply")
    check_app(values)
    platform = choose("local", {**given, "fork_server": False})
    return execute(SPEC, values, seed=seed, results=results, platform=platform, quiet=quiet,
                   plot=plot)


def _option(name: str) -> click.Option:
    return param_option(next(p for p in PARAMS if p.name == name))


def by_what_lines(summary: Mapping[str, Any]) -> list[str]:
    """One line per job, task or function of the app: its verdicts."""
    by_what = (summary.get("measured") or {}).get("by_what") or {}
    return [f"  {name}: " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
            for name, counts in by_what.items()]


@click.command("probe", context_settings={"max_content_width": 100})
@click.option("--asgi", default="", help="your ASGI app, module:attribute (e.g. shop.main:app)")
@click.option("--celery", default="", help="your Celery app, module:attribute "
                                           "(e.g. shop.worker:app)")
@click.option("--app-dir", type=click.Path(path_type=Path), default=Path("."),
              show_default=True, help="the directory your import paths are relative to")
@click.option("--workload", type=click.Path(path_type=Path), default=None,
              help="YAML/JSON file: requests, each with method, path, body, rate (per second); "
                   "without it only your schedules run")
@click.option("--env", multiple=True, metavar="NAME=VALUE",
              help="environment for your app (repeatable); {broker} in VALUE is the lab's "
                   "broker URL")
@click.option("--fault", "faults", multiple=True, metavar="FAULT[:COMPONENT]",
              help="a fault of the lab's table (kill, terminate, rolling-restart, ...; one "
                   "that can strike mid-job does); repeatable, spread over the run in the "
                   "order given; COMPONENT api, worker or beat")
def probe(**given: Any) -> None:
    """Run YOUR app's replicas, Celery workers and beat on the local platform under faults,
    and count what it loses or runs twice (exit 0: nothing; 1: something; 2: bad input;
    3: untested, a fault did not happen).

    Nothing in your code changes: Celery's signals, APScheduler's listener events and
    FastAPI's BackgroundTasks are observed; `from services.probe import unit` names a
    business key where you want one. --junit writes a test case per job, task and function
    of your app, failed when any of its units was lost or run twice.
    """
    from experiments import junit, store
    from experiments.cli import console, say_run

    if given["junit"] is not None:
        junit.check_writable(given["junit"])
    values = values_of(**{k: v for k, v in given.items()
                          if k not in (*RUN_KEYS, "as_json", "plot", "junit")})
    r = run_probe(values, seed=given["seed"], results=given["results"], quiet=given["as_json"],
                  plot=given["plot"], platform_options={
                      k: given[k] for k in RUN_KEYS if k not in ("seed", "results")})
    if given["as_json"]:
        print(json.dumps(r.summary, separators=(",", ":")))
    else:
        say_run(r.summary, r.directory, store.stored_near(r.directory))
        for line in by_what_lines(r.summary):
            console.print(line, highlight=False)
    for error in r.summary.get("fault_errors") or ():
        console.print(f"scalelab: fault not struck: {error}", highlight=False, soft_wrap=True)
    if given["junit"] is not None:
        junit.write(given["junit"], "scalelab probe", junit_cases(r.summary, r.directory))
    raise click.exceptions.Exit(exit_code([r.summary]))


def junit_cases(summary: Mapping[str, Any], directory: Path) -> list[Any]:
    """One test case per job, task and function of the app: failed when any of its units
    was lost or run twice (the run as one case when it counted no unit at all)."""
    from experiments import junit

    by_what = (summary.get("measured") or {}).get("by_what") or {}
    if not by_what or outcome(summary) == UNTESTED:  # untested: one case, skipped, saying why
        return [junit.of_run("probe", summary, str(directory))]
    cases = []
    for name, counts in by_what.items():
        said = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items()))
        wrong = counts.get("lost", 0) or counts.get("duplicated", 0)
        cases.append(junit.Case(name, "scalelab.probe",
                                "not-demonstrated" if wrong else "demonstrated", said,
                                output=f"stored: {directory}"))
    return cases


# The topology and timing options, as the probe's parameters declare them (bounds, defaults).
probe.params[6:6] = [_option(name) for name in ("replicas", "workers", "concurrency", "beat",
                                                "duration", "drain", "grace")]
