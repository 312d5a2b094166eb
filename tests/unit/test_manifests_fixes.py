"""Offline checks of k8s/overlays/fixes: it renders, validates against the Kubernetes
schemas, every pod template (the CronJob's included) meets the restricted Pod Security
Standard, the CronJob fires nothing outside a run and names its Job for
services.cronjob, and only lab pods reach PostgreSQL.

Rendering uses the helpers of tests/unit/test_manifests.py (kubectl's kustomize);
without a kubectl those tests skip, saying so. KubernetesPlatform's CronJob handling
runs against the fake cluster of tests/unit/test_kubernetes_platform.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chaos import kubernetes as k
from chaos.kubernetes import api as kapi
from chaos.kubernetes import broker as kbroker
from chaos.platform import PlatformError, Topology
from tests.unit.test_kubernetes_platform import FakeCluster, replace_layer
from tests.unit.test_manifests import (
    by_name,
    containers,
    fragment_var,
    matches,
    needs_kubectl,
    objects,
    render,
)

TARGET = "overlays/fixes"
SCHEMA_VERSION = "1.33.0"  # the local node's (k8s/node/) and a current kind's
LAB = {"app.kubernetes.io/part-of": "scalelab"}
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"



def pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod template) of every Deployment and CronJob of the overlay."""
    for o in render(TARGET):
        if o["kind"] == "CronJob":
            yield o["metadata"]["name"], o["spec"]["jobTemplate"]["spec"]["template"]
        elif o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]


def cronjob() -> dict[str, Any]:
    (cj,) = objects(TARGET, "CronJob")
    return cj


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- rendering and schemas ---------------------------------------------------------------


@needs_kubectl
def test_renders_with_what_the_fixes_need() -> None:
    names = [(o["kind"], o["metadata"]["name"]) for o in render(TARGET)]
    assert len(names) == len(set(names)), "duplicate objects"
    assert {("CronJob", "scalelab-tick"), ("Deployment", "postgres"), ("Service", "postgres"),
            ("Deployment", "arq"), ("NetworkPolicy", "postgres-from-lab")} <= set(names)
    for o in render(TARGET):
        if o["kind"] != "Namespace":
            assert o["metadata"].get("namespace") == "scalelab", o["metadata"]["name"]
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "scalelab"


@needs_kubectl
def test_validates_against_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for o in render(TARGET):
        # strict: an unknown (e.g. misspelt) field is an error, not silently dropped
        kubernetes_validate.validate(o, SCHEMA_VERSION, strict=True)


# --- restricted pod security, for every pod template --------------------------------------


@needs_kubectl
def test_every_pod_template_is_restricted_and_limited() -> None:
    templates = dict(pod_templates())
    assert {"scalelab-tick", "postgres", "arq"} <= set(templates)
    for name, t in templates.items():
        spec = t["spec"]
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True, name
        assert sc["runAsUser"] > 0, name
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
        for flag in ("hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"):
            assert not spec.get(flag), f"{name}: {flag}"
        assert spec.get("enableServiceLinks") is False, name
        # only the API replicas need a token (the leader Lease)
        assert spec["automountServiceAccountToken"] is name.startswith("api"), name
        assert isinstance(spec.get("terminationGracePeriodSeconds"), int), name
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        assert not {v["name"] for v in spec.get("volumes", [])} - empty_dirs, \
            f"{name}: only emptyDir volumes (no hostPath)"
        for c in containers(spec):
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, name
            assert csc["readOnlyRootFilesystem"] is True, name
            assert csc.get("privileged") in (None, False), name
            assert csc["capabilities"]["drop"] == ["ALL"], name
            assert not csc["capabilities"].get("add"), name
            assert "runAsUser" not in csc or csc["runAsUser"] > 0, name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{name}: {bound}"
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, f"{name}: /tmp must be an emptyDir"
            assert c.get("imagePullPolicy") != "Always", name


@needs_kubectl
def test_app_images_are_the_one_cluster_up_loads() -> None:
    image = fragment_var("IMAGE")
    for name, t in pod_templates():
        for c in containers(t["spec"]):
            if c["image"].startswith("scalelab"):
                assert c["image"] == image, name
                assert "command" not in c, f"{name}: the image's ENTRYPOINT (tini) stays PID 1"


