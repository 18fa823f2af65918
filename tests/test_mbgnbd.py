"""MBG/NBD (Batislam, Denizel & Filiztekin 2007; ``clv_forecast/estimators/purchases/mbgnbd.py``).

* reference values on CDNOW (BTYDplus 1.2.0, shared/docs/reference-values.md "MBG/NBD and NBD on CDNOW");
* the same model in days, weeks and months;
* parity with lifetimes' ModifiedBetaGeoFitter (parameters at its optimum, every prediction at equal parameters);
* the formulas against customers simulated from the model's story (no formula of the module is used to draw them);
* boundaries: ``a -> 0`` is the NBD (named, the nested model given), the other limits are never a clean fit;
* hypothesis: no NaN/inf for any valid history and parameters over the whole ``param_bounds``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import optimize, special

from clv_forecast import ClvModel
from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample
from clv_forecast.errors import UnreliableFitError
from clv_forecast.estimators import available, get
from clv_forecast.estimators.base import Estimator
from clv_forecast.estimators.purchases import bgnbd, constant_dropout, mbgnbd, nbd
from clv_forecast.estimators.purchases.mbgnbd import ModifiedBetaGeoModel
from clv_forecast.estimators.purchases.nbd import NBDModel
from clv_forecast.rfm import summarize

BTYDPLUS = {"r": 0.5248436, "alpha": 6.1830928, "a": 0.8913878, "b": 1.6140483}
BTYDPLUS_LL = -9582.1357
BTYDPLUS_NBD_LL = -9763.6576
LIFETIMES_CONSTANTS = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}  # its test_params_out_is_close_to_BTYDplus
NAMES = list(BTYDPLUS)
DAYS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12}


def _columns(rfm):
    return tuple(rfm[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))


@pytest.fixture(scope="module")
def mbg(cdnow_rfm) -> ModifiedBetaGeoModel:
    return ModifiedBetaGeoModel().fit(cdnow_rfm)


# ------------------------------------------------------------------------------------------------ the model


def test_discovered_as_a_purchase_model():
    assert "mbgnbd" in available("purchases")
    cls = get("mbgnbd", "purchases")
    assert cls is ModifiedBetaGeoModel and cls.name == "MBG/NBD" and cls.param_names == ("r", "alpha", "a", "b")
    assert set(cls.param_names) - set(cls.scale_free_params) == {"alpha"}  # only alpha carries the time unit
    assert cls.boundaries == {"nbd": "a -> 0: the data show no dropout"}


def test_mixture_of_bgnbd_identity():
    """Per customer L_MBG(a, b) = b/(a+b) L_BG(a, b+1) + [x = 0] a/(a+b): the direct form (paper) against
    BG/NBD's own likelihood, at parameters far from each other."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 40, 300).astype(float)
    x[:60] = 0
    T = rng.uniform(0.5, 80.0, 300)
    t_x = np.where(x > 0, T * rng.uniform(0.01, 1.0, 300), 0.0)
    points = [(0.52, 6.2, 0.89, 1.6), (3.0, 0.3, 40.0, 2.0), (0.05, 200.0, 0.01, 1e6), (2.0, 1.0, 1e-6, 1e-7)]
    for r, alpha, a, b in points:
        direct = mbgnbd.loglik(r, alpha, a, b, x, t_x, T)
        via_bg = np.logaddexp(np.log(b / (a + b)) + bgnbd.loglik(r, alpha, a, b + 1.0, x, t_x, T),
                              np.where(x == 0, np.log(a / (a + b)), -np.inf))
        np.testing.assert_allclose(direct, via_bg, rtol=1e-12, atol=1e-12)


def test_customers_without_repeat_purchase_can_be_dead():
    """Unlike BG/NBD, x = 0 does not mean alive: P(alive) = b/(a+b) (alpha/(alpha+T))^r over itself plus a/(a+b),
    falling with T; for repeat buyers it is BG/NBD's at b + 1."""
    r, alpha, a, b = BTYDPLUS.values()
    T = np.array([0.0, 1.0, 10.0, 39.0, 1e3])
    alive_part = b / (a + b) * (alpha / (alpha + T)) ** r
    expected = alive_part / (alive_part + a / (a + b))
    got = mbgnbd.p_alive(np.zeros(5), np.zeros(5), T, r, alpha, a, b)
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    assert np.all(np.diff(got) < 0) and got[0] == pytest.approx(b / (a + b), rel=1e-15)
    x, t_x, T = np.array([1.0, 5.0, 30.0]), np.array([3.0, 20.0, 38.0]), np.array([39.0, 39.0, 39.0])
    np.testing.assert_allclose(mbgnbd.p_alive(x, t_x, T, r, alpha, a, b),
                               bgnbd.p_alive(x, t_x, T, r, alpha, a, b + 1.0), rtol=1e-14)


