"""The fork server's instances are real processes: each leads its own session and process
group, real signals kill, terminate and pause it, and nothing outlives the lab."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chaos.forkserver import ForkServer
from chaos.processes import LAB_TAG, free_port
from tests.conftest import wait_for

SERVE = frozenset({"http.server"})  # a real server process standing in for an instance
PROBE = "tests.integration.forked_probe"  # an instance that says what it finds itself to be


@pytest.fixture
def server(lab_tag: str) -> Iterator[ForkServer]:
    fs = ForkServer({**os.environ, LAB_TAG: lab_tag}, preload=("http.server",), modules=SERVE)
    try:
        assert fs.wait_ready()["threads"] == 1
        yield fs
    finally:
        fs.close()


def serve(fs: ForkServer, tmp_path: Path, **env: str) -> tuple[int, int]:
    port = free_port()
    proc = fs.popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                    {**fs.env, **env}, tmp_path / f"serve-{port}.log", cwd=str(tmp_path))

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, 15, "the forked server to answer")
    return proc.pid, port


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_an_instance_leads_its_own_session_and_group_and_sees_its_environment(
        server: ForkServer, tmp_path: Path) -> None:
    pid, _ = serve(server, tmp_path, SCALELAB_INSTANCE="api-7")
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid
    assert pid not in (os.getpid(), server.pid)
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: server.exit_code(pid) is not None, 10, "the kill to be reported")
    assert server.exit_code(pid) == -signal.SIGKILL


def test_terminate_pause_and_resume_are_real_signals(server: ForkServer, tmp_path: Path) -> None:
    pid, port = serve(server, tmp_path)
    os.killpg(pid, signal.SIGSTOP)
    wait_for(lambda: state(pid) == "T", 5, "the group to stop")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
    os.killpg(pid, signal.SIGCONT)
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: server.exit_code(pid) is not None, 10, "the terminate to be reported")
    assert server.exit_code(pid) == -signal.SIGTERM


def test_a_replacement_is_a_new_process(server: ForkServer, tmp_path: Path) -> None:
    first, _ = serve(server, tmp_path)
    os.killpg(first, signal.SIGKILL)
    second, _ = serve(server, tmp_path)
    assert second != first
    os.killpg(second, signal.SIGKILL)
    wait_for(lambda: server.exit_code(second) is not None, 10, "the second kill")


def test_what_only_takes_effect_at_exec_is_not_forked(server: ForkServer) -> None:
    args = [sys.executable, "-m", "http.server"]
    assert server.can_fork(args, server.env)
    assert not server.can_fork(args, {**server.env, "LD_PRELOAD": "libfaketime.so.1"})
    assert not server.can_fork(args, {**server.env, "PYTHONPATH": "/elsewhere"})
    assert not server.can_fork([sys.executable, "-m", "services.api"], server.env)


@pytest.fixture
def probing(lab_tag: str) -> Iterator[ForkServer]:
    fs = ForkServer({**os.environ, LAB_TAG: lab_tag}, preload=(PROBE,),
                    modules=frozenset({PROBE}))
    try:
        fs.wait_ready()
        yield fs
    finally:
        fs.close()


def probe(fs: ForkServer, out: Path, **env: str) -> dict[str, object]:
    proc = fs.popen([sys.executable, "-m", PROBE, str(out)], {**fs.env, **env},
                    out.with_suffix(".log"))
    found: dict[str, object] = json.loads(wait_for(
        lambda: out.exists() and out.read_text(), 15, "the probe to report"))
    assert found["pid"] == proc.pid
    return found


def test_what_the_server_preloaded_is_frozen_and_the_instance_collects_its_own(
        probing: ForkServer, tmp_path: Path) -> None:
    found = probe(probing, tmp_path / "probe.json")
    assert found["gc_enabled"] is True
    assert isinstance(found["frozen"], int) and found["frozen"] > 1000
    pid = int(str(found["pid"]))
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: probing.exit_code(pid) is not None, 10, "the kill to be reported")
    assert probing.ready_at is not None and probing.ready_at >= probing.started_at


def test_instances_asked_for_at_once_are_separate_processes_each_its_own_group(
        probing: ForkServer, tmp_path: Path) -> None:
    found: dict[int, dict[str, object]] = {}

    def start(i: int) -> None:
        found[i] = probe(probing, tmp_path / f"probe-{i}.json", SCALELAB_INSTANCE=f"api-{i}")

    threads = [threading.Thread(target=start, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(found) == list(range(6))
    pids = {int(str(f["pid"])) for f in found.values()}
    assert len(pids) == 6 and probing.pid not in pids
    for i, f in found.items():
        assert f["pid"] == f["pgid"] == f["sid"]
        assert f["instance"] == f"api-{i}"
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        wait_for(lambda p=pid: probing.exit_code(p) is not None, 10, "every terminate reported")
        assert probing.exit_code(pid) == -signal.SIGTERM


PRESTART = """
import json, os, sys
from chaos import forkserver
ok = forkserver.prestart(dict(os.environ), ("json",))
again = forkserver.prestart(dict(os.environ), ("json",))  # one at a time
server = forkserver.take()
ready = server.wait_ready()
pid, pgid = server.pid, os.getpgid(server.pid)
server.close()
print(json.dumps({"ok": ok, "again": again, "me": os.getpid(), "pid": pid, "pgid": pgid,
                  "threads": ready["threads"], "code": server._proc.poll(),
                  "left": forkserver.take() is None}))
"""


def test_a_single_threaded_process_forks_its_instances_server_from_itself(
        lab_tag: str) -> None:
    # What a harness a suite forked does before its run: no exec, no imports.
    import subprocess

    done = subprocess.run([sys.executable, "-c", PRESTART], capture_output=True, text=True,
                          timeout=60, env={**os.environ, LAB_TAG: lab_tag}, check=True)
    said = json.loads(done.stdout)
    assert said["ok"] and not said["again"] and said["left"]
    assert said["pid"] != said["me"] and said["pgid"] == said["pid"]  # its own session
    assert said["threads"] == 1 and said["code"] == 0  # ended when its stdin closed


def test_a_process_running_threads_does_not_fork_a_server() -> None:
    from chaos.forkserver import can_fork_here

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert not can_fork_here(("json",))
    finally:
        stop.set()
        thread.join()
