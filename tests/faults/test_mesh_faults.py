"""Faults of a running mesh, on real worker processes with the real SmolLM2 model.

Each test names the fault in its name and checks the outcome and that no record is lost or
duplicated.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest

from quorum.v1 import ensemble_pb2, ensemble_pb2_grpc
from server.market_store import MarketStore
from tests.faults.mesh_tools import (
    analyze_request,
    garbage_worker,
    model_entry,
    record_files,
    record_rows,
    running_mesh,
    start_worker_process,
    verdicts_by_model,
)

pytestmark = pytest.mark.model

OTHER_WINDOW = "2019-06-04T12:00:00Z"


def _pair_models(smollm2_path, **beta_settings):
    return [
        model_entry(smollm2_path, "alpha", 1.5),
        model_entry(smollm2_path, "beta", 1.0, **beta_settings),
    ]


@pytest.fixture()
def pair(tmp_path, lake_with_bars, smollm2_path):
    """alpha (weight 1.5) and beta (weight 1.0), each its own worker process."""
    with running_mesh(tmp_path, lake_with_bars, _pair_models(smollm2_path)) as mesh:
        yield mesh


def _process(mesh, name):
    return next(entry for entry in mesh.processes if entry.name == name)


def _stub(mesh):
    channel = grpc.insecure_channel(mesh.coordinator.address)
    return channel, ensemble_pb2_grpc.EnsembleStub(channel)


def test_killed_worker_rejoins_after_restart(pair, tmp_path):
    channel, stub = _stub(pair)
    alpha = _process(pair, "alpha")
    result = None
    with channel:
        for event in stub.AnalyzeStream(analyze_request(), timeout=300):
            kind = event.WhichOneof("event")
            if kind == "tokens" and event.tokens.model == "alpha" and alpha.process.poll() is None:
                os.kill(alpha.process.pid, signal.SIGKILL)
                alpha.process.wait()
            if kind == "result":
                result = event.result
        verdicts = verdicts_by_model(result)
        assert verdicts["alpha"].failure_kind == ensemble_pb2.FAILURE_KIND_UNAVAILABLE
        # Tokens had been streamed, so the call was not retried.
        assert "attempts" not in verdicts["alpha"].failure
        assert verdicts["beta"].status == ensemble_pb2.VERDICT_STATUS_ANSWERED
        assert result.decision.action == ensemble_pb2.ACTION_INFORM
        assert record_rows(result.record_path) == 1

        # The same port, a new process: the coordinator keeps running and uses it again.
        restarted = start_worker_process(
            pair.config_path, "alpha", alpha.address, tmp_path / "alpha-restarted.log"
        )
        try:
            again = stub.Analyze(analyze_request(), timeout=300)
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=60)
    assert verdicts_by_model(again)["alpha"].status == ensemble_pb2.VERDICT_STATUS_ANSWERED
    assert again.record_path == result.record_path
    assert len(record_files(Path(pair.config.data_lake))) == 1


def test_stalled_worker_hits_its_deadline(tmp_path, lake_with_bars, smollm2_path):
    models = _pair_models(smollm2_path, max_processing_time_seconds=5)
    with running_mesh(tmp_path, lake_with_bars, models) as mesh:
        beta = _process(mesh, "beta")
        channel, stub = _stub(mesh)
        os.kill(beta.process.pid, signal.SIGSTOP)
        try:
            with channel:
                result = stub.Analyze(analyze_request(), timeout=300)
        finally:
            os.kill(beta.process.pid, signal.SIGCONT)
    verdicts = verdicts_by_model(result)
    assert verdicts["beta"].failure_kind == ensemble_pb2.FAILURE_KIND_DEADLINE
    assert verdicts["alpha"].status == ensemble_pb2.VERDICT_STATUS_ANSWERED
    # alpha has 1.5 of the 2.5 base weight: above the quorum of one half.
    assert result.consensus.answered_weight_share == pytest.approx(0.6)
    assert record_rows(result.record_path) == 1


def test_client_cancel_writes_nothing(pair):
    channel, stub = _stub(pair)
    with channel:
        call = stub.AnalyzeStream(analyze_request(OTHER_WINDOW), timeout=300)
        for event in call:
            if event.WhichOneof("event") == "tokens":
                call.cancel()
                break
        # The next cycle runs on the same workers and is not stuck behind the cancelled one.
        result = stub.Analyze(analyze_request(), timeout=300)
    assert result.consensus.answered == 2
    assert all("2019-06-04" not in str(path) for path in record_files(Path(pair.config.data_lake)))
    worker_log = _process(pair, "alpha").log_file.read_text()
    assert "cancelled" in worker_log


@pytest.mark.parametrize("mode", ["confidence", "direction", "no_result", "abort"])
def test_garbage_worker_fails_model(tmp_path, lake_with_bars, smollm2_path, mode):
    with garbage_worker() as (address, servicer):
        servicer.mode = mode
        models = [
            model_entry(smollm2_path, "alpha", 1.5),
            model_entry(smollm2_path, "garbage", 1.0),
        ]
        with running_mesh(
            tmp_path, lake_with_bars, models, external={"garbage": [address]}
        ) as mesh:
            channel, stub = _stub(mesh)
            with channel:
                result = stub.Analyze(analyze_request(), timeout=300)
    verdicts = verdicts_by_model(result)
    assert verdicts["garbage"].status == ensemble_pb2.VERDICT_STATUS_FAILED
    assert verdicts["alpha"].status == ensemble_pb2.VERDICT_STATUS_ANSWERED
    assert result.consensus.answered == 1


def test_unavailable_worker_retried_on_replica(
    tmp_path, lake_with_bars, smollm2_path, worker_server
):
    # The first address refuses connections; the replica is a real worker.
    models = [model_entry(smollm2_path, "alpha", 1.0)]
    external = {"alpha": ["127.0.0.1:1", worker_server.address]}
    with running_mesh(tmp_path, lake_with_bars, models, external=external) as mesh:
        channel, stub = _stub(mesh)
        with channel:
            result = stub.Analyze(analyze_request(), timeout=300)
    alpha = verdicts_by_model(result)["alpha"]
    assert alpha.status == ensemble_pb2.VERDICT_STATUS_ANSWERED
    assert alpha.address == worker_server.address


def _sigterm_after_first_token(mesh) -> tuple[ensemble_pb2.AnalysisResult | None, object]:
    """Run a cycle, SIGTERM the coordinator at its first token; return (result, error)."""
    channel, stub = _stub(mesh)
    coordinator = mesh.coordinator.process
    result = error = None
    signalled = False
    with channel:
        try:
            for event in stub.AnalyzeStream(analyze_request(), timeout=600):
                kind = event.WhichOneof("event")
                if kind == "tokens" and not signalled:
                    coordinator.send_signal(signal.SIGTERM)
                    signalled = True
                if kind == "result":
                    result = event.result
        except grpc.RpcError as raised:
            error = raised
    return result, error


def test_sigterm_within_grace_finishes_cycle(tmp_path, lake_with_bars, smollm2_path):
    models = _pair_models(smollm2_path)
    with running_mesh(tmp_path, lake_with_bars, models, shutdown_grace_seconds=600) as mesh:
        result, error = _sigterm_after_first_token(mesh)
        exit_code = mesh.coordinator.process.wait(timeout=600)
    assert error is None
    assert exit_code == 0
    assert result.consensus.answered == 2
    assert record_rows(result.record_path) == 1


def test_sigterm_past_grace_cancels_cycle(tmp_path, lake_with_bars, smollm2_path):
    models = _pair_models(smollm2_path)
    with running_mesh(tmp_path, lake_with_bars, models, shutdown_grace_seconds=0.5) as mesh:
        result, error = _sigterm_after_first_token(mesh)
        exit_code = mesh.coordinator.process.wait(timeout=120)
        records = record_files(Path(mesh.config.data_lake))
    assert result is None
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert exit_code == 0
    assert records == []


def _short_history_request(lake: Path, priority: int) -> ensemble_pb2.AnalyzeRequest:
    """A request carrying the last 300 real BTC bars, so features cost milliseconds."""
    request = analyze_request(priority=priority)
    end = request.window_end.ToNanoseconds()
    bars = MarketStore(lake).read_bars("BTC", end, end - 300 * 30 * 60 * 10**9)
    for index in range(len(bars)):
        bar = request.bars.add(
            open=float(bars.open[index]),
            high=float(bars.high[index]),
            low=float(bars.low[index]),
            close=float(bars.close[index]),
            volume=float(bars.volume[index]),
        )
        bar.time.FromNanoseconds(int(bars.time[index]))
    return request


def test_hundred_concurrent_calls_two_at_a_time(tmp_path, lake_with_bars, smollm2_path):
    # The coordinator, its admission queue, the lake and the records are real; the model is
    # a stand-in Inference server that responds in 0.2 s, so that a hundred cycles test the
    # coordinator in seconds rather than a hundred generations.
    with garbage_worker() as (address, servicer):
        servicer.mode = "valid"
        servicer.delay_s = 0.2
        models = [model_entry(smollm2_path, "alpha", 1.0)]
        with running_mesh(
            tmp_path,
            lake_with_bars,
            models,
            external={"alpha": [address]},
            max_concurrent_symbols=2,
            cycle_deadline_seconds=3600,
        ) as mesh:
            lake = Path(mesh.config.data_lake)
            requests = [_short_history_request(lake, index % 3) for index in range(100)]
            channel, stub = _stub(mesh)
            with channel:
                calls = [stub.Analyze.future(request, timeout=3600) for request in requests]
                results = [call.result() for call in calls]
            log_lines = mesh.coordinator.log_file.read_text().splitlines()
            records = record_files(lake)
    assert len({result.request_id for result in results}) == 100
    assert all(result.consensus.answered == 1 for result in results)
    assert len({result.record_path for result in results}) == 1
    assert len(records) == 1
    assert _max_running(log_lines) == 2


def _max_running(log_lines: list[str]) -> int:
    """Return the maximum number of cycles between their "started" and "finished" lines."""
    running = max_running = 0
    for line in log_lines:
        if " started" in line and "Cycle " in line:
            running += 1
            max_running = max(max_running, running)
        elif " finished: " in line and "Cycle " in line:
            running -= 1
    return max_running


def test_oversized_request_rejected(tmp_path, lake_with_bars, smollm2_path):
    models = [model_entry(smollm2_path, "alpha", 1.0)]
    request = analyze_request()
    for index in range(5000):
        bar = request.bars.add(open=1.0, high=1.0, low=1.0, close=1.0, volume=1.0)
        bar.time.FromSeconds(1_500_000_000 + index * 1800)
    with running_mesh(tmp_path, lake_with_bars, models, max_message_bytes=131072) as mesh:
        channel, stub = _stub(mesh)
        with channel, pytest.raises(grpc.RpcError) as refused:
            stub.Analyze(request, timeout=60)
        records = record_files(Path(mesh.config.data_lake))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "131072" in refused.value.details()
    assert records == []


def test_outage_keeps_earlier_record(tmp_path, lake_with_bars, smollm2_path):
    models = [model_entry(smollm2_path, "alpha", 1.0)]
    with running_mesh(tmp_path, lake_with_bars, models) as mesh:
        channel, stub = _stub(mesh)
        with channel:
            first = stub.Analyze(analyze_request(), timeout=300)
            alpha = _process(mesh, "alpha")
            os.kill(alpha.process.pid, signal.SIGKILL)
            alpha.process.wait()
            outage = stub.Analyze(analyze_request(), timeout=300)
    kept = pq.read_table(first.record_path).to_pylist()[0]
    assert first.consensus.answered == 1
    assert outage.consensus.answered == 0
    assert outage.record_kept
    assert outage.record_path == first.record_path
    assert kept["request_id"] == first.request_id
