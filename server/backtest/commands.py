"""`quorum backtest` and `quorum calibrate`: the command-line side of backtests."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.backtest.schedule import parse_every, parse_moment
from server.config import Config
from server.market_data import NS_PER_MINUTE

if TYPE_CHECKING:
    from server.backtest.runner import BacktestPlan, BacktestRun

EXIT_INTERRUPTED = 130
# No window of the period could be scored (all skipped): nothing to report on.
EXIT_NO_WINDOWS = 1
EXIT_USAGE = 2
# The run finished but its report or learned configuration could not be written.
EXIT_FAILED = 1


class UsageError(ValueError):
    """A command-line value that cannot be used; the message names it."""


def add_commands(commands: argparse._SubParsersAction) -> None:
    backtest = commands.add_parser(
        "backtest",
        help="run the analysis cycle on every window of a past period and score it",
        description="Run the real analysis cycle on every window of a past period, label each"
        " window with what the market did over the horizon, and score the ensemble, each"
        " model and the baselines. Verdicts are cached in the data lake, so a re-run (with"
        " other weights or thresholds too) generates nothing again.",
    )
    _add_selection(backtest)
    backtest.add_argument("--from", dest="start", required=True, help="first window end (UTC)")
    backtest.add_argument("--to", dest="end", required=True, help="period end, excluded (UTC)")
    backtest.add_argument(
        "--out", type=Path, help="report folder (default: backtests/SYMBOLS_FROM_TO_EVERY)"
    )
    backtest.add_argument("--json", action="store_true", help="print the report as JSON")
    backtest.set_defaults(handler=run_backtest)

    calibrate = commands.add_parser(
        "calibrate",
        help="learn model weights and confidence maps on one period, report on a later one",
        description="Fit per-model weights (exponential weights, Hedge) and per-model"
        " confidence maps (Platt scaling) on the backtest windows of the fit period, then"
        " score the configured and the learned ensemble on the later, held-out test period"
        " only, and write a configuration the coordinator loads.",
    )
    _add_selection(calibrate)
    for name, text in (
        ("--fit-from", "first window end of the fit period (UTC)"),
        ("--fit-to", "end of the fit period, excluded (UTC)"),
        ("--test-from", "first window end of the held-out period, at or after --fit-to"),
        ("--test-to", "end of the held-out period, excluded (UTC)"),
    ):
        calibrate.add_argument(name, required=True, help=text)
    calibrate.add_argument(
        "--out", type=Path, help="report folder (default: calibrations/SYMBOLS_TESTFROM_TESTTO)"
    )
    calibrate.add_argument(
        "--write-config",
        type=Path,
        help="where the learned configuration goes (default: OUT/calibrated.yaml)",
    )
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.set_defaults(handler=run_calibrate)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    symbols = parser.add_mutually_exclusive_group(required=True)
    symbols.add_argument(
        "--symbol", action="append", help="symbol in the store; repeat for several at once"
    )
    symbols.add_argument(
        "--all-symbols", action="store_true", help="every symbol of the configuration's list"
    )
    parser.add_argument(
        "--every", default="", help="step between window ends: 30m, 60m, 1h (default: window)"
    )
    parser.add_argument(
        "--window-minutes", type=int, default=0, help="window length (default: configured)"
    )
    parser.add_argument(
        "--context-size", type=int, default=0, help="context tokens (default: configured)"
    )
    parser.add_argument(
        "--cost-bps", type=float, help="round-trip cost of a position (default: trade_cost_bps)"
    )
    parser.add_argument(
        "--band-bps",
        type=float,
        help="moves within this many bps are neutral (default: label_neutral_band_bps)",
    )
    parser.add_argument(
        "--worker",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="use a running worker for a model instead of starting one",
    )


def run_backtest(args: argparse.Namespace, config: Config) -> int:
    from server.backtest import documents

    try:
        config = _with_overrides(config, args)
        plan = _plan(args, config, args.start, args.end)
        external = _external_workers(args.worker)
    except UsageError as error:
        return _usage_failure("backtest", error)
    out_dir = args.out or Path("backtests") / _folder_name(plan)
    try:
        _check_out_dir(out_dir)
        (run,) = asyncio.run(_run_plans(config, [plan], external))
    except UsageError as error:
        return _usage_failure("backtest", error)
    outcomes = run.sorted_outcomes()
    if not outcomes:
        if run.interrupted:
            _say_interrupted(run)
            return EXIT_INTERRUPTED
        _say_skipped(run)
        return EXIT_NO_WINDOWS
    document = documents.backtest_report(config, plan, run)
    try:
        documents.write_backtest(document, outcomes, out_dir)
    except OSError as error:
        return _report_failure("backtest", out_dir, error)
    _print_report(document, documents.render_backtest(document), args.json, out_dir)
    if run.interrupted:
        _say_interrupted(run)
        return EXIT_INTERRUPTED
    return 0


def run_calibrate(args: argparse.Namespace, config: Config) -> int:
    from server.backtest import calibration, documents
    from server.backtest.calibrated_config import write_calibrated_config
    from server.backtest.recompute import recompute

    try:
        config = _with_overrides(config, args)
        fit_plan = _plan(args, config, args.fit_from, args.fit_to)
        test_plan = _plan(args, config, args.test_from, args.test_to)
        if test_plan.start_ns < fit_plan.end_ns:
            raise UsageError(
                f"--test-from {args.test_from} is before --fit-to {args.fit_to}: the held-out"
                " period must come after the fit period"
            )
        external = _external_workers(args.worker)
    except UsageError as error:
        return _usage_failure("calibrate", error)
    out_dir = args.out or Path("calibrations") / _folder_name(test_plan)
    try:
        _check_out_dir(out_dir)
        if args.write_config is not None:
            _check_config_path(args.write_config)
        fit_run, *rest = asyncio.run(_run_plans(config, [fit_plan, test_plan], external))
    except UsageError as error:
        return _usage_failure("calibrate", error)
    if fit_run.interrupted or not rest or rest[0].interrupted:
        _say_interrupted(rest[0] if rest else fit_run)
        return EXIT_INTERRUPTED
    test_run = rest[0]
    # A fit window whose label reads bars past the fit period's end is left out, so no bar
    # of the held-out period reaches the fit.
    horizon_ns = config.horizon_minutes * NS_PER_MINUTE
    fit_outcomes = [
        outcome
        for outcome in fit_run.sorted_outcomes()
        if outcome.window_end + horizon_ns <= fit_plan.end_ns
    ]
    test_outcomes = test_run.sorted_outcomes()
    if not fit_outcomes or not test_outcomes:
        _say_skipped(fit_run if not fit_outcomes else test_run)
        return EXIT_NO_WINDOWS
    try:
        calibration.check_held_out(fit_outcomes, test_outcomes, config.horizon_minutes)
    except ValueError as error:
        return _usage_failure("calibrate", error)
    learned = calibration.fit(
        fit_outcomes, large_min_weight=config.thresholds.large_model_min_weight
    )
    config_path = args.write_config or out_dir / "calibrated.yaml"
    try:
        learned_config = write_calibrated_config(
            config,
            learned.weights,
            learned.maps,
            config_path,
            documents.calibration_header(learned),
        )
    except OSError as error:
        return _report_failure("calibrate", config_path, error)
    learned_outcomes = recompute(test_outcomes, learned_config)
    document = documents.calibration_report(
        config,
        fit_plan,
        test_plan,
        learned,
        fit_outcomes,
        recompute(test_outcomes, config),
        learned_outcomes,
        test_run,
        learned_config,
        config_path,
    )
    try:
        documents.write_calibration(document, learned_outcomes, out_dir)
    except OSError as error:
        return _report_failure("calibrate", out_dir, error)
    _print_report(document, documents.render_calibration(document), args.json, out_dir)
    return 0


async def _run_plans(
    config: Config, plans: Sequence[BacktestPlan], external: dict[str, list[str]]
) -> list[BacktestRun]:
    """Run the plans one after another on one cycle; stop at the first interrupted one.

    The first SIGINT or SIGTERM stops the run: windows in flight are cancelled, and what
    finished (its verdicts are in the cache) is returned. A second Ctrl-C exits at once.
    """
    from server.backtest.progress import Progress
    from server.backtest.runner import BacktestRunner
    from server.backtest.session import LocalWorkers, build_cycle
    from server.market_store import SymbolNotFoundError

    workers = LocalWorkers(config, external)
    cycle, market = build_cycle(config, workers)
    for plan in plans:
        for symbol in plan.symbols:
            try:
                market.bar_range(symbol)
            except (SymbolNotFoundError, ValueError) as error:
                raise UsageError(str(error)) from None
    runner = BacktestRunner(cycle, market, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(signum: int) -> None:
        print(
            f"\n{signal.Signals(signum).name}: stopping after cancelling the windows in flight"
            " (again to quit at once)",
            file=sys.stderr,
            flush=True,
        )
        stop.set()
        # The next Ctrl-C raises KeyboardInterrupt at once.
        loop.remove_signal_handler(signal.SIGINT)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop, signum)
    runs: list[BacktestRun] = []
    try:
        for plan in plans:
            progress = Progress(0, sys.stderr)
            run = await runner.run(plan, stop, progress)
            progress.finish()
            runs.append(run)
            if run.interrupted:
                break
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await workers.close()
    return runs


def _with_overrides(config: Config, args: argparse.Namespace) -> Config:
    cost = _bps_option("--cost-bps", args.cost_bps, config.trade_cost_bps)
    band = _bps_option("--band-bps", args.band_bps, config.label_neutral_band_bps)
    return dataclasses.replace(config, trade_cost_bps=cost, label_neutral_band_bps=band)


def _bps_option(option: str, value: float | None, configured: float) -> float:
    if value is None:
        return configured
    if not (math.isfinite(value) and value >= 0):
        raise UsageError(f"{option} must be 0 or a positive number of basis points, got {value}")
    return value


def _plan(args: argparse.Namespace, config: Config, start: str, end: str) -> BacktestPlan:
    from server.backtest.runner import BacktestPlan
    from server.validation import InvalidArgument, check_context_size, check_window_minutes

    try:
        check_window_minutes(args.window_minutes, config)
        check_context_size(args.context_size, config.max_context_size)
    except InvalidArgument as error:
        option = "--" + error.field.replace("_", "-")
        raise UsageError(f"{option}: {error}") from None

    symbols = tuple(config.symbols) if args.all_symbols else tuple(dict.fromkeys(args.symbol))
    if not symbols:
        raise UsageError("--all-symbols needs a `symbols` list in the configuration")
    window_minutes = args.window_minutes or config.market_window_minutes
    try:
        every = parse_every(args.every) if args.every else window_minutes
        start_ns, end_ns = parse_moment(start), parse_moment(end)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if end_ns <= start_ns:
        raise UsageError(f"the period {start} to {end} is empty: its end must be after its start")
    return BacktestPlan(
        symbols=symbols,
        start_ns=start_ns,
        end_ns=end_ns,
        every_minutes=every,
        window_minutes=args.window_minutes,
        context_size=args.context_size,
    )


def _check_out_dir(directory: Path) -> None:
    """Create the report folder now, so a run never ends without a place for its report."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the folder {directory}: {error}") from None
    if not os.access(directory, os.W_OK):
        raise UsageError(f"the folder {directory} is not writable")


