"""Verdict cache in the data lake: one model's outcome on one exact context, kept for re-use.

A backtest re-run, or one with other weights or thresholds, reads each model's outcome from
here instead of generating it again. An entry's key is the SHA-256 of three fingerprints:

- the model: its name, file (size and SHA-256 of its first and last MiB), quantization, and
  the installed version of the package it comes from;
- the context: the whole GenerateRequest the worker would receive (symbol, window, horizon,
  context size, every section's name, priority, budget and text), without its request id;
- the generation settings: temperature, seed, max_tokens, the llama-cpp-python version, and
  the source of the worker modules that turn a request into a completion (prompt, chat
  template, grammar, context fitting, generation). They also include the context window the
  worker runs with: the model's `n_ctx`, else its training context capped at max_context_size.

A change to any of them gives another key, so a stale entry is never read. It stays on disk
until the cache directory is removed.

Layout: `<lake>/verdict_cache/symbol=<SYMBOL>/date=<YYYY-MM-DD>/<key>.parquet`, one row per
file, written through a temporary file and `os.replace`. A file that cannot be read, or whose
fingerprints differ from the key's, is a miss and is logged.

Only outcomes that the same inputs reproduce are kept: a verdict, or output that failed to
parse or ran out of tokens. A worker that was down, overloaded, cancelled or too slow gives
no evidence about the model, so those outcomes are generated again next time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from google.protobuf.message import DecodeError

from quorum.v1 import ensemble_pb2, inference_pb2
from server.config import ModelConfig
from server.market_store import day_of
from worker import gguf_header
from worker.model import resolve_n_ctx

log = logging.getLogger(__name__)

CACHE_DATASET = "verdict_cache"
# Sampled at both ends of a GGUF file: the header (architecture, tokenizer, quantization)
# and the last tensors. Hashing a 7 GB file whole would take longer than most cycles.
FILE_SAMPLE_BYTES = 1 << 20
# The worker modules whose code decides the completion for a given request.
WORKER_MODULES = ("prompt", "chat_template", "verdict_grammar", "context_fit", "generation")
CACHEABLE_FAILURES = (ensemble_pb2.FAILURE_KIND_BAD_OUTPUT,)
# The address a cached outcome reports in place of a worker's.
CACHE_ADDRESS = "verdict-cache"

_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("model", pa.string()),
        ("model_fingerprint", pa.string()),
        ("context_fingerprint", pa.string()),
        ("settings_fingerprint", pa.string()),
        ("symbol", pa.string()),
        ("window_end", pa.timestamp("ns", tz="UTC")),
        ("failure_kind", pa.int32()),
        ("failure", pa.string()),
        # The worker's GenerationResult as serialized protobuf: the verdict, text and stats.
        ("result", pa.binary()),
    ]
)


@dataclass(frozen=True)
class CacheKey:
    model: str
    model_fingerprint: str
    context_fingerprint: str
    settings_fingerprint: str

    @property
    def digest(self) -> str:
        parts = (
            self.model,
            self.model_fingerprint,
            self.context_fingerprint,
            self.settings_fingerprint,
        )
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class CachedOutcome:
    """A model's outcome read back from the cache."""

    result: inference_pb2.GenerationResult
    failure_kind: int
    failure: str
    path: Path


