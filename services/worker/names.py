"""Task names: the contract between whoever sends work (the harness, beat) and the worker."""

WORK_TASK = "scalelab.work"
BEAT_TICK_TASK = "scalelab.beat_tick"
BEAT_ENTRY = "scalelab-beat-tick"

MECHANISM_CELERY = "celery"
MECHANISM_BEAT = "beat"