# ------------------------------------------------------------------------------------------------ CDNOW


def test_log_likelihood_at_the_btydplus_estimates(cdnow_rfm):
    x, t_x, T = _columns(cdnow_rfm)
    params = list(BTYDPLUS.values())
    assert mbgnbd.loglik(*params, x, t_x, T).sum() == pytest.approx(BTYDPLUS_LL, abs=5e-5)
    total, _, _ = mbgnbd.loglik_derivatives(params, x, t_x, T)
    assert total == pytest.approx(BTYDPLUS_LL, abs=5e-5)


def test_fit_reaches_the_btydplus_maximum(mbg, cdnow_rfm):
    """r and alpha agree to 2e-6; a and b are weakly determined (the reference notes that other optimisers land
    within 1e-4), and our log-likelihood is not below the one at BTYDplus' point."""
    assert mbg.result_.converged and mbg.problems_ == [] and mbg.result_.boundary is None
    assert mbg.result_.extra["starts"] == 1 and mbg.time_unit_ == "W" and mbg.n_customers_ == 2357
    for name in ("r", "alpha"):
        assert mbg.params_[name] == pytest.approx(BTYDPLUS[name], rel=2e-6)
    for name in ("a", "b"):
        assert mbg.params_[name] == pytest.approx(BTYDPLUS[name], rel=1e-4)
    for name, value in LIFETIMES_CONSTANTS.items():
        assert mbg.params_[name] == pytest.approx(value, abs=5e-4)
    assert mbg.log_likelihood_ == pytest.approx(BTYDPLUS_LL, abs=5e-5)
    x, t_x, T = _columns(cdnow_rfm)
    assert mbg.log_likelihood_ >= mbgnbd.loglik(*BTYDPLUS.values(), x, t_x, T).sum()
    _, score, _ = mbgnbd.loglik_derivatives(mbg.params_.to_numpy(), x, t_x, T)
    assert np.max(np.abs(score * mbg.params_.to_numpy())) < 1e-4  # score on the log scale ~ 0


def test_standard_errors_from_the_analytic_hessian(mbg, cdnow_rfm):
    cov = mbg.result_.cov_params().to_numpy()
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    se = mbg.result_.bse.to_numpy()
    assert np.all(np.isfinite(se) & (se > 0))
    # the inverse of the numerical Hessian (the base's central differences of the per-row log-likelihood)
    _, _, numeric = Estimator._loglik_derivatives.__func__(ModifiedBetaGeoModel, mbg.params_.to_numpy(),
                                                          *_columns(cdnow_rfm))
    np.testing.assert_allclose(se, np.sqrt(np.diag(np.linalg.inv(-numeric))), rtol=1e-4)
    corr_ab = cov[2, 3] / math.sqrt(cov[2, 2] * cov[3, 3])
    assert corr_ab > 0.5  # a and b move together along a flat ridge


def test_cdnow_is_far_from_the_nbd_boundary(mbg, cdnow_rfm):
    """The NBD (MBG/NBD's a -> 0; its BTYDplus values are tested in test_reference_values.py) is 180 below."""
    fit = nbd.fit_statistics(*_columns(cdnow_rfm))
    assert fit.log_likelihood == pytest.approx(BTYDPLUS_NBD_LL, abs=5e-5)
    assert mbg.log_likelihood_ > fit.log_likelihood + 100


@pytest.fixture(scope="module")
def cdnow_units():
    raw = load_cdnow_sample()
    return {unit: summarize(raw, customer_col="customer_id", date_col="date", amount_col="amount", time_unit=unit,
                            merge="D", calibration_end=CDNOW_CALIBRATION_END) for unit in DAYS}


