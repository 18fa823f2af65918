r"""Constant dropout: NBD purchases with one geometric dropout probability for every customer.

BG/NBD (Fader, Hardie and Lee 2005, :mod:`clv_forecast.estimators.purchases.bgnbd`) draws each customer's dropout
probability from ``Beta(a, b)``. Its boundary ``a, b -> infinity`` with ``a / (a + b) = p`` fixed is a
Beta distribution concentrated on ``p``: every customer drops out with the same probability ``p``
after each repeat purchase (no heterogeneity in dropout), while the purchase rate is still
``lambda ~ Gamma(r, alpha)``. In that limit ``B(a, b+x) / B(a, b) -> (1-p)^x`` and
``a / (b+x-1) -> p / (1-p)``, so the BG/NBD likelihood tends to

.. math::

    \ell = \ln\Gamma(r+x) - \ln\Gamma(r) + r\ln\alpha + x\ln(1-p)
           + \ln\left[(\alpha+T)^{-(r+x)} + \delta_{x>0}\,\frac{p}{1-p}\,(\alpha+t_x)^{-(r+x)}\right]

evaluated with ``logaddexp`` and fitted on the odds ``o = p / (1 - p)`` (positive: the optimiser's
log-parameter is the log-odds); the result is reported in ``p`` (delta-method covariance).

Predictions: ``P(alive) = 1 / (1 + d_{x>0} o ((alpha+T)/(alpha+t_x))^(r+x))``. A customer alive at
``T`` makes ``min(K, N)`` purchases in ``(T, T+t]``, ``K ~ Geometric(p)`` (he drops out after the K-th)
and ``N ~ Poisson(lambda t)``, so ``E[min(K, N) | lambda] = (1 - E[(1-p)^N]) / p = (1 - e^{-p lambda t}) / p``
and with ``lambda ~ Gamma(r+x, alpha+T)``:

.. math:: E[Y(t) \mid \text{alive}, x, T] = \frac{1}{p}\left[1 - \left(\frac{\alpha+T}{\alpha+T+p\,t}\right)^{r+x}\right],
    \qquad E[X(t)] = \frac{1}{p}\left[1 - \left(\frac{\alpha}{\alpha+p\,t}\right)^{r}\right]

(``-expm1(-(r+x) log1p(p t / (alpha+T))) / p``: exact for small ``p``, where it tends to the NBD's
``(r+x) t / (alpha+T)``). A new customer's count in ``t`` is BG/NBD's (FHL 2005, eq. 8) in the limit:

.. math:: P(X(t) = n) = (1-p)^n\,\mathrm{NB}(n; r, \tfrac{\alpha}{\alpha+t})
          + \delta_{n>0}\,p\,(1-p)^{n-1}\,P(\mathrm{NB}(r, \tfrac{\alpha}{\alpha+t}) \ge n)

:class:`ConstantDropoutModel` (kind ``"constant_dropout"``) is the model of the layer: what a BG/NBD fit on the
boundary ``a, b -> infinity`` becomes (:attr:`clv_forecast.model.ClvModel.boundary_`), or chosen directly
(``--purchase-model constant_dropout``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import special

from .. import _mle
from .._data import ByValue, index_by_value
from ..base import PurchaseModel, future_columns, params_first, params_last

NAME = "NBD with constant dropout"
PARAM_NAMES = ("r", "alpha", "p")
SCALE_FREE_PARAMS = ("r", "p")
PARAM_BOUNDS = {"r": (1e-8, 1e3), "alpha": (1e-8, 1e12), "p": (1e-12, 1.0 - 1e-12)}
_FIT_NAMES = ("r", "alpha", "odds")


def _mixture(r, alpha, log_odds, x, t_x, T):
    a3 = -(r + x) * np.log(alpha + T)
    a4 = np.where(x > 0, log_odds - (r + x) * np.log(alpha + t_x), -np.inf)
    return a3, a4


def loglik(r, alpha, p, frequency, recency, T) -> np.ndarray:
    """Per-customer log-likelihood (module docstring), vectorised; ``0 < p < 1``."""
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    xu, idx = index_by_value(x)
    head = special.gammaln(r + xu) - special.gammaln(r) + r * np.log(alpha) + xu * np.log1p(-p)
    a3, a4 = _mixture(r, alpha, np.log(p) - np.log1p(-p), x, t_x, T)
    return head[idx] + np.logaddexp(a3, a4)


def loglik_derivatives(params, x, t_x, T, weights=None, _by_x: ByValue | None = None):
    """Weighted total log-likelihood, score (3,) and Hessian (3, 3) in (r, alpha, odds), analytic.

    As in BG/NBD, with ``w = e^{A_4 - L}``: ``dL = (1-w) dA_3 + w dA_4`` and
    ``d^2 L = (1-w) d^2A_3 + w d^2A_4 + w(1-w) (dA_4 - dA_3)(dA_4 - dA_3)^T``; the head's odds term is
    ``-x log(1 + o)``.
    """
    r, alpha, o = (np.float64(v) for v in params)  # numpy scalars: overflow gives inf, never an exception
    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    weights = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    by_x = _by_x if _by_x is not None else ByValue.of(x, weights)
    xu, wu_x = by_x.values, by_x.weights
    n = wu_x.sum()
    sx = float(np.dot(wu_x, xu))
    head = (np.dot(wu_x, special.gammaln(r + xu)) - n * special.gammaln(r) + n * r * np.log(alpha)
            - sx * np.log1p(o))
    score = np.array([np.dot(wu_x, special.digamma(r + xu)) - n * special.digamma(r) + n * np.log(alpha),
                      n * r / alpha, -sx / (1.0 + o)])
    hess = np.zeros((3, 3))
    hess[0, 0] = np.dot(wu_x, special.polygamma(1, r + xu)) - n * special.polygamma(1, r)
    hess[0, 1] = n / alpha
    hess[1, 1] = -n * r / alpha / alpha
    hess[2, 2] = sx / (1.0 + o) / (1.0 + o)

    rx = r + x
    log_T, log_tx = np.log(alpha + T), np.log(alpha + t_x)
    inv_T, inv_tx = 1.0 / (alpha + T), 1.0 / (alpha + t_x)
    a3 = -rx * log_T
    a4 = np.where(x > 0, np.log(o) - rx * log_tx, -np.inf)
    big_l = np.logaddexp(a3, a4)
    w = np.exp(a4 - big_l)
    ww = weights * w
    wu = weights - ww
    wwu = ww * (1.0 - w)
    d_r4 = log_T - log_tx
    d_al4 = rx * (inv_T - inv_tx)
    d_o4 = 1.0 / o
    ll = head + np.dot(weights, big_l)
    score += np.array([-np.dot(wu, log_T) - np.dot(ww, log_tx),
                       -np.dot(wu, rx * inv_T) - np.dot(ww, rx * inv_tx),
                       ww.sum() * d_o4])
    wwu_dr, wwu_dal = wwu * d_r4, wwu * d_al4
    s_wwu = wwu.sum()
    hess[0, 0] += np.dot(wwu_dr, d_r4)
    hess[0, 1] += -np.dot(wu, inv_T) - np.dot(ww, inv_tx) + np.dot(wwu_dr, d_al4)
    hess[1, 1] += np.dot(wu * rx, inv_T**2) + np.dot(ww * rx, inv_tx**2) + np.dot(wwu_dal, d_al4)
    hess[0, 2] = wwu_dr.sum() * d_o4
    hess[1, 2] = wwu_dal.sum() * d_o4
    hess[2, 2] += (s_wwu - ww.sum()) * d_o4 * d_o4
    hess = np.triu(hess) + np.triu(hess, 1).T
    return float(ll), score, hess


def _log_odds_dead(r, alpha, p, x, t_x, T) -> np.ndarray:
    return np.where(x > 0, np.log(p) - np.log1p(-p) + (r + x) * np.log1p((T - t_x) / (alpha + t_x)), -np.inf)


def p_alive(frequency, recency, T, r, alpha, p) -> np.ndarray:
    """P(alive | x, t_x, T) = ``1 / (1 + d_{x>0} p/(1-p) ((alpha+T)/(alpha+t_x))^(r+x))``, in [0, 1]."""
    x = np.asarray(frequency, dtype=np.float64)
    odds = _log_odds_dead(r, alpha, p, x, np.asarray(recency, dtype=np.float64), np.asarray(T, dtype=np.float64))
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(odds))


def p_alive_after(t, frequency, recency, T, r, alpha, p) -> np.ndarray:
    r"""P(alive at T + t | x, t_x, T): a customer alive at T with rate lambda drops out at rate ``p lambda`` (one
    chance ``p`` after each Poisson purchase), and ``lambda ~ Gamma(r+x, alpha+T)`` given alive, so

    .. math:: P(\text{alive} \mid x, t_x, T)\left(1 + \frac{p\,t}{\alpha+T}\right)^{-(r+x)}

    (BG/NBD's hypergeometric survival with the Beta distribution a point at ``p``), in log space. ``t`` a scalar
    or a vector of horizons (one column each)."""
    x = np.asarray(frequency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    with np.errstate(over="ignore"):
        log_alive = -np.logaddexp(0.0, _log_odds_dead(r, alpha, p, x, np.asarray(recency, dtype=np.float64), T))
    t, x_, T_, log_alive = future_columns(t, x, T, log_alive)
    return np.exp(log_alive - (r + x_) * np.log1p(p * t / (alpha + T_)))


def expected_if_alive(t, frequency, T, r, alpha, p) -> np.ndarray:
    """Expected purchases in (T, T+t] of a customer alive at T (module docstring). ``t`` a scalar or, for
    arrays of customers, a vector of horizons (one column each)."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(frequency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if t.ndim == 1 and x.ndim == 1:
        x, T = x[:, None], T[:, None]
    return -np.expm1(-(r + x) * np.log1p(p * t / (alpha + T))) / p


def conditional_expected_purchases(t, frequency, recency, T, r, alpha, p) -> np.ndarray:
    """E[Y(t) | x, t_x, T] = P(alive) x expected purchases if alive."""
    alive = p_alive(frequency, recency, T, r, alpha, p)
    if_alive = expected_if_alive(t, frequency, T, r, alpha, p)
    if if_alive.ndim == 2 and alive.ndim == 1:
        alive = alive[:, None]
    return alive * if_alive


def expected_new(t, r, alpha, p) -> np.ndarray:
    """E[X(t)] of a newly acquired customer: ``(1 - (alpha / (alpha + p t))^r) / p``."""
    return -np.expm1(-r * np.log1p(p * np.asarray(t, dtype=np.float64) / alpha)) / p


def fit_statistics(x, t_x, T, weights=None, *, penalizer: float = 0.0, maxiter: int = 200,
                   x0=None, scales=None) -> _mle.MLEResult:
    """Fit to (compressed) statistics; an :class:`~clv_forecast.estimators._mle.MLEResult` in (r, alpha, p)
    with standard errors (the fit runs on the odds; ``x0`` and ``scales`` are in (r, alpha, odds))."""
    from . import nbd

    x = np.asarray(x, dtype=np.float64)
    t_x = np.asarray(t_x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = w > 0
    x, t_x, T, w = x[keep], t_x[keep], T[keep], w[keep]
    _mle.require(bool(np.any(x > 0)), f"{NAME}: no customer has a repeat purchase; nothing can be identified")
    by_x = ByValue.of(x, w)
    if x0 is None:
        x0 = nbd.start(x, T, w) + [0.1]
    fit = _mle.maximize(lambda phi: loglik_derivatives(phi, x, t_x, T, w, _by_x=by_x), x0, _FIT_NAMES,
                        n_obs=float(w.sum()), n_rows=len(x), model=NAME, penalizer=penalizer, maxiter=maxiter,
                        scales=scales)
    r, alpha, o = fit.params.to_numpy()
    jac = np.diag([1.0, 1.0, 1.0 / (1.0 + o) / (1.0 + o)])  # dp/do
    cov = jac @ fit.cov @ jac
    fit.param_names = PARAM_NAMES
    fit.params = pd.Series([r, alpha, o / (1.0 + o)], index=PARAM_NAMES, name="params")
    fit.cov = cov
    fit.scale_free = SCALE_FREE_PARAMS
    fit.bounds = dict(PARAM_BOUNDS)
    return fit


def prob_purchases(n, t, r, alpha, p) -> np.ndarray:
    """P(X(t) = n) of a new customer (module docstring), in log space."""
    n = np.asarray(n, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_nb = (special.gammaln(r + n) - special.gammaln(r) - special.gammaln(n + 1)
                  - r * np.log1p(t / alpha) + special.xlogy(n, t / (alpha + t)))
        first = n * np.log1p(-p) + log_nb
        second = np.where(n > 0, np.log(p) + np.maximum(n - 1, 0) * np.log1p(-p)
                          + np.log(special.betainc(np.maximum(n, 1.0), r, t / (alpha + t))), -np.inf)
    return np.exp(np.logaddexp(first, second))


class ConstantDropoutModel(PurchaseModel):
    """NBD purchases with one dropout probability ``p`` for every customer (module docstring): BG/NBD's
    boundary ``a, b -> infinity`` with ``a / (a + b) = p``.

    Parameters
    ----------
    penalizer : float
        L2 penalty on unit-free parameters, ``penalizer * (r^2 + (alpha / s)^2 + o^2)`` with ``o = p / (1 - p)``
        (the fit's parameter) and ``s`` the data's time per repeat purchase (the same model in every unit).
    maxiter : int
        Iteration limit of the trust-region optimiser.
    """

    kind = "constant_dropout"
    p_alive_without_repeat = ("a customer can drop out only just after a repeat purchase, so one who has made none "
                              "has had no chance to drop out yet; his forecast still falls the longer he has not "
                              "bought, through his purchase rate")
    name = NAME
    param_names = PARAM_NAMES
    scale_free_params = SCALE_FREE_PARAMS
    param_bounds = PARAM_BOUNDS

    def __init__(self, penalizer: float = 0.0, maxiter: int = 200) -> None:
        self.penalizer = penalizer
        self.maxiter = maxiter

    def _fit_statistics(self, x, t_x, T, w) -> _mle.MLEResult:
        from .. import _starts
        from . import nbd

        scales = [1.0, _starts.data_scale_alpha(x, T, w), 1.0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = nbd.fit_statistics(x, t_x, T, w, scales=scales[:2])
        r0, alpha0 = (float(v) for v in start.params)
        x0 = [r0, alpha0, 0.1] if np.isfinite(r0) and np.isfinite(alpha0) else None
        return fit_statistics(x, t_x, T, w, penalizer=self.penalizer, maxiter=self.maxiter, x0=x0, scales=scales)

    _loglik = params_first(loglik)

    @staticmethod
    def _loglik_derivatives(params, frequency, recency, T, weights=None):
        """The analytic derivatives in (r, alpha, odds) carried to (r, alpha, p): ``o = p / (1 - p)``,
        ``do/dp = 1 / (1-p)^2``, ``d2o/dp2 = 2 / (1-p)^3``."""
        r, alpha, p = (np.float64(v) for v in params)
        ll, score, hess = loglik_derivatives([r, alpha, p / (1.0 - p)], frequency, recency, T, weights)
        d1, d2 = 1.0 / (1.0 - p) ** 2, 2.0 / (1.0 - p) ** 3
        jac = np.array([1.0, 1.0, d1])
        hess = hess * jac[:, None] * jac[None, :]
        hess[2, 2] += score[2] * d2
        return ll, score * jac, hess

    _p_alive = params_last(p_alive)

    _expected_if_alive = params_last(expected_if_alive)

    _expected_new = params_last(expected_new)

    _prob_purchases = params_last(prob_purchases)

    _p_alive_after = params_last(p_alive_after)

    def population(self) -> dict:
        """Purchase rates ``lambda ~ Gamma(r, alpha)`` per time unit (the dropout probability is one number,
        ``p``, for everybody: no distribution to draw)."""
        from scipy import stats

        r, alpha, _ = self._check_fitted()
        return {"purchase_rate": stats.gamma(r, scale=1.0 / alpha)}
