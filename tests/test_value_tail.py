"""P(alive) at a future date (every purchase model's ``_p_alive_after``) and the residual value beyond the horizon
(:mod:`clv_forecast.value_tail`).

P(alive at T + t) is checked against Monte Carlo simulation of each model's generative story from time 0: many
customers with known parameters, their histories at T, and whether they are still alive at T + t; within cells of
the history (x exactly, t_x in a narrow bin) the share alive must match the mean of the formula over the same
customers within 4.5 binomial standard errors plus 0.005. The residual is checked against a brute-force horizon of 300
years of monthly steps, the NBD closed form, and Pareto/NBD's continuous DERT.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clv_forecast import value, value_tail
from clv_forecast.errors import ClvInputError
from clv_forecast.estimators import get
from clv_forecast.estimators.purchases import bgnbd, pareto_nbd

MODELS = {
    "bgnbd": (0.8, 4.0, 0.8, 2.5),
    "mbgnbd": (0.8, 4.0, 0.8, 2.5),
    "pareto_nbd": (0.8, 4.0, 0.6, 10.0),
    "nbd": (0.8, 4.0),
    "constant_dropout": (0.8, 4.0, 0.15),
    "bgbb": (1.2, 0.7, 0.6, 2.7),
}


# --------------------------------------------------------------------------------------------
# simulation from the generative stories
# --------------------------------------------------------------------------------------------


def _geometric_story(rng, n, r, alpha, p, T, t, chance_at_start: bool):
    """BG/NBD family: Poisson purchases at rate lambda; a dropout chance p after each repeat purchase (and at time
    0 for MBG/NBD). Returns x, t_x at T and alive at T + t (exact: counts and order statistics)."""
    lam = rng.gamma(r, 1.0 / alpha, n)
    # the index of the chance that kills: chances 1, 2, ... after purchases (0 = at the start, MBG/NBD)
    killer = rng.geometric(p) - (1 if chance_at_start else 0)
    n_T = rng.poisson(lam * T)
    n_more = rng.poisson(lam * t)
    x = np.minimum(n_T, killer)
    # the time of the x-th of n_T uniform purchase times on (0, T): the x-th order statistic
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(n_T - x + 1, 1)), 0.0)
    alive_later = n_T + n_more < killer
    return x.astype(float), t_x, alive_later


def simulate(kind, params, rng, n, T, t):
    if kind in ("bgnbd", "mbgnbd"):
        r, alpha, a, b = params
        return _geometric_story(rng, n, r, alpha, rng.beta(a, b, n), T, t, kind == "mbgnbd")
    if kind == "constant_dropout":
        r, alpha, p = params
        return _geometric_story(rng, n, r, alpha, np.full(n, p), T, t, False)
    if kind == "nbd":
        r, alpha = params
        return _geometric_story(rng, n, r, alpha, np.full(n, 1e-300), T, t, False)
    if kind == "pareto_nbd":
        r, alpha, s, beta = params
        lam, mu = rng.gamma(r, 1.0 / alpha, n), rng.gamma(s, 1.0 / beta, n)
        death = rng.exponential(1.0 / mu)
        seen = np.minimum(death, T)
        x = rng.poisson(lam * seen)
        t_x = np.where(x > 0, seen * rng.beta(np.maximum(x, 1), 1.0), 0.0)  # the largest of x uniforms
        return x.astype(float), t_x, death > T + t
    if kind == "bgbb":
        al, be, ga, de = params
        p, theta = rng.beta(al, be, n), rng.beta(ga, de, n)
        alive = np.ones(n, dtype=bool)
        x, t_x = np.zeros(n), np.zeros(n)
        for period in range(1, int(T + t) + 1):
            alive &= rng.random(n) >= theta
            if period <= T:
                buy = alive & (rng.random(n) < p)
                x += buy
                t_x = np.where(buy, period, t_x)
        return x, t_x, alive
    raise AssertionError(kind)


def _cells(kind, x, t_x, T):
    """Cells of histories with enough customers: x exactly, t_x in 5 bins (whole periods for BG/BB)."""
    for value_x in (0, 1, 2, 4):
        rows = x == value_x
        if value_x == 0:
            yield rows
            continue
        edges = np.unique(t_x[rows]) if kind == "bgbb" else np.linspace(0, T, 6)
        for lo, hi in zip(edges[:-1], edges[1:]) if kind != "bgbb" else ((e, e) for e in edges):
            yield rows & (t_x >= lo) & (t_x <= hi)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_p_alive_after_matches_simulation(kind):
    params = MODELS[kind]
    cls = get(kind, "purchases")
    T, t = (8.0, 5.0) if kind == "bgbb" else (30.0, 20.0)
    rng = np.random.default_rng(20)
    x, t_x, alive_later = simulate(kind, params, rng, 400_000, T, t)
    big_t = np.full(len(x), T)
    predicted = cls._p_alive_after(params, t, x, t_x, big_t)
    checked = 0
    for cell in _cells(kind, x, t_x, T):
        n = int(cell.sum())
        if n < 2_000:
            continue
        share, mean = alive_later[cell].mean(), predicted[cell].mean()
        se = math.sqrt(max(mean * (1 - mean), 1e-4) / n)
        assert abs(share - mean) <= 4.5 * se + 0.005, (kind, n, share, mean)
        checked += 1
    assert checked >= 4
    # and the formula at t = 0 is P(alive), which the same simulation checks at T
    assert np.allclose(cls._p_alive_after(params, 0.0, x[:1000], t_x[:1000], big_t[:1000]),
                       cls._p_alive(params, x[:1000], t_x[:1000], big_t[:1000]), rtol=1e-12, atol=1e-15)


def test_pareto_exponent_is_s_not_s_plus_one():
    """Given alive at T the posterior of mu is Gamma(s, beta + T): the survival exponent is s."""
    r, alpha, s, beta = MODELS["pareto_nbd"]
    x, t_x, T = np.array([3.0]), np.array([20.0]), np.array([30.0])
    ratio = pareto_nbd.p_alive_after(25.0, x, t_x, T, *MODELS["pareto_nbd"]) / pareto_nbd.p_alive(x, t_x, T, r, alpha,
                                                                                                     s, beta)
    assert ratio[0] == pytest.approx(((beta + 30.0) / (beta + 55.0)) ** s, rel=1e-12)


def test_bgnbd_survival_forms_agree_with_quadrature():
    """The hypergeometric forms of the BG/NBD survival against the integral over p (moderate parameters)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        r, alpha, a, b = np.exp(rng.uniform(np.log(0.1), np.log(20.0), 4))
        x = np.array([float(rng.integers(0, 30))])
        T, t = np.array([rng.uniform(0, 100)]), np.array([math.exp(rng.uniform(-3, 6))])
        closed = bgnbd.log_survival_if_alive(t, x, T, r, alpha, a, b)
        quad = bgnbd._log_survival_by_quadrature(t, x, T, r, alpha, a, b)
        assert closed[0] == pytest.approx(quad[0], rel=1e-7, abs=1e-9)


