"""A running mesh as an operator sees it: the real grpcurl binary against the coordinator and
the worker, /metrics over HTTP, JSON log lines, and a worker killed with SIGKILL.

Every process is real: a SmolLM2 worker and the coordinator, started by LocalMesh on
127.0.0.1 with `--metrics-port 0 --log-format json`.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quorum.v1 import ensemble_pb2, ensemble_pb2_grpc
from server import config as config_module
from server.mesh import LocalMesh
from tests.conftest import WINDOW_END, smollm2_entry, write_config

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
GRPCURL = Path(sys.executable).parent / "grpcurl"
ANALYZE_BODY = json.dumps(
    {"symbol": "BTC", "window_end": WINDOW_END, "window_minutes": 60, "context_size": 1000}
)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, lake_with_bars, smollm2_path):
    directory = tmp_path_factory.mktemp("operations")
    lake = directory / "lake"
    shutil.copytree(lake_with_bars, lake)
    entry = smollm2_entry(smollm2_path) | {"max_tokens": 96}
    path = write_config(directory, lake, [entry])
    running = LocalMesh(config_module.load(path), path, log_format="json", metrics_port=0)
    running.start()
    yield running
    running.stop()


def _worker(mesh: LocalMesh):
    return next(process for process in mesh.processes if process.name == MODEL)


def _grpcurl(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRPCURL), *arguments], capture_output=True, text=True, timeout=600, check=False
    )


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _log_lines(path: Path) -> list[dict]:
    lines = path.read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture(scope="module")
def grpcurl_analyze(mesh):
    return _grpcurl("-plaintext", "-d", ANALYZE_BODY, mesh.coordinator.address,
                    "quorum.v1.Ensemble/Analyze")  # fmt: skip


def test_grpcurl_list_coordinator(mesh):
    listed = _grpcurl("-plaintext", mesh.coordinator.address, "list")
    services = set(listed.stdout.split())
    assert listed.returncode == 0, listed.stderr
    assert "quorum.v1.Ensemble" in services
    assert "grpc.health.v1.Health" in services
    assert "grpc.reflection.v1alpha.ServerReflection" in services


def test_grpcurl_list_worker(mesh):
    listed = _grpcurl("-plaintext", _worker(mesh).address, "list")
    services = set(listed.stdout.split())
    assert listed.returncode == 0, listed.stderr
    assert "quorum.v1.Inference" in services
    assert "grpc.health.v1.Health" in services


def test_grpcurl_describe_ensemble(mesh):
    described = _grpcurl("-plaintext", mesh.coordinator.address, "describe", "quorum.v1.Ensemble")
    assert described.returncode == 0, described.stderr
    assert "rpc Analyze ( .quorum.v1.AnalyzeRequest )" in described.stdout


def test_grpcurl_describe_inference(mesh):
    described = _grpcurl("-plaintext", _worker(mesh).address, "describe", "quorum.v1.Inference")
    assert described.returncode == 0, described.stderr
    assert "rpc Generate ( .quorum.v1.GenerateRequest ) returns ( stream" in described.stdout


def test_grpcurl_health_check(mesh):
    checked = _grpcurl("-plaintext", mesh.coordinator.address, "grpc.health.v1.Health/Check")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {"status": "SERVING"}


def test_grpcurl_analyze_json(grpcurl_analyze):
    assert grpcurl_analyze.returncode == 0, grpcurl_analyze.stderr
    result = json.loads(grpcurl_analyze.stdout)
    assert result["symbol"] == "BTC"
    assert result["window_end"] == WINDOW_END
    assert result["verdicts"][0]["model"] == MODEL
    assert result["decision"]["action"] in ("ACTION_ALERT", "ACTION_INFORM")


def test_grpcurl_invalid_argument(mesh):
    body = json.dumps({"symbol": "NOPE", "window_end": WINDOW_END})
    called = _grpcurl(
        "-plaintext", "-d", body, mesh.coordinator.address, "quorum.v1.Ensemble/Analyze"
    )
    assert called.returncode != 0
    assert "Code: InvalidArgument" in called.stderr
    assert "NOPE" in called.stderr


def test_metrics_urls_reported(mesh):
    urls = mesh.metrics_urls()
    assert list(urls) == ["coordinator", MODEL]
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values())


def test_metrics_http_after_cycle(mesh, grpcurl_analyze):
    samples = _scrape(mesh.metrics_urls()["coordinator"])
    count = samples[
        ("finance_ensemble_processing_seconds_count", (("context_size", "1k"), ("symbol", "BTC")))
    ]
    handled = samples[
        (
            "grpc_server_handled_total",
            (
                ("grpc_code", "OK"),
                ("grpc_method", "Analyze"),
                ("grpc_service", "quorum.v1.Ensemble"),
                ("grpc_type", "unary"),
            ),
        )
    ]
    assert count == 1.0
    assert handled == 1.0


def test_worker_metrics_http_after_cycle(mesh, grpcurl_analyze):
    samples = _scrape(mesh.metrics_urls()[MODEL])
    memory = samples[("finance_ensemble_worker_resident_memory_bytes", (("model", MODEL),))]
    completion = samples[("finance_ensemble_worker_completion_tokens_total", (("model", MODEL),))]
    assert memory > 50e6
    assert completion > 0


def test_json_logs_carry_cycle_fields(mesh, grpcurl_analyze):
    result = json.loads(grpcurl_analyze.stdout)
    lines = _log_lines(mesh.coordinator.log_file)
    finished = [line for line in lines if "finished" in line["message"]]
    assert len(finished) == 1
    assert finished[0]["symbol"] == "BTC"
    assert finished[0]["window_end"] == WINDOW_END
    assert finished[0]["request_id"] == result["request_id"]
    assert finished[0]["logger"] == "server.cycle"


def test_json_logs_carry_worker_fields(mesh, grpcurl_analyze):
    result = json.loads(grpcurl_analyze.stdout)
    lines = _log_lines(_worker(mesh).log_file)
    answered = [line for line in lines if line.get("request_id") == result["request_id"]]
    assert answered
    assert all(line["model"] == MODEL for line in answered)
    assert all(line["symbol"] == "BTC" for line in answered)


def test_json_logs_report_metrics_port(mesh):
    lines = _log_lines(mesh.coordinator.log_file)
    port = mesh.coordinator.metrics_port
    reported = [line for line in lines if f"127.0.0.1:{port}/metrics" in line["message"]]
    assert len(reported) == 1


def test_killed_worker_counted_as_unavailable(mesh, grpcurl_analyze):
    worker = _worker(mesh)
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait(timeout=30)
    request = ensemble_pb2.AnalyzeRequest(symbol="BTC", window_minutes=60, context_size=1000)
    request.window_end.FromJsonString(WINDOW_END)
    with grpc.insecure_channel(mesh.coordinator.address) as channel:
        result = ensemble_pb2_grpc.EnsembleStub(channel).Analyze(request, timeout=300)
    samples = _scrape(mesh.metrics_urls()["coordinator"])
    failures = samples[
        ("finance_ensemble_model_failures_total", (("model", MODEL), ("reason", "unavailable")))
    ]
    lines = _log_lines(mesh.coordinator.log_file)
    warnings = [
        line
        for line in lines
        if line["level"] == "WARNING" and line.get("request_id") == result.request_id
    ]
    assert result.verdicts[0].failure_kind == ensemble_pb2.FAILURE_KIND_UNAVAILABLE
    assert failures == 1.0
    assert len(warnings) == 1
    assert warnings[0]["model"] == MODEL
