"""What runs inside a user's own instances when ``scalelab probe`` points the lab at them.

Nothing here wraps the user's code: each hook listens to what a library already
announces and writes it to the ledger (``services.ledger``), under the instance's name.

- Celery: ``after_task_publish`` (an intent: the broker took the task),
  ``task_prerun``/``task_postrun``/``task_failure``/``task_revoked`` (what ran, how it
  ended), with the task id as the unit's work_id (``services.probe.celery_hooks``);
- APScheduler 3: the listener events ``EVENT_JOB_SUBMITTED``/``EXECUTED``/``ERROR``/
  ``MISSED``/``MAX_INSTANCES`` of every scheduler the app starts
  (``services.probe.scheduler_hooks``); APScheduler 4: its ``JobAcquired``/``JobReleased``
  events (``services.probe.scheduler4_hooks``);
- FastAPI/Starlette BackgroundTasks: each task added while a request is served becomes
  a unit acknowledged with the response (``services.probe.background``).

Where the library's own identity is not the business's, ``unit`` names one::

    from services.probe import unit

    @unit(key="email:{order_id}")
    def send_confirmation(order_id: int) -> None: ...

Outside a probe (no ``SCALELAB_PROBE`` in the environment) ``unit`` only calls the
function. The instances' entry points are ``python -m services.probe.api|worker|beat``.
"""

from __future__ import annotations

from services.probe.unit import unit

__all__ = ["unit"]
