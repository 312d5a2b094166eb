"""The shop's API: orders, an hourly report by the scheduler it starts, a webhook per order.

Every replica starts its own AsyncIOScheduler; the partner's webhook is a
BackgroundTasks job, run in the replica after the response.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel

from shop.tasks import send_confirmation

REPORT_SECONDS = float(os.environ.get("SHOP_REPORT_SECONDS", "3600"))
WEBHOOK_SECONDS = float(os.environ.get("SHOP_WEBHOOK_SECONDS", "0.5"))


async def hourly_report() -> None:
    await asyncio.sleep(0.05)  # totals of the last period, mailed to the owners


async def notify_webhook(order_id: str) -> None:
    await asyncio.sleep(WEBHOOK_SECONDS)  # POST to the partner's endpoint


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    scheduler = AsyncIOScheduler()
    scheduler.add_job(hourly_report, "interval", seconds=REPORT_SECONDS, id="hourly-report")
    scheduler.start()
    yield
    scheduler.shutdown(wait=False)


app = FastAPI(lifespan=lifespan)


class Order(BaseModel):
    item: str


@app.post("/orders", status_code=201)
async def create_order(order: Order, background_tasks: BackgroundTasks) -> dict[str, str]:
    order_id = uuid.uuid4().hex[:8]
    send_confirmation.delay(order_id)
    background_tasks.add_task(notify_webhook, order_id)
    return {"order": order_id}
