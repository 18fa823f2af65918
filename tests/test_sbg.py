"""sBG, the shifted-beta-geometric model of contractual retention (Fader & Hardie 2007; DERL: Fader & Hardie 2010).

Reference values: shared/docs/reference-values.md, section "sBG, contractual" (FH 2007, Table 1): the % of a
cohort still customers at years 0..12 of two segments; fitted on years 1-7 (regular alpha 0.704, beta 1.182; high
end alpha 0.668, beta 3.806), years 8-12 check the projection. A cohort of 1,000 customers: survivors are 10 x the %.
The estimator contract (settings, fit, save/load, from_params, derivatives) runs on the model in
tests/test_contract.py; here: the paper, the input forms, properties to extreme values, recovery on simulated
cohorts, DERL against direct sums, the command line and the model file.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import special

from clv_forecast import estimators, historical
from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError, IdentificationError
from clv_forecast.estimators.base import Estimator
from clv_forecast.estimators.retention import sbg
from clv_forecast.estimators.retention._base import RetentionModel
from clv_forecast.estimators.retention._data import cohorts_from_log
from clv_forecast.estimators.retention.sbg import ShiftedBetaGeometricModel

# FH 2007, Table 1: % alive at years 0..12
REGULAR = [100, 63.1, 46.8, 38.2, 32.6, 28.9, 26.2, 24.1, 22.3, 20.7, 19.4, 18.3, 17.3]
HIGH_END = [100, 86.9, 74.3, 65.3, 59.3, 55.1, 51.7, 49.1, 46.8, 44.5, 42.7, 40.9, 39.4]
PUBLISHED = {"regular": (0.704, 1.182), "high end": (0.668, 3.806)}
SEGMENTS = {"regular": REGULAR, "high end": HIGH_END}


def _survivors(percent, years=7, size=1000):
    """The cohort of 1,000 of the paper, years 0..``years``."""
    return [round(p * size / 100) for p in percent[:years + 1]]


def _sbg(alpha, beta, unit="Y"):
    return ShiftedBetaGeometricModel.from_params({"alpha": alpha, "beta": beta}, time_unit=unit)


@pytest.fixture(scope="module")
def paper():
    """Each segment fitted on years 0..7 of the paper's table, as in the paper."""
    return {name: ShiftedBetaGeometricModel().fit(_survivors(p), time_unit="Y") for name, p in SEGMENTS.items()}


# ---- the published values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("segment", list(SEGMENTS))
def test_parameters_of_fader_hardie_2007_table_1(paper, segment):
    model = paper[segment]
    assert model.problems_ == [] and model.result_.converged
    alpha, beta = PUBLISHED[segment]
    assert round(model.params_["alpha"], 3) == alpha and round(model.params_["beta"], 3) == beta
    # a maximum: the score is 0 there (the analytic one; the contract suite checks it against differences)
    _, score, hess = sbg.loglik_derivatives(tuple(model.params_), *_rows(_survivors(SEGMENTS[segment])))
    assert np.max(np.abs(score * model.params_.to_numpy())) < 1e-6 and np.all(np.linalg.eigvalsh(hess) < 0)


def _rows(alive):
    """A cohort as (renewals, churned, weights), written here independently of the package's reader."""
    a = np.asarray(alive, dtype=float)
    n = len(a) - 1
    return (np.r_[np.arange(n), n].astype(float), np.r_[np.ones(n), 0.0], np.r_[a[:-1] - a[1:], a[-1]])


@pytest.mark.parametrize("segment", list(SEGMENTS))
def test_projection_of_years_8_to_12_against_the_table(paper, segment):
    """Years 8-12 (not fitted) within two standard errors of the projection. The standard error joins the
    parameters' uncertainty (delta method on S(t) with the fit's covariance) and the binomial sampling of a cohort
    of 1,000 (sqrt(S (1 - S) / 1000), 1.2 to 1.6 points here): the actual survivors are one draw. A projection
    without heterogeneity (one retention rate, the geometric model) fails it: by year 12 it misses by 9-10 points."""
    model = paper[segment]
    t = np.arange(8, 13)
    projected = model.survival(t)
    alpha, beta = model.params_
    h = 1e-6
    d_alpha = (_sbg(alpha * (1 + h), beta).survival(t) - _sbg(alpha * (1 - h), beta).survival(t)) / (2 * h * alpha)
    d_beta = (_sbg(alpha, beta * (1 + h)).survival(t) - _sbg(alpha, beta * (1 - h)).survival(t)) / (2 * h * beta)
    jac = np.column_stack([d_alpha, d_beta])
    var_params = np.einsum("ij,jk,ik->i", jac, model.result_.cov, jac)
    se = np.sqrt(var_params + projected * (1 - projected) / 1000)
    actual = np.array(SEGMENTS[segment][8:13]) / 100
    assert np.all(np.abs(actual - projected) < 2 * se), (actual, projected, se)
    # the geometric model (constant retention: the year 1-7 average) does not project years 10-12
    geometric = (_survivors(SEGMENTS[segment])[7] / 1000) ** (t / 7)
    assert np.all(np.abs(actual - geometric)[2:] > 2 * se[2:])


