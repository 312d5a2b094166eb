"""The real image (services/Dockerfile), built and run on this machine's docker.

Needs a docker daemon and a local base image (no registry is used):

    sh tests/kind/make_base_image.sh            # debootstrap + docker import
    SCALELAB_BASE_IMAGE=scalelab-base:bookworm pytest -m docker tests/kind

The build reaches PyPI with ``--network host``; the container runs with
``--network host`` too, addressed on 127.0.0.1 only, against a throwaway
redis-server on a loopback port. It runs as the pod does: read-only root with a
/tmp tmpfs, every capability dropped, no privilege escalation.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from chaos.kubernetes import signal_argv
from services.ledger import events_key
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("SCALELAB_BASE_IMAGE", "scalelab-base:bookworm")
IMAGE = "scalelab:docker-test"

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def docker(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def image() -> str:
    if docker("image", "inspect", BASE, check=False).returncode != 0:
        pytest.skip(f"no base image {BASE}: make one with `sh tests/kind/make_base_image.sh`")
    started = time.monotonic()
    build = docker("build", "--network", "host", "--build-arg", f"BASE={BASE}",
                   "-f", "services/Dockerfile", "-t", IMAGE, str(ROOT), check=False, timeout=840)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    print(f"built {IMAGE} on {BASE} in {time.monotonic() - started:.0f}s")
    return IMAGE


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[str, redis.Redis]]:
    from chaos.redis_server import redis_server_binary

    port = free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}", client
    finally:
        client.close()
        proc.kill()
        proc.wait()


@pytest.fixture
def api(image: str, ledger: tuple[str, redis.Redis]) -> Iterator[tuple[str, str]]:
    """An API container, hardened like the pod; yields (container name, base URL)."""
    url, _ = ledger
    name, port = f"scalelab-test-{uuid.uuid4().hex[:8]}", free_port()
    docker("run", "-d", "--name", name, "--network", "host", "--pull", "never",
           "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges",
           "-e", f"SCALELAB_LEDGER_URL={url}/0", "-e", f"SCALELAB_BROKER_URL={url}/1",
           "-e", f"SCALELAB_INSTANCE={name}", "-e", "SCALELAB_SHUTDOWN_GRACE=2",
           image, "python", "-m", "services.api", "--host", "127.0.0.1", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not healthy(base):
            state = docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
            assert state == "running" and time.monotonic() < deadline, \
                docker("logs", name, check=False).stderr[-3000:]
            time.sleep(0.2)
        yield name, base
    finally:
        docker("rm", "-f", name, check=False)


def healthy(base: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def exit_code(name: str) -> int:
    return int(docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout)


def test_runs_as_non_root_under_tini(api: tuple[str, str]) -> None:
    name, _ = api
    assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    pid1 = docker("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert pid1[:2] == ["/usr/bin/tini", "--"]
    assert pid1[2:5] == ["python", "-m", "services.api"]


def test_sigterm_through_pid_1_shuts_the_app_down_gracefully(
        api: tuple[str, str], ledger: tuple[str, redis.Redis]) -> None:
    name, _ = api
    _, client = ledger
    client.set("scalelab:run", "docker-test")  # the lifespan reports its counts at shutdown
    # it reports only runs it recorded in: wait for its scheduler's first tick of this run
    wait_for(lambda: int(client.llen(events_key("docker-test"))) > 0,  # type: ignore[arg-type]
             30, "a tick in the run")
    started = time.monotonic()
    docker("stop", "--time", "30", name, timeout=60)  # SIGTERM to PID 1, SIGKILL after 30 s
    took = time.monotonic() - started
    assert took < 20, f"SIGTERM did not stop the app ({took:.1f}s): it waited for SIGKILL"
    assert exit_code(name) != 137
    # Only the app's own shutdown path writes this: it ran, so SIGTERM reached it.
    assert client.hget("scalelab:counters:docker-test", name) is not None


def test_platform_signals_reach_every_app_process(api: tuple[str, str]) -> None:
    # The exact commands chaos.kubernetes execs into a pod for pause/resume/kill.
    name, base = api
    docker("exec", name, *signal_argv("SIGSTOP"))
    assert not healthy(base, timeout=1.5), "a paused API must not answer"
    docker("exec", name, *signal_argv("SIGCONT"))
    assert healthy(base, timeout=5)
    docker("exec", name, *signal_argv("SIGKILL"))
    docker("wait", name, timeout=30)
    assert exit_code(name) == 128 + 9, "the app died by SIGKILL and tini exited with it"
