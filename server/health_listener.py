"""A plaintext listener that serves only grpc.health.v1, for probes that cannot speak TLS.

The kubelet's gRPC probes connect without TLS, so a server whose API runs TLS cannot be
probed on its own port. This second listener shares the server's HealthServicer, so it
reports the same SERVING and NOT_SERVING; it serves no other service, reveals nothing but
that status and needs no credentials.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2_grpc

log = logging.getLogger(__name__)


async def start_health_listener(
    servicer: health.aio.HealthServicer, listen: str, port: int
) -> tuple[grpc.aio.Server, int]:
    """Serve `servicer` on `port` at the host of `listen`; return the server and bound port."""
    host = listen.rpartition(":")[0] or "0.0.0.0"
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as error:
        raise OSError(f"cannot serve health checks on {host}:{port}: {error}") from None
    if bound == 0:
        raise OSError(f"cannot serve health checks on {host}:{port}")
    await server.start()
    log.info("Health checks served without TLS on %s:%d (grpc.health.v1 only)", host, bound)
    return server, bound