def _check_config_path(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--write-config {path} is a folder: name a file")
    _check_out_dir(path.parent)


def _external_workers(pairs: Sequence[str]) -> dict[str, list[str]]:
    external: dict[str, list[str]] = {}
    for pair in pairs:
        name, separator, address = pair.partition("=")
        if not separator or not name or not address:
            raise UsageError(f"invalid --worker {pair!r}: use NAME=HOST:PORT")
        external.setdefault(name, []).append(address)
    return external


def _folder_name(plan: BacktestPlan) -> str:
    def moment(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y%m%dT%H%M")

    symbols = "-".join(plan.symbols)
    return f"{symbols}_{moment(plan.start_ns)}_{moment(plan.end_ns)}_{plan.every_minutes}m"


def _print_report(document: dict[str, Any], table: str, as_json: bool, out_dir: Path) -> None:
    import json

    if as_json:
        print(json.dumps(document, indent=2))
    else:
        print(table)
    print(f"Report written to {out_dir}", file=sys.stderr)


def _say_interrupted(run: BacktestRun) -> None:
    done = len(run.outcomes) + len(run.skipped)
    print(
        f"Interrupted after {done} of {run.planned} windows. Their verdicts are in the verdict"
        " cache: run the same command again to resume.",
        file=sys.stderr,
    )


def _say_skipped(run: BacktestRun) -> None:
    print(f"No window of the period could be scored ({len(run.skipped)} skipped).", file=sys.stderr)
    reasons: dict[str, int] = {}
    for window in run.skipped:
        reasons[window.reason] = reasons.get(window.reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1])[:5]:
        print(f"  {count} x {reason}", file=sys.stderr)


def _report_failure(command: str, path: Path, error: OSError) -> int:
    print(
        f"quorum {command}: cannot write {path}: {error}. The verdicts are in the verdict"
        " cache: run again with another --out to write the report without generating them.",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _usage_failure(command: str, error: Exception) -> int:
    print(f"quorum {command}: {error}", file=sys.stderr)
    return EXIT_USAGE
