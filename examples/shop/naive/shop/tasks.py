"""The shop's Celery app: the order-confirmation email, with Celery's default (early) acks."""

from __future__ import annotations

import os
import time

from celery import Celery

from services.probe import unit

app = Celery("shop", broker=os.environ.get("SHOP_BROKER_URL", "redis://127.0.0.1:6379/0"))
EMAIL_SECONDS = float(os.environ.get("SHOP_EMAIL_SECONDS", "0.5"))


@unit(key="email:{order_id}")
def deliver_email(order_id: str) -> None:
    time.sleep(EMAIL_SECONDS)  # the SMTP conversation


@app.task(name="shop.send_confirmation")
def send_confirmation(order_id: str) -> None:
    deliver_email(order_id)
