"""The Taylor tables of 2F1 (``bgnbd._hyp2f1_taylor``) against the direct evaluation, scipy's hyp2f1 per element.

Large inputs (every (x, T) pair distinct, a CLV's horizon steps) take the tables; the direct evaluation
is what small inputs still take, and what every input took before the tables. The two must agree to
1e-12 relative on a large random grid of parameters and data, the removable singularities (a near 1,
c - a - b near an integer) included, and the tables must really be used there (no vacuous pass).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

from clv_forecast.btyd import bgnbd
from clv_forecast.model import ClvModel


def _direct(monkeypatch, fn, *args, **kwargs):
    """``fn`` with the tables switched off: scipy's hyp2f1 for every element (the reference)."""
    with monkeypatch.context() as m:
        m.setattr(bgnbd, "TAYLOR_MIN_ELEMENTS", 1 << 62)
        return fn(*args, **kwargs)


@pytest.fixture
def table_calls(monkeypatch):
    """Counts the elements served by the tables."""
    served = []
    real = bgnbd._hyp2f1_taylor

    def spy(*args):
        out = real(*args)
        served.append(0 if out is None else int(out[1].sum()))
        return out

    monkeypatch.setattr(bgnbd, "_hyp2f1_taylor", spy)
    return served


def _random_case(rng, k):
    r = float(np.exp(rng.uniform(np.log(0.02), np.log(20))))
    alpha = float(np.exp(rng.uniform(np.log(0.05), np.log(500))))
    a = float(np.exp(rng.uniform(np.log(0.05), np.log(20))))
    b = float(np.exp(rng.uniform(np.log(0.05), np.log(50))))
    if k % 10 == 0:  # a near 1: interpolated in a
        a = 1.0 + float(rng.uniform(-2e-3, 2e-3))
    if k % 10 == 1:  # c - a - b near an integer: interpolated in r
        r = (a - 1.0) + int(rng.integers(1, 4)) + float(rng.uniform(-2e-3, 2e-3))
    n = 20_000
    x = rng.integers(0, 60, n).astype(float) * (rng.random(n) < 0.7)
    big_t = rng.uniform(0, 300, n) * (rng.random(n) < 0.98)
    times = np.arange(1, int(rng.integers(1, 25)) + 1) * float(np.exp(rng.uniform(np.log(0.1), np.log(50))))
    return (r, alpha, a, b), x, big_t, times


@pytest.mark.slow
def test_tables_match_the_direct_evaluation_on_a_random_grid(monkeypatch, table_calls):
    rng = np.random.default_rng(20261127)
    worst = 0.0
    for k in range(30):
        params, x, big_t, times = _random_case(rng, k)
        with np.errstate(all="ignore"):
            fast = bgnbd._expected_if_alive(times, x, big_t, *params, dedupe=False)
            direct = _direct(monkeypatch, bgnbd._expected_if_alive, times, x, big_t, *params, dedupe=False)
        assert np.array_equal(np.isnan(fast), np.isnan(direct)), params
        finite = np.isfinite(direct) & (direct != 0)
        assert np.array_equal(fast[~finite], direct[~finite]), params
        rel = np.abs(fast[finite] - direct[finite]) / np.abs(direct[finite])
        worst = max(worst, float(rel.max(initial=0.0)))
        assert worst <= 1e-12, (params, worst)
    assert sum(table_calls) > 2_000_000  # the tables served millions of elements


def test_clv_of_distinct_customers_matches_the_direct_evaluation(monkeypatch, table_calls):
    """The CLV's columns (12 monthly steps, every (x, T) pair distinct) to 1e-12."""
    rng = np.random.default_rng(7)
    n = 60_000
    x = rng.poisson(1.0, n)
    big_t = rng.uniform(1, 80, n)
    rfm = pd.DataFrame({"frequency": x, "recency": big_t * rng.beta(2, 1, n) * (x > 0), "T": big_t,
                        "monetary_value": np.where(x > 0, rng.gamma(5, 8, n), 0.0)})
    rfm.attrs["time_unit"] = "W"
    model = ClvModel.from_params(purchases={"r": 0.243, "alpha": 4.41, "a": 0.793, "b": 2.43},
                                 spend={"p": 6.25, "q": 3.74, "v": 15.44}, time_unit="W")
    fast = model.clv(rfm, discount_rate="10%/Y")
    direct = _direct(monkeypatch, model.clv, rfm, discount_rate="10%/Y")
    assert sum(table_calls) > 0
    for column in ("expected_purchases", "p_alive", "clv"):
        got, ref = fast[column].to_numpy(), direct[column].to_numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0, err_msg=column)


