"""Property-based tests (hypothesis) of the BG/NBD and Gamma-Gamma mathematics.

Parameters are drawn log-uniformly over six orders of magnitude (1e-3 .. 1e3); histories cover
x in 0..10^4 repeat purchases and T up to 10^5 time units. The log-likelihoods, their analytic
derivatives and every prediction must stay finite and within their ranges for all of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import special

from clv_forecast.btyd import bgnbd, gamma_gamma

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FD_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(math.log(lo), math.log(hi)).map(math.exp)


wide = log_uniform(1e-3, 1e3)
moderate = log_uniform(0.05, 20.0)


@st.composite
def history(draw, max_x: int = 10**4, max_T: float = 1e5):
    """One customer (x, t_x, T): t_x = 0 when x = 0, else 0 < t_x <= T."""
    x = draw(st.integers(0, max_x))
    if x == 0:
        T = draw(st.floats(0.0, max_T))
        return x, 0.0, T
    T = draw(st.floats(1e-6, max_T))
    frac = draw(st.floats(0.0, 1.0, exclude_min=True))
    t_x = min(T, max(T * frac, 1e-300))
    return x, t_x, T


def customers(n_max: int = 20, **kw):
    """A small population as arrays (x, t_x, T)."""
    return st.lists(history(**kw), min_size=1, max_size=n_max).map(
        lambda rows: tuple(np.array(c, dtype=float) for c in zip(*rows))
    )


bg_params = st.tuples(wide, wide, wide, wide)  # r, alpha, a, b
gg_params = st.tuples(wide, wide, wide)  # p, q, v
horizon = st.floats(0.0, 1e4)


def _finite(*arrays) -> bool:
    return all(np.all(np.isfinite(np.asarray(a, dtype=float))) for a in arrays)


# --------------------------------------------------------------------------------------------
# BG/NBD log-likelihood and derivatives
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(params=bg_params, data=customers())
@example(params=(1e-3, 1e-3, 1e-3, 1e-3), data=(np.array([1e4, 0.0, 1.0]), np.array([1e-300, 0, 1e5]), np.array([1e5, 0, 1e5])))
@example(params=(1e3, 1e3, 1e3, 1e3), data=(np.array([1e4, 0.0]), np.array([1e5, 0.0]), np.array([1e5, 0.0])))
def test_bgnbd_loglik_finite(params, data):
    x, t_x, T = data
    ll = bgnbd.loglik(*params, x, t_x, T)
    assert ll.shape == x.shape
    assert _finite(ll), (params, data, ll)


@SETTINGS
@given(params=bg_params, data=customers())
@example(params=(1e-3, 1e-3, 1e-3, 1e-3), data=(np.array([1e4, 0.0, 1.0]), np.array([1e-300, 0, 1e5]), np.array([1e5, 0, 1e5])))
def test_bgnbd_derivatives_finite_and_consistent(params, data):
    x, t_x, T = data
    ll, score, hess = bgnbd.loglik_derivatives(params, x, t_x, T)
    assert _finite(ll, score, hess), (params, data, ll, score, hess)
    assert score.shape == (4,) and hess.shape == (4, 4)
    np.testing.assert_array_equal(hess, hess.T)
    assert ll == pytest.approx(bgnbd.loglik(*params, x, t_x, T).sum(), rel=1e-9, abs=1e-9)


@SETTINGS
@given(params=bg_params, data=customers(), w=st.lists(st.integers(0, 5), min_size=20, max_size=20))
def test_bgnbd_weights_are_repetition(params, data, w):
    """Integer weights equal repeating the rows (the likelihood of a compressed table)."""
    x, t_x, T = data
    w = np.array(w[: len(x)], dtype=float)
    ll_w, s_w, h_w = bgnbd.loglik_derivatives(params, x, t_x, T, weights=w)
    rep = np.repeat(np.arange(len(x)), w.astype(int))
    if rep.size == 0:
        assert ll_w == 0.0
        return
    ll_r, s_r, h_r = bgnbd.loglik_derivatives(params, x[rep], t_x[rep], T[rep])
    scale = 1.0 + abs(ll_r)
    assert ll_w == pytest.approx(ll_r, rel=1e-9, abs=1e-9 * scale)
    np.testing.assert_allclose(s_w, s_r, rtol=1e-8, atol=1e-8 * (1 + np.abs(s_r).max()))
    np.testing.assert_allclose(h_w, h_r, rtol=1e-8, atol=1e-8 * (1 + np.abs(h_r).max()))


def _fd_gradient(f, phi: np.ndarray, rel_step: float = 1e-5) -> np.ndarray:
    """Central finite difference of a scalar or vector function in each coordinate of phi."""
    cols = []
    for i in range(len(phi)):
        h = rel_step * phi[i]
        up, down = phi.copy(), phi.copy()
        up[i] += h
        down[i] -= h
        cols.append((np.asarray(f(up)) - np.asarray(f(down))) / (2 * h))
    return np.stack(cols, axis=-1)


def _assert_derivative(analytic, numeric, phi, what):
    """Compare on the log-parameter scale (d/d ln phi = phi d/d phi), where entries are comparable."""
    if analytic.ndim == 1:
        a, n = analytic * phi, numeric * phi
    else:
        a, n = analytic * np.outer(phi, phi), numeric * np.outer(phi, phi)
    np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-6 * (1.0 + np.abs(a).max()), err_msg=what)


@FD_SETTINGS
@given(params=st.tuples(moderate, moderate, moderate, moderate), data=customers(max_x=60, max_T=100.0))
@example(params=(0.243, 4.414, 0.793, 2.426), data=(np.array([0.0, 1, 2, 30]), np.array([0.0, 1.5, 30.4, 38.0]), np.array([38.9, 38.9, 38.9, 38.9])))
def test_bgnbd_score_and_hessian_match_finite_differences(params, data):
    x, t_x, T = data
    phi = np.array(params, dtype=float)
    _, score, hess = bgnbd.loglik_derivatives(phi, x, t_x, T)
    fd_score = _fd_gradient(lambda p: bgnbd.loglik(*p, x, t_x, T).sum(), phi)
    _assert_derivative(score, fd_score, phi, "score")
    fd_hess = _fd_gradient(lambda p: bgnbd.loglik_derivatives(p, x, t_x, T)[1], phi)
    _assert_derivative(hess, fd_hess, phi, "hessian")


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


@st.composite
def spend_data(draw, max_x: int = 10**4, n_max: int = 20):
    n = draw(st.integers(1, n_max))
    x = draw(st.lists(st.integers(1, max_x), min_size=n, max_size=n))
    m = draw(st.lists(log_uniform(1e-3, 1e6), min_size=n, max_size=n))
    return np.array(x, dtype=float), np.array(m, dtype=float)


@SETTINGS
@given(params=gg_params, data=spend_data())
@example(params=(1e-3, 1e-3, 1e-3), data=(np.array([1.0, 1e4]), np.array([1e-3, 1e6])))
@example(params=(1e3, 1e3, 1e3), data=(np.array([1.0, 1e4]), np.array([1e-3, 1e6])))
@example(params=(np.exp(4.984375),) * 3, data=(np.array([8296.0]), np.array([146.11222634])))  # found in CI
def test_gamma_gamma_loglik_and_derivatives_finite(params, data):
    x, m = data
    ll = gamma_gamma.loglik(*params, x, m)
    assert _finite(ll), (params, data, ll)
    total, score, hess = gamma_gamma.loglik_derivatives(params, x, m)
    assert _finite(total, score, hess), (params, data, total, score, hess)
    # The two forms group the terms differently; each term can be ~1e7 (p x up to 1e7) while the
    # sum is O(1), so rounding is bounded by machine precision times the terms' magnitude.
    p, q, v = params
    px = p * x
    magnitude = np.sum(np.abs(special.gammaln(px + q)) + np.abs(special.gammaln(px)) + np.abs((px - 1) * np.log(m))
                       + np.abs(px * np.log(x)) + np.abs((px + q) * np.log(x * m + v)))
    assert total == pytest.approx(ll.sum(), rel=1e-9, abs=1e-9 + 64 * np.finfo(float).eps * magnitude)
    np.testing.assert_array_equal(hess, hess.T)


@FD_SETTINGS
@given(params=st.tuples(moderate, moderate, moderate), data=spend_data(max_x=60))
def test_gamma_gamma_score_and_hessian_match_finite_differences(params, data):
    x, m = data
    phi = np.array(params, dtype=float)
    _, score, hess = gamma_gamma.loglik_derivatives(phi, x, m)
    fd_score = _fd_gradient(lambda p: gamma_gamma.loglik(*p, x, m).sum(), phi)
    _assert_derivative(score, fd_score, phi, "score")
    fd_hess = _fd_gradient(lambda p: gamma_gamma.loglik_derivatives(p, x, m)[1], phi)
    _assert_derivative(hess, fd_hess, phi, "hessian")


@SETTINGS
@given(params=gg_params, data=spend_data())
@example(params=(0.3, 0.5, 1.0), data=(np.array([1.0]), np.array([10.0])))  # p x + q < 1
@example(params=(0.5, 0.5, 1.0), data=(np.array([1.0]), np.array([10.0])))  # p x + q = 1
def test_conditional_expected_spend_positive(params, data):
    """E[Z | x, m] is a mean of positive spends: positive, and +inf when p x + q <= 1 (no finite
    posterior mean), never negative or NaN."""
    x, m = data
    spend = gamma_gamma.conditional_expected_spend(x, m, *params)
    assert not np.any(np.isnan(spend)), (params, data, spend)
    assert np.all(spend > 0), (params, data, spend)


@SETTINGS
@given(params=gg_params, data=spend_data())
def test_conditional_expected_spend_between_prior_mean_and_data(params, data):
    """For q > 1 it is a weighted average of the population mean p v/(q-1) and the customer's m."""
    p, q, v = params
    x, m = data
    spend = gamma_gamma.conditional_expected_spend(x, m, p, q, v)
    if q <= 1:
        return
    prior = p * v / (q - 1)
    lo, hi = np.minimum(prior, m), np.maximum(prior, m)
    assert np.all(spend >= lo * (1 - 1e-9)) and np.all(spend <= hi * (1 + 1e-9))


