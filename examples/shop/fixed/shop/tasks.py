"""The shop's Celery app, fixed: acks late, an idempotency key per effect, one beat.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose worker dies is
  delivered again (after the broker's visibility timeout), not lost;
- each effect is marked done under its key once made; a delivery that finds the mark
  is ignored (``Ignore``: ended without effect), so a redelivery sends nothing twice;
- the hourly report is a periodic task of a single Celery beat, not of every API
  replica; the partner's webhook is a task, so it outlives the replica that took
  the order.

Celery's settings: https://docs.celeryq.dev/en/stable/userguide/configuration.html
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import redis
from celery import Celery
from celery.exceptions import Ignore

from services.probe import unit

BROKER = os.environ.get("SHOP_BROKER_URL", "redis://127.0.0.1:6379/0")
EMAIL_SECONDS = float(os.environ.get("SHOP_EMAIL_SECONDS", "0.5"))
WEBHOOK_SECONDS = float(os.environ.get("SHOP_WEBHOOK_SECONDS", "0.5"))
REPORT_SECONDS = float(os.environ.get("SHOP_REPORT_SECONDS", "3600"))

app = Celery("shop", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # How long a delivered, unacknowledged task waits before it is delivered again:
    # longer than any task runs.
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("SHOP_VISIBILITY_TIMEOUT", "3600"))},
    beat_schedule={"hourly-report": {"task": "shop.hourly_report",
                                     "schedule": REPORT_SECONDS}},
)
_marks = redis.Redis.from_url(os.environ.get("SHOP_REDIS_URL", BROKER))


def once(key: str, effect: Callable[[], None]) -> None:
    """Make the effect unless its mark says it was made; mark it once made."""
    if _marks.exists(f"shop:done:{key}"):
        raise Ignore()
    effect()
    _marks.set(f"shop:done:{key}", 1, ex=86400)


@unit(key="email:{order_id}")
def deliver_email(order_id: str) -> None:
    time.sleep(EMAIL_SECONDS)  # the SMTP conversation


@app.task(name="shop.send_confirmation")
def send_confirmation(order_id: str) -> None:
    once(f"email:{order_id}", lambda: deliver_email(order_id))


@app.task(name="shop.notify_webhook")
def notify_webhook(order_id: str) -> None:
    once(f"webhook:{order_id}", lambda: time.sleep(WEBHOOK_SECONDS))  # POST to the partner


@app.task(name="shop.hourly_report")
def hourly_report() -> None:
    time.sleep(0.05)  # totals of the last period, mailed to the owners
