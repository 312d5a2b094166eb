"""KubernetesLease (services/api/lease_k8s.py) without a cluster.

The lease talks HTTP by design, so it runs against a tiny in-memory fake of the
Lease API (httpx.MockTransport), with resourceVersion preconditions as the API
server enforces them, and a fake clock.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.lease_k8s import (
    LEASE_NAME,
    LEASE_SECONDS_ANNOTATION,
    KubernetesLease,
    LeaseError,
)

PATH = f"/apis/coordination.k8s.io/v1/namespaces/scalelab/leases/{LEASE_NAME}"


class FakeLeaseAPI:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.tokens: list[str] = []
        self.refuse: int | None = None  # answer every request with this status

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.tokens.append(request.headers["Authorization"])
        if self.refuse:
            return httpx.Response(self.refuse, json={"message": "leases is forbidden"})
        if request.method == "GET":
            assert request.url.path == PATH
            if self.lease is None:
                return httpx.Response(404, json={"message": "not found"})
            return httpx.Response(200, json=self.lease)
        body = json.loads(request.content)
        if request.method == "POST":
            assert request.url.path == PATH.rsplit("/", 1)[0]
            if self.lease is not None:
                return httpx.Response(409, json={"message": "already exists"})
            return self._store(body, 201)
        assert request.method == "PUT" and request.url.path == PATH
        if self.lease is None or body["metadata"].get("resourceVersion") != \
                self.lease["metadata"]["resourceVersion"]:
            return httpx.Response(409, json={"message": "the object has been modified"})
        return self._store(body, 200)

    def _store(self, body: dict[str, Any], status: int) -> httpx.Response:
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.lease = body
        return httpx.Response(status, json=body)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api() -> FakeLeaseAPI:
    return FakeLeaseAPI()


@pytest.fixture
def sa_dir(tmp_path: Path) -> Path:
    (tmp_path / "token").write_text("token-1\n")
    return tmp_path


def candidate(api: FakeLeaseAPI, sa_dir: Path, holder: str, clock: Clock) -> KubernetesLease:
    return KubernetesLease(LEASE_NAME, "scalelab", holder, 3.0,
                           transport=httpx.MockTransport(lambda r: api.handle(r)),
                           service_account_dir=sa_dir,
                           api_server="https://10.96.0.1:443", clock=clock)


def test_first_candidate_creates_the_lease_and_renews_it(api: FakeLeaseAPI, sa_dir: Path) -> None:
    async def go() -> None:
        clock = Clock()
        a = candidate(api, sa_dir, "api-a", clock)
        assert await a.try_acquire() == 0
        assert api.lease is not None
        spec = api.lease["spec"]
        assert spec["holderIdentity"].startswith("api-a_")
        assert spec["leaseDurationSeconds"] == 3 and spec["leaseTransitions"] == 0
        renewed = spec["renewTime"]
        clock.now += 1
        assert await a.try_acquire() == 0  # renewal keeps the term
        assert api.lease["metadata"]["resourceVersion"] == "2"
        assert api.lease["spec"]["renewTime"] >= renewed
        await a.aclose()

    asyncio.run(go())


def test_a_held_lease_is_taken_over_only_once_it_stops_changing(
        api: FakeLeaseAPI, sa_dir: Path) -> None:
    async def go() -> None:
        clock_a, clock_b = Clock(), Clock()
        a, b = candidate(api, sa_dir, "api-a", clock_a), candidate(api, sa_dir, "api-b", clock_b)
        assert await a.try_acquire() == 0
        assert await b.try_acquire() is None
        clock_b.now += 2.9
        assert await b.try_acquire() is None  # unchanged for less than a lease
        assert await a.try_acquire() == 0  # the leader renews: b's observation restarts
        clock_b.now += 2.9
        assert await b.try_acquire() is None  # b sees the renewal: it starts counting again
        clock_b.now += 2.9
        assert await b.try_acquire() is None
        clock_b.now += 0.2  # 3.1 s since b last saw a change: a is gone
        assert await b.try_acquire() == 1  # a new term, a higher fencing token
        assert api.lease is not None and api.lease["spec"]["holderIdentity"].startswith("api-b_")
        # the deposed leader learns it on its next call, and never gets a token again
        assert await a.try_acquire() is None
        await a.aclose()
        await b.aclose()

    asyncio.run(go())


def test_a_sub_second_lease_runs_as_asked(api: FakeLeaseAPI, sa_dir: Path) -> None:
    async def go() -> None:
        clock_a, clock_b = Clock(), Clock()
        transport = httpx.MockTransport(lambda r: api.handle(r))
        a, b = (KubernetesLease(LEASE_NAME, "scalelab", name, 0.5, transport=transport,
                                service_account_dir=sa_dir, api_server="https://10.96.0.1:443",
                                clock=clock)
                for name, clock in (("api-a", clock_a), ("api-b", clock_b)))
        assert await a.try_acquire() == 0
        assert api.lease is not None
        # the API's field is whole seconds; the exact lease is in the annotation
        assert api.lease["spec"]["leaseDurationSeconds"] == 1
        assert api.lease["metadata"]["annotations"][LEASE_SECONDS_ANNOTATION] == "0.5"
        assert await b.try_acquire() is None
        clock_b.now += 0.6  # longer than the lease asked for, shorter than its rounding
        assert await b.try_acquire() == 1
        await a.aclose()
        await b.aclose()

    asyncio.run(go())


def test_a_restarted_process_with_the_same_name_starts_a_new_term(
        api: FakeLeaseAPI, sa_dir: Path) -> None:
    async def go() -> None:
        clock = Clock()
        first = candidate(api, sa_dir, "api-a", clock)
        assert await first.try_acquire() == 0
        again = candidate(api, sa_dir, "api-a", clock)  # same pod name, new process
        assert await again.try_acquire() is None
        clock.now += 3.5
        assert await again.try_acquire() == 1

    asyncio.run(go())


def test_losing_a_race_is_none_not_an_error(
        api: FakeLeaseAPI, sa_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        clock = Clock()
        a = candidate(api, sa_dir, "api-a", clock)
        assert await a.try_acquire() == 0
        original = api.handle

        def sneaky(request: httpx.Request) -> httpx.Response:
            if request.method == "PUT":  # someone else wrote between our GET and PUT
                assert api.lease is not None
                api.lease["metadata"]["resourceVersion"] = "999"
            return original(request)

        monkeypatch.setattr(api, "handle", sneaky)
        assert await a.try_acquire() is None
        await a.aclose()

    asyncio.run(go())


def test_aclose_releases_so_a_successor_need_not_wait(api: FakeLeaseAPI, sa_dir: Path) -> None:
    async def go() -> None:
        clock = Clock()
        a, b = candidate(api, sa_dir, "api-a", clock), candidate(api, sa_dir, "api-b", clock)
        assert await a.try_acquire() == 0
        await a.aclose()
        assert api.lease is not None and api.lease["spec"]["holderIdentity"] == ""
        assert await b.try_acquire() == 1
        await b.aclose()

    asyncio.run(go())


def test_the_token_file_is_read_on_every_request(api: FakeLeaseAPI, sa_dir: Path) -> None:
    async def go() -> None:
        a = candidate(api, sa_dir, "api-a", Clock())
        await a.try_acquire()
        (sa_dir / "token").write_text("token-2")  # kubelet rotated it
        await a.try_acquire()
        await a.aclose()

    asyncio.run(go())
    assert api.tokens[0] == "Bearer token-1" and api.tokens[-1] == "Bearer token-2"


def test_a_refusal_is_a_one_line_error(api: FakeLeaseAPI, sa_dir: Path) -> None:
    async def go() -> None:
        api.refuse = 403
        a = candidate(api, sa_dir, "api-a", Clock())
        with pytest.raises(LeaseError, match=r"^cannot read Lease scalelab/scalelab-scheduler: "
                                             r"403 leases is forbidden$"):
            await a.try_acquire()
        await a.aclose()

    asyncio.run(go())


def test_outside_a_pod_it_says_so(sa_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(LeaseError, match="needs to run in a pod"):
        KubernetesLease(LEASE_NAME, "scalelab", "api-a", 3.0, service_account_dir=sa_dir)
