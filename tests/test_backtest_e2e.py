"""`quorum backtest` and `quorum calibrate` end to end: real SmolLM2 workers, real bars.

One backtest of BTC and ETH over seven hours generates every verdict once. The tests after it
re-run the command line on the same lake: from the verdict cache when nothing that shapes a
verdict changed, with generation again when something did.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import config as config_module
from server.admission import Admission
from server.backtest.labels import Label, label_windows
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.backtest.recompute import recompute
from server.backtest.runner import BacktestPlan, BacktestRunner
from server.backtest.schedule import parse_moment, window_ends
from server.backtest.session import build_cycle
from server.backtest.window_table import WINDOWS_FILE, read_windows
from server.confidence_map import PlattMap
from server.consensus_policy import direction_name
from server.fanout import WorkerClients
from server.market_data import NS_PER_MINUTE, Bars, BookLevel, NewsItem, OrderBookSnapshot
from server.market_store import MarketStore
from server.verdict_cache import CACHE_DATASET
from tests.conftest import smollm2_entry, write_config
from tests.quorum_process import run_quorum

PERIOD = ("2019-01-02T00:00Z", "2019-01-02T07:00Z")
SYMBOLS = ("BTC", "ETH")
STARTING_WORKERS = "Starting workers"


def _config(directory: Path, lake: Path, model_path: Path, **settings: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    entry = smollm2_entry(model_path)
    entry.update(settings.pop("model", {}))
    defaults = {
        "default_context_size": 1024,
        "max_context_size": 2048,
        "horizon_minutes": 30,
        "max_concurrent_symbols": 2,
        "symbols": list(SYMBOLS),
    }
    defaults.update(settings)
    return write_config(directory, lake, [entry], **defaults)


def _backtest(
    config: Path,
    out: Path,
    *extra: str,
    period: tuple[str, str] = PERIOD,
    symbols: tuple[str, ...] = SYMBOLS,
) -> list[str]:
    options = [argument for symbol in symbols for argument in ("--symbol", symbol)]
    return [
        "--config",
        str(config),
        "backtest",
        *options,
        "--from",
        period[0],
        "--to",
        period[1],
        "--every",
        "60m",
        "--out",
        str(out),
        *extra,
    ]


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _windows(out: Path) -> list[dict]:
    return pq.read_table(out / WINDOWS_FILE).to_pylist()


@pytest.fixture(scope="module")
def lake(lake_with_bars: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("backtest") / "lake"
    shutil.copytree(lake_with_bars, copy)
    return copy


@pytest.fixture(scope="module")
def first_run(
    lake: Path, smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """The backtest that generates every verdict: its config, report folder and process."""
    directory = tmp_path_factory.mktemp("first")
    config = _config(directory, lake, smollm2_path)
    out = directory / "report"
    completed = run_quorum(*_backtest(config, out), timeout=1800)
    if completed.returncode != 0:
        pytest.fail(f"backtest failed ({completed.returncode}):\n{completed.stderr}")
    return config, out, completed


def test_backtest_scores_every_window(first_run) -> None:
    _, out, _ = first_run
    assert len(_windows(out)) == 2 * 7


def test_backtest_generates_each_verdict_once(first_run) -> None:
    _, out, _ = first_run
    verdicts = _report(out)["verdicts"]
    assert (verdicts["cache_hits"], verdicts["generations"]) == (0, 14)


def test_backtest_writes_report_files(first_run) -> None:
    _, out, _ = first_run
    names = {path.name for path in out.iterdir()}
    assert {"report.json", "report.txt", WINDOWS_FILE} <= names


@pytest.mark.parametrize("name", ["reliability.png", "cumulative_return.png"])
def test_backtest_plots_decode(first_run, name: str) -> None:
    _, out, _ = first_run
    image = matplotlib.image.imread(out / name)
    assert image.shape[0] > 200
    assert image.shape[1] > 200


def test_backtest_prints_the_table(first_run) -> None:
    _, out, completed = first_run
    assert completed.stdout.strip() == (out / "report.txt").read_text().strip()


def test_backtest_reports_every_predictor(first_run) -> None:
    _, out, _ = first_run
    names = {predictor["name"] for predictor in _report(out)["predictors"]}
    assert {"ensemble", "smollm2-135m", "always neutral", "momentum"} <= names


def test_labels_match_the_store(first_run, lake: Path) -> None:
    _, out, _ = first_run
    market = MarketStore(lake)
    ends = window_ends(parse_moment(PERIOD[0]), parse_moment(PERIOD[1]), 60)
    for symbol in SYMBOLS:
        labels = label_windows(market.read_bars(symbol, 2**62), ends, 30, 10.0)
        rows = [row for row in _windows(out) if row["symbol"] == symbol]
        expected = [direction_name(label.direction) for label in labels if isinstance(label, Label)]
        assert [row["label"] for row in rows] == expected


def test_backtest_writes_no_analysis_record(first_run, lake: Path) -> None:
    assert not (lake / "results").exists()


def test_backtest_fills_the_verdict_cache(first_run, lake: Path) -> None:
    entries = list((lake / CACHE_DATASET).rglob("*.parquet"))
    assert len(entries) == 14


def test_rerun_reads_every_verdict_from_the_cache(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    again = tmp_path / "again"
    completed = run_quorum(*_backtest(config, again))
    assert completed.returncode == 0, completed.stderr
    assert STARTING_WORKERS not in completed.stderr
    assert _report(again)["verdicts"]["cache_hits"] == 14


def test_rerun_gives_the_same_windows(first_run, tmp_path: Path) -> None:
    config, out, _ = first_run
    again = tmp_path / "again"
    run_quorum(*_backtest(config, again))
    assert _without_cache_flag(_windows(again)) == _without_cache_flag(_windows(out))


def _without_cache_flag(rows: list[dict]) -> list[dict]:
    return [{**row, "models": [{**m, "from_cache": None} for m in row["models"]]} for row in rows]


def _strict_config(directory: Path, lake: Path, model_path: Path) -> Path:
    return _config(
        directory,
        lake,
        model_path,
        confidence_threshold_execute=0.99,
        agreement_threshold_execute=0.99,
        confidence_threshold_alert=0.95,
        agreement_threshold_alert=0.95,
    )


def test_new_thresholds_reuse_the_cache(
    first_run, lake: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    config = _strict_config(tmp_path, lake, smollm2_path)
    completed = run_quorum(*_backtest(config, tmp_path / "report"))
    assert completed.returncode == 0, completed.stderr
    assert STARTING_WORKERS not in completed.stderr


def test_cached_cycle_equals_recompute(
    first_run, lake: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    _, out, _ = first_run
    config = _strict_config(tmp_path, lake, smollm2_path)
    run_quorum(*_backtest(config, tmp_path / "report"))
    recomputed = recompute(read_windows(out / WINDOWS_FILE), config_module.load(config))
    rerun = read_windows(tmp_path / "report" / WINDOWS_FILE)
    assert [w.action for w in rerun] == [w.action for w in recomputed]
    assert [w.confidence_level for w in rerun] == [w.confidence_level for w in recomputed]


def test_calibration_map_reuses_the_cache(
    first_run, lake: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    calibration = {"method": "platt", "slope": 0.5, "intercept": -0.5}
    config = _config(
        tmp_path, lake, smollm2_path, model={"weight": 2.0, "confidence_calibration": calibration}
    )
    completed = run_quorum(*_backtest(config, tmp_path / "report"))
    assert completed.returncode == 0, completed.stderr
    assert STARTING_WORKERS not in completed.stderr
    mapping = PlattMap(0.5, -0.5)
    for row in _windows(tmp_path / "report"):
        (model,) = row["models"]
        if model["answered"]:
            assert model["calibrated_confidence"] == mapping.apply(model["confidence"])


def test_new_generation_settings_invalidate_the_cache(
    first_run, lake: Path, smollm2_path: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, lake, smollm2_path, model={"max_tokens": 150})
    arguments = _backtest(config, tmp_path / "report", period=(PERIOD[0], "2019-01-02T01:00Z"))
    completed = run_quorum(*arguments)
    assert completed.returncode == 0, completed.stderr
    verdicts = _report(tmp_path / "report")["verdicts"]
    assert (verdicts["cache_hits"], verdicts["generations"]) == (0, 2)


def test_calibrate_writes_a_loadable_config(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    out = tmp_path / "calibration"
    completed = run_quorum(*_calibrate(config, out))
    assert completed.returncode == 0, completed.stderr
    loaded = config_module.load(out / "calibrated.yaml")
    assert loaded.models[0].confidence_calibration is not None


def test_calibrate_needs_no_generation(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    completed = run_quorum(*_calibrate(config, tmp_path / "calibration"))
    assert STARTING_WORKERS not in completed.stderr


def test_calibrate_reports_held_out_windows_only(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    out = tmp_path / "calibration"
    completed = run_quorum(*_calibrate(config, out))
    assert completed.returncode == 0, completed.stderr
    ends = [row["window_end"] for row in _windows(out)]
    assert min(ends).isoformat() == "2019-01-02T05:00:00+00:00"


def test_calibrate_names_its_method(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    out = tmp_path / "calibration"
    run_quorum(*_calibrate(config, out))
    method = _report(out)["calibration"]["method"]
    assert "Hedge" in method
    assert "Platt" in method


def test_calibrate_rejects_overlapping_periods(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    arguments = _calibrate(config, tmp_path / "calibration")
    arguments[arguments.index("--test-from") + 1] = "2019-01-02T04:00Z"
    completed = run_quorum(*arguments)
    assert completed.returncode == 2
    assert "held-out period must come after" in completed.stderr


def _calibrate(config: Path, out: Path) -> list[str]:
    symbols = [argument for symbol in SYMBOLS for argument in ("--symbol", symbol)]
    return [
        "--config",
        str(config),
        "calibrate",
        *symbols,
        "--fit-from",
        PERIOD[0],
        "--fit-to",
        "2019-01-02T05:00Z",
        "--test-from",
        "2019-01-02T05:00Z",
        "--test-to",
        PERIOD[1],
        "--every",
        "60m",
        "--out",
        str(out),
    ]


def test_ctrl_c_stops_and_rerun_resumes(first_run, lake: Path, tmp_path: Path) -> None:
    config, _, _ = first_run
    later = ("2019-01-02T07:00Z", "2019-01-02T09:00Z")
    arguments = _backtest(config, tmp_path / "report", period=later, symbols=("BTC",))
    cache = lake / CACHE_DATASET
    before = len(list(cache.rglob("*.parquet")))
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 300
    while len(list(cache.rglob("*.parquet"))) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr

    resumed = run_quorum(*arguments)
    assert resumed.returncode == 0, resumed.stderr
    assert _report(tmp_path / "report")["verdicts"]["cache_hits"] >= 1


def test_unknown_symbol_is_a_usage_error(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    arguments = _backtest(config, tmp_path / "report")
    arguments[arguments.index("BTC")] = "DOGE"
    completed = run_quorum(*arguments)
    assert completed.returncode == 2
    assert "DOGE" in completed.stderr


def test_window_outside_the_data_is_skipped(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    period = ("2030-01-01T00:00Z", "2030-01-01T03:00Z")
    completed = run_quorum(*_backtest(config, tmp_path / "report", period=period))
    assert completed.returncode == 1
    assert "No window of the period could be scored" in completed.stderr


FUTURE_DAYS = 3


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    window=st.integers(0, 6),
    scale=st.floats(0.5, 2.0).filter(lambda value: value != 1.0),
    after_minutes=st.integers(1, FUTURE_DAYS * 24 * 60),
    headline=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
)
def test_future_data_reaches_no_context(
    first_run,
    lake: Path,
    tmp_path_factory: pytest.TempPathFactory,
    window: int,
    scale: float,
    after_minutes: int,
    headline: str,
) -> None:
    """Bars, news and order books after window_end change no context: every verdict of the
    window is read back from the cache under the same key, and no model is asked again.

    The lake contains BTC and ETH only, so both the symbol's own data and its related symbol's
    (the correlation section) change after window_end."""
    config_path, out, _ = first_run
    copy = tmp_path_factory.mktemp("future") / "lake"
    shutil.copytree(lake, copy)
    market = MarketStore(copy)
    window_end = parse_moment(PERIOD[0]) + window * 60 * NS_PER_MINUTE
    later = window_end + after_minutes * NS_PER_MINUTE
    for symbol in SYMBOLS:
        _rescale_bars_after(market, symbol, window_end, scale)
        market.write_news(symbol, [NewsItem(later, headline, "after the window", "test")])
        level = (BookLevel(1.0, 1.0),)
        market.write_order_book(symbol, [OrderBookSnapshot(later, level, level)])

    config = dataclasses.replace(config_module.load(config_path), data_lake=str(copy))
    requested: list[str] = []

    async def no_generation() -> WorkerClients:
        requested.append("a model")
        raise RuntimeError("a verdict was missing from the cache: the context changed")

    cycle, store = build_cycle(config, no_generation)
    runner = BacktestRunner(cycle, store, config)
    plan = BacktestPlan(SYMBOLS, window_end, window_end + NS_PER_MINUTE, 60)
    run = asyncio.run(runner.run(plan, asyncio.Event()))
    earlier = {(w.symbol, w.window_end): w for w in read_windows(out / WINDOWS_FILE)}
    assert requested == []
    assert len(run.outcomes) == len(SYMBOLS)
    for outcome in run.outcomes:
        before = earlier[(outcome.symbol, outcome.window_end)]
        assert _calls_without_cache_flag(outcome) == _calls_without_cache_flag(before)


def _rescale_bars_after(market: MarketStore, symbol: str, after_ns: int, scale: float) -> None:
    bars = market.read_bars(symbol, after_ns + FUTURE_DAYS * 24 * 60 * NS_PER_MINUTE, after_ns)
    market.write_bars(
        Bars(
            symbol,
            bars.time,
            bars.open * scale,
            bars.high * scale,
            bars.low * scale,
            bars.close * scale,
            bars.volume * scale,
        )
    )


def _calls_without_cache_flag(outcome: WindowOutcome) -> list[ModelCall]:
    return [dataclasses.replace(call, from_cache=False) for call in outcome.models]


def test_symbols_wait_for_a_cycle_slot(first_run, lake: Path) -> None:
    """Both symbols run at once, and with one slot the second waits for the first."""
    config_path, _, _ = first_run
    config = dataclasses.replace(config_module.load(config_path), max_concurrent_symbols=1)

    async def no_generation() -> WorkerClients:
        raise RuntimeError("a verdict was missing from the cache")

    cycle, store = build_cycle(config, no_generation)
    waiting: list[int] = []
    cycle.admission = Admission(1, "fifo", waiting.append)
    runner = BacktestRunner(cycle, store, config)
    start = parse_moment(PERIOD[0])
    plan = BacktestPlan(SYMBOLS, start, start + 3 * 60 * NS_PER_MINUTE, 60)
    run = asyncio.run(runner.run(plan, asyncio.Event()))
    assert len(run.outcomes) == 6
    assert max(waiting) == 1


def test_unwritable_report_file_keeps_the_cache_hint(first_run, tmp_path: Path) -> None:
    config, _, _ = first_run
    out = tmp_path / "report"
    (out / "report.json").mkdir(parents=True)
    completed = run_quorum(*_backtest(config, out))
    assert completed.returncode == 1
    assert "run again with another --out" in completed.stderr
