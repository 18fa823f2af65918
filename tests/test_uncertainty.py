"""Intervals on every forecast and the portfolio band (clv_forecast/uncertainty.py, value.customer_lifetime_value):
the delta method against parameter draws and against central differences, the band of the totals, the edge cases
(a known spend, P(alive) = 1, no covariance), the same intervals in every time unit, and finite bounds for any
parameters and data (hypothesis)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from clv_forecast import uncertainty
from clv_forecast.errors import ClvInputError
from clv_forecast.estimators import available
from clv_forecast.model import ClvModel
from clv_forecast.rfm import summarize
from clv_forecast.datasets import load_cdnow_sample

ARGS = dict(horizon="12M", discount_rate="10%/Y", interval=0.9)


@pytest.fixture(scope="module")
def model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm)


@pytest.fixture(scope="module")
def delta(model, cdnow_rfm):
    return model.clv(cdnow_rfm, **ARGS)


def test_every_forecast_has_its_bounds_around_the_estimate(delta):
    assert list(delta.columns) == [*uncertainty.QUANTITIES, *uncertainty.INTERVAL_COLUMNS]
    for q in uncertainty.QUANTITIES:
        lo, est, hi = (delta[c].to_numpy() for c in (f"{q}_lower", q, f"{q}_upper"))
        assert np.isfinite(lo).all() and np.isfinite(hi).all(), q
        assert (lo <= est).all() and (est <= hi).all(), q
        moves = est < 1 if q == "p_alive" else est > 0  # BG/NBD: P(alive) = 1 without repeat purchases, by definition
        assert (lo < hi)[moves].all() and (lo == hi)[~moves].all(), q
    assert (delta["p_alive_lower"] >= 0).all() and (delta["p_alive_upper"] <= 1).all()


@pytest.mark.slow
def test_delta_agrees_with_parameter_draws(model, cdnow_rfm, delta):
    """On CDNOW's fit the linearisation is good: 2,000 draws give the same bounds, for the median customer within 8 %
    of the interval's width for every forecast (the largest, 6.4 % with this seed, 2.6-4.6 % with seeds 1-4; 5.5 %
    with 4,000 draws, at 2.6 times the CPU: their blocks of customers split CDNOW's (x, T) pairs below the size at
    which the 2F1 tables pay), and the same portfolio band."""
    draws = model.clv(cdnow_rfm, **ARGS, interval_method="draws", n_draws=2000, seed=5)
    for q in uncertainty.QUANTITIES:
        width = (delta[f"{q}_upper"] - delta[f"{q}_lower"]).to_numpy()
        moves = width > 0  # (P(alive) = 1 without repeat purchases: no interval, by either method)
        for side in ("lower", "upper"):
            gap = np.abs(delta[f"{q}_{side}"] - draws[f"{q}_{side}"]).to_numpy()
            assert (gap[~moves] == 0).all(), (q, side)
            assert np.median(gap[moves] / width[moves]) < 0.08, (q, side, np.median(gap[moves] / width[moves]))
    a, b = delta.attrs["portfolio"], draws.attrs["portfolio"]
    assert a["method"] == "delta" and b["method"] == "draws"
    for q in ("expected_purchases", "clv"):
        assert a[q]["total"] == pytest.approx(b[q]["total"], rel=1e-12)
        width = a[q]["upper"] - a[q]["lower"]
        assert abs(a[q]["lower"] - b[q]["lower"]) < 0.05 * width and abs(a[q]["upper"] - b[q]["upper"]) < 0.05 * width


def test_forward_differences_equal_central_ones(model, cdnow_rfm, delta):
    """The standard errors from forward differences (step 1e-6) equal those from central differences with a step of
    1e-4 to 1e-4 relative: the gradient is accurate, not noise."""
    from clv_forecast import value

    z = uncertainty._z(0.9)
    log_half = np.log(delta["clv_upper"] / delta["clv"]).to_numpy()  # z se(log CLV)
    purchases, spend = model.purchases_, model.spend_
    x, t_x, T, m = (cdnow_rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T", "monetary_value"))
    times, factors = value.discount_schedule(purchases.time_unit_, "12M", "1M", "10%/Y")
    weights = value._step_weights(factors)
    h = 1e-4

    def log_clv(phi, psi):
        _, _, d = value._clv_parts(type(purchases), phi, x, t_x, T, times, weights)
        return np.log(type(spend)._expected_spend(psi, x, m) * d)

    phi, psi = np.array(purchases.check_fitted(), dtype=float), np.array(spend.check_fitted(), dtype=float)
    grads = []
    for j in range(len(phi) + len(psi)):
        up_p, dn_p, up_s, dn_s = phi.copy(), phi.copy(), psi.copy(), psi.copy()
        if j < len(phi):
            up_p[j] *= np.exp(h)
            dn_p[j] *= np.exp(-h)
        else:
            up_s[j - len(phi)] *= np.exp(h)
            dn_s[j - len(phi)] *= np.exp(-h)
        grads.append((log_clv(up_p, up_s) - log_clv(dn_p, dn_s)) / (2 * h))
    g = np.column_stack(grads)
    cov = np.zeros((len(g[0]), len(g[0])))
    cov[:len(phi), :len(phi)] = uncertainty.log_covariance(purchases)
    cov[len(phi):, len(phi):] = uncertainty.log_covariance(spend)
    se = np.sqrt(np.einsum("ij,jk,ik->i", g, cov, g))
    np.testing.assert_allclose(log_half, z * se, rtol=1e-4)


def test_the_portfolio_band_is_of_the_total_not_a_sum_of_intervals(delta):
    band = delta.attrs["portfolio"]
    assert band["customers"] == len(delta) and band["level"] == 0.9
    for q in ("expected_purchases", "clv"):
        b = band[q]
        assert b["total"] == pytest.approx(delta[q].sum(), rel=1e-12)
        assert b["lower"] < b["total"] < b["upper"]
        # a relative band of a few per cent: the parameters are shared, so it is no narrower than the customers'
        # typical relative interval, and no wider than the sum of their intervals
        assert b["upper"] - b["lower"] <= (delta[f"{q}_upper"] - delta[f"{q}_lower"]).sum() * (1 + 1e-9)


def test_a_known_spend_has_no_spend_uncertainty(model, cdnow_rfm):
    spend = cdnow_rfm["monetary_value"].where(cdnow_rfm["frequency"] > 0, 20.0)
    out = model.clv(cdnow_rfm, **ARGS, future_spend=spend)
    np.testing.assert_array_equal(out["expected_spend_lower"], out["expected_spend"])
    np.testing.assert_array_equal(out["expected_spend_upper"], out["expected_spend"])
    full = model.clv(cdnow_rfm, **ARGS)
    repeat = cdnow_rfm["frequency"].to_numpy() > 0
    narrower = (out["clv_upper"] / out["clv"]).to_numpy() <= (full["clv_upper"] / full["clv"]).to_numpy() * (1 + 1e-12)
    assert narrower[repeat].all()


def test_no_dropout_keeps_p_alive_at_one(cdnow_rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbd = ClvModel(purchases="nbd").fit(cdnow_rfm)
    out = nbd.clv(cdnow_rfm, **ARGS)
    assert (out["p_alive"] == 1).all() and (out["p_alive_lower"] == 1).all() and (out["p_alive_upper"] == 1).all()
    assert (out["expected_purchases_lower"] < out["expected_purchases"]).all()


def test_no_covariance_and_bad_settings_are_one_line(cdnow_rfm, model):
    bare = ClvModel.from_params(purchases=model.purchases_.params_.to_dict(), spend=model.spend_.params_.to_dict())
    with pytest.raises(ClvInputError, match="no covariance"):
        bare.clv(cdnow_rfm, **ARGS)
    with pytest.raises(ClvInputError, match="interval_method"):
        model.clv(cdnow_rfm, **ARGS, interval_method="jackknife")
    with pytest.raises(ClvInputError, match="between 0 and 1"):
        model.clv(cdnow_rfm, horizon="12M", interval=1.0)


def test_the_same_intervals_in_days_and_weeks():
    log = load_cdnow_sample()
    fits = {}
    for unit in ("D", "W"):
        rfm = summarize(log, customer_col="customer_id", date_col="date", amount_col="amount", time_unit=unit)
        fits[unit] = ClvModel().fit(rfm).clv(rfm, **ARGS)
    for column in uncertainty.INTERVAL_COLUMNS:
        np.testing.assert_allclose(fits["D"][column], fits["W"][column], rtol=1e-5, err_msg=column)


@pytest.mark.parametrize("kind", [k for k in available("purchases") if k != "bgbb"])
def test_every_continuous_time_model_gives_intervals(kind, cdnow_rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ClvModel(purchases=kind).fit(cdnow_rfm)
    out = fitted.clv(cdnow_rfm, **ARGS)
    for q in uncertainty.QUANTITIES:
        assert np.isfinite(out[f"{q}_lower"]).all() and (out[f"{q}_lower"] <= out[q]).all()
        assert (out[q] <= out[f"{q}_upper"]).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(r=st.floats(1e-3, 1e3), alpha=st.floats(1e-4, 1e6), a=st.floats(1e-4, 1e4), b=st.floats(1e-4, 1e6),
       rel_se=st.floats(1e-4, 3.0), x=st.integers(0, 500), t=st.floats(0, 1), T=st.floats(1e-3, 1e3))
def test_bounds_are_finite_and_ordered_for_any_parameters(r, alpha, a, b, rel_se, x, t, T):
    phi = np.array([r, alpha, a, b])
    cov = np.diag((rel_se * phi) ** 2)
    model = ClvModel.from_params(purchases=phi, spend={"p": 6.0, "q": 4.0, "v": 15.0}, purchases_cov=cov,
                                 spend_cov=np.diag([1.0, 0.25, 4.0]))
    rfm = pd.DataFrame({"frequency": [float(x), 0.0], "recency": [t * T if x else 0.0, 0.0], "T": [T, T],
                        "monetary_value": [25.0 if x else 0.0, 0.0]})
    with np.errstate(all="ignore"):
        out = model.clv(rfm, **ARGS)
    for q in uncertainty.QUANTITIES:
        lo, est, hi = (out[c].to_numpy() for c in (f"{q}_lower", q, f"{q}_upper"))
        assert np.isfinite(lo).all() and np.isfinite(hi).all(), (q, lo, hi)
        assert (lo <= est * (1 + 1e-12)).all() and (est <= hi * (1 + 1e-12)).all(), (q, lo, est, hi)
    assert (out["p_alive_lower"] >= 0).all() and (out["p_alive_upper"] <= 1).all()
    band = out.attrs["portfolio"]["clv"]
    assert np.isfinite([band["lower"], band["upper"]]).all() and band["lower"] <= band["total"] <= band["upper"]


@pytest.mark.parametrize("method", ["delta", "draws"])
def test_the_band_over_batches_equals_the_band_of_the_whole_table(model, cdnow_rfm, tmp_path, method):
    """A scorer adds every batch to one accumulator: batches of 500 give the band of the whole table (the draws'
    totals are summed draw by draw; the delta method's gradients add up)."""
    from clv_forecast.scoring import score_file

    source = tmp_path / "in.parquet"
    cdnow_rfm.reset_index().to_parquet(source, index=False)
    report = score_file(model, source, tmp_path / "out.parquet", batch_rows=500, interval_method=method,
                        horizon="12M", discount_rate="10%/Y", interval=0.9)
    whole = model.clv(cdnow_rfm, **ARGS, interval_method=method).attrs["portfolio"]
    band = report.portfolio
    assert band["customers"] == 2357 and band["method"] == method
    for q in ("expected_purchases", "clv"):
        for key in ("total", "lower", "upper"):
            assert band[q][key] == pytest.approx(whole[q][key], rel=1e-9), (q, key)
    assert report.settings["interval_method"] == method


def test_fit_reports_the_band_in_its_metrics_and_json(cdnow_csv, tmp_path, capsys):
    import json

    from clv_forecast.cli import main

    rc = main(["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--predictions",
               str(tmp_path / "p.parquet"), "--interval", "0.8", "--json", "--no-tracking"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    metrics = data["metrics"]
    assert metrics["band_level"] == 0.8
    assert metrics["clv_total_lower"] < metrics["clv_total"] < metrics["clv_total_upper"]
    table = pd.read_parquet(tmp_path / "p.parquet")
    assert metrics["expected_purchases_total"] == pytest.approx(table["expected_purchases"].sum(), rel=1e-9)
    assert set(uncertainty.INTERVAL_COLUMNS) <= set(table.columns)


@pytest.mark.parametrize("kind", ["bgnbd", "pareto_nbd"])
def test_the_gradient_grid_of_continuous_t_moves_bounds_by_parts_in_ten_thousand(kind, cdnow_rfm, monkeypatch):
    """With every (x, T) pair distinct (T continuous), the if-alive gradient is read on a grid of T
    (value.GRADIENT_GRID): the estimates are exact, every bound and the band within 1e-3 of their distance to the
    estimate of the exact delta method, and the grid is really used (far fewer pairs)."""
    from clv_forecast import value
    from clv_forecast.estimators.base import distinct_pairs

    model = ClvModel(purchases=kind).fit(cdnow_rfm)
    rng = np.random.default_rng(5)
    n = 30_000
    T = rng.uniform(20.0, 80.0, n)
    x = rng.poisson(2.0, n).astype(float)
    recency = np.where(x > 0, T * rng.uniform(0.1, 1.0, n), 0.0)
    table = pd.DataFrame({"frequency": x, "recency": recency, "T": T,
                          "monetary_value": np.where(x > 0, rng.gamma(4.0, 10.0, n), 0.0)})
    table.attrs["time_unit"] = "W"
    pairs = distinct_pairs(x, T)
    grid = value.gradient_grid(type(model.purchases_), pairs)
    assert grid is not None and len(grid[0]) < len(pairs[0]) / 2
    fast = model.clv(table, interval=0.9)
    monkeypatch.setattr(value, "GRADIENT_GRID_MIN_PAIRS", 10**12)
    exact = model.clv(table, interval=0.9)
    for q in uncertainty.QUANTITIES:
        np.testing.assert_array_equal(fast[q].to_numpy(), exact[q].to_numpy())
        for side in ("lower", "upper"):
            gap = np.abs(exact[f"{q}_{side}"] - exact[q]).to_numpy()
            err = np.abs(fast[f"{q}_{side}"] - exact[f"{q}_{side}"]).to_numpy()
            assert np.all(err <= 1e-3 * gap + 1e-12), (q, side, float(np.max(err / np.maximum(gap, 1e-300))))
    for q in ("expected_purchases", "clv"):
        a, b = fast.attrs["portfolio"][q], exact.attrs["portfolio"][q]
        assert abs(a["upper"] - b["upper"]) <= 1e-3 * (b["upper"] - b["total"])
        assert abs(a["lower"] - b["lower"]) <= 1e-3 * (b["total"] - b["lower"])


def test_draw_bounds_are_the_same_bits_in_one_block_or_many(model, cdnow_rfm):
    """Parameter draws in blocks of customers taken in the order of their (x, T) pair: each customer's bounds are
    the same bits with one block as with blocks of 100 customers (pairs cut at the blocks' edges), and the totals
    under each vector the same sums to rounding."""
    from clv_forecast import value

    purchases, spend = model.purchases_, model.spend_
    x, t_x, big_t, m = (cdnow_rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T", "monetary_value"))
    times, factors = value.discount_schedule(purchases.time_unit_, "12M", "1M", "10%/Y")
    weights = value._step_weights(factors)
    draws_p = purchases.result_.draws(60, 1, bounds=purchases.param_bounds)
    draws_s = spend.result_.draws(60, 2, bounds=spend.param_bounds)
    counted = np.ones(len(x), bool)
    args = (purchases, spend, x, t_x, big_t, m, None, times, weights, 1.0, 0.9, draws_p, draws_s, counted)
    one, one_totals = value._draw_intervals(*args, max_values=4 * 60 * len(x))
    many, many_totals = value._draw_intervals(*args, max_values=4 * 60 * 100)
    for q in uncertainty.QUANTITIES:
        for side in (0, 1):
            np.testing.assert_array_equal(many[q][side], one[q][side], err_msg=q)
        assert np.ptp(one[q][1] - one[q][0]) > 0, q  # (bounds that differ by customer: a real comparison)
    for q in one_totals:
        np.testing.assert_allclose(many_totals[q], one_totals[q], rtol=1e-12, atol=0)
