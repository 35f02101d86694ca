import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server.result_store import ResultStore

WINDOW_END = 1_559_563_200_000_000_000  # 2019-06-03T12:00:00Z


def _record(action="inform", fingerprint="f" * 64):
    return {
        "request_id": "r1",
        "symbol": "BTC",
        "window_end": WINDOW_END,
        "window_minutes": 60,
        "horizon_minutes": 30,
        "config_fingerprint": fingerprint,
        "requested_context_size": 25000,
        "volatile_window": False,
        "verdicts": [{"model": "m", "status": "answered", "direction": "bullish"}],
        "action": action,
    }


def test_write_then_read_with_pyarrow(tmp_path):
    store = ResultStore(tmp_path)
    outcome = store.write(_record())
    assert outcome.path.exists()
    assert not outcome.replaced
    table = pq.read_table(tmp_path / "results")
    assert table.num_rows == 1
    assert table.column("symbol").to_pylist() == ["BTC"]
    assert table.column("verdicts").to_pylist()[0][0]["direction"] == "bullish"


def test_same_key_replaces_without_duplicate(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record(action="inform"))
    second = store.write(_record(action="alert"))
    assert second.replaced
    table = store.read("BTC").table
    assert table.num_rows == 1
    assert table.column("action").to_pylist() == ["alert"]


def test_other_config_is_another_record(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record(fingerprint="a" * 64))
    store.write(_record(fingerprint="b" * 64))
    assert store.read().table.num_rows == 2


def test_leftover_temporary_file_is_never_read(tmp_path):
    store = ResultStore(tmp_path)
    outcome = store.write(_record())
    leftover = outcome.path.parent / f".{outcome.path.stem}.dead.partial"
    leftover.write_bytes(b"PAR1 half a file")
    assert store.read().table.num_rows == 1
    assert pq.read_table(tmp_path / "results").num_rows == 1


def test_failed_write_leaves_previous_record(tmp_path):
    store = ResultStore(tmp_path)
    first = store.write(_record(action="inform"))
    bad = _record(action="alert")
    bad["window_minutes"] = "not a number"
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        store.write(bad)
    assert store.read().table.column("action").to_pylist() == ["inform"]
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]


def test_other_window_length_is_another_record(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record())
    shorter = _record()
    shorter["window_minutes"] = 30
    assert not store.write(shorter).replaced
    assert store.read().table.num_rows == 2


def test_other_context_size_is_another_record(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_record())
    smaller = _record()
    smaller["requested_context_size"] = 4000
    assert not store.write(smaller).replaced
    assert store.read().table.num_rows == 2


def test_corrupt_file_is_skipped_and_reported(tmp_path):
    store = ResultStore(tmp_path)
    kept = store.write(_record())
    damaged = store.write(_record(fingerprint="b" * 64)).path
    damaged.write_bytes(damaged.read_bytes()[:100])
    records = store.read()
    assert records.table.column("record_id").to_pylist() == [kept.path.stem]
    assert [path for path, _ in records.skipped] == [damaged]
