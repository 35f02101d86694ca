"""The backtest report (server.backtest.report) and its plots (server.backtest.plots)."""

from __future__ import annotations

import json
import random

import pytest
from matplotlib.image import imread

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.report import build_report, render_table, write_report
from tests.backtest_fixtures import label_of, model_call, window

SETTINGS = {
    "horizon_minutes": 30,
    "neutral_band_bps": 5.0,
    "cost_bps": 4.0,
    "high_confidence": 0.7,
    "thresholds": {"confidence_execute": 0.85, "confidence_alert": 0.7},
    "weights": {"smollm2": 1.0, "gemma3": 1.0},
}


def random_windows(n=60, seed=7, symbols=("BTC", "ETH")):
    rng = random.Random(seed)
    outcomes = []
    for index in range(n):
        move = rng.gauss(0.0, 30.0)
        smollm2 = model_call(
            "smollm2",
            rng.choice([BULLISH, BEARISH, NEUTRAL]),
            rng.random(),
            from_cache=index % 3 == 0,
        )
        gemma3 = model_call("gemma3", rng.choice([BULLISH, BEARISH]), rng.random())
        if index % 10 == 0:
            gemma3 = model_call("gemma3")
        outcomes.append(
            window(
                index // len(symbols),
                label_of(move),
                move,
                symbol=symbols[index % len(symbols)],
                momentum_bps=rng.gauss(0.0, 30.0),
                models=(smollm2, gemma3),
                overall_direction=rng.choice([BULLISH, BEARISH, NEUTRAL]),
                confidence_level=rng.random(),
                action=rng.choice(["execute", "alert", "inform"]),
            )
        )
    return outcomes


@pytest.fixture(scope="module")
def report():
    return build_report(random_windows(), **SETTINGS)


def names(report):
    return [predictor["name"] for predictor in report["predictors"]]


def test_report_predictors(report):
    assert names(report)[:3] == ["ensemble", "smollm2", "gemma3"]
    assert names(report)[3:6] == ["always neutral", "momentum", "majority vote"]
    assert names(report)[6].startswith("best model (")


def test_report_header(report):
    assert report["windows"] == 60
    assert report["symbols"] == ["BTC", "ETH"]
    assert report["period"]["from"] == "2019-01-01T00:00Z"
    assert report["period"]["to"] == "2019-01-02T05:00Z"


def test_report_verdict_counts(report):
    assert report["verdicts"] == {
        "total": 120,
        "cache_hits": 20,
        "generations": 100,
        "failed": 6,
    }


def test_report_settings(report):
    assert report["settings"]["cost_bps"] == 4.0
    assert report["settings"]["ensemble_high_confidence"] == "action in execute, alert"
    assert report["settings"]["weights"] == {"smollm2": 1.0, "gemma3": 1.0}


def test_report_high_confidence_rules(report):
    rules = {p["name"]: p["scores"]["high_confidence"]["rule"] for p in report["predictors"]}
    assert rules["ensemble"] == "action in execute, alert"
    assert rules["smollm2"] == "confidence >= 0.7"


def test_best_model_hindsight_note(report):
    assert report["predictors"][6]["note"].startswith("chosen in hindsight")


def test_best_model_from_fit_period():
    held_out = random_windows(seed=8)
    fit_windows = random_windows(seed=9)
    report = build_report(held_out, best_model_windows=fit_windows, **SETTINGS)
    assert report["predictors"][6]["note"].startswith("chosen on the fit period")


def test_best_model_has_best_accuracy(report):
    models = [p for p in report["predictors"] if p["kind"] == "model"]
    best = max(p["scores"]["accuracy"] for p in models)
    assert report["predictors"][6]["scores"]["accuracy"] == best


def test_report_rejects_no_windows():
    with pytest.raises(ValueError, match="at least one window, got 0"):
        build_report([], **SETTINGS)


def test_table_one_row_per_predictor(report):
    lines = render_table(report).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("predictor"))
    rows = lines[header + 1 : header + 1 + len(names(report))]
    assert [row.split("  ")[0].strip() for row in rows] == names(report)


def test_table_columns(report):
    header = next(line for line in render_table(report).splitlines() if line.startswith("pred"))
    for column in ("accuracy", "high-conf acc (n)", "execute", "MCC", "Brier", "ECE", "trades"):
        assert column in header


def test_table_no_confidence_dash(report):
    row = next(line for line in render_table(report).splitlines() if line.startswith("always"))
    assert " - (0)" in row


def test_write_report_json_round_trip(report, tmp_path):
    paths = write_report(report, tmp_path / "out")
    assert json.loads(paths["report.json"].read_text()) == report


def test_write_report_table(report, tmp_path):
    paths = write_report(report, tmp_path)
    assert paths["report.txt"].read_text() == render_table(report)


@pytest.mark.parametrize("name", ["reliability.png", "cumulative_return.png"])
def test_write_report_png(report, tmp_path, name):
    paths = write_report(report, tmp_path)
    image = imread(paths[name])
    assert image.shape[:2] == (600, 900)
    # A blank canvas has one colour; a drawn plot has many.
    assert image.reshape(-1, image.shape[2]).std(axis=0).max() > 0.05


def test_write_report_single_window(tmp_path):
    report = build_report(random_windows(n=1), **SETTINGS)
    paths = write_report(report, tmp_path)
    assert imread(paths["cumulative_return.png"]).shape[:2] == (600, 900)