def test_every_time_unit_gives_the_same_model(cdnow_units):
    """Days, weeks, months: the same r, a, b; alpha rescaled by the unit; the log-likelihood equal up to the unit's
    constant (durations divided by c add ln(c) per repeat purchase: sum(x) ln c); standard errors likewise."""
    fits = {unit: ModifiedBetaGeoModel().fit(rfm) for unit, rfm in cdnow_units.items()}
    ref = fits["D"]
    repeat = float(cdnow_units["D"]["frequency"].sum())
    for unit, model in fits.items():
        assert model.time_unit_ == unit and model.problems_ == []
        for name in ("r", "a", "b"):
            assert model.params_[name] == pytest.approx(ref.params_[name], rel=1e-6), (unit, name)
            assert model.result_.bse[name] == pytest.approx(ref.result_.bse[name], rel=1e-5), (unit, name)
        assert model.params_["alpha"] * DAYS[unit] == pytest.approx(ref.params_["alpha"], rel=1e-6), unit
        assert model.result_.bse["alpha"] * DAYS[unit] == pytest.approx(ref.result_.bse["alpha"], rel=1e-5), unit
        assert model.log_likelihood_ == pytest.approx(ref.log_likelihood_ + repeat * math.log(DAYS[unit]), abs=1e-6)
    # and the predictions in one unit are the others' (same customers, 39 weeks ahead)
    weeks = fits["W"].predict(cdnow_units["W"], "39W")
    for unit in ("D", "M"):
        pd.testing.assert_frame_equal(fits[unit].predict(cdnow_units[unit], "39W"), weeks, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ lifetimes


@pytest.fixture(scope="module")
def lifetimes_mbg():
    from lifetimes import ModifiedBetaGeoFitter

    return ModifiedBetaGeoFitter


def _lt_fit(cls, rfm, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls().fit(rfm["frequency"], rfm["recency"], rfm["T"], **kw)


def test_parameters_match_lifetimes_at_its_optimum(mbg, cdnow_rfm, lifetimes_mbg):
    theirs = _lt_fit(lifetimes_mbg, cdnow_rfm)
    np.testing.assert_allclose(mbg.params_[NAMES], theirs.params_[NAMES], rtol=1e-6)
    # the 1e-6 is lifetimes' tolerance; tighter than 1e-8 its BFGS stops on precision loss (scipy 1.17) and raises
    tight = _lt_fit(lifetimes_mbg, cdnow_rfm, tol=1e-8)
    np.testing.assert_allclose(mbg.params_[NAMES], tight.params_[NAMES], rtol=1e-7)
    # its total log-likelihood: mean NLL on time rescaled by c = 1/max(T), back to weeks (sum(x) ln c)
    x, _, T = _columns(cdnow_rfm)
    total = -len(x) * theirs._negative_log_likelihood_ + math.log(theirs._scale) * x.sum()
    assert theirs._scale == pytest.approx(1 / T.max())
    assert mbg.log_likelihood_ == pytest.approx(total, rel=1e-9)
    assert mbg.log_likelihood_ >= total - 1e-9 * abs(total)


@pytest.mark.parametrize("params", [tuple(BTYDPLUS.values()), (2.0, 0.7, 3.5, 0.4), (0.1, 40.0, 0.05, 30.0)])
def test_log_likelihood_equals_lifetimes(cdnow_rfm, lifetimes_mbg, params):
    x, t_x, T = _columns(cdnow_rfm)
    ones = np.ones_like(x)
    theirs = -len(x) * lifetimes_mbg._negative_log_likelihood(np.log(np.array(params)), x, t_x, T, ones, 0.0)
    assert mbgnbd.loglik(*params, x, t_x, T).sum() == pytest.approx(theirs, rel=1e-12)
    assert mbgnbd.loglik_derivatives(params, x, t_x, T)[0] == pytest.approx(theirs, rel=1e-12)


@pytest.fixture(scope="module")
def lifetimes_same(mbg, cdnow_rfm, lifetimes_mbg):
    """lifetimes fitted (its predictions are bound in fit) and then given our parameters."""
    model = _lt_fit(lifetimes_mbg, cdnow_rfm)
    model.params_ = pd.Series([float(mbg.params_[k]) for k in NAMES], index=NAMES)
    return model


def test_p_alive_equals_lifetimes(mbg, cdnow_rfm, lifetimes_same):
    x, t_x, T = _columns(cdnow_rfm)
    np.testing.assert_allclose(mbg.p_alive(cdnow_rfm), lifetimes_same.conditional_probability_alive(x, t_x, T),
                               rtol=1e-9)


@pytest.mark.parametrize("t", [0.5, 1.0, 10.0, 39.0, 52.0, 100.0])
def test_conditional_expected_purchases_equal_lifetimes(mbg, cdnow_rfm, lifetimes_same, t):
    x, t_x, T = _columns(cdnow_rfm)
    theirs = lifetimes_same.conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T)
    np.testing.assert_allclose(mbg.conditional_expected_purchases(t, cdnow_rfm), theirs, rtol=1e-9)


def test_expected_purchases_of_a_new_customer_equal_lifetimes(mbg, lifetimes_same):
    t = np.array([0.1429, 1.0, 3.0, 10.0, 39.0, 52.0, 78.0, 200.0])
    np.testing.assert_allclose(mbg.expected_purchases(t), lifetimes_same.expected_number_of_purchases_up_to_time(t),
                               rtol=1e-9)


@pytest.mark.parametrize("t", [1.0, 10.0, 39.0, 100.0])
def test_prob_purchases_equal_lifetimes(mbg, lifetimes_same, t):
    ours = mbg.prob_purchases(np.arange(0, 16), t)
    theirs = np.array([float(lifetimes_same.probability_of_n_purchases_up_to_time(t, n)) for n in range(16)])
    # lifetimes forms 1 - (alpha/(alpha+t))^r sum_{j<n} NB(j), which cancels where the tail is small (t = 1, n >= 9:
    # values of 1e-9 and below); there the two agree to 1e-15 absolute, the floor of that subtraction (ours is
    # checked against the tail summed term by term below)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("t", [0.5, 1.0, 39.0])
def test_prob_purchases_against_the_tail_summed_term_by_term(mbg, t):
    """P(X(t) = n) = B(a, b+n+1)/B(a, b) NB(n) + B(a+1, b+n)/B(a, b) P(NB >= n) (Batislam et al. 2007), with
    P(NB >= n) a sum of positive terms (no subtraction), to 1e-11 relative down to 1e-60."""
    r, alpha, a, b = mbg.check_fitted()
    k = np.arange(0, 3000, dtype=float)
    log_nb = (special.gammaln(r + k) - special.gammaln(r) - special.gammaln(k + 1) + r * np.log(alpha / (alpha + t))
              + k * np.log(t / (alpha + t)))
    n = np.arange(0, 40)
    log_tail = np.array([special.logsumexp(log_nb[j:]) for j in n])
    expected = np.exp(np.logaddexp(special.betaln(a, b + n + 1) - special.betaln(a, b) + log_nb[n],
                                   special.betaln(a + 1, b + n) - special.betaln(a, b) + log_tail))
    assert expected[-1] < 1e-30 or t > 1
    np.testing.assert_allclose(mbg.prob_purchases(n, t), expected, rtol=1e-11, atol=1e-60)


@pytest.mark.parametrize("share", [0.5, 0.1, 1e-6])
def test_prob_purchases_at_huge_a_and_b_is_the_constant_dropout_limit(share):
    """a, b = 1e15 scale with a/(a+b) = p: one dropout probability for everybody, at the first purchase too:
    P(X(t) = n) = (1-p)^(n+1) NB(n) + p (1-p)^n P(NB >= n). (betaln differences cancel there; the sums do not.)"""
    r, alpha, t = 1.3, 2.0, 10.0
    a = 1e15 * share
    b = 1e15 - a
    n = np.arange(0, 400)
    nb = special.gammaln(r + n) - special.gammaln(r) - special.gammaln(n + 1) + r * np.log(alpha / (alpha + t)) \
        + n * np.log(t / (alpha + t))
    tail = np.log(special.betainc(np.maximum(n, 1), r, t / (alpha + t)))
    limit = np.exp(np.logaddexp((n + 1) * np.log1p(-share) + nb,
                                np.log(share) + n * np.log1p(-share) + np.where(n > 0, tail, 0.0)))
    got = mbgnbd.prob_purchases(n, t, r, alpha, a, b)
    np.testing.assert_allclose(got, limit, rtol=1e-9, atol=1e-300)
    assert got.sum() == pytest.approx(1.0, abs=1e-9)


# ------------------------------------------------------------------------------------------------ simulation


def simulate_mbg(n, r, alpha, a, b, T, seed, horizon=0.0):
    """Customers drawn from the model's story, vectorised: ``lambda ~ Gamma(r, alpha)``, ``p ~ Beta(a, b)``; the
    chances to drop out come right after the first purchase and after each repeat purchase, the ``K``-th is taken
    (``K ~ Geometric(p)``), so he makes ``min(K - 1, N)`` repeat purchases of the ``N ~ Poisson(lambda T)`` he
    would make, the last at the ``m``-th of ``N`` sorted uniform times (``T * Beta(m, N - m + 1)``), and is alive
    at T when ``K - 1 > N``. ``horizon``: also his purchases in ``(T, T + horizon]`` (``future``)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    T = np.broadcast_to(np.asarray(T, dtype=float), (n,)) if np.ndim(T) == 0 else np.asarray(T, dtype=float)
    N = rng.poisson(lam * T)
    left = rng.geometric(np.clip(p, 1e-12, 1.0)) - 1  # repeat purchases before the chance he takes
    m = np.minimum(left, N)
    t_x = np.where(m > 0, T * rng.beta(np.maximum(m, 1), N - m + 1), 0.0)
    alive = left > N
    out = pd.DataFrame({"frequency": m.astype(float), "recency": t_x, "T": T, "alive": alive})
    if horizon > 0:
        out["future"] = np.where(alive, np.minimum(rng.poisson(lam * horizon), left - N), 0)
    return out


TRUE = (0.8, 5.0, 0.9, 1.6)


def _within(sample, expected, k=4.0):
    sample = np.asarray(sample, dtype=float)
    se = sample.std(ddof=1) / math.sqrt(len(sample))
    return abs(sample.mean() - expected) <= k * se, (sample.mean(), expected, se)


def test_new_customer_predictions_match_simulation():
    """E[X(t)] and P(X(t) = n) of a customer just acquired, against 400,000 simulated ones observed for t."""
    t = 20.0
    sim = simulate_mbg(400_000, *TRUE, T=t, seed=11)
    ok, info = _within(sim["frequency"], float(mbgnbd.expected_purchases(t, *TRUE)))
    assert ok, info
    for n in range(4):
        ok, info = _within(sim["frequency"] == n, float(mbgnbd.prob_purchases(n, t, *TRUE)))
        assert ok, (n, info)


def test_conditional_predictions_match_simulation():
    """P(alive) and the expected purchases in the next 26 weeks, averaged over simulated customers, against
    who is alive and what they buy; separately for customers without a repeat purchase."""
    sim = simulate_mbg(300_000, *TRUE, T=np.random.default_rng(5).uniform(10.0, 52.0, 300_000), seed=12,
                       horizon=26.0)
    x, t_x, T = _columns(sim)
    alive = mbgnbd.p_alive(x, t_x, T, *TRUE)
    expected = mbgnbd.conditional_expected_purchases(26.0, x, t_x, T, *TRUE)
    for rows in (x == 0, x > 0):
        assert 0 < alive[rows].mean() < 1
        ok, info = _within(sim["alive"][rows].to_numpy() - alive[rows], 0.0)
        assert ok, info
        ok, info = _within(sim["future"][rows].to_numpy() - expected[rows], 0.0)
        assert ok, info


def test_fit_recovers_simulated_parameters():
    sim = simulate_mbg(20_000, *TRUE, T=np.random.default_rng(6).uniform(26.0, 52.0, 20_000), seed=13)
    model = ModifiedBetaGeoModel().fit(sim[["frequency", "recency", "T"]], time_unit="W")
    assert model.problems_ == []
    z = (model.params_.to_numpy() - np.array(TRUE)) / model.result_.bse.to_numpy()
    assert np.all(np.abs(z) < 4), dict(zip(NAMES, z))


# ------------------------------------------------------------------------------------------------ boundaries


def _sim_rfm(a, b, seed, n=4000):
    T = np.random.default_rng(seed + 100).uniform(26.0, 52.0, n)
    return simulate_mbg(n, 0.8, 5.0, a, b, T=T, seed=seed)[["frequency", "recency", "T"]]


def _fit(rfm, cls=ModifiedBetaGeoModel, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(**kw).fit(rfm, time_unit="W")


def test_no_dropout_gives_the_nbd_labelled(tmp_path):
    """Data without dropout (a = 1e-6, b = 1e3): the supremum is a -> 0, the NBD is named and its fit kept; the
    composite gives the NBD, labelled, through its model file too."""
    rfm = _sim_rfm(1e-6, 1e3, seed=2)
    model = _fit(rfm)
    assert model.result_.boundary is not None and model.result_.boundary[0] == "nbd"
    assert any("maximum on a boundary: a -> 0" in p for p in model.problems_)
    with pytest.raises(UnreliableFitError):
        model.check_reliable()
    nested = model.boundary_model()
    assert isinstance(nested, NBDModel) and nested.problems_ == [] and nested.time_unit_ == "W"
    direct = _fit(rfm, NBDModel)
    np.testing.assert_allclose(nested.params_, direct.params_, rtol=1e-6)
    assert nested.log_likelihood_ >= model.log_likelihood_ - 1e-6 * len(rfm)
    composite = _fit(rfm, ClvModel, purchases="mbgnbd", spend=None)
    assert composite.purchases_.kind == "nbd" and composite.problems_ == []
    assert composite.boundary_["kind"] == "mbgnbd" and composite.boundary_["name"] == "MBG/NBD"
    assert composite.boundary_line().startswith(
        "MBG/NBD maximum on a boundary (a -> 0: the data show no dropout); fitted the NBD instead")
    loaded = ClvModel.load(composite.save(tmp_path / "m.json"))
    assert loaded.boundary_ == composite.boundary_ and loaded.purchases == "mbgnbd"
    refused = _fit(rfm, ClvModel, purchases="mbgnbd", spend=None, on_boundary="refuse")
    assert refused.purchases_.kind == "mbgnbd" and refused.problems_


def _limit_fit(rfm, ll_rows, x0):
    """Maximum of a limit's log-likelihood ``ll_rows(r, alpha, share)`` over r, alpha > 0 and 0 < share < 1."""
    x, t_x, T = _columns(rfm)

    def negative(theta):
        r, alpha = np.exp(theta[:2])
        return -ll_rows(r, alpha, special.expit(theta[2]), x, t_x, T).sum()

    best = optimize.minimize(negative, x0, method="Nelder-Mead",
                             options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 4000})
    return -best.fun