def test_p_alive_at_public_method_and_units(cdnow_rfm):
    import warnings

    from clv_forecast import ClvModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel().fit(cdnow_rfm)
    p = model.purchases_
    now, year = p.p_alive(cdnow_rfm), p.p_alive_at("52W", cdnow_rfm)
    assert np.allclose(p.p_alive_at(0, cdnow_rfm), now)
    assert np.all(year <= now + 1e-15) and year.mean() < now.mean()
    both = p.p_alive_at(["52W", "104W"], cdnow_rfm)
    assert both.shape == (len(cdnow_rfm), 2) and np.allclose(both[:, 0], year)
    with pytest.raises(ClvInputError, match="horizon"):
        p.p_alive_at(-1.0, cdnow_rfm)


def test_a_model_without_the_kernel_says_so():
    from clv_forecast.estimators.base import PurchaseModel

    class Bare(PurchaseModel):
        name = "Bare"

    with pytest.raises(ClvInputError, match="not available for Bare"):
        Bare._p_alive_after((1.0,), 1.0, np.zeros(1), np.zeros(1), np.ones(1))


# --------------------------------------------------------------------------------------------
# properties (hypothesis)
# --------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _log_uniform(lo, hi):
    return st.floats(math.log(lo), math.log(hi)).map(math.exp)


