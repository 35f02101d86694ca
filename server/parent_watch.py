"""Stop a mesh child when the process that started it dies, even by SIGKILL.

The parent puts its pid in QUORUM_PARENT_PID; the child requests SIGTERM from Linux when its
parent dies (PR_SET_PDEATHSIG), then checks that the parent is still the one named, since
it may have died before the request. Other systems, or no variable, skip this.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_PID_ENV = "QUORUM_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def terminate_with_parent() -> None:
    expected = os.environ.pop(PARENT_PID_ENV, "")
    if not expected or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGTERM)