def _constant_dropout_at_first_too(r, alpha, p, x, t_x, T):
    """a, b -> infinity with a/(a+b) = p: dead from the start with probability p, else constant dropout p."""
    alive = np.log1p(-p) + constant_dropout.loglik(r, alpha, p, x, t_x, T)
    return np.where(x == 0, np.logaddexp(alive, np.log(p)), alive)


def _zero_inflated_nbd(r, alpha, share, x, t_x, T):
    """a, b -> 0 with a/(a+b) = share: a share dead from the start, the others never drop out (the NBD)."""
    alive = np.log1p(-share) + nbd.loglik(r, alpha, x, t_x, T)
    return np.where(x == 0, np.logaddexp(alive, np.log(share)), alive)


@pytest.mark.parametrize("a, b, seed, limit", [
    (3e3, 3e4, 1, _constant_dropout_at_first_too),  # one dropout probability 0.09 for everybody
    (3e-4, 7e-4, 0, _zero_inflated_nbd),  # 30 % die at the first purchase, the others never
], ids=["a,b->inf", "a,b->0"])
def test_boundaries_without_a_nested_model_are_never_a_clean_fit(a, b, seed, limit):
    """Data whose supremum is on a limit that no model of the layer is (shown: the limit's own maximum reaches the
    fit's log-likelihood, the NBD's does not): the fit says it has no interior maximum; the composite keeps the
    unreliable MBG/NBD (nothing nested to give)."""
    rfm = _sim_rfm(a, b, seed)
    model = _fit(rfm)
    assert model.problems_, dict(model.params_)
    assert model.result_.boundary is None and model.boundary_model() is None
    with pytest.raises(UnreliableFitError):
        model.check_reliable()
    nbd_ll = nbd.fit_statistics(*_columns(rfm)).log_likelihood
    start = [math.log(0.8), math.log(5.0), special.logit(a / (a + b))]
    assert _limit_fit(rfm, limit, start) >= model.log_likelihood_ - 1e-6 * len(rfm)
    assert model.log_likelihood_ > nbd_ll + 5
    composite = _fit(rfm, ClvModel, purchases="mbgnbd", spend=None)
    assert composite.purchases_.kind == "mbgnbd" and composite.problems_ and composite.boundary_ is None