# --------------------------------------------------------------------------------------------
# BG/NBD predictions
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(params=bg_params, data=customers())
@example(params=(1e3, 1e-3, 1e-3, 1e-3), data=(np.array([1e4, 1.0]), np.array([1e-300, 1e-300]), np.array([1e5, 1e5])))
def test_p_alive_is_a_probability(params, data):
    x, t_x, T = data
    pa = bgnbd.p_alive(x, t_x, T, *params)
    assert _finite(pa)
    assert np.all((pa >= 0) & (pa <= 1))
    assert np.all(pa[x == 0] == 1.0)
    # a customer who bought more recently (same x, T) is at least as likely alive
    later = bgnbd.p_alive(x, np.where(x > 0, T, 0.0), T, *params)
    assert np.all(later >= pa * (1 - 1e-12))


NEW = (np.array([0.0]), np.array([0.0]), np.array([0.0]))  # x = 0, T = 0: a customer just acquired


@SETTINGS
@given(params=bg_params, data=customers(), t1=horizon, t2=horizon)
# Inputs that broke earlier versions (found by this test): -inf for large a (2F1 overflow times an
# underflowing power), NaN when r and a are both large, 0/0 at a = 1 exactly, a negative value
# (-5.7e-9) for a tiny horizon at a = 1.
@example(params=(1.0, 1.0, math.exp(6.0), 1.0), data=NEW, t1=0.0, t2=5.0)
@example(params=(math.exp(6.0), 1.0, math.exp(6.0), math.e), data=NEW, t1=0.0, t2=362.0)
@example(params=(1.0, 1.0, 1.0, 1.0), data=NEW, t1=0.0, t2=0.0)
@example(params=(math.exp(3.0), 1.0, 1.0, 1.0), data=NEW, t1=0.0, t2=3.314217854823918e-68)
@example(params=(0.243, 4.414, 1.0, 2.426), data=(np.array([0.0, 2.0, 21.0]), np.array([0.0, 30.4, 4.71]), np.array([38.9, 38.9, 29.29])), t1=1.0, t2=39.0)
def test_conditional_expected_purchases_finite_nonnegative_monotone(params, data, t1, t2):
    x, t_x, T = data
    t1, t2 = sorted((t1, t2))
    e1 = bgnbd.conditional_expected_purchases(t1, x, t_x, T, *params)
    e2 = bgnbd.conditional_expected_purchases(t2, x, t_x, T, *params)
    assert _finite(e1, e2), (params, data, t1, t2, e1, e2)
    assert np.all(e1 >= 0) and np.all(e2 >= 0), (params, data, t1, t2, e1, e2)
    assert np.all(e2 >= e1 - 1e-9 * np.abs(e2)), (params, data, t1, t2, e1, e2)
    assert np.all(bgnbd.conditional_expected_purchases(0.0, x, t_x, T, *params) == 0)