def test_the_estimates_do_not_depend_on_the_cohort_size():
    shares = np.array(REGULAR[:8]) / 100
    fits = [ShiftedBetaGeometricModel().fit(shares, size=size) for size in (1, 1000, 1e6)]
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.params_, fits[0].params_, rtol=1e-7)
    # the information grows with the cohort: standard errors shrink as 1 / sqrt(size)
    np.testing.assert_allclose(fits[1].result_.bse * math.sqrt(1000), fits[2].result_.bse * math.sqrt(1e6),
                               rtol=1e-5)


def test_survival_retention_and_churn_are_the_papers_formulas():
    model = _sbg(0.704, 1.182)
    t = np.arange(0, 30)
    # S(t) = B(alpha, beta + t) / B(alpha, beta) (FH 2007, eq. 5)
    by_beta_function = np.exp(special.betaln(0.704, 1.182 + t) - special.betaln(0.704, 1.182))
    np.testing.assert_allclose(model.survival(t), by_beta_function, rtol=1e-13)
    # r(t) = (beta + t - 1) / (alpha + beta + t - 1) (eq. 8) and S(t) = S(t - 1) r(t)
    r = model.retention_rate(t[1:])
    np.testing.assert_allclose(r, (1.182 + t[1:] - 1) / (0.704 + 1.182 + t[1:] - 1), rtol=1e-15)
    np.testing.assert_allclose(model.survival(t[1:]), model.survival(t[:-1]) * r, rtol=1e-13)
    # P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta) (eq. 4), summing with S to 1
    churn = model.churn_probability(t[1:])
    np.testing.assert_allclose(churn, np.exp(special.betaln(1.704, 1.182 + t[1:] - 1) - special.betaln(0.704, 1.182)),
                               rtol=1e-12)
    assert churn.sum() + model.survival(29) == pytest.approx(1.0, abs=1e-13)
    assert np.all(np.diff(r) > 0)  # the sorting effect: retention rises with tenure
    np.testing.assert_allclose(model.project(1000, 12).to_numpy(), 1000 * model.survival(np.arange(13)), rtol=1e-15)


# ---- the input forms: one likelihood ---------------------------------------------------------------------------


def _two_cohorts():
    """Two cohorts of different lengths, as the long table of a file."""
    rows = [("2021", t, v) for t, v in enumerate(_survivors(REGULAR))]
    rows += [("2022", t, v) for t, v in enumerate(_survivors(HIGH_END, years=4))]
    return pd.DataFrame(rows, columns=["cohort", "period", "alive"])


def test_every_input_form_gives_the_same_fit():
    long = _two_cohorts()
    wide = long.pivot(index="cohort", columns="period", values="alive")
    shares = wide.div(wide[0], axis=0)
    long_shares = long.assign(size=long.groupby("cohort")["alive"].transform("first"))
    long_shares = long_shares.assign(share=long_shares["alive"] / long_shares["size"]).drop(columns="alive")
    r, c, w = (np.concatenate(v) for v in zip(_rows(_survivors(REGULAR)), _rows(_survivors(HIGH_END, years=4))))
    customers = pd.DataFrame({"renewals": r, "churned": c, "count": w})
    inputs = [long, long.sample(frac=1.0, random_state=3), wide, wide.assign(size=wide[0]),
              (shares, {"size": wide[0]}), (shares.assign(size=wide[0]), {}), long_shares, customers]
    fits = []
    for item in inputs:
        data, kwargs = item if isinstance(item, tuple) else (item, {})
        fits.append(ShiftedBetaGeometricModel().fit(data, **kwargs))
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.params_, fits[0].params_, rtol=1e-9)
        assert fit.log_likelihood_ == pytest.approx(fits[0].log_likelihood_, rel=1e-12)
    # pooled: the sum of the cohorts' log-likelihoods at the same parameters
    params = tuple(fits[0].params_)
    each = sum(np.dot(w_, sbg.loglik(*params, r_, c_)) for r_, c_, w_ in
               (_rows(_survivors(REGULAR)), _rows(_survivors(HIGH_END, years=4))))
    assert fits[0].log_likelihood_ == pytest.approx(each, rel=1e-12)
    assert fits[0].result_.extra["cohorts"] == 2 and fits[0].result_.extra["periods"] == 7


