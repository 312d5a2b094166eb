"""The lab's objects against a real API server: the local node's control plane alone.

etcd, kube-apiserver (PodSecurity, RBAC), controller-manager and scheduler from the
binaries ``make node-binaries`` caches; no kubelet, so the lab's pods stay Pending.
What is checked is what the API server decides: admission of every overlay's pods
under ``restricted``, the service accounts' permissions, the Lease election
(services/api/lease_k8s.py) with two contenders and a holder that stops renewing,
the scale subresource and the rollout restart the platform uses.

Opt-in like tests/node/test_node.py (``make test-node``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from chaos import kubernetes as k
from services.api.lease_k8s import LEASE_NAME, LEASE_SECONDS_ANNOTATION, KubernetesLease
from tests.node.nodeparts import cli, kubeconfig, lab, layout, run_node, shell

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.parent.name for p in (ROOT / "k8s" / "overlays").glob("*/kustomization.yaml"))

pytestmark = pytest.mark.timeout(600)


def why_not() -> str | None:
    import os

    if os.environ.get("SCALELAB_NODE_TESTS") != "1":
        return "opt-in: `make test-node` (brings the local node's control plane up and down)"
    if os.geteuid() != 0:
        return "needs root"
    if not all((layout.BIN / b).exists() for b in ("kube-apiserver", "kube-controller-manager")):
        return f"no control-plane binaries in {layout.BIN}: `make node-binaries`"
    if cli.supervisor_pid() is not None:
        return "the local node is already running: `make cluster-down-local` first"
    return None


@pytest.fixture(scope="module")
def control_plane() -> Iterator[None]:
    if why := why_not():
        pytest.skip(why)
    up = run_node("up", "--control-plane-only", "--overlay", "kind", timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        yield
    finally:
        down = run_node("down", timeout=300)
        assert down.returncode == 0, down.stderr[-2000:]


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    return str(kubeconfig.kubectl(*args, stdin=stdin, check=check))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlays_pods_are_admitted_under_restricted(control_plane: None,
                                                           overlay: str) -> None:
    rendered = yaml.safe_load_all(kubectl("kustomize", str(lab.render_overlay(overlay))))
    workloads = [o for o in rendered if o and o["kind"] == "Deployment"]
    assert workloads
    for d in workloads:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"admission-{d['metadata']['name']}",
                            "labels": d["spec"]["template"]["metadata"]["labels"]},
               "spec": d["spec"]["template"]["spec"]}
        # Enforcement applies to pods (workloads only warn): dry-run one per template.
        kubectl("-n", "scalelab", "create", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))


def test_the_api_service_account_may_only_hold_the_scheduler_lease(control_plane: None) -> None:
    def can(account: str, *what: str) -> bool:
        out = kubectl("auth", "can-i", f"--as=system:serviceaccount:scalelab:{account}",
                      "-n", "scalelab", *what, check=False)
        return out.strip() == "yes"

    assert can("scalelab-api", "update", f"leases/{LEASE_NAME}")
    assert can("scalelab-api", "get", f"leases/{LEASE_NAME}")
    assert can("scalelab-api", "create", "leases")
    assert not can("scalelab-api", "update", "leases/another")
    assert not can("scalelab-api", "delete", f"leases/{LEASE_NAME}")
    assert not can("scalelab-api", "list", "pods")
    assert not can("scalelab-runner", "get", f"leases/{LEASE_NAME}")


@pytest.fixture
def service_account(control_plane: None, tmp_path: Path) -> Iterator[Path]:
    """A token of scalelab-api and the cluster CA, laid out as in a pod."""
    kubectl("-n", "scalelab", "delete", "lease", LEASE_NAME, "--ignore-not-found")
    (tmp_path / "token").write_text(
        kubectl("-n", "scalelab", "create", "token", "scalelab-api", "--duration=10m"))
    (tmp_path / "ca.crt").write_bytes((layout.PKI / "ca.crt").read_bytes())
    yield tmp_path
    kubectl("-n", "scalelab", "delete", "lease", LEASE_NAME, "--ignore-not-found")


def contender(holder: str, seconds: float, sa: Path) -> KubernetesLease:
    return KubernetesLease(LEASE_NAME, "scalelab", holder, seconds, service_account_dir=sa,
                           api_server=layout.APISERVER)


@pytest.mark.parametrize("seconds", [2.0, 0.5])
def test_lease_election_with_a_holder_that_stops_renewing(service_account: Path,
                                                          seconds: float) -> None:
    async def go() -> float:
        a = contender("api-a", seconds, service_account)
        b = contender("api-b", seconds, service_account)
        try:
            first = await a.try_acquire()
            assert first is not None
            assert await b.try_acquire() is None  # held, and just renewed
            paused = time.monotonic()  # a stops renewing, as a paused replica does
            while (token := await b.try_acquire()) is None:
                assert time.monotonic() - paused < seconds + 5, "never taken over"
                await asyncio.sleep(0.05)
            took = time.monotonic() - paused
            assert token == first + 1  # the fencing token of the new term is higher
            assert await a.try_acquire() is None  # the old holder learns it lost
            return took
        finally:
            await a.aclose()
            await b.aclose()

    took = asyncio.run(go())
    lease = json.loads(kubectl("-n", "scalelab", "get", "lease", LEASE_NAME, "-o", "json"))
    assert lease["metadata"]["annotations"][LEASE_SECONDS_ANNOTATION] == repr(seconds)
    # taken over after the lease the experiment asked for, not its rounding
    assert seconds <= took < seconds + 1.5, took


def test_scale_subresource_and_rollout_restart(control_plane: None) -> None:
    cluster = k.connect(layout.CONTEXT, "scalelab")
    k.scale_deployment(cluster, "api", 2)
    assert k.deployment_replicas(cluster, "api") == 2
    platform = k.KubernetesPlatform(context=layout.CONTEXT)
    stamp = platform._restart("api", {})

    def restarted() -> bool:
        sets = json.loads(kubectl("-n", "scalelab", "get", "replicasets", "-l",
                                  "app.kubernetes.io/component=api", "-o", "json"))["items"]
        return any(rs["spec"]["template"]["metadata"].get("annotations", {})
                   .get(k.RESTART_ANNOTATION) == stamp and rs["spec"]["replicas"] >= 1
                   for rs in sets)

    shell.wait_until("a ReplicaSet of the restarted template", restarted, 30)
