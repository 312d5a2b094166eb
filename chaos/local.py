"""The local platform: every instance is a real OS process group on this machine.

Two redis-server processes (ledger and broker), N uvicorn API replicas on free
loopback ports, Celery workers and beats. A supervisor thread keeps each
component at its desired replica count, like a ReplicaSet: an instance that dies
(killed by a fault or crashed) is replaced after ``Topology.replace_delay``
seconds by a new instance with a new name. Readiness: an API replica answers
``/healthz`` (asked once it has announced itself in the ledger, at the end of its
lifespan's start); a worker or beat has announced itself in the ledger.

``teardown`` always runs (the runner calls it in ``finally``), and the watchdog
process covers the case where the harness itself is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaos import apscheduler4
from chaos.forkserver import ForkServer, preload_for
from chaos.forkserver import take as prestarted
from chaos.local_faults import InstanceFaults, pool_children
from chaos.platform import COMPONENTS as APP_COMPONENTS
from chaos.platform import Instance, PlatformError, Topology
from chaos.postgres import PostgresServer
from chaos.processes import LAB_TAG, Group, Watchdog, free_port
from chaos.redis_server import MemoryLimit, RedisServer, configure, footprint, kilobytes
from chaos.task_queues import TASK_QUEUES, check_installed, needs_datastore
from services.ledger import Ledger

_POLL = 0.05
_POLL_STARTING = 0.01  # while an instance starts: one ledger read, no request to it yet
COMPONENTS = (*APP_COMPONENTS, *TASK_QUEUES)  # locally also the task queues' workers
KUBERNETES_ONLY = {"cronjob": "a Kubernetes CronJob"}  # components with no local process
_MODULES = {"api": "services.api", "worker": "services.worker", "beat": "services.worker.beat",
            **{c: q.module for c, q in TASK_QUEUES.items()}}  # what each component's instances run


def _side_by_side(*steps: Callable[[], None]) -> None:
    """Run the steps in threads, wait for all; raise the first step's error, if any."""
    errors: list[BaseException] = []

    def run(step: Callable[[], None]) -> None:
        try:
            step()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(step,)) for step in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@dataclass
class _Replica:
    name: str
    component: str
    group: Group
    port: int = 0
    ready: bool = False
    leaving: bool = False  # scaled down or replaced on purpose: do not replace it
    started: float = field(default_factory=time.monotonic)

    def instance(self) -> Instance:
        url = f"http://127.0.0.1:{self.port}" if self.port else ""
        return Instance(self.name, self.component, self.group.pid, url)