def _params(kind):
    wide = _log_uniform(1e-3, 1e3)
    if kind == "constant_dropout":
        return st.tuples(wide, wide, st.floats(1e-9, 1 - 1e-9))
    return st.tuples(*([wide] * len(MODELS[kind])))


@st.composite
def _case(draw):
    kind = draw(st.sampled_from(sorted(MODELS)))
    params = draw(_params(kind))
    n = draw(st.integers(1, 8))
    if kind == "bgbb":
        T = np.array([float(draw(st.integers(0, 200))) for _ in range(n)])
        t_x = np.array([float(draw(st.integers(0, int(v)))) for v in T])
        x = np.array([float(draw(st.integers(min(1, int(v)), int(v)))) if v > 0 else 0.0 for v in t_x])
    else:
        T = np.array([draw(st.floats(1e-3, 1e4)) for _ in range(n)])
        x = np.array([float(draw(st.integers(0, 2000))) for _ in range(n)])
        t_x = np.array([v * draw(st.floats(1e-3, 1.0)) if k > 0 else 0.0 for v, k in zip(T, x)])
    horizons = np.sort(np.array(draw(st.lists(st.floats(0.0, 1e4), min_size=2, max_size=5))))
    return kind, params, x, t_x, T, horizons


@PROPERTY_SETTINGS
@given(_case())
def test_p_alive_after_properties(case):
    kind, params, x, t_x, T, horizons = case
    cls = get(kind, "purchases")
    out = cls._p_alive_after(params, horizons, x, t_x, T)
    assert out.shape == (len(x), len(horizons))
    assert np.all(np.isfinite(out)) and np.all(out >= 0) and np.all(out <= 1)
    assert np.all(np.diff(out, axis=1) <= 1e-12 * np.maximum(out[:, :-1], 1e-300) + 1e-300)  # non-increasing in t
    now = cls._p_alive(params, x, t_x, T)
    assert np.allclose(cls._p_alive_after(params, 0.0, x, t_x, T), now, rtol=1e-12, atol=1e-300)


# --------------------------------------------------------------------------------------------
# the residual value beyond the horizon
# --------------------------------------------------------------------------------------------

X = np.array([0.0, 1, 5, 20, 2])
TX = np.array([0.0, 3, 20, 35, 1])
BIG_T = np.array([40.0, 40, 40, 40, 60])


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_residual_equals_a_brute_force_long_horizon(kind):
    """300 years of monthly steps (3,600) minus the first 12, with value.py's own discounting: relative 1e-7."""
    params, cls = MODELS[kind], get(kind, "purchases")
    step = 1 / 12 if kind == "bgbb" else 4.345  # BG/BB: yearly periods in monthly steps; others: weeks
    rate = 0.10 / 12 if kind == "bgbb" else 0.01
    tail = value_tail.residual_discounted(cls, params, X, TX, BIG_T, 12 * step, step, rate)
    n = 3600
    times, factors = np.arange(1, n + 1) * step, (1 + rate) ** -np.arange(1, n + 1.0)
    full = value._clv_parts(cls, params, X, TX, BIG_T, times, value._step_weights(factors))[2]
    head = value._clv_parts(cls, params, X, TX, BIG_T, times[:12], value._step_weights(factors[:12]))[2]
    brute = full - head
    assert np.all(tail >= 0) and np.all(np.isfinite(tail))
    np.testing.assert_allclose(tail, brute, rtol=1e-7, atol=1e-300)


