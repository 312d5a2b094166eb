"""``python -m bench.bytecode``: write the bytecode of what the lab's processes import.

uv installs no bytecode (pip compiles every installed file, which is most of its
install time), and where ``PYTHONDONTWRITEBYTECODE`` is set no process writes any:
every instance would then compile fastapi, pydantic, redis and celery again at each
start (about twice the CPU of an import from bytecode). ``make setup`` runs this once
after installing, with bytecode writing on: importing every module of the lab — and
the modules an instance loads only when it starts serving — compiles exactly what the
lab uses, not the thousands of files of the clients it never loads (the kubernetes
client is compiled when the kubernetes platform first runs). Two processes share the
work, one per core: the instances' modules, and the harness's.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import subprocess
import sys
import time

# Two halves, one per core: what instances import, and what the harness imports.
HALVES = (("services",), ("chaos", "experiments"))
# Loaded only when the kind platform runs; compiling the client costs more than the rest.
SKIP = ("kubernetes",)
# Loaded when an instance starts serving, not when its module is imported.
AT_START = (
    "uvicorn.main", "uvicorn.server", "uvicorn.lifespan.on", "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "celery.apps.worker", "celery.apps.beat", "celery.worker.consumer",
    "celery.concurrency.prefork", "celery.backends.redis", "kombu.transport.redis",
    "redbeat.schedulers",
)


def lab_modules(packages: tuple[str, ...]) -> list[str]:
    names = []
    for package in packages:
        names.append(package)
        with contextlib.suppress(ImportError):
            root = importlib.import_module(package)
            for info in pkgutil.walk_packages(root.__path__, package + "."):
                if not any(skip in info.name for skip in SKIP):
                    names.append(info.name)
    return names


def compile_half(half: int) -> tuple[int, int]:
    """Import one half's modules (writing their bytecode): (imported, not importable)."""
    names = lab_modules(HALVES[half])
    if half == 0:  # and what the fork server preloads for them (their start-up's imports)
        from chaos.forkserver import PRELOAD

        names += [*AT_START, *PRELOAD]
    imported = failed = 0
    for name in names:
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:  # an optional module (another scheduler, uvloop...): not ours to fix
            failed += 1
    return imported, failed


def main(argv: list[str]) -> int:
    if sys.dont_write_bytecode:
        print("bench.bytecode: bytecode writing is off (unset PYTHONDONTWRITEBYTECODE)",
              file=sys.stderr)
        return 2
    if argv == ["--half", "1"]:
        compile_half(1)
        return 0
    started = time.monotonic()
    other = subprocess.Popen([sys.executable, "-m", "bench.bytecode", "--half", "1"])
    imported, failed = compile_half(0)
    code = other.wait()
    print(f"bytecode: the lab's modules and what they import, {time.monotonic() - started:.1f} s "
          f"({imported} instance modules, {failed} not importable here)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
