"""The `quorum` command as a user runs it: `up`, `analyze` (table and JSON), `models`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import smollm2_entry, write_config
from tests.quorum_process import run_quorum as _quorum

pytestmark = pytest.mark.model

UP_TIMEOUT_S = 180
REFERENCE_CONFIG = Path(__file__).resolve().parent.parent / "server/configs/reference.yaml"


@pytest.fixture(scope="module")
def running_up(tmp_path_factory, lake_with_bars, smollm2_path):
    directory = tmp_path_factory.mktemp("cli")
    lake = directory / "lake"
    shutil.copytree(lake_with_bars, lake)
    config = write_config(directory, lake, [smollm2_entry(smollm2_path)])
    log_file = open(directory / "up.log", "w")  # noqa: SIM115 - closed after the process
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--config", str(config), "up"],
        stdout=subprocess.PIPE,
        stderr=log_file,
        text=True,
    )
    address = ""
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("coordinator "):
            address = line.split()[1]
            break
    if not address:
        process.kill()
        log_file.close()
        pytest.fail(
            f"quorum up printed no coordinator address: {(directory / 'up.log').read_text()}"
        )
    yield config, address, lake
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    log_file.close()


def test_analyze_prints_table(running_up):
    config, address, _ = running_up
    completed = _quorum(
        "--config",
        str(config),
        "analyze",
        "--coordinator",
        address,
        "--symbol",
        "BTC",
        "--at",
        "2019-06-03T12:00Z",
        "--context-size",
        "2000",
    )
    assert completed.returncode == 0, completed.stderr
    assert "smollm2-135m" in completed.stdout
    assert "decision" in completed.stdout
    assert "context ready" in completed.stderr


def test_analyze_json_matches_record(running_up):
    config, address, lake = running_up
    completed = _quorum(
        "--config",
        str(config),
        "analyze",
        "--coordinator",
        address,
        "--json",
        "--symbol",
        "ETH",
        "--at",
        "2019-03-01T09:30Z",
        "--context-size",
        "2000",
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["symbol"] == "ETH"
    assert result["decision"]["action"] in ("ACTION_ALERT", "ACTION_INFORM")
    assert result["record_path"].startswith(str(lake))
    assert completed.stderr == ""


def test_analyze_unknown_symbol_exit_status(running_up):
    config, address, _ = running_up
    completed = _quorum(
        "--config",
        str(config),
        "analyze",
        "--coordinator",
        address,
        "--symbol",
        "NOPE",
        "--at",
        "2019-06-03T12:00Z",
    )
    assert completed.returncode == 2
    assert "INVALID_ARGUMENT" in completed.stderr
    assert "NOPE" in completed.stderr


def test_models_lists_health(running_up):
    config, address, _ = running_up
    completed = _quorum("--config", str(config), "models", "--coordinator", address)
    assert completed.returncode == 0, completed.stderr
    row = next(line for line in completed.stdout.splitlines() if "smollm2-135m" in line)
    assert " yes " in row


def test_reference_config_names_missing_files():
    completed = _quorum(
        "--config",
        str(REFERENCE_CONFIG),
        "analyze",
        "--symbol",
        "BTC",
        "--at",
        "2019-06-03T12:00Z",
    )
    assert completed.returncode == 2
    assert "/models/gemma-7b-it.Q8_0.gguf" in completed.stderr
    assert "/models/qwen-2.5b-instruct.Q8_0.gguf" in completed.stderr


def test_ingest_bad_csv_one_line_error(tmp_path):
    csv_file = tmp_path / "bars.csv"
    csv_file.write_text("time,open,high,low,close,volume\n2019-06-03T12:00Z,1,2,0.5,abc,10\n")
    config = write_config(tmp_path, tmp_path / "lake", [smollm2_entry(Path("/absent.gguf"))])
    completed = _quorum(
        "--config", str(config), "ingest", "--csv", str(csv_file), "--symbol", "X", timeout=60
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("quorum ingest: ")
    assert "line 2: column close value 'abc' is not a number" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_killed_up_leaves_no_servers(tmp_path, smollm2_path):
    config = write_config(tmp_path, tmp_path / "lake", [smollm2_entry(smollm2_path)])
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--config", str(config), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("coordinator "), line
    children = _children_of(process.pid)
    assert len(children) == 2
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert alive == []


def _children_of(parent: int) -> list[str]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[1] == str(parent):
            children.append(stat.parent.name)
    return children


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


def test_reference_config_starts_once_files_exist(tmp_path, smollm2_path):
    """The seven-model ensemble starts its coordinator once every GGUF file exists (here each
    is a link to the SmolLM2 file) and lists all seven models, unhealthy without workers."""
    import yaml

    reference = yaml.safe_load(REFERENCE_CONFIG.read_text())
    for model in reference["models"]:
        link = tmp_path / Path(model["path"]).name
        link.symlink_to(smollm2_path)
        model["path"] = str(link)
        # No worker runs: a closed loopback port keeps every call on this machine.
        model["address"] = "127.0.0.1:1"
    reference["data_lake"] = str(tmp_path / "lake")
    # The reference's certificates do not exist here; tests/faults runs TLS.
    for key in ("tls_cert_file", "tls_key_file", "tls_ca_file", "auth_token_file"):
        del reference[key]
    reference["tls_client_auth"] = False
    reference["insecure"] = True
    config = tmp_path / "reference.yaml"
    config.write_text(yaml.safe_dump(reference))
    port_file = tmp_path / "coordinator.port"
    server = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--config", str(config), "serve"]
        + ["--listen", "127.0.0.1:0", "--port-file", str(port_file)],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() and time.monotonic() < deadline:
            assert server.poll() is None, "the coordinator exited"
            time.sleep(0.1)
        address = f"127.0.0.1:{port_file.read_text().strip()}"
        completed = _quorum("--config", str(config), "models", "--coordinator", address)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert completed.returncode == 0, completed.stderr
    listed = [line.split()[0] for line in completed.stdout.splitlines()[1:8]]
    assert listed == [m["name"] for m in reference["models"]]
    assert "UNAVAILABLE" in completed.stdout


def _processes_with(*parts: str) -> list[int]:
    """Pids of the processes whose command line contains every one of `parts`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if all(part in command for part in parts):
            pids.append(int(entry.name))
    return pids


def test_up_stops_when_a_worker_dies(tmp_path, lake_with_bars, smollm2_path):
    config = write_config(tmp_path, lake_with_bars, [smollm2_entry(smollm2_path)])
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--config", str(config), "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not (line := process.stdout.readline()).startswith("Analyze with"):
            assert line, process.stderr.read()
        (worker,) = _processes_with(str(config), " worker ")
        os.kill(worker, signal.SIGKILL)
        status = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert status == 1
    assert "smollm2-135m exited with status -9" in process.stderr.read()