@SETTINGS
@given(params=bg_params, t1=horizon, t2=horizon)
@example(params=(math.exp(5.0), 1.0, math.exp(0.125), 1.0), t1=0.0, t2=119.0)  # was -inf (2F1 overflow)
@example(params=(1.0, 1.0, 1.0, 1.0), t1=0.0, t2=10.0)  # a = 1: was ZeroDivisionError
@example(params=(math.exp(3.0), 1.0, 1.0, 1.0), t1=0.0, t2=3.314217854823918e-68)
def test_expected_purchases_new_customer_finite_nonnegative_monotone(params, t1, t2):
    t1, t2 = sorted((t1, t2))
    e1 = float(np.squeeze(bgnbd.expected_purchases(t1, *params)))
    e2 = float(np.squeeze(bgnbd.expected_purchases(t2, *params)))
    assert _finite(e1, e2), (params, t1, t2, e1, e2)
    assert e1 >= 0 and e2 >= 0, (params, t1, t2, e1, e2)
    assert e2 >= e1 - 1e-9 * abs(e2), (params, t1, t2, e1, e2)


@SETTINGS
@given(params=bg_params, t=horizon, n=st.lists(st.integers(0, 10**4), min_size=1, max_size=10))
def test_prob_purchases_is_a_probability(params, t, n):
    pr = bgnbd.prob_purchases(np.array(n), t, *params)
    assert _finite(pr), (params, t, n, pr)
    assert np.all((pr >= 0) & (pr <= 1)), (params, t, n, pr)


