"""Helpers of the fault suite: requests, a mesh over the real lake, and a misbehaving worker."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pyarrow.parquet as pq
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quorum.v1 import ensemble_pb2, inference_pb2, inference_pb2_grpc, verdict_pb2
from server import config as config_module
from server.mesh import LocalMesh
from tests.conftest import WINDOW_END, smollm2_entry, write_config

# A small context and a short completion keep each cycle to seconds on two cores.
CONTEXT_SIZE = 600
MAX_TOKENS = 48


def analyze_request(window_end: str = WINDOW_END, **fields: object) -> ensemble_pb2.AnalyzeRequest:
    request = ensemble_pb2.AnalyzeRequest(
        symbol="BTC", window_minutes=60, context_size=CONTEXT_SIZE, **fields
    )
    request.window_end.FromJsonString(window_end)
    return request


def model_entry(smollm2_path: Path, name: str, weight: float, **settings: object) -> dict:
    entry = smollm2_entry(smollm2_path, name=name, weight=weight)
    entry.update(n_ctx=1536, max_tokens=MAX_TOKENS)
    entry.update(settings)
    return entry


@contextmanager
def running_mesh(
    directory: Path,
    lake_with_bars: Path,
    models: list[dict],
    external: dict[str, list[str]] | None = None,
    **settings: object,
) -> Iterator[LocalMesh]:
    lake = directory / "lake"
    shutil.copytree(lake_with_bars, lake)
    path = write_config(directory, lake, models, **settings)
    mesh = LocalMesh(config_module.load(path), path, external_workers=external or {})
    mesh.start()
    try:
        yield mesh
    finally:
        mesh.stop()


def record_files(lake: Path) -> list[Path]:
    root = lake / "results"
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def record_rows(path: Path) -> int:
    return pq.read_table(path).num_rows


def verdicts_by_model(result: ensemble_pb2.AnalysisResult) -> dict[str, ensemble_pb2.ModelVerdict]:
    return {verdict.model: verdict for verdict in result.verdicts}


def start_worker_process(
    config_path: Path, model: str, listen: str, log_file: Path
) -> subprocess.Popen:
    """Start `quorum worker` for `model` on `listen` and wait until it is SERVING."""
    with open(log_file, "ab") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server.cli",
                "--config",
                str(config_path),
                "worker",
                "--model",
                model,
                "--listen",
                listen,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_serving(listen, "quorum.v1.Inference", process)
    return process


def wait_serving(
    address: str, service: str, process: subprocess.Popen, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker on {address} exited with {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"worker on {address} not SERVING after {timeout_s} s")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class GarbageInference(inference_pb2_grpc.InferenceServicer):
    """An Inference server that streams tokens, then ends in the way `mode` names.

    Modes: "confidence" (a verdict with confidence 7.0), "direction" (direction 99),
    "no_result" (the stream ends after the tokens), "abort" (INTERNAL after the tokens),
    "valid" (a well-formed bullish verdict after `delay_s`).
    """

    def __init__(self) -> None:
        self.mode = "confidence"
        self.delay_s = 0.0

    def Generate(self, request, context):
        yield inference_pb2.GenerateResponse(
            token=inference_pb2.TokenChunk(text='{"rationale": "zzz', completion_tokens=1)
        )
        if self.mode == "no_result":
            return
        if self.mode == "abort":
            context.abort(grpc.StatusCode.INTERNAL, "the model exploded")
        time.sleep(self.delay_s)
        verdict = verdict_pb2.Verdict(
            direction=verdict_pb2.DIRECTION_BULLISH, confidence=0.9, rationale="zzz"
        )
        if self.mode == "confidence":
            verdict.confidence = 7.0
        if self.mode == "direction":
            verdict.direction = 99
        yield inference_pb2.GenerateResponse(
            result=inference_pb2.GenerationResult(verdict=verdict, text="zzz")
        )


@contextmanager
def garbage_worker() -> Iterator[tuple[str, GarbageInference]]:
    servicer = GarbageInference()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    inference_pb2_grpc.add_InferenceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(grace=None)
