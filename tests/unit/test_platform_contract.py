"""Every registered platform implements the Platform protocol with its signatures, and
declares capabilities the lab knows; every fault has a behaviour test."""

from __future__ import annotations

import inspect

import pytest

from chaos.faults import FAULTS
from chaos.platform import Platform
from chaos.platforms import OWN_URL, PLATFORMS, SERVES


def members(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))]


MEMBERS = members(Platform)
# Faults whose behaviour needs a lab the behaviour suite does not deploy, and where it is tested.
TESTED_ELSEWHERE = {"datastore-outage": "tests/integration/test_postgres.py"}


def test_the_protocol_has_what_the_runner_and_nemesis_use() -> None:
    for name in ("deploy", "instances", "kill", "terminate", "pause", "resume", "scale",
                 "rolling_restart", "broker_outage", "stop_instances", "teardown",
                 "ledger_url", "broker_url", "wait_ready"):
        assert name in MEMBERS, name


def implemented_alike(implementation: type, protocol: type, member: str) -> None:
    ours, theirs = getattr(protocol, member), getattr(implementation, member, None)
    assert theirs is not None, f"{implementation.__name__} lacks {member}"
    if isinstance(ours, property):
        assert isinstance(theirs, property), member
        return
    expected = list(inspect.signature(ours).parameters)
    assert list(inspect.signature(theirs).parameters)[:len(expected)] == expected, member


@pytest.mark.parametrize("platform", list(PLATFORMS))
@pytest.mark.parametrize("member", MEMBERS)
def test_every_member_is_implemented_alike(platform: str, member: str) -> None:
    implemented_alike(PLATFORMS[platform].platform_class(), Platform, member)


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_a_fault_beyond_the_protocol_is_implemented_where_it_is_declared(platform: str,
                                                                         ) -> None:
    entry = PLATFORMS[platform]
    for fault in FAULTS.values():
        if fault.protocol is not None and not entry.lacks(fault.capability):
            for member in members(fault.protocol):
                implemented_alike(entry.platform_class(), fault.protocol, member)


@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_a_platform_declares_only_capabilities_the_lab_knows(platform: str) -> None:
    entry = PLATFORMS[platform]
    known = {f.capability for f in FAULTS.values()} | {SERVES, OWN_URL}
    assert entry.capabilities <= known, entry.capabilities - known
    assert entry.platform_class().name == platform
    for capability in known - entry.capabilities:  # each lack said in one line
        assert entry.lacks(capability) and "\n" not in entry.lacks(capability)


def test_every_fault_has_a_behaviour_test() -> None:
    from tests.platform import test_behaviour

    needed = {capability for value in vars(test_behaviour).values()
              for mark in getattr(value, "pytestmark", []) if mark.name == "needs"
              for capability in mark.args}
    for fault in FAULTS.values():
        assert fault.capability in needed or fault.name in TESTED_ELSEWHERE, fault.name
