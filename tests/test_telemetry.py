"""Metrics and traces of a real cycle: a coordinator and a SmolLM2 worker in this process,
each with a fresh registry and an in-memory span exporter, over real gRPC on loopback."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import grpc
import pytest

from quorum.v1 import ensemble_pb2, ensemble_pb2_grpc
from tests.conftest import WINDOW_END, smollm2_entry, write_config
from tests.telemetry_fixtures import InProcessCoordinator, InProcessWorker

pytestmark = pytest.mark.model

MODEL = "smollm2-135m"
DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "quorum-dashboard.json"
CYCLE_CHILDREN = {
    "load_data",
    "features",
    "build_context",
    f"generate {MODEL}",
    "consensus",
    "decision",
    "synthesis",
    "record",
}
FEATURE_FAMILIES = {
    "features.indicators",
    "features.volatility",
    "features.patterns",
    "features.correlations",
}


def _request() -> ensemble_pb2.AnalyzeRequest:
    request = ensemble_pb2.AnalyzeRequest(symbol="BTC", window_minutes=60, context_size=1000)
    request.window_end.FromJsonString(WINDOW_END)
    return request


@pytest.fixture(scope="module")
def servers(tmp_path_factory, lake_with_bars, smollm2_path, worker_model):
    directory = tmp_path_factory.mktemp("telemetry")
    lake = directory / "lake"
    shutil.copytree(lake_with_bars, lake)
    entry = smollm2_entry(smollm2_path) | {"max_tokens": 96}
    config_path = write_config(directory, lake, [entry])
    worker = InProcessWorker(worker_model)
    coordinator = InProcessCoordinator(config_path, worker.address, directory)
    yield coordinator, worker
    coordinator.stop()
    worker.stop()


def _analyze(address: str) -> ensemble_pb2.AnalysisResult:
    with grpc.insecure_channel(address) as channel:
        return ensemble_pb2_grpc.EnsembleStub(channel).Analyze(_request(), timeout=600)


@pytest.fixture(scope="module")
def cycle(servers):
    coordinator, _ = servers
    return _analyze(coordinator.address)


@pytest.fixture(scope="module")
def failed_cycle(servers, cycle):
    """A second cycle after the worker has stopped: the model is unavailable."""
    coordinator, worker = servers
    worker.stop()
    return _analyze(coordinator.address)


def test_cycle_processing_time_observed(servers, cycle):
    coordinator, _ = servers
    count = coordinator.observed.value(
        "finance_ensemble_processing_seconds_count", symbol="BTC", context_size="1k"
    )
    assert count == 1.0


def test_cycle_consensus_gauge_matches(servers, cycle):
    coordinator, _ = servers
    gauge = coordinator.observed.value("finance_ensemble_consensus_confidence", symbol="BTC")
    assert gauge == pytest.approx(cycle.consensus.confidence_level)


def test_cycle_decision_counted(servers, cycle):
    coordinator, _ = servers
    action = ensemble_pb2.Action.Name(cycle.decision.action).removeprefix("ACTION_").lower()
    direction = {1: "bullish", 2: "bearish", 3: "neutral", 4: "uncertain"}[cycle.decision.direction]
    count = coordinator.observed.value(
        "finance_ensemble_decisions_total", symbol="BTC", action=action, direction=direction
    )
    assert count == 1.0


def test_cycle_large_agreement_unavailable(servers, cycle):
    coordinator, _ = servers
    share = coordinator.observed.value("finance_ensemble_large_model_agreement", symbol="BTC")
    checks = coordinator.observed.value(
        "finance_ensemble_large_model_agreement_checks_total", symbol="BTC", state="unavailable"
    )
    assert math.isnan(share)
    assert checks == 1.0


def test_cycle_token_counters_match_stats(servers, cycle):
    coordinator, worker = servers
    stats = cycle.verdicts[0].stats
    for prefix, observed in (
        ("finance_ensemble", coordinator.observed),
        ("finance_ensemble_worker", worker.observed),
    ):
        prompt = observed.value(f"{prefix}_prompt_tokens_total", model=MODEL)
        completion = observed.value(f"{prefix}_completion_tokens_total", model=MODEL)
        cached = observed.value(f"{prefix}_cached_prompt_tokens_total", model=MODEL)
        assert prompt == stats.prompt_tokens
        assert completion == stats.completion_tokens
        assert cached == stats.cached_prompt_tokens


def test_cycle_model_latency_observed(servers, cycle):
    coordinator, _ = servers
    status = "answered" if cycle.consensus.answered else "failed"
    total = coordinator.observed.value(
        "finance_ensemble_model_latency_seconds_sum", model=MODEL, status=status
    )
    assert total == pytest.approx(cycle.verdicts[0].elapsed_ms / 1000.0)


def test_worker_rates_positive(servers, cycle):
    _, worker = servers
    assert cycle.verdicts[0].stats.completion_tokens > 1
    assert worker.observed.value("finance_ensemble_worker_tokens_per_second", model=MODEL) > 0
    assert (
        worker.observed.value("finance_ensemble_worker_prompt_tokens_per_second", model=MODEL) > 0
    )


def test_worker_memory_and_load_time(servers, cycle):
    _, worker = servers
    memory = worker.observed.value("finance_ensemble_worker_resident_memory_bytes", model=MODEL)
    load = worker.observed.value("finance_ensemble_worker_model_load_seconds", model=MODEL)
    # The SmolLM2 file alone is about 90 MB.
    assert memory > 50e6
    assert load > 0


def test_worker_idle_after_cycle(servers, cycle):
    _, worker = servers
    assert worker.observed.value("finance_ensemble_worker_queue_depth", model=MODEL) == 0
    assert worker.observed.value("finance_ensemble_worker_active_generations", model=MODEL) == 0


def test_coordinator_idle_after_cycle(servers, cycle):
    coordinator, _ = servers
    assert coordinator.observed.value("finance_ensemble_parallel_jobs") == 0
    assert coordinator.observed.value("finance_ensemble_queue_depth", host="127.0.0.1") == 0


def test_grpc_metrics_by_method_and_code(servers, cycle):
    coordinator, worker = servers
    analyze = coordinator.observed.value(
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service="quorum.v1.Ensemble",
        grpc_method="Analyze",
        grpc_code="OK",
    )
    generate = worker.observed.value(
        "grpc_server_handled_total",
        grpc_type="server_stream",
        grpc_service="quorum.v1.Inference",
        grpc_method="Generate",
        grpc_code="OK",
    )
    assert analyze >= 1.0
    assert generate >= 1.0


def test_grpc_invalid_argument_counted(servers, cycle):
    coordinator, _ = servers
    request = _request()
    request.symbol = "NOPE"
    with grpc.insecure_channel(coordinator.address) as channel:
        stub = ensemble_pb2_grpc.EnsembleStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Analyze(request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    handled = coordinator.observed.settled_value(
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service="quorum.v1.Ensemble",
        grpc_method="Analyze",
        grpc_code="INVALID_ARGUMENT",
    )
    rejected = coordinator.observed.value(
        "finance_ensemble_cycle_errors_total", reason="invalid_argument"
    )
    assert handled == 1.0
    assert rejected == 1.0


def _spans_by_name(observed) -> dict:
    return {span.name: span for span in observed.spans.get_finished_spans()}


def test_trace_cycle_children(servers, cycle):
    coordinator, _ = servers
    spans = _spans_by_name(coordinator.observed)
    root = spans["cycle"]
    children = {
        span.name
        for span in coordinator.observed.spans.get_finished_spans()
        if span.parent is not None and span.parent.span_id == root.context.span_id
    }
    assert root.parent is None
    assert children == CYCLE_CHILDREN


def test_trace_feature_family_spans(servers, cycle):
    coordinator, _ = servers
    spans = _spans_by_name(coordinator.observed)
    features = spans["features"]
    families = {
        span.name
        for span in coordinator.observed.spans.get_finished_spans()
        if span.parent is not None and span.parent.span_id == features.context.span_id
    }
    assert families == FEATURE_FAMILIES


def test_trace_worker_span_joins_cycle(servers, cycle):
    coordinator, worker = servers
    model_span = _spans_by_name(coordinator.observed)[f"generate {MODEL}"]
    worker_span = _spans_by_name(worker.observed)["quorum.v1.Inference/Generate"]
    assert worker_span.context.trace_id == model_span.context.trace_id
    assert worker_span.parent.span_id == model_span.context.span_id


def test_trace_worker_span_tokens(servers, cycle):
    _, worker = servers
    span = _spans_by_name(worker.observed)["quorum.v1.Inference/Generate"]
    stats = cycle.verdicts[0].stats
    events = [event.name for event in span.events]
    assert span.attributes["gen_ai.usage.input_tokens"] == stats.prompt_tokens
    assert span.attributes["gen_ai.usage.output_tokens"] == stats.completion_tokens
    assert span.attributes["quorum.time_to_first_token_ms"] == stats.time_to_first_token_ms
    assert "first_token" in events


def test_failure_counted_by_reason(servers, failed_cycle):
    coordinator, _ = servers
    failures = coordinator.observed.value(
        "finance_ensemble_model_failures_total", model=MODEL, reason="unavailable"
    )
    assert failed_cycle.verdicts[0].failure_kind == ensemble_pb2.FAILURE_KIND_UNAVAILABLE
    assert failures == 1.0


def test_failure_span_has_error_status(servers, failed_cycle):
    coordinator, _ = servers
    model_spans = [
        span
        for span in coordinator.observed.spans.get_finished_spans()
        if span.name == f"generate {MODEL}"
    ]
    assert len(model_spans) == 2
    assert not model_spans[-1].status.is_ok


# Suffixes a Prometheus exposition adds to a family's name, by family type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": (),
}
_PROMQL_WORDS = {
    "sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "avg", "max",
    "min", "count", "topk", "le", "on", "ignoring", "group_left", "clamp_min", "and", "or",
}  # fmt: skip


def _exported_names(registries) -> tuple[set[str], set[str]]:
    """Return (family names, sample names) that the registries export."""
    families, samples = set(), set()
    for registry in registries:
        for family in registry.collect():
            families.add(family.name)
            samples.update(sample.name for sample in family.samples)
            for suffix in _SUFFIXES.get(family.type, ()):
                # A family without samples yet would still export these names.
                samples.add(family.name + suffix)
    return families, samples


def _family_of(name: str, families: set[str]) -> str | None:
    if name in families:
        return name
    for suffixes in _SUFFIXES.values():
        for suffix in suffixes:
            if name.endswith(suffix) and name.removesuffix(suffix) in families:
                return name.removesuffix(suffix)
    return None


def _metric_names(expr: str) -> set[str]:
    """Return the metric names in a PromQL expression: label matchers, ranges and the label
    lists of `by (...)` and similar clauses are removed first."""
    text = re.sub(r"\{[^}]*\}", "", expr)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {word for word in words if word not in _PROMQL_WORDS}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_names_exported_metrics(servers, failed_cycle):
    coordinator, worker = servers
    families, samples = _exported_names([coordinator.observed.registry, worker.observed.registry])
    exprs = _dashboard_exprs()
    names = set().union(*(_metric_names(expr) for expr in exprs))
    assert len(exprs) >= 12
    for name in sorted(names):
        assert _family_of(name, families) is not None, name
        assert name in samples, name


def test_dashboard_metric_names_parsed():
    names = _metric_names(
        'histogram_quantile(0.95, sum by (le, symbol) (rate(a_seconds_bucket{x="y"}[5m])))'
        " / sum without (model) (b_total)"
    )
    assert names == {"a_seconds_bucket", "b_total"}