@settings(max_examples=60, deadline=None)
@given(params=st.tuples(moderate, moderate, moderate, moderate), t=st.floats(0.1, 100.0))
def test_prob_purchases_sum_to_one_and_mean(params, t):
    """The pmf sums to 1 and, when a > 1, its mean is E[X(t)]."""
    r, alpha, a, b = params
    n = np.arange(0, 20000)
    pr = bgnbd.prob_purchases(n, t, *params)
    if pr[-1] > 1e-12:  # heavy tail: truncated sum not conclusive
        return
    assert pr.sum() == pytest.approx(1.0, abs=1e-8)
    if a > 1.5:
        mean = float(np.dot(n, pr))
        assert mean == pytest.approx(float(bgnbd.expected_purchases(t, *params)), rel=1e-6, abs=1e-9)


@SETTINGS
@given(params=bg_params, data=customers(), log_c=st.floats(-5.0, 5.0))
def test_bgnbd_change_of_time_unit(params, data, log_c):
    """Measuring time in a unit c times smaller (t -> c t, alpha -> c alpha) changes nothing observable;
    the log-likelihood changes only by the Jacobian of the recency density, -x ln c."""
    r, alpha, a, b = params
    x, t_x, T = data
    c = math.exp(log_c)
    ll = bgnbd.loglik(r, alpha, a, b, x, t_x, T)
    ll_c = bgnbd.loglik(r, alpha * c, a, b, x, t_x * c, T * c)
    np.testing.assert_allclose(ll_c, ll - x * log_c, rtol=1e-9, atol=1e-9 * (1 + np.abs(ll).max()))
    pa = bgnbd.p_alive(x, t_x, T, *params)
    pa_c = bgnbd.p_alive(x, t_x * c, T * c, r, alpha * c, a, b)
    np.testing.assert_allclose(pa_c, pa, rtol=1e-7, atol=1e-300)