# ------------------------------------------------------------------------------------------------ hypothesis

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUNDS = ModifiedBetaGeoModel.param_bounds


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(math.log(lo), math.log(hi)).map(math.exp)


#: every parameter over its whole range (where model files and from_params are accepted)
params_anywhere = st.tuples(*(log_uniform(*BOUNDS[name]) for name in NAMES))
moderate = log_uniform(0.05, 20.0)


@st.composite
def history(draw, max_x: int = 10**5, max_T: float = 1e6):
    """One valid customer (x, t_x, T): t_x = 0 when x = 0, else 0 < t_x <= T."""
    x = draw(st.integers(0, max_x))
    if x == 0:
        return x, 0.0, draw(st.floats(0.0, max_T))
    T = draw(st.floats(1e-6, max_T))
    t_x = min(T, max(T * draw(st.floats(0.0, 1.0, exclude_min=True)), 1e-300))
    return x, t_x, T


def customers(n_max: int = 12, **kw):
    return st.lists(history(**kw), min_size=1, max_size=n_max).map(
        lambda rows: tuple(np.array(c, dtype=float) for c in zip(*rows)))


def _finite(*arrays) -> bool:
    return all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in arrays)


LOW = tuple(BOUNDS[n][0] for n in NAMES)
HIGH = tuple(BOUNDS[n][1] for n in NAMES)
EDGE = (np.array([1e5, 0.0, 1.0, 0.0]), np.array([1e-300, 0.0, 1e6, 0.0]), np.array([1e6, 0.0, 1e6, 1e6]))


