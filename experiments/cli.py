"""The ``scalelab`` command line.

``scalelab run NAME`` is one command per experiment, made from its parameters, so
``scalelab run NAME --help`` lists that experiment's own options with their bounds
and defaults. Exit codes, after Jepsen's: 0 the experiment's expectation was
demonstrated, 1 it was not, 2 bad input or the lab could not run (one line on stderr
says why), 3 untested (a fault the expectation depends on did not happen; a suite
exits 3 when a run is untested and none failed), 4 ``scalelab report``'s re-check
differs from the stored counts; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM) —
both after everything the lab started was stopped.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from chaos import forkserver
from chaos.platform import PlatformError
from chaos.platforms import choose
from experiments import catalog, findings, junit, store
from experiments import suite as runs
from experiments.model import BadInput, ExperimentSpec
from experiments.options import chosen_platform, param_option, run_options, with_run_options
from experiments.probe.command import probe as probe_command
from experiments.report import (
    runs_table,
    suite_markdown,
    summary_table,
    tables_measured,
    terminal_table,
)
from experiments.spread import parse_seeds, spread_markdown, spread_table, spreads
from experiments.suite import LabCannotRun as LabCannotRun
from experiments.suite import check_results_dir as check_results_dir
from experiments.suite import console as console
from experiments.suite import execute as execute
from experiments.summary import exit_code

EXITS = ("Exit codes: 0 demonstrated, 1 not demonstrated, 2 bad input or the lab could not "
         "run, 3 untested (a fault the expectation depends on did not happen), 4 `report`: "
         "the re-check differs from the stored counts; 130 Ctrl-C, 143 SIGTERM.")
RECHECK_DIFFERS = 4


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             no_args_is_help=True, epilog=EXITS)
def app() -> None:
    """Make the horizontal-scaling problem of Python backends countable."""
out = Console()


class Terminated(BaseException):
    """SIGTERM reached the harness: unwind (tearing everything down) like Ctrl-C."""

    signal = "SIGTERM"  # what the run directory records as having interrupted it


def say_run(summary: Any, where: Path, near: Any = ()) -> None:
    """A finished run in the terminal: its counts, what happened to the work, whether the
    claim was demonstrated, and (when work was lost or duplicated) the fix."""
    out.print(summary_table(summary))
    for line in findings.terminal_lines(summary, near):
        out.print(line, highlight=False)
    out.print(f"stored: {where}", highlight=False)


# --- scalelab run NAME: one command per experiment ----------------------------------------

def _common_options() -> list[click.Parameter]:
    return [
        *run_options(),
        click.Option(["--json", "as_json"], is_flag=True, help="print summary.json last"),
        click.Option(["--plot/--no-plot"], default=True, show_default=True,
                     help="draw timeline.png (`scalelab report RUN` draws it later)"),
        click.Option(["--junit"], type=click.Path(path_type=Path), default=None,
                     help="also write JUnit XML here: one test case, failed when not "
                          "demonstrated, skipped when untested"),
    ]


def _run_command(spec: ExperimentSpec) -> click.Command:
    own = [param_option(p) for p in spec.all_params]
    common = [*_common_options(), click.Option(
        ["--repeat"], type=click.IntRange(1, 50), default=1, show_default=True,
        help="run it this many times, on seeds --seed, --seed+1, ...: each count's min / "
             "median / max, and how many runs demonstrated it")]
    clash = {str(o.name) for o in own} & {str(o.name) for o in common}
    if clash:
        raise ValueError(f"{spec.name}: parameter {sorted(clash)[0]!r} clashes with a common "
                         "option")

    def callback(**given: Any) -> None:
        values = {p.name: given[p.name] for p in spec.all_params}
        chosen = chosen_platform(given)
        if given["junit"] is not None:
            junit.check_writable(given["junit"])
        runs = []
        for seed in range(given["seed"], given["seed"] + given["repeat"]):
            r = execute(spec, values, seed=seed, results=given["results"],
                        platform=chosen, quiet=given["as_json"], plot=given["plot"])
            if given["as_json"]:
                print(json.dumps(r.summary, separators=(",", ":")))
            else:
                say_run(r.summary, r.directory, store.stored_near(r.directory))
            runs.append(r)
        if given["junit"] is not None:
            junit.write(given["junit"], f"scalelab run {spec.name}",
                        [junit.of_run(spec.name, r.summary, str(r.directory),
                                      store.stored_near(r.directory)) for r in runs])
        summaries = [r.summary for r in runs]
        if len(runs) > 1 and not given["as_json"]:
            cells = spreads((spec.name, s) for s in summaries)
            (out if out.is_terminal else Console(width=160)).print(spread_table(cells))
            for cell in cells:
                if cell.unstable:
                    out.print(f"unstable: {cell.label}: broken by {', '.join(cell.broke())}",
                              highlight=False)
        raise click.exceptions.Exit(exit_code(summaries))

    return click.Command(spec.name, params=[*own, *common], callback=callback,
                         help=spec.summary, short_help=spec.summary, epilog=EXITS,
                         context_settings={"max_content_width": 100})


class _Experiments(click.Group):
    """``scalelab run``: its commands are the catalogue's experiments."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(catalog.CATALOG)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return _run_command(catalog.get(cmd_name))  # an unknown name is bad input


