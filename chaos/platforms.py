"""The platforms the lab runs on, by name: how to make each, its own options, and what it can do.

A new platform registers here and passes the platform behaviour suite
(``tests/platform``). Platform-only options (the local ledger's port, the kube
context) belong to their platform: the command line offers them, and refuses one
given to another platform; nothing else in the lab knows them.

Each platform declares its *capabilities*, as Jepsen offers a fault only where the
system under test supports it: the faults it can do (each ``chaos.faults.Fault``
needs one) and what its instances are (``SERVES``, ``OWN_URL``). A run, a suite or a
matrix asking a platform for a fault it lacks is refused, in one line saying why,
before anything starts; the behaviour suite runs each test where its capability is.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chaos.faults import FAULTS, FaultStep
from chaos.platform import Platform, PlatformError

PlatformFactory = Callable[[Path], Platform]  # the run's log directory -> a platform

# Capabilities besides the faults' own:
SERVES = "serves"  # instances run the lab's services: they do work and write the ledger
OWN_URL = "instance-url"  # an API instance's url reaches that one instance


@dataclass(frozen=True)
class PlatformOption:
    """An option only one platform takes; the command line makes it a ``--flag``."""

    name: str  # its key in the platform's options
    help: str
    kind: Literal["port", "text", "switch"] = "text"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class PlatformEntry:
    """How to make a platform, its options, and what may be asked of it."""

    name: str
    help: str
    options: tuple[PlatformOption, ...]
    make: Callable[[Path, Mapping[str, Any]], Platform]  # (log directory, its options)
    implementation: str  # "module:Class", read by the protocol's contract test
    capabilities: frozenset[str]
    # why it lacks a capability, where there is more to say than that it does
    lacking: Mapping[str, str] = field(default_factory=dict)
    parallel_runs: bool = True  # several runs may use it at once (each has its own lab)
    cluster: bool = False  # runs on a Kubernetes cluster (its ``--context``), not here
    listed: bool = True  # offered by the command line (the in-memory one is for tests)
    # What a harness forked by a suite does first, while it runs one thread (its options).
    prepare: Callable[[Mapping[str, Any]], None] | None = None

    def factory(self, options: Mapping[str, Any]) -> PlatformFactory:
        return lambda workdir: self.make(workdir, options)

    def platform_class(self) -> type:
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    def lacks(self, capability: str) -> str:
        """Why this platform cannot do ``capability`` ("" when it can)."""
        if capability in self.capabilities:
            return ""
        return self.lacking.get(capability) or f"the {self.name} platform has no {capability}"

    def refuse(self, steps: Iterable[FaultStep]) -> None:
        """Raise ``PlatformError`` (one line) for the first fault this platform lacks."""
        for step in steps:
            why = self.lacks(FAULTS[step.action].capability)
            if why:
                raise PlatformError(f"--platform {self.name} cannot do {step.action}: {why}")


def _local(workdir: Path, options: Mapping[str, Any]) -> Platform:
    from chaos.local import LocalPlatform

    return LocalPlatform(workdir, ledger_port=options.get("ledger_port"),
                         fork_server=options.get("fork_server", True) is not False)


def _prepare_local(options: Mapping[str, Any]) -> None:
    """Fork the instances' server from this harness now, before its run starts a thread:
    a harness a suite forked has already imported all that server preloads."""
    import os

    from chaos.forkserver import prestart

    if options.get("fork_server", True) is not False:
        prestart(dict(os.environ))


def _kubernetes(workdir: Path, options: Mapping[str, Any]) -> Platform:
    from chaos.kubernetes import KubernetesPlatform

    return KubernetesPlatform(context=options.get("context") or "kind-scalelab", logs=workdir)


def _stub(workdir: Path, options: Mapping[str, Any]) -> Platform:
    from chaos.stub import StubPlatform

    return StubPlatform()


_PROCESS_FAULTS = frozenset({"kill", "terminate", "restart-in-place", "pause", "scale",
                             "rolling-restart", "broker-outage", "partition", "clock-skew",
                             "kill-child"})
# What Kubernetes does to pods (chaos.cluster_faults): a cluster's, refused elsewhere.
_CLUSTER_FAULTS = frozenset({"rollout", "pod-delete", "force-delete", "drain",
                             "scale-in-by-cost", "watch-restarts"})
_NO_CLUSTER = "it needs Kubernetes (--platform kubernetes): {} has no API server, kubelet or pods"

PLATFORMS: dict[str, PlatformEntry] = {
    entry.name: entry for entry in (
        PlatformEntry(
            "local", "real process groups on this machine (no cluster)",
            (PlatformOption("ledger_port", "local: the ledger Redis listens here (watch it "
                                           "with redis-cli)", "port"),
             PlatformOption("fork_server", "local: fork instances from one pre-imported "
                                           "parent (the default) or exec each one", "switch")),
            _local, "chaos.local:LocalPlatform",
            _PROCESS_FAULTS | {"datastore-outage", SERVES, OWN_URL}, prepare=_prepare_local,
            lacking=dict.fromkeys(_CLUSTER_FAULTS, _NO_CLUSTER.format("this machine"))),
        PlatformEntry(
            "kubernetes", "Deployments on a cluster, through your kubeconfig",
            (PlatformOption("context", "kubernetes: the kube context [default: "
                                       "kind-scalelab]"),),
            _kubernetes, "chaos.kubernetes:KubernetesPlatform",
            _PROCESS_FAULTS | _CLUSTER_FAULTS | {SERVES},
            lacking={"datastore-outage": "the kubernetes lab has no PostgreSQL Deployment "
                                         "(k8s/base has none yet)",
                     OWN_URL: "an API instance's URL is the Service's, not one pod's"},
            # Runs share the cluster's Deployments, settings and ledger: one at a time.
            parallel_runs=False, cluster=True),
        PlatformEntry(
            "stub", "in memory, no processes (unit tests of the nemesis and the runner)",
            (), _stub, "chaos.stub:StubPlatform",
            _PROCESS_FAULTS | {"datastore-outage"},
            lacking={SERVES: "the stub's instances are names: they run nothing",
                     OWN_URL: "the stub's instances have no URL",
                     **dict.fromkeys(_CLUSTER_FAULTS, _NO_CLUSTER.format("the stub"))},
            listed=False),
    )
}


def listed() -> list[str]:
    """The platforms the command line offers."""
    return [name for name, entry in PLATFORMS.items() if entry.listed]


def platform_options() -> list[PlatformOption]:
    """Every platform's own options, for a command that can run on any of them."""
    return [option for entry in PLATFORMS.values() for option in entry.options]


def choose(name: str, given: Mapping[str, Any]) -> tuple[PlatformEntry, dict[str, Any]]:
    """The platform and its options; an option of another platform is refused."""
    entry = PLATFORMS.get(name)
    if entry is None:
        raise PlatformError(f"unknown platform {name!r} (known: {', '.join(listed())})")
    mine = {o.name for o in entry.options}
    for other in PLATFORMS.values():
        for option in other.options:
            if option.name not in mine and given.get(option.name) is not None:
                raise PlatformError(f"{option.flag} applies to the {other.name} platform "
                                    f"only, not {name}")
    return entry, {k: v for k, v in given.items() if k in mine and v is not None}
