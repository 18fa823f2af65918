r"""NBD: purchases without dropout (Ehrenberg's negative binomial distribution model).

Ehrenberg, A. S. C. (1959), "The Pattern of Consumer Purchases", *Applied Statistics* 8(1), 26-41.
Morrison, D. G. and Schmittlein, D. C. (1988), "Generalizing the NBD Model for Customer Purchases:
What Are the Implications and Is It Worth the Effort?", *J. Business & Economic Statistics* 6(2).

A customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` and never drops out. It
is BG/NBD's boundary ``a -> 0`` (every dropout probability ``p ~ Beta(a, b)`` is 0): there
``B(a, b+x) / B(a, b) -> 1`` and the dropout term ``a / (b+x-1)`` vanishes, so the BG/NBD
likelihood (:mod:`clv_forecast.estimators.purchases.bgnbd`) tends to this one, whatever ``b``. For a customer with
``x`` repeat purchases observed for ``T`` time units since the first (recency does not matter):

.. math:: \ell = \ln\Gamma(r+x) - \ln\Gamma(r) + r\ln\alpha - (r+x)\ln(\alpha+T)

    P(\text{alive}) = 1, \qquad E[Y(t) \mid x, T] = \frac{r+x}{\alpha+T}\,t, \qquad
    E[X(t)] = \frac{r}{\alpha}\,t

(the posterior of ``lambda`` is ``Gamma(r+x, alpha+T)``), and a new customer's count in ``t`` is negative
binomial, ``P(X(t) = n) = Gamma(r+n) / (Gamma(r) n!) (alpha/(alpha+t))^r (t/(alpha+t))^n``.

:class:`NBDModel` (kind ``"nbd"``) is the model of the layer: what a BG/NBD fit on the boundary ``a -> 0``
becomes (:attr:`clv_forecast.model.ClvModel.boundary_`), or chosen directly (``--purchase-model nbd``). Pure vectorised kernels in the style of
:mod:`~clv_forecast.estimators.purchases.bgnbd`; :func:`fit_statistics` fits compressed statistics through
:func:`clv_forecast.estimators._mle.maximize`. The likelihood depends on ``(x, T)`` only, so the fit runs on
the distinct pairs.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .. import _mle
from .._data import ByValue
from ..base import PurchaseModel, distinct_pairs, future_columns, params_first, params_last, weighted_derivatives

NAME = "NBD"
PARAM_NAMES = ("r", "alpha")
SCALE_FREE_PARAMS = ("r",)
PARAM_BOUNDS = {"r": (1e-8, 1e3), "alpha": (1e-8, 1e12)}


def loglik(r, alpha, frequency, recency, T) -> np.ndarray:
    """Per-customer NBD log-likelihood (``recency`` is accepted for a uniform signature and unused)."""
    x = np.asarray(frequency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    return special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T)


def loglik_derivatives(params, x, t_x, T, weights=None, _by_x: ByValue | None = None):
    """Weighted total log-likelihood, score (2,) and Hessian (2, 2) in (r, alpha), analytic."""
    r, alpha = (np.float64(v) for v in params)
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    weights = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    by_x = _by_x if _by_x is not None else ByValue.of(x, weights)
    xu, wu = by_x.values, by_x.weights
    n = wu.sum()
    log_t = np.log(alpha + T)
    inv_t = 1.0 / (alpha + T)
    rx = r + x
    ll = (np.dot(wu, special.gammaln(r + xu)) - n * special.gammaln(r) + n * r * np.log(alpha)
          - np.dot(weights * rx, log_t))
    score = np.array([
        np.dot(wu, special.digamma(r + xu)) - n * special.digamma(r) + n * np.log(alpha) - np.dot(weights, log_t),
        n * r / alpha - np.dot(weights * rx, inv_t),
    ])
    h_rr = np.dot(wu, special.polygamma(1, r + xu)) - n * special.polygamma(1, r)
    h_ra = n / alpha - np.dot(weights, inv_t)
    h_aa = -n * r / alpha / alpha + np.dot(weights * rx, inv_t * inv_t)
    return float(ll), score, np.array([[h_rr, h_ra], [h_ra, h_aa]])


def p_alive(frequency, recency, T, r, alpha) -> np.ndarray:
    """P(alive) = 1: nobody drops out."""
    return np.ones(np.shape(np.asarray(frequency, dtype=np.float64)))


def p_alive_after(t, frequency, recency, T, r, alpha) -> np.ndarray:
    """P(alive at T + t) = 1: nobody ever drops out (a scalar ``t``: (n,); a vector of horizons: (n, k))."""
    t, x = future_columns(t, frequency)
    return np.ones(np.broadcast_shapes(t.shape, x.shape))


def expected_if_alive(t, frequency, T, r, alpha) -> np.ndarray:
    """Expected purchases in (T, T+t]: ``(r + x) / (alpha + T) * t``. ``t`` a scalar or, for arrays of
    customers, a vector of horizons (one column each)."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(frequency, dtype=np.float64)
    rate = (r + x) / (alpha + np.asarray(T, dtype=np.float64))
    if t.ndim == 1 and x.ndim == 1:
        return rate[:, None] * t[None, :]
    return rate * t