class VerdictCache:
    """Reads and writes cache entries under one data lake.

    `model_files` maps a model name to its GGUF file where this machine has it. A model
    without one is fingerprinted from its configuration alone, and a warning is logged.
    `max_context_size` caps the context window of a model without `n_ctx`, as in the worker.

    NOTE: the key assumes each worker runs with the coordinator's configuration. A worker
    started elsewhere with another `n_ctx` or `max_context_size` is not noticed.
    """

    def __init__(
        self,
        lake_dir: Path,
        model_files: dict[str, Path] | None = None,
        max_context_size: int = 0,
    ) -> None:
        self.root = Path(lake_dir) / CACHE_DATASET
        self._model_files = dict(model_files or {})
        self._max_context_size = max_context_size
        # Keyed by the whole model entry, so an entry changed under the same name is not
        # taken for the old one.
        self._model_fingerprints: dict[ModelConfig, str] = {}
        self._context_windows: dict[ModelConfig, str] = {}
        self._worker_code = worker_code_fingerprint()
        self._llama_version = _package_version("llama-cpp-python")

    def key_for(self, model: ModelConfig, request: inference_pb2.GenerateRequest) -> CacheKey:
        return CacheKey(
            model=model.name,
            model_fingerprint=self._model_fingerprint(model),
            context_fingerprint=context_fingerprint(request),
            settings_fingerprint=self.settings_fingerprint(model, request),
        )

    def settings_fingerprint(
        self, model: ModelConfig, request: inference_pb2.GenerateRequest
    ) -> str:
        max_tokens = request.max_tokens or model.max_tokens
        settings = (
            f"temperature={request.temperature!r}",
            f"seed={request.seed}",
            f"max_tokens={max_tokens}",
            f"n_ctx={self._context_window(model)}",
            f"llama-cpp-python={self._llama_version}",
            f"worker={self._worker_code}",
        )
        return hashlib.sha256("\n".join(settings).encode()).hexdigest()

    def path_for(self, key: CacheKey, symbol: str, window_end_ns: int) -> Path:
        day = day_of(window_end_ns).isoformat()
        return self.root / f"symbol={symbol}" / f"date={day}" / f"{key.digest}.parquet"

    def get(self, key: CacheKey, symbol: str, window_end_ns: int) -> CachedOutcome | None:
        """Return the entry for `key`, or None on a miss (absent, unreadable or mismatched)."""
        path = self.path_for(key, symbol, window_end_ns)
        if not path.exists():
            return None
        try:
            rows = pq.read_table(path, schema=_SCHEMA).to_pylist()
        except (OSError, pa.ArrowException) as error:
            log.warning("Verdict cache entry %s is unreadable, so it is a miss: %s", path, error)
            return None
        if len(rows) != 1 or not _matches(rows[0], key):
            log.warning("Verdict cache entry %s does not match its key, so it is a miss", path)
            return None
        row = rows[0]
        try:
            result = inference_pb2.GenerationResult.FromString(row["result"])
        except DecodeError as error:
            log.warning(
                "Verdict cache entry %s has a result that failed to parse, so it is a miss: %s",
                path,
                error,
            )
            return None
        return CachedOutcome(result, int(row["failure_kind"]), str(row["failure"] or ""), path)

    def put(
        self,
        key: CacheKey,
        symbol: str,
        window_end_ns: int,
        result: inference_pb2.GenerationResult,
        failure_kind: int,
        failure: str,
    ) -> Path:
        """Write an entry atomically; a concurrent reader sees no file or the whole file."""
        path = self.path_for(key, symbol, window_end_ns)
        row = {
            "key": key.digest,
            "model": key.model,
            "model_fingerprint": key.model_fingerprint,
            "context_fingerprint": key.context_fingerprint,
            "settings_fingerprint": key.settings_fingerprint,
            "symbol": symbol,
            "window_end": window_end_ns,
            "failure_kind": failure_kind,
            "failure": failure,
            "result": result.SerializeToString(deterministic=True),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([row], schema=_SCHEMA)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".parquet")
        os.close(handle)
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def _context_window(self, model: ModelConfig) -> str:
        """Return the context window the model's worker resolves, or what decides it."""
        if model not in self._context_windows:
            self._context_windows[model] = self._resolve_context_window(model)
        return self._context_windows[model]

    def _resolve_context_window(self, model: ModelConfig) -> str:
        file = self._model_files.get(model.name)
        if model.n_ctx > 0 or file is None:
            return f"{model.n_ctx} (max_context_size {self._max_context_size})"
        try:
            n_ctx_train = gguf_header.context_length(gguf_header.read_metadata(file))
        except gguf_header.GgufError as error:
            log.warning(
                "Model %s: the training context of %s is unreadable: %s", model.name, file, error
            )
            return f"0 (max_context_size {self._max_context_size})"
        return str(resolve_n_ctx(model.n_ctx, n_ctx_train, self._max_context_size))

    def _model_fingerprint(self, model: ModelConfig) -> str:
        if model not in self._model_fingerprints:
            self._model_fingerprints[model] = self._fingerprint_model(model)
        return self._model_fingerprints[model]

    def _fingerprint_model(self, model: ModelConfig) -> str:
        parts = [
            f"name={model.name}",
            f"path={model.path}",
            f"package={model.package}",
            f"quantization={model.quantization}",
            f"parameters={model.parameters}",
        ]
        if model.package:
            parts.append(f"package_version={_package_version(model.package)}")
        file = self._model_files.get(model.name)
        if file is not None:
            parts.append(f"file={file_fingerprint(file)}")
        else:
            log.warning(
                "Model %s has no file on this machine, so its verdict cache key names the"
                " configuration only: replacing its file under the same name and package"
                " version is not noticed",
                model.name,
            )
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cacheable(failure_kind: int, answered: bool) -> bool:
    """Return whether the same inputs would give this outcome again."""
    return answered or failure_kind in CACHEABLE_FAILURES


def context_fingerprint(request: inference_pb2.GenerateRequest) -> str:
    """SHA-256 of what a worker reads from a request, without the request id and the
    sampling settings (those are in the settings fingerprint)."""
    content = inference_pb2.GenerateRequest()
    content.CopyFrom(request)
    content.ClearField("request_id")
    content.ClearField("temperature")
    content.ClearField("seed")
    content.ClearField("max_tokens")
    return hashlib.sha256(content.SerializeToString(deterministic=True)).hexdigest()


def file_fingerprint(path: Path) -> str:
    """Size and SHA-256 of the first and last FILE_SAMPLE_BYTES of a file."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(FILE_SAMPLE_BYTES))
        handle.seek(max(size - FILE_SAMPLE_BYTES, 0))
        digest.update(handle.read(FILE_SAMPLE_BYTES))
    return f"{size}:{digest.hexdigest()}"


def worker_code_fingerprint() -> str:
    """SHA-256 over the source of the worker modules that shape a completion."""
    worker_dir = Path(__file__).resolve().parent.parent / "worker"
    digest = hashlib.sha256()
    for name in WORKER_MODULES:
        digest.update(name.encode())
        digest.update((worker_dir / f"{name}.py").read_bytes())
    return digest.hexdigest()


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _matches(row: dict[str, object], key: CacheKey) -> bool:
    return (
        row["key"] == key.digest
        and row["model"] == key.model
        and row["model_fingerprint"] == key.model_fingerprint
        and row["context_fingerprint"] == key.context_fingerprint
        and row["settings_fingerprint"] == key.settings_fingerprint
    )
