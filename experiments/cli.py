"""The ``scalelab`` command line.

Exit codes, as Jepsen's: 0 the experiment's expectation held, 1 it did not,
2 bad input or the lab could not run (one line on stderr says why).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console

from chaos.platform import Platform, PlatformError
from experiments import catalog, store
from experiments.model import BadInput
from experiments.progress import live
from experiments.report import (
    runs_table,
    seed_table,
    suite_markdown,
    summary_table,
    variant_label,
)
from experiments.runner import Run, new_run_directory, run_experiment

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make the horizontal-scaling problem of Python backends countable.")
console = Console(stderr=True)
out = Console()

PLATFORMS = ("local", "kubernetes")


class LabCannotRun(Exception):
    """The lab could not run (exit 2)."""


def _platform_factory(platform: str, context: str | None, ledger_port: int | None = None) -> Any:
    if platform not in PLATFORMS:
        raise BadInput(f"unknown platform {platform!r} (known: {', '.join(PLATFORMS)})")
    if ledger_port is not None:
        if platform != "local":
            raise BadInput("--ledger-port applies to the local platform only")
        if not 1024 <= ledger_port <= 65535:
            raise BadInput(f"--ledger-port must be between 1024 and 65535, not {ledger_port}")

    def make(workdir: Path) -> Platform:
        if platform == "kubernetes":
            from chaos.kubernetes import KubernetesPlatform

            return KubernetesPlatform(context=context or "kind-scalelab")
        from chaos.local import LocalPlatform

        return LocalPlatform(workdir, ledger_port=ledger_port)

    return make


def _check_results_dir(results: Path) -> None:
    try:
        results.mkdir(parents=True, exist_ok=True)
        probe = results / ".scalelab-write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BadInput(f"results directory {str(results)!r} is not writable "
                       f"({exc.strerror or exc}); pass --results DIR") from None


def execute(name: str, args: list[str], *, seed: int, results: Path, platform: str,
            context: str | None, quiet: bool, label: str | None = None,
            ledger_port: int | None = None) -> Run:
    spec = catalog.get(name)
    params = spec.parse_args(args)
    experiment = spec.build(params)
    make = _platform_factory(platform, context, ledger_port)
    _check_results_dir(results)
    with live(console, label or name, quiet) as progress:
        return run_experiment(experiment, make, results, seed, progress)


@app.command("list")
def list_experiments() -> None:
    """List the experiments."""
    for spec in catalog.CATALOG.values():
        out.print(f"[bold]{spec.name}[/bold]  {spec.summary}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="experiment name (see `scalelab list`)")],
    seed: Annotated[int, typer.Option(help="drives every random choice; recorded")] = 1,
    results: Annotated[Path, typer.Option(help="where run directories go")] = Path("results"),
    platform: Annotated[str, typer.Option(help="local or kubernetes")] = "local",
    context: Annotated[str | None, typer.Option(help="kube context (kubernetes)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print summary.json last")] = False,
    ledger_port: Annotated[int | None, typer.Option(
        help="local: the ledger Redis listens here (watch it with redis-cli)")] = None,
) -> None:
    """Run one experiment; its own options follow (`scalelab run NAME --help`)."""
    if "--help" in ctx.args or "-h" in ctx.args:
        spec = catalog.get(name)
        out.print(f"[bold]{spec.name}[/bold]: {spec.summary}")
        for p in spec.params:
            choices = f" ({'|'.join(p.choices)})" if p.choices else ""
            out.print(f"  {p.flag:<18} {p.help}{choices} [default: {p.default}]")
        raise typer.Exit(0)
    r = execute(name, list(ctx.args), seed=seed, results=results, platform=platform,
                context=context, quiet=as_json, ledger_port=ledger_port)
    if as_json:
        print(json.dumps(r.summary, separators=(",", ":")))
    else:
        out.print(summary_table(r.summary))
        out.print(f"{r.summary['expectation']}  ->  {r.directory}")
    raise typer.Exit(0 if r.summary["valid"] else 1)


@app.command()
def suite(
    seed: Annotated[int, typer.Option(help="drives every random choice; recorded")] = 1,
    results: Annotated[Path, typer.Option(help="where run directories go")] = Path("results"),
    quick: Annotated[bool, typer.Option(help="short runs (what `make lab` uses)")] = False,
    platform: Annotated[str, typer.Option(help="local or kubernetes")] = "local",
    context: Annotated[str | None, typer.Option(help="kube context (kubernetes)")] = None,
    only: Annotated[str | None, typer.Option(help="comma-separated experiment names")] = None,
    jobs: Annotated[int, typer.Option(min=1, max=8,
                                      help="runs at once (each its own harness process)")] = 1,
) -> None:
    """Run the catalogue, print the measured table and write the suite's report.md."""
    names = only.split(",") if only else list(catalog.CATALOG)
    for name in names:
        catalog.get(name)  # an unknown name fails before anything runs
    _check_results_dir(results)
    suite_dir = new_run_directory(results, "suite")
    suite_dir.mkdir(parents=True)
    planned: list[tuple[str, str, list[str]]] = []  # (label, experiment, its options)
    for name in names:
        spec = catalog.get(name)
        for variant in spec.suite_variants(quick):
            settings = {**(spec.quick if quick else {}), **variant}
            args = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
            spec.build(spec.parse_args(args))  # bad settings fail before anything runs
            label = variant_label({"experiment": name, "parameters": variant}, list(variant))
            planned.append((label, name, args))
    if jobs > 1:
        done = _suite_in_parallel(planned, jobs, suite_dir, seed=seed, platform=platform,
                                  context=context)
    else:
        done = []
        for label, name, args in planned:
            if not console.is_terminal:
                console.print(f"running {label} ...")
            r = execute(name, args, seed=seed, results=suite_dir, platform=platform,
                        context=context, quiet=False, label=label)
            done.append((label, r.summary, r.directory))
    labels = [label for label, _, _ in done]
    summaries = [summary for _, summary, _ in done]
    report_md = suite_dir / "report.md"
    report_md.write_text(suite_markdown(
        [(label, s, d.relative_to(suite_dir).as_posix()) for label, s, d in done],
        seed=seed, quick=quick), encoding="utf-8")
    out.print(runs_table(summaries, labels))
    out.print(seed_table(summaries))
    for s, label in zip(summaries, labels, strict=True):
        out.print(f"- {label}: {s['expectation']}")
    out.print(f"report: {report_md}")
    raise typer.Exit(0 if all(s["valid"] for s in summaries) else 1)


