"""The command line's options, declared once: what every command that runs experiments
takes (``--seed``, ``--results``, ``--platform`` and each platform's own options), and
an experiment's parameters as ``--flags``.

Only the command line imports click: a ``Param`` (``experiments.params``) and a
``PlatformOption`` (``chaos.platforms``) are plain declarations, made options here and
checked by the same ``Param.check`` whether typed or given as data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from chaos.platforms import PlatformEntry, PlatformOption, choose, listed, platform_options
from experiments.params import Param

F = TypeVar("F", bound=Callable[..., Any])


class _Checked(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A number within bounds, converted by ``Param.check``."""

    def __init__(self, param: Param) -> None:
        self.param = param
        self.name = "integer" if isinstance(param.default, int) else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> Any:
        try:
            return self.param.check(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.param.metavar()


def param_option(p: Param) -> click.Option:
    """An experiment's parameter as its option: bounds, choices and default in ``--help``."""
    if p.is_switch:
        return click.Option([f"{p.flag}/--no-{p.flag[2:]}", p.name], default=p.default,
                            help=p.help, show_default=True)
    kind: click.ParamType  # type: ignore[type-arg,unused-ignore]
    if p.choices:
        kind = click.Choice(p.choices)
    elif isinstance(p.default, int | float):
        kind = _Checked(p)
    else:
        kind = click.STRING
    return click.Option([p.flag, p.name], type=kind, default=p.default, help=p.help,
                        show_default=True)


def _platform_option(o: PlatformOption) -> click.Option:
    if o.kind == "switch":
        return click.Option([f"{o.flag}/--no-{o.flag[2:]}", o.name], default=None, help=o.help)
    kind = click.IntRange(1024, 65535) if o.kind == "port" else click.STRING
    return click.Option([o.flag, o.name], type=kind, default=None, help=o.help)


def run_options() -> list[click.Option]:
    """What every command that runs experiments takes: seed, results, platform and its own."""
    return [
        click.Option(["--seed"], type=int, default=1, show_default=True,
                     help="drives every random choice; recorded"),
        click.Option(["--results"], type=click.Path(path_type=Path), default=Path("results"),
                     show_default=True, help="where run directories go"),
        click.Option(["--platform"], type=click.Choice(listed()), default="local",
                     show_default=True, help="where the instances run"),
        *(_platform_option(o) for o in platform_options()),
    ]


RUN_KEYS = ("seed", "results", "platform", *(o.name for o in platform_options()))


def with_run_options(command: F) -> F:
    """Decorate a click command with ``run_options`` (its callback gets each by name)."""
    # click.option's own way: options gathered on the function, bottom-up
    command.__dict__.setdefault("__click_params__", []).extend(reversed(run_options()))
    return command


def chosen_platform(given: Mapping[str, Any]) -> tuple[PlatformEntry, dict[str, Any]]:
    """The platform and its options from a command's values (refusing another's option)."""
    return choose(given["platform"], {o.name: given.get(o.name) for o in platform_options()})
