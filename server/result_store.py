"""Result store: one Parquet file per symbol, window and analysis settings in the data lake.

Layout: `<lake>/results/<SYMBOL>/<YYYY-MM-DD>/<window_end>-<minutes>m-<settings>.parquet`, where
<settings> hashes the ensemble configuration's fingerprint, the requested context size and the
volatile flag, so the same analysis run twice replaces its record and a different one adds one.
The directories carry no `key=value` names, so `pyarrow.parquet.read_table(<lake>/results)`
reads every record with the columns stored in the files.

A write goes to a hidden temporary file in the target directory, is fsynced, then renamed
over the final name, and the directory is fsynced: a reader sees the old record or the new
one, never half a file. pyarrow's dataset reader skips names starting with "." so a
leftover temporary file from a crash is never read as a record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SECTION_TYPE = pa.struct(
    [
        ("name", pa.string()),
        ("priority", pa.int32()),
        ("budget_tokens", pa.int32()),
        ("used_tokens", pa.int32()),
        ("lines", pa.int32()),
        ("lines_total", pa.int32()),
        ("requested_tokens", pa.int32()),
        ("missing", pa.bool_()),
    ]
)

VERDICT_TYPE = pa.struct(
    [
        ("model", pa.string()),
        ("address", pa.string()),
        ("base_weight", pa.float64()),
        ("large", pa.bool_()),
        ("status", pa.string()),
        ("direction", pa.string()),
        ("confidence", pa.float64()),
        ("prediction_pct", pa.float64()),
        ("rationale", pa.string()),
        ("text", pa.string()),
        ("failure_kind", pa.string()),
        ("failure", pa.string()),
        ("finish_reason", pa.string()),
        ("final_weight", pa.float64()),
        ("influence", pa.float64()),
        ("n_ctx", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("cached_prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("queue_ms", pa.float64()),
        ("time_to_first_token_ms", pa.float64()),
        ("generation_ms", pa.float64()),
        ("elapsed_ms", pa.float64()),
        ("coordinator_queued_ms", pa.float64()),
        ("calibrated_confidence", pa.float64()),
        ("from_cache", pa.bool_()),
    ]
)

RESULT_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("request_id", pa.string()),
        ("symbol", pa.string()),
        ("window_end", pa.timestamp("ns", tz="UTC")),
        ("window_minutes", pa.int32()),
        ("horizon_minutes", pa.int32()),
        ("config_fingerprint", pa.string()),
        ("requested_context_size", pa.int32()),
        ("volatile_window", pa.bool_()),
        ("inputs_fingerprint", pa.string()),
        ("context_size", pa.int32()),
        ("context_used_tokens", pa.int32()),
        ("context_expanded", pa.bool_()),
        ("context_expand_reason", pa.string()),
        ("bars_used", pa.int64()),
        ("last_bar_time", pa.timestamp("ns", tz="UTC")),
        ("sections", pa.list_(SECTION_TYPE)),
        ("verdicts", pa.list_(VERDICT_TYPE)),
        ("models_answered", pa.int32()),
        ("models_configured", pa.int32()),
        ("overall_direction", pa.string()),
        ("agreement_strength", pa.float64()),
        ("confidence_level", pa.float64()),
        ("bullish_influence", pa.float64()),
        ("bearish_influence", pa.float64()),
        ("neutral_influence", pa.float64()),
        ("answered_weight_share", pa.float64()),
        ("quorum_weight_share", pa.float64()),
        ("large_agreement_available", pa.bool_()),
        ("large_answered", pa.int32()),
        ("large_direction", pa.string()),
        ("large_share", pa.float64()),
        ("large_holds", pa.bool_()),
        ("action", pa.string()),
        ("decision_direction", pa.string()),
        ("decision_reason", pa.string()),
        ("synthesis", pa.string()),
        ("synthesis_source", pa.string()),
        ("elapsed_ms", pa.float64()),
        ("recorded_at", pa.timestamp("ns", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class Records:
    """Records read from the store, and the files that could not be read as records."""

    table: pa.Table
    # (path, reason) of each file skipped because it is not a readable record.
    skipped: tuple[tuple[Path, str], ...]


@dataclass(frozen=True)
class WriteOutcome:
    path: Path
    # True when a record with the same key existed and was replaced.
    replaced: bool


class ResultStore:
    def __init__(self, lake_dir: Path) -> None:
        self.root = Path(lake_dir) / "results"

    def path_for(self, record: dict[str, Any]) -> Path:
        """Return the file of a record, named by every setting that shapes the result."""
        window_end = datetime.fromtimestamp(record["window_end"] / 1e9, tz=UTC)
        settings = "|".join(
            str(record[key])
            for key in ("config_fingerprint", "requested_context_size", "volatile_window")
        )
        digest = hashlib.sha256(settings.encode()).hexdigest()[:16]
        name = f"{window_end:%Y%m%dT%H%M%SZ}-{record['window_minutes']}m-{digest}.parquet"
        return self.root / record["symbol"] / f"{window_end:%Y-%m-%d}" / name

    def write(self, record: dict[str, Any]) -> WriteOutcome:
        """Write one result record atomically; the same key replaces the earlier record."""
        path = self.path_for(record)
        row = dict(record)
        row["record_id"] = path.stem
        row["recorded_at"] = datetime.now(tz=UTC)
        table = pa.Table.from_pylist([row], schema=RESULT_SCHEMA)

        path.parent.mkdir(parents=True, exist_ok=True)
        replaced = path.exists()
        temporary = path.parent / f".{path.stem}.{uuid.uuid4().hex}.partial"
        try:
            with open(temporary, "wb") as handle:
                pq.write_table(table, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_directory(path.parent)
        log.info("Recorded %s %s at %s (replaced=%s)", record["symbol"], path.stem, path, replaced)
        return WriteOutcome(path=path, replaced=replaced)

    def read(self, symbol: str | None = None) -> Records:
        """Read every record, or one symbol's, sorted by window_end.

        A file that is not a readable record (truncated, overwritten by another program, or
        with another schema) is skipped, logged once and listed in `Records.skipped`, so one
        damaged file never hides the others.
        """
        root = self.root / symbol if symbol else self.root
        files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
        tables: list[pa.Table] = []
        skipped: list[tuple[Path, str]] = []
        for path in files:
            try:
                tables.append(pq.read_table(path, schema=RESULT_SCHEMA))
            except (OSError, pa.ArrowException) as error:
                log.warning("Skipped result file %s: not a readable record: %s", path, error)
                skipped.append((path, str(error)))
        if not tables:
            return Records(RESULT_SCHEMA.empty_table(), tuple(skipped))
        return Records(pa.concat_tables(tables).sort_by("window_end"), tuple(skipped))


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
