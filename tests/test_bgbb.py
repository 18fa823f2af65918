"""BG/BB (Fader, Hardie & Shang 2010) on the donations data, against lifetimes, by simulation, in whole periods.

Reference values: shared/docs/reference-values.md, section "BG/BB on the donations data" (BTYD walkthrough): the
estimates and log-likelihood, E[X(10)], donors A and B and the holdout-bin expectations (printed at the third
optimizer run, 1.203528 / 0.7497260 / 0.6567808 / 2.783796). ``tests/data/donations.csv`` is the published
calibration table: 22 (x, t_x) patterns of the 11,104 donors, n = 6 yearly opportunities, ``count`` donors each.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clv_forecast import estimators
from clv_forecast.errors import ClvInputError
from clv_forecast.estimators.base import Estimator
from clv_forecast.estimators.purchases import bgbb
from clv_forecast.estimators.purchases.bgbb import BetaGeoBetaBinomModel
from clv_forecast.model import ClvModel
from clv_forecast.rfm import compress, summarize, summarize_periods

DONATIONS = Path(__file__).parent / "data" / "donations.csv"
PUBLISHED = (1.203507, 0.7497667, 0.6567568, 2.783887)  # first estimates, LL -33225.58
THIRD_RUN = (1.203528, 0.7497260, 0.6567808, 2.783796)  # where the point checks were printed
HOLDOUT_BINS = [0.07286318, 0.3248841, 0.7089417, 1.333666, 2.031203, 2.784482, 3.752500]
SAME = dict(rtol=1e-9)  # identical parameters: only floating-point differences remain


@pytest.fixture(scope="module")
def donations():
    table = pd.read_csv(DONATIONS)
    table.attrs["time_unit"] = "Y"
    return table


@pytest.fixture(scope="module")
def fitted(donations):
    return BetaGeoBetaBinomModel().fit(donations)


def _columns(table):
    return [table[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T")]


# ---- the published values --------------------------------------------------------------------------------


def test_the_donations_table_is_the_published_one(donations):
    assert len(donations) == 22 and donations["count"].sum() == 11_104 and set(donations["T"]) == {6}
    assert donations.loc[donations["frequency"] == 0, "count"].item() == 3464  # the holdout bins' donors
    by_x = donations.groupby("frequency")["count"].sum()
    assert by_x.tolist() == [3464, 1823, 1430, 1085, 1036, 1063, 1203]


def test_log_likelihood_at_the_published_estimates(donations):
    x, t_x, n = _columns(donations)
    assert np.dot(donations["count"], bgbb.loglik(*PUBLISHED, x, t_x, n)) == pytest.approx(-33225.58, abs=5e-3)


def test_the_fit_reaches_the_published_maximum(fitted, donations):
    assert fitted.problems_ == [] and fitted.time_unit_ == "Y" and fitted.n_customers_ == 11_104
    assert fitted.log_likelihood_ == pytest.approx(-33225.58, abs=5e-3)
    x, t_x, n = _columns(donations)
    ll_published = np.dot(donations["count"], bgbb.loglik(*PUBLISHED, x, t_x, n))
    assert fitted.log_likelihood_ >= ll_published
    # The published runs (R's optim) stop on a flat ridge: LL equal to 1e-5, parameters to 2e-4 relative.
    for ours, theirs in zip(fitted.check_fitted(), PUBLISHED):
        assert ours == pytest.approx(theirs, rel=2e-4)
    _, score, hess = BetaGeoBetaBinomModel._loglik_derivatives(np.array(fitted.check_fitted()), x, t_x, n,
                                                               weights=donations["count"].to_numpy(float))
    assert np.max(np.abs(score * fitted.params_.to_numpy())) < 1e-5  # the score on the log scale ~ 0
    assert np.all(np.linalg.eigvalsh(hess) < 0)  # a maximum
    se = fitted.result_.bse.to_numpy()
    assert np.all(np.isfinite(se)) and np.all(se > 0) and np.all(se < 0.2 * fitted.params_.to_numpy())


def test_expected_donations_of_a_new_donor():
    # The parameters are printed to 7 digits: their rounding alone moves E[X(10)] by up to 9.6e-7 (its
    # gradient, 1.01 / -1.63 / -2.82 / 0.46, times half a unit of each last digit); ours is 3.1798059.
    assert float(bgbb.expected_new(10, *THIRD_RUN)) == pytest.approx(3.179805, abs=1e-6)
    assert float(bgbb.expected_new(10, *PUBLISHED)) == pytest.approx(3.179828, abs=1e-6)


def test_donors_a_and_b_over_the_next_ten_years():
    assert float(bgbb.conditional_expected_purchases(10, 0, 0, 6, *THIRD_RUN)) == pytest.approx(0.1302169, abs=5e-8)
    assert float(bgbb.conditional_expected_purchases(10, 4, 5, 6, *THIRD_RUN)) == pytest.approx(3.627858, abs=5e-7)


def test_holdout_expectations_by_calibration_frequency(donations):
    model = BetaGeoBetaBinomModel.from_params(THIRD_RUN, time_unit="Y")
    expected = model.conditional_expected_purchases(5, donations)  # n* = 5 holdout years, 2002-2006
    by_x = (pd.Series(expected * donations["count"]).groupby(donations["frequency"]).sum()
            / donations.groupby("frequency")["count"].sum())
    np.testing.assert_allclose(by_x.to_numpy(), HOLDOUT_BINS, rtol=1e-6)


# ---- parity with lifetimes' BetaGeoBetaBinomFitter -----------------------------------------------------------


@pytest.fixture(scope="module")
def lifetimes_fit(donations):
    from lifetimes import BetaGeoBetaBinomFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BetaGeoBetaBinomFitter().fit(donations["frequency"], donations["recency"], donations["T"],
                                            weights=donations["count"])


def test_parity_with_lifetimes_estimates(fitted, lifetimes_fit):
    # lifetimes' tol=1e-7 (and the 1e-15 it adds to every likelihood) leave ~1e-7 relative in its estimates
    np.testing.assert_allclose(fitted.params_.to_numpy(), lifetimes_fit.params_.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(fitted.result_.bse.to_numpy(), lifetimes_fit.standard_errors_.to_numpy(), rtol=1e-5)


def test_parity_with_lifetimes_predictions_at_equal_parameters(fitted, lifetimes_fit, donations):
    params = fitted.check_fitted()
    theirs = type(lifetimes_fit)()
    theirs.params_ = pd.Series(params, index=["alpha", "beta", "gamma", "delta"])
    theirs.data = lifetimes_fit.data
    x, t_x, n = _columns(donations)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(bgbb.loglik(*params, x, t_x, n), theirs._loglikelihood(params, x, t_x, n),
                                   rtol=0, atol=1e-9)
        np.testing.assert_allclose(fitted.p_alive(donations), theirs.conditional_probability_alive(0, x, t_x, n),
                                   **SAME)
        for m in (1, 5, 10, 25):
            np.testing.assert_allclose(
                fitted.conditional_expected_purchases(m, donations),
                theirs.conditional_expected_number_of_purchases_up_to_time(m, x, t_x, n), **SAME)
        counts = theirs.expected_number_of_transactions_in_first_n_periods(6)["model"]
    ours = fitted.prob_purchases(counts.index.to_numpy(dtype=float), 6) * donations["count"].sum()
    np.testing.assert_allclose(ours, counts.to_numpy(), **SAME)


# ---- the model's own consistency, and a simulation ------------------------------------------------------------


def simulate(params, n_customers, periods, seed):
    """The BG/BB story for ``periods`` opportunities: transactions (customers x periods, booleans) and the
    period at whose start each customer drops out. p ~ Beta(alpha, beta) per opportunity while alive; alive
    through period t with probability (1 - theta)^t, theta ~ Beta(gamma, delta)."""
    alpha, beta, gamma, delta = params
    rng = np.random.default_rng(seed)
    p = rng.beta(alpha, beta, n_customers)
    theta = rng.beta(gamma, delta, n_customers)
    death = rng.geometric(np.clip(theta, 1e-300, 1.0))
    period = np.arange(1, periods + 1)
    return (rng.random((n_customers, periods)) < p[:, None]) & (period[None, :] < death[:, None]), death


def histories(buys):
    """(x, t_x, n) of boolean transaction rows (n = their length)."""
    x = buys.sum(axis=1).astype(float)
    last = np.where(buys.any(axis=1), buys.shape[1] - np.argmax(buys[:, ::-1], axis=1), 0).astype(float)
    return x, last, np.full(len(x), float(buys.shape[1]))


def _agree(frame, column, expected):
    """Per (x, t_x) pattern with 200+ customers, the simulated mean of ``column`` is within 4.5 standard errors
    of the formula's value ``expected``."""
    groups = frame.groupby("key").agg(expected=(expected, "first"), actual=(column, "mean"), sd=(column, "std"),
                                      size=(column, "size"))
    groups = groups[groups["size"] >= 200]
    z = (groups["actual"] - groups["expected"]) / (groups["sd"] / np.sqrt(groups["size"]))
    assert len(groups) >= 15 and np.max(np.abs(z)) < 4.5, groups.assign(z=z)


