"""The coordinator's Prometheus metrics, registered on a registry the caller passes.

Names follow the reference deployment (`finance_ensemble_processing_seconds`,
`finance_ensemble_consensus_confidence`); every per-model series has a `model` label.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from quorum.v1 import ensemble_pb2
from server.consensus_policy import direction_name

# A cycle takes seconds on a laptop with the small models and minutes in the reference
# deployment, whose hard limit per model is 300 s.
CYCLE_BUCKETS_S = (1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300, 420, 600, 900)
MODEL_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120, 180, 240, 300)

FAILURE_REASONS = {
    ensemble_pb2.FAILURE_KIND_UNAVAILABLE: "unavailable",
    ensemble_pb2.FAILURE_KIND_DEADLINE: "deadline",
    ensemble_pb2.FAILURE_KIND_CANCELLED: "cancelled",
    ensemble_pb2.FAILURE_KIND_BAD_OUTPUT: "bad_output",
    ensemble_pb2.FAILURE_KIND_ERROR: "error",
    ensemble_pb2.FAILURE_KIND_OVERLOADED: "overloaded",
}


def action_name(action: int) -> str:
    """Return the lower-case name of a decision action, such as "alert"."""
    return str(ensemble_pb2.Action.Name(action)).removeprefix("ACTION_").lower()


def context_size_label(tokens: int) -> str:
    """Return a context size as the reference deployment labels it: 25000 -> "25k"."""
    if tokens % 1000 == 0:
        return f"{tokens // 1000}k"
    return str(tokens)


class CoordinatorMetrics:
    """Cycle, consensus, decision and per-model metrics of one coordinator."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._add_cycle_metrics(registry)
        self._add_model_metrics(registry)
        self._add_load_metrics(registry)

    def _add_cycle_metrics(self, registry: CollectorRegistry) -> None:
        self.processing_seconds = Histogram(
            "finance_ensemble_processing_seconds",
            "Duration of an analysis cycle, from request to recorded result",
            ["symbol", "context_size"],
            buckets=CYCLE_BUCKETS_S,
            registry=registry,
        )
        self.consensus_confidence = Gauge(
            "finance_ensemble_consensus_confidence",
            "confidence_level of the symbol's last consensus (0 to 1)",
            ["symbol"],
            registry=registry,
        )
        self.agreement_strength = Gauge(
            "finance_ensemble_agreement_strength",
            "agreement_strength of the symbol's last consensus (0 to 1)",
            ["symbol"],
            registry=registry,
        )
        self.decisions = Counter(
            "finance_ensemble_decisions_total",
            "Decisions made, by action and direction",
            ["symbol", "action", "direction"],
            registry=registry,
        )
        self.large_agreement_share = Gauge(
            "finance_ensemble_large_model_agreement",
            "Share of the answered large models on their most common direction in the"
            " symbol's last cycle; NaN when fewer than two large models answered",
            ["symbol"],
            registry=registry,
        )
        self.large_agreement = Counter(
            "finance_ensemble_large_model_agreement_checks_total",
            "Large-model agreement per cycle: holds, disagrees or unavailable",
            ["symbol", "state"],
            registry=registry,
        )
        self.models_answered = Gauge(
            "finance_ensemble_models_answered",
            "Models that returned a verdict in the symbol's last cycle",
            ["symbol"],
            registry=registry,
        )

    def _add_load_metrics(self, registry: CollectorRegistry) -> None:
        self.queue_depth = Gauge(
            "finance_ensemble_queue_depth",
            "Models waiting at the coordinator for their host's core budget",
            ["host"],
            registry=registry,
        )
        self.parallel_jobs = Gauge(
            "finance_ensemble_parallel_jobs",
            "Analysis cycles running at this moment",
            registry=registry,
        )
        self.cycles_waiting = Gauge(
            "finance_ensemble_cycles_waiting",
            "Analysis cycles waiting for one of the max_concurrent_symbols slots",
            registry=registry,
        )
        self.cycle_errors = Counter(
            "finance_ensemble_cycle_errors_total",
            "Analysis requests that ended without a result, by reason",
            ["reason"],
            registry=registry,
        )

    def _add_model_metrics(self, registry: CollectorRegistry) -> None:
        self.model_latency = Histogram(
            "finance_ensemble_model_latency_seconds",
            "Time from sending a model its request to its outcome, by status",
            ["model", "status"],
            buckets=MODEL_BUCKETS_S,
            registry=registry,
        )
        self.model_queued = Histogram(
            "finance_ensemble_model_queued_seconds",
            "Time a model waited at the coordinator for its host's cores",
            ["model"],
            buckets=MODEL_BUCKETS_S,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "finance_ensemble_model_time_to_first_token_seconds",
            "Time from the worker taking the request to the first completion token",
            ["model"],
            buckets=MODEL_BUCKETS_S,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "finance_ensemble_prompt_tokens_total",
            "Prompt tokens sent to the model after fitting to its context window",
            ["model"],
            registry=registry,
        )
        self.cached_prompt_tokens = Counter(
            "finance_ensemble_cached_prompt_tokens_total",
            "Prompt tokens the model reused from its KV cache instead of evaluating",
            ["model"],
            registry=registry,
        )
        self.completion_tokens = Counter(
            "finance_ensemble_completion_tokens_total",
            "Completion tokens the model generated",
            ["model"],
            registry=registry,
        )
        self.tokens_per_second = Gauge(
            "finance_ensemble_model_tokens_per_second",
            "Completion tokens per second of generation in the model's last request,"
            " prompt evaluation included",
            ["model"],
            registry=registry,
        )
        self.model_failures = Counter(
            "finance_ensemble_model_failures_total",
            "Model requests that ended without a verdict, by reason",
            ["model", "reason"],
            registry=registry,
        )

    def observe_verdict(self, verdict: ensemble_pb2.ModelVerdict) -> None:
        """Count one model's outcome: latency, tokens, and the failure reason if it failed."""
        answered = verdict.status == ensemble_pb2.VERDICT_STATUS_ANSWERED
        model = verdict.model
        status = "answered" if answered else "failed"
        self.model_latency.labels(model, status).observe(verdict.elapsed_ms / 1000.0)
        self.model_queued.labels(model).observe(verdict.queued_ms / 1000.0)
        if not answered:
            reason = FAILURE_REASONS.get(verdict.failure_kind, "error")
            self.model_failures.labels(model, reason).inc()
        if not verdict.HasField("stats"):
            return
        stats = verdict.stats
        self.prompt_tokens.labels(model).inc(stats.prompt_tokens)
        self.cached_prompt_tokens.labels(model).inc(stats.cached_prompt_tokens)
        self.completion_tokens.labels(model).inc(stats.completion_tokens)
        if stats.completion_tokens > 0:
            self.time_to_first_token.labels(model).observe(stats.time_to_first_token_ms / 1000.0)
        if stats.completion_tokens > 0 and stats.generation_ms > 0:
            rate = stats.completion_tokens / (stats.generation_ms / 1000.0)
            self.tokens_per_second.labels(model).set(rate)

    def observe_result(self, result: ensemble_pb2.AnalysisResult, processing_s: float) -> None:
        """Record a finished cycle: its duration, consensus, large-model agreement, decision.

        `processing_s` runs from the request to the recorded result.
        """
        symbol = result.symbol
        size = context_size_label(result.context.context_size)
        self.processing_seconds.labels(symbol, size).observe(processing_s)

        consensus = result.consensus
        self.consensus_confidence.labels(symbol).set(consensus.confidence_level)
        self.agreement_strength.labels(symbol).set(consensus.agreement_strength)
        self.models_answered.labels(symbol).set(consensus.answered)

        large = consensus.large_agreement
        if large.available:
            self.large_agreement_share.labels(symbol).set(large.share)
            state = "holds" if large.holds else "disagrees"
        else:
            self.large_agreement_share.labels(symbol).set(math.nan)
            state = "unavailable"
        self.large_agreement.labels(symbol, state).inc()

        decision = result.decision
        self.decisions.labels(
            symbol, action_name(decision.action), direction_name(decision.direction)
        ).inc()
