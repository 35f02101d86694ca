"""OpenTelemetry tracing: a tracer provider per process and W3C trace context over gRPC.

Nothing is exported unless an OTLP endpoint is given: the provider then records spans but
has no span processor. No global tracer provider or propagator is set; the tracer is passed
to the objects that make spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "quorum"
_PROPAGATOR = TraceContextTextMapPropagator()


def make_tracer_provider(
    service_name: str,
    otlp_endpoint: str | None = None,
    processors: Sequence[SpanProcessor] = (),
) -> TracerProvider:
    """Return a tracer provider for `service_name`.

    Spans go to the OTLP endpoint when one is given, and to each of `processors`. Tests pass
    a processor with an in-memory exporter.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        # Imported here so that a process without an endpoint does not load the exporter.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        insecure = not otlp_endpoint.startswith("https://")
        exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=insecure)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("Exporting traces of %s over OTLP to %s", service_name, otlp_endpoint)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def tracer_of(provider: trace.TracerProvider | None) -> trace.Tracer:
    """Return the provider's tracer, or a tracer that records nothing for None."""
    if provider is None:
        return trace.NoOpTracer()
    return provider.get_tracer(INSTRUMENTATION_NAME)


def inject_metadata(
    span_context: otel_context.Context, metadata: Iterable[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    """Return gRPC metadata with the W3C `traceparent` (and `tracestate`) of the context."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=span_context)
    return (*metadata, *carrier.items())


def extract_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> otel_context.Context:
    """Return the trace context that a caller sent in gRPC metadata (empty when none)."""
    carrier = {key.lower(): value for key, value in (metadata or ()) if isinstance(value, str)}
    return _PROPAGATOR.extract(carrier)


@contextlib.contextmanager
def child_span(
    tracer: trace.Tracer,
    name: str,
    parent: otel_context.Context | None,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
) -> Iterator[trace.Span]:
    """Open a span under `parent` without making it current, and end it on exit.

    The span is not attached to the running context because a cycle's steps run in async
    generators and threads, where an attached context could be detached in another task.
    An exception is recorded on the span and sets its status to ERROR.
    """
    span = tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
    try:
        yield span
    except (Exception, asyncio.CancelledError) as error:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        raise
    finally:
        span.end()


def context_with(span: trace.Span, parent: otel_context.Context | None) -> otel_context.Context:
    """Return `parent` (or an empty context) with `span` as the parent of new spans."""
    return trace.set_span_in_context(span, parent or otel_context.Context())
