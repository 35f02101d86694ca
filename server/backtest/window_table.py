"""The backtest's own record: one Parquet row per window, next to the report."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL
from server.backtest.outcomes import ModelCall, WindowOutcome
from server.consensus_policy import UNCERTAIN, direction_name

_DIRECTION_CODES = {direction_name(code): code for code in (BULLISH, BEARISH, NEUTRAL, UNCERTAIN)}

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


def read_windows(path: Path) -> list[WindowOutcome]:
    """Read a windows file back, so its windows can be scored again under other settings."""
    table = pq.read_table(path, schema=SCHEMA)
    # Whole nanoseconds: to_pylist would give datetimes, which hold microseconds.
    index = table.schema.get_field_index("window_end")
    table = table.set_column(index, "window_end", table.column(index).cast(pa.int64()))
    return [_outcome(row) for row in table.to_pylist()]


def _outcome(row: dict[str, Any]) -> WindowOutcome:
    models = tuple(
        ModelCall(
            model=entry["model"],
            weight=entry["weight"],
            answered=entry["answered"],
            direction=_DIRECTION_CODES[entry["direction"]] if entry["answered"] else 0,
            confidence=entry["confidence"],
            calibrated_confidence=entry["calibrated_confidence"],
            prediction_pct=entry["prediction_pct"],
            from_cache=entry["from_cache"],
            failure=entry["failure"],
        )
        for entry in row["models"]
    )
    return WindowOutcome(
        symbol=row["symbol"],
        window_end=row["window_end"],
        label=_DIRECTION_CODES[row["label"]],
        realized_bps=row["realized_bps"],
        momentum_bps=row["momentum_bps"],
        models=models,
        overall_direction=_DIRECTION_CODES[row["overall_direction"]],
        confidence_level=row["confidence_level"],
        agreement_strength=row["agreement_strength"],
        action=row["action"],
        decision_direction=_DIRECTION_CODES[row["decision_direction"]],
    )


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
