"""Ensemble configuration: one YAML file whose keys mirror the `finance-slm-ensemble` ConfigMap.

A ConfigMap stores every value as a string, so each scalar key also accepts its string form
("25000", "0.90", "true"), and the model list may be a YAML document inside a string.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from server import model_files
from server.confidence_map import PLATT, PlattMap
from server.market_store import check_symbol

LARGE_MODEL_MIN_WEIGHT = 3.0

# Section name -> (priority, default token budget at a 25,000-token context).
DEFAULT_SECTION_BUDGETS: dict[str, tuple[int, int]] = {
    "current_ohlcv": (1, 3000),
    "order_book": (1, 4000),
    "recent_news": (2, 6000),
    "indicators": (3, 2000),
    "volatility_metrics": (3, 2000),
    "pattern_matching": (4, 5000),
    "correlation_data": (4, 3000),
}


class ConfigError(ValueError):
    """The configuration file is missing, malformed or names a file that does not exist."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    # Exactly one of path and package locates the GGUF file.
    path: str | None
    package: str | None
    weight: float
    quantization: str = ""
    parameters: str = ""
    # 0 uses every core of the worker's machine.
    threads: int = 0
    # 0 runs with the model's training context, capped at max_context_size.
    n_ctx: int = 0
    max_tokens: int = 256
    # host:port of the worker; port 0 lets `quorum up` pick a free port.
    address: str = "127.0.0.1:0"
    # More workers serving the same model. A call that finds its worker unavailable or
    # overloaded before the first token is retried on the next one.
    replicas: tuple[str, ...] = ()
    # Requests a worker queues while its model is busy. Past this it returns RESOURCE_EXHAUSTED.
    max_queue: int = 4
    # Hard limit of one generation for this model; 0 uses max_processing_time_seconds.
    max_processing_time_seconds: float = 0.0
    # Maps the model's stated confidence to a calibrated one before the consensus weighs it;
    # None uses the stated confidence.
    confidence_calibration: PlattMap | None = None

    def calibrated(self, confidence: float) -> float:
        """Return the confidence the consensus weighs for a stated confidence."""
        if self.confidence_calibration is None:
            return confidence
        return self.confidence_calibration.apply(confidence)

    @property
    def addresses(self) -> tuple[str, ...]:
        """The worker's address, then its replicas' in the order retried."""
        return (self.address, *self.replicas)

    def time_limit_s(self, default_s: float) -> float:
        return self.max_processing_time_seconds or default_s

    def is_large(self, large_min_weight: float = LARGE_MODEL_MIN_WEIGHT) -> bool:
        return self.weight >= large_min_weight

    def resolve_path(self, models_dir: Path) -> Path:
        """Return the GGUF file, assembling it from its package when needed."""
        return model_files.resolve(self.name, self.path, self.package, models_dir.expanduser())


@dataclass(frozen=True)
class Thresholds:
    confidence_execute: float = 0.85
    agreement_execute: float = 0.70
    confidence_alert: float = 0.70
    agreement_alert: float = 0.60
    large_model_min_weight: float = LARGE_MODEL_MIN_WEIGHT
    # Share of answered large models that must agree: 1.0 is all of them. Two of three is
    # "2/3" (0.67 would need all three, since 2/3 = 0.667 < 0.67).
    large_consensus_min_agreement: float = 1.0
    # A cycle decides only when the models that answered hold at least this share of the
    # total base weight; below it the decision is inform.
    quorum_weight_share: float = 0.5


# Largest gRPC message a server or channel accepts or sends, in bytes. A request with a
# million bars is about 50 MB; a 50,000-token context a few hundred kilobytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def message_options(max_message_bytes: int) -> tuple[tuple[str, int], ...]:
    """gRPC options that cap sent and received messages at `max_message_bytes`."""
    return (
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    )


