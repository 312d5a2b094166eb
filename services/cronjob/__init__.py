"""The Job a Kubernetes CronJob runs: one tick in the ledger (``python -m services.cronjob``).

The CronJob controller names each Job ``<cronjob>-<scheduled time in Unix minutes>``
and every pod of it carries that name in its ``job-name`` label, which the manifest
hands to the container as ``SCALELAB_JOB_NAME`` (downward API). The tick's work id
is therefore ``tick@<scheduled time>``, the same for a second Job created for the
same time, so the ledger counts what the Kubernetes documentation warns of: a Job
"about once per execution time" — two, or none.
"""
