"""HTTP endpoints of an API replica. Every parameter is bounded: outside the bounds is a 422."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, status
from pydantic import BaseModel

from services.ledger import AsyncLedger, Kind
from services.settings import LabSettings

router = APIRouter()

WorkId = Annotated[str, Query(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
Seconds = Annotated[float, Query(ge=0, le=60)]
BlockSeconds = Annotated[float, Query(ge=0, le=30)]


def get_settings(request: Request) -> LabSettings:
    settings: LabSettings = request.app.state.settings
    return settings


def get_ledger(request: Request) -> AsyncLedger:
    ledger: AsyncLedger = request.app.state.ledger
    return ledger


SettingsDep = Annotated[LabSettings, Depends(get_settings)]
LedgerDep = Annotated[AsyncLedger, Depends(get_ledger)]


class Accepted(BaseModel):
    work_id: str
    instance: str


@router.get("/healthz")
async def healthz(settings: SettingsDep) -> dict[str, str]:
    return {"status": "ok", "instance": settings.instance}


async def run_background_work(ledger: AsyncLedger, instance: str, work_id: str,
                              seconds: float) -> None:
    """The BackgroundTasks job: lives and dies with this process."""
    exec_id = f"{instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    await ledger.record(Kind.START, work_id, "background", instance, exec_id=exec_id)
    await asyncio.sleep(seconds)
    await ledger.record(Kind.FINISH, work_id, "background", instance, exec_id=exec_id)


@router.post("/work/background", status_code=status.HTTP_202_ACCEPTED)
async def work_background(work_id: WorkId, seconds: Seconds, tasks: BackgroundTasks,
                          settings: SettingsDep, ledger: LedgerDep) -> Accepted:
    tasks.add_task(run_background_work, ledger, settings.instance, work_id, seconds)
    return Accepted(work_id=work_id, instance=settings.instance)


@router.post("/work/celery", status_code=status.HTTP_202_ACCEPTED)
async def work_celery(work_id: WorkId, seconds: Seconds, request: Request,
                      settings: SettingsDep) -> Accepted:
    """Hand the same work to Celery: the task id is the work id."""
    from services.worker.app import send_work

    celery = request.app.state.celery()
    # Sending does blocking network I/O; keep it off the event loop.
    await asyncio.to_thread(send_work, celery, work_id, seconds)
    return Accepted(work_id=work_id, instance=settings.instance)


@router.post("/block")
async def block(seconds: BlockSeconds) -> dict[str, float]:
    """Block this replica's event loop (a CPU-bound or sync call in an async handler)."""
    time.sleep(seconds)
    return {"blocked": seconds}
