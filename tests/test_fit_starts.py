"""Issue 18, "fits that real exports cannot break": several starts, the same model in every time unit,
a watershed start, and a penalty that is the same model in every unit (of time and of money)."""

import math
import warnings

import numpy as np
import pytest

from clv_forecast.estimators import _mle, _starts
from clv_forecast.estimators.purchases import bgnbd, nbd
from clv_forecast.estimators.purchases.bgnbd import BetaGeoModel
from clv_forecast.estimators.spend.gamma_gamma import GammaGammaModel
from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample
from clv_forecast.rfm import summarize
from clv_forecast.simulate import simulate

UNITS = ("D", "W", "2W", "M")
DAYS = {"D": 1.0, "W": 7.0, "2W": 14.0, "M": 365.25 / 12}  # days per unit (clv_forecast.units)


@pytest.fixture(scope="module")
def watershed_log():
    """The shape of a year of a gift retailer's invoices (4,372 customers joining over a year, one
    purchase a day at most): purchase rates r = 0.83, alpha = 9.84 per week and dropout from
    Beta(0.008, 7) (almost nobody drops out). With this seed the likelihood has an interior maximum at
    a = 0.0014, b = 0.19, and the fixed start a = b = 1 runs off towards a, b -> infinity in every unit."""
    return simulate(4372, r=0.83, alpha=9.84, a=0.008, b=7.0, time_unit="W", start="2010-12-01",
                    cohort_length="52W", end="2011-12-09", seed=1, timestamp_resolution="D")


@pytest.fixture(scope="module")
def watershed_rfm(watershed_log):
    return {unit: summarize(watershed_log, customer_col="customer_id", date_col="timestamp", time_unit=unit)
            for unit in UNITS}


