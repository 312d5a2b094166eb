"""The shop's API, fixed: no scheduler in the replicas, the webhook handed to Celery."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from pydantic import BaseModel

from shop.tasks import notify_webhook, send_confirmation

app = FastAPI()


class Order(BaseModel):
    item: str


@app.post("/orders", status_code=201)
async def create_order(order: Order) -> dict[str, str]:
    order_id = uuid.uuid4().hex[:8]
    send_confirmation.delay(order_id)
    notify_webhook.delay(order_id)
    return {"order": order_id}
