"""The catalogue: every experiment the lab runs, by CLI name."""

from __future__ import annotations

from experiments.catalog import (
    background_loss,
    beat_duplicates,
    broker_eviction,
    broker_outage,
    celery_kill,
    clock_skew,
    disconnect_cancel,
    eta_redelivery,
    k8s_cronjob,
    leader_failover,
    loop_starvation,
    partition,
    pool_child_kill,
    prefetch_loss,
    restart_survival,
    scheduler_duplicates,
    workers_per_replica,
)
from experiments.model import BadInput, ExperimentSpec

CATALOG: dict[str, ExperimentSpec] = {
    spec.name: spec
    for spec in (
        scheduler_duplicates.SPEC,
        background_loss.SPEC,
        celery_kill.SPEC,
        beat_duplicates.SPEC,
        loop_starvation.SPEC,
        restart_survival.SPEC,
        leader_failover.SPEC,
        broker_outage.SPEC,
        k8s_cronjob.SPEC,
        workers_per_replica.SPEC,
        eta_redelivery.SPEC,
        prefetch_loss.SPEC,
        pool_child_kill.SPEC,
        partition.SPEC,
        clock_skew.SPEC,
        broker_eviction.SPEC,
        disconnect_cancel.SPEC,
    )
}


def get(name: str) -> ExperimentSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise BadInput(f"unknown experiment {name!r} (known: {', '.join(CATALOG)})") from None


__all__ = ["CATALOG", "get"]
