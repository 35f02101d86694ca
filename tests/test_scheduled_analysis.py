"""Scheduled analysis: the `symbols` key and `quorum analyze --all-symbols --at now`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from server import config as config_module
from server.cli import build_parser, last_window_close, main
from server.config import ConfigError
from tests.conftest import smollm2_entry, write_config
from tests.quorum_process import run_quorum as _quorum

ENTRY = {"name": "m", "path": "/models/m.gguf", "weight": 1.0}


def test_last_window_close_rounds_down():
    now = datetime(2019, 6, 3, 12, 34, 56, tzinfo=UTC)
    assert last_window_close(now, 60) == datetime(2019, 6, 3, 12, 0, tzinfo=UTC)


def test_last_window_close_on_boundary():
    now = datetime(2019, 6, 3, 12, 0, tzinfo=UTC)
    assert last_window_close(now, 60) == now


def test_last_window_close_half_hour():
    now = datetime(2019, 6, 3, 12, 59, 59, tzinfo=UTC)
    assert last_window_close(now, 30) == datetime(2019, 6, 3, 12, 30, tzinfo=UTC)


def test_last_window_close_other_zone():
    now = datetime(2019, 6, 3, 14, 10, tzinfo=timezone(timedelta(hours=2)))
    assert last_window_close(now, 60) == datetime(2019, 6, 3, 12, 0, tzinfo=UTC)


def test_last_window_close_rejects_zero():
    with pytest.raises(ValueError, match="window_minutes must be at least 1, got 0"):
        last_window_close(datetime(2019, 6, 3, tzinfo=UTC), 0)


def test_at_now_parses_to_none():
    args = build_parser().parse_args(["analyze", "--all-symbols", "--at", "now"])
    assert args.at is None
    assert args.all_symbols


def test_symbol_and_all_symbols_exclusive(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["analyze", "--symbol", "BTC", "--all-symbols", "--at", "now"])
    assert stopped.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_symbols_list():
    config = config_module.from_mapping({"models": [ENTRY], "symbols": ["BTC", "ETH"]})
    assert config.symbols == ("BTC", "ETH")


def test_symbols_configmap_text():
    config = config_module.from_mapping({"models": [ENTRY], "symbols": "- BTC\n- ES.F\n"})
    assert config.symbols == ("BTC", "ES.F")


def test_symbols_default_empty():
    assert config_module.from_mapping({"models": [ENTRY]}).symbols == ()


def test_symbols_invalid_symbol():
    with pytest.raises(ConfigError, match=r"symbols\[1\]: symbol 'eth' is invalid"):
        config_module.from_mapping({"models": [ENTRY], "symbols": ["BTC", "eth"]})


def test_symbols_not_a_list():
    with pytest.raises(ConfigError, match="symbols must be a list such as"):
        config_module.from_mapping({"models": [ENTRY], "symbols": "BTC"})


def test_symbols_not_strings():
    with pytest.raises(ConfigError, match=r"symbols\[0\] must be a string, got 42"):
        config_module.from_mapping({"models": [ENTRY], "symbols": [42]})


def test_symbols_repeated():
    with pytest.raises(ConfigError, match="symbols must be unique, repeated: BTC"):
        config_module.from_mapping({"models": [ENTRY], "symbols": ["BTC", "ETH", "BTC"]})


def test_symbols_outside_fingerprint():
    without = config_module.from_mapping({"models": [ENTRY]})
    with_symbols = config_module.from_mapping({"models": [ENTRY], "symbols": ["BTC"]})
    assert without.fingerprint() == with_symbols.fingerprint()


@pytest.mark.parametrize("name", ["local.yaml", "reference.yaml"])
def test_bundled_configs_list_symbols(name):
    path = Path(config_module.__file__).parent / "configs" / name
    assert config_module.load(path).symbols == ("BTC", "ETH")


def test_all_symbols_without_list(tmp_path, capsys):
    config = write_config(tmp_path, tmp_path / "lake", [ENTRY])
    status = main(["--config", str(config), "analyze", "--all-symbols", "--at", "now"])
    assert status == 2
    assert "--all-symbols needs a `symbols` list" in capsys.readouterr().err


@pytest.mark.model
def test_all_symbols_analyzes_each(tmp_path, lake_with_bars, smollm2_path):
    config = write_config(
        tmp_path, lake_with_bars, [smollm2_entry(smollm2_path)], symbols=["BTC", "ETH"]
    )
    completed = _quorum(
        "--config",
        str(config),
        "analyze",
        "--all-symbols",
        "--at",
        "2019-06-03T12:00Z",
        "--context-size",
        "1000",
        "--json",
    )
    assert completed.returncode == 0, completed.stderr
    decoder = json.JSONDecoder()
    text = completed.stdout.strip()
    first, end = decoder.raw_decode(text)
    second, _ = decoder.raw_decode(text[end:].lstrip())
    assert [first["symbol"], second["symbol"]] == ["BTC", "ETH"]
    assert first["window_end"] == "2019-06-03T12:00:00Z"
    assert second["window_end"] == "2019-06-03T12:00:00Z"


@pytest.mark.model
def test_all_symbols_at_now(tmp_path, lake_with_bars, smollm2_path):
    """`--at now` requests the last hour's close, which lies after the bundled 2019 bars."""
    config = write_config(
        tmp_path, lake_with_bars, [smollm2_entry(smollm2_path)], symbols=["BTC", "ETH"]
    )
    before = last_window_close(datetime.now(UTC), 60)
    completed = _quorum("--config", str(config), "analyze", "--all-symbols", "--at", "now")
    after = last_window_close(datetime.now(UTC), 60)
    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if "INVALID_ARGUMENT" in line]
    assert len(errors) == 2
    expected = {f"{moment:%Y-%m-%dT%H:%M:%S}Z" for moment in (before, after)}
    assert any(stamp in errors[0] for stamp in expected), errors[0]
    assert "store's bars of BTC" in errors[0]
    assert "store's bars of ETH" in errors[1]
