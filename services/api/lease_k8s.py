"""Scheduler leadership through a ``coordination.k8s.io/v1`` Lease, from inside a pod.

The API replicas run on Kubernetes with a service account allowed to create
Leases and to get/update the one named ``scalelab-scheduler`` (k8s/base/rbac.yaml).
This module talks to the API server with plain ``httpx`` (only chaos/kubernetes/api.py
may import the kubernetes client): the pod's service-account token and CA, and
KUBERNETES_SERVICE_HOST/PORT, which kubelet sets in every container.

The algorithm is the one of client-go's leader election, reduced to one call:

- Every write carries the Lease's ``resourceVersion``, so of two replicas racing
  for the same record exactly one wins (the other gets 409 Conflict).
- Expiry is judged by *observation*, not by comparing clocks: a holder's lease
  has run out when its record has not changed for ``leaseDurationSeconds`` as
  measured on our own monotonic clock since we first saw that record. A replica
  that has just started must therefore wait a full lease before taking over.
- The fencing token is ``spec.leaseTransitions``, incremented by every change of
  holder, so a deposed leader's token is always lower than its successor's.
- The holder identity is the instance name plus a per-process nonce: a container
  restarted in the same pod (same name) starts a new term instead of silently
  continuing the dead process's one.
- ``leaseDurationSeconds`` is a whole number, so a lease shorter than a second (or
  not whole) is written rounded up there, and exactly in the annotation
  ``scalelab.io/lease-seconds``, which the lab's contenders judge expiry by: the
  lease that runs is the one the experiment asked for.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

__all__ = ["LEASE_NAME", "KubernetesLease", "LeaseError"]

log = logging.getLogger("scalelab.lease")

LEASE_NAME = "scalelab-scheduler"  # the name RBAC lets the API replicas get/update
LEASE_SECONDS_ANNOTATION = "scalelab.io/lease-seconds"  # the exact duration (see above)
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class LeaseError(RuntimeError):
    """The API server refused a Lease request for a reason other than a lost race."""


def _micro_time(t: float | None = None) -> str:
    """A MicroTime as the API server writes it."""
    moment = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubernetesLease:
    """A leader lease held in a Kubernetes Lease object (see the module docstring)."""

    def __init__(
        self,
        name: str,
        namespace: str,
        holder: str,
        lease_seconds: float,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        service_account_dir: Path = SERVICE_ACCOUNT_DIR,
        api_server: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.identity = f"{holder}_{secrets.token_hex(4)}"
        self.seconds = float(lease_seconds)
        # leaseDurationSeconds is a whole number of seconds; the annotation is exact.
        self.duration = max(1, math.ceil(lease_seconds))
        self._token_path = service_account_dir / "token"
        self._clock = clock
        if api_server is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise LeaseError("leader_backend=kubernetes needs to run in a pod "
                                 "(KUBERNETES_SERVICE_HOST is not set)")
            api_server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        verify: ssl.SSLContext | bool = True
        if transport is None:
            verify = ssl.create_default_context(cafile=str(service_account_dir / "ca.crt"))
        # Each request must finish well within one renewal period (a third of a lease).
        timeout = httpx.Timeout(min(5.0, max(0.5, lease_seconds / 3)))
        self._http = httpx.AsyncClient(base_url=api_server, verify=verify, timeout=timeout,
                                       transport=transport)
        self._path = (f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._held: dict[str, Any] | None = None  # the Lease as we last wrote it

    def _headers(self) -> dict[str, str]:
        # Read on every request: kubelet rotates the projected token file.
        token = self._token_path.read_text().strip()
        return {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    async def try_acquire(self) -> int | None:
        """Acquire or renew; the fencing token (the Lease's leaseTransitions) if we hold it,
        else None. Raises LeaseError (or httpx's errors) when the API server cannot say."""
        reply = await self._http.get(self._path, headers=self._headers())
        if reply.status_code == 404:
            return await self._create()
        self._check(reply, "read")
        lease: dict[str, Any] = reply.json()
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        transitions = int(spec.get("leaseTransitions") or 0)
        record = (holder, spec.get("renewTime"), transitions)
        now = self._clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        if holder == self.identity:
            return await self._write(lease, transitions, acquire=False)
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        try:
            duration = float(annotations[LEASE_SECONDS_ANNOTATION])
        except (KeyError, ValueError):
            duration = float(spec.get("leaseDurationSeconds") or self.duration)
        if holder and now < self._observed_at + duration:
            self._held = None
            return None  # someone else holds an unexpired lease
        return await self._write(lease, transitions + 1, acquire=True)

    async def aclose(self) -> None:
        """Give up the lease if we hold it (successors need not wait it out), then close."""
        try:
            if self._held is not None:
                lease = self._held
                spec = lease["spec"]
                spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=_micro_time())
                reply = await self._http.put(self._path, json=lease, headers=self._headers())
                if reply.status_code != 200:
                    log.info("lease not released (%s): it will expire", reply.status_code)
        except (httpx.HTTPError, OSError) as exc:
            log.info("lease not released (%s): it will expire", exc)
        finally:
            self._held = None
            await self._http.aclose()

    # --- requests --------------------------------------------------------------------
    async def _create(self) -> int | None:
        now = _micro_time()
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "annotations": {LEASE_SECONDS_ANNOTATION: repr(self.seconds)}},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
        }
        reply = await self._http.post(self._path.rsplit("/", 1)[0], json=body,
                                      headers=self._headers())
        if reply.status_code == 409:  # another replica created it first
            return None
        self._check(reply, "create")
        return self._won(reply.json())

    async def _write(self, lease: dict[str, Any], transitions: int, *, acquire: bool) -> int | None:
        """Renew (or take over) with the resourceVersion we read: None if we lost a race."""
        now = _micro_time()
        spec = dict(lease.get("spec") or {})
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.duration,
                    renewTime=now, leaseTransitions=transitions)
        if acquire:
            spec["acquireTime"] = now
        metadata = dict(lease.get("metadata") or {})  # keeps resourceVersion: the precondition
        metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                   LEASE_SECONDS_ANNOTATION: repr(self.seconds)}
        body = {**lease, "metadata": metadata, "spec": spec}
        reply = await self._http.put(self._path, json=body, headers=self._headers())
        if reply.status_code == 409:
            self._held = None
            return None
        self._check(reply, "update")
        return self._won(reply.json())

    def _won(self, lease: dict[str, Any]) -> int:
        spec = lease.get("spec") or {}
        self._held = lease
        self._observed = (spec.get("holderIdentity") or "", spec.get("renewTime"),
                          int(spec.get("leaseTransitions") or 0))
        self._observed_at = self._clock()
        return int(spec.get("leaseTransitions") or 0)

    def _check(self, reply: httpx.Response, verb: str) -> None:
        if reply.is_success:
            return
        self._held = None
        try:
            message = str(reply.json().get("message", ""))
        except ValueError:
            message = reply.text[:200]
        raise LeaseError(f"cannot {verb} Lease {self.namespace}/{self.name}: "
                         f"{reply.status_code} {message}")
