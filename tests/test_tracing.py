"""Trace export and propagation: OTLP to a collector on loopback, W3C traceparent metadata."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer, format_trace_id

from server.tracing import (
    child_span,
    context_with,
    extract_metadata,
    inject_metadata,
    make_tracer_provider,
    tracer_of,
)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector that keeps every export request it receives."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.received = threading.Event()

    def Export(self, request, context):
        self.requests.append(request)
        self.received.set()
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture()
def collector() -> Iterator[tuple[Collector, str]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"http://127.0.0.1:{port}"
    server.stop(None)


def test_otlp_export_reaches_collector(collector):
    servicer, endpoint = collector
    provider = make_tracer_provider("quorum-test", endpoint)
    with child_span(tracer_of(provider), "cycle", None, {"quorum.symbol": "BTC"}):
        pass
    # Shutting down flushes the batch processor.
    provider.shutdown()
    spans = [
        span
        for request in servicer.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    resource = servicer.requests[0].resource_spans[0].resource
    attributes = {item.key: item.value.string_value for item in resource.attributes}
    assert [span.name for span in spans] == ["cycle"]
    assert attributes["service.name"] == "quorum-test"


def test_no_endpoint_exports_nothing():
    provider = make_tracer_provider("quorum-test")
    processors = provider._active_span_processor._span_processors
    assert processors == ()


def test_traceparent_round_trip():
    spans = InMemorySpanExporter()
    provider = make_tracer_provider("quorum-test", processors=[SimpleSpanProcessor(spans)])
    tracer = tracer_of(provider)
    with child_span(tracer, "client", None) as client:
        metadata = inject_metadata(context_with(client, None), [("x-request-id", "r1")])
        with child_span(tracer, "server", extract_metadata(metadata)):
            pass
    server_span, client_span = spans.get_finished_spans()
    traceparent = dict(metadata)["traceparent"]
    assert dict(metadata)["x-request-id"] == "r1"
    assert traceparent.split("-")[1] == format_trace_id(client_span.context.trace_id)
    assert server_span.parent.span_id == client_span.context.span_id


def test_missing_traceparent_starts_new_trace():
    spans = InMemorySpanExporter()
    provider = make_tracer_provider("quorum-test", processors=[SimpleSpanProcessor(spans)])
    with child_span(tracer_of(provider), "server", extract_metadata([("x-request-id", "r")])):
        pass
    (span,) = spans.get_finished_spans()
    assert span.parent is None


def test_span_records_error():
    spans = InMemorySpanExporter()
    provider = make_tracer_provider("quorum-test", processors=[SimpleSpanProcessor(spans)])
    with (
        pytest.raises(ValueError, match="bad bar"),
        child_span(tracer_of(provider), "load_data", None),
    ):
        raise ValueError("bad bar")
    (span,) = spans.get_finished_spans()
    assert not span.status.is_ok
    assert span.events[0].name == "exception"


def test_no_provider_gives_noop_tracer():
    assert isinstance(tracer_of(None), NoOpTracer)