@pytest.mark.parametrize("A, B, C", [(2.0, -0.2, 2.3), (0.5, 0.7, 1.9), (-3.5, 0.4, 6.0), (4.0, 9.0, 12.5)])
def test_taylor_series_of_2f1_against_scipy(A, B, C):
    """The tables' values of 2F1 itself (no cancellation after them) from z = 0 to 1 - 1e-4: 1e-13. (50,000 points
    uniform in u = -ln(1 - z): about 100 in each of the ~460 centres' intervals, their ends included.)"""
    z = np.concatenate([[0.0], np.sort(-np.expm1(-np.random.default_rng(1).uniform(0, 9.2, 50_000)))])
    groups = np.zeros(len(z), dtype=np.intp)
    value, ok = bgnbd._hyp2f1_taylor(np.array([A]), np.array([B]), np.array([C]), z, groups)
    assert ok.mean() > 0.99
    ref = special.hyp2f1(A, B, C, z[ok])
    np.testing.assert_allclose(value[ok], ref, rtol=1e-13, atol=0)


def test_guarded_and_uncovered_elements_are_scipys_own_values():
    """Elements with 1 - value below the guard, z beyond the tables, or non-whole x: bit for bit scipy."""
    rng = np.random.default_rng(3)
    n = 50_000
    x = rng.integers(0, 5, n).astype(float)
    z = np.where(rng.random(n) < 0.1, 1 - 1e-6, rng.uniform(0, 0.9, n))
    z[:100] = 1e-5  # 1 - value tiny: guarded
    params = (lambda xv: (2.4, -0.2, 2.25 + xv))
    prefactor = (1.0 - z) ** -0.2
    got = bgnbd._hyp2f1_rows(params, x, z, prefactor)
    direct = prefactor * special.hyp2f1(2.4, -0.2, 2.25 + x, z)
    guarded = (np.abs(1.0 - direct) < bgnbd.TAYLOR_GUARD) | (z > 1 - 1e-4)
    assert guarded.sum() > 100
    assert np.array_equal(got[guarded], direct[guarded], equal_nan=True)
    np.testing.assert_allclose(got, direct, rtol=1e-13, atol=0)
    x_frac = x + 0.5  # not whole numbers: no table at all
    assert np.array_equal(bgnbd._hyp2f1_rows(params, x_frac, z, prefactor),
                          prefactor * special.hyp2f1(2.4, -0.2, 2.25 + x_frac, z), equal_nan=True)


def test_kept_coefficients_give_the_same_bits_as_fresh_ones(monkeypatch):
    """The coefficients kept between calls (``bgnbd._TAYLOR_CACHE``): a call served partly from rows another call
    computed (a batch after a batch) gives exactly what it gives with nothing kept, for groups met before and new."""
    from collections import OrderedDict

    rng = np.random.default_rng(11)
    A, B, C = np.array([2.0, 0.5, 1.5]), np.array([-0.2, 0.7, 0.3]), np.array([2.3, 1.9, 4.0])

    def batch(lo, hi, groups):
        z = np.sort(rng.uniform(lo, hi, 30_000))
        return z, rng.choice(groups, len(z))

    first, second = batch(0.0, 0.6, [0, 1]), batch(0.3, 0.9, [0, 1, 2])  # overlapping centres, a new group
    monkeypatch.setattr(bgnbd, "_TAYLOR_CACHE", OrderedDict())
    bgnbd._hyp2f1_taylor(A, B, C, *first)
    assert len(bgnbd._TAYLOR_CACHE) == 2
    warm = bgnbd._hyp2f1_taylor(A, B, C, *second)
    monkeypatch.setattr(bgnbd, "_TAYLOR_CACHE", OrderedDict())
    cold = bgnbd._hyp2f1_taylor(A, B, C, *second)
    assert warm[1].mean() > 0.99 and np.array_equal(warm[1], cold[1])
    assert np.array_equal(warm[0], cold[0], equal_nan=True)
    monkeypatch.setattr(bgnbd, "TAYLOR_CACHE_GROUPS", 1)  # the least recently used groups are let go
    bgnbd._hyp2f1_taylor(A, B, C, *first)
    assert list(bgnbd._TAYLOR_CACHE) == [(float(A[1]), float(B[1]), float(C[1]))]
