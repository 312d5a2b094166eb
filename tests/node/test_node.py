"""The local node (k8s/node/): from an empty image cache to the running lab, and back to nothing.

Opt-in: ``make test-node`` (it sets SCALELAB_NODE_TESTS=1). It needs root, the
binaries ``make node-binaries`` caches, and a few minutes; it brings the node up
with the kind overlay from an empty image cache (as on a fresh machine: the
debootstrap trees and the images are built first), checks what the lab relies on,
and takes the node down. Elsewhere every test here skips and says why.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.node.nodeparts import (
    FIRST,
    ROOT,
    images,
    kubeconfig,
    lab,
    layout,
    left_behind,
    network,
    run_node,
    shell,
    why_not,
)

pytestmark = pytest.mark.timeout(1800)
TIMINGS = ROOT / "results" / "node" / "timings.jsonl"


def record(what: str, seconds: float, **extra: object) -> None:
    """A bring-up's duration, for the README's figures (not asserted: `make bench`'s job)."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    with TIMINGS.open("a") as f:
        f.write(json.dumps({"what": what, "seconds": round(seconds, 1), "at": time.time(),
                            **extra}) + "\n")


@pytest.fixture(scope="module")
def bring_up() -> Iterator[float]:
    """Seconds `node.py up` took from cached binaries and an EMPTY image cache (the
    debootstrap trees, then every image, built on the way); down at the end."""
    if why := why_not():
        pytest.skip(why)
    (layout.IMAGES / "inputs.sha256").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="scalelab-image-cache-") as cache:
        env = {**os.environ, "SCALELAB_IMAGE_CACHE": cache}
        started = time.monotonic()
        up = run_node("up", "--overlay", "kind", timeout=1500, env=env)
        took = time.monotonic() - started
        assert sorted(p.name for p in Path(cache).iterdir() if (p / ".complete").exists()) \
            == ["python", "redis"], "the debootstrap trees were not built into the empty cache"
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        record("up, empty image cache", took)
        yield took
    finally:
        run_node("down", timeout=300)


def pods() -> list[dict[str, object]]:
    """The lab's pods but those on their way out (a rollout restart leaves some)."""
    items = json.loads(kubeconfig.kubectl("-n", "scalelab", "get", "pods", "-o", "json"))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def exec_python(deployment: str, code: str) -> str:
    return str(kubeconfig.kubectl("-n", "scalelab", "exec", f"deployment/{deployment}", "--",
                                  "/opt/venv/bin/python", "-c", code, timeout=60))


def test_images_are_docker_archives_with_the_tags_the_node_imports(bring_up: float) -> None:
    import tarfile

    for name, tag in (("pause", "PAUSE_IMAGE"), ("redis", "REDIS_IMAGE"),
                      ("scalelab", "LAB_IMAGE")):
        with tarfile.open(layout.IMAGES / f"{name}.tar") as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        tags = {t.removeprefix("docker.io/library/") for e in manifest for t in e["RepoTags"]}
        # docker.io/library/ is docker's default: an archive may spell the tag without it
        assert layout.V[tag].removeprefix("docker.io/library/") in tags, tags


def test_every_pod_of_the_kind_overlay_runs_and_is_ready(bring_up: float) -> None:
    items = pods()
    components = sorted(str(p["metadata"]["labels"]["app.kubernetes.io/component"])  # type: ignore[index]
                        for p in items)
    deployments = json.loads(kubeconfig.kubectl("-n", "scalelab", "get", "deployments", "-o",
                                          "json"))["items"]
    want = sorted(d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                  for d in deployments for _ in range(d["spec"]["replicas"]))
    assert components == want and {"api", "worker", "beat", "ledger", "broker"} <= set(want)
    for p in items:
        status: dict[str, object] = p["status"]  # type: ignore[assignment]
        assert status["phase"] == "Running"
        conditions = {c["type"]: c["status"] for c in status["conditions"]}  # type: ignore[attr-defined]
        assert conditions["Ready"] == "True", p["metadata"]


def test_the_harness_reaches_the_nodeports_on_loopback(bring_up: float) -> None:
    # The same ports kind maps to 127.0.0.1 (k8s/kind-config.yaml).
    assert httpx.get("http://127.0.0.1:30800/healthz", timeout=5).status_code == 200
    for port in (30379, 30380):
        assert redis.Redis(port=port, socket_timeout=5).ping()


def test_pods_find_services_by_name_and_have_no_route_off_the_machine(bring_up: float) -> None:
    got = exec_python("api", "import socket; print(socket.gethostbyname('redis-broker'))")
    assert got.strip().startswith("10.96.")
    # Routes (from /proc/net/route): the pod subnet on the link, the pod and Service
    # ranges through the bridge, and no default route.
    table = exec_python("api", "print(open('/proc/net/route').read())").splitlines()[1:]
    destinations = {int(line.split()[1], 16) for line in table if line.strip()}
    assert 0 not in destinations, "a default route leads off the machine"