@SETTINGS
@given(params=params_anywhere, data=customers())
@example(params=LOW, data=EDGE)
@example(params=HIGH, data=EDGE)
@example(params=(1e-8, 1e12, 1e-8, 1e15), data=EDGE)
@example(params=(1e3, 1e-8, 1e15, 1e-8), data=EDGE)
def test_loglik_and_derivatives_finite(params, data):
    x, t_x, T = data
    ll = mbgnbd.loglik(*params, x, t_x, T)
    assert ll.shape == x.shape and _finite(ll), (params, data, ll)
    assert np.all(ll[x == 0] <= 1e-12)  # a probability when there is no recency density
    total, score, hess = mbgnbd.loglik_derivatives(params, x, t_x, T)
    assert _finite(total, score, hess), (params, data, total, score, hess)
    np.testing.assert_array_equal(hess, hess.T)
    assert total == pytest.approx(ll.sum(), rel=1e-9, abs=1e-9 * (1 + np.abs(ll).sum()))


@SETTINGS
@given(params=params_anywhere, data=customers(), t1=st.floats(0.0, 1e5), t2=st.floats(0.0, 1e5))
@example(params=LOW, data=EDGE, t1=0.0, t2=1e5)
@example(params=HIGH, data=EDGE, t1=1e-300, t2=1e5)
@example(params=(1.0, 1.0, 1.0, 1.0), data=EDGE, t1=0.0, t2=10.0)  # a = 1: the closed form's 0/0
@example(params=(1e-8, 1e12, 1e-8, 1e15), data=EDGE, t1=1.0, t2=1e5)
@example(params=(16.9, 6.69, 1e15, 1e15), data=EDGE, t1=1.0, t2=68244.0)  # was P(X = 2) = 27 (betaln cancelling)
def test_predictions_finite_and_in_range(params, data, t1, t2):
    x, t_x, T = data
    t1, t2 = sorted((t1, t2))
    alive = mbgnbd.p_alive(x, t_x, T, *params)
    assert _finite(alive) and np.all((alive >= 0) & (alive <= 1)), (params, data, alive)
    later = mbgnbd.p_alive(x, np.where(x > 0, T, 0.0), T, *params)  # a more recent last purchase
    assert np.all(later >= alive * (1 - 1e-12))
    e1 = mbgnbd.conditional_expected_purchases(t1, x, t_x, T, *params)
    e2 = mbgnbd.conditional_expected_purchases(t2, x, t_x, T, *params)
    assert _finite(e1, e2) and np.all(e1 >= 0) and np.all(e2 >= e1 - 1e-9 * np.abs(e2)), (params, data, e1, e2)
    new1, new2 = (float(np.squeeze(mbgnbd.expected_purchases(t, *params))) for t in (t1, t2))
    assert _finite(new1, new2) and 0 <= new1 <= new2 * (1 + 1e-9) + 1e-300, (params, new1, new2)
    pr = mbgnbd.prob_purchases(np.array([0, 1, 2, 10, 1000]), t2, *params)
    assert _finite(pr) and np.all((pr >= 0) & (pr <= 1 + 1e-12)), (params, t2, pr)