run_group = _Experiments("run", help="Run one experiment: `scalelab run NAME --help` lists "
                                      "its options.", no_args_is_help=True)


# --- the other commands -------------------------------------------------------------------

@app.command("list")
@click.option("--markdown", is_flag=True, help="the catalogue as the table of docs/experiments.md")
def list_experiments(markdown: bool) -> None:
    """List the experiments."""
    if markdown:
        click.echo(catalogue_markdown())
        return
    click.echo(catalogue_text(catalog.CATALOG.values(), out.width if out.is_terminal else 80))


def catalogue_text(specs: Any, width: int = 80) -> str:
    """The catalogue, aligned: each name in one column, its summary wrapped beside it."""
    import textwrap

    specs = list(specs)
    column = max(len(spec.name) for spec in specs) + 2
    room = max(20, min(width, 100) - column)
    lines = []
    for spec in specs:
        wrapped = textwrap.wrap(spec.summary, room) or [""]
        lines.append(spec.name.ljust(column) + wrapped[0])
        lines += [" " * column + more for more in wrapped[1:]]
    return "\n".join(lines)


def catalogue_markdown() -> str:
    """The catalogue table of docs/experiments.md, made from the experiments' own declarations."""
    lines = ["| experiment | what it shows | its options | suite variants |",
             "| --- | --- | --- | --- |"]
    for spec in catalog.CATALOG.values():
        options = " ".join(f"`{p.flag}`" for p in spec.params)
        variants = "; ".join(" ".join(f"{k}={v}" for k, v in v.items()) or "defaults"
                             for v in spec.variants)
        lines.append(f"| `{spec.name}` | {spec.summary} | {options} | {variants} |")
    return "\n".join(lines)


@app.command()
@with_run_options
@click.option("--quick", is_flag=True, help="short runs (what `make lab` uses)")
@click.option("--only", default=None, help="comma-separated experiment names")
@click.option("--jobs", type=click.IntRange(1, 8), default=1, show_default=True,
              help="runs at once (each its own harness process)")
@click.option("--junit", "junit_xml", type=click.Path(path_type=Path), default=None,
              help="also write JUnit XML here: a test case per run")
@click.option("--seeds", default=None,
              help="run every cell on each of these seeds (1-5, or 1,4,7) instead of --seed: "
                   "each cell's counts as min / median / max, and how many runs demonstrated "
                   "its expectation")