def test_restricted_pod_security_is_enforced(bring_up: float) -> None:
    # No securityContext at all: root allowed, capabilities kept, no seccomp profile.
    manifest = json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unhardened"},
        "spec": {"containers": [{"name": "c", "image": "scalelab:dev"}]}})
    out = subprocess.run([kubeconfig.kubectl_bin(), "--kubeconfig", str(layout.ADMIN_KUBECONFIG),
                          "-n", "scalelab", "create", "--dry-run=server", "-f", "-"],
                         input=manifest, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "violates PodSecurity" in out.stderr


def running_task(pod: str, container: str) -> bool:
    ids = images.ctr(FIRST, "containers", "ls", "-q",
                   f'labels."io.kubernetes.pod.name"=={pod},'
                   f'labels."io.kubernetes.container.name"=={container}', check=False).split()
    tasks = images.ctr(FIRST, "tasks", "ls", check=False)
    return any(line.split()[0] in ids and "RUNNING" in line
               for line in tasks.splitlines()[1:] if line.strip())


def test_a_killed_pods_processes_live_until_kubelets_sigkill(bring_up: float) -> None:
    # A delete with gracePeriodSeconds=0 removes the API object at once, but kubelet
    # SIGTERMs the containers and SIGKILLs them only after a grace period: on 1.33
    # its 2 s minimum, not the pod's own terminationGracePeriodSeconds, which older
    # kubelets waited out (kubernetes/kubernetes#120449, #115819). The platform's
    # kill freezes the app first, so the SIGTERM does nothing until the SIGKILL.
    from chaos.kubernetes import KubernetesPlatform
    from chaos.platform import Topology

    platform = KubernetesPlatform(context=layout.CONTEXT)
    platform.deploy(Topology(replicas={"worker": 1}, grace=6))
    (worker,) = platform.instances("worker")
    assert running_task(worker.name, "worker")
    killed = time.monotonic()
    platform.kill(worker)
    shell.wait_until("the frozen worker's container to end",
                    lambda: not running_task(worker.name, "worker"), 60)
    lived = time.monotonic() - killed
    print(f"a killed pod's processes lived {lived:.1f}s (pod grace 6 s)")
    assert 1.5 <= lived < 5
    platform.teardown()


def test_an_overlay_applied_again_sets_the_settings_whole(bring_up: float) -> None:
    from chaos.kubernetes import KubernetesPlatform
    from chaos.platform import Topology

    def settings() -> dict[str, str]:
        cm = json.loads(kubeconfig.kubectl("-n", "scalelab", "get", "configmap/scalelab-settings",
                                     "-o", "json"))
        return dict(cm.get("data") or {})

    platform = KubernetesPlatform(context=layout.CONTEXT)
    platform.deploy(Topology(replicas={"api": 1}, settings={"beat_guard": "redbeat"}))
    platform.teardown()
    # Client-side apply alone keeps what it did not apply itself: the harness's key.
    kubeconfig.kubectl("apply", "-k", str(lab.render_overlay("scheduler-leader")))
    assert settings().get("SCALELAB_BEAT_GUARD") == "redbeat"
    # The node's up (like the Makefile's cluster-up) empties the settings first.
    again = run_node("up", "--overlay", "scheduler-leader", timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert settings() == {"SCALELAB_SCHEDULER_GUARD": "leader",
                          "SCALELAB_LEADER_BACKEND": "kubernetes", "SCALELAB_FENCING": "true"}


def test_down_leaves_nothing(bring_up: float) -> None:
    down = run_node("down", timeout=300)
    assert down.returncode == 0, down.stderr[-2000:]
    left = run_node("leftovers", timeout=60)
    assert left.returncode == 0, left.stdout
    assert left_behind() == {}
    assert not Path(f"/sys/class/net/{layout.BRIDGE}").exists()
    assert "SCALELAB" not in subprocess.run(["iptables-save"], capture_output=True,
                                            text=True).stdout


def test_the_policy_engine_probe_agrees_with_the_kernel() -> None:
    # kube-network-policies (kind's NetworkPolicy engine) queues packets to userspace
    # with nftables' queue expression; where the kernel has none it cannot enforce
    # anything, and the node says so instead of pretending.
    import gzip
    import shutil

    if os.environ.get("SCALELAB_NODE_TESTS") != "1" or os.geteuid() != 0:
        pytest.skip("opt-in (`make test-node`), as root")
    if not shutil.which("nft") or not Path("/proc/config.gz").exists():
        pytest.skip("needs nft and /proc/config.gz")
    config = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode()
    has_queue = any(line in config.splitlines()
                    for line in ("CONFIG_NFT_QUEUE=y", "CONFIG_NFT_QUEUE=m"))
    problem = network.policy_engine_problem()
    assert (problem is None) == has_queue, problem
    if problem:
        assert "CONFIG_NFT_QUEUE" in problem and "\n" not in problem
    assert "scalelab_queue_probe" not in shell.run("nft", "list", "tables")