@settings(max_examples=50, deadline=None)
@given(params=st.tuples(moderate, moderate, moderate, moderate), t=st.floats(0.1, 100.0))
def test_prob_purchases_sum_to_one_and_mean(params, t):
    """The pmf sums to 1 and, when a > 1 (a finite mean), its mean is E[X(t)]."""
    n = np.arange(0, 20000)
    pr = mbgnbd.prob_purchases(n, t, *params)
    if pr[-1] > 1e-12:  # a heavy tail: the truncated sum says nothing
        return
    assert pr.sum() == pytest.approx(1.0, abs=1e-8)
    if params[2] > 1.5:
        assert float(np.dot(n, pr)) == pytest.approx(float(mbgnbd.expected_purchases(t, *params)), rel=1e-6, abs=1e-9)


@SETTINGS
@given(params=params_anywhere, data=customers(max_x=10**4, max_T=1e5), log_c=st.floats(-5.0, 5.0))
def test_change_of_time_unit(params, data, log_c):
    """Time in a unit c times smaller (t -> c t, alpha -> c alpha): the same P(alive) and, per customer, the
    log-likelihood shifted by the recency density's Jacobian, -x ln c."""
    r, alpha, a, b = params
    x, t_x, T = data
    c = math.exp(log_c)
    if alpha * c > BOUNDS["alpha"][1] or alpha * c < BOUNDS["alpha"][0]:
        return
    ll = mbgnbd.loglik(r, alpha, a, b, x, t_x, T)
    ll_c = mbgnbd.loglik(r, alpha * c, a, b, x, t_x * c, T * c)
    np.testing.assert_allclose(ll_c, ll - x * log_c, rtol=1e-9, atol=1e-9 * (1 + np.abs(ll).max()))
    np.testing.assert_allclose(mbgnbd.p_alive(x, t_x * c, T * c, r, alpha * c, a, b),
                               mbgnbd.p_alive(x, t_x, T, *params), rtol=1e-7, atol=1e-300)