def _suite_in_parallel(planned: list[tuple[str, str, list[str]]], jobs: int, suite_dir: Path,
                       *, seed: int, platform: str, context: str | None,
                       ) -> list[tuple[str, dict[str, Any], Path]]:
    from experiments.parallel import ChildRun, run_children

    common = ["--seed", str(seed), "--results", str(suite_dir.resolve()),
              "--platform", platform, *(["--context", context] if context else [])]
    children = [ChildRun(label, [name, *args, *common]) for label, name, args in planned]
    console.print(f"running {len(children)} runs, {jobs} at a time ...")
    run_children(children, jobs, suite_dir / "harness-logs", dict(os.environ))
    failed = [c for c in children if c.summary is None]
    if failed:
        raise LabCannotRun(f"{failed[0].label}: {failed[0].error} "
                           f"(logs: {suite_dir / 'harness-logs'})")
    by_run = {}
    for d in suite_dir.iterdir():
        summary_json = d / "summary.json"
        if summary_json.is_file():
            by_run[json.loads(summary_json.read_text())["run_id"]] = d
    return [(c.label, c.summary, by_run[c.summary["run_id"]]) for c in children
            if c.summary is not None]


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (holds summary.json)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the re-checked summary")] = False,
) -> None:
    """Re-check a stored run from its events.jsonl (no Redis); rewrite summary.md and the plot."""
    r = store.recheck(run_dir)
    try:
        store.write_readables(run_dir, r.summary, r.events, r.result)
    except OSError as exc:
        raise BadInput(f"{run_dir}: cannot write the report ({exc.strerror or exc})") from None
    if as_json:
        print(json.dumps(r.summary, separators=(",", ":")))
    else:
        out.print(summary_table(r.summary))
        out.print(f"{r.summary['expectation']}  ->  {run_dir / store.SUMMARY_MD}")
    for difference in r.differences:
        console.print(f"scalelab: re-check differs from {store.SUMMARY_JSON}: {difference}",
                      highlight=False, soft_wrap=True)
    raise typer.Exit(0 if r.summary["valid"] else 1)


def main(argv: list[str] | None = None) -> None:
    try:
        # Without standalone mode click returns a typer.Exit's code instead of exiting.
        code = app(args=argv, standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into this code, after our teardown ran
            raise KeyboardInterrupt
        sys.exit(code if isinstance(code, int) else 0)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        console.print("scalelab: interrupted; everything it started was stopped")
        sys.exit(130)
    except (BadInput, PlatformError, LabCannotRun) as exc:
        console.print(f"scalelab: error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("scalelab: interrupted; everything it started was stopped")
        sys.exit(130)
    except Exception as exc:
        # A usage error of click, or of the click that newer typer versions vendor.
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            message = " ".join(str(exc.format_message()).split())
            console.print(f"scalelab: error: {message}", highlight=False, soft_wrap=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
