"""Tests that need a live kind cluster (marker ``kind``) or a docker daemon (``docker``).

They skip, saying why, when what they need is not there: run ``make cluster-up``
then ``make test-kind``. Where a cluster is required (``SCALELAB_REQUIRE_CLUSTER=1``,
which ``.ci/run`` sets when it brings a node up) a missing one fails them instead, so
a job meant to test a cluster cannot pass having tested nothing (as dramatiq's CI
fails a backend it cannot reach); for the image test, see tests/kind/test_image.py. The same
tests run against the local node (k8s/node/) with KUBE_CONTEXT=scalelab-local.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Generator, Iterator
from functools import cache
from pathlib import Path

import pytest

from chaos.platform import PlatformError

CONTEXT = os.environ.get("KUBE_CONTEXT", "kind-scalelab")
# A failed test keeps its app pods' logs here, before the fixture scales them away.
DIAGNOSTICS = Path(__file__).resolve().parents[2] / "results" / "kind" / "failed"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: needs a docker daemon and a local base image; skipped otherwise")


@cache
def cluster_problem() -> str | None:
    """Why the lab's cluster cannot be used, or None when it can."""
    from chaos.kubernetes import connect, disconnect

    try:
        disconnect(connect(CONTEXT, "scalelab"))
    except PlatformError as exc:
        return str(exc)
    return None


@cache
def docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return "no docker daemon reachable (`docker info` failed)"
    return None


REQUIRE_CLUSTER = "SCALELAB_REQUIRE_CLUSTER"


def no_cluster(why: str) -> None:
    """Skip the test for want of a cluster, or fail it where one is required."""
    if os.environ.get(REQUIRE_CLUSTER) == "1":
        pytest.fail(f"{REQUIRE_CLUSTER}=1 but there is no cluster: {why}", pytrace=False)
    pytest.skip(f"no kind cluster: {why}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kind") and (why := cluster_problem()):
        no_cluster(why)
    if item.get_closest_marker("docker") and (why := docker_problem()):
        pytest.skip(why)


@pytest.fixture
def kube_context() -> str:
    return CONTEXT


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def platform(request: pytest.FixtureRequest) -> Iterator[object]:
    from chaos.kubernetes import KubernetesPlatform

    p = KubernetesPlatform(context=CONTEXT)
    yield p
    if request.node.stash.get(FAILED, False):
        p.logs = DIAGNOSTICS / request.node.name
    p.teardown()
