"""A writer process killed at each step of a record write leaves the old or the new record.

Each case runs a real writer process that sends itself SIGKILL at one point of
ResultStore.write: after the temporary file is written but before its fsync, after the fsync
but before the rename, and after the rename but before the directory fsync.
"""

import signal
import subprocess
import sys
import textwrap

import pytest

from server.result_store import ResultStore

WINDOW_END = 1_559_563_200_000_000_000  # 2019-06-03T12:00:00Z

# The writer replaces one os function with one that kills the process when called.
WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from server import result_store

    lake, action, kill_at = sys.argv[1], sys.argv[2], sys.argv[3]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if kill_at == "before_fsync":
        result_store.os.fsync = die
    elif kill_at == "before_rename":
        result_store.os.replace = die
    elif kill_at == "before_directory_fsync":
        result_store._fsync_directory = die
    record = {
        "request_id": "r1",
        "symbol": "BTC",
        "window_end": WINDOW_END,
        "window_minutes": 60,
        "horizon_minutes": 30,
        "config_fingerprint": "f" * 64,
        "requested_context_size": 25000,
        "volatile_window": False,
        "action": action,
    }
    result_store.ResultStore(lake).write(record)
    """
).replace("WINDOW_END", str(WINDOW_END))


def _write_in_process(lake, action: str, kill_at: str) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", WRITER, str(lake), action, kill_at], check=False, timeout=60
    )
    return completed.returncode


def test_writer_without_crash_exits_zero(tmp_path):
    assert _write_in_process(tmp_path, "inform", "never") == 0


@pytest.mark.parametrize(
    ("kill_at", "expected"),
    [
        ("before_fsync", "inform"),
        ("before_rename", "inform"),
        ("before_directory_fsync", "alert"),
    ],
)
def test_crash_leaves_old_or_new_record(tmp_path, kill_at, expected):
    assert _write_in_process(tmp_path, "inform", "never") == 0
    assert _write_in_process(tmp_path, "alert", kill_at) == -signal.SIGKILL
    records = ResultStore(tmp_path).read("BTC")
    assert records.table.column("action").to_pylist() == [expected]


@pytest.mark.parametrize("kill_at", ["before_fsync", "before_rename"])
def test_crash_leaves_no_readable_partial(tmp_path, kill_at):
    assert _write_in_process(tmp_path, "alert", kill_at) == -signal.SIGKILL
    assert ResultStore(tmp_path).read().table.num_rows == 0


@pytest.mark.parametrize("kill_at", ["before_fsync", "before_rename"])
def test_write_after_crash_succeeds(tmp_path, kill_at):
    assert _write_in_process(tmp_path, "inform", kill_at) == -signal.SIGKILL
    assert _write_in_process(tmp_path, "alert", "never") == 0
    assert ResultStore(tmp_path).read().table.column("action").to_pylist() == ["alert"]
