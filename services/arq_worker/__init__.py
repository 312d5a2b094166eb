"""An arq worker instance; its one cron job is the tick (``python -m services.arq_worker``)."""