# --- the CronJob -------------------------------------------------------------------------


@needs_kubectl
def test_cronjob_fires_nothing_outside_a_run() -> None:
    spec = cronjob()["spec"]
    assert spec["suspend"] is True
    assert spec["schedule"] == "* * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert "startingDeadlineSeconds" not in spec, "the default: no deadline"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a failed tick is lost, not retried"
    assert job["template"]["spec"]["restartPolicy"] == "Never"


@needs_kubectl
def test_cronjob_pod_runs_the_tick_with_the_lab_settings() -> None:
    from chaos.kubernetes import COMPONENT_LABEL, SETTINGS_CONFIGMAP

    template = cronjob()["spec"]["jobTemplate"]["spec"]["template"]
    assert template["metadata"]["labels"][COMPONENT_LABEL] == "cronjob"
    assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "scalelab"
    (c,) = template["spec"]["containers"]
    assert c["name"] == "cronjob"
    assert c["args"] == ["python", "-m", "services.cronjob"]
    refs = [e["configMapRef"]["name"] for e in c["envFrom"]]
    assert refs == ["scalelab-platform", SETTINGS_CONFIGMAP]
    env = env_of(c)
    assert env["SCALELAB_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["SCALELAB_JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        f"metadata.labels['{JOB_NAME_LABEL}']"
    # LabSettings.component has no "cronjob": setting it would fail the pod's settings
    assert "SCALELAB_COMPONENT" not in env


@needs_kubectl
def test_the_controllers_job_name_is_one_the_tick_reads() -> None:
    from services.cronjob.__main__ import scheduled_time

    name = cronjob()["metadata"]["name"]
    # The controller appends "-<minutes>" (11 characters): the API refuses longer names.
    assert len(name) <= 52
    minutes = 29_412_345
    assert scheduled_time(f"{name}-{minutes}") == minutes * 60.0
    with pytest.raises(ValueError):
        scheduled_time(name)


# --- PostgreSQL --------------------------------------------------------------------------


@needs_kubectl
def test_postgres_runs_as_its_image_user_on_an_empty_dir() -> None:
    pod = by_name(TARGET, "Deployment", "postgres")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    name, _, tag = c["image"].partition(":")
    assert name == "postgres" and tag and "alpine" not in tag, \
        "the Debian image: its postgres user is uid 999"
    sc = pod["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (999, 999, 999)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    data_mount = next(p for p in mounts if env["PGDATA"].startswith(p + "/"))
    assert "emptyDir" in volumes[mounts[data_mount]]
    assert env["PGDATA"] != data_mount, "initdb needs a directory it owns: a subdirectory"
    assert "emptyDir" in volumes[mounts["/var/run/postgresql"]], "the socket, read-only root"
    assert c["readinessProbe"]["exec"]["command"][0] == "pg_isready"


@needs_kubectl
def test_the_datastore_url_names_the_postgres_service() -> None:
    from services.settings import LabSettings

    data = by_name(TARGET, "ConfigMap", "scalelab-platform")["data"]
    fields = {k.removeprefix("SCALELAB_").lower(): v for k, v in data.items()}
    assert set(fields) <= set(LabSettings.model_fields)
    settings = LabSettings.model_validate(fields)
    svc = by_name(TARGET, "Service", "postgres")
    (port,) = svc["spec"]["ports"]
    assert settings.datastore_url.startswith(f"postgresql://postgres@postgres:{port['port']}/")
    assert "type" not in svc["spec"], "ClusterIP: no NodePort to the host"
    pods = [t["metadata"]["labels"] for _, t in pod_templates()]
    assert [lb for lb in pods if matches({"matchLabels": svc["spec"]["selector"]}, lb)] == \
        [by_name(TARGET, "Deployment", "postgres")["spec"]["template"]["metadata"]["labels"]]


def _admits(target_labels: dict[str, str], source_labels: dict[str, str] | None,
            port: int) -> bool:
    """Whether the overlay's NetworkPolicies let a pod (or, for None, anything outside
    the pod network) reach ``target_labels`` on ``port`` (same namespace)."""
    policies = [np for np in objects(TARGET, "NetworkPolicy")
                if matches(np["spec"]["podSelector"], target_labels)
                and "Ingress" in np["spec"]["policyTypes"]]
    assert policies, "no policy selects the pod: everything would reach it"
    for np in policies:
        for rule in np["spec"].get("ingress", []):
            if "ports" in rule and port not in [p["port"] for p in rule["ports"]]:
                continue
            peers = rule.get("from")
            if not peers:
                return True  # from anywhere
            for peer in peers:
                if "ipBlock" in peer or "namespaceSelector" in peer:
                    if source_labels is None or "namespaceSelector" in peer:
                        return True
                elif source_labels is not None and matches(peer["podSelector"], source_labels):
                    return True
    return False


@needs_kubectl
def test_only_lab_pods_reach_postgres() -> None:
    target = by_name(TARGET, "Deployment", "postgres")["spec"]["template"]["metadata"]["labels"]
    for name, t in pod_templates():
        assert _admits(target, t["metadata"]["labels"], 5432), f"{name} cannot reach PostgreSQL"
    assert not _admits(target, {"app": "other"}, 5432), "a pod outside the lab reaches it"
    assert not _admits(target, None, 5432), "the host (NodePort path) reaches it"
    for np in objects(TARGET, "NetworkPolicy"):
        if np["metadata"]["name"] == "postgres-from-lab":
            for rule in np["spec"]["ingress"]:
                assert rule["from"] == [{"podSelector": {"matchLabels": LAB}}]


@needs_kubectl
def test_the_new_pods_reach_the_ledger() -> None:
    ledger = by_name(TARGET, "Deployment", "redis-ledger")["spec"]["template"]["metadata"]
    for name in ("scalelab-tick", "arq"):
        labels = dict(pod_templates())[name]["metadata"]["labels"]
        assert _admits(ledger["labels"], labels, 6379), name


# --- arq -----------------------------------------------------------------------------------


@needs_kubectl
def test_arq_workers_start_only_with_a_topology() -> None:
    from chaos.kubernetes import COMPONENT_LABEL

    arq = by_name(TARGET, "Deployment", "arq")
    assert arq["spec"]["replicas"] == 0
    t = arq["spec"]["template"]
    assert t["metadata"]["labels"][COMPONENT_LABEL] == "arq"
    (c,) = t["spec"]["containers"]
    assert c["name"] == "arq"
    assert c["args"] == ["python", "-m", "services.arq_worker"]
    env = env_of(c)
    assert env["SCALELAB_COMPONENT"]["value"] == "arq"
    assert env["SCALELAB_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


# --- KubernetesPlatform and the CronJob (a fake cluster, as test_kubernetes_platform) --------


class FakeCronCluster(FakeCluster):
    """FakeCluster with the CronJob: its Jobs' pods are component "cronjob"."""

    def patch_cronjob(self, cluster: object, name: str, body: dict[str, Any]) -> None:
        self.calls.append(("cronjob", name, body))

    def delete_jobs(self, cluster: object, selector: str) -> None:
        self.calls.append(("delete-jobs", selector))
        component = selector.rsplit("=", 1)[1]
        self.pods = [p for p in self.pods if p.component != component]


@pytest.fixture
def cron(monkeypatch: pytest.MonkeyPatch) -> FakeCronCluster:
    cluster = FakeCronCluster()
    replace_layer(monkeypatch, cluster, (
        "connect", "read_settings", "replace_settings", "patch_deployment",
        "scale_deployment", "deployment_replicas", "list_pods", "watch_pods",
        "delete_pod", "exec_in_pod", "pod_log", "patch_cronjob", "delete_jobs",
        "scale_statefulset"))
    monkeypatch.setattr(kbroker, "redis_answers", lambda url: True)  # no NodePort in a fake
    monkeypatch.setattr(kapi, "disconnect", lambda c: None)  # no connection pools either
    # nor a broker to set a memory policy on, nor NetworkPolicies to sweep
    monkeypatch.setattr(kbroker, "configure_broker", lambda url, settings: True)
    monkeypatch.setattr(kapi, "delete_network_policies", lambda c, selector: None)
    cluster.pod("broker")
    return cluster


def cron_calls(cluster: FakeCronCluster) -> list[tuple[Any, ...]]:
    return [c for c in cluster.calls if c[0] in ("cronjob", "delete-jobs")]


def k8s_cronjob_topology(policy: str) -> Topology:
    from experiments.catalog.k8s_cronjob import SPEC

    return SPEC.build({"concurrency_policy": policy, "duration": 180.0,
                       "tick_seconds": 5.0}).topology


@pytest.mark.parametrize("policy", ["Forbid", "Allow"])
def test_deploy_resumes_the_cronjob_with_the_runs_policy(cron: FakeCronCluster,
                                                         policy: str) -> None:
    platform = k.KubernetesPlatform(await_announcements=False, ready_timeout=5)
    cron.pod("cronjob", ready=False)  # a Job's pod left by an earlier run
    platform.deploy(k8s_cronjob_topology(policy))
    selector = k.selector("cronjob")
    assert cron_calls(cron) == [
        ("delete-jobs", selector),
        ("cronjob", k.CRONJOB, {"spec": {"concurrencyPolicy": policy, "suspend": False}}),
    ]
    assert not cron.of("cronjob"), "deploy waits until the earlier run's Job pods are gone"
    assert cron.settings["SCALELAB_CRONJOB_CONCURRENCY_POLICY"] == policy
    for c in ("api", "worker", "beat"):  # the app components are not part of this row
        assert cron.desired[c] == 0
    # the controller creates Jobs; instances are their running pods, oldest first
    first, done, second = cron.pod("cronjob"), cron.pod("cronjob", ready=False), cron.pod("cronjob")
    assert [i.name for i in platform.instances("cronjob")] == [first.name, second.name]
    assert done.name not in {i.name for i in platform.instances("cronjob")}
    assert {i.component for i in platform.instances("cronjob")} == {"cronjob"}


def test_teardown_suspends_the_cronjob_and_deletes_its_jobs(cron: FakeCronCluster) -> None:
    platform = k.KubernetesPlatform(await_announcements=False, ready_timeout=5)
    platform.deploy(k8s_cronjob_topology("Forbid"))
    cron.pod("cronjob")
    cron.calls.clear()
    platform.teardown()
    assert cron_calls(cron) == [("cronjob", k.CRONJOB, {"spec": {"suspend": True}}),
                                ("delete-jobs", k.selector("cronjob"))]
    assert platform.instances("cronjob") == [] and not cron.of("cronjob")
    cron.calls.clear()
    platform.teardown()  # idempotent: nothing more to suspend
    assert cron_calls(cron) == []


def test_a_topology_without_the_cronjob_never_touches_it(cron: FakeCronCluster) -> None:
    # The other overlays have no CronJob: deploy and teardown must not need one.
    platform = k.KubernetesPlatform(await_announcements=False, ready_timeout=5)
    platform.deploy(Topology(replicas={"api": 3}))
    platform.teardown()
    assert cron_calls(cron) == []


def test_a_bad_concurrency_policy_is_refused_before_any_change(cron: FakeCronCluster) -> None:
    platform = k.KubernetesPlatform(await_announcements=False, ready_timeout=5)
    topology = Topology(replicas={"cronjob": 1}, settings={"cronjob_concurrency_policy": "Never"})
    with pytest.raises(PlatformError, match="cronjob_concurrency_policy must be one of") as e:
        platform.deploy(topology)
    assert "\n" not in str(e.value)
    assert cron.calls == [] and cron.settings == {"SCALELAB_OLD": "1"}


def test_no_cronjob_says_which_overlay_to_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.client.exceptions import ApiException

    class Batch:
        def __init__(self, api_client: object) -> None:
            pass

        def patch_namespaced_cron_job(self, *args: Any, **kwargs: Any) -> None:
            raise ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(kapi.kube.client, "BatchV1Api", Batch)

    class Apps:
        api_client = None

    cluster = k.Cluster(k.CONTEXT, k.NAMESPACE, "https://127.0.0.1:6443", None, Apps(), None)
    with pytest.raises(PlatformError, match=r"OVERLAY=fixes make cluster-up") as e:
        k.patch_cronjob(cluster, k.CRONJOB, {"spec": {"suspend": False}})
    assert "\n" not in str(e.value)


@needs_kubectl
def test_the_platforms_cronjob_is_the_overlays() -> None:
    assert cronjob()["metadata"]["name"] == k.CRONJOB
    assert cronjob()["spec"]["concurrencyPolicy"] in k.CONCURRENCY_POLICIES
