"""Bootstrap confidence intervals for eval scores (numpy only; no scipy, no torch).

Both functions use the *percentile bootstrap*. For values x_1..x_n with mean m:

    draw B resamples x*_b of size n with replacement (numpy ``default_rng(seed)``),
    m*_b = mean(x*_b),
    CI = [q_{a/2}(m*), q_{1-a/2}(m*)]   with a = 1 - confidence,

where q_p is numpy's (linear-interpolated) p-quantile. The point estimate returned is the
plain sample mean m, not the mean of the resampled means. The same seed always gives the
same interval, so reports and baseline gates are reproducible run to run.

``paired_bootstrap_diff`` applies this to the per-pair differences d_i = current_i -
baseline_i: resampling differences is resampling *pairs*, which keeps each case's
difficulty attached to both of its scores (much tighter than resampling each side alone).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["as_number", "bootstrap_ci", "mean_or_none", "paired_bootstrap_diff"]

# Bound the resample matrix (n_resamples x n int64 indices) so that a large run cannot
# allocate gigabytes in the pytest controller: resample in chunks of at most this many cells.
_MAX_CELLS = 2_000_000


def _check_params(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _as_array(values: Iterable[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of numbers")
    if arr.size and not np.all(np.isfinite(arr)):
        # A NaN would silently poison every resampled mean; callers must drop unscored cases.
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


def _percentile_ci(arr: np.ndarray, n_resamples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    mean = float(arr.mean())
    n = arr.size
    if n == 1:  # every resample is the single value: the interval is degenerate
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=float)
    step = max(1, _MAX_CELLS // n)
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = arr[idx].mean(axis=1)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    # Guard float noise: the interval must contain the point estimate it is reported with
    # (true whenever resampled means straddle it, which a constant sample makes exact).
    return mean, float(min(lo, mean)), float(max(hi, mean))


def bootstrap_ci(
    values: Sequence[float] | Iterable[float],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float] | None:
    """Return ``(mean, lo, hi)`` of ``values`` with a percentile-bootstrap CI, or None if empty.

    One value gives ``(v, v, v)``: there is no spread to estimate from a single case.
    """
    _check_params(n_resamples, confidence)
    arr = _as_array(values, "values")
    if arr.size == 0:
        return None
    return _percentile_ci(arr, n_resamples, confidence, seed)


def paired_bootstrap_diff(
    current: Sequence[float],
    baseline: Sequence[float],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Return ``(mean_diff, lo, hi)`` for mean(current - baseline), resampling pairs.

    ``current[i]`` and ``baseline[i]`` must be the same case. Raises ValueError when the
    lengths differ or there are no pairs (a diff of nothing has no meaning).
    """
    _check_params(n_resamples, confidence)
    cur = _as_array(current, "current")
    base = _as_array(baseline, "baseline")
    if cur.size != base.size:
        raise ValueError(f"paired samples differ in length: {cur.size} current vs {base.size} baseline")
    if cur.size == 0:
        raise ValueError("paired_bootstrap_diff needs at least one pair")
    return _percentile_ci(cur - base, n_resamples, confidence, seed)


def as_number(value: object) -> float | None:
    """``value`` as a finite float, else None (rows from crashed workers hold None or nothing).

    bool is rejected on purpose: ``True`` is an int in Python but never a score.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def mean_or_none(values: Iterable[object]) -> float | None:
    """Mean of the finite numbers in ``values`` (None, NaN, non-numbers skipped); None if none."""
    nums = [f for f in map(as_number, values) if f is not None]
    return sum(nums) / len(nums) if nums else None
