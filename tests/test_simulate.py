"""Tests for clv_forecast.simulate: structure, reproducibility and BG/NBD / Gamma-Gamma moments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from scipy.special import betaln, gammaln, hyp2f1

from clv_forecast.errors import ClvInputError
from clv_forecast.simulate import simulate, simulate_customers

CDNOW = dict(r=0.24, alpha=4.41, a=0.79, b=2.43)
SPEND = dict(p=6.25, q=3.74, v=15.44)
# Everyone born at 2020-01-01 00:00, observed for exactly 39 weeks (273 days).
SAME_BIRTH = dict(start="2020-01-01", cohort_length="0D", end="2020-09-30")
T_WEEKS = 39.0


def bgnbd_mean(t, r, alpha, a, b):
    """E[X(t)], Fader, Hardie & Lee (2005) eq. (9); needs a > 1."""
    z = t / (alpha + t)
    return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))


def bgnbd_pmf(x, t, r, alpha, a, b):
    """P(X(t) = x), Fader, Hardie & Lee (2005) eq. (8)."""
    x = np.asarray(x)
    lg = lambda j: gammaln(r + j) - gammaln(r) - gammaln(j + 1)  # noqa: E731
    log_a = np.log(alpha / (alpha + t))
    log_z = np.log(t / (alpha + t))
    first = np.exp(betaln(a, b + x) - betaln(a, b) + lg(x) + r * log_a + x * log_z)
    out = []
    for xi, f in zip(np.atleast_1d(x), np.atleast_1d(first)):
        if xi == 0:
            out.append(f)
            continue
        j = np.arange(xi)
        partial = np.exp(r * log_a + lg(j) + j * log_z).sum()
        out.append(f + np.exp(betaln(a + 1, b + xi - 1) - betaln(a, b)) * (1 - partial))
    return np.array(out)


def repeat_counts(df: pd.DataFrame, n: int) -> np.ndarray:
    return np.bincount(df["customer_id"].to_numpy(), minlength=n) - 1


# ----------------------------------------------------------------------------- structure


def test_columns_dtypes_sorting():
    n = 2000
    df = simulate(n, **CDNOW, **SPEND, seed=0)
    assert list(df.columns) == ["customer_id", "timestamp", "amount"]
    assert df["customer_id"].dtype == np.int64
    assert df["timestamp"].dtype in (np.dtype("datetime64[ns]"), np.dtype("datetime64[us]"))
    assert df["amount"].dtype == np.float64
    assert (df["amount"] > 0).all()
    assert df.index.equals(pd.RangeIndex(len(df)))
    assert np.array_equal(np.unique(df["customer_id"]), np.arange(n))
    ids = df["customer_id"].to_numpy()
    ts = df["timestamp"].to_numpy()
    assert (np.diff(ids) >= 0).all()
    same = ids[1:] == ids[:-1]
    assert (ts[1:][same] >= ts[:-1][same]).all()
    assert len(df) > 1.5 * n  # CDNOW-like customers do come back

    no_spend = simulate(10, **CDNOW, seed=0)
    assert list(no_spend.columns) == ["customer_id", "timestamp"]


def test_reproducible_and_seed_dependent():
    a = simulate(3000, **CDNOW, **SPEND, seed=42)
    b = simulate(3000, **CDNOW, **SPEND, seed=42)
    c = simulate(3000, **CDNOW, **SPEND, seed=43)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) != len(c) or not a["timestamp"].equals(c["timestamp"])
    assert not np.allclose(a["amount"].to_numpy()[:100], c["amount"].to_numpy()[:100])
    # a Generator works as seed too
    g1 = simulate(50, **CDNOW, seed=np.random.default_rng(5))
    g2 = simulate(50, **CDNOW, seed=np.random.default_rng(5))
    pd.testing.assert_frame_equal(g1, g2)


def test_spend_does_not_change_purchase_times():
    a = simulate(3000, **CDNOW, seed=7)
    b = simulate(3000, **CDNOW, **SPEND, seed=7)
    pd.testing.assert_frame_equal(a, b[["customer_id", "timestamp"]])


def test_transactions_within_birth_and_end():
    n = 5000
    kw = dict(**CDNOW, **SPEND, start="2020-03-01 12:00", cohort_length="90D", end="2020-12-31", seed=3)
    df = simulate(n, **kw)
    cust = simulate_customers(n, **kw)
    start, end = pd.Timestamp("2020-03-01 12:00"), pd.Timestamp("2020-12-31")
    assert list(cust.columns) == ["customer_id", "birth", "lambda", "dropout", "nu", "T", "n_repeat", "alive"]
    assert cust["birth"].between(start, start + pd.Timedelta(days=90)).all()
    assert df["timestamp"].between(start, end).all()
    birth = cust["birth"].to_numpy()[df["customer_id"].to_numpy()]
    assert (df["timestamp"].to_numpy() >= birth).all()
    first = df.groupby("customer_id", sort=True)["timestamp"].first()
    assert np.array_equal(first.to_numpy(), cust["birth"].to_numpy())
    assert np.array_equal(repeat_counts(df, n), cust["n_repeat"].to_numpy())
    # T is the window from birth to end in weeks (up to the 1 s rounding of birth)
    t_weeks = (end - cust["birth"]).dt.total_seconds().to_numpy() / (7 * 86400)
    assert np.allclose(cust["T"].to_numpy(), t_weeks, atol=1e-5)
    # customers who dropped out did so after a repeat purchase
    assert (cust.loc[~cust["alive"], "n_repeat"] >= 1).all()


def test_timestamp_resolution():
    day = simulate(500, **CDNOW, timestamp_resolution="D", seed=1)
    assert (day["timestamp"] == day["timestamp"].dt.normalize()).all()
    ns = simulate(500, **CDNOW, timestamp_resolution="ns", seed=1)
    assert ns["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert (ns["timestamp"].dt.nanosecond != 0).any()
    # same draws, different rounding
    assert (ns["timestamp"] - day["timestamp"]).abs().max() <= pd.Timedelta(hours=12)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    r=st.floats(0.05, 5),
    alpha=st.floats(0.05, 50),
    a=st.floats(0.05, 5),
    b=st.floats(0.05, 5),
    cohort_days=st.integers(0, 60),
    extra_days=st.integers(1, 400),
    seed=st.integers(0, 2**32),
)
def test_invariants_property(n, r, alpha, a, b, cohort_days, extra_days, seed):
    start = pd.Timestamp("2021-05-03")
    end = start + pd.Timedelta(days=cohort_days + extra_days)
    kw = dict(r=r, alpha=alpha, a=a, b=b, start=start, cohort_length=f"{cohort_days}D", end=end, seed=seed)
    df = simulate(n, **kw)
    cust = simulate_customers(n, **kw)
    assert np.array_equal(repeat_counts(df, n), cust["n_repeat"].to_numpy())
    assert df["timestamp"].between(start, end).all()
    birth = cust["birth"].to_numpy()[df["customer_id"].to_numpy()]
    assert (df["timestamp"].to_numpy() >= birth).all()
    assert (cust["birth"] <= start + pd.Timedelta(days=cohort_days)).all()


# ----------------------------------------------------------------------------- distributions


def test_mean_repeat_purchases_matches_bgnbd():
    params = dict(r=0.24, alpha=4.41, a=1.8, b=2.43)
    n = 200_000
    x = repeat_counts(simulate(n, **params, **SAME_BIRTH, seed=11), n)
    expected = bgnbd_mean(T_WEEKS, **params)
    se = x.std(ddof=1) / np.sqrt(n)
    assert abs(x.mean() - expected) < 4 * se, (x.mean(), expected, se)


def test_time_unit_scales_lambda():
    # lambda per day = lambda per week / 7  <=>  alpha_day = 7 * alpha_week
    params = dict(r=0.24, alpha=4.41 * 7, a=1.8, b=2.43)
    n = 100_000
    x = repeat_counts(simulate(n, **params, **SAME_BIRTH, time_unit="D", seed=12), n)
    expected = bgnbd_mean(T_WEEKS, r=0.24, alpha=4.41, a=1.8, b=2.43)
    se = x.std(ddof=1) / np.sqrt(n)
    assert abs(x.mean() - expected) < 4 * se
    # the test has power: reading the weekly alpha as per day would be far off
    assert abs(bgnbd_mean(T_WEEKS * 7, **{**params, "alpha": 4.41}) - expected) > 40 * se


def test_repeat_count_distribution_matches_bgnbd_pmf():
    n = 200_000
    x = repeat_counts(simulate(n, **CDNOW, **SAME_BIRTH, seed=13), n)
    top = 8
    pmf = bgnbd_pmf(np.arange(top), T_WEEKS, **CDNOW)
    expected = n * np.append(pmf, 1 - pmf.sum())
    observed = np.bincount(np.minimum(x, top), minlength=top + 1)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, df=top) > 1e-3, (observed, expected.round())
    # P(X(t) = 0) = (alpha / (alpha + t))^r: no dropout at birth
    p0 = (CDNOW["alpha"] / (CDNOW["alpha"] + T_WEEKS)) ** CDNOW["r"]
    assert pmf[0] == pytest.approx(p0)
    frac0 = (x == 0).mean()
    assert abs(frac0 - p0) < 4 * np.sqrt(p0 * (1 - p0) / n)


def test_pmf_helper_consistent_with_mean():
    params = dict(r=0.24, alpha=4.41, a=1.8, b=2.43)
    xs = np.arange(3000)
    pmf = bgnbd_pmf(xs, T_WEEKS, **params)
    assert pmf.sum() == pytest.approx(1, abs=1e-6)
    assert (xs * pmf).sum() == pytest.approx(bgnbd_mean(T_WEEKS, **params), rel=1e-3)


def test_alive_fraction():
    # P(alive at t) = E_p[(alpha / (alpha + p t))^r], p ~ Beta(a, b)
    n = 100_000
    cust = simulate_customers(n, **CDNOW, **SAME_BIRTH, seed=14)
    r, alpha, a, b = CDNOW.values()
    p_alive, _ = integrate.quad(lambda p: (alpha / (alpha + p * T_WEEKS)) ** r * stats.beta.pdf(p, a, b), 0, 1)
    got = cust["alive"].mean()
    assert abs(got - p_alive) < 4 * np.sqrt(p_alive * (1 - p_alive) / n)
    assert np.allclose(cust["T"], T_WEEKS)


def test_repeat_purchase_times():
    n = 100_000
    kw = dict(**CDNOW, **SAME_BIRTH, timestamp_resolution="us", seed=20)
    df = simulate(n, **kw)
    cust = simulate_customers(n, **kw)
    weeks = (df["timestamp"] - pd.Timestamp("2020-01-01")).dt.total_seconds().to_numpy() / (7 * 86400)
    ids = df["customer_id"].to_numpy()
    is_repeat = np.r_[False, ids[1:] == ids[:-1]]
    # Alive customers made all N arrivals of their process: given N they are iid uniform on (0, t).
    alive_rep = is_repeat & cust["alive"].to_numpy()[ids]
    assert alive_rep.sum() > 10_000
    assert stats.kstest(weeks[alive_rep], stats.uniform(0, T_WEEKS).cdf).pvalue > 1e-3
    # First repeat (no dropout can precede it): P(t1 <= s) = 1 - (alpha / (alpha + s))^r, given t1 <= t.
    first_rep = is_repeat & ~np.r_[False, is_repeat[:-1]]
    r, alpha = CDNOW["r"], CDNOW["alpha"]
    cdf = lambda s: 1 - (alpha / (alpha + s)) ** r  # noqa: E731
    assert stats.kstest(weeks[first_rep], lambda s: cdf(s) / cdf(T_WEEKS)).pvalue > 1e-3


def test_latent_draw_distributions():
    n = 50_000
    cust = simulate_customers(n, **CDNOW, **SPEND, seed=15)
    r, alpha, a, b = CDNOW.values()
    assert stats.kstest(cust["lambda"], stats.gamma(r, scale=1 / alpha).cdf).pvalue > 1e-3
    assert stats.kstest(cust["dropout"], stats.beta(a, b).cdf).pvalue > 1e-3
    assert stats.kstest(cust["nu"], stats.gamma(SPEND["q"], scale=1 / SPEND["v"]).cdf).pvalue > 1e-3
    start = pd.Timestamp("2020-01-01")
    weeks = (cust["birth"] - start).dt.total_seconds() / (7 * 86400)
    assert stats.kstest(weeks, stats.uniform(0, 12).cdf).pvalue > 1e-3


def test_mean_spend_matches_gamma_gamma():
    p, q, v = 6.25, 6.0, 15.44
    n = 200_000
    df = simulate(n, **CDNOW, p=p, q=q, v=v, seed=16)
    first = df.groupby("customer_id", sort=True)["amount"].first().to_numpy()  # one per customer: iid
    expected = p * v / (q - 1)
    assert abs(first.mean() - expected) < 4 * first.std(ddof=1) / np.sqrt(n)
    # transaction-weighted mean has the same expectation (nu independent of lambda, p)
    assert df["amount"].mean() == pytest.approx(expected, rel=0.02)


def test_amount_given_nu_is_gamma_p():
    n = 20_000
    kw = dict(**CDNOW, **SPEND, seed=17)
    df = simulate(n, **kw)
    nu = simulate_customers(n, **kw)["nu"].to_numpy()
    scaled = df["amount"].to_numpy() * nu[df["customer_id"].to_numpy()]  # ~ Gamma(p, 1) for every row
    assert stats.kstest(scaled[:50_000], stats.gamma(SPEND["p"]).cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------- extremes


def test_huge_rate_with_certain_dropout():
    # lambda ~ 1e14 per week, lambda * T beyond int64-safe Poisson sampling; p ~ 1 so K = 1
    df = simulate(1000, r=1.0, alpha=1e-14, a=1e4, b=1e-4, seed=18)
    counts = repeat_counts(df, 1000)
    assert counts.max() <= 1 and counts.mean() > 0.99


def test_too_many_transactions_refused():
    with pytest.raises(ClvInputError, match="would generate about"):
        simulate(1000, r=1.0, alpha=1e-14, a=1e-4, b=1e4, seed=19)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_customers=0), r"n_customers=0 must be an integer >= 1"),
        (dict(n_customers=2.5), r"n_customers=2.5 must be an integer >= 1"),
        (dict(r=-1.0), r"r=-1.0 must be a positive finite number"),
        (dict(alpha=float("inf")), r"alpha=inf must be a positive finite number"),
        (dict(a=0), r"a=0 must be a positive finite number"),
        (dict(b=float("nan")), r"b=nan must be a positive finite number"),
        (dict(b="2"), r"b='2' must be a positive finite number"),
        (dict(p=1.0, q=2.0), r"spend needs all of p, q, v; missing v"),
        (dict(p=1.0, q=-2.0, v=1.0), r"q=-2.0 must be a positive finite number"),
        (dict(end="2020-03-01"), r"end=2020-03-01 00:00:00 must be after start \+ cohort_length"),
        (dict(start="2020-01-01", cohort_length="1W", end="2020-01-08"), r"must be after start \+ cohort_length"),
        (dict(cohort_length=12), r"cohort_length: duration 12: a bare number has no unit"),
        (dict(time_unit="fortnight"), r"unknown unit"),
        (dict(start="not a date"), r"start='not a date' is not a date"),
        (dict(start="2020-01-01 00:00+01:00"), r"must be time-zone naive"),
        (dict(timestamp_resolution="bogus"), r"timestamp_resolution='bogus' not understood"),
    ],
)
def test_validation(kwargs, message):
    args = dict(n_customers=10, **CDNOW)
    args.update(kwargs)
    n = args.pop("n_customers")
    with pytest.raises(ClvInputError, match=message) as info:
        simulate(n, **args)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("simulate")


def test_timestamp_resolution_uses_the_time_unit_grammar():
    tx = simulate(200, **CDNOW, timestamp_resolution="15min", seed=4)
    minutes = (tx["timestamp"] - tx["timestamp"].dt.normalize()).dt.total_seconds() / 60
    assert (minutes % 15 == 0).all()