@SETTINGS
@given(params=params_anywhere, data=customers(), w=st.lists(st.integers(0, 4), min_size=12, max_size=12))
def test_weights_are_repetition(params, data, w):
    """Integer weights equal repeating the rows (the likelihood of compressed statistics)."""
    x, t_x, T = data
    w = np.array(w[: len(x)], dtype=float)
    rep = np.repeat(np.arange(len(x)), w.astype(int))
    ll_w, s_w, h_w = mbgnbd.loglik_derivatives(params, x, t_x, T, weights=w)
    if rep.size == 0:
        assert ll_w == 0.0
        return
    ll_r, s_r, h_r = mbgnbd.loglik_derivatives(params, x[rep], t_x[rep], T[rep])
    assert ll_w == pytest.approx(ll_r, rel=1e-9, abs=1e-9 * (1 + abs(ll_r)))
    np.testing.assert_allclose(s_w, s_r, rtol=1e-8, atol=1e-8 * (1 + np.abs(s_r).max()))
    np.testing.assert_allclose(h_w, h_r, rtol=1e-8, atol=1e-8 * (1 + np.abs(h_r).max()))


def _fd(f, phi, rel=1e-5):
    cols = []
    for i in range(len(phi)):
        up, down = phi.copy(), phi.copy()
        up[i] *= 1 + rel
        down[i] *= 1 - rel
        cols.append((np.asarray(f(up)) - np.asarray(f(down))) / (2 * rel * phi[i]))
    return np.stack(cols, axis=-1)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.tuples(moderate, moderate, moderate, moderate), data=customers(max_x=60, max_T=100.0))
@example(params=tuple(BTYDPLUS.values()), data=(np.array([0.0, 1, 2, 30]), np.array([0.0, 1.5, 30.4, 38.0]),
                                                np.array([38.9, 38.9, 38.9, 38.9])))
def test_score_and_hessian_match_finite_differences(params, data):
    """On the log-parameter scale (d/d ln phi = phi d/d phi), where the entries are comparable."""
    x, t_x, T = data
    phi = np.array(params, dtype=float)
    _, score, hess = mbgnbd.loglik_derivatives(phi, x, t_x, T)
    fd_score = _fd(lambda p: mbgnbd.loglik(*p, x, t_x, T).sum(), phi)
    fd_hess = _fd(lambda p: mbgnbd.loglik_derivatives(p, x, t_x, T)[1], phi)
    a, n = score * phi, fd_score * phi
    np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-6 * (1 + np.abs(a).max()))
    a, n = hess * np.outer(phi, phi), fd_hess * np.outer(phi, phi)
    np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-6 * (1 + np.abs(a).max()))
