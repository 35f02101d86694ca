"""The coordinator's view of worker health follows the workers' own Watch streams."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from server.fanout import CHANNEL_OPTIONS
from server.worker_health import WorkerHealth
from tests.worker_fixtures import BackgroundWorker

pytestmark = pytest.mark.model


async def _status_after(health: WorkerHealth, address: str, expected: str, timeout_s: float) -> str:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while health.status.get(address) != expected:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    return health.status.get(address, "")


def test_watch_sees_serving_then_unreachable(worker_model):
    worker = BackgroundWorker(worker_model)
    address = worker.start()
    seen: list[str] = []

    async def scenario() -> None:
        health = WorkerHealth()
        channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        health.watch([(address, channel)])
        seen.append(await _status_after(health, address, "SERVING", 30))
        await asyncio.to_thread(worker.stop)
        seen.append(await _status_after(health, address, "UNREACHABLE", 30))
        await health.close()
        await channel.close()

    asyncio.run(scenario())
    assert seen == ["SERVING", "UNREACHABLE"]


def test_order_puts_serving_first():
    health = WorkerHealth()
    health.status.update({"a:1": "UNREACHABLE", "b:2": "SERVING", "c:3": "UNKNOWN"})
    assert health.order(("a:1", "b:2", "c:3")) == ("b:2", "a:1", "c:3")
