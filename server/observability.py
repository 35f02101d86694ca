"""Observability of one server process: a metrics registry with its `/metrics` HTTP
endpoint, a tracer, and the gRPC server metrics interceptor."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry, start_http_server

from server.port_file import write_port_file
from server.rpc_metrics import RpcMetrics, RpcMetricsInterceptor
from server.tracing import make_tracer_provider, tracer_of

log = logging.getLogger(__name__)

# The port the K3s manifests name `metrics`.
DEFAULT_METRICS_PORT = 9464


@dataclass(frozen=True)
class ObservabilityOptions:
    # None serves no /metrics endpoint; 0 picks a free port.
    metrics_port: int | None = None
    # Receives the bound metrics port, like --port-file receives the gRPC one.
    metrics_port_file: Path | None = None
    # None exports no spans.
    otlp_endpoint: str | None = None
    # A plaintext port serving only grpc.health.v1, for probes without TLS; None: none.
    health_port: int | None = None


class Observability:
    """The registry, tracer and `/metrics` server of one process."""

    def __init__(
        self,
        service_name: str,
        options: ObservabilityOptions | None = None,
        registry: CollectorRegistry | None = None,
        span_processors: Sequence[SpanProcessor] = (),
    ) -> None:
        self.service_name = service_name
        self.options = options or ObservabilityOptions()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.tracer_provider: TracerProvider = make_tracer_provider(
            service_name, self.options.otlp_endpoint, span_processors
        )
        self.tracer: trace.Tracer = tracer_of(self.tracer_provider)
        self.rpc_metrics = RpcMetrics(self.registry)
        self.metrics_port = 0
        self._http: WSGIServer | None = None

    def interceptors(self) -> list[RpcMetricsInterceptor]:
        return [RpcMetricsInterceptor(self.rpc_metrics)]

    def start_metrics_server(self, listen: str) -> int | None:
        """Serve `/metrics` on the host of the gRPC `listen` address, when a port is set.

        Return the bound port, or None when metrics are off.
        """
        port = self.options.metrics_port
        if port is None:
            return None
        host = metrics_host(listen)
        try:
            self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as error:
            raise OSError(f"cannot serve /metrics on {host}:{port}: {error}") from None
        self.metrics_port = int(self._http.server_port)
        log.info(
            "%s serving Prometheus metrics on http://%s:%d/metrics",
            self.service_name,
            host,
            self.metrics_port,
        )
        if self.options.metrics_port_file is not None:
            write_port_file(self.options.metrics_port_file, self.metrics_port)
        return self.metrics_port

    def close(self) -> None:
        """Stop the `/metrics` server and flush spans that are waiting for export."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self.tracer_provider.shutdown()


def metrics_host(listen: str) -> str:
    """Return the host part of HOST:PORT (IPv6 brackets removed; empty means all interfaces).

    `/metrics` binds the same host as the gRPC server, so a server on loopback keeps its
    metrics on loopback and one on 0.0.0.0 in a pod can be scraped.
    """
    host = listen.rpartition(":")[0].strip("[]")
    return host or "0.0.0.0"