def test_simulated_customers_behave_as_the_formulas_say():
    params, n, m = (0.8, 1.6, 0.7, 3.0), 6, 5
    buys, death = simulate(params, 200_000, n + m, seed=7)
    x, t_x, big_n = histories(buys[:, :n])
    counts = np.bincount(x.astype(int), minlength=n + 1) / len(x)
    prob = bgbb.prob_purchases(np.arange(n + 1.0), n, *params)
    assert prob.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.abs(counts - prob) < 4 * np.sqrt(prob * (1 - prob) / len(x))), (counts, prob)
    assert float(bgbb.expected_new(n, *params)) == pytest.approx(float(np.arange(n + 1) @ prob), rel=1e-12)
    frame = pd.DataFrame({"key": x * 100 + t_x, "holdout": buys[:, n:].sum(axis=1), "alive": death > n,
                          "expected": bgbb.conditional_expected_purchases(m, x, t_x, big_n, *params),
                          "p_alive": bgbb.p_alive(x, t_x, big_n, *params)})
    _agree(frame, "holdout", "expected")
    _agree(frame, "alive", "p_alive")  # P(alive in period n): alive through the last observed period


def test_the_fit_recovers_a_simulated_population():
    params = (0.8, 1.6, 0.7, 3.0)
    x, t_x, n = histories(simulate(params, 50_000, 8, seed=11)[0])
    model = BetaGeoBetaBinomModel().fit(pd.DataFrame({"frequency": x, "recency": t_x, "T": n}), time_unit="Y")
    assert model.problems_ == []
    z = (model.params_.to_numpy() - np.array(params)) / model.result_.bse.to_numpy()
    assert np.all(np.abs(z) < 4), z


