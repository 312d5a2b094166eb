"""What runs inside each instance of the lab: the API, the Celery worker and beat, the ledger."""
