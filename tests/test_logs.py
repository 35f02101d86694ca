"""Log formatting: JSON lines and text lines carrying symbol, window_end, model, request id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from server import logs


@pytest.fixture()
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logs.make_handler("json", stream)
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_fields(captured):
    logger, stream, _ = captured
    logger.info("Model %s answered", "m1", extra={"model": "m1", "request_id": "r1"})
    (line,) = _lines(stream)
    assert line["message"] == "Model m1 answered"
    assert line["level"] == "INFO"
    assert line["logger"] == "tests.logs"
    assert line["model"] == "m1"
    assert line["request_id"] == "r1"
    assert "symbol" not in line
    assert line["time"].endswith("+00:00")


def test_json_bound_fields(captured):
    logger, stream, _ = captured
    with logs.bound_fields(symbol="BTC", window_end="2019-06-03T12:00:00Z"):
        logger.info("inside")
    logger.info("outside")
    inside, outside = _lines(stream)
    assert inside["symbol"] == "BTC"
    assert inside["window_end"] == "2019-06-03T12:00:00Z"
    assert "symbol" not in outside


def test_json_extra_wins_over_bound(captured):
    logger, stream, _ = captured
    with logs.bound_fields(model="bound"):
        logger.info("x", extra={"model": "explicit"})
    (line,) = _lines(stream)
    assert line["model"] == "explicit"


def test_json_exception_on_one_line(captured):
    logger, stream, _ = captured
    try:
        raise ValueError("bad value 3")
    except ValueError:
        logger.exception("failed")
    text = stream.getvalue()
    (line,) = _lines(stream)
    assert text.count("\n") == 1
    assert "ValueError: bad value 3" in line["exception"]


def test_bound_fields_follow_tasks(captured):
    logger, stream, _ = captured

    async def model_task(name: str) -> None:
        with logs.bound_fields(model=name):
            await asyncio.sleep(0)
            logger.info("done")

    async def cycle() -> None:
        with logs.bound_fields(request_id="req-7"):
            await asyncio.gather(model_task("a"), model_task("b"))
            await asyncio.to_thread(logger.info, "in a thread")

    asyncio.run(cycle())
    lines = _lines(stream)
    assert sorted(line.get("model") for line in lines[:2]) == ["a", "b"]
    assert {line["request_id"] for line in lines} == {"req-7"}
    assert "model" not in lines[2]


def test_text_line_fields():
    stream = io.StringIO()
    handler = logs.make_handler("text", stream)
    record = logging.LogRecord("quorum.x", logging.WARNING, __file__, 1, "slow %s", ("m",), None)
    record.model = "m"
    record.request_id = "r"
    handler.handle(record)
    line = stream.getvalue().strip()
    assert line.endswith("WARNING quorum.x: slow m [model=m request_id=r]")


def test_unknown_field_rejected():
    with pytest.raises(ValueError, match="unknown log fields"):
        logs.bind_fields(colour="red")


def test_unknown_format_rejected():
    with pytest.raises(ValueError, match="invalid log format 'xml'"):
        logs.make_handler("xml")