# --------------------------------------------------------------------------------------------
# hard points against 20-digit reference values (computed once with mpmath at 60 digits from
# FHL 2005 eq. 9 / eq. 10 in the paper's own form; at a = 1 the limit a -> 1 + 1e-40)
# --------------------------------------------------------------------------------------------

E = math.exp
REFERENCE_EXPECTED = [
    # (t, r, alpha, a, b), E[X(t)]
    pytest.param((119.0, E(5.0), 1.0, E(0.125), 1.0), 6.3363861647056149579, id="large-r"),
    pytest.param((10.0, 1.0, 1.0, 1.0, 1.0), 2.3978952727983705441, id="a=1 (ln 11)"),
    pytest.param((39.0, 0.243, 4.414, 1.0, 2.426), 1.0842790105915187835, id="a=1 cdnow-like"),
    pytest.param((8327.178494, 4.621582, 0.198166, 2.481095, 821.519376), 555.40268868320498718, id="large-b-long-t"),
    pytest.param((4503.393666, 402.032438, 0.140207, 2.686451, 0.085353), 1.0506110168631348344, id="large-r-small-b"),
]
REFERENCE_CONDITIONAL = [
    # (t, x, t_x, T, r, alpha, a, b), E[Y(t) | x, t_x, T]
    pytest.param((5.0, 0, 0.0, 0.0, 1.0, 1.0, E(6.0), 1.0), 0.83505753530535212072, id="large-a"),
    pytest.param((362.0, 0, 0.0, 0.0, E(6.0), 1.0, E(6.0), E(1.0)), 1.0067546902021266954, id="large-r-large-a"),
    pytest.param((10.0, 99, 0.0, 0.0, E(-2.0), 1.0, E(-2.0), 1.0), 795.92722369529267251, id="a+b-1-r=1e-16"),
    pytest.param((10.0, 2, 5.0, 10.0, 1.0, 1.0, 1.0, 1.0), 0.47534248765902891569, id="a=1"),
    pytest.param((39.0, 21, 4.71, 29.29, 0.243, 4.414, 0.793, 2.426), 4.4994941838285143543e-10, id="cdnow-1901"),
]


@pytest.mark.parametrize("args, expected", REFERENCE_EXPECTED)
def test_expected_purchases_reference_values(args, expected):
    assert float(np.squeeze(bgnbd.expected_purchases(*args))) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("args, expected", REFERENCE_CONDITIONAL)
def test_conditional_expected_purchases_reference_values(args, expected):
    t, x, t_x, T, *params = args
    value = bgnbd.conditional_expected_purchases(t, np.array([float(x)]), np.array([t_x]), np.array([T]), *params)
    assert float(value[0]) == pytest.approx(expected, rel=1e-9)


