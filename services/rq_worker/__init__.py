"""An RQ worker instance with its scheduler (``rq worker --with-scheduler``); the tick its job."""
