"""``python -m bench [--only SECTION ...] [--readme]``: run the bench, write its two files.

Sections run in order, cheapest first; end-to-end runs last and gets whatever is
left of the 10-minute budget (a step cut off is reported as such). ``--only``
re-runs some sections and keeps the others' figures from the previous results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    check_cost,
    end_to_end,
    install,
    ledger_write,
    redelivery,
    serve_index,
    suite_start,
    topology,
)
from bench.common import machine
from bench.report import write_readme

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
BUDGET = 900.0  # seconds, all of `make bench`
MARGIN = 20.0  # kept back for writing the results

SECTIONS = ("ledger_write", "check_cost", "topology", "suite_start", "redelivery",
            "serve_index", "install", "end_to_end")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, default=None)
    parser.add_argument("--readme", action="store_true",
                        help="only rewrite README.md from results.json")
    args = parser.parse_args(argv)
    if args.readme:
        write_readme(json.loads(RESULTS.read_text()), HERE / "README.md")
        return 0
    started = time.monotonic()
    wanted = args.only or list(SECTIONS)
    cold = os.environ.get("SCALELAB_BENCH_COLD") == "1"
    previous: dict[str, Any] = {}
    if args.only and RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
    results: dict[str, Any] = {
        "command": "make bench" if not args.only else "python -m bench --only " + " ".join(wanted),
        "machine": machine(),
        "sections": dict(previous.get("sections", {})),
    }

    def remaining() -> float:
        return BUDGET - (time.monotonic() - started) - MARGIN

    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "ledger_write": ledger_write.run,
        "check_cost": check_cost.run,
        "topology": topology.run,
        "suite_start": suite_start.run,
        "redelivery": redelivery.run,
        "serve_index": serve_index.run,
        "install": install.run,
        "end_to_end": lambda: end_to_end.run(remaining(), cold=cold),
    }
    failed = False
    for name in SECTIONS:
        if name not in wanted:
            continue
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        load_before = os.getloadavg()[0]
        t = time.monotonic()
        try:
            figures = runners[name]()
        except Exception as exc:
            failed = True
            traceback.print_exc()
            figures = {"error": f"{type(exc).__name__}: {exc}"}
        figures["section_seconds"] = round(time.monotonic() - t, 1)
        figures["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        figures["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        results["sections"][name] = figures
        print(f"bench: {name} done in {figures['section_seconds']}s", file=sys.stderr, flush=True)
        results["total_seconds"] = round(time.monotonic() - started, 1)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_readme(results, HERE / "README.md")
    print(f"bench: wrote {RESULTS} and {HERE / 'README.md'} "
          f"in {results['total_seconds']}s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