def test_truncation_bound_holds_for_a_slow_tail():
    """Pareto/NBD with s = 0.3 (long lifetimes): a looser rtol stays within it against a tight one."""
    params, cls = (0.8, 4.0, 0.3, 10.0), get("pareto_nbd", "purchases")
    tight = value_tail.residual_discounted(cls, params, X, TX, BIG_T, 52.0, 4.0, 0.01, rtol=1e-12)
    for rtol in (1e-3, 1e-6):
        loose = value_tail.residual_discounted(cls, params, X, TX, BIG_T, 52.0, 4.0, 0.01, rtol=rtol)
        assert np.all(loose <= tight * (1 + 1e-12)) and np.all(tight - loose <= rtol * tight)


def test_nbd_infinite_undiscounted_total_but_finite_discounted_tail():
    r, alpha = MODELS["nbd"]
    cls = get("nbd", "purchases")
    # undiscounted: expected purchases grow without bound
    assert cls._expected_if_alive((r, alpha), np.array([1e3, 1e6]), X, BIG_T)[:, 1].min() > 100 * \
        cls._expected_if_alive((r, alpha), np.array([1e3, 1e6]), X, BIG_T)[:, 0].min()
    with pytest.raises(ClvInputError, match="discount_rate"):
        value_tail.residual_discounted(cls, (r, alpha), X, TX, BIG_T, 12.0, 1.0, 0.0)
    tail = value_tail.residual_discounted(cls, (r, alpha), X, TX, BIG_T, 12.0, 1.0, 0.01)
    q = 1 / 1.01
    np.testing.assert_allclose(tail, (r + X) / (alpha + BIG_T) * q**13 / (1 - q), rtol=1e-14)
    # the generic sum (as if it had no closed form) agrees
    generic = value_tail._tail_if_alive(cls, (r, alpha), X, BIG_T, 12, 1.0, q, 1e-10)
    np.testing.assert_allclose(generic, tail, rtol=1e-8)


def test_pareto_residual_approaches_dert_as_steps_shrink():
    """Within horizon + residual at step s, rate e^(delta s) - 1 per step, is within [e^(-delta s) DERT, DERT]:
    each step's purchases are discounted at its end, at most one step later than continuous discounting."""
    params, cls = MODELS["pareto_nbd"], get("pareto_nbd", "purchases")
    delta = math.log(1.10) / 52
    dert = pareto_nbd.dert(delta, X, TX, BIG_T, *params)
    gaps = []
    for step in (4.0, 1.0, 0.25):
        k = round(52 / step)
        rate = math.expm1(delta * step)
        times = np.arange(1, k + 1) * step
        head = value._clv_parts(cls, params, X, TX, BIG_T, times,
                                value._step_weights((1 + rate) ** -np.arange(1, k + 1.0)))[2]
        tail = value_tail.residual_discounted(cls, params, X, TX, BIG_T, 52.0, step, rate)
        total = head + tail
        assert np.all(total <= dert * (1 + 1e-7)) and np.all(total >= dert * math.exp(-delta * step) * (1 - 1e-7))
        gaps.append(np.max(1 - total / dert))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.001


def test_residual_value_on_the_model(cdnow_rfm):
    import warnings

    from clv_forecast import ClvModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel().fit(cdnow_rfm)
    out = model.residual_value(cdnow_rfm, horizon="12M", discount_rate="10%/Y", step="1M", margin=0.3, interval=0.9)
    assert list(out.columns[:3]) == ["residual_purchases", "expected_spend", "residual_value"]
    np.testing.assert_allclose(out["residual_value"], 0.3 * out["expected_spend"] * out["residual_purchases"])
    assert np.all(np.isfinite(out.to_numpy()))
    assert np.all(out["residual_value_lower"] <= out["residual_value"])
    assert np.all(out["residual_value"] <= out["residual_value_upper"])
    assert (out["residual_value_upper"] > out["residual_value_lower"]).mean() > 0.9
    # a longer horizon leaves less beyond it
    later = model.residual_value(cdnow_rfm, horizon="24M", discount_rate="10%/Y", step="1M", margin=0.3)
    assert np.all(later["residual_value"] <= out["residual_value"] + 1e-12)
    with pytest.raises(ClvInputError, match="margin"):
        model.residual_value(cdnow_rfm, margin=-1)
