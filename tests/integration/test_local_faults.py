"""The local platform's partition and clock skew are opt-in per lab.

What each fault does is the platform behaviour suite's (``tests/platform``); here, that a
lab started without them refuses them in one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.local import LocalPlatform
from chaos.platform import PlatformError, Topology

pytestmark = pytest.mark.slow


def test_partition_and_skew_need_an_opted_in_lab(lab_tag: str, tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path / "lab")
    platform.deploy(Topology(replicas={"api": 1}, settings={"scheduler_enabled": False}))
    try:
        api = platform.instances("api")[0]
        with pytest.raises(PlatformError, match="partitionable"):
            platform.partition(api)
        with pytest.raises(PlatformError, match="skewable"):
            platform.skew(api, 1.0)
    finally:
        platform.teardown()
