"""The reports that `quorum backtest` and `quorum calibrate` write, from a run's windows.

A backtest folder contains report.json, report.txt, reliability.png, cumulative_return.png and
windows.parquet.

A calibration folder contains:
- report.json and report.txt: the method, the learned weights and maps, and the held-out
  scores of the configured and the learned ensemble;
- `configured/` and `learned/`, each with its backtest report and plots;
- windows.parquet of the held-out windows under the learned configuration;
- the learned configuration file.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.backtest import report
from server.backtest.calibration import Calibration
from server.backtest.outcomes import WindowOutcome
from server.backtest.runner import BacktestPlan, BacktestRun
from server.backtest.window_table import write_windows
from server.config import Config

# How many distinct skip reasons a report lists, most common first.
SKIP_REASONS_SHOWN = 10


def backtest_report(config: Config, plan: BacktestPlan, run: BacktestRun) -> dict[str, Any]:
    """Build the report of one backtest run: the scores, then how the run went."""
    document = _scores(config, run.sorted_outcomes())
    document["run"] = _run_facts(config, plan, run)
    return document


def write_backtest(
    document: dict[str, Any], outcomes: Sequence[WindowOutcome], directory: Path
) -> None:
    report.write_report(document, directory)
    (directory / "report.txt").write_text(render_backtest(document))
    write_windows(outcomes, directory)


def render_backtest(document: dict[str, Any]) -> str:
    """Return the report table, after a line on an interrupted run or skipped windows."""
    run = document["run"]
    notes = []
    if run["interrupted"]:
        notes.append(
            f"INTERRUPTED: {run['windows_scored']} of {run['windows_planned']} windows scored;"
            " run the same command again to resume from the cache."
        )
    if run["windows_skipped"]:
        reasons = "; ".join(
            f"{entry['windows']} x {entry['reason']}" for entry in run["skip_reasons"]
        )
        notes.append(f"skipped {run['windows_skipped']} windows: {reasons}")
    table = report.render_table(document)
    return "\n".join(notes) + ("\n\n" if notes else "") + table


def calibration_report(
    config: Config,
    fit_plan: BacktestPlan,
    test_plan: BacktestPlan,
    learned: Calibration,
    fit_outcomes: Sequence[WindowOutcome],
    configured_outcomes: Sequence[WindowOutcome],
    learned_outcomes: Sequence[WindowOutcome],
    test_run: BacktestRun,
    learned_config: Config,
    config_path: Path,
) -> dict[str, Any]:
    """Score the held-out period only: the configured and the learned ensemble side by side.

    The single best model baseline is chosen on the fit period.
    """
    configured = _scores(config, configured_outcomes, fit_outcomes)
    learned_scores = _scores(learned_config, learned_outcomes, fit_outcomes, learned.to_json())
    return {
        "calibration": learned.to_json(),
        "fit": {"windows": len(fit_outcomes), "requested": _requested(fit_plan)},
        "held_out": {
            "requested": _requested(test_plan),
            "run": _run_facts(config, test_plan, test_run),
            "configured": configured,
            "learned": learned_scores,
        },
        "config_path": str(config_path),
    }


def write_calibration(
    document: dict[str, Any], learned_outcomes: Sequence[WindowOutcome], directory: Path
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("configured", "learned"):
        report.write_report(document["held_out"][name], directory / name)
    (directory / "report.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    (directory / "report.txt").write_text(render_calibration(document))
    write_windows(learned_outcomes, directory)


def render_calibration(document: dict[str, Any]) -> str:
    calibration = document["calibration"]
    held_out = document["held_out"]
    lines = [
        f"Method: {calibration['method']}",
        f"Fitted on {document['fit']['windows']:,} windows"
        f" ({_iso(calibration['fit_from_ns'])} to {_iso(calibration['fit_to_ns'])});"
        " no score below comes from them.",
        "",
        "model  configured weight  learned weight  answers  Platt slope  Platt intercept",
    ]
    for model in calibration["models"]:
        mapping = model["confidence_calibration"]
        lines.append(
            f"{model['model']}  {model['configured_weight']:.4g}  {model['weight']:.4g}"
            f"  {model['answers']}/{model['windows']}  {mapping['slope']:.4g}"
            f"  {mapping['intercept']:.4g}" + (f"  ({model['note']})" if model["note"] else "")
        )
    lines += [f"Note: {note}" for note in calibration["notes"]]
    for name, title in (("configured", "Configured"), ("learned", "Learned")):
        lines += ["", f"{title} weights and maps, held-out period:", ""]
        lines.append(report.render_table(held_out[name]).rstrip())
    lines += ["", f"Learned configuration: {document['config_path']}"]
    return "\n".join(lines) + "\n"


def calibration_header(learned: Calibration) -> str:
    """Return the comment at the top of a learned configuration file."""
    written = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return (
        f"Written by `quorum calibrate` at {written}.\n"
        f"Method: {learned.method}\n"
        f"Fitted on {learned.fit_windows:,} windows,"
        f" {_iso(learned.fit_from_ns)} to {_iso(learned.fit_to_ns)}."
    )


def _scores(
    config: Config,
    outcomes: Sequence[WindowOutcome],
    best_model_windows: Sequence[WindowOutcome] | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    thresholds = config.thresholds
    return report.build_report(
        outcomes,
        horizon_minutes=config.horizon_minutes,
        neutral_band_bps=config.label_neutral_band_bps,
        cost_bps=config.trade_cost_bps,
        high_confidence=thresholds.confidence_alert,
        thresholds={
            "confidence_execute": thresholds.confidence_execute,
            "agreement_execute": thresholds.agreement_execute,
            "confidence_alert": thresholds.confidence_alert,
            "agreement_alert": thresholds.agreement_alert,
            "large_model_min_weight": thresholds.large_model_min_weight,
            "large_consensus_min_agreement": thresholds.large_consensus_min_agreement,
            "quorum_weight_share": thresholds.quorum_weight_share,
        },
        weights={model.name: model.weight for model in config.models},
        best_model_windows=best_model_windows,
        calibration=calibration,
    )


def _run_facts(config: Config, plan: BacktestPlan, run: BacktestRun) -> dict[str, Any]:
    reasons = Counter(window.reason for window in run.skipped)
    return {
        "requested": _requested(plan),
        "context_size": plan.context_size or config.default_context_size,
        "window_minutes": plan.window_minutes or config.market_window_minutes,
        "config_fingerprint": config.fingerprint(),
        "windows_planned": run.planned,
        "windows_scored": len(run.outcomes),
        "windows_skipped": len(run.skipped),
        "skip_reasons": [
            {"reason": reason, "windows": count}
            for reason, count in reasons.most_common(SKIP_REASONS_SHOWN)
        ],
        "interrupted": run.interrupted,
    }


def _requested(plan: BacktestPlan) -> dict[str, Any]:
    return {
        "symbols": list(plan.symbols),
        "from": _iso(plan.start_ns),
        "to": _iso(plan.end_ns),
        "every_minutes": plan.every_minutes,
    }


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")
