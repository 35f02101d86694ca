"""Prometheus metrics of a grpc.aio server's calls, by service, method and status code.

The names and labels are those of go-grpc-prometheus (`grpc_server_handled_total` and its
neighbours), which existing Grafana dashboards for gRPC servers query.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

RPC_BUCKETS_S = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600)


class RpcMetrics:
    """The three gRPC server metrics, on the given registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        self.started = Counter(
            "grpc_server_started_total",
            "RPCs started on the server",
            labels,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its status, by method",
            labels,
            buckets=RPC_BUCKETS_S,
            registry=registry,
        )


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Count every RPC's start, end, status code and duration."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            # An unknown method: grpc returns UNIMPLEMENTED without calling any behavior.
            return handler
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        call = _CallLabels(self._metrics, _rpc_type(handler), service, method)
        return _wrap(handler, call)


class _CallLabels:
    def __init__(self, metrics: RpcMetrics, rpc_type: str, service: str, method: str) -> None:
        self._metrics = metrics
        self._labels = (rpc_type, service, method)

    def start(self) -> float:
        self._metrics.started.labels(*self._labels).inc()
        return time.perf_counter()

    def finish(self, started: float, code: str) -> None:
        self._metrics.handled.labels(*self._labels, code).inc()
        self._metrics.handling_seconds.labels(*self._labels).observe(time.perf_counter() - started)


def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _wrap(handler: grpc.RpcMethodHandler, call: _CallLabels) -> grpc.RpcMethodHandler:
    kinds = {
        "unary": (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        "server_stream": (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        "client_stream": (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        "bidi_stream": (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    }
    behavior, make_handler = kinds[_rpc_type(handler)]
    return make_handler(
        _observed(behavior, call),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _observed(behavior: Callable[..., Any], call: _CallLabels) -> Callable[..., Any]:
    """Wrap a behavior of any shape: an async generator, or a coroutine that returns or
    writes its responses with context.write (as grpc's health Watch does)."""
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = call.start()
            code = "UNKNOWN"
            try:
                async for response in behavior(request, context):
                    yield response
                code = _status_name(context, "OK")
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except Exception:
                # context.abort raises after setting the code; anything else is UNKNOWN.
                code = _status_name(context, "UNKNOWN")
                raise
            finally:
                call.finish(started, code)

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = call.start()
        code = "UNKNOWN"
        try:
            response = await behavior(request, context)
            code = _status_name(context, "OK")
            return response
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception:
            code = _status_name(context, "UNKNOWN")
            raise
        finally:
            call.finish(started, code)

    return unary


def _status_name(context: grpc.aio.ServicerContext, default: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    # grpc.aio keeps the code as an int until the call ends.
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return default