def suite(quick: bool, only: str | None, jobs: int, junit_xml: Path | None,
          seeds: str | None, **given: Any) -> None:
    """Run the catalogue, print the measured tables and write the suite's report.md and
    report.html (one self-contained page, timelines inline, for a CI job to keep)."""
    chosen = chosen_platform(given)
    seed, results = given["seed"], given["results"]
    planned = runs.plan_catalogue(only.split(",") if only else None, quick)
    if not only:  # the whole catalogue: what the platform can do, the rest said
        planned, left_out = runs.runnable(planned, chosen)
        for line in left_out:
            console.print(line)
    runs.check(planned, chosen, jobs)  # bad settings or a fault it lacks: nothing starts
    check_results_dir(results)
    if junit_xml is not None:
        junit.check_writable(junit_xml)
    try:
        each = parse_seeds(seeds) if seeds else [seed]
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    # every cell on each seed: a run's label says its seed, its cell is the label without
    cell_of = {p.label: p.label for p in planned}
    if seeds:
        planned = [replace(p, label=f"{p.label} seed={s}", seed=s) for p in planned
                   for s in each]
        cell_of = {p.label: p.label.rsplit(" seed=", 1)[0] for p in planned}
    suite_dir = runs.suite_directory(results)
    done = [(o.label, o.summary, o.directory)
            for o in runs.run_many(planned, suite_dir, seed=seed, jobs=jobs, platform=chosen)
            if o.summary is not None and o.directory is not None]
    labels = [label for label, _, _ in done]
    summaries = [summary for _, summary, _ in done]
    report_md = suite_dir / "report.md"
    cells = spreads((cell_of[label], s) for label, s, _ in done) if seeds else []
    report_md.write_text(suite_markdown(
        [(label, s, d.relative_to(suite_dir).as_posix()) for label, s, d in done],
        seed=seed, quick=quick) + (f"\n## Spread over seeds {seeds}\n\n"
                                   f"{spread_markdown(cells)}\n" if cells else ""),
        encoding="utf-8")
    out.print(runs_table(summaries, labels))
    if cells:  # piped (make, CI logs): one line per cell rather than 80 columns
        (out if out.is_terminal else Console(width=160)).print(spread_table(cells))
    for key in ["seed", *(k for k in tables_measured(summaries) if k != "seed")]:
        out.print(terminal_table(summaries, key))
    near = [(str(d), s) for _, s, d in reversed(done)]
    for s, label in zip(summaries, labels, strict=True):
        out.print(f"- {escape(label)}", highlight=False)
        for line in findings.terminal_lines(s, near):
            out.print(f"    {line}", highlight=False)
    from experiments.web import report as html_report

    out.print(f"report: {report_md}")
    out.print(f"report: {html_report.write(suite_dir)}")
    if junit_xml is not None:
        junit.write(junit_xml, f"scalelab suite {suite_dir.name}",
                    [junit.of_run(label, s, str(d), near) for label, s, d in done])
    raise click.exceptions.Exit(exit_code(summaries))


def run_child(order_file: Path) -> None:
    """One run of a parallel suite, as the suite ordered it: the values, not options."""
    order = json.loads(order_file.read_text(encoding="utf-8"))
    entry, options = choose(order["platform"], order["platform_options"])
    if entry.prepare is not None:
        entry.prepare(options)
    try:
        spec = catalog.get(order["experiment"])
        r = execute(spec, spec.values(order["values"]), seed=int(order["seed"]),
                    results=Path(order["results"]), platform=(entry, options),
                    quiet=True, label=order["label"], plot=order.get("plot", True))
    finally:
        forkserver.discard()
    print(json.dumps(r.summary, separators=(",", ":")))
    raise click.exceptions.Exit(exit_code([r.summary]))


@app.command(epilog=EXITS)
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the re-checked summary")
def report(run_dir: Path, as_json: bool) -> None:
    """Re-check a stored run from its events.jsonl (no Redis); rewrite summary.json,
    summary.md and the plot from the re-check. Exits 4 when it differs from the stored
    counts (the differences are kept in summary.json), else by the verdict."""
    r = store.recheck(run_dir)
    try:
        store.write_recheck(r)
    except OSError as exc:
        raise BadInput(f"{run_dir}: cannot write the report ({exc.strerror or exc})") from None
    if as_json:
        print(json.dumps(r.summary, separators=(",", ":")))
    else:
        say_run(r.summary, run_dir / store.SUMMARY_MD, store.stored_near(run_dir))
    for note in r.notes:
        console.print(f"scalelab: {note}", highlight=False, soft_wrap=True)
    for difference in r.differences:
        console.print(f"scalelab: re-check differs from the stored run: {difference}",
                      highlight=False, soft_wrap=True)
    raise click.exceptions.Exit(RECHECK_DIFFERS if r.differences else exit_code([r.summary]))


