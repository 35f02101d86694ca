"""A worker's Prometheus metrics: generation latency, tokens, failures, queue, memory.

Every series carries the `model` label, so one dashboard query covers every worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.generation import FinishReason, GenerationOutcome

GENERATION_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300)
PROC_STATUS = Path("/proc/self/status")


def resident_memory_bytes(status_path: Path = PROC_STATUS) -> float:
    """Return VmRSS from a /proc status file in bytes, NaN where the file or line is missing."""
    try:
        text = status_path.read_text()
    except OSError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            # The kernel writes "VmRSS:   123456 kB", where kB is 1024 bytes.
            return float(line.split()[1]) * 1024.0
    return float("nan")


class ResidentMemoryCollector(Collector):
    """Read the process's resident memory at each scrape."""

    def __init__(self, model: str, status_path: Path = PROC_STATUS) -> None:
        self._model = model
        self._status_path = status_path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "finance_ensemble_worker_resident_memory_bytes",
            "Resident memory of the worker process (VmRSS), model weights and KV cache included",
            labels=["model"],
        )
        family.add_metric([self._model], resident_memory_bytes(self._status_path))
        yield family


class WorkerMetrics:
    """The metrics of one model's worker, on the given registry."""

    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        self.model = model
        self._add_generation_metrics(registry)
        self._add_token_metrics(registry)
        self.queue_depth = Gauge(
            "finance_ensemble_worker_queue_depth",
            "Requests waiting for the model, which serves one request at a time",
            ["model"],
            registry=registry,
        )
        self.active = Gauge(
            "finance_ensemble_worker_active_generations",
            "Requests holding the model (0 or 1)",
            ["model"],
            registry=registry,
        )
        self.load_seconds = Gauge(
            "finance_ensemble_worker_model_load_seconds",
            "Time the worker took to load its model at start-up",
            ["model"],
            registry=registry,
        )
        registry.register(ResidentMemoryCollector(model))

    def _add_generation_metrics(self, registry: CollectorRegistry) -> None:
        self.generation_seconds = Histogram(
            "finance_ensemble_worker_generation_seconds",
            "Prompt evaluation and token generation of one request, by finish reason",
            ["model", "finish_reason"],
            buckets=GENERATION_BUCKETS_S,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "finance_ensemble_worker_time_to_first_token_seconds",
            "Time from the start of generation (prompt evaluation) to the first token",
            ["model"],
            buckets=GENERATION_BUCKETS_S,
            registry=registry,
        )
        self.queue_seconds = Histogram(
            "finance_ensemble_worker_queue_seconds",
            "Time a request waited for the model",
            ["model"],
            buckets=GENERATION_BUCKETS_S,
            registry=registry,
        )
        self.failures = Counter(
            "finance_ensemble_worker_failures_total",
            "Requests that ended without a verdict, by reason",
            ["model", "reason"],
            registry=registry,
        )

    def _add_token_metrics(self, registry: CollectorRegistry) -> None:
        self.prompt_tokens = Counter(
            "finance_ensemble_worker_prompt_tokens_total",
            "Prompt tokens of the requests after fitting, cached ones included",
            ["model"],
            registry=registry,
        )
        self.cached_prompt_tokens = Counter(
            "finance_ensemble_worker_cached_prompt_tokens_total",
            "Prompt tokens reused from the KV cache instead of evaluated",
            ["model"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "finance_ensemble_worker_completion_tokens_total",
            "Completion tokens generated",
            ["model"],
            registry=registry,
        )
        self.tokens_per_second = Gauge(
            "finance_ensemble_worker_tokens_per_second",
            "Completion tokens per second after the first token in the last request",
            ["model"],
            registry=registry,
        )
        self.prompt_tokens_per_second = Gauge(
            "finance_ensemble_worker_prompt_tokens_per_second",
            "Evaluated (not cached) prompt tokens per second in the last request",
            ["model"],
            registry=registry,
        )

    def observe_queued(self, seconds: float) -> None:
        self.queue_seconds.labels(self.model).observe(seconds)

    def observe_rejected(self, reason: str) -> None:
        """Count a request that failed before generation (invalid, or too long to fit)."""
        self.failures.labels(self.model, reason).inc()

    def observe_outcome(self, outcome: GenerationOutcome, prompt_tokens: int) -> None:
        """Record one finished generation: duration, tokens, rates and its failure reason."""
        model = self.model
        finish = outcome.finish_reason.value
        self.generation_seconds.labels(model, finish).observe(outcome.generation_s)
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.cached_prompt_tokens.labels(model).inc(outcome.cached_prompt_tokens)
        self.completion_tokens.labels(model).inc(outcome.completion_tokens)
        if outcome.verdict is None:
            self.failures.labels(model, _failure_reason(outcome)).inc()

        first_token_s = outcome.time_to_first_token_s
        if first_token_s is None:
            return
        self.time_to_first_token.labels(model).observe(first_token_s)
        evaluated = prompt_tokens - outcome.cached_prompt_tokens
        if first_token_s > 0 and evaluated > 0:
            self.prompt_tokens_per_second.labels(model).set(evaluated / first_token_s)
        # The first token comes out of prompt evaluation; the rest are one decode step each.
        decode_s = outcome.generation_s - first_token_s
        if outcome.completion_tokens > 1 and decode_s > 0:
            rate = (outcome.completion_tokens - 1) / decode_s
            self.tokens_per_second.labels(model).set(rate)


def _failure_reason(outcome: GenerationOutcome) -> str:
    if outcome.finish_reason is FinishReason.STOP:
        return "invalid_verdict"
    return outcome.finish_reason.value
