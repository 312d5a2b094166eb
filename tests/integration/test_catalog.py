"""Every experiment of the catalogue, for real, with short durations.

Each test states what the lab claims and checks the measured counts, not only the
experiment's own ``valid`` flag.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def run(scalelab: Any, *args: str) -> dict[str, Any]:
    r = scalelab("run", *args, "--json")
    assert r.returncode in (0, 1), r.stderr
    summary: dict[str, Any] = r.summary
    assert summary["fault_errors"] == [], summary["fault_errors"]
    assert r.returncode == (0 if summary["valid"] else 1)
    return summary


def assert_mid_job(s: dict[str, Any]) -> None:
    fired = s["mid_job_faults"]["fired"]
    assert fired >= 1 and s["mid_job_faults"]["with_work_in_flight"] == fired


@pytest.mark.parametrize("kill", ["sigkill", "sigterm"])
def test_background_tasks_die_with_their_replica(scalelab: Any, kill: str) -> None:
    s = run(scalelab, "background-loss", "--kill", kill, "--duration", "6", "--kills", "1")
    assert s["counts"]["lost"] >= 1 and s["valid"]
    assert s["counts"]["duplicated"] == 0
    assert_mid_job(s)


def test_the_same_work_through_celery_survives_the_kill(scalelab: Any) -> None:
    s = run(scalelab, "background-loss", "--mechanism", "celery", "--duration", "6",
            "--kills", "1", "--seed", "42")
    # Every unit ran: none lost. (A publish that Celery retries after a broker error
    # may run a task twice: at least once, not exactly once.)
    assert s["counts"]["lost"] == 0
    assert s["counts"]["ok"] + s["counts"]["duplicated"] == s["expected"] > 0
    # what the run was: its seed (the seeded choice of targets is tested on the stub
    # platform in tests/unit/test_nemesis.py) and the versions it ran with
    assert s["seed"] == 42
    for dist in ("celery", "kombu", "redis", "apscheduler", "redis-server"):
        assert s["versions"].get(dist), dist


def test_celery_default_acks_lose_a_killed_task(scalelab: Any) -> None:
    s = run(scalelab, "celery-kill", "--acks", "early", "--duration", "5", "--kills", "1")
    assert s["counts"]["lost"] >= 1 and s["counts"]["recovered"] == 0
    assert_mid_job(s)


def test_celery_acks_late_redelivers_a_killed_task(scalelab: Any) -> None:
    s = run(scalelab, "celery-kill", "--acks", "late", "--duration", "5", "--kills", "1")
    assert s["counts"]["lost"] == 0 and s["counts"]["recovered"] >= 1
    redelivery = s["measured"]["kill_to_redelivery_seconds"]
    assert redelivery and max(redelivery) <= 15, redelivery


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_kill_after_the_effect_runs_it_twice_unless_idempotent(scalelab: Any,
                                                                  idempotent: bool) -> None:
    s = run(scalelab, "celery-kill", "--acks", "late", "--kill-at", "after-effect",
            *(["--idempotent"] if idempotent else []), "--duration", "5", "--kills", "1")
    assert s["counts"]["lost"] == 0
    if idempotent:
        assert s["counts"]["duplicated"] == 0
        assert s["refused"] >= 1, "the redelivery's second effect was refused by its key"
    else:
        assert s["counts"]["duplicated"] >= 1


def test_a_task_outliving_the_visibility_timeout_runs_twice(scalelab: Any) -> None:
    s = run(scalelab, "celery-kill", "--acks", "late", "--kills", "0", "--task-seconds", "3",
            "--visibility-timeout", "1", "--rate", "1", "--duration", "3")
    assert s["faults"] == []
    assert s["counts"]["duplicated"] >= 1


def test_two_beats_send_every_tick_twice(scalelab: Any) -> None:
    s = run(scalelab, "beat-duplicates", "--beat-replicas", "2", "--duration", "5")
    assert s["counts"]["duplicated"] >= s["expected"] - 1 > 0


def test_redbeat_sends_once(scalelab: Any) -> None:
    s = run(scalelab, "beat-duplicates", "--beat-replicas", "2", "--guard", "redbeat",
            "--duration", "5")
    assert s["counts"]["duplicated"] == 0 and s["counts"]["ok"] >= s["expected"] - 1


def test_a_killed_redbeat_holder_misses_ticks_until_its_lock_expires(scalelab: Any) -> None:
    s = run(scalelab, "beat-duplicates", "--beat-replicas", "2", "--guard", "redbeat",
            "--kill-holder", "--kill-at", "2", "--lock-timeout", "3", "--duration", "8")
    assert s["counts"]["duplicated"] == 0
    assert s["faults"][0]["action"] == "kill"
    assert s["measured"]["missed_ticks"] >= 1, "ticks are missed while the lock expires"


@pytest.mark.parametrize("block", ["0", "1.5"])
def test_blocking_requests_starve_the_embedded_scheduler(scalelab: Any, block: str) -> None:
    s = run(scalelab, "loop-starvation", "--block-seconds", block, "--duration", "5")
    if block == "0":  # the control: nothing blocks the loop, nothing is late or lost
        assert s["counts"]["lost"] == 0 and s["late"] == 0
    else:
        assert s["counts"]["lost"] + s["late"] >= 1 and s["valid"]


@pytest.mark.parametrize("mechanism", ["background", "celery"])
def test_rolling_restart(scalelab: Any, mechanism: str) -> None:
    s = run(scalelab, "restart-survival", "--mechanism", mechanism, "--duration", "7")
    restarts = [f for f in s["faults"] if f["action"] == "restart"]
    assert len(restarts) == 2  # every replica was replaced
    if mechanism == "background":
        assert s["counts"]["lost"] >= 1
    else:
        assert s["counts"]["lost"] == 0


@pytest.mark.parametrize("fencing", [False, True])
def test_a_paused_leader(scalelab: Any, fencing: bool) -> None:
    s = run(scalelab, "leader-failover", "--duration", "8",
            *(["--fencing"] if fencing else []))
    assert len(s["measured"]["leaders"]) == 2, "another replica took over the lease"
    assert s["measured"]["leaderless_seconds"] >= 1.0
    if fencing:
        assert s["counts"]["duplicated"] == 0 and s["refused"] >= 1
    else:
        assert s["counts"]["duplicated"] >= 1 and s["refused"] == 0


def test_a_broker_outage_never_touches_the_ledger(scalelab: Any) -> None:
    s = run(scalelab, "broker-outage", "--duration", "6", "--outage-at", "2",
            "--outage-seconds", "2")
    integrity = s["ledger_integrity"]
    # API replicas and every worker pool process that ran a task reported their counts
    assert integrity["reporting"] >= 3 and integrity["intact"], integrity
    assert integrity["found_in_ledger"] == integrity["reported_events"] > 0
    assert [f["action"] for f in s["faults"]] == ["broker-outage", "broker-back"]
    # the per-tick locks lived in the broker: while it was down the guard failed open
    assert s["measured"]["ticks_during_outage"] >= 2
    assert s["measured"]["ticks_duplicated_during_outage"] >= 1
    assert s["valid"]


def test_any_experiment_takes_a_partition_from_its_command_line(scalelab: Any) -> None:
    # The per-tick lock lives on the broker: the cut-off replica cannot take it, fails
    # open (see services.api.guards) and runs the tick beside the replica that holds it.
    s = run(scalelab, "background-loss", "--mechanism", "celery", "--kills", "0",
            "--duration", "4", "--rate", "2", "--partition", "api-1", "--partition-at", "1",
            "--partition-for", "2")
    marks = [(f["action"], f["target"]) for f in s["faults"]]
    assert marks == [("partition", "api-1"), ("heal", "api-1")]
    assert s["parameters"]["partition"] == "api-1"
    # requests the cut-off replica took could not reach the broker: refused, not lost
    assert s["counts"]["lost"] == 0
