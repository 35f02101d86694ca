"""A worker's bounded queue: past max_queue a request is refused at once, not queued."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from quorum.v1 import inference_pb2_grpc
from tests.worker_fixtures import BackgroundWorker, generate_request

pytestmark = pytest.mark.model


@pytest.fixture()
def one_slot_worker(worker_model):
    worker = BackgroundWorker(worker_model, max_queue=1)
    worker.start()
    yield worker
    worker.stop()


def _wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def test_full_queue_rejects_request(one_slot_worker):
    outcomes: dict[str, object] = {}
    with grpc.insecure_channel(one_slot_worker.address) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        first = stub.Generate(generate_request(request_id="first"), timeout=300)
        next(first)  # a token: the first request has the model's lock

        def queued() -> None:
            outcomes["queued"] = list(stub.Generate(generate_request(request_id="q"), timeout=300))

        waiter = threading.Thread(target=queued)
        waiter.start()
        _wait_until(lambda: one_slot_worker.server.waiting() == 1)

        with pytest.raises(grpc.RpcError) as refused:
            list(stub.Generate(generate_request(request_id="third"), timeout=300))
        rest = list(first)
        waiter.join(timeout=300)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_queue 1" in refused.value.details()
    assert rest[-1].HasField("result")
    assert outcomes["queued"][-1].HasField("result")
