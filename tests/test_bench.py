"""The benchmark script, run with tiny sizes so that it keeps working; its numbers are not
checked here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "indicators.py"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, check=False
    )


def test_bench_writes_report(tmp_path):
    output = tmp_path / "BENCHMARKS.md"
    result = run_bench(
        "--bars",
        "2000",
        "--repeat",
        "1",
        "--scan-bars",
        "1000",
        "--takt-dir",
        str(tmp_path / "no-takt"),
        "--output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    for heading in ("## Indicators", "## Streaming", "## Consensus", "## Pattern search"):
        assert heading in text
    assert "| rsi(14) |" in text
    assert "ta-lib-takt: not installed" in text


def test_takt_worker_rejects_official_talib(tmp_path):
    # A folder without ta-lib-takt: the child imports the official talib and must reject it.
    result = run_bench("--takt-worker", "--takt-dir", str(tmp_path), "--bars", "100")
    assert result.returncode != 0
    assert "not from ta-lib-takt" in result.stderr
