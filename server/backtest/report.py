"""The backtest report: scores of the ensemble, each model and the baselines on the same windows.

`build_report` returns a JSON-ready dict, `render_table` a fixed-width text table of it, and
`write_report` writes report.json, report.txt and the two plots into a folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.backtest import baselines, plots
from server.backtest.outcomes import WindowOutcome
from server.backtest.scoring import DEFINITIONS, Call, HighConfidence, score

ENSEMBLE_HIGH_CONFIDENCE = ("execute", "alert")
REPORT_FILES = ("report.json", "report.txt", "reliability.png", "cumulative_return.png")


def build_report(
    outcomes: Sequence[WindowOutcome],
    *,
    horizon_minutes: float,
    neutral_band_bps: float,
    cost_bps: float,
    high_confidence: float,
    thresholds: Mapping[str, float],
    weights: Mapping[str, float],
    best_model_windows: Sequence[WindowOutcome] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score the ensemble, each model and every baseline on `outcomes`.

    high_confidence: the confidence threshold for models and the majority vote. The
    ensemble's high-confidence calls are its execute and alert decisions.
    best_model_windows: where to choose the single best model. None chooses it on `outcomes`
    themselves, which the report labels as chosen in hindsight. Pass the fit period's
    windows when `outcomes` are a held-out period.
    calibration: `Calibration.to_json()` of the weights and maps in use, for the record.
    Raises ValueError with no window, or from `score` on invalid windows.
    """
    if not outcomes:
        raise ValueError("a report needs at least one window, got 0")
    model_rule = HighConfidence.at_least(high_confidence)

    def scored(name: str, kind: str, calls: list[Call], rule: HighConfidence, note: str = ""):
        scores = score(calls, outcomes, rule, cost_bps)
        return {"name": name, "kind": kind, "note": note, "scores": scores.to_json()}

    ensemble_rule = HighConfidence.for_actions(ENSEMBLE_HIGH_CONFIDENCE)
    predictors = [scored("ensemble", "ensemble", baselines.ensemble_calls(outcomes), ensemble_rule)]
    for name in baselines.model_names(outcomes):
        predictors.append(scored(name, "model", baselines.model_calls(outcomes, name), model_rule))

    best, best_note = _best_model(outcomes, best_model_windows)
    baseline_calls: list[tuple[str, Callable[[], list[Call]], str]] = [
        ("always neutral", lambda: baselines.always_neutral_calls(outcomes), ""),
        ("momentum", lambda: baselines.momentum_calls(outcomes, neutral_band_bps), ""),
        ("majority vote", lambda: baselines.majority_vote_calls(outcomes), "unweighted"),
        (f"best model ({best})", lambda: baselines.model_calls(outcomes, best), best_note),
    ]
    for name, build_calls, note in baseline_calls:
        predictors.append(scored(name, "baseline", build_calls(), model_rule, note))

    return {
        "period": _period(outcomes),
        "symbols": sorted({outcome.symbol for outcome in outcomes}),
        "windows": len(outcomes),
        "settings": {
            "horizon_minutes": horizon_minutes,
            "neutral_band_bps": neutral_band_bps,
            "cost_bps": cost_bps,
            "high_confidence": high_confidence,
            "ensemble_high_confidence": ensemble_rule.describe(),
            "thresholds": dict(thresholds),
            "weights": dict(weights),
        },
        "verdicts": _verdict_counts(outcomes),
        "calibration": dict(calibration) if calibration is not None else None,
        "definitions": dict(DEFINITIONS),
        "predictors": predictors,
    }


def render_table(report: Mapping[str, Any]) -> str:
    """Return the report as plain fixed-width text, one row per predictor."""
    settings = report["settings"]
    period = report["period"]
    verdicts = report["verdicts"]
    lines = [
        f"{', '.join(report['symbols'])}  {report['windows']:,} windows"
        f"  {period['from']} to {period['to']}",
        f"horizon {settings['horizon_minutes']:g} min, neutral band"
        f" {settings['neutral_band_bps']:g} bps, cost {settings['cost_bps']:g} bps per trade,"
        f" high confidence: models {settings['high_confidence']:g},"
        f" ensemble {settings['ensemble_high_confidence']}",
        f"verdicts: {verdicts['total']:,} ({verdicts['cache_hits']:,} from the cache,"
        f" {verdicts['generations']:,} generated, {verdicts['failed']:,} failed)",
        "",
    ]
    rows = [_table_header()] + [_table_row(predictor) for predictor in report["predictors"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    notes = [p for p in report["predictors"] if p["note"]]
    if notes:
        lines.append("")
        lines.extend(f"{p['name']}: {p['note']}" for p in notes)
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write report.json, report.txt, reliability.png and cumulative_return.png.

    Creates `directory` when missing and returns each file's path by name.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in REPORT_FILES}
    # allow_nan=False: a NaN in the report is a bug, and strict JSON readers reject it.
    paths["report.json"].write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    paths["report.txt"].write_text(render_table(report))
    plots.write_reliability(report, paths["reliability.png"])
    plots.write_cumulative_return(report, paths["cumulative_return.png"])
    return paths


def _best_model(
    outcomes: Sequence[WindowOutcome], chosen_on: Sequence[WindowOutcome] | None
) -> tuple[str, str]:
    if chosen_on is None:
        best = baselines.best_model(outcomes)
        return best, "chosen in hindsight: the best accuracy on these same windows"
    best = baselines.best_model(chosen_on)
    return best, f"chosen on the fit period: the best accuracy on {len(chosen_on):,} windows"


def _period(outcomes: Sequence[WindowOutcome]) -> dict[str, Any]:
    first = min(outcome.window_end for outcome in outcomes)
    last = max(outcome.window_end for outcome in outcomes)
    return {"from": _iso(first), "to": _iso(last), "from_ns": first, "to_ns": last}


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _verdict_counts(outcomes: Sequence[WindowOutcome]) -> dict[str, int]:
    verdicts = [model for outcome in outcomes for model in outcome.models]
    cache_hits = sum(model.from_cache for model in verdicts)
    return {
        "total": len(verdicts),
        "cache_hits": cache_hits,
        "generations": len(verdicts) - cache_hits,
        "failed": sum(not model.answered for model in verdicts),
    }


def _table_header() -> list[str]:
    return [
        "predictor",
        "accuracy",
        "high-conf acc (n)",
        "execute",
        "alert",
        "inform",
        "MCC",
        "Brier",
        "ECE",
        "net bps (any)",
        "trades",
    ]


def _table_row(predictor: Mapping[str, Any]) -> list[str]:
    scores = predictor["scores"]
    high = scores["high_confidence"]
    coverage = scores["coverage"]["action"]
    acting = scores["returns"]["any"]
    return [
        predictor["name"],
        _number(scores["accuracy"], "{:.3f}"),
        f"{_number(high['accuracy'], '{:.3f}')} ({high['count']:,})",
        f"{coverage['execute']:.1%}",
        f"{coverage['alert']:.1%}",
        f"{coverage['inform']:.1%}",
        f"{scores['mcc']:+.3f}",
        _number(scores["brier"], "{:.3f}"),
        _number(scores["ece"], "{:.3f}"),
        f"{acting['total_net_bps']:+,.1f}",
        f"{acting['trades']:,}",
    ]


def _number(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)
