"""The Celery side of the lab: the app, its tasks, a prefork worker and beat.

- ``app``: ``make_celery(settings)``, the one place Celery and kombu are configured.
- ``tasks``: ``scalelab.work`` (a unit of work a worker runs) and ``scalelab.beat_tick``
  (the periodic task beat sends).
- ``schedules`` / ``schedulers`` / ``redbeat_scheduler``: beat's epoch-aligned schedule
  and the schedulers that pass each tick its fire time, so every beat replica's send for
  the same period carries the same ``work_id`` (plain beat, or guarded by redbeat's lock).
- ``context``: settings plus a per-process ledger client that counts what it recorded.
- ``names``: task names and mechanisms (the contract with the harness).
- ``python -m services.worker`` runs a worker, ``python -m services.worker.beat`` runs beat.

Nothing here touches the network at import time.
"""