def conditional_expected_purchases(t, frequency, recency, T, r, alpha) -> np.ndarray:
    """E[Y(t) | x, t_x, T] = P(alive) x expected if alive = ``(r + x) / (alpha + T) * t``."""
    return expected_if_alive(t, frequency, T, r, alpha)


def expected_new(t, r, alpha) -> np.ndarray:
    """E[X(t)] of a newly acquired customer: ``r t / alpha``."""
    return r * np.asarray(t, dtype=np.float64) / alpha


def _pairs(x, T, w):
    """Distinct (x, T) pairs with their total weight (the likelihood depends on nothing else)."""
    xu, tu, inverse = distinct_pairs(x, T)
    if inverse is None:
        return x, T, w
    return xu, tu, np.bincount(inverse, weights=w, minlength=len(xu))


def start(x, T, w) -> list[float]:
    """Method-of-moments start: mean rate ``m = sum(w x) / sum(w T) = r / alpha`` and the spread of the
    per-customer rates ``x / T`` around it give ``r = m^2 / (var - m E[1/T])`` (clipped to [0.05, 50]),
    ``alpha = r / m`` (in the data's time unit: every start scales with the unit)."""
    seen = T > 0
    x, T, w = x[seen], T[seen], w[seen]
    m = max(float(np.dot(w, x) / max(np.dot(w, T), 1e-300)), 1e-12)
    rate = x / T
    var = float(np.average((rate - m) ** 2, weights=w))
    excess = var - m * float(np.average(1.0 / T, weights=w))  # Poisson noise removed
    r = float(np.clip(m * m / excess, 0.05, 50.0)) if excess > 0 else 50.0
    return [r, r / m]


def fit_statistics(x, t_x, T, weights=None, *, penalizer: float = 0.0, maxiter: int = 200,
                   x0=None, scales=None) -> _mle.MLEResult:
    """Fit the NBD to (compressed) statistics; an :class:`~clv_forecast.estimators._mle.MLEResult` with
    standard errors. ``t_x`` is accepted for a uniform signature (the NBD does not use it)."""
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = w > 0
    x, T, w = x[keep], T[keep], w[keep]
    _mle.require(bool(np.any(x > 0)), "NBD: no customer has a repeat purchase; the purchase rate cannot be identified")
    xp, tp, wp = _pairs(x, T, w)
    by_x = ByValue.of(xp, wp)
    x0 = start(xp, tp, wp) if x0 is None else list(x0)
    result = _mle.maximize(lambda phi: loglik_derivatives(phi, xp, None, tp, wp, _by_x=by_x), x0, PARAM_NAMES,
                           n_obs=float(w.sum()), n_rows=len(x), model=NAME, penalizer=penalizer, maxiter=maxiter,
                           scales=scales)
    result.scale_free = SCALE_FREE_PARAMS
    result.bounds = dict(PARAM_BOUNDS)
    return result


def prob_purchases(n, t, r, alpha) -> np.ndarray:
    """P(X(t) = n) of a new customer: the negative binomial pmf, in log space."""
    n = np.asarray(n, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = (special.gammaln(r + n) - special.gammaln(r) - special.gammaln(n + 1)
                 - r * np.log1p(t / alpha) + special.xlogy(n, t / (alpha + t)))
    return np.exp(log_p)


class NBDModel(PurchaseModel):
    """The NBD purchase model (Ehrenberg 1959; module docstring): purchases without dropout.

    Parameters
    ----------
    penalizer : float
        L2 penalty on unit-free parameters, ``penalizer * (r^2 + (alpha / s)^2)`` with ``s`` the data's time per
        repeat purchase (as BG/NBD's: the same model in every time unit).
    maxiter : int
        Iteration limit of the trust-region optimiser.
    """

    kind = "nbd"
    p_alive_without_repeat = "nobody drops out in this model, so P(alive) is 1 for every customer"
    name = NAME
    param_names = PARAM_NAMES
    scale_free_params = SCALE_FREE_PARAMS
    param_bounds = PARAM_BOUNDS

    def __init__(self, penalizer: float = 0.0, maxiter: int = 200) -> None:
        self.penalizer = penalizer
        self.maxiter = maxiter

    def _fit_statistics(self, x, t_x, T, w) -> _mle.MLEResult:
        from .. import _starts

        scales = [1.0, _starts.data_scale_alpha(x, T, w)]
        return fit_statistics(x, t_x, T, w, penalizer=self.penalizer, maxiter=self.maxiter, scales=scales)

    _loglik = params_first(loglik)

    _loglik_derivatives = weighted_derivatives(loglik_derivatives)

    _p_alive = params_last(p_alive)

    _expected_if_alive = params_last(expected_if_alive)

    _expected_new = params_last(expected_new)

    _prob_purchases = params_last(prob_purchases)

    _p_alive_after = params_last(p_alive_after)

    def population(self) -> dict:
        """Purchase rates ``lambda ~ Gamma(r, alpha)`` per time unit (nobody drops out)."""
        from scipy import stats

        r, alpha = self._check_fitted()
        return {"purchase_rate": stats.gamma(r, scale=1.0 / alpha)}
