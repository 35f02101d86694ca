"""PNG plots of a backtest report, drawn with matplotlib's Agg canvas (no display needed).

The figures use matplotlib's object API with their own FigureCanvasAgg, not pyplot, so no
figure outlives the call and no global pyplot state is touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGURE_SIZE_IN = (9.0, 6.0)
DPI = 100


def write_reliability(report: Mapping[str, Any], path: Path) -> None:
    """Draw the reliability diagram of the ensemble and each model, with bin counts below."""
    predictors = [
        p
        for p in report["predictors"]
        if p["kind"] in ("ensemble", "model") and p["scores"]["calibration_count"]
    ]

    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(figure)
    curve_axes, count_axes = figure.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )

    curve_axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    width = 0.1 / max(len(predictors), 1)
    for index, predictor in enumerate(predictors):
        bins = predictor["scores"]["reliability"]
        filled = [b for b in bins if b["count"]]
        curve_axes.plot(
            [b["mean_confidence"] for b in filled],
            [b["accuracy"] for b in filled],
            marker="o",
            label=predictor["name"],
            **_line_style(predictor["kind"]),
        )
        offsets = [b["lower"] + width * (index + 0.5) for b in bins]
        count_axes.bar(offsets, [b["count"] for b in bins], width=width, label=predictor["name"])

    curve_axes.set_xlim(0, 1)
    curve_axes.set_ylim(0, 1)
    curve_axes.set_ylabel("accuracy")
    curve_axes.set_title(_title(report, "reliability"))
    curve_axes.legend(loc="best", fontsize="small")
    count_axes.set_xlabel("confidence (10 equal-width bins)")
    count_axes.set_ylabel("windows")
    if not predictors:
        curve_axes.text(0.5, 0.5, "no predictor states a confidence", ha="center")

    figure.tight_layout()
    figure.savefig(path, format="png")


def write_cumulative_return(report: Mapping[str, Any], path: Path) -> None:
    """Draw the cumulative net bps of acting on execute or alert: ensemble and baselines."""
    predictors = [p for p in report["predictors"] if p["kind"] in ("ensemble", "baseline")]
    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for predictor in predictors:
        scores = predictor["scores"]
        axes.plot(
            _times(scores["window_ends"]),
            scores["cumulative_net_bps"],
            label=predictor["name"],
            drawstyle="steps-post",
            **_line_style(predictor["kind"]),
        )
    axes.axhline(0.0, color="gray", linewidth=0.5)
    axes.set_ylabel(f"cumulative net bps (cost {report['settings']['cost_bps']:g} bps per trade)")
    axes.set_xlabel("window end (UTC)")
    axes.set_title(_title(report, "cumulative return of acting on execute or alert"))
    axes.legend(loc="best", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png")


def _times(window_ends_ns: Sequence[int]) -> np.ndarray:
    return np.asarray(window_ends_ns, dtype="datetime64[ns]")


def _title(report: Mapping[str, Any], what: str) -> str:
    period = report["period"]
    symbols = ", ".join(report["symbols"])
    return f"{symbols} {period['from']} to {period['to']}\n{what}"


def _line_style(kind: str) -> dict[str, Any]:
    # The ensemble is a thick line underneath and the others thin dashed lines on top, so a
    # predictor whose line equals the ensemble's (a one-model ensemble) stays visible.
    if kind == "ensemble":
        return {"linewidth": 3.0, "zorder": 2}
    return {"linewidth": 1.2, "linestyle": "--", "zorder": 3}
