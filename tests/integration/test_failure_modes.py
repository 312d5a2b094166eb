"""The failures users report, for real: one run per experiment, counts checked.

Each test runs the experiment through the CLI on the local platform (real uvicorn,
Celery, redis-server processes, real signals, real libfaketime and TCP proxies) and
checks the figures the experiment is about, not only its ``valid`` flag. Bad input is
checked apart: one line, exit 2, nothing started.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def run(scalelab: Any, *args: str) -> dict[str, Any]:
    r = scalelab("run", *args, "--json", timeout=170)
    assert r.returncode in (0, 1), r.stderr
    summary: dict[str, Any] = r.summary
    assert summary["fault_errors"] == [], summary["fault_errors"]
    assert r.returncode == (0 if summary["valid"] else 1)
    return summary


@pytest.mark.parametrize("preload", [False, True], ids=["uvicorn-workers", "preloaded"])
def test_every_worker_process_of_every_replica_runs_each_tick(scalelab: Any,
                                                              preload: bool) -> None:
    s = run(scalelab, "workers-per-replica", "--replicas", "2", "--workers", "2",
            "--duration", "4", "--preload" if preload else "--no-preload")
    m = s["measured"]
    assert s["valid"]
    assert m["executions_per_tick_median"] == 4  # R x W, unguarded
    # The ledger names the process: two pids under each replica's name.
    assert len(m["processes_that_ran_ticks"]) == 4
    assert {p.split("/")[0] for p in m["processes_that_ran_ticks"]} == {"api-1", "api-2"}
    # Every worker process reported its own count under <replica>:<pid>.
    assert s["ledger_integrity"]["intact"] and s["ledger_integrity"]["reporting"] == 4


def test_a_countdown_past_the_visibility_timeout_runs_the_task_again_and_again(
        scalelab: Any) -> None:
    s = run(scalelab, "eta-redelivery", "--countdown", "5", "--visibility-timeout", "2",
            "--duration", "2")
    m = s["measured"]
    assert s["valid"] and m["expected_copies"] == 3
    assert m["copies_median"] == 3 and s["counts"]["duplicated"] == s["expected"] > 0
    assert s["faults"] == []  # no fault at all


def test_another_app_on_the_broker_with_a_shorter_timeout_wins(scalelab: Any) -> None:
    s = run(scalelab, "eta-redelivery", "--visibility-timeout", "3600", "--broker-apps", "2",
            "--other-visibility-timeout", "2", "--duration", "2")
    assert s["valid"] and s["measured"]["copies_median"] >= 2
    assert s["counts"]["duplicated"] > 0


@pytest.mark.parametrize("acks", ["early", "late"])
def test_a_killed_worker_running_and_prefetched_tasks(scalelab: Any, acks: str) -> None:
    s = run(scalelab, "prefetch-loss", "--acks", acks, "--prefetch-multiplier", "4")
    m = s["measured"]
    assert s["valid"]
    if acks == "early":
        assert m["running_lost"] == 1  # acknowledged when the pool took it
    else:
        assert m["running_lost"] == 0 and m["running_redelivered"] == 1
        assert m["reserved_lost"] == 0
    assert m["reserved_redelivered"] >= 1  # unacknowledged: back after the timeout


@pytest.mark.parametrize("reject", [False, True], ids=["acked-as-failed", "rejected"])
def test_a_killed_pool_child_loses_its_task_unless_rejected(scalelab: Any,
                                                           reject: bool) -> None:
    flag = "--reject-on-worker-lost" if reject else "--no-reject-on-worker-lost"
    s = run(scalelab, "pool-child-kill", "--target", "child", flag)
    assert s["valid"]
    assert [f["action"] for f in s["faults"]] == ["kill-child"]
    assert s["counts"]["lost"] == (0 if reject else 1)
    assert s["counts"]["recovered"] == (1 if reject else 0)


def test_a_poison_task_loops_when_rejected_on_worker_loss(scalelab: Any) -> None:
    s = run(scalelab, "pool-child-kill", "--poison", "--reject-on-worker-lost")
    assert s["valid"] and s["measured"]["poison_executions"] >= 2
    assert not s["measured"]["poison_finished"]


@pytest.mark.parametrize("mechanism", ["scheduler-lock", "worker"])
def test_a_partition_duplicates_work(scalelab: Any, mechanism: str) -> None:
    s = run(scalelab, "partition", "--mechanism", mechanism)
    assert s["valid"] and s["counts"]["duplicated"] > 0
    marks = [f["action"] for f in s["faults"]]
    assert marks == ["partition", "heal"]
    assert s["measured"]["partition_seconds"] == pytest.approx(4.0, abs=0.5)


@pytest.mark.parametrize("ttl", ["1", "30"])
def test_a_skewed_replica_fires_early_and_a_short_lock_ttl_lets_ticks_run_twice(
        scalelab: Any, ttl: str) -> None:
    s = run(scalelab, "clock-skew", "--skew", "api-1=2", "--lock-ttl", ttl)
    m = s["measured"]
    assert s["valid"] and m["skewed"] == "api-1"
    # Seen on the ledger's clock (the ledger Redis's TIME), its ticks start 2 s early.
    assert m["early_by"] == pytest.approx(2.0, abs=0.3)
    assert (s["counts"]["duplicated"] > 0) == (ttl == "1")


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
def test_a_full_broker_loses_acknowledged_tasks(scalelab: Any, policy: str) -> None:
    s = run(scalelab, "broker-eviction", "--policy", policy)
    m = s["measured"]
    # submissions may be refused instead: noeviction's OOM error, or kombu's routing key
    # evicted under an eviction policy
    gone = m["tasks_lost"] + m["tasks_refused"]
    assert s["valid"] and gone > 0
    # the default limit is a margin over the broker's footprint, recorded as it came out
    assert s["parameters"]["maxmemory"].startswith("+")
    assert s["as_run"]["broker_maxmemory"].endswith("kb")


def test_background_work_behind_base_http_middleware_outlives_the_client(
        scalelab: Any) -> None:
    s = run(scalelab, "disconnect-cancel", "--middleware", "base-http")
    assert s["valid"] and s["counts"]["ok"] == s["expected"] > 0
    assert set(s["measured"]["versions"]) == {"starlette", "fastapi", "uvicorn"}


@pytest.mark.parametrize("args, says", [
    (["clock-skew", "--skew", "api-1=3601"], "within ±3600"),
    (["clock-skew", "--skew", "api-9=2"], "not in this run"),
    (["clock-skew", "--skew", "two"], "TARGET=SECONDS"),
    (["partition", "--partition", "beat"], "not in this run"),
    (["partition", "--partition-at", "9", "--duration", "5"], "inside the run"),
    (["workers-per-replica", "--workers", "0"], "at least 1"),
    (["broker-eviction", "--maxmemory", "lots"], "--maxmemory"),
    (["broker-eviction", "--maxmemory", "+0kb"], "--maxmemory"),
    (["pool-child-kill", "--poison", "--target", "parent"], "--poison"),
])
def test_bad_input_is_one_line_and_exit_2(scalelab_here: Any, args: list[str], says: str) -> None:
    r = scalelab_here("run", *args)
    assert r.returncode == 2
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
