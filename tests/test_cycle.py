"""A whole analysis cycle over real gRPC: real worker processes, the real SmolLM2 model,
real bundled bars in a real Parquet lake."""

from __future__ import annotations

import math
import os
import shutil
import signal

import grpc
import pyarrow.parquet as pq
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from quorum.v1 import ensemble_pb2, ensemble_pb2_grpc
from server import config as config_module
from server.mesh import LocalMesh
from tests.conftest import WINDOW_END, smollm2_entry, write_config

pytestmark = pytest.mark.model


def _window_end() -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(WINDOW_END)
    return stamp


def _request(**fields: object) -> ensemble_pb2.AnalyzeRequest:
    request = ensemble_pb2.AnalyzeRequest(symbol="BTC", window_minutes=60, context_size=2000)
    request.window_end.CopyFrom(_window_end())
    for name, value in fields.items():
        if name == "bars":
            request.bars.extend(value)
        else:
            setattr(request, name, value)
    return request


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, lake_with_bars, smollm2_path):
    directory = tmp_path_factory.mktemp("mesh")
    lake = directory / "lake"
    shutil.copytree(lake_with_bars, lake)
    path = write_config(directory, lake, [smollm2_entry(smollm2_path)])
    running = LocalMesh(config_module.load(path), path)
    address = running.start()
    yield running, address, lake
    running.stop()


@pytest.fixture(scope="module")
def stub(mesh):
    _, address, _ = mesh
    with grpc.insecure_channel(address) as channel:
        yield ensemble_pb2_grpc.EnsembleStub(channel)


def test_stream_events_in_cycle_order(mesh, stub):
    events = list(stub.AnalyzeStream(_request(), timeout=300))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "context_ready"
    assert kinds[-3:] == ["consensus", "decision", "result"]
    assert kinds.index("model_started") < kinds.index("verdict")
    assert "tokens" in kinds
    streamed = "".join(e.tokens.text for e in events if e.WhichOneof("event") == "tokens")
    final = events[-1].result.verdicts[0]
    assert final.model == "smollm2-135m"
    assert final.stats.completion_tokens > 0
    assert streamed == final.text
    assert final.stats.prompt_tokens + 160 <= final.stats.n_ctx


def test_result_recorded_and_readable(stub):
    result = stub.Analyze(_request(), timeout=300)
    assert result.symbol == "BTC"
    assert result.context.bars_used > 1000
    assert len(result.context.sections) == 7
    assert result.context.used_tokens <= result.context.context_size
    assert result.decision.action in (
        ensemble_pb2.ACTION_EXECUTE,
        ensemble_pb2.ACTION_ALERT,
        ensemble_pb2.ACTION_INFORM,
    )
    # One small model cannot carry large-model agreement, so it never executes.
    assert result.decision.action != ensemble_pb2.ACTION_EXECUTE
    assert not result.consensus.large_agreement.available
    table = pq.read_table(result.record_path)
    assert table.column("symbol").to_pylist() == ["BTC"]
    assert table.column("inputs_fingerprint").to_pylist() == [result.context.inputs_fingerprint]
    row = table.to_pylist()[0]
    verdict = row["verdicts"][0]
    assert verdict["model"] == "smollm2-135m"
    if verdict["status"] == "answered":
        assert math.isclose(row["confidence_level"], result.consensus.confidence_level)


def test_same_window_twice_keeps_one_record(mesh, stub):
    _, _, lake = mesh
    first = stub.Analyze(_request(), timeout=300)
    second = stub.Analyze(_request(), timeout=300)
    assert second.record_existed
    assert first.record_path == second.record_path
    assert pq.read_table(lake / "results").num_rows == 1


def _bars(rows):
    bars = []
    for index, (open_, high, low, close) in enumerate(rows):
        bar = ensemble_pb2.Bar(open=open_, high=high, low=low, close=close, volume=10.0)
        bar.time.FromSeconds(1559563200 - (len(rows) - index) * 1800)
        bars.append(bar)
    return bars


def _bad_requests():
    good = [(100.0, 101.0, 99.0, 100.5)] * 3
    nan_price = _bars([good[0], (100.0, 101.0, 99.0, float("nan")), good[0]])
    high_below_low = _bars([good[0], (100.0, 98.0, 99.0, 98.5), good[0]])
    unsorted = _bars(good)
    unsorted[1].time.FromSeconds(unsorted[0].time.seconds - 1800)
    return {
        "nan_price": (_request(bars=nan_price), "bars[1]"),
        "high_below_low": (_request(bars=high_below_low), "bars[1]"),
        "unsorted_timestamps": (_request(bars=unsorted), "bars[1]"),
        "unknown_symbol": (_request(symbol="NOPE"), "NOPE"),
    }


@pytest.mark.parametrize("case", sorted(_bad_requests()))
def test_bad_input_rejected_and_nothing_written(mesh, stub, case):
    _, _, lake = mesh
    before = sorted((lake / "results").rglob("*")) if (lake / "results").exists() else []
    request, fragment = _bad_requests()[case]
    with pytest.raises(grpc.RpcError) as raised:
        stub.Analyze(request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in raised.value.details()
    after = sorted((lake / "results").rglob("*")) if (lake / "results").exists() else []
    assert after == before


def test_killed_worker_is_named_and_others_answer(tmp_path, lake_with_bars, smollm2_path):
    lake = tmp_path / "lake"
    shutil.copytree(lake_with_bars, lake)
    models = [
        smollm2_entry(smollm2_path, name="survivor", weight=1.5),
        smollm2_entry(smollm2_path, name="casualty", weight=1.0),
    ]
    path = write_config(tmp_path, lake, models)
    with LocalMesh(config_module.load(path), path) as running:
        victim = next(p for p in running.processes if p.name == "casualty")
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        with grpc.insecure_channel(running.coordinator.address) as channel:
            result = ensemble_pb2_grpc.EnsembleStub(channel).Analyze(_request(), timeout=300)
    by_model = {verdict.model: verdict for verdict in result.verdicts}
    assert by_model["casualty"].status == ensemble_pb2.VERDICT_STATUS_FAILED
    assert by_model["casualty"].failure_kind == ensemble_pb2.FAILURE_KIND_UNAVAILABLE
    assert "UNAVAILABLE" in by_model["casualty"].failure
    assert by_model["survivor"].stats.completion_tokens > 0
    assert result.consensus.configured == 2
    assert result.consensus.answered <= 1
    assert pq.read_table(result.record_path).num_rows == 1
