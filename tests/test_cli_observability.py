"""The observability options of `quorum serve`, `worker` and `up`, and the worker's memory
reading."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from server.cli import _observability_options, build_parser
from server.config import ConfigError
from server.observability import metrics_host
from worker.metrics import resident_memory_bytes


def test_serve_options_parsed():
    args = build_parser().parse_args(
        ["serve", "--metrics-port", "9464", "--otlp-endpoint", "http://127.0.0.1:4317",
         "--log-format", "json"]
    )  # fmt: skip
    options = _observability_options(args)
    assert options.metrics_port == 9464
    assert options.otlp_endpoint == "http://127.0.0.1:4317"
    assert args.log_format == "json"


def test_worker_metrics_off_by_default():
    args = build_parser().parse_args(["worker", "--model", "m"])
    options = _observability_options(args)
    assert options.metrics_port is None
    assert options.otlp_endpoint is None


def test_log_format_before_command():
    args = build_parser().parse_args(["--log-format", "json", "up", "--metrics-port", "0"])
    assert args.log_format == "json"
    assert _observability_options(args).metrics_port == 0


def test_metrics_port_out_of_range():
    args = build_parser().parse_args(["serve", "--metrics-port", "70000"])
    with pytest.raises(ConfigError, match="--metrics-port 70000"):
        _observability_options(args)


def test_log_format_unknown_rejected():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--log-format", "xml", "serve"])


@pytest.mark.parametrize(
    ("listen", "host"),
    [("127.0.0.1:50051", "127.0.0.1"), ("0.0.0.0:50051", "0.0.0.0"), ("[::1]:0", "::1"),
     (":50051", "0.0.0.0")],
)  # fmt: skip
def test_metrics_host_follows_listen(listen, host):
    assert metrics_host(listen) == host


def test_resident_memory_of_this_process():
    assert resident_memory_bytes() > 1e6


def test_resident_memory_parsed_in_bytes(tmp_path: Path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  2048 kB\nThreads:\t4\n")
    assert resident_memory_bytes(status) == 2048 * 1024


def test_resident_memory_missing_file(tmp_path: Path):
    value = resident_memory_bytes(tmp_path / "absent")
    assert math.isnan(value)
