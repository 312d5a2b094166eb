"""``python -m bench.bytecode``: write the bytecode of what the lab's processes import.

uv installs no bytecode (pip compiles every installed file, which is most of its
install time), and where ``PYTHONDONTWRITEBYTECODE`` is set no process writes any:
every instance would then compile fastapi, pydantic, redis and celery again at each
start (about twice the CPU of an import from bytecode). ``make setup`` runs this once
after installing, with bytecode writing on: importing every module of the lab — and
the modules an instance loads only when it starts serving — compiles exactly what the
lab uses, not the thousands of files of the clients it never loads (the kubernetes
client is compiled when the kubernetes platform first runs).
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import sys
import time

PACKAGES = ("services", "chaos", "experiments")
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


def lab_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        with contextlib.suppress(ImportError):
            root = importlib.import_module(package)
            for info in pkgutil.walk_packages(root.__path__, package + "."):
                if not any(skip in info.name for skip in SKIP):
                    names.append(info.name)
    return names


def main() -> int:
    if sys.dont_write_bytecode:
        print("bench.bytecode: bytecode writing is off (unset PYTHONDONTWRITEBYTECODE)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    imported = failed = 0
    for name in [*lab_modules(), *AT_START]:
        try:
            importlib.import_module(name)
            imported += 1
        except Exception:  # an optional module (another scheduler, uvloop...): not ours to fix
            failed += 1
    print(f"bytecode: {imported} modules and what they import, "
          f"{time.monotonic() - started:.1f} s ({failed} not importable here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