def test_tiny_horizon_is_rate_times_time():
    """For t -> 0, E[X(t)] ~ t E[lambda] = t r / alpha (a customer just acquired is alive)."""
    r = E(3.0)
    for a in (0.5, 1.0, 2.0):
        value = float(np.squeeze(bgnbd.expected_purchases(3.314217854823918e-68, r, 1.0, a, 1.0)))
        assert value == pytest.approx(r * 3.314217854823918e-68, rel=1e-6)


# --------------------------------------------------------------------------------------------
# the closed form near its removable singularities (a = 1; r + x - (a - 1) an integer)
# --------------------------------------------------------------------------------------------

_GRID_X = np.array([0, 1, 5, 30, 200.0])
_GRID_T = np.array([0, 1, 10, 60.0])


def _worst_relative_error_vs_quadrature(r, alpha, a, b):
    x, big_t = (v.ravel() for v in np.meshgrid(_GRID_X, _GRID_T, indexing="ij"))
    worst = 0.0
    for t in (0.01, 1.0, 52.0, 500.0):
        got = bgnbd._expected_if_alive(t, x, big_t, r, alpha, a, b, dedupe=False)
        ref = bgnbd._if_alive_by_quadrature(np.full_like(x, t), x, big_t, r, alpha, a, b)
        assert np.all(np.isfinite(got)) and np.all(ref > 0)
        worst = max(worst, float(np.max(np.abs(got - ref) / ref)))
    return worst


@pytest.mark.parametrize("da", [0.0, 1e-12, -1e-9, 1e-6, -5e-5, 9.99e-4, -9.99e-4, 1.5e-3])
@pytest.mark.parametrize("r, alpha, b", [(0.1, 50.0, 20.0), (0.5, 5.0, 0.3), (2.0, 0.5, 2.5), (10.0, 5.0, 1.0)])
def test_expected_if_alive_near_a_equal_one(da, r, alpha, b):
    """a within 1e-3 of 1 is interpolated in a (no quadrature for every row): <= 1e-8 relative."""
    assert _worst_relative_error_vs_quadrature(r, alpha, 1.0 + da, b) <= 1e-8


@pytest.mark.parametrize("d", [0.0, 1e-16, -1e-16, -1e-12, 1e-8, -1e-6, 5e-4, -9.99e-4])
@pytest.mark.parametrize("a, m", [(0.6, 1), (1.1, 0), (1.1, 1), (1.5, 0), (3.5, -2), (3.0, 1)])
@pytest.mark.parametrize("b", [0.3, 20.0])
def test_expected_if_alive_near_integer_c_minus_a_minus_b(d, a, m, b):
    """r + x - (a - 1) near an integer is scipy hyp2f1's degenerate case: interpolated in r."""
    assert _worst_relative_error_vs_quadrature(a - 1 + m + d, 5.0, a, b) <= 1e-8


def test_expected_purchases_in_the_degenerate_case():
    """r = a - 1 up to rounding (0.1 and 1.1): hyp2f1 alone gave 9.558 instead of 0.92522
    (reference: scipy.integrate.quad of the integral over the dropout probability)."""
    assert bgnbd.expected_purchases(500.0, 0.1, 0.5, 1.1, 0.3) == pytest.approx(0.925223297602999, rel=1e-9)


def test_near_one_cost_does_not_depend_on_quadrature():
    """Near a = 1 the closed form serves every regular element: quadrature is not called for them."""
    from unittest import mock

    x = np.arange(50.0)
    big_t = np.linspace(5, 60, 50)
    with mock.patch.object(bgnbd, "_if_alive_by_quadrature", side_effect=AssertionError("quadrature used")):
        out = bgnbd._expected_if_alive(np.array([4.0, 52.0]), x, big_t, 0.24, 4.4, 1.00005, 2.4, dedupe=False)
    assert np.all(np.isfinite(out)) and np.all(out > 0)