def _contract_log(n_customers=3000, alpha=0.9, beta=2.5, months=("2020-01", "2020-02", "2020-03"), end="2021-06",
                  seed=7):
    """A subscription log: each customer pays on the last day of every month from his first through the month he
    leaves after (sBG: theta ~ Beta(alpha, beta), shifted-geometric tenure), through the month ``end``."""
    rng = np.random.default_rng(seed)
    theta = rng.beta(alpha, beta, n_customers)
    tenure = rng.geometric(theta) - 1  # renewals before leaving
    start = rng.integers(0, len(months), n_customers)
    first = pd.Period(months[0], "M").ordinal + start
    last = np.minimum(first + tenure, pd.Period(end, "M").ordinal)
    count = last - first + 1
    customer = np.repeat(np.arange(n_customers), count)
    month = np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
    stamps = pd.PeriodIndex.from_ordinals(month, freq="M").to_timestamp(how="end").normalize()
    return pd.DataFrame({"customer_id": customer, "timestamp": stamps})


def test_historical_cohort_retention_output_is_read_as_it_is():
    """On a contractual log (a payment each month while a customer, the log ending with a whole month) the
    activity table of cohort_retention is the alive table: both of its forms fit as cohorts_from_log's does."""
    log = _contract_log()
    counts = historical.cohort_retention(log, period="1M", counts=True)
    shares = historical.cohort_retention(log, period="1M")
    ours = cohorts_from_log(log, period="1M")
    pd.testing.assert_frame_equal(counts.reset_index(drop=True), ours.reset_index(drop=True), check_names=False)
    a = ShiftedBetaGeometricModel().fit(counts)
    b = ShiftedBetaGeometricModel().fit(shares, size=counts["size"])
    c = ShiftedBetaGeometricModel().fit(ours)
    assert a.time_unit_ == b.time_unit_ == c.time_unit_ == "M"  # from the cohorts' monthly PeriodIndex
    np.testing.assert_allclose(b.params_, a.params_, rtol=1e-9)
    np.testing.assert_allclose(c.params_, a.params_, rtol=1e-9)


def test_activity_that_rises_is_refused_naming_cohort_period_and_row():
    log = pd.DataFrame({"customer_id": [1, 1, 2, 2, 3], "timestamp": pd.to_datetime(
        ["2021-01-05", "2021-03-05", "2021-01-09", "2021-02-09", "2021-01-20"])})
    table = historical.cohort_retention(log, period="1M", counts=True)  # 3, 1, 1: customer 1 skipped February
    table.loc[:, 2] = [2.0]  # customers 1 and 2 active in March: a rise from 1 to 2
    with pytest.raises(ClvInputError) as info:
        ShiftedBetaGeometricModel().fit(table)
    text = str(info.value)
    assert "cohort 2021-01, period 2 (row 1): 2 customers alive after 1 at period 1" in text and "\n" not in text
    assert "cohorts_from_log" in text
    # counted through the last active period, customer 1 never left: 3, 2, 1
    ours = cohorts_from_log(log.assign(timestamp=log["timestamp"].where(log["customer_id"] != 3,
                                                                        pd.Timestamp("2021-01-20"))),
                            period="1M", observation_end="2021-03-31")
    assert ours.loc[:, [0, 1, 2]].to_numpy().tolist() == [[3.0, 2.0, 1.0]]


def test_cohorts_from_log_counts_whole_periods_only():
    log = _contract_log(n_customers=500, end="2021-06")
    cut = log[log["timestamp"] <= "2021-05-20"]  # May is not over: the table ends with April
    table = cohorts_from_log(cut, period="1M", observation_end="2021-05-20")
    assert table.attrs["last_period"] == "2021-04" and table.attrs["observation_end"] == "2021-05-20"
    full = cohorts_from_log(log, period="1M")
    # the counts through April are those of the whole log: later payments say nothing about them
    cols = list(range(16))
    a, b = table[cols].to_numpy(), full[cols].to_numpy()
    seen = ~np.isnan(a)
    assert seen.sum() == 16 + 15 + 14 and np.array_equal(a[seen], b[seen])
    assert 16 not in table.columns and not np.isnan(full.iloc[0][16])
    # customers first seen in the incomplete period are left out, and said so
    late = pd.concat([cut, pd.DataFrame({"customer_id": [-1], "timestamp": [pd.Timestamp("2021-05-02")]})])
    assert cohorts_from_log(late, period="1M").attrs["excluded_customers"] == 1


