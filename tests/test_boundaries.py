"""Issue 18: BG/NBD's two boundaries are known nested models (the NBD at a -> 0; constant dropout at
a, b -> infinity with a/(a+b) = p). Their kernels equal BG/NBD's in the limit, recover known parameters,
and a BG/NBD fit on such a population says which boundary it is on."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from clv_forecast.estimators import _mle
from clv_forecast.estimators.purchases import _bgnbd_boundary as bgnbd_boundary, bgnbd, constant_dropout, nbd
from clv_forecast.estimators.purchases.bgnbd import BetaGeoModel


def population(n, r, alpha, p, seed, t_max=52.0):
    """(x, t_x, T) of ``n`` customers observed for T ~ U(1, t_max): purchase rate lambda ~ Gamma(r, alpha),
    a Poisson process, and after each repeat purchase a dropout with probability ``p`` (0: never, the NBD;
    one p for everybody: constant dropout). With N ~ Poisson(lambda T) arrivals of the uninterrupted
    process and K ~ Geometric(p) the purchase after which the customer drops out, x = min(N, K) and t_x is
    the x-th of N sorted uniforms on (0, T): T * Beta(x, N - x + 1)."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(1.0, t_max, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    N = rng.poisson(lam * T)
    K = rng.geometric(p, n) if p > 0 else np.full(n, np.iinfo(np.int64).max)
    x = np.minimum(N, K)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), N - x + 1), 0.0)
    return x.astype(float), t_x, T


def _rows():
    rng = np.random.default_rng(3)
    T = rng.uniform(1, 52, 200)
    x = rng.poisson(2.0, 200).astype(float)
    x[:3] = [0.0, 1.0, 12.0]
    t_x = np.where(x > 0, rng.uniform(0, 1, 200) * T, 0.0)
    return x, t_x, T


# ------------------------------------------------------------------------------------------------
# kernels: equal to BG/NBD in the limit, analytic derivatives, no NaN/inf
# ------------------------------------------------------------------------------------------------


