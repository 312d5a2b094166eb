"""Run one scheduled tick as a Kubernetes Job would, then exit (see the package docstring)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from services.ledger import AsyncLedger, Kind, scheduled_work_id
from services.settings import load_settings

MECHANISM = "k8s-cronjob"
JOB = "tick"


def scheduled_time(job_name: str) -> float:
    """``scalelab-tick-29412345`` -> 29412345 * 60: the controller's name for a Job."""
    minutes = job_name.rpartition("-")[2]
    if not minutes.isdigit():
        raise ValueError(f"not a CronJob's Job name (<cronjob>-<minutes>): {job_name!r}")
    return int(minutes) * 60.0


async def run_once(job_name: str) -> None:
    settings = load_settings()
    ledger = AsyncLedger.from_url(settings.ledger_url)
    fire_time = scheduled_time(job_name)
    work_id = scheduled_work_id(JOB, fire_time)
    exec_id = f"{settings.instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    try:
        await ledger.record(Kind.START, work_id, MECHANISM, settings.instance, exec_id=exec_id,
                            detail={"due": fire_time, "job": job_name})
        await asyncio.sleep(settings.tick_seconds)
        await ledger.record(Kind.FINISH, work_id, MECHANISM, settings.instance,
                            exec_id=exec_id)
    finally:
        await ledger.aclose()


def main() -> None:
    job_name = os.environ.get("SCALELAB_JOB_NAME", "")
    try:
        scheduled_time(job_name)
    except ValueError as exc:
        print(f"scalelab cronjob: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(run_once(job_name))


if __name__ == "__main__":
    main()
