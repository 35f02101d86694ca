"""The plaintext health-only listener reports the server's status and serves nothing else."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from quorum.v1 import inference_pb2, inference_pb2_grpc
from server.health_listener import start_health_listener


async def _scenario() -> tuple[str, str, grpc.StatusCode]:
    servicer = health.aio.HealthServicer()
    await servicer.set("quorum.v1.Inference", health_pb2.HealthCheckResponse.SERVING)
    server, port = await start_health_listener(servicer, "127.0.0.1:50061", 0)
    request = health_pb2.HealthCheckRequest(service="quorum.v1.Inference")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        serving = (await check(request, timeout=10)).status
        await servicer.enter_graceful_shutdown()
        draining = (await check(request, timeout=10)).status
        describe = inference_pb2_grpc.InferenceStub(channel).Describe
        try:
            await describe(inference_pb2.DescribeRequest(), timeout=10)
            other = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            other = error.code()
    await server.stop(None)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name
    return name(serving), name(draining), other


def test_health_listener_serves_health_only():
    assert asyncio.run(_scenario()) == ("SERVING", "NOT_SERVING", grpc.StatusCode.UNIMPLEMENTED)
