"""Bad input: one line on stderr naming the problem, exit 2, no traceback, nothing left."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

# Most refusals are checked in this process (``scalelab_here``); the ones that need a
# real environment (no redis-server, a busy port, a kubeconfig) and the subprocess
# itself (one line on the real stderr, no traceback) run ``scalelab`` as a process.


def assert_refused(r: Any, *words: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(("args", "words"), [
    (["run", "no-such-experiment"], ["unknown experiment", "no-such-experiment"]),
    (["run", "scheduler-duplicates", "--guard", "bogus"], ["--guard", "bogus"]),
    (["run", "scheduler-duplicates", "--replicas", "0"], ["--replicas", "at least"]),
    (["run", "scheduler-duplicates", "--replicas", "-3"], ["--replicas"]),
    (["run", "scheduler-duplicates", "--replicas", "100000"], ["--replicas", "at most"]),
    (["run", "scheduler-duplicates", "--duration", "0"], ["--duration"]),
    (["run", "scheduler-duplicates", "--duration", "1e9"], ["--duration", "at most"]),
    (["run", "scheduler-duplicates", "--interval", "nan"], ["--interval"]),
    (["run", "scheduler-duplicates", "--interval", "abc"], ["--interval", "number"]),
    (["run", "scheduler-duplicates", "--no-such-option", "1"], ["--no-such-option"]),
    (["run", "scheduler-duplicates", "--replicas="], ["--replicas", "integer"]),
    (["run", "scheduler-duplicates", "--scale-to", "3", "--scale-at", "50"], ["--scale-at"]),
    (["run", "scheduler-duplicates", "--platform", "mars"], ["platform", "mars"]),
    (["run", "scheduler-duplicates", "--seed", "abc"], ["seed"]),
])
def test_bad_input_is_one_line_and_exit_2(scalelab_here: Any, tmp_path: Path, args: list[str],
                                          words: list[str]) -> None:
    assert_refused(scalelab_here(*args), *words)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; see the file test below")
def test_unwritable_results_directory(scalelab: Any, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert_refused(scalelab("run", "scheduler-duplicates", "--results", str(locked / "r")),
                   "not writable")


def test_results_path_that_is_a_file(scalelab: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_refused(scalelab("run", "scheduler-duplicates", "--results", str(blocker / "r")),
                   "results directory", "not writable")


def test_no_redis_server_obtainable(scalelab: Any, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALELAB_REDIS_SERVER", str(tmp_path / "no-such-redis-server"))
    r = scalelab("run", "scheduler-duplicates", "--duration", "2")
    assert_refused(r, "no redis-server obtainable", "SCALELAB_REDIS_SERVER")
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_ledger_port_already_in_use(scalelab: Any, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = scalelab("run", "scheduler-duplicates", "--duration", "2",
                     "--ledger-port", str(port))
    assert_refused(r, f"port {port}", "already in use")
    assert not any((tmp_path / "results").iterdir()), "a run that never ran leaves no directory"


@pytest.mark.parametrize("port", ["80", "70000", "-1"])
def test_a_ledger_port_out_of_range(scalelab_here: Any, port: str) -> None:
    assert_refused(scalelab_here("run", "scheduler-duplicates", f"--ledger-port={port}"),
                   "--ledger-port")


def test_missing_kubeconfig_for_the_kubernetes_platform(scalelab_here: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    r = scalelab_here("run", "scheduler-duplicates", "--platform", "kubernetes")
    assert_refused(r, "kubeconfig")


def test_unknown_kube_context(scalelab: Any, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: other\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {}}]\n"
        "contexts: [{name: other, context: {cluster: c, user: u}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    r = scalelab("run", "scheduler-duplicates", "--platform", "kubernetes", "--context", "nope")
    assert_refused(r, "nope")
    # the context exists but its cluster is unreachable (a closed loopback port)
    r = scalelab("run", "scheduler-duplicates", "--platform", "kubernetes", "--context", "other")
    assert_refused(r, "unreachable")