@pytest.mark.parametrize("data, kwargs, fragment", [
    (pd.DataFrame({"cohort": ["a", "a", "a"], "period": [0, 1, 3], "alive": [10, 5, 2]}), {},
     "cohort a: no row for period 2"),
    (pd.DataFrame({"cohort": ["a", "a"], "period": [0, 0], "alive": [10, 5]}), {}, "rows 1 and 2: cohort a, period 0 "
                                                                                   "given twice"),
    (pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1.5], "alive": [10, 5]}), {}, "column 'period', row 2"),
    (pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1], "alive": [10, -1]}), {},
     "cohort a, period 1 (row 2): -1.0 customers alive"),
    (pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1], "alive": [10, "x"]}), {}, "column 'alive', row 2"),
    (pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1], "alive": [0, 0]}), {}, "the cohort has no customers"),
    (pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1], "share": [1.0, 63.1], "size": [10, 10]}), {},
     "share 63.1: a share of the cohort is from 0 to 1 (divide percentages by 100)"),
    (pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1], "share": [1.0, 0.5], "size": [10, 12]}), {},
     "one size per cohort"),
    (pd.DataFrame({0: [1.0, 1.0], 1: [0.5, 0.4], 2: [0.3, np.nan]}), {}, "give the cohorts' sizes (size)"),
    (pd.DataFrame({0: [10.0], 1: [np.nan], 2: [3.0]}), {}, "period 1 (row 1): missing, but period 2 is given"),
    (pd.DataFrame({0: [10.0], "x": [3.0]}), {}, "column 'x': not a period"),
    (pd.DataFrame({"renewals": [1, 2.5], "churned": [0, 1]}), {}, "column 'renewals', row 2"),
    (pd.DataFrame({"renewals": [1, 2], "churned": [0, 2]}), {}, "column 'churned', row 2"),
    ([10, 8, 9], {}, "period 2 (row 1): 9 customers alive after 8"),
])
def test_bad_inputs_are_one_line_naming_where(data, kwargs, fragment):
    with pytest.raises(ClvInputError) as info:
        ShiftedBetaGeometricModel().fit(data, **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("alive, fragment", [
    ([100, 100, 100], "no customer left"),
    ([100, 0], "every customer left at his first renewal decision"),
    ([100, 60], "one renewal decision only"),
])
def test_data_that_identify_nothing_are_refused(alive, fragment):
    with pytest.raises(IdentificationError, match=fragment):
        ShiftedBetaGeometricModel().fit(alive)


def test_no_heterogeneity_runs_off_and_is_labelled():
    """A constant retention rate (every customer the same churn probability) has its supremum at alpha, beta ->
    infinity: the fit says so in its problems (not a silent answer)."""
    alive = 1e6 * 0.8 ** np.arange(8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ShiftedBetaGeometricModel().fit(alive)
    assert len(model.problems_) == 1 and "sBG maximum on a boundary: alpha, beta -> infinity" in model.problems_[0]
    assert "alpha/(alpha+beta) = 0.2 a period (the geometric model)" in model.problems_[0]
    assert model.params_["alpha"] / (model.params_["alpha"] + model.params_["beta"]) == pytest.approx(0.2, rel=1e-6)
    assert model.result_.extra["starts"] == len(sbg.START_SCALES)  # every start was tried


# ---- properties to extreme values -------------------------------------------------------------------------

PARAM = st.floats(min_value=math.log(1e-8), max_value=math.log(1e12)).map(lambda v: min(max(math.exp(v), 1e-8), 1e12))


@st.composite
def cohorts(draw):
    """A few cohorts: sizes from 2 to 1e12, never rising counts (whole numbers or not), 1 to 60 periods (a table
    whose period 0 is 1 everywhere is read as shares)."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        size = draw(st.floats(2.0, 1e12))
        steps = draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=60))
        alive = size * np.cumprod([1.0] + steps)
        if draw(st.booleans()):
            alive = np.floor(alive)
        out.append(alive)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alpha=PARAM, beta=PARAM, data=cohorts())
@example(alpha=1e-8, beta=1e12, data=[np.array([1e12, 1e12 - 1, 3.0])])
@example(alpha=1e12, beta=1e-8, data=[np.array([1.0, 1.0, 1.0, 0.0])])
@example(alpha=1e12, beta=1e12, data=[np.array([5.0, 4.0, 0.0])])
def test_likelihood_and_derivatives_are_finite_for_any_valid_counts(alpha, beta, data):
    r, c, w = (np.concatenate(v) for v in zip(*(_rows(a) for a in data)))
    keep = w > 0
    r, c, w = r[keep], c[keep], w[keep]
    rows = sbg.loglik(alpha, beta, r, c)
    assert np.all(np.isfinite(rows)) and np.all(rows <= 1e-12)
    ll, score, hess = sbg.loglik_derivatives((alpha, beta), r, c, w)
    assert math.isfinite(ll) and np.all(np.isfinite(score)) and np.all(np.isfinite(hess))
    assert ll == pytest.approx(float(np.dot(w, rows)), rel=1e-9, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(alpha=PARAM, beta=PARAM, n=st.integers(0, 10_000), d=st.floats(1e-3, 1e3),
       t=st.lists(st.integers(0, 2_000_000), min_size=1, max_size=5))
@example(alpha=1.0, beta=0.1095, n=7, d=0.0015, t=[0])  # where scipy's hyp2f1 is 33 % off
@example(alpha=1e-8, beta=1e12, n=0, d=1e-3, t=[2_000_000])
def test_predictions_are_finite_and_bounded(alpha, beta, n, d, t):
    model = _sbg(alpha, beta)
    s = model.survival(np.array(t))
    assert np.all(np.isfinite(s)) and np.all((0 <= s) & (s <= 1))
    rate = model.retention_rate(np.array(t) + 1)
    assert np.all(np.isfinite(rate)) and np.all((0 <= rate) & (rate <= 1))
    derl = float(model.derl(d, n))
    # between 0 and the value of a customer who never leaves, sum_k (1 + d)^-k = (1 + d) / d
    assert math.isfinite(derl) and 0 <= derl <= (1 + d) / d * (1 + 1e-12)
    # DERL = r(n + 1) (1 + DERL(n + 1) / (1 + d)): the next renewal, then the value from there
    again = float(model.retention_rate(n + 1)) * (1 + float(model.derl(d, n + 1)) / (1 + d))
    assert derl == pytest.approx(again, rel=1e-12, abs=1e-300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=cohorts())
def test_a_fit_on_any_valid_counts_is_finite_or_refused(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = ShiftedBetaGeometricModel().fit(pd.DataFrame(
                [list(a) + [np.nan] * (max(map(len, data)) - len(a)) for a in data]))
        except IdentificationError:
            return
    assert np.all(np.isfinite(model.params_)) and math.isfinite(model.log_likelihood_)
    assert np.all(model.params_ > 0)
    if not model.problems_:
        assert np.all(np.isfinite(model.result_.bse))
        low, high = sbg.PARAM_BOUNDS["alpha"]
        assert np.all((model.params_ >= low) & (model.params_ <= high))


# ---- recovery on simulated cohorts --------------------------------------------------------------------------


def _simulate(alpha, beta, sizes, periods, seed):
    """Cohorts drawn from the model: theta ~ Beta(alpha, beta) per customer, his renewals shifted-geometric."""
    rng = np.random.default_rng(seed)
    out = []
    for size, n in zip(sizes, periods):
        theta = rng.beta(alpha, beta, size)
        renewals = rng.geometric(theta) - 1
        out.append(np.array([(renewals >= t).sum() for t in range(n + 1)], dtype=float))
    return out


@pytest.mark.parametrize("alpha, beta", [(0.7, 1.2), (3.0, 12.0), (0.3, 4.0)])
def test_recovery_on_simulated_cohorts(alpha, beta):
    """Three cohorts of 20,000, 15,000 and 10,000 customers observed for 12, 8 and 4 periods: the estimates fall
    within 3 standard errors of the truth, and the standard errors are those of the repetitions (checked on 30
    samples: their spread matches the reported standard error within 35 %)."""
    estimates, errors = [], []
    for seed in range(30):
        data = _simulate(alpha, beta, (20_000, 15_000, 10_000), (12, 8, 4), seed)
        wide = pd.DataFrame([list(a) + [np.nan] * (13 - len(a)) for a in data])
        model = ShiftedBetaGeometricModel().fit(wide)
        assert model.problems_ == []
        estimates.append(model.params_.to_numpy())
        errors.append(model.result_.bse.to_numpy())
        if seed == 0:
            z = np.abs(model.params_.to_numpy() - (alpha, beta)) / model.result_.bse.to_numpy()
            assert np.all(z < 3), z
    estimates, errors = np.array(estimates), np.array(errors)
    assert np.all(np.abs(estimates.mean(axis=0) - (alpha, beta)) < 3 * errors.mean(axis=0) / math.sqrt(30))
    np.testing.assert_allclose(estimates.std(axis=0, ddof=1), errors.mean(axis=0), rtol=0.35)


def test_per_customer_rows_and_their_cohort_table_give_the_same_fit():
    rng = np.random.default_rng(11)
    theta = rng.beta(0.8, 2.0, 5000)
    renewals = np.minimum(rng.geometric(theta) - 1, 9)
    churned = (renewals < 9).astype(int)  # observed through 9 renewals
    customers = pd.DataFrame({"renewals": renewals, "churned": churned})
    counts = [float((renewals >= t).sum()) for t in range(10)]
    a = ShiftedBetaGeometricModel().fit(customers)
    b = ShiftedBetaGeometricModel().fit(counts)
    np.testing.assert_allclose(a.params_, b.params_, rtol=1e-9)
    predicted = a.predict(customers.iloc[:50], 0.1, margin=20.0)
    assert np.all(predicted.loc[customers.iloc[:50]["churned"] == 1].to_numpy() == 0)
    alive = customers.iloc[:50]["churned"] == 0
    np.testing.assert_allclose(predicted.loc[alive, "derl"], a.derl(0.1, customers.iloc[:50][alive]["renewals"]))
    np.testing.assert_allclose(predicted["residual_value"], 20.0 * predicted["derl"])


# ---- DERL -----------------------------------------------------------------------------------------------------


def _direct(alpha, beta, d, n, terms):
    """DERL as the discounted sum of the survival curve, sum_{t > n} S(t) / S(n) (1 + d)^-(t - n - 1), from S's
    product form (no hypergeometric function)."""
    t = np.arange(n + 1, n + 1 + terms)
    log_ratio = np.cumsum(np.log((beta + t - 1) / (alpha + beta + t - 1)))
    return float(np.sum(np.exp(log_ratio - (t - n - 1) * np.log1p(d))))


@pytest.mark.parametrize("alpha, beta", [(0.704, 1.182), (0.668, 3.806), (1.0, 0.1095), (3.0, 113.1), (0.05, 40.0),
                                         (250.0, 1e4), (2.0, 1e6)])
@pytest.mark.parametrize("d", [0.5, 0.1, 0.01, 0.0015])
def test_derl_closed_form_equals_the_discounted_sum_of_the_survival_curve(alpha, beta, d):
    n = np.array([0, 1, 7, 40])
    closed = _sbg(alpha, beta).derl(d, n)
    terms = int(60 / math.log1p(d)) + 10
    direct = np.array([_direct(alpha, beta, d, int(k), terms) for k in n])
    np.testing.assert_allclose(closed, direct, rtol=1e-10)
    # and the base's generic DERL (the sum of the model's own survival kernel, block by block) agrees
    generic = RetentionModel._derl.__func__(ShiftedBetaGeometricModel, (alpha, beta), d, n)
    np.testing.assert_allclose(closed, generic, rtol=1e-10)


def test_derl_equals_scipys_hypergeometric_function_where_that_is_accurate():
    """Away from z -> 1 and large parameters, scipy's hyp2f1 is accurate: FH 2010's eq. 6 written with it."""
    for alpha, beta, n, d in [(0.704, 1.182, 0, 0.1), (0.668, 3.806, 5, 0.1), (2.5, 7.0, 3, 0.25), (0.3, 0.4, 0, 1.0)]:
        expected = (beta + n) / (alpha + beta + n) * special.hyp2f1(1, beta + n + 1, alpha + beta + n + 1, 1 / (1 + d))
        assert float(_sbg(alpha, beta).derl(d, n)) == pytest.approx(expected, rel=1e-12)


def test_derl_against_mpmath_at_30_digits():
    """mpmath's 2F1 (30 digits) as an independent reference where it converges (second argument up to ~1e3),
    whole and tiny alpha, small discount rates included."""
    mp = pytest.importorskip("mpmath")
    worst = 0.0
    with mp.workdps(30):
        for alpha in (1.0, 2.0, 0.5, 1e-3, 40.0):
            for beta in (1e-4, 0.1095, 100.0, 1000.0):
                for d in (0.0015, 0.1, 2.0):
                    for n in (0, 7):
                        b = mp.mpf(beta) + n
                        reference = b / (alpha + b) * mp.hyp2f1(1, b + 1, alpha + b + 1, 1 / (1 + mp.mpf(d)))
                        worst = max(worst, abs(float(sbg.derl(alpha, beta, d, n)) / float(reference) - 1))
    assert worst < 1e-12


def test_expected_remaining_lifetime_is_derl_without_discounting():
    model = _sbg(3.5, 2.0)
    n = np.array([0, 3, 10])
    np.testing.assert_allclose(model.expected_remaining_lifetime(n), (2.0 + n) / 2.5, rtol=1e-15)
    # DERL tends to it as d -> 0 (the gap is of the order of d times the lifetime's second moment)
    np.testing.assert_allclose(model.derl(1e-6, n), (2.0 + n) / 2.5, rtol=1e-4)
    assert np.all(model.derl(1e-6, n) < (2.0 + n) / 2.5)
    # alpha <= 1: S(t) falls like t^-alpha, the sum diverges
    assert np.all(np.isinf(_sbg(0.704, 1.182).expected_remaining_lifetime(n)))


def test_derl_units_margin_and_rates():
    model = _sbg(0.704, 1.182, unit="M")
    assert float(model.derl("12.682503%/Y", 0)) == pytest.approx(float(model.derl(0.01, 0)), rel=1e-6)
    assert float(model.expected_residual_value(25.0, 0.01, 3)) == pytest.approx(25.0 * float(model.derl(0.01, 3)))
    for bad in (0.0, -0.1, float("nan"), 1e-7):
        with pytest.raises(ClvInputError, match="discount_rate"):
            model.derl(bad)
    with pytest.raises(ClvInputError, match="renewals 1.5: must be a whole number"):
        model.derl(0.1, 1.5)
    unitless = ShiftedBetaGeometricModel.from_params({"alpha": 0.7, "beta": 1.2})
    with pytest.raises(ClvInputError, match="no time unit"):
        unitless.derl("10%/Y")


# ---- the model file -------------------------------------------------------------------------------------------


def test_model_file_round_trip(paper, tmp_path):
    model = paper["regular"]
    path = model.save(tmp_path / "sbg.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "clv-forecast-retention-model" and doc["kind"] == "sbg" and doc["time_unit"] == "Y"
    again = RetentionModel.load(path)
    assert type(again) is ShiftedBetaGeometricModel and again.get_params() == model.get_params()
    pd.testing.assert_series_equal(again.params_, model.params_, check_exact=True)
    np.testing.assert_array_equal(again.result_.cov, model.result_.cov)
    t = np.arange(20)
    np.testing.assert_array_equal(again.survival(t), model.survival(t))
    np.testing.assert_array_equal(again.derl("10%/Y", t), model.derl("10%/Y", t))
    assert again.log_likelihood_ == model.log_likelihood_ and again.summary() == model.summary()
    # the curve of a loaded model needs its data (the model file holds none)
    with pytest.raises(ClvInputError, match="give a cohort table"):
        again.curve()
    pd.testing.assert_frame_equal(again.curve(_survivors(REGULAR), time_unit="Y"), model.curve())


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d.update(format="x"), "not a clv-forecast retention model file"),
    (lambda d: d.update(kind="bdw"), 'kind = "bdw": unknown retention model'),
    (lambda d: d["params"].update(alpha=-1), "params.alpha = -1: must be a positive finite number"),
    (lambda d: d["params"].update(beta=1e13), "params.beta = 10000000000000.0: above 1e+12"),
    (lambda d: d.update(format_version=2), "format_version = 2"),
])
def test_a_bad_model_file_is_one_line_naming_the_field(paper, tmp_path, change, fragment):
    path = paper["high end"].save(tmp_path / "m.json")
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ClvInputError) as info:
        RetentionModel.load(path)
    assert fragment in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_discovery_lists_the_retention_role():
    assert "retention" in estimators.ROLES and estimators.available("retention") == ["sbg"]
    cls = estimators.get("sbg", "retention")
    assert cls is ShiftedBetaGeometricModel and cls.name == "sBG" and cls.role == "retention"
    assert issubclass(cls, Estimator) and cls.inputs == ("renewals", "churned")


# ---- the command line -----------------------------------------------------------------------------------------


@pytest.fixture
def paper_csv(tmp_path):
    rows = [(name, t, v) for name, p in SEGMENTS.items() for t, v in enumerate(_survivors(p))]
    path = tmp_path / "cohorts.csv"
    pd.DataFrame(rows, columns=["cohort", "period", "alive"]).to_csv(path, index=False)
    return path


def _json(capsys, args):
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_fits_each_cohort_of_a_table(paper_csv, capsys):
    out = _json(capsys, ["retention", "--cohorts", str(paper_csv), "--period", "Y", "--by-cohort", "--json",
                         "--renewals", "0", "--renewals", "7", "--margin", "30"])
    assert out["time_unit"] == "Y" and [f["cohort"] for f in out["fits"]] == ["regular", "high end"]
    for fit in out["fits"]:
        alpha, beta = PUBLISHED[fit["cohort"]]
        assert round(fit["alpha"], 3) == alpha and round(fit["beta"], 3) == beta and fit["reliable"]
        model = _sbg(fit["alpha"], fit["beta"])
        assert fit["bse"]["alpha"] > 0 and len(fit["curve"]) == 13  # years 0..7 and 5 projected
        assert [c["share_alive"] for c in fit["curve"][:8]] == pytest.approx(
            np.array(_survivors(SEGMENTS[fit["cohort"]])) / 1000)
        assert fit["curve"][12]["share_alive"] is None
        assert fit["curve"][12]["projected_share"] == pytest.approx(float(model.survival(12)), rel=1e-12)
        life = {row["renewals"]: row for row in fit["lifetime"]}
        assert life[7]["derl"] == pytest.approx(float(model.derl(0.1, 7)), rel=1e-12)
        assert life[7]["residual_value"] == pytest.approx(30 * life[7]["derl"], rel=1e-12)
        assert life[7]["expected_remaining_lifetime"] is None  # infinite: alpha <= 1
        assert life[0]["p_renew"] == pytest.approx(beta / (alpha + beta), abs=1e-3)


def test_cli_pooled_fit_text_and_output(paper_csv, tmp_path, capsys):
    target = tmp_path / "projection.parquet"
    assert main(["retention", "--cohorts", str(paper_csv), "--period", "Y", "--output", str(target),
                 "--periods", "12", "--discount-rate", "0.1"]) == 0
    text = capsys.readouterr().out
    pooled = ShiftedBetaGeometricModel().fit(pd.read_csv(paper_csv, dtype={"cohort": str}), time_unit="Y")
    assert f"alpha = {pooled.params_['alpha']:.6g}" in text and "retention curve, projected vs actual" in text
    assert "infinite (alpha <= 1)" in text and f"written to {target}" in text
    table = pd.read_parquet(target)
    assert list(table.columns) == ["cohort", "period", "size", "alive", "projected", "survival", "retention",
                                   "projected_retention", "fit"]
    assert len(table) == 2 * 13 and set(table["fit"]) == {"pooled"}
    np.testing.assert_allclose(table["projected"], table["size"] * pooled.survival(table["period"]), rtol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohorts.csv", "projection.parquet"]  # no temporary file


def test_cli_fits_a_transaction_log(tmp_path, capsys):
    log = _contract_log(n_customers=2000)
    path = tmp_path / "payments.csv"
    log.rename(columns={"customer_id": "subscriber", "timestamp": "paid"}).to_csv(path, index=False)
    out = _json(capsys, ["retention", "-t", str(path), "--customer-col", "subscriber", "--date-col", "paid",
                         "--period", "M", "--json"])
    model = ShiftedBetaGeometricModel().fit(cohorts_from_log(log, period="1M"))
    fit = out["fits"][0]
    assert out["input"] == "transaction log" and out["time_unit"] == "M" and fit["cohort"] == "pooled"
    assert fit["alpha"] == pytest.approx(model.params_["alpha"], rel=1e-9)
    assert fit["beta"] == pytest.approx(model.params_["beta"], rel=1e-9)
    assert out["discount_rate_per_period"] == pytest.approx(1.1 ** (1 / 12) - 1, rel=1e-12)  # 10%/Y monthly
    assert [c["cohort"] for c in out["cohorts"]] == ["2020-01", "2020-02", "2020-03"]


def _error(capsys, args, code=2):
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_cli_errors_are_one_line(paper_csv, tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert "nope.csv: file not found" in _error(capsys, ["retention", "--cohorts", str(missing)])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"cohort": ["a", "a", "a"], "period": [0, 1, 2], "alive": [10, 4, 6]}).to_csv(bad, index=False)
    err = _error(capsys, ["retention", "--cohorts", str(bad), "--period", "Y"])
    assert f"{bad}: cohort a, period 2 (row 3): 6 customers alive after 4 at period 1" in err
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"cohort": ["a"], "period": [0], "customers": [10]}).to_csv(wrong, index=False)
    assert f"{wrong}: column 'alive' not found" in _error(capsys, ["retention", "--cohorts", str(wrong)])
    assert "give either --cohorts" in _error(capsys, ["retention"])
    assert "not both" in _error(capsys, ["retention", "--cohorts", str(paper_csv), "-t", str(paper_csv)])
    err = _error(capsys, ["retention", "--cohorts", str(paper_csv)])
    assert "--discount-rate 10%/Y needs the length of a period: give --period" in err
    err = _error(capsys, ["retention", "--cohorts", str(paper_csv), "--period", "Y", "--output",
                          str(tmp_path / "x.xlsx")])
    assert "unknown output type" in err
    err = _error(capsys, ["retention", "--cohorts", str(paper_csv), "--output", str(paper_csv)])
    assert "--output and --cohorts are the same file" in err
    err = _error(capsys, ["retention", "--cohorts", str(paper_csv), "--date-col", "x"])
    assert "--date-col: not used with --cohorts" in err
    err = _error(capsys, ["retention", "--cohorts", str(paper_csv), "--discount-rate", "0"])
    assert "--discount-rate 0.0: must be at least 1e-06 per period" in err


def test_cli_data_that_identify_nothing_exit_3(tmp_path, capsys):
    short = tmp_path / "short.csv"
    pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1], "alive": [100, 60]}).to_csv(short, index=False)
    err = _error(capsys, ["retention", "--cohorts", str(short), "--period", "Y"], code=3)
    assert "one renewal decision only" in err
    # by cohort: a cohort that cannot be fitted is skipped and said so; the others are fitted
    mixed = tmp_path / "mixed.csv"
    rows = [("a", t, v) for t, v in enumerate(_survivors(REGULAR))] + [("b", 0, 100), ("b", 1, 60)]
    pd.DataFrame(rows, columns=["cohort", "period", "alive"]).to_csv(mixed, index=False)
    out = _json(capsys, ["retention", "--cohorts", str(mixed), "--by-cohort", "--json", "--discount-rate", "0.1"])
    assert [f["cohort"] for f in out["fits"]] == ["a"] and out["skipped"][0]["cohort"] == "b"
    assert "one renewal decision only" in out["skipped"][0]["reason"]


def test_cli_an_unreliable_fit_exits_3_and_writes_nothing(tmp_path, capsys):
    flat = tmp_path / "flat.csv"
    alive = np.round(1e6 * 0.8 ** np.arange(8))
    pd.DataFrame({"cohort": "c", "period": range(8), "alive": alive}).to_csv(flat, index=False)
    target = tmp_path / "p.csv"
    assert main(["retention", "--cohorts", str(flat), "--discount-rate", "0.1", "--output", str(target)]) == 3
    captured = capsys.readouterr()
    assert "warning: unreliable fit" in captured.out and "not reliable" in captured.err
    assert captured.err.count("\n") == 1 and not target.exists()
