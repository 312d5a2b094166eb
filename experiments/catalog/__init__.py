"""The catalogue: every experiment the lab runs, by CLI name."""

from __future__ import annotations

import difflib

from experiments.catalog import (
    background_loss,
    beat_duplicates,
    broker_eviction,
    broker_outage,
    celery_kill,
    clock_skew,
    disconnect_cancel,
    drain,
    eta_redelivery,
    k8s_cronjob,
    leader_failover,
    liveness_restart,
    loop_starvation,
    oom_kill,
    partition,
    pool_child_kill,
    prefetch_loss,
    restart_survival,
    scale_in,
    scheduler_duplicates,
    singleton_scheduler,
    workers_per_replica,
)
from experiments.findings import Fix
from experiments.model import BadInput, ExperimentSpec
from experiments.probe import spec as probe

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
        singleton_scheduler.SPEC,
        drain.SPEC,
        scale_in.SPEC,
        liveness_restart.SPEC,
        oom_kill.SPEC,
    )
}


# What removes each experiment's failure, by experiment name (each module's FIXES).
FIXES: dict[str, tuple[Fix, ...]] = {
    m.SPEC.name: m.FIXES
    for m in (scheduler_duplicates, background_loss, celery_kill, beat_duplicates,
              loop_starvation, restart_survival, leader_failover, broker_outage, k8s_cronjob,
              workers_per_replica, eta_redelivery, prefetch_loss, pool_child_kill, partition,
              clock_skew, broker_eviction, disconnect_cancel, singleton_scheduler, drain,
              scale_in, liveness_restart, oom_kill)
}

# Run by a command of their own, not by `run` or the suite, and found by name all the same
# (a stored run is re-checked by its experiment's name).
OTHERS: dict[str, ExperimentSpec] = {probe.SPEC.name: probe.SPEC}


def get(name: str) -> ExperimentSpec:
    try:
        return CATALOG[name] if name in CATALOG else OTHERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, CATALOG, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BadInput(f"unknown experiment {name!r} ({hint}known: {', '.join(CATALOG)})"
                       ) from None


__all__ = ["CATALOG", "FIXES", "get"]
