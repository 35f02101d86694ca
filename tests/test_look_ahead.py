"""No look-ahead at the coordinator: data after window_end never reaches the context."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from quorum.v1 import ensemble_pb2
from server import config as config_module
from server.cycle import Cycle, CycleDependencies
from server.fanout import WorkerClients
from server.market_data import NS_PER_MINUTE, BookLevel, NewsItem, OrderBookSnapshot
from server.market_store import MarketStore
from server.result_store import ResultStore
from server.tokenizer import ReferenceTokenizer
from tests.conftest import WINDOW_END, smollm2_entry, write_config


def _window_end_ns() -> int:
    stamp = Timestamp()
    stamp.FromJsonString(WINDOW_END)
    return stamp.ToNanoseconds()


def _context_of(lake, tmp_path, smollm2_path) -> ensemble_pb2.ContextSummary:
    path = write_config(tmp_path, lake, [smollm2_entry(smollm2_path)])
    config = config_module.load(path)
    deps = CycleDependencies(
        config=config,
        market=MarketStore(lake),
        results=ResultStore(lake),
        # No worker is reached: only the events before fan-out are read.
        workers=WorkerClients({"smollm2-135m": "127.0.0.1:1"}),
        tokenizer=ReferenceTokenizer("smollm2-135m", smollm2_path),
    )
    request = ensemble_pb2.AnalyzeRequest(symbol="BTC", window_minutes=60, context_size=4000)
    request.window_end.FromJsonString(WINDOW_END)

    async def first_event() -> ensemble_pb2.AnalysisEvent:
        events = Cycle(deps).run(request)
        try:
            return await anext(events)
        finally:
            await events.aclose()
            await deps.workers.close()

    event = asyncio.run(first_event())
    assert event.WhichOneof("event") == "context_ready"
    return event.context_ready


def _snapshot(time_ns: int, mid: float) -> OrderBookSnapshot:
    return OrderBookSnapshot(
        time=time_ns,
        bids=(BookLevel(mid - 1, 2.0), BookLevel(mid - 2, 3.0)),
        asks=(BookLevel(mid + 1, 1.5), BookLevel(mid + 2, 4.0)),
    )


@pytest.fixture()
def lakes(tmp_path, lake_with_bars):
    end = _window_end_ns()
    full = MarketStore(tmp_path / "full")
    cut = MarketStore(tmp_path / "cut")
    source = MarketStore(lake_with_bars)
    for symbol in ("BTC", "ETH"):
        bars = source.read_bars(symbol, end + 400 * 24 * 60 * NS_PER_MINUTE)
        full.write_bars(bars)
        cut.write_bars(bars.until(end))
    known_book = [_snapshot(end - m * NS_PER_MINUTE, 8700.0) for m in (50, 20, 5)]
    later_book = [_snapshot(end + m * NS_PER_MINUTE, 1.0e6) for m in (1, 30)]
    known_news = [NewsItem(end - 60 * NS_PER_MINUTE, "Exchange volume rises", "Body", "wire")]
    later_news = [NewsItem(end + NS_PER_MINUTE, "Future headline leaks", "Later", "wire")]
    full.write_order_book("BTC", known_book + later_book)
    cut.write_order_book("BTC", known_book)
    full.write_news("BTC", known_news + later_news)
    cut.write_news("BTC", known_news)
    return tmp_path / "full", tmp_path / "cut"


def test_later_data_leaves_context_unchanged(lakes, tmp_path, smollm2_path):
    full_lake, cut_lake = lakes
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with_future = _context_of(full_lake, tmp_path / "a", smollm2_path)
    without_future = _context_of(cut_lake, tmp_path / "b", smollm2_path)
    assert with_future.inputs_fingerprint == without_future.inputs_fingerprint
    assert with_future.last_bar_time.ToNanoseconds() <= _window_end_ns()
    assert list(with_future.sections) == list(without_future.sections)
    assert with_future.used_tokens == without_future.used_tokens
