"""The lab on the node: its overlay rendered for the node, applied, and waited on."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from localnode.kubeconfig import kubectl
from localnode.layout import LAB_DEPLOYMENTS, NAMESPACE, NODE_LABEL, ROOT, STATE, V
from localnode.shell import UsageError, http_ok, wait_until

# What the harness reaches through a NodePort. The lab's NodePorts keep
# externalTrafficPolicy: Local, and the harness's 127.0.0.1 is the first node's
# kube-proxy, so with two nodes these stay on the first: Redis always, the API by
# preference (an experiment may move it).
PINNED = ("redis-ledger", "redis-broker")
PREFERRED = ("api",)


def placement_patches() -> list[dict[str, object]]:
    def patch(name: str, pod_spec: dict[str, object]) -> dict[str, object]:
        return {"target": {"kind": "Deployment", "name": name}, "patch": json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"template": {"spec": pod_spec}}})}

    primary = {"matchExpressions": [{"key": NODE_LABEL, "operator": "In", "values": ["primary"]}]}
    prefer: dict[str, object] = {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": primary}]}}}
    return ([patch(d, {"nodeSelector": {NODE_LABEL: "primary"}}) for d in PINNED]
            + [patch(d, prefer) for d in PREFERRED])


def render_overlay(overlay: str, nodes: int = 1, target: Path = STATE / "overlay") -> Path:
    """k8s/overlays/<overlay> with the Redis image this node built (nothing is pulled),
    and with several nodes, the harness's pods placed where it reaches them."""
    source = ROOT / "k8s" / "overlays" / overlay
    if not (source / "kustomization.yaml").exists():
        have = sorted(p.parent.name
                      for p in (ROOT / "k8s" / "overlays").glob("*/kustomization.yaml"))
        raise UsageError(f"no overlay {overlay!r} (have: {', '.join(have)})")
    target.mkdir(parents=True, exist_ok=True)
    name, _, tag = V["REDIS_IMAGE"].rpartition(":")
    (target / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize accepts only relative paths to other kustomizations
        "resources": [os.path.relpath(source, target)],
        "images": [{"name": "redis", "newName": name, "newTag": tag}],
        **({"patches": placement_patches()} if nodes > 1 else {}),
    }, indent=1))
    return target


def redis_pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def empty_settings() -> None:
    """Empty the settings ConfigMap before an apply: client-side apply deletes only the
    keys it applied itself, so the harness's last settings would outlive the overlay."""
    if kubectl("-n", NAMESPACE, "get", "configmap/scalelab-settings", check=False):
        kubectl("-n", NAMESPACE, "patch", "configmap/scalelab-settings", "--type=json",
                "-p", '[{"op": "add", "path": "/data", "value": {}}]')


def apply_lab() -> None:
    """The rendered overlay, applied over emptied settings."""
    empty_settings()
    kubectl("apply", "-k", str(STATE / "overlay"), timeout=120)


def restart_and_wait() -> None:
    """Restart the lab's own images' pods (same tag, perhaps a new image) and wait until
    the harness reaches the API and both Redis through their NodePorts, as on kind."""
    kubectl("-n", NAMESPACE, "rollout", "restart",
            *(f"deployment/{d}" for d in ("api", "worker", "beat")))
    for d in LAB_DEPLOYMENTS:
        kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{d}", "--timeout=180s",
                timeout=200)
    # Ready pods are not yet reachable ones: kube-proxy, and a NetworkPolicy engine
    # (kube-router's sync), program a new pod a moment later.
    wait_until("the lab's NodePorts on 127.0.0.1",
               lambda: http_ok("http://127.0.0.1:30800/healthz")
               and all(redis_pings(port) for port in (30379, 30380)), 120)
