"""Search a price history for the windows most like the latest one, and what followed them."""

from __future__ import annotations

import numpy as np

import fastpath._patterns as _patterns
from fastpath import _checks


def top_matches(
    series: np.ndarray, window: int, k: int, horizon: int, exclusion: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the k past windows closest in shape to the last `window` prices.

    Returns (starts, distances, forward_returns), sorted by ascending distance. A tie in
    distance lists the earlier start first. Fewer than k matches come back when history is
    short, and none when the query contains a non-finite price.

    - The query is series[-window:]. A candidate window series[s : s + window] qualifies only
      when s + window + horizon <= len(series) - window, so the outcome of every match was
      known before the query's first bar.
    - The distance is Euclidean between z-normalized windows, in [0, 2 * sqrt(window)]. A flat
      window has no shape: two flat windows are at distance 0, a flat and a moving one at
      sqrt(window).
    - The forward return is series[s + window - 1 + horizon] / series[s + window - 1] - 1, so
      `series` must be prices. Candidates with a non-finite window or forward return are
      skipped.
    - Returned starts are more than `exclusion` bars apart (default window // 2, the usual
      trivial-match zone), so two matches share at most window - exclusion - 1 bars. Pass
      window - 1 for matches that share no bar.

    Distances of all candidates come from FFT sliding dot products (MASS), O(n log n) in the
    history length n. The candidates near the top are then recomputed term by term, so the
    returned matches and distances are those of the direct O(n * window) computation.

    Raises ValueError unless window >= 2, k >= 1, horizon >= 1 and exclusion >= 0.
    """
    values = _checks.series("series", series)
    length = _checks.integer("window", window, 2)
    count = _checks.integer("k", k, 1)
    ahead = _checks.integer("horizon", horizon, 1)
    zone = (
        length // 2
        if exclusion is None
        else _checks.integer("exclusion", exclusion, 0, maximum=None)
    )
    # Starts are never more than len(values) apart, so a larger zone excludes the same.
    return _patterns.search(values, length, count, ahead, min(zone, len(values)))
