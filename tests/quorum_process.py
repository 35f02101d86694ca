"""Run the real `quorum` command line as a separate process."""

from __future__ import annotations

import subprocess
import sys


def run_quorum(*arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
