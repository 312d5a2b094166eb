"""Both platforms implement the whole Platform protocol, with the protocol's signatures."""

from __future__ import annotations

import inspect

import pytest

from chaos.kubernetes import KubernetesPlatform
from chaos.local import LocalPlatform
from chaos.platform import Platform

MEMBERS = [name for name, value in vars(Platform).items()
           if not name.startswith("_") and (callable(value) or isinstance(value, property))]


def test_the_protocol_has_what_the_runner_and_nemesis_use() -> None:
    for name in ("deploy", "instances", "kill", "terminate", "pause", "resume", "scale",
                 "rolling_restart", "broker_outage", "stop_instances", "teardown",
                 "ledger_url", "broker_url", "wait_ready"):
        assert name in MEMBERS, name


@pytest.mark.parametrize("implementation", [LocalPlatform, KubernetesPlatform])
@pytest.mark.parametrize("member", MEMBERS)
def test_every_member_is_implemented_alike(implementation: type, member: str) -> None:
    ours, theirs = getattr(Platform, member), getattr(implementation, member, None)
    assert theirs is not None, f"{implementation.__name__} lacks {member}"
    if isinstance(ours, property):
        assert isinstance(theirs, property), member
        return
    expected = list(inspect.signature(ours).parameters)
    assert list(inspect.signature(theirs).parameters)[:len(expected)] == expected, member
