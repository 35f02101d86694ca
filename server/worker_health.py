"""Health of every worker address, pushed by the workers' grpc.health.v1 Watch streams.

One task per address keeps a Watch stream open and records the latest status. A worker that
restarts is seen SERVING again as soon as its health stream reconnects, without restarting
the coordinator, and one that drains on SIGTERM is seen NOT_SERVING at once. The fan-out
calls SERVING replicas first. The status never prevents a call, it only orders them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

INFERENCE_SERVICE = "quorum.v1.Inference"
RECONNECT_S = 1.0
UNKNOWN = "UNKNOWN"
UNREACHABLE = "UNREACHABLE"


class WorkerHealth:
    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def watch(self, channels: Iterable[tuple[str, grpc.aio.Channel]]) -> None:
        """Start one Watch task per (address, channel)."""
        for address, channel in channels:
            self.status.setdefault(address, UNKNOWN)
            self._tasks.append(asyncio.create_task(self._watch(address, channel)))

    def is_serving(self, address: str) -> bool:
        return self.status.get(address) == "SERVING"

    def order(self, addresses: tuple[str, ...]) -> tuple[str, ...]:
        """Return the addresses with the SERVING ones first, each group in its given order."""
        serving = tuple(a for a in addresses if self.is_serving(a))
        return serving + tuple(a for a in addresses if not self.is_serving(a))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _watch(self, address: str, channel: grpc.aio.Channel) -> None:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=INFERENCE_SERVICE)
        while True:
            try:
                async for reply in stub.Watch(request):
                    self._set(
                        address, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                    )
            except grpc.aio.AioRpcError as error:
                self._set(address, UNREACHABLE, error.code().name)
            await asyncio.sleep(RECONNECT_S)

    def _set(self, address: str, status: str, detail: str = "") -> None:
        previous = self.status.get(address)
        self.status[address] = status
        if previous != status:
            level = logging.INFO if status == "SERVING" else logging.WARNING
            suffix = f" ({detail})" if detail else ""
            log.log(level, "Worker at %s is %s%s", address, status, suffix)
