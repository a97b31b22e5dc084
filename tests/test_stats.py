"""Bootstrap helpers: exact edge cases, coverage of the mean, determinism, pairing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from domain_eval.stats import as_number, bootstrap_ci, mean_or_none, paired_bootstrap_diff


def test_empty_is_none_and_single_value_is_degenerate() -> None:
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([7.25]) == (7.25, 7.25, 7.25)


def test_mean_is_exact_and_inside_ci() -> None:
    values = [3.0, 5.5, 6.0, 7.25, 4.0, 8.0]
    mean, lo, hi = bootstrap_ci(values)
    assert mean == pytest.approx(sum(values) / len(values))
    assert lo < mean < hi
    assert min(values) <= lo and hi <= max(values)


def test_constant_sample_has_zero_width() -> None:
    assert bootstrap_ci([5.0] * 10) == (5.0, 5.0, 5.0)


def test_ci_narrows_with_more_data() -> None:
    rng = np.random.default_rng(42)
    small = rng.normal(6.0, 1.5, size=10)
    large = rng.normal(6.0, 1.5, size=400)
    _, lo_s, hi_s = bootstrap_ci(small)
    _, lo_l, hi_l = bootstrap_ci(large)
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3  # width ~ 1/sqrt(n): sqrt(40) ~ 6x narrower


def test_ci_width_tracks_normal_theory() -> None:
    # For n=400, sd=1.5 the 95% CI half-width is about 1.96 * 1.5 / 20 = 0.147.
    values = np.random.default_rng(1).normal(0.0, 1.5, size=400)
    mean, lo, hi = bootstrap_ci(values)
    expected = 1.96 * np.std(values) / math.sqrt(400)
    assert (hi - lo) / 2 == pytest.approx(expected, rel=0.15)


def test_deterministic_for_a_seed_and_seed_matters() -> None:
    values = [1.0, 2.0, 9.0, 4.0, 3.5, 7.0, 2.2]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    assert paired_bootstrap_diff(values, values[::-1], seed=5) == paired_bootstrap_diff(values, values[::-1], seed=5)


def test_confidence_level_widens_interval() -> None:
    values = list(np.random.default_rng(0).normal(5, 2, size=50))
    _, lo90, hi90 = bootstrap_ci(values, confidence=0.90)
    _, lo99, hi99 = bootstrap_ci(values, confidence=0.99)
    assert lo99 < lo90 and hi90 < hi99


def test_chunked_resampling_matches_for_large_inputs() -> None:
    # 5000 values x 2000 resamples exceeds one chunk; the result must still be sane.
    values = np.random.default_rng(7).normal(6.0, 1.0, size=5000)
    mean, lo, hi = bootstrap_ci(values)
    assert lo < mean < hi and hi - lo < 0.1
    assert bootstrap_ci(values, seed=2) == bootstrap_ci(values, seed=2)  # deterministic across chunks


def test_rejects_nan_and_bad_params() -> None:
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)


def test_paired_diff_uses_pairs() -> None:
    # Cases vary wildly in difficulty but every one improves by exactly 0.5: resampling
    # pairs gives a zero-width CI, resampling each side independently would not.
    base = [1.0, 9.0, 4.0, 7.0, 2.0, 8.0]
    cur = [b + 0.5 for b in base]
    assert paired_bootstrap_diff(cur, base) == pytest.approx((0.5, 0.5, 0.5))


def test_paired_diff_sign_and_ci() -> None:
    rng = np.random.default_rng(11)
    base = rng.normal(6.0, 1.0, size=60)
    cur = base - 1.0 + rng.normal(0, 0.3, size=60)
    diff, lo, hi = paired_bootstrap_diff(cur, base)
    assert diff == pytest.approx(float(np.mean(cur - base)))
    assert lo < diff < hi < 0


def test_paired_diff_validates_lengths() -> None:
    with pytest.raises(ValueError, match="length"):
        paired_bootstrap_diff([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least one pair"):
        paired_bootstrap_diff([], [])


def test_as_number_and_mean_or_none() -> None:
    assert as_number(3) == 3.0 and as_number(np.float32(2.5)) == 2.5
    assert as_number(True) is None and as_number(None) is None and as_number("4") is None
    assert as_number(float("nan")) is None
    assert mean_or_none([None, 2.0, float("nan"), 4]) == 3.0
    assert mean_or_none([None]) is None