@dataclass(frozen=True)
class SecuritySettings:
    """TLS and bearer-token settings; server.security turns them into gRPC credentials.

    Paths are PEM files (the token file excepted). Empty means not set.
    """

    tls_cert_file: str = ""
    tls_key_file: str = ""
    # The CA that verifies peers: the servers' certificates, and the coordinator's client
    # certificate when tls_client_auth is on.
    tls_ca_file: str = ""
    # Workers require the coordinator's client certificate (mutual TLS).
    tls_client_auth: bool = False
    auth_token_file: str = ""
    # Plaintext gRPC, allowed on loopback addresses only.
    insecure: bool = False


@dataclass(frozen=True)
class Config:
    models: tuple[ModelConfig, ...]
    default_context_size: int = 25000
    max_context_size: int = 50000
    auto_expand_threshold: float = 0.90
    market_window_minutes: int = 60
    max_processing_time_seconds: float = 300.0
    # Hard limit of a whole cycle, from the request to the record; a client's own gRPC
    # deadline shortens it.
    cycle_deadline_seconds: float = 600.0
    # On SIGTERM a server stops taking calls and lets in-flight ones finish for this long,
    # then cancels them.
    shutdown_grace_seconds: float = 30.0
    # Past this size a gRPC message is refused with RESOURCE_EXHAUSTED, on both ends.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    decision_window_minutes: int = 30
    horizon_minutes: int = 30
    # Backtests: a realized move within this many basis points of 0 is labelled neutral.
    label_neutral_band_bps: float = 10.0
    # Backtests: the round-trip cost of one position, in basis points.
    trade_cost_bps: float = 5.0
    max_concurrent_symbols: int = 2
    queue_strategy: str = "priority"
    enable_parallel_processing: bool = True
    # Symbols that `quorum analyze --all-symbols` analyzes, in this order.
    symbols: tuple[str, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Cores each host gives to generation, and models on a host queue within them. An
    # unlisted loopback host gets the coordinator machine's core count. Any other unlisted
    # host runs all its models at once.
    host_core_budget: Mapping[str, int] = field(default_factory=dict)
    section_budgets: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: dict(DEFAULT_SECTION_BUDGETS)
    )
    data_lake: str = "./data/lake"
    # Where GGUF files assembled from packages are kept; "~" is the user's home.
    models_dir: str = "~/.cache/quorum/models"
    # Model whose tokenizer the coordinator counts section tokens with; default the first.
    context_tokenizer_model: str = ""
    coordinator_address: str = ""
    coordinator_listen: str = "127.0.0.1:50051"
    temperature: float = 0.0
    seed: int = 42
    security: SecuritySettings = field(default_factory=SecuritySettings)
    source_path: str = ""

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(model.name for model in self.models)
        raise ConfigError(f"model {name!r} is not configured (configured: {known})")

    def fingerprint(self) -> str:
        """SHA-256 over every setting that shapes a result, so a record names its ensemble."""
        shaping = asdict(self)
        transport_keys = ("coordinator_address", "coordinator_listen", "security")
        operation_keys: tuple[str, ...] = ("shutdown_grace_seconds", "max_message_bytes", "symbols")
        # Backtest scoring settings shape no analysis result.
        operation_keys += ("label_neutral_band_bps", "trade_cost_bps")
        for key in ("source_path", "data_lake", *transport_keys, *operation_keys):
            shaping.pop(key)
        for model in shaping["models"]:
            for key in ("address", "replicas", "max_queue"):
                model.pop(key)
        text = json.dumps(shaping, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


_THRESHOLD_KEYS = {
    "confidence_threshold_execute": "confidence_execute",
    "agreement_threshold_execute": "agreement_execute",
    "confidence_threshold_alert": "confidence_alert",
    "agreement_threshold_alert": "agreement_alert",
    "large_model_min_weight": "large_model_min_weight",
    "large_consensus_min_agreement": "large_consensus_min_agreement",
    "quorum_weight_share": "quorum_weight_share",
}

_INT_KEYS = (
    "default_context_size",
    "max_context_size",
    "market_window_minutes",
    "decision_window_minutes",
    "horizon_minutes",
    "max_concurrent_symbols",
    "max_message_bytes",
    "seed",
)
_FLOAT_KEYS = (
    "auto_expand_threshold",
    "max_processing_time_seconds",
    "cycle_deadline_seconds",
    "shutdown_grace_seconds",
    "temperature",
    "label_neutral_band_bps",
    "trade_cost_bps",
)
_STRING_KEYS = (
    "queue_strategy",
    "data_lake",
    "models_dir",
    "context_tokenizer_model",
    "coordinator_address",
    "coordinator_listen",
)
_MODEL_KEYS = {
    "name",
    "path",
    "package",
    "weight",
    "quantization",
    "parameters",
    "size",
    "threads",
    "n_ctx",
    "max_tokens",
    "address",
    "replicas",
    "max_queue",
    "max_processing_time_seconds",
    "confidence_calibration",
}
# Keys of the reference ConfigMap that this loader reads into other settings.
_MODEL_LIST_KEYS = ("models", "large_models", "small_models")
_OTHER_KEYS = {
    "enable_parallel_processing",
    "require_large_model_consensus",
    "host_core_budget",
    "section_budgets",
    "symbols",
}
_TLS_PATH_KEYS = ("tls_cert_file", "tls_key_file", "tls_ca_file")
SECURITY_PATH_KEYS = (*_TLS_PATH_KEYS, "auth_token_file")
_SECURITY_BOOL_KEYS = ("tls_client_auth", "insecure")


def load(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a configuration file, or a directory with one file per key (a mounted ConfigMap).

    `overrides` replace top-level keys after reading.
    """
    source = Path(path)
    raw = read_raw(source)
    raw.update(overrides or {})
    config = from_mapping(raw, base_dir=source.resolve().parent)
    return replace(config, source_path=str(source))


def read_raw(source: Path) -> dict[str, Any]:
    """Return a configuration's keys as written, before any check or conversion."""
    if source.is_dir():
        return _read_configmap_dir(source)
    return _read_yaml(source)


def _read_yaml(source: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(source.read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {source} not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration file {source} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {source} must contain a mapping of keys")
    return raw


def _read_configmap_dir(source: Path) -> dict[str, Any]:
    """Read a mounted ConfigMap: one file per key, the file's text as the value.

    Kubernetes keeps its own bookkeeping entries (`..data`, `..2024_...`) beside the keys;
    names starting with a dot are skipped.
    """
    return {
        entry.name: entry.read_text()
        for entry in sorted(source.iterdir())
        if not entry.name.startswith(".") and entry.is_file()
    }


def from_mapping(raw: Mapping[str, Any], base_dir: Path | None = None) -> Config:
    """Build a Config from parsed YAML or ConfigMap data, validating every key."""
    known = set(_THRESHOLD_KEYS) | set(_INT_KEYS) | set(_FLOAT_KEYS) | set(_STRING_KEYS)
    known |= set(_MODEL_LIST_KEYS) | _OTHER_KEYS
    known |= set(SECURITY_PATH_KEYS) | set(_SECURITY_BOOL_KEYS)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")

    values: dict[str, Any] = {}
    for key in _INT_KEYS:
        if key in raw:
            values[key] = _as_int(key, raw[key])
    for key in _FLOAT_KEYS:
        if key in raw:
            values[key] = _as_float(key, raw[key])
    for key in _STRING_KEYS:
        if key in raw and raw[key] is not None:
            values[key] = str(raw[key])
    if "enable_parallel_processing" in raw:
        values["enable_parallel_processing"] = _as_bool(
            "enable_parallel_processing", raw["enable_parallel_processing"]
        )
    require_large = raw.get("require_large_model_consensus", True)
    if not _as_bool("require_large_model_consensus", require_large):
        raise ConfigError(
            "require_large_model_consensus: false is not supported: Quorum never executes"
            " without agreement of the large models"
        )

    thresholds = {
        field_name: _as_share(key, raw[key])
        for key, field_name in _THRESHOLD_KEYS.items()
        if key in raw
    }
    values["thresholds"] = Thresholds(**thresholds)
    if "host_core_budget" in raw:
        values["host_core_budget"] = _parse_core_budget(raw["host_core_budget"])
    if "section_budgets" in raw:
        values["section_budgets"] = _parse_section_budgets(raw["section_budgets"])
    if "symbols" in raw:
        values["symbols"] = _parse_symbols(raw["symbols"])

    values["security"] = _parse_security(raw, base_dir)
    models = _parse_models(raw, base_dir)
    config = Config(models=models, **values)
    _validate(config)
    return config


def model_lists(raw: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Return each model list key that is set with its entries, parsing a ConfigMap's string.

    Raises ConfigError when a key's value is not a list.
    """
    lists: dict[str, list[Any]] = {}
    for key in _MODEL_LIST_KEYS:
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list of models, got {type(value).__name__}")
        lists[key] = value
    return lists


def _parse_models(raw: Mapping[str, Any], base_dir: Path | None) -> tuple[ModelConfig, ...]:
    entries = [entry for listed in model_lists(raw).values() for entry in listed]
    if not entries:
        raise ConfigError("no models configured: add a `models` list")

    models = []
    for index, entry in enumerate(entries):
        models.append(_parse_model(f"models[{index}]", entry, base_dir))
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"model names must be unique, repeated: {', '.join(duplicates)}")
    return tuple(models)


def _parse_model(where: str, entry: Any, base_dir: Path | None) -> ModelConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping, got {entry!r}")
    unknown = sorted(set(entry) - _MODEL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name is missing")
    path = entry.get("path")
    package = entry.get("package")
    if (path is None) == (package is None):
        raise ConfigError(f"{where} ({name}) needs exactly one of `path` or `package`")
    if path is not None and base_dir is not None and not Path(path).is_absolute():
        path = str((base_dir / path).resolve())
    if "weight" not in entry:
        raise ConfigError(f"{where}.weight is missing for {name}")
    weight = _as_float(f"{where}.weight", entry["weight"])
    if weight <= 0:
        raise ConfigError(f"{where}.weight must be positive, got {weight}")
    model = ModelConfig(
        name=name,
        path=path,
        package=package,
        weight=weight,
        quantization=str(entry.get("quantization", "")),
        parameters=str(entry.get("parameters", entry.get("size", ""))),
        threads=_as_int(f"{where}.threads", entry.get("threads", 0)),
        n_ctx=_as_int(f"{where}.n_ctx", entry.get("n_ctx", 0)),
        max_tokens=_as_int(f"{where}.max_tokens", entry.get("max_tokens", 256)),
        address=str(entry.get("address", "127.0.0.1:0")),
        replicas=_as_addresses(f"{where}.replicas", entry.get("replicas", [])),
        max_queue=_as_int(f"{where}.max_queue", entry.get("max_queue", 4)),
        max_processing_time_seconds=_as_float(
            f"{where}.max_processing_time_seconds", entry.get("max_processing_time_seconds", 0)
        ),
        confidence_calibration=_parse_calibration(
            f"{where}.confidence_calibration", entry.get("confidence_calibration")
        ),
    )
    if model.max_queue < 0:
        raise ConfigError(f"{where}.max_queue must be 0 or more, got {model.max_queue}")
    if model.max_processing_time_seconds < 0:
        raise ConfigError(
            f"{where}.max_processing_time_seconds must be 0 (use the global one) or positive,"
            f" got {model.max_processing_time_seconds}"
        )
    if model.threads < 0:
        raise ConfigError(f"{where}.threads must be 0 (all cores) or more, got {model.threads}")
    if model.n_ctx < 0:
        raise ConfigError(f"{where}.n_ctx must be 0 or positive, got {model.n_ctx}")
    if model.max_tokens < 16:
        raise ConfigError(f"{where}.max_tokens must be at least 16, got {model.max_tokens}")
    return model


def _parse_calibration(where: str, value: Any) -> PlattMap | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping with method, slope and intercept")
    unknown = sorted(set(value) - {"method", "slope", "intercept"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    method = value.get("method", PLATT)
    if method != PLATT:
        raise ConfigError(f"{where}.method must be {PLATT!r}, got {method!r}")
    for key in ("slope", "intercept"):
        if key not in value:
            raise ConfigError(f"{where}.{key} is missing")
    slope = _as_float(f"{where}.slope", value["slope"])
    intercept = _as_float(f"{where}.intercept", value["intercept"])
    for key, number in (("slope", slope), ("intercept", intercept)):
        if not math.isfinite(number):
            raise ConfigError(f"{where}.{key} must be finite, got {number}")
    return PlattMap(slope=slope, intercept=intercept)


def _validate(config: Config) -> None:
    if config.default_context_size < 512:
        raise ConfigError(
            f"default_context_size must be at least 512, got {config.default_context_size}"
        )
    if config.max_context_size < config.default_context_size:
        raise ConfigError(
            f"max_context_size {config.max_context_size} is below default_context_size"
            f" {config.default_context_size}"
        )
    if not 0 < config.auto_expand_threshold <= 1:
        raise ConfigError(
            f"auto_expand_threshold must be in (0, 1], got {config.auto_expand_threshold}"
        )
    if not 1 <= config.market_window_minutes <= 24 * 60:
        raise ConfigError(
            f"market_window_minutes must be in [1, 1440], got {config.market_window_minutes}"
        )
    if config.horizon_minutes < 1:
        raise ConfigError(f"horizon_minutes must be positive, got {config.horizon_minutes}")
    for key in ("label_neutral_band_bps", "trade_cost_bps"):
        value = getattr(config, key)
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{key} must be 0 or a positive number of basis points, got {value}")
    if config.max_processing_time_seconds <= 0:
        raise ConfigError(
            "max_processing_time_seconds must be positive,"
            f" got {config.max_processing_time_seconds}"
        )
    if config.cycle_deadline_seconds <= 0:
        raise ConfigError(
            f"cycle_deadline_seconds must be positive, got {config.cycle_deadline_seconds}"
        )
    if config.max_message_bytes < 64 * 1024:
        raise ConfigError(
            f"max_message_bytes must be at least 65536, got {config.max_message_bytes}"
        )
    if config.shutdown_grace_seconds < 0:
        raise ConfigError(
            f"shutdown_grace_seconds must be 0 or more, got {config.shutdown_grace_seconds}"
        )
    if config.queue_strategy not in ("priority", "fifo"):
        raise ConfigError(f"queue_strategy must be priority or fifo, got {config.queue_strategy!r}")
    if config.max_concurrent_symbols < 1:
        raise ConfigError(
            f"max_concurrent_symbols must be at least 1, got {config.max_concurrent_symbols}"
        )
    for name, value in asdict(config.thresholds).items():
        if name == "large_model_min_weight":
            continue
        if not 0 <= value <= 1:
            raise ConfigError(f"threshold {name} must be in [0, 1], got {value}")
    thresholds = config.thresholds
    if thresholds.quorum_weight_share <= 0:
        raise ConfigError(
            f"quorum_weight_share must be in (0, 1], got {thresholds.quorum_weight_share}:"
            " a cycle with no answer must not decide"
        )
    for measure in ("confidence", "agreement"):
        alert = getattr(thresholds, f"{measure}_alert")
        execute = getattr(thresholds, f"{measure}_execute")
        if alert > execute:
            raise ConfigError(
                f"{measure}_threshold_alert {alert} is above {measure}_threshold_execute"
                f" {execute}: an alert must not need more than an execution"
            )
    if config.context_tokenizer_model:
        config.model(config.context_tokenizer_model)


def _parse_security(raw: Mapping[str, Any], base_dir: Path | None) -> SecuritySettings:
    """Read the TLS and token keys; relative paths are relative to the configuration file."""
    values: dict[str, Any] = {}
    for key in SECURITY_PATH_KEYS:
        path = str(raw.get(key) or "").strip()
        if path and base_dir is not None and not Path(path).is_absolute():
            path = str((base_dir / path).resolve())
        values[key] = path
    for key in _SECURITY_BOOL_KEYS:
        values[key] = _as_bool(key, raw.get(key, False))
    settings = SecuritySettings(**values)

    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("tls_cert_file and tls_key_file must be set together")
    if settings.insecure:
        tls_keys = [key for key in _TLS_PATH_KEYS if values[key]]
        if tls_keys or settings.tls_client_auth:
            conflicting = ", ".join(tls_keys or ["tls_client_auth"])
            raise ConfigError(
                f"insecure: true turns TLS off but {conflicting} is set: remove one of them"
            )
    if settings.tls_client_auth and not settings.tls_ca_file:
        raise ConfigError(
            "tls_client_auth: true needs tls_ca_file, the CA that signed the coordinator's"
            " client certificate"
        )
    return settings


def _parse_core_budget(value: Any) -> dict[str, int]:
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if not isinstance(value, dict):
        raise ConfigError(f"host_core_budget must map host to cores, got {value!r}")
    budget = {
        str(host): _as_int(f"host_core_budget.{host}", cores) for host, cores in value.items()
    }
    for host, cores in budget.items():
        if cores < 1:
            raise ConfigError(f"host_core_budget.{host} must be at least 1, got {cores}")
    return budget


def _parse_section_budgets(value: Any) -> dict[str, tuple[int, int]]:
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if not isinstance(value, dict):
        raise ConfigError(f"section_budgets must map section to priority and tokens, got {value!r}")
    budgets = dict(DEFAULT_SECTION_BUDGETS)
    for name, entry in value.items():
        if name not in DEFAULT_SECTION_BUDGETS:
            known = ", ".join(DEFAULT_SECTION_BUDGETS)
            raise ConfigError(f"section_budgets: unknown section {name!r} (known: {known})")
        if not isinstance(entry, dict) or set(entry) - {"priority", "tokens"}:
            raise ConfigError(f"section_budgets.{name} must have `priority` and `tokens`")
        priority, tokens = budgets[name]
        priority = _as_int(f"section_budgets.{name}.priority", entry.get("priority", priority))
        tokens = _as_int(f"section_budgets.{name}.tokens", entry.get("tokens", tokens))
        if priority < 1 or tokens < 0:
            raise ConfigError(f"section_budgets.{name}: priority >= 1 and tokens >= 0 required")
        budgets[name] = (priority, tokens)
    return budgets


def _parse_symbols(value: Any) -> tuple[str, ...]:
    """Read the symbol list: a YAML list, or its text as a ConfigMap stores it."""
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"symbols must be a list such as [BTC, ETH], got {value!r}")
    symbols = []
    for index, symbol in enumerate(value):
        if not isinstance(symbol, str):
            raise ConfigError(f"symbols[{index}] must be a string, got {symbol!r}")
        try:
            check_symbol(symbol)
        except ValueError as error:
            raise ConfigError(f"symbols[{index}]: {error}") from None
        symbols.append(symbol)
    repeated = sorted({symbol for symbol in symbols if symbols.count(symbol) > 1})
    if repeated:
        raise ConfigError(f"symbols must be unique, repeated: {', '.join(repeated)}")
    return tuple(symbols)


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    return int(number)


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be finite, got {value!r}")
    return number


def _as_share(key: str, value: Any) -> float:
    """Read a number, or a fraction such as "2/3" so that two of three is exactly 2/3."""
    if isinstance(value, str) and "/" in value:
        numerator, _, denominator = value.partition("/")
        top = _as_float(key, numerator.strip())
        bottom = _as_float(key, denominator.strip())
        if bottom == 0:
            raise ConfigError(f"{key} has a zero denominator: {value!r}")
        return top / bottom
    return _as_float(key, value)


def _as_addresses(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{key} must be a list of host:port addresses, got {value!r}")
    addresses = tuple(item.strip() for item in value if item.strip())
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"{key} has {address!r}, which is not host:port")
    return addresses


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{key} must be true or false, got {value!r}")


def check_model_files(config: Config) -> dict[str, Path]:
    """Resolve every model's GGUF file; raise one error naming each missing file."""
    resolved: dict[str, Path] = {}
    missing: list[str] = []
    for model in config.models:
        try:
            resolved[model.name] = model.resolve_path(Path(config.models_dir).expanduser())
        except model_files.ModelFileError as error:
            missing.append(str(error))
    if missing:
        raise ConfigError("model files missing:\n  " + "\n  ".join(missing))
    return resolved
