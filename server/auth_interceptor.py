"""Server interceptor that requires a bearer token on every coordinator method but health.

Health checks stay open so that probes need no token. Server reflection needs the token: it
would only reveal the published proto schema, but with it closed an unauthenticated caller
reaches nothing but the health check (`grpcurl -H 'authorization: Bearer ...'` sends the
token with reflection requests too).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.bearer_token import Rejection, TokenEntry, TokenVerifier, expiry_text

log = logging.getLogger(__name__)

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)
# A client retrying with a bad token would otherwise write one log line per call.
REJECTION_LOG_INTERVAL_S = 60.0

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class RejectionLog:
    """Logs rejected calls: the first of each reason at once, then one line per interval
    with the count, so a client retrying in a loop cannot flood the log."""

    def __init__(self, interval_s: float = REJECTION_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.counts: Counter[Rejection] = Counter()
        self._logged_at: dict[Rejection, float] = {}
        self._logged_count: Counter[Rejection] = Counter()

    def record(self, rejection: Rejection, method: str, peer: str) -> None:
        self.counts[rejection] += 1
        now = time.monotonic()
        last = self._logged_at.get(rejection)
        if last is not None and now - last < self.interval_s:
            return
        since = self.counts[rejection] - self._logged_count[rejection]
        self._logged_at[rejection] = now
        self._logged_count[rejection] = self.counts[rejection]
        log.warning(
            "Rejected %s from %s: %s (%d such calls since the last report, %d in all)",
            method,
            peer,
            rejection.name.lower(),
            since,
            self.counts[rejection],
        )


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Aborts a call with UNAUTHENTICATED when its bearer token is missing, invalid or expired."""

    def __init__(self, verifier: TokenVerifier, rejections: RejectionLog | None = None) -> None:
        self.verifier = verifier
        self.rejections = rejections or RejectionLog()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        values = [
            str(value)
            for key, value in handler_call_details.invocation_metadata or ()
            if key == "authorization"
        ]
        rejection, entry = self.verifier.check(values)
        if rejection is None:
            return handler
        return self._rejecting_handler(handler, method, rejection, entry)

    def _rejecting_handler(
        self,
        handler: grpc.RpcMethodHandler,
        method: str,
        rejection: Rejection,
        entry: TokenEntry | None,
    ) -> grpc.RpcMethodHandler:
        message = rejection.value
        if rejection is Rejection.EXPIRED and entry is not None:
            message = f"{message} at {expiry_text(entry)}: use a current token"

        async def reject(request: Any, context: grpc.aio.ServicerContext) -> None:
            self.rejections.record(rejection, method, context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return _same_kind_handler(handler, reject)


def _same_kind_handler(
    handler: grpc.RpcMethodHandler, behavior: Callable[..., Awaitable[None]]
) -> grpc.RpcMethodHandler:
    """Return a handler of the same streaming kind and serializers that runs `behavior`."""
    if handler.unary_unary:
        make = grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        make = grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        make = grpc.stream_unary_rpc_method_handler
    else:
        make = grpc.stream_stream_rpc_method_handler
    return make(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
