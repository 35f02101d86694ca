"""The backtest's own record: one Parquet row per window, next to the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from server.backtest.outcomes import WindowOutcome
from server.consensus_policy import direction_name

WINDOWS_FILE = "windows.parquet"

_MODEL_TYPE = pa.struct(
    [
        ("model", pa.string()),
        ("weight", pa.float64()),
        ("answered", pa.bool_()),
        ("direction", pa.string()),
        ("confidence", pa.float64()),
        ("calibrated_confidence", pa.float64()),
        ("prediction_pct", pa.float64()),
        ("from_cache", pa.bool_()),
        ("failure", pa.string()),
    ]
)
SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("window_end", pa.timestamp("ns", tz="UTC")),
        ("label", pa.string()),
        ("realized_bps", pa.float64()),
        ("momentum_bps", pa.float64()),
        ("overall_direction", pa.string()),
        ("confidence_level", pa.float64()),
        ("agreement_strength", pa.float64()),
        ("action", pa.string()),
        ("decision_direction", pa.string()),
        ("models", pa.list_(_MODEL_TYPE)),
    ]
)


def write_windows(outcomes: Sequence[WindowOutcome], directory: Path) -> Path:
    """Write the windows in time order; return the file's path."""
    rows = [_row(outcome) for outcome in outcomes]
    rows.sort(key=lambda row: (row["window_end"], row["symbol"]))
    path = Path(directory) / WINDOWS_FILE
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    return path


def _row(outcome: WindowOutcome) -> dict[str, object]:
    models = []
    for call in outcome.models:
        entry = dataclasses.asdict(call)
        entry["direction"] = direction_name(call.direction) if call.answered else None
        models.append(entry)
    return {
        "symbol": outcome.symbol,
        "window_end": outcome.window_end,
        "label": direction_name(outcome.label),
        "realized_bps": outcome.realized_bps,
        "momentum_bps": outcome.momentum_bps,
        "overall_direction": direction_name(outcome.overall_direction),
        "confidence_level": outcome.confidence_level,
        "agreement_strength": outcome.agreement_strength,
        "action": outcome.action,
        "decision_direction": direction_name(outcome.decision_direction),
        "models": models,
    }