@app.command()
@with_run_options
@click.option("--quick", is_flag=True, help="short runs, the main rows (what `make matrix` runs)")
@click.option("--jobs", type=click.IntRange(1, 8), default=1, show_default=True,
              help="runs at once (each its own harness process)")
@click.option("--only", default=None, help="comma-separated rows, e.g. apscheduler4,arq")
@click.option("--junit", "junit_xml", type=click.Path(path_type=Path), default=None,
              help="also write JUnit XML here: a test case per cell")
@click.option("--seeds", type=click.IntRange(1, 10), default=2, show_default=True,
              help="each cell runs on this many seeds, from --seed on")
def matrix(quick: bool, jobs: int, only: str | None, junit_xml: Path | None, seeds: int,
           **given: Any) -> None:
    """The fixes matrix: each scheduling mechanism under each fault, counted from the ledger."""
    from experiments import matrix as fixes

    fixes.select_rows(only, quick)  # an unknown row fails before anything runs
    entry, options = chosen_platform(given)
    runs.check([], (entry, options), jobs)  # its cells' faults: n/a where the platform lacks
    check_results_dir(given["results"])
    if junit_xml is not None:
        junit.check_writable(junit_xml)
    cells, directory = fixes.run(quick=quick, jobs=jobs, only=only, results=given["results"],
                                 seed=given["seed"], seeds=seeds, platform=entry.name,
                                 platform_options=options)
    # Piped (make, CI logs), the grid keeps one line per row rather than 80 columns.
    from experiments.matrix_report import terminal_grid

    (out if out.is_terminal else Console(width=220)).print(terminal_grid(cells))
    out.print(f"matrix: {directory / 'matrix.md'}")
    failed = [c for c in cells if not c.reason and c.counts is None]
    for cell in failed:
        console.print(f"scalelab: {cell.label} did not run: {cell.error}", highlight=False)
    if junit_xml is not None:
        junit.write(junit_xml, f"scalelab matrix {directory.name}",
                    junit.of_matrix(cells, directory))
    raise click.exceptions.Exit(1 if failed else 0)


app.add_command(run_group)
probe_command.params.extend(_common_options())  # the probe takes what every run takes
app.add_command(probe_command)
app.add_command(click.Command(
    "run-child", hidden=True, callback=run_child,
    params=[click.Argument(["order_file"], type=click.Path(path_type=Path))]))


_terminated = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminated
    if _terminated:
        return  # already unwinding: let the teardown finish
    _terminated = True
    raise Terminated


@app.command()
@click.option("--results", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="the results directory to browse")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="listen address; anything but loopback shares the results with the network")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="listen port (0: any free port, printed)")
def serve(results: Path, host: str, port: int) -> None:
    """Browse the results: every run, its timeline and units, suites' tables, two runs compared."""
    from experiments.web.cli import serve as serve_results

    serve_results(results, host, port)


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        # Without standalone mode click returns an Exit's code instead of exiting.
        code = app.main(args=argv, prog_name="scalelab", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Terminated:
        console.print("scalelab: terminated (SIGTERM); everything it started was stopped")
        sys.exit(143)
    except (click.exceptions.Abort, KeyboardInterrupt):
        console.print("scalelab: interrupted; everything it started was stopped")
        sys.exit(130)
    except (BadInput, PlatformError, LabCannotRun) as exc:
        console.print(f"scalelab: error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(0)
    except click.exceptions.ClickException as exc:
        message = " ".join(str(exc.format_message()).split())
        name = getattr(getattr(exc, "ctx", None), "command_path", "")
        console.print(f"scalelab: error: {message}" + (f" ({name} --help)" if name else ""),
                      highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
