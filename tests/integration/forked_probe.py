"""``python -m tests.integration.forked_probe OUT``: what a forked instance finds itself to
be (pid, group, session, its collector's state), written to OUT; then it waits for a
signal, as an instance does."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys


def main() -> None:
    state = {"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0),
             "gc_enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
             "instance": os.environ.get("SCALELAB_INSTANCE", "")}
    with open(sys.argv[1] + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    signal.pause()


if __name__ == "__main__":
    main()
