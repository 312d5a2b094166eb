"""``scalelab serve``: a read-only browser over a results directory (runs, suites, timelines)."""

from experiments.web.app import create_app

__all__ = ["create_app"]
