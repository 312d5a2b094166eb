"""The platforms the lab runs on, by name: each a factory and the options only it takes.

A new platform registers here and passes the platform behaviour suite
(``tests/platform``). Platform-only options (the local ledger's port, the kube
context) belong to their platform: the CLI offers them, and refuses one given to
another platform; nothing else in the lab knows them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from chaos.platform import Platform, PlatformError

PlatformFactory = Callable[[Path], Platform]  # the run's log directory -> a platform


@dataclass(frozen=True)
class PlatformEntry:
    """How to make a platform, and what may be asked of it."""

    name: str
    help: str
    options: tuple[click.Option, ...]
    make: Callable[[Path, Mapping[str, Any]], Platform]  # (log directory, its options)
    parallel_runs: bool = True  # several runs may use it at once (each has its own lab)

    def factory(self, options: Mapping[str, Any]) -> PlatformFactory:
        return lambda workdir: self.make(workdir, options)


def _local(workdir: Path, options: Mapping[str, Any]) -> Platform:
    from chaos.local import LocalPlatform

    return LocalPlatform(workdir, ledger_port=options.get("ledger_port"),
                         fork_server=options.get("fork_server", True) is not False)


def _kubernetes(workdir: Path, options: Mapping[str, Any]) -> Platform:
    from chaos.kubernetes import KubernetesPlatform

    return KubernetesPlatform(context=options.get("context") or "kind-scalelab", logs=workdir)


PLATFORMS: dict[str, PlatformEntry] = {
    entry.name: entry for entry in (
        PlatformEntry(
            "local", "real process groups on this machine (no cluster)",
            (click.Option(["--ledger-port"], type=click.IntRange(1024, 65535), default=None,
                          help="local: the ledger Redis listens here (watch it with "
                               "redis-cli)"),
             click.Option(["--fork-server/--no-fork-server"], default=None,
                          help="local: fork instances from one pre-imported parent (the "
                               "default) or exec each one")),
            _local),
        PlatformEntry(
            "kubernetes", "Deployments on a cluster, through your kubeconfig",
            (click.Option(["--context"], default=None,
                          help="kubernetes: the kube context [default: kind-scalelab]"),),
            _kubernetes,
            # Runs share the cluster's Deployments, settings and ledger: one at a time.
            parallel_runs=False),
    )
}


def platform_options() -> list[click.Option]:
    """Every platform's own options, for a command that can run on any of them."""
    return [option for entry in PLATFORMS.values() for option in entry.options]


def choose(name: str, given: Mapping[str, Any]) -> tuple[PlatformEntry, dict[str, Any]]:
    """The platform and its options; an option of another platform is refused."""
    entry = PLATFORMS.get(name)
    if entry is None:
        raise PlatformError(f"unknown platform {name!r} (known: {', '.join(PLATFORMS)})")
    mine = {o.name for o in entry.options}
    for other in PLATFORMS.values():
        for option in other.options:
            if option.name not in mine and given.get(str(option.name)) is not None:
                raise PlatformError(f"{option.opts[0]} applies to the {other.name} platform "
                                    f"only, not {name}")
    return entry, {k: v for k, v in given.items() if k in mine and v is not None}