class LocalPlatform:
    """Runs a topology as process groups on loopback; see the module docstring."""

    name = "local"

    def __init__(self, workdir: Path | None = None, ledger_port: int | None = None,
                 fork_server: bool = True) -> None:
        # Instances forked by one pre-imported parent (chaos.forkserver): real processes in
        # their own sessions and groups all the same, ready without a second of imports.
        self.fork_server = fork_server
        self._forks: ForkServer | None = None
        self.ledger_port = ledger_port  # fixed, to watch the ledger with redis-cli
        self._own_workdir = workdir is None
        # Absolute: redis-server is started inside its data directory and given its path.
        self.workdir = (workdir or Path(tempfile.mkdtemp(prefix="scalelab-"))).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.topology = Topology(replicas={})
        self._desired: dict[str, int] = dict.fromkeys(COMPONENTS, 0)
        self._replicas: list[_Replica] = []
        self._pending: dict[str, list[float]] = {c: [] for c in COMPONENTS}  # replacement due times
        self._serial: dict[str, int] = dict.fromkeys(COMPONENTS, 0)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._watchdog: Watchdog | None = None
        self.ledger_server: RedisServer | None = None
        self.broker_server: RedisServer | None = None
        self._instance_faults: InstanceFaults | None = None  # proxies, clocks (opt-in)
        self.datastore_server: PostgresServer | None = None  # PostgreSQL, for apscheduler4
        self._apscheduler4: Path | None = None  # where APScheduler 4 is installed apart
        self._ledger: Ledger | None = None
        self._http = httpx.Client(timeout=0.5)
        # Every process of this lab carries the tag, so orphan checks can find them.
        self.tag = os.environ.get(LAB_TAG) or uuid.uuid4().hex
        self.exits: list[tuple[str, int | None]] = []  # (instance, returncode) of every exit
        self.as_run: dict[str, Any] = {}  # how the last deployed topology really runs

    # --- Platform protocol ---------------------------------------------------------------
    @property
    def ledger_url(self) -> str:
        if self.ledger_server is None:
            raise PlatformError("the lab is not deployed")
        return self.ledger_server.url

    @property
    def broker_url(self) -> str:
        if self.broker_server is None:
            raise PlatformError("the lab is not deployed")
        return self.broker_server.url

    def deploy(self, topology: Topology) -> None:
        for component, what in KUBERNETES_ONLY.items():
            if topology.count(component):
                raise PlatformError(f"{what} needs the kubernetes platform (--platform "
                                    "kubernetes, after make cluster-up); the local platform "
                                    "has none")
        self.topology = topology
        self.as_run = {}
        memory = MemoryLimit(topology.settings)
        deployed = [c for c in COMPONENTS if topology.count(c)]
        check_installed(deployed)
        if topology.settings.get("scheduler_library") == "apscheduler4":
            self._apscheduler4 = apscheduler4.ensure_installed()
        self._watchdog = Watchdog(self.tag)
        forks = self.start_fork_server([c for c in COMPONENTS if topology.count(c)])
        if forks is not None:
            self._watchdog.watch(forks.pid)
        self.ledger_server = RedisServer("ledger", self.workdir, self._watchdog,
                                         port=self.ledger_port)
        self.broker_server = RedisServer("broker", self.workdir, self._watchdog,
                                         config=memory.startup_args())
        _side_by_side(self.ledger_server.start, self.broker_server.start)
        broker = self.broker_server
        self._instance_faults = InstanceFaults(self.workdir, topology.settings,
                                               lambda: ("127.0.0.1", broker.port))
        if self._apscheduler4 is not None or needs_datastore(deployed):
            self.datastore_server = PostgresServer(self.workdir, self._watchdog)
            self.datastore_server.start()
        self._ledger = Ledger.from_url(self.ledger_server.url)
        with self._lock:
            for component in COMPONENTS:
                self._desired[component] = topology.count(component)
        self._supervisor = threading.Thread(target=self._supervise, name="replicaset",
                                            daemon=True)
        self._supervisor.start()
        for component in COMPONENTS:
            self.wait_ready(component, topology.count(component), timeout=60)
        if memory.relative:
            self._limit_broker(memory)

    def _limit_broker(self, memory: MemoryLimit) -> None:
        """The broker's limit as a margin over its footprint with the lab connected; kept
        as its start arguments, so a broker outage brings it back with the same limit."""
        broker = self.broker_server
        assert broker is not None
        config = memory.config(footprint(broker.url))
        if not configure(broker.url, config):
            raise PlatformError(f"cannot configure the broker: unreachable at {broker.url}")
        broker.config = [arg for key, value in config.items() for arg in (f"--{key}", value)]
        self.as_run["broker_maxmemory"] = kilobytes(int(config["maxmemory"]))

    def start_fork_server(self, components: list[str]) -> ForkServer | None:
        """Start the fork server, preloading what ``components`` import, unless it runs
        already or this platform execs its instances. ``deploy`` calls it; a harness may
        call it earlier, so the preload overlaps its own preparations."""
        if self.fork_server and self._forks is None:
            self._forks = prestarted() or ForkServer({**os.environ, LAB_TAG: self.tag},
                                                      preload_for(components))
        return self._forks

    def instances(self, component: str) -> list[Instance]:
        with self._lock:
            return [r.instance() for r in self._replicas
                    if r.component == component and r.ready and not r.leaving]

    def scale(self, component: str, replicas: int) -> None:
        with self._lock:
            self._desired[component] = replicas

    def wait_ready(self, component: str, replicas: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.instances(component)) < replicas:
            if time.monotonic() > deadline:
                raise PlatformError(f"{replicas} {component} replica(s) not ready after "
                                    f"{timeout:.0f}s; last log: {self._last_log(component)}")
            if self._stop.is_set():
                raise PlatformError("the platform is shutting down")
            time.sleep(_POLL_STARTING)

    def kill(self, instance: Instance) -> None:
        self._replica(instance).group.kill()

    def terminate(self, instance: Instance, grace: float | None = None) -> None:
        replica = self._replica(instance)
        grace = self.topology.grace if grace is None else grace
        replica.group.signal_group(signal.SIGCONT)
        replica.group.signal_main(signal.SIGTERM)

        def escalate() -> None:
            deadline = time.monotonic() + grace
            while replica.group.alive() and time.monotonic() < deadline:
                time.sleep(_POLL)
            replica.group.kill()

        threading.Thread(target=escalate, name=f"grace-{instance.name}", daemon=True).start()

    def restart_in_place(self, instance: Instance) -> None:
        replica = self._replica(instance)
        with self._lock:
            replica.group.kill()
            replica.group.reap(timeout=5)
            self._launch(replica.component, replica.name, replica)

    def pause(self, instance: Instance) -> None:
        self._replica(instance).group.signal_group(signal.SIGSTOP)

    def resume(self, instance: Instance) -> None:
        self._replica(instance).group.signal_group(signal.SIGCONT)

    def rolling_restart(self, component: str) -> None:
        """Surge one new instance, wait for it, then terminate one old one; repeat.

        As in a Deployment's rolling update, an old instance serves until it is the
        one being terminated, so it still has work in flight when its grace runs out.
        """
        for old in self.instances(component):
            with self._lock:
                self._desired[component] += 1
                surge = self._desired[component]
            self.wait_ready(component, surge, timeout=60)
            with self._lock:  # together, so the supervisor never sees one too many
                self._replica(old).leaving = True
                self._desired[component] -= 1
            self._retire(self._replica(old))

    def broker_outage(self, seconds: float) -> None:
        if self.broker_server is None:
            raise PlatformError("the lab is not deployed")
        self.broker_server.kill()
        time.sleep(seconds)
        self.broker_server.start()

    def datastore_outage(self, seconds: float) -> None:
        """Kill the data store (PostgreSQL) and bring it back, data intact, after ``seconds``."""
        if self.datastore_server is None:
            raise PlatformError("this lab has no data store (only apscheduler4 and "
                                "procrastinate use one)")
        self.datastore_server.kill()
        time.sleep(seconds)
        self.datastore_server.start()

    def partition(self, instance: Instance) -> None:
        """Cut the instance off the broker: its proxy drops open connections, refuses new."""
        self._faults().partition(self._replica(instance).name)

    def heal(self, instance: Instance) -> None:
        # By name: an instance that died while cut off (and was replaced) is healed too.
        self._faults().heal(instance.name)

    def skew(self, instance: Instance, seconds: float) -> None:
        """Offset the instance's wall clock by ``seconds`` (within a second)."""
        self._faults().skew(self._replica(instance).name, seconds)

    def kill_child(self, instance: Instance) -> int:
        """SIGKILL one pool process of a worker (the OOM killer's pick), not the worker."""
        children = pool_children(self._replica(instance).group.pid)
        if not children:
            raise PlatformError(f"{instance.name} has no pool process to kill")
        with contextlib.suppress(ProcessLookupError):
            os.kill(children[0], signal.SIGKILL)
        return children[0]

    def _faults(self) -> InstanceFaults:
        if self._instance_faults is None:
            raise PlatformError("the lab is not deployed")
        return self._instance_faults

    def stop_instances(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        with self._lock:
            replicas, self._replicas = self._replicas, []
        for r in replicas:  # SIGTERM all first, so they shut down in parallel
            if r.group.alive():
                r.group.signal_group(signal.SIGCONT)
                r.group.signal_main(signal.SIGTERM)
        for r in replicas:
            r.group.reap(timeout=self.topology.grace)

    def teardown(self) -> None:
        self.stop_instances()
        if self._forks is not None:
            self._forks.close()
            if self._watchdog is not None:
                self._watchdog.forget(self._forks.pid)
            self._forks = None
        if self._instance_faults is not None:
            self._instance_faults.close()
        if self.datastore_server is not None:
            self.datastore_server.stop()
        for server in (self.broker_server, self.ledger_server):
            if server is not None:
                server.stop()
        if self._ledger is not None:
            self._ledger.client.close()
        self._http.close()
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None

    # --- the harness's access to the ledger ------------------------------------------------
    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise PlatformError("the lab is not deployed")
        return self._ledger

    # --- the ReplicaSet ---------------------------------------------------------------------
    def _replica(self, instance: Instance) -> _Replica:
        with self._lock:
            for r in self._replicas:
                if r.name == instance.name:
                    return r
        raise PlatformError(f"no such instance: {instance.name}")

    def _last_log(self, component: str) -> str:
        with self._lock:
            mine = [r for r in self._replicas if r.component == component]
        logs = sorted(self.workdir.glob(f"{component}-*.log"), key=lambda p: p.stat().st_mtime)
        if mine:
            return mine[-1].group.tail(3) or "(empty)"
        if logs:
            return " | ".join(logs[-1].read_text(errors="replace").strip().splitlines()[-3:])
        return "(none)"

    def _retire(self, replica: _Replica) -> None:
        replica.leaving = True
        replica.group.stop(self.topology.grace)

    def _start(self, component: str, count: int) -> None:
        """Start ``count`` new replicas side by side (a fork server forks one while the
        harness asks for the next); they join the ReplicaSet in the order of their names."""
        names = []
        for _ in range(count):
            self._serial[component] += 1
            names.append(f"{component}-{self._serial[component]}")
        started: dict[str, _Replica | BaseException] = {}

        def start(name: str) -> None:
            try:
                group, port = self._spawn(component, name)
                started[name] = _Replica(name, component, group, port)
            except BaseException as exc:  # raised below, after the others are kept
                started[name] = exc

        threads = [threading.Thread(target=start, args=(n,), name=f"start-{n}") for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = [r for r in started.values() if isinstance(r, BaseException)]
        self._replicas.extend(r for n in names if isinstance(r := started[n], _Replica))
        if failed:
            raise failed[0]

    def _launch(self, component: str, name: str, in_place: _Replica) -> None:
        """Start ``in_place``'s processes again."""
        group, port = self._spawn(component, name)
        in_place.group, in_place.port, in_place.ready = group, port, False
        in_place.started = time.monotonic()

    def _spawn(self, component: str, name: str) -> tuple[Group, int]:
        """Start an instance's processes; its group and (an API replica's) port."""
        env = dict(os.environ)
        env.update(self.topology.environment())
        env.update({
            "SCALELAB_INSTANCE": name,
            "SCALELAB_COMPONENT": component,
            "SCALELAB_LEDGER_URL": self.ledger_url,
            "SCALELAB_BROKER_URL": self.broker_url,
            "PYTHONUNBUFFERED": "1",
        })
        if self._instance_faults is not None:
            env.update(self._instance_faults.environment(name))
        if self.datastore_server is not None:
            env["SCALELAB_DATASTORE_URL"] = self.datastore_server.url
        if component == "api" and self._apscheduler4 is not None:
            env["PYTHONPATH"] = apscheduler4.python_path(self._apscheduler4,
                                                         env.get("PYTHONPATH"))
        port = 0
        module = self.topology.modules.get(component) or _MODULES[component]
        args = [sys.executable, "-m", module]
        if component == "api":
            port = free_port()
            args += ["--host", "127.0.0.1", "--port", str(port)]
        assert self._watchdog is not None
        group = Group(args, env, self.workdir / f"{name}.log", self._watchdog,
                      spawner=self._forks)
        return group, port

    def _is_ready(self, r: _Replica, announced: dict[str, dict[str, object]]) -> bool:
        if r.component == "api":
            if r.name not in announced:
                return False  # its lifespan has not finished starting: nothing listens yet
            try:
                url = f"http://127.0.0.1:{r.port}{self.topology.ready_path}"
                return self._http.get(url).status_code == 200
            except httpx.HTTPError:
                return False
        info = announced.get(r.name)
        return info is not None

    def _supervise(self) -> None:
        starting = True  # deploy has just set what it wants
        while not self._stop.wait(_POLL_STARTING if starting else _POLL):
            try:
                starting = self._reconcile()
            except Exception as exc:  # keep supervising; a broken ledger read is not fatal
                with contextlib.suppress(Exception):
                    sys.stderr.write(f"scalelab: supervisor: {exc}\n")

    def _reconcile(self) -> bool:
        """One round of the ReplicaSet; whether an instance is still starting."""
        now = time.monotonic()
        with self._lock:
            for r in list(self._replicas):
                if not r.group.alive():
                    self._replicas.remove(r)
                    self.exits.append((r.name, r.group.proc.returncode))
                    r.group.reap(timeout=0)
                    if not r.leaving:
                        self._pending[r.component].append(now + self.topology.replace_delay)
            starting = [r for r in self._replicas if not r.ready]
        if starting:
            announced: dict[str, dict[str, object]] = {}
            with contextlib.suppress(Exception):
                announced = self.ledger.instances()
            for r in starting:
                if self._is_ready(r, announced):
                    r.ready = True
        with self._lock:
            for component in COMPONENTS:
                live = [r for r in self._replicas if r.component == component and not r.leaving]
                pending = self._pending[component]
                due = [t for t in pending if t <= now]
                waiting = len(pending) - len(due)
                # start replacements that are due, and new replicas for a scale-up
                want = self._desired[component] - len(live) - waiting
                if want > 0:
                    self._start(component, want)
                self._pending[component] = [t for t in pending if t > now]
                excess = len(live) - self._desired[component]
                if excess > 0:
                    for r in sorted(live, key=lambda r: r.started)[-excess:]:
                        r.leaving = True
                        threading.Thread(target=r.group.stop, args=(self.topology.grace,),
                                         daemon=True).start()
            return any(not r.ready for r in self._replicas)