@pytest.fixture(scope="module")
def watershed_fits(watershed_rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {unit: BetaGeoModel().fit(rfm) for unit, rfm in watershed_rfm.items()}


def _fixed_start_fit(rfm):
    """What the fit did before issue 18: one start, r = a = b = 1 and alpha = 1 / mean purchase rate."""
    x, t_x, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    rate = x.sum() / T.sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _mle.maximize(lambda phi: bgnbd.loglik_derivatives(phi, x, t_x, T), [1.0, 1.0 / rate, 1.0, 1.0],
                               bgnbd.PARAM_NAMES, n_obs=len(x), n_rows=len(x), model="BG/NBD")
    result.scale_free, result.bounds = ("r", "a", "b"), dict(bgnbd.PARAM_BOUNDS)
    return result


@pytest.mark.parametrize("unit", UNITS)
def test_the_fixed_start_sits_on_a_watershed(watershed_rfm, watershed_fits, unit):
    """The generator is what the issue describes: from a = b = 1 the optimiser runs away (no reliable
    fit, a lower log-likelihood) while an interior maximum exists."""
    fixed = _fixed_start_fit(watershed_rfm[unit])
    best = watershed_fits[unit]
    assert fixed.problems
    assert fixed.log_likelihood < best.log_likelihood_ - 0.05
    assert best.problems_ == [] and best.result_.boundary is None
    assert best.result_.extra["starts"] > 1


def test_every_unit_gives_the_same_model(watershed_rfm, watershed_fits):
    """D, W, 2W and M: the same r, a, b; alpha rescaled by the unit; the log-likelihood equal up to the
    unit's constant (durations divided by c add ln(c) per repeat purchase: sum(x) ln c)."""
    ref = watershed_fits["D"]
    repeat = float(watershed_rfm["D"]["frequency"].sum())
    assert ref.params_["a"] == pytest.approx(0.0014, rel=0.05) and ref.params_["b"] == pytest.approx(0.19, rel=0.05)
    for unit, model in watershed_fits.items():
        assert model.problems_ == []
        for name in ("r", "a", "b"):
            assert model.params_[name] == pytest.approx(ref.params_[name], rel=1e-6), (unit, name)
        assert model.params_["alpha"] * DAYS[unit] == pytest.approx(ref.params_["alpha"], rel=1e-6), unit
        assert model.log_likelihood_ == pytest.approx(ref.log_likelihood_ + repeat * math.log(DAYS[unit]),
                                                      rel=1e-10, abs=1e-5), unit


def test_a_clean_fit_runs_one_start(cdnow_rfm):
    """CDNOW has an interior maximum that the first (data-driven) start finds: one start, the reference
    estimates (test_reference_values holds the digits)."""
    model = BetaGeoModel().fit(cdnow_rfm)
    assert model.result_.extra["starts"] == 1 and model.problems_ == [] and model.result_.boundary is None
    assert model.params_["r"] == pytest.approx(0.2426, rel=1e-3) and model.params_["a"] == pytest.approx(0.7931, rel=1e-3)
    assert model.summary().count("starts: 1") == 1


def test_starts_scale_with_the_unit(watershed_rfm):
    """The data-driven start (the NBD fit) gives the same r and alpha rescaled in every unit; the (a, b)
    grid has no unit."""
    fits = {}
    for unit, rfm in watershed_rfm.items():
        x, t_x, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        fits[unit] = nbd.fit_statistics(x, t_x, T)
    for unit, fit in fits.items():
        assert fit.params["r"] == pytest.approx(fits["D"].params["r"], rel=1e-7)
        assert fit.params["alpha"] * DAYS[unit] == pytest.approx(fits["D"].params["alpha"], rel=1e-7)
    starts = _starts.grid(0.5, 3.0)
    assert [s[2:] for s in starts] == [list(ab) for ab in _starts.AB_GRID]
    assert all(s[:2] == [0.5, 3.0] for s in starts)


def test_given_initial_params_are_the_first_start(cdnow_rfm):
    given = {"r": 0.3, "alpha": 5.0, "a": 0.5, "b": 2.0}
    starts = _starts.grid(0.2, 4.0, [given[k] for k in bgnbd.PARAM_NAMES])
    assert starts[0] == [0.3, 5.0, 0.5, 2.0] and len(starts) == len(_starts.AB_GRID) + 1
    model = BetaGeoModel(initial_params=given).fit(cdnow_rfm)
    reference = BetaGeoModel().fit(cdnow_rfm)
    assert model.result_.extra["starts"] == 1
    np.testing.assert_allclose(model.params_, reference.params_, rtol=1e-6)


def test_the_best_objective_wins_and_only_its_warnings_are_issued():
    from clv_forecast.errors import ConvergenceWarning

    def fake(x0, limit):
        if x0[0] == 1:
            warnings.warn("start 1 did not converge", ConvergenceWarning)
        result = _mle.MLEResult(model="m", param_names=("p",), params=__import__("pandas").Series([x0[0]], index=["p"]),
                                cov=np.eye(1), log_likelihood=-x0[0], n_obs=1.0, n_rows=1, converged=True, n_iter=1,
                                message="", objective=float(x0[0]))
        return result

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        best, n = _starts.run_starts(fake, [[3.0], [1.0], [2.0]], maxiter=10, prepare=lambda r: None,
                                     more_needed=lambda r: True)
    assert n == 3 and best.params["p"] == 1.0
    assert [str(w.message) for w in caught] == ["start 1 did not converge"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        best, n = _starts.run_starts(fake, [[3.0], [1.0]], maxiter=10, prepare=lambda r: None,
                                     more_needed=lambda r: False)
    assert n == 1 and best.params["p"] == 3.0 and not caught


# ------------------------------------------------------------------------------------------------
# a penalty that is the same model in every unit
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_units():
    log = load_cdnow_sample()
    return {unit: summarize(log, customer_col="customer_id", date_col="date", amount_col="amount", time_unit=unit,
                            merge="D", calibration_end=CDNOW_CALIBRATION_END) for unit in ("D", "W", "M")}


@pytest.mark.parametrize("penalizer", [0.001, 0.1])
def test_the_penalised_fit_is_the_same_model_in_every_time_unit(cdnow_units, penalizer):
    """Before issue 18 the penalty was on alpha in the model's unit: r = 0.336, 0.234, 0.349 in weeks,
    days, months for one grocery log. On alpha / (data's time per repeat purchase) it is unit-free."""
    fits = {unit: BetaGeoModel(penalizer=penalizer).fit(rfm) for unit, rfm in cdnow_units.items()}
    ref = fits["D"]
    plain = BetaGeoModel().fit(cdnow_units["D"])
    assert not np.allclose(ref.params_, plain.params_, rtol=1e-4)  # the penalty does something
    assert ref.log_likelihood_ < plain.log_likelihood_
    for unit, model in fits.items():
        assert model.problems_ == [] and model.result_.penalizer == penalizer
        for name in ("r", "a", "b"):
            assert model.params_[name] == pytest.approx(ref.params_[name], rel=1e-6), (unit, name)
        assert model.params_["alpha"] * DAYS[unit] == pytest.approx(ref.params_["alpha"], rel=1e-6), unit
        # the covariance is the same model's too: relative standard errors agree
        np.testing.assert_allclose(model.result_.bse / model.params_, ref.result_.bse / ref.params_, rtol=1e-5)


def test_the_old_penalty_was_not_unit_free(cdnow_units):
    """The same check on the plain L2 penalty of the natural parameters (scales 1) fails: it is what the
    issue reports, and what the unit-free scales fix."""
    out = {}
    for unit in ("D", "W"):
        rfm = cdnow_units[unit]
        x, t_x, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[unit] = _mle.maximize(lambda phi: bgnbd.loglik_derivatives(phi, x, t_x, T), [0.3, 3.0 * DAYS[unit], 1, 1],
                                      bgnbd.PARAM_NAMES, n_obs=len(x), n_rows=len(x), model="BG/NBD", penalizer=0.001)
    assert abs(out["D"].params["r"] / out["W"].params["r"] - 1) > 0.01


def test_penalizer_zero_is_plain_maximum_likelihood(cdnow_rfm):
    x, t_x, T = (cdnow_rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    model = BetaGeoModel(penalizer=0.0).fit(cdnow_rfm)
    _, score, _ = bgnbd.loglik_derivatives(model.params_.to_numpy(), x, t_x, T)
    assert np.max(np.abs(score * model.params_.to_numpy())) < 1e-6  # the likelihood's own stationary point


@pytest.mark.parametrize("factor", [100.0, 1e-3])
def test_the_penalised_spend_fit_is_the_same_model_in_every_unit_of_money(cdnow_rfm, factor):
    repeat = cdnow_rfm[cdnow_rfm["frequency"] > 0]
    base = GammaGammaModel(penalizer=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GammaGammaModel(penalizer=0.01).fit(repeat)
        scaled = base.fit(repeat.assign(monetary_value=repeat["monetary_value"] * factor))
    for name in ("p", "q"):
        assert scaled.params_[name] == pytest.approx(ref.params_[name], rel=1e-6)
    assert scaled.params_["v"] == pytest.approx(ref.params_["v"] * factor, rel=1e-6)
    plain = GammaGammaModel().fit(repeat)
    assert ref.params_["q"] != pytest.approx(plain.params_["q"], rel=1e-3)


@pytest.mark.parametrize("failure", [UnboundLocalError("p"), OverflowError(34, "Numerical result out of range")])
def test_a_failing_optimiser_step_is_a_fit_that_did_not_converge(monkeypatch, failure):
    """scipy's trust-region subproblem can raise on a degenerate Hessian (UnboundLocalError in some versions), and a
    likelihood written with Python floats can overflow far off: either is a fit that did not converge, reported
    from the best point reached, never a traceback."""
    from scipy import optimize

    def loglik(phi):  # a concave bowl with its top at (2, 3)
        d = np.log(phi) - np.log([2.0, 3.0])
        return -float(d @ d), -2 * d / phi, np.diag((2 * d - 2) / phi**2)

    def failing_minimize(fun, x0, **kwargs):
        fun(x0)
        fun(x0 + 0.5)
        raise failure

    if isinstance(failure, OverflowError):
        calls = {"n": 0}

        def overflowing(phi):
            calls["n"] += 1
            if calls["n"] > 2:
                raise failure
            return loglik(phi)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _mle.maximize(overflowing, [1.0, 1.0], ("u", "v"), n_obs=10, n_rows=1, model="bowl")
        assert np.all(np.isfinite(result.params))
        assert not result.converged or result.max_gradient < 1e-7
        return
    monkeypatch.setattr(optimize, "minimize", failing_minimize)
    result = _mle.maximize(loglik, [1.0, 1.0], ("u", "v"), n_obs=10, n_rows=1, model="bowl")
    assert "trust-region step failed (UnboundLocalError)" in result.message
    assert result.n_iter >= 2 and np.all(np.isfinite(result.params))
    # the Newton polish goes on from the best point reached and finds the top
    np.testing.assert_allclose(result.params.to_numpy(), [2.0, 3.0], rtol=1e-8)
