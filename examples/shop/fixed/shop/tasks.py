"""The shop's Celery app, fixed: acks late, an idempotency key per effect, one beat.

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose worker dies is
  delivered again (after the broker's visibility timeout), not lost;
- each effect carries an idempotency key its receiver takes once (``commit``), so a
  redelivered task sends nothing twice; a delivery whose effect was made already ends
  as ignored (``Ignore``), not as a second success. (A mark set in Redis *after* the
  effect is not enough: the probe caught a worker killed between the two, and the
  email sent twice.)
- the hourly report is a periodic task of a single Celery beat, not of every API
  replica; the partner's webhook is a task, so it outlives the replica that took
  the order.

Celery's settings: https://docs.celeryq.dev/en/stable/userguide/configuration.html
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery, Task
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
_receivers = redis.Redis.from_url(os.environ.get("SHOP_REDIS_URL", BROKER))


class AlreadyDone(Exception):
    """The receiver had this idempotency key: nothing was done again."""


def commit(key: str) -> None:
    """The receiver's side (the mail provider, the partner): it takes each idempotency key
    once — the effect and its key are one write, so no moment lies between them."""
    if not _receivers.set(f"shop:done:{key}", 1, nx=True, ex=86400):
        raise AlreadyDone(key)


@unit(key="email:{order_id}")
def deliver_email(order_id: str) -> None:
    time.sleep(EMAIL_SECONDS)  # the SMTP conversation
    commit(f"email:{order_id}")  # the provider sends it, with the order as its key


@app.task(name="shop.send_confirmation")
def send_confirmation(order_id: str) -> None:
    try:
        deliver_email(order_id)
    except AlreadyDone:  # delivered again (a redelivery, or a copy): nothing was sent
        raise Ignore() from None


@app.task(name="shop.notify_webhook")
def notify_webhook(order_id: str) -> None:
    time.sleep(WEBHOOK_SECONDS)  # POST to the partner
    try:
        commit(f"webhook:{order_id}")  # the partner takes the order's key once
    except AlreadyDone:
        raise Ignore() from None


@app.task(name="shop.hourly_report", bind=True)
def hourly_report(self: Task) -> None:
    time.sleep(0.05)  # totals of the last period, mailed to the owners
    try:
        commit(f"report:{self.request.id}")  # one report per beat tick, however delivered
    except AlreadyDone:
        raise Ignore() from None
