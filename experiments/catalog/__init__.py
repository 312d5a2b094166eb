"""The catalogue: every experiment the lab runs, by CLI name."""

from __future__ import annotations

from experiments.catalog import scheduler_duplicates
from experiments.model import BadInput, ExperimentSpec

CATALOG: dict[str, ExperimentSpec] = {
    spec.name: spec
    for spec in (
        scheduler_duplicates.SPEC,
    )
}


def get(name: str) -> ExperimentSpec:
    try:
        return CATALOG[name]
    except KeyError:
        raise BadInput(f"unknown experiment {name!r} (known: {', '.join(CATALOG)})") from None


__all__ = ["CATALOG", "get"]