def test_nbd_is_bgnbd_at_a_to_zero():
    x, t_x, T = _rows()
    r, alpha, t = 0.8, 9.0, np.array([1.0, 13.0, 52.0])
    for b in (0.5, 3.0, 100.0):
        np.testing.assert_allclose(bgnbd.loglik(r, alpha, 1e-9, b, x, t_x, T), nbd.loglik(r, alpha, x, t_x, T),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(bgnbd.p_alive(x, t_x, T, r, alpha, 1e-9, b), nbd.p_alive(x, t_x, T, r, alpha),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(bgnbd.conditional_expected_purchases(t, x, t_x, T, r, alpha, 1e-9, b),
                                   nbd.conditional_expected_purchases(t, x, t_x, T, r, alpha), rtol=1e-6)
        np.testing.assert_allclose(bgnbd.expected_purchases(t, r, alpha, 1e-9, b), nbd.expected_new(t, r, alpha),
                                   rtol=1e-6)
    assert nbd.expected_if_alive(t, x, T, r, alpha).shape == (len(x), 3)


@pytest.mark.parametrize("p", [0.02, 0.3, 0.9])
def test_constant_dropout_is_bgnbd_at_a_b_to_infinity(p):
    x, t_x, T = _rows()
    r, alpha, t, K = 0.8, 9.0, np.array([1.0, 13.0, 52.0]), 1e9
    a, b = p * K, (1 - p) * K
    np.testing.assert_allclose(bgnbd.loglik(r, alpha, a, b, x, t_x, T), constant_dropout.loglik(r, alpha, p, x, t_x, T),
                               rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(bgnbd.p_alive(x, t_x, T, r, alpha, a, b),
                               constant_dropout.p_alive(x, t_x, T, r, alpha, p), rtol=0, atol=1e-6)
    np.testing.assert_allclose(bgnbd.conditional_expected_purchases(t, x, t_x, T, r, alpha, a, b),
                               constant_dropout.conditional_expected_purchases(t, x, t_x, T, r, alpha, p),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(bgnbd.expected_purchases(t, r, alpha, a, b), constant_dropout.expected_new(t, r, alpha, p),
                               rtol=1e-6)


def test_constant_dropout_tends_to_the_nbd_as_p_goes_to_zero():
    x, t_x, T = _rows()
    t = np.array([1.0, 52.0])
    np.testing.assert_allclose(constant_dropout.loglik(0.8, 9.0, 1e-12, x, t_x, T), nbd.loglik(0.8, 9.0, x, t_x, T),
                               atol=1e-9)
    few = x <= 3  # (the limit is not uniform: P(dead) ~ p ((alpha+T)/(alpha+t_x))^(r+x) for heavy buyers)
    np.testing.assert_allclose(constant_dropout.conditional_expected_purchases(t, x[few], t_x[few], T[few], 0.8, 9.0, 1e-12),
                               nbd.conditional_expected_purchases(t, x[few], t_x[few], T[few], 0.8, 9.0), rtol=1e-7)


def _numerical(f, p, eps=1e-6):
    grad = np.array([(f(p * (1 + eps * e))[0] - f(p * (1 - eps * e))[0]) / (2 * eps * p[i])
                     for i, e in enumerate(np.eye(len(p)))])
    hess = np.array([(f(p * (1 + eps * e))[1] - f(p * (1 - eps * e))[1]) / (2 * eps * p[i])
                     for i, e in enumerate(np.eye(len(p)))])
    return grad, hess


@pytest.mark.parametrize("module, params", [(nbd, [0.8, 9.0]), (constant_dropout, [0.8, 9.0, 0.25])])
def test_analytic_derivatives(module, params):
    x, t_x, T = _rows()
    w = np.random.default_rng(0).integers(1, 5, len(x)).astype(float)
    p = np.array(params)
    ll, score, hess = module.loglik_derivatives(p, x, t_x, T, w)
    per_row = (module.loglik(*p[:2], x, t_x, T) if module is nbd
               else module.loglik(p[0], p[1], p[2] / (1 + p[2]), x, t_x, T))
    assert ll == pytest.approx(np.dot(w, per_row), rel=1e-12)
    grad, h = _numerical(lambda q: module.loglik_derivatives(q, x, t_x, T, w), p)
    np.testing.assert_allclose(score, grad, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hess, h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hess, hess.T)


@pytest.mark.parametrize("p", [1e-12, 0.5, 1 - 1e-9])
def test_kernels_are_finite_at_extremes(p):
    x = np.array([0.0, 1.0, 5.0, 1e4])
    t_x = np.array([0.0, 1e-9, 1e5, 1e5])
    T = np.array([0.0, 1e5, 1e5, 1e5])
    for r, alpha in ((1e-8, 1e-8), (1e3, 1e12), (0.5, 1.0)):
        for values in (nbd.loglik(r, alpha, x, t_x, T), constant_dropout.loglik(r, alpha, p, x, t_x, T),
                       constant_dropout.p_alive(x, t_x, T, r, alpha, p),
                       constant_dropout.conditional_expected_purchases(52.0, x, t_x, T, r, alpha, p),
                       constant_dropout.expected_new(np.array([0.0, 52.0]), r, alpha, p),
                       nbd.conditional_expected_purchases(52.0, x, t_x, T, r, alpha)):
            assert np.all(np.isfinite(values))
        alive = constant_dropout.p_alive(x, t_x, T, r, alpha, p)
        assert np.all((alive >= 0) & (alive <= 1))


# ------------------------------------------------------------------------------------------------
# recovery of known parameters
# ------------------------------------------------------------------------------------------------


def test_nbd_recovers_a_no_dropout_population():
    x, t_x, T = population(20_000, 0.8, 10.0, 0.0, seed=11)
    fit = nbd.fit_statistics(x, t_x, T)
    assert fit.converged and fit.model == "NBD" and fit.param_names == ("r", "alpha")
    for name, true in (("r", 0.8), ("alpha", 10.0)):
        assert abs(fit.params[name] - true) < 3.5 * fit.bse[name], name
    assert fit.problems == []
    # compressed statistics with weights are the same fit
    frame = pd.DataFrame({"x": x, "t": t_x, "T": T}).round(0).groupby(["x", "t", "T"]).size().reset_index()
    a = nbd.fit_statistics(frame["x"], frame["t"], frame["T"], frame[0])
    b = nbd.fit_statistics(*(np.repeat(frame[c].to_numpy(float), frame[0]) for c in ("x", "t", "T")))
    np.testing.assert_allclose(a.params, b.params, rtol=1e-8)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-10)


def test_constant_dropout_recovers_its_population():
    x, t_x, T = population(20_000, 0.8, 10.0, 0.15, seed=12)
    fit = constant_dropout.fit_statistics(x, t_x, T)
    assert fit.converged and fit.param_names == ("r", "alpha", "p") and fit.problems == []
    for name, true in (("r", 0.8), ("alpha", 10.0), ("p", 0.15)):
        assert abs(fit.params[name] - true) < 3.5 * fit.bse[name], name
    assert fit.log_likelihood == pytest.approx(constant_dropout.loglik(*fit.params, x, t_x, T).sum(), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# the BG/NBD fit says which boundary
# ------------------------------------------------------------------------------------------------


def _fit(x, t_x, T):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BetaGeoModel().fit(frequency=x, recency=t_x, T=T, time_unit="W")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_dropout_population_is_reported_as_the_nbd(seed):
    x, t_x, T = population(5000, 0.8, 10.0, 0.0, seed)
    model = _fit(x, t_x, T)
    kind, reason = model.result_.boundary
    assert kind == "nbd" and reason.startswith("a -> 0: the data show no dropout")
    problems = model.problems_
    assert any(p.startswith("BG/NBD maximum on a boundary: a -> 0") for p in problems)
    assert not any("no interior maximum" in p for p in problems)
    nested = model.boundary_result_
    assert nested.model == "NBD" and nested.log_likelihood >= model.log_likelihood_ - 5e-3
    np.testing.assert_allclose(nested.params, nbd.fit_statistics(x, t_x, T).params, rtol=1e-6)
    assert model.result_.extra["starts"] > 1


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_constant_dropout_population_is_reported_as_such(seed):
    x, t_x, T = population(5000, 0.8, 10.0, 0.15, seed)
    model = _fit(x, t_x, T)
    kind, reason = model.result_.boundary
    assert kind == "constant_dropout"
    assert reason.startswith("a, b -> infinity with a/(a+b) = p") and "constant dropout probability p = 0.1" in reason
    nested = model.boundary_result_
    assert abs(nested.params["p"] - 0.15) < 3.5 * nested.bse["p"]
    a, b = model.params_["a"], model.params_["b"]
    assert a > 1e5 and a / (a + b) == pytest.approx(nested.params["p"], rel=1e-3)  # the path: towards p


@pytest.mark.parametrize("p", [0.0, 0.15])
def test_never_the_wrong_boundary(p):
    """A sample drawn on a boundary has its maximum there only about half the time (else an interior
    maximum near it): over several samples the diagnosis is the right boundary or none, and none only
    when BG/NBD is at least as good as both nested models."""
    right = "nbd" if p == 0 else "constant_dropout"
    kinds = []
    for seed in range(6):
        x, t_x, T = population(5000, 0.8, 10.0, p, seed)
        model = _fit(x, t_x, T)
        kind = model.result_.boundary and model.result_.boundary[0]
        kinds.append(kind)
        if kind is None:
            for fit in bgnbd_boundary.nested_fits((x, t_x, T, None)).values():
                assert model.log_likelihood_ >= fit.log_likelihood - 1e-6
        else:
            assert kind == right
    assert kinds.count(right) >= 2


def test_an_interior_maximum_has_no_boundary(cdnow_rfm):
    model = BetaGeoModel().fit(cdnow_rfm)
    x, t_x, T = (cdnow_rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    assert model.result_.boundary is None
    assert bgnbd_boundary.diagnose_boundary(model.result_, (x, t_x, T, None)) is None
    # the table form of the statistics
    assert bgnbd_boundary.diagnose_boundary(model.result_, cdnow_rfm[["frequency", "recency", "T"]]) is None
    given = BetaGeoModel.from_params(model.params_.to_dict(), time_unit="W")
    assert bgnbd_boundary.diagnose_boundary(given.result_, (x, t_x, T, None)) is None


def test_a_boundary_is_kept_in_the_result_document():
    x, t_x, T = population(5000, 0.8, 10.0, 0.0, 1)
    result = _fit(x, t_x, T).result_
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["boundary"][0] == "nbd"
    back = _mle.MLEResult.from_dict("BG/NBD", bgnbd.PARAM_NAMES, doc, "W")
    assert back.boundary == result.boundary
    from clv_forecast.errors import ClvInputError

    given = BetaGeoModel.from_params({"r": 1.0, "alpha": 1.0, "a": 1.0, "b": 1.0}, cov=np.eye(4)).result_.to_dict()
    clean = json.loads(json.dumps(given).replace("NaN", "null"))  # (a model file stores NaN as null)
    with pytest.raises(ClvInputError, match=r"m.json: boundary = \"nbd\": must be null or \[kind, reason\]"):
        _mle.check_model_dict(BetaGeoModel, {**clean, "boundary": "nbd"}, _mle.Fields("m.json"))
    _mle.check_model_dict(BetaGeoModel, {**clean, "boundary": ["nbd", "a -> 0"]}, _mle.Fields("m.json"))
    assert "boundary" not in clean  # a fit without a boundary writes the document as before


# ------------------------------------------------------------------------------------------------
# the third limit: a, b -> 0 with a/(a+b) = pi (dropout probability 0 or 1), not a model of the package
# ------------------------------------------------------------------------------------------------


def two_point_population(n, r, alpha, pi, seed, t_max=52.0):
    """(x, t_x, T): as :func:`population`, but a share ``pi`` drops out right after the first repeat purchase
    (p = 1) and the others never (p = 0)."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(1.0, t_max, n)
    N = rng.poisson(rng.gamma(r, 1.0 / alpha, n) * T)
    x = np.where(rng.random(n) < pi, np.minimum(N, 1), N)
    t_x = np.where(x > 0, T * rng.beta(np.maximum(x, 1), N - x + 1), 0.0)
    return x.astype(float), t_x, T


@pytest.mark.parametrize("pi", [0.05, 0.4, 0.9])
def test_two_point_is_bgnbd_at_a_b_to_zero(pi):
    x, t_x, T = _rows()
    x[3:6] = [1.0, 1.0, 2.0]  # (x = 1 carries the mixture)
    limit = bgnbd_boundary.two_point_loglik([0.8, 9.0, pi], x, t_x, T)
    gaps = [np.max(np.abs(bgnbd.loglik(0.8, 9.0, eps * pi, eps * (1 - pi), x, t_x, T) - limit))
            for eps in (1e-5, 1e-7)]  # the gap closes in proportion to a + b
    assert gaps[1] < 1e-4 and gaps[1] < gaps[0] / 50


@pytest.mark.parametrize("seed", [1, 2])
def test_two_point_population_is_named_and_refused(seed):
    x, t_x, T = two_point_population(5000, 0.6, 5.0, 0.4, seed)
    model = _fit(x, t_x, T)
    result = model.result_
    assert result.boundary is None and model.boundary_model() is None
    first = model.problems_[0]
    assert first.startswith("BG/NBD maximum at a limit: a, b -> 0 with a/(a+b) = pi")
    pi = float(first.split("a share pi = ")[1].split(" ")[0])
    assert abs(pi - 0.4) < 0.05
    # the limit's maximum is the BG/NBD supremum: above every nested model and every other start
    params, ll = bgnbd_boundary.fit_two_point((x, t_x, T, None))
    assert ll >= result.log_likelihood - 1e-6 * len(x)
    for fit in bgnbd_boundary.nested_fits((x, t_x, T, None)).values():
        assert ll > fit.log_likelihood + 10
    doc = json.loads(json.dumps(result.to_dict()))
    back = _mle.MLEResult.from_dict("BG/NBD", bgnbd.PARAM_NAMES, doc, "W")
    assert back.limit == result.limit and back.problems[0] == first


def test_no_limit_on_an_interior_maximum_or_a_nested_boundary(cdnow_rfm):
    model = BetaGeoModel().fit(cdnow_rfm)
    assert model.result_.limit is None
    x, t_x, T = population(5000, 0.8, 10.0, 0.0, 1)
    assert _fit(x, t_x, T).result_.limit is None  # the NBD boundary: named as such, not as the limit


def test_a_limit_must_be_text_in_a_model_document():
    from clv_forecast.errors import ClvInputError

    given = BetaGeoModel.from_params({"r": 1.0, "alpha": 1.0, "a": 1.0, "b": 1.0}, cov=np.eye(4)).result_.to_dict()
    clean = json.loads(json.dumps(given).replace("NaN", "null"))  # (a model file stores NaN as null)
    with pytest.raises(ClvInputError, match=r"m.json: limit = 3"):
        _mle.check_model_dict(BetaGeoModel, {**clean, "limit": 3}, _mle.Fields("m.json"))
    _mle.check_model_dict(BetaGeoModel, {**clean, "limit": "a, b -> 0"}, _mle.Fields("m.json"))