def test_the_fit_on_every_row_equals_the_fit_on_compressed_rows(donations):
    rows = donations.loc[donations.index.repeat(donations["count"] // 40 + 1)].drop(columns="count")
    full = BetaGeoBetaBinomModel().fit(rows, time_unit="Y")
    compact = BetaGeoBetaBinomModel().fit(compress(rows), time_unit="Y")
    np.testing.assert_allclose(full.params_.to_numpy(), compact.params_.to_numpy(), rtol=1e-9)
    assert full.log_likelihood_ == pytest.approx(compact.log_likelihood_, rel=1e-12)


def test_more_starts_only_when_the_first_is_not_clean(fitted, donations):
    assert fitted.result_.extra["starts"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (did not converge)
        model = BetaGeoBetaBinomModel(maxiter=2).fit(donations)  # 2 iterations: the first start is not done
    assert model.result_.extra["starts"] == len(bgbb.START_GRID)
    given = BetaGeoBetaBinomModel(initial_params=dict(zip(bgbb.PARAM_NAMES, THIRD_RUN))).fit(donations)
    assert given.result_.extra["starts"] == 1 and given.problems_ == []
    np.testing.assert_allclose(given.params_.to_numpy(), fitted.params_.to_numpy(), rtol=1e-6)


def test_analytic_derivatives_at_extreme_parameters_match_finite_differences():
    rng = np.random.default_rng(3)
    n = rng.integers(0, 40, 300).astype(float)
    t_x = np.floor(rng.random(300) * (n + 1))
    x = np.where(t_x > 0, np.maximum(1.0, np.floor(rng.random(300) * (t_x + 1))), 0.0)
    w = rng.random(300) + 0.5
    for params in [(1e-3, 5.0, 1e3, 0.01), (1e-8, 1e-8, 1e-8, 1e-8), (1e12, 1e12, 1e12, 1e12), (3.0, 0.4, 1.0, 7.0)]:
        params = np.array(params)
        ll, score, hess = BetaGeoBetaBinomModel._loglik_derivatives(params, x, t_x, n, weights=w)
        nll, nscore, nhess = Estimator._loglik_derivatives.__func__(BetaGeoBetaBinomModel, params, x, t_x, n,
                                                                     weights=w)
        assert ll == pytest.approx(nll, rel=1e-12) and np.isfinite(hess).all()
        np.testing.assert_allclose(score, nscore, rtol=1e-5, atol=1e-6 * np.abs(score).max())
        np.testing.assert_allclose(hess, nhess, rtol=1e-4, atol=1e-5 * np.abs(hess).max())


def test_chunks_of_terms_and_the_closed_form_give_the_same_numbers(monkeypatch):
    """Rows taken in chunks of terms (bounded memory) and the closed form of the dropout sums (horizons beyond
    the cumulative table) agree with the one-pass evaluation."""
    rng = np.random.default_rng(5)
    n = rng.integers(0, 40, 300).astype(float)
    t_x = np.floor(rng.random(300) * (n + 1))
    x = np.where(t_x > 0, np.maximum(1.0, np.floor(rng.random(300) * (t_x + 1))), 0.0)
    params, horizons = (1.2, 0.75, 0.66, 2.78), np.array([1.0, 7.0, 30.0, 1000.0])
    whole = bgbb.loglik_derivatives(params, x, t_x, n)
    ahead = bgbb.conditional_expected_purchases(horizons, x, t_x, n, *params)
    monkeypatch.setattr(bgbb, "_TERMS_PER_CHUNK", 50)
    monkeypatch.setattr(bgbb, "_TABLE_MAX", 3)
    assert len(bgbb._chunks(x, t_x, n)) > 20
    chunked = bgbb.loglik_derivatives(params, x, t_x, n)
    assert chunked[0] == pytest.approx(whole[0], rel=1e-14)
    np.testing.assert_allclose(chunked[1], whole[1], rtol=1e-12)
    np.testing.assert_allclose(chunked[2], whole[2], rtol=1e-12)
    np.testing.assert_allclose(bgbb.conditional_expected_purchases(horizons, x, t_x, n, *params), ahead, rtol=1e-11)


def test_log_gamma_differences_are_exact_for_large_arguments():
    from scipy import special

    # ln Gamma(1e10 + k) - ln Gamma(1e10) = sum ln(1e10 + i): scipy's difference keeps ~5 digits here
    for z in (25.0, 1e4, 1e10):
        k = np.array([0.0, 1.0, 2.0, 7.0])
        P, D, T = bgbb._shift(z, k)
        exact = np.array([np.sum(np.log(z + np.arange(int(j)))) for j in k])
        np.testing.assert_allclose(P, exact, rtol=1e-15, atol=0)
        np.testing.assert_allclose(D, [np.sum(1 / (z + np.arange(int(j)))) for j in k], rtol=1e-14, atol=0)
        np.testing.assert_allclose(T, [-np.sum(1 / (z + np.arange(int(j))) ** 2) for j in k], rtol=1e-13, atol=0)
    for z in (0.3, 19.9):  # below 20, scipy's functions
        np.testing.assert_allclose(bgbb._shift(z, np.array([3.0]))[0],
                                   special.gammaln(z + 3) - special.gammaln(z), rtol=1e-15)


def test_gamma_one_is_no_singularity():
    """E[X] has d/(gamma - 1) (1 - ratio): 0/0 at gamma = 1; the term-by-term form is continuous there."""
    at_one = bgbb.expected_new(np.array([1.0, 5.0, 40.0]), 1.2, 0.8, 1.0, 2.5)
    for gamma in (1 - 1e-9, 1 + 1e-9, 1 + 1e-13):
        np.testing.assert_allclose(bgbb.expected_new(np.array([1.0, 5.0, 40.0]), 1.2, 0.8, gamma, 2.5), at_one,
                                   rtol=1e-8)
    # sum_{k=1}^{m} E[(1-theta)^k], theta ~ Beta(1, 2.5): E[(1-theta)^k] = 2.5 / (2.5 + k)
    direct = [sum(2.5 / (2.5 + k) for k in range(1, m + 1)) * 1.2 / 2.0 for m in (1, 5, 40)]
    np.testing.assert_allclose(at_one, direct, rtol=1e-13)


# ---- hypothesis: no NaN or inf for any valid history and parameters within the bounds ----------------------------

LOW, HIGH = bgbb.PARAM_BOUNDS["alpha"]
param = st.floats(math.log(LOW), math.log(HIGH)).map(math.exp)
params4 = st.tuples(param, param, param, param)


@st.composite
def periods_data(draw, max_n=400):
    n = draw(st.lists(st.integers(0, max_n), min_size=1, max_size=12))
    t_x = [draw(st.integers(0, v)) for v in n]
    x = [draw(st.integers(1, t)) if t > 0 else 0 for t in t_x]
    return tuple(np.array(v, dtype=float) for v in (x, t_x, n))


PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(params=params4, data=periods_data(), m=st.integers(0, 10_000))
@example(params=(LOW,) * 4, data=(np.array([0.0, 400.0]), np.array([0.0, 400.0]), np.array([400.0, 400.0])), m=10_000)
@example(params=(HIGH,) * 4, data=(np.array([0.0, 1.0]), np.array([0.0, 400.0]), np.array([400.0, 400.0])), m=10_000)
@example(params=(HIGH, LOW, LOW, HIGH), data=(np.array([1.0]), np.array([1.0]), np.array([400.0])), m=1)
def test_every_kernel_is_finite_and_in_range(params, data, m):
    x, t_x, n = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning either
        ll = bgbb.loglik(*params, x, t_x, n)
        alive = bgbb.p_alive(x, t_x, n, *params)
        ahead = bgbb.conditional_expected_purchases(float(m), x, t_x, n, *params)
        new = bgbb.expected_new(float(m), *params)
        total, score, hess = bgbb.loglik_derivatives(params, x, t_x, n)
    assert np.all(np.isfinite(ll)) and np.all(ll <= 1e-12)
    assert np.all((alive >= 0) & (alive <= 1))
    # at most one transaction per opportunity: E[X(n, n+m)] <= m
    assert np.all(np.isfinite(ahead)) and np.all(ahead >= 0) and np.all(ahead <= m * (1 + 1e-12))
    assert np.isfinite(new) and 0 <= new <= m * (1 + 1e-12)
    assert math.isfinite(total) and np.all(np.isfinite(score)) and np.all(np.isfinite(hess))


@PROPERTY
@given(params=params4, m=st.integers(0, 60))
def test_the_count_distribution_sums_to_one_and_has_the_expected_mean(params, m):
    k = np.arange(m + 1.0)
    prob = bgbb.prob_purchases(k, m, *params)
    assert np.all(np.isfinite(prob)) and np.all(prob >= 0)
    assert prob.sum() == pytest.approx(1.0, abs=1e-9)
    assert float(k @ prob) == pytest.approx(float(bgbb.expected_new(m, *params)), rel=1e-8, abs=1e-12 * max(m, 1))


@PROPERTY
@given(params=params4, data=periods_data(max_n=60), m1=st.integers(0, 30), m2=st.integers(0, 30))
def test_expectations_grow_with_the_horizon_by_at_most_one_per_period(params, data, m1, m2):
    x, t_x, n = data
    lo, hi = sorted((m1, m2))
    e_lo = bgbb.conditional_expected_purchases(float(lo), x, t_x, n, *params)
    e_hi = bgbb.conditional_expected_purchases(float(hi), x, t_x, n, *params)
    assert np.all(e_hi >= e_lo * (1 - 1e-12)) and np.all(e_hi - e_lo <= (hi - lo) * (1 + 1e-12))


# ---- whole periods: the model's data, horizons and the layer's doors ------------------------------------------


def test_data_not_in_whole_periods_are_refused_with_the_column_and_the_row(donations):
    model = BetaGeoBetaBinomModel()
    bad = donations.drop(columns="count").astype(float)
    bad.loc[3, "recency"] = 2.5
    with pytest.raises(ClvInputError) as info:
        model.fit(bad)
    assert str(info.value) == ("RFM table: column 'recency', row 4 (values: 2.5): not a whole number of periods; a "
                               "discrete-time model reads whole periods: summarise with merge = time_unit (e.g. 'W') "
                               "or with clv_forecast.rfm.summarize_periods")
    bad = donations.drop(columns="count").astype(float)
    bad.loc[[1, 5], "frequency"] = [3.0, 6.0]
    with pytest.raises(ClvInputError, match=r"column 'frequency', rows 2, 6 .*greater than recency \(at most one "
                                            r"transaction per period\)"):
        model.fit(bad)
    assert not hasattr(model, "params_")


def test_predictions_convert_units_then_need_whole_periods(fitted, donations):
    months = donations.assign(recency=donations["recency"] * 12, T=donations["T"] * 12)
    months.attrs["time_unit"] = "M"
    pd.testing.assert_frame_equal(fitted.predict(months, "2Y"), fitted.predict(donations, "2Y"))
    months.loc[0, ["recency", "T"]] = [0, 66]  # 5.5 years
    with pytest.raises(ClvInputError, match=r"column 'T', row 1 \(values: 5.5\): not a whole number of periods"):
        fitted.p_alive(months)


def test_a_horizon_holds_the_periods_that_end_within_it(fitted, donations):
    steps = fitted.expected_purchases(np.array([0.0, 0.99, 1.0, 1.5, 2.999999, 3.0]))
    assert steps[0] == steps[1] == 0 and steps[2] == steps[3] > 0 and steps[4] < steps[5]
    assert fitted.expected_purchases("12M") == fitted.expected_purchases(1.0)  # 12 months are one year
    assert fitted.expected_purchases(3 * (1 / 3)) == fitted.expected_purchases(1.0)  # (rounding forgiven)
    ahead = fitted.conditional_expected_purchases(np.array([0.5, 1.0, 1.9]), donations)
    np.testing.assert_array_equal(ahead[:, 0], 0.0)
    np.testing.assert_array_equal(ahead[:, 1], ahead[:, 2])


def test_clv_with_monthly_steps_discounts_each_year_at_its_end(fitted, donations):
    model = ClvModel.from_params(purchases=dict(fitted.params_), spend=None, time_unit="Y", purchase_model="bgbb")
    table = donations.drop(columns="count")
    monthly = model.clv(table, horizon="3Y", step="1M", discount_rate="10%/Y", future_spend=np.full(22, 25.0))
    yearly = model.clv(table, horizon="3Y", step="1Y", discount_rate="10%/Y", future_spend=np.full(22, 25.0))
    np.testing.assert_allclose(monthly["clv"], yearly["clv"], rtol=1e-12)
    e = [fitted.conditional_expected_purchases(k, table) for k in (1, 2, 3)]
    by_hand = 25.0 * (e[0] / 1.1 + (e[1] - e[0]) / 1.1**2 + (e[2] - e[1]) / 1.1**3)
    np.testing.assert_allclose(yearly["clv"], by_hand, rtol=1e-12)
    bad = table.astype(float)
    bad.loc[1, "recency"] = 1.5
    with pytest.raises(ClvInputError, match="not a whole number of periods"):
        model.clv(bad, horizon="3Y", future_spend=np.full(22, 25.0))


def test_the_scorer_rejects_rows_not_in_whole_periods(fitted, donations, tmp_path):
    from clv_forecast.scoring import score_file

    model = ClvModel.from_params(purchases=dict(fitted.params_), spend=dict(p=6.25, q=3.74, v=15.44),
                                 time_unit="Y", purchase_model="bgbb")
    path = model.save(tmp_path / "m.json")
    table = donations.drop(columns="count").astype(float).assign(monetary_value=30.0)
    table.loc[2, "recency"] = 1.5
    table.loc[7, "frequency"] = 3
    table.rename_axis("customer_id").reset_index().to_csv(tmp_path / "rfm.csv", index=False)
    report = score_file(path, tmp_path / "rfm.csv", tmp_path / "out.csv", horizon="5Y", step="1Y",
                        max_reject_share=0.5)
    assert report.scored == 20 and report.rejected == 2
    assert report.reasons == {"recency not a whole number of periods": 1,
                              "frequency greater than recency (at most one transaction per period)": 1}
    scores = pd.read_csv(tmp_path / "out.csv").set_index("customer_id")
    good = table.drop(index=[2, 7])
    expected = model.clv(good, horizon="5Y", step="1Y")
    np.testing.assert_allclose(scores.loc[good.index, "clv"], expected["clv"], rtol=1e-12)


def test_the_model_is_discovered_and_round_trips(fitted, donations, tmp_path):
    assert estimators.get("bgbb", "purchases") is BetaGeoBetaBinomModel
    assert BetaGeoBetaBinomModel.whole_periods and not estimators.get("bgnbd", "purchases").whole_periods
    again = BetaGeoBetaBinomModel.from_dict(fitted.to_dict())
    pd.testing.assert_frame_equal(again.predict(donations, "5Y"), fitted.predict(donations, "5Y"), check_exact=True)
    population = fitted.population()
    assert list(population) == ["transaction_probability", "dropout_probability"]
    alpha, beta, gamma, delta = fitted.check_fitted()
    assert population["transaction_probability"].mean() == pytest.approx(alpha / (alpha + beta))
    assert population["dropout_probability"].mean() == pytest.approx(gamma / (gamma + delta))


# ---- the discrete summary of a transaction log ----------------------------------------------------------------


def donation_log(table: pd.DataFrame, holdout: dict | None = None) -> pd.DataFrame:
    """A log (donor, date) with the donations table's histories: every donor gives in 1995 (the cohort's year),
    in 1995 + t_x and in the x - 1 years before it; ``holdout``: {donor: years after 2001 with a gift}."""
    rows = []
    donor = 0
    for x, t_x, count in table[["frequency", "recency", "count"]].itertuples(index=False):
        years = [1995] + ([1995 + t_x - i for i in range(x)] if x else [])
        for _ in range(count):
            donor += 1
            for year in years + list((holdout or {}).get(donor, [])):
                rows.append((donor, f"{year}-{1 + donor % 12:02d}-{1 + donor % 28:02d}"))
            if donor % 3 == 0:  # a second gift in the same year is the same opportunity
                rows.append((donor, f"{years[-1]}-12-31"))
    return pd.DataFrame(rows, columns=["customer_id", "date"])


def test_the_yearly_summary_of_a_log_is_the_donations_table(donations):
    holdout = {1: [2002, 2006], 5000: [2003], 11_104: [2002, 2003, 2004]}
    log = donation_log(donations, holdout)
    summary = summarize_periods(log, period="Y", calibration_end="2001-12-31", observation_end="2006-12-31")
    assert summary.attrs["time_unit"] == "Y" and len(summary) == 11_104
    assert summary.attrs["n_transactions_summarised"] == len(log)
    table = compress(summary[["frequency", "recency", "T"]])
    pd.testing.assert_frame_equal(table.astype("int64"), donations.astype("int64"), check_like=True)
    assert (summary["duration_holdout"] == 5).all()
    assert summary["frequency_holdout"].to_dict() == {**dict.fromkeys(summary.index, 0),
                                                      **{k: len(v) for k, v in holdout.items()}}
    fit = BetaGeoBetaBinomModel().fit(summary)
    assert fit.log_likelihood_ == pytest.approx(-33225.58, abs=5e-3) and fit.time_unit_ == "Y"


def test_a_calibration_end_inside_a_period_names_the_nearest_ends(donations):
    log = donation_log(donations.head(3))
    with pytest.raises(ClvInputError) as info:
        summarize_periods(log, period="Y", calibration_end="2001-06-30")
    assert str(info.value) == ("calibration_end='2001-06-30': 2001-06-30 is inside a period Y (a period is never "
                               "cut): give the last day of one, e.g. 2001-12-31 or 2000-12-31")
    with pytest.raises(ClvInputError, match="give the last day of one, e.g. 1997-10-05 or 1997-09-28"):
        summarize_periods(log.assign(date="1997-09-01"), period="W", calibration_end="1997-09-30")
    with pytest.raises(ClvInputError, match="a calendar period"):
        summarize_periods(log, period="2Y")


def test_weekly_periods_equal_the_summary_merged_by_weeks():
    from clv_forecast.datasets import load_cdnow_sample

    log = load_cdnow_sample()
    periods = summarize_periods(log, period="W", amount_col="amount", calibration_end="1997-09-28")
    merged = summarize(log, amount_col="amount", merge="W", time_unit="W", calibration_end="1997-09-28")
    columns = ["frequency", "recency", "T", "monetary_value", "frequency_holdout", "duration_holdout"]
    pd.testing.assert_frame_equal(periods[columns].astype(float), merged[columns].astype(float), rtol=1e-13)
    quarters = summarize_periods(log, period="Q", calibration_end="1997-09-30")
    assert quarters.attrs["time_unit"] == "3M" and set(quarters["T"]) == {2}  # first purchases in 1997 Q1
    assert (quarters["duration_holdout"] == 3).all()  # 1997 Q4 .. 1998 Q2
    assert (quarters["frequency"] <= quarters["recency"]).all()
    fit = BetaGeoBetaBinomModel().fit(periods)
    assert fit.problems_ == [] and fit.time_unit_ == "W"
