"""Backtest parts without models: progress, the windows file, recompute, the learned config."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
import yaml

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server import config as config_module
from server.backtest.calibrated_config import write_calibrated_config
from server.backtest.documents import backtest_report, render_backtest
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.backtest.progress import Progress
from server.backtest.recompute import recompute
from server.backtest.runner import BacktestPlan, BacktestRun, SkippedWindow
from server.backtest.window_table import WINDOWS_FILE, read_windows, write_windows
from server.confidence_map import PlattMap
from server.config import ConfigError

WINDOW_END = 1_546_387_200 * 10**9


def _call(model: str, direction: int, confidence: float, weight: float = 1.0) -> ModelCall:
    return ModelCall(
        model=model,
        weight=weight,
        answered=direction != 0,
        direction=direction,
        confidence=confidence,
        calibrated_confidence=confidence,
        prediction_pct=0.1,
        from_cache=True,
    )


def _window(*calls: ModelCall, offset: int = 0) -> WindowOutcome:
    return WindowOutcome(
        symbol="BTC",
        window_end=WINDOW_END + offset,
        label=BULLISH,
        realized_bps=12.5,
        momentum_bps=-3.0,
        models=calls,
        overall_direction=BULLISH,
        confidence_level=0.8,
        agreement_strength=1.0,
        action="alert",
        decision_direction=BULLISH,
    )


def _config_file(directory: Path, **model: object) -> Path:
    entries = [
        {"name": "a", "path": "models/a.gguf", "weight": 1.0, **model},
        {"name": "b", "path": "/models/b.gguf", "weight": 3.0},
    ]
    path = directory / "quorum.yaml"
    path.write_text(yaml.safe_dump({"models": entries, "insecure": True}))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_estimates_time_left() -> None:
    clock = Clock()
    progress = Progress(4, io.StringIO(), clock)
    clock.now = 30.0
    progress.advance(generated=2)
    assert "1/4 windows" in progress.line()
    assert "about 1:30 left" in progress.line()


def test_progress_counts_cache_and_skips() -> None:
    progress = Progress(3, io.StringIO(), Clock())
    progress.advance(cached=2)
    progress.advance(skipped=True)
    assert "verdicts 2 cached, 0 generated" in progress.line()
    assert "1 skipped" in progress.line()


def test_progress_logs_without_terminal() -> None:
    stream = io.StringIO()
    clock = Clock()
    progress = Progress(100, stream, clock)
    for _ in range(10):
        progress.advance()
    progress.finish()
    assert stream.getvalue().count("\n") == 2


def test_windows_file_round_trip(tmp_path: Path) -> None:
    windows = [
        _window(_call("a", BULLISH, 0.7), _call("b", 0, 0.0)),
        _window(_call("a", BEARISH, 0.6), _call("b", NEUTRAL, 0.5), offset=3_600 * 10**9),
    ]
    write_windows(windows, tmp_path)
    assert read_windows(tmp_path / WINDOWS_FILE) == windows


def test_recompute_keeps_same_config(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    windows = [_window(_call("a", BULLISH, 0.9), _call("b", BULLISH, 0.8, weight=3.0))]
    (again,) = recompute(recompute(windows, config), config)
    assert again.confidence_level == pytest.approx((0.9 + 3.0 * 0.8) / 4.0, rel=1e-15)


def test_recompute_applies_maps(tmp_path: Path) -> None:
    calibration = {"method": "platt", "slope": 0.5, "intercept": 0.0}
    config = config_module.load(_config_file(tmp_path, confidence_calibration=calibration))
    windows = [_window(_call("a", BULLISH, 0.9), _call("b", BULLISH, 0.8, weight=3.0))]
    (window,) = recompute(windows, config)
    assert window.models[0].calibrated_confidence == PlattMap(0.5, 0.0).apply(0.9)


def test_recompute_rejects_unknown_model(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    with pytest.raises(ValueError, match="'c'"):
        recompute([_window(_call("c", BULLISH, 0.9))], config)


def test_learned_config_loads_back(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    maps = {"a": PlattMap(0.7, -0.2), "b": PlattMap()}
    target = tmp_path / "out" / "learned.yaml"
    loaded = write_calibrated_config(config, {"a": 2.5, "b": 1.5}, maps, target, "header")
    assert [m.weight for m in loaded.models] == [2.5, 1.5]
    assert loaded.model("a").confidence_calibration == PlattMap(0.7, -0.2)


def test_learned_config_paths_absolute(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    target = tmp_path / "elsewhere" / "learned.yaml"
    loaded = write_calibrated_config(config, {"a": 1.0, "b": 3.0}, {}, target, "")
    assert loaded.model("a").path == str((tmp_path / "models" / "a.gguf").resolve())


def test_learned_config_starts_with_header(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    target = tmp_path / "learned.yaml"
    write_calibrated_config(config, {"a": 1.0, "b": 3.0}, {}, target, "Method: Hedge\n\nfit")
    assert target.read_text().startswith("# Method: Hedge\n#\n# fit\n")


def test_learned_config_rejects_unknown_model(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    with pytest.raises(ConfigError, match="zeta"):
        write_calibrated_config(config, {"zeta": 1.0}, {}, tmp_path / "learned.yaml", "")


def test_learned_config_keeps_other_keys(tmp_path: Path) -> None:
    source = _config_file(tmp_path)
    config = dataclasses.replace(config_module.load(source))
    target = tmp_path / "learned.yaml"
    loaded = write_calibrated_config(config, {"a": 1.0, "b": 3.0}, {}, target, "")
    assert loaded.security == config.security


def _run(interrupted: bool, skipped: int) -> tuple[BacktestPlan, BacktestRun]:
    plan = BacktestPlan(("BTC",), WINDOW_END, WINDOW_END + 4 * 3_600 * 10**9, 60)
    run = BacktestRun(planned=4, interrupted=interrupted)
    run.outcomes.append(_window(_call("a", BULLISH, 0.7), _call("b", BEARISH, 0.6, weight=3.0)))
    for index in range(skipped):
        run.skipped.append(SkippedWindow("BTC", WINDOW_END + index, "no BTC bar"))
    return plan, run


def test_interrupted_report_says_so(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    plan, run = _run(interrupted=True, skipped=0)
    text = render_backtest(backtest_report(config, plan, run))
    assert text.startswith("INTERRUPTED: 1 of 4 windows scored")


def test_report_counts_skips(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    plan, run = _run(interrupted=False, skipped=2)
    text = render_backtest(backtest_report(config, plan, run))
    assert text.startswith("skipped 2 windows: 2 x no BTC bar")


def test_complete_report_starts_with_table(tmp_path: Path) -> None:
    config = config_module.load(_config_file(tmp_path))
    plan, run = _run(interrupted=False, skipped=0)
    text = render_backtest(backtest_report(config, plan, run))
    assert text.startswith("BTC  1 windows")
