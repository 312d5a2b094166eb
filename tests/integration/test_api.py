"""The API replica's endpoints against real Redis: bounds are 422s, not work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chaos.local import LocalPlatform
from chaos.platform import Topology
from services.ledger import Ledger
from tests.conftest import wait_for


@pytest.fixture
def api(lab_tag: str, tmp_path: Path) -> Iterator[tuple[httpx.Client, Ledger]]:
    """One real API replica (uvicorn) on the local platform, in an open run."""
    platform = LocalPlatform(tmp_path / "lab")
    try:
        platform.deploy(Topology(replicas={"api": 1}, settings={"scheduler_enabled": False}))
        ledger = platform.ledger
        ledger.begin_run("api-test")
        (instance,) = platform.instances("api")
        with httpx.Client(base_url=instance.url, timeout=5) as client:
            yield client, ledger
    finally:
        platform.teardown()


@pytest.mark.parametrize(("path", "params"), [
    ("/work/background", {"work_id": "w1", "seconds": "-1"}),
    ("/work/background", {"work_id": "w1", "seconds": "61"}),
    ("/work/background", {"work_id": "w1", "seconds": "nan"}),
    ("/work/background", {"work_id": "", "seconds": "1"}),
    ("/work/background", {"work_id": "x" * 129, "seconds": "1"}),
    ("/work/background", {"work_id": "tab\there", "seconds": "1"}),
    ("/work/background", {"seconds": "1"}),
    ("/work/celery", {"work_id": "w1", "seconds": "1e9"}),
    ("/block", {"seconds": "31"}),
    ("/block", {"seconds": "-0.1"}),
])
def test_out_of_bounds_is_422_and_no_work(api: tuple[httpx.Client, Ledger], path: str,
                                          params: dict[str, str]) -> None:
    client, ledger = api
    assert client.post(path, params=params).status_code == 422
    assert list(ledger.history("api-test")) == []


def test_accepted_background_work_is_recorded(api: tuple[httpx.Client, Ledger]) -> None:
    client, ledger = api
    r = client.post("/work/background", params={"work_id": "w-ok", "seconds": "0"})
    assert r.status_code == 202 and r.json() == {"work_id": "w-ok", "instance": "api-1"}
    kinds = wait_for(lambda: [e.kind for e in ledger.history("api-test")] == ["start", "finish"],
                     5, "start and finish of w-ok")
    assert kinds
    assert client.get("/healthz").json() == {"status": "ok", "instance": "api-1"}
