r"""Gamma-Gamma model of spend per transaction.

Colombo, R. and Jiang, W. (1999), "A stochastic RFM model", *Journal of Interactive Marketing* 13(3).
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis", *Journal of Marketing Research* 42(4), 415-430.
Fader, P. S. and Hardie, B. G. S. (2013), "The Gamma-Gamma Model of Monetary Value".

Each transaction's value is ``z ~ Gamma(p, nu)``; across customers ``nu ~ Gamma(q, gamma)``
(``gamma`` is called ``v`` here). For a customer with ``x`` repeat transactions of mean value
``m`` (the first purchase excluded), the density of ``m`` gives the log-likelihood

.. math:: \ell = \ln\Gamma(px+q) - \ln\Gamma(px) - \ln\Gamma(q) + q\ln v + (px-1)\ln m
          + px\ln x - (px+q)\ln(xm + v)

and the conditional expected spend per transaction

.. math:: E[Z \mid x, m] = \frac{p\,(v + x m)}{px + q - 1}.

The model assumes spend is independent of purchase frequency: :func:`spend_frequency_correlation`
reports the Pearson correlation so that the user can check.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import special

from ...errors import DataWarning, IdentificationError
from .. import _mle
from .._data import ByValue
from ..base import SpendModel, params_first, params_last, weighted_derivatives

PARAM_NAMES = ("p", "q", "v")

#: Where the formulas are finite (a model file or ``from_params`` outside is refused): ``p`` and ``q`` from
#: 1e-12 to 1e15 (``p x + q - 1`` keeps its unit up to 2^53 = 9.0e15), ``v`` (a money scale) from 1e-300
#: to 1e300 (``p (v + x m)`` finite). ``q <= 1`` is valid: the expected spend of customers with
#: ``p x + q <= 1`` is then unbounded, and scoring rejects those rows with that reason.
PARAM_BOUNDS = {"p": (1e-12, 1e15), "q": (1e-12, 1e15), "v": (1e-300, 1e300)}


def loglik(p, q, v, frequency, monetary_value) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood (customers with frequency > 0, monetary value > 0)."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary_value, dtype=np.float64)
    px = p * x
    return (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(v)
            + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v))


def loglik_derivatives(params, x, m, weights=None, _by_x: ByValue | None = None, _sum_log_m=None):
    """Weighted total log-likelihood, score (3,) and Hessian (3, 3) in (p, q, v), analytic.

    The gamma-function terms depend on x alone (a whole number with few distinct values): they are
    evaluated once per distinct x and weighted by the total weight of that x. Only
    ``log(x + v / m)`` and ``1 / (x m + v)`` are evaluated per customer.
    """
    p, q, v = (float(t) for t in params)
    x = np.asarray(x, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    by_x = _by_x if _by_x is not None else ByValue.of(x, w)
    xu, wx_u = by_x.values, by_x.weights  # wx_u: total weight per distinct x
    n = wx_u.sum()
    pxu = p * xu
    with np.errstate(divide="ignore", invalid="ignore"):  # x = 0 entries carry no weight
        log_xu = np.where(xu > 0, np.log(np.where(xu > 0, xu, 1.0)), 0.0)
        g_u = np.where(wx_u > 0, special.gammaln(pxu + q) - special.gammaln(pxu) + pxu * log_xu, 0.0)
        d_u = np.where(wx_u > 0, special.digamma(pxu + q) - special.digamma(pxu), 0.0)
        dq_u = np.where(wx_u > 0, special.digamma(pxu + q), 0.0)
        t_pq = np.where(wx_u > 0, special.polygamma(1, pxu + q), 0.0)
        t_p = np.where(wx_u > 0, special.polygamma(1, pxu), 0.0)
    # log(x m + v) = log m + log(x + v/m): keeping the two parts apart avoids the cancellation of
    # large sums (p * sum(w x log m) - p * sum(w x log(x m + v))) in the objective and the score.
    # (a fit passes by_x and sum(w log m): they do not change between evaluations)
    sum_log_m = np.dot(w, np.log(m)) if _sum_log_m is None else _sum_log_m
    s_ell, s_x_ell, s_inv, s_x_inv, s_inv2, s_x_inv2 = _row_sums(x, m, w, v)
    ll = (np.dot(wx_u, g_u) - (1.0 + q) * sum_log_m - p * s_x_ell - q * s_ell
          + n * (q * np.log(v) - special.gammaln(q)))
    xw_u = wx_u * xu
    score = np.array([
        np.dot(xw_u, d_u + log_xu) - s_x_ell,
        np.dot(wx_u, dq_u) - sum_log_m - s_ell + n * (np.log(v) - special.digamma(q)),
        n * q / v - p * s_x_inv - q * s_inv,
    ])
    h_pp = np.dot(xw_u * xu, t_pq - t_p)
    h_pq = np.dot(xw_u, t_pq)
    h_pv = -s_x_inv
    h_qq = np.dot(wx_u, t_pq) - n * special.polygamma(1, q)
    h_qv = n / v - s_inv
    h_vv = -n * q / v / v + p * s_x_inv2 + q * s_inv2  # (v**2 of a Python float raises OverflowError)
    hess = np.array([[h_pp, h_pq, h_pv], [h_pq, h_qq, h_qv], [h_pv, h_qv, h_vv]])
    return float(ll), score, hess


def _row_sums(x, m, w, v) -> list[float]:
    """The per-customer sums of the Gamma-Gamma likelihood and its derivatives."""
    ell = np.log(x + v / m)
    inv = 1.0 / (x * m + v)
    wx = w * x
    inv2 = inv * inv
    return [np.dot(w, ell), np.dot(wx, ell), np.dot(w, inv), np.dot(wx, inv), np.dot(w, inv2), np.dot(wx, inv2)]


#: mean spends within 2**+-MONEY_SCALE_BITS (about 1e+-18) are fitted as they are; beyond, the fit runs on
#: the spends divided by a power of two near their geometric mean (exact) and ``v`` is scaled back: the
#: model is equivariant in the unit of money, and amounts such as 1e200 would overflow ``(x m + v)^2``
MONEY_SCALE_BITS = 60
#: mean spends of the fit at most this (and at least its inverse): the variance of ``v`` (about ``v^2``)
#: must be a finite double
MAX_SPEND = 1e150


def _money_scale(mean_log_m: float) -> float:
    """1.0, or the power of two the spends are divided by for the fit (see :data:`MONEY_SCALE_BITS`),
    from the weighted mean of their natural logarithms."""
    centre = mean_log_m / np.log(2.0)
    return 1.0 if abs(centre) <= MONEY_SCALE_BITS else float(2.0 ** round(centre))


def conditional_expected_spend(frequency, monetary_value, p, q, v) -> np.ndarray:
    """E[Z | x, m] = p (v + x m) / (p x + q - 1); for x = 0 the population mean p v / (q - 1).

    The posterior of ``nu`` is Gamma(p x + q, v + x m), so ``E[p / nu]`` is finite only when
    ``p x + q > 1``; otherwise the expected spend is ``+inf`` (never a negative number).
    Repeat buyers with a non-positive mean spend are outside the model (its spends are positive):
    NaN, and :meth:`GammaGammaModel.conditional_expected_spend` says how many and which.
    """
    x = np.asarray(frequency, dtype=np.float64)
    m = np.where(x > 0, np.asarray(monetary_value, dtype=np.float64), 0.0)
    shape = p * x + q - 1
    with np.errstate(divide="ignore"):
        spend = np.where(shape > 0, p * (v + x * m) / np.where(shape > 0, shape, 1.0), np.inf)
    # repeat buyers with a non-positive mean spend (returns) are outside the model: no estimate
    return np.where((x > 0) & (m <= 0), np.nan, spend)


def warn_outside_model(x: np.ndarray, m: np.ndarray, index) -> None:
    """Say how many and which repeat buyers have a non-positive mean spend (their estimates are NaN)."""
    outside = (x > 0) & (m <= 0)
    if outside.any():
        ids = index[outside]
        shown = ", ".join(map(str, ids[:10].tolist())) + (" ..." if len(ids) > 10 else "")
        if getattr(index, "name", None) == "row":  # a table indexed by the input's row numbers (scoring)
            shown = f"{'row' if len(ids) == 1 else 'rows'} {shown} of the input"
        warnings.warn(f"Gamma-Gamma: {len(ids)} customer(s) with repeat purchases have a non-positive mean "
                      f"spend, outside the model: their expected spend (and CLV) is NaN: {shown}",
                      DataWarning, stacklevel=3)


def spend_frequency_correlation(frequency, monetary_value, weights=None) -> float:
    """Weighted Pearson correlation of frequency and mean spend among repeat buyers."""
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary_value, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(m) == 0:
        return float("nan")
    cov = np.cov(x, m, aweights=w)
    return float(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))


class GammaGammaModel(SpendModel):
    """Gamma-Gamma spend model fitted by maximum likelihood (see the module docstring).

    Parameters
    ----------
    penalizer : float
        L2 penalty on unit-free parameters: objective ``-loglik / n + penalizer * (p^2 + q^2 + (v / s)^2)``
        with ``s`` the mean spend of the fitted customers (in the same unit of money as ``v``), so that a
        penalised fit is the same model in any unit of money (``v`` rescaled).
    strict : bool
        Customers with a repeat purchase and a non-positive mean spend cannot enter the model.
        By default they are left out of the fit with a :class:`DataWarning` that says how many
        and which; ``strict=True`` raises instead.

    Attributes (after ``fit``)
    --------------------------
    params_, result_, log_likelihood_, n_customers_, excluded_ (ids left out),
    spend_frequency_correlation_ (the model assumes none).
    """

    kind = "gamma_gamma"
    name = "Gamma-Gamma"
    param_names = PARAM_NAMES
    scale_free_params = ("p", "q")
    param_bounds = PARAM_BOUNDS

    def __init__(self, penalizer: float = 0.0, strict: bool = False, initial_params: dict | None = None,
                 maxiter: int = 200) -> None:
        self.penalizer = penalizer
        self.strict = strict
        self.initial_params = initial_params
        self.maxiter = maxiter

    max_spend = MAX_SPEND

    def _fit_statistics(self, xk, mk, wk) -> _mle.MLEResult:
        """The fit on the repeat buyers with a positive mean spend (:meth:`SpendModel.fit`), in a power-of-two
        unit of money near their geometric mean spend, then back in the amounts' own unit."""
        if len(xk) == 0:
            raise IdentificationError("Gamma-Gamma: no customer with a repeat purchase and positive spend to fit")
        if np.ptp(mk) == 0 and len(np.unique(xk)) == 1:
            raise IdentificationError("Gamma-Gamma: every customer has the same frequency and spend; "
                                      "the spend distribution cannot be identified")
        n = float(wk.sum())
        sum_log_m = float(np.dot(wk, np.log(mk)))
        scale = _money_scale(sum_log_m / n)
        ms = mk if scale == 1.0 else mk / scale  # exact: a power of two
        if scale != 1.0:
            sum_log_m -= n * float(np.log(scale))
        by_x = ByValue.of(xk, wk)
        mean_spend = float(np.average(ms, weights=wk))  # in the fit's unit of money: start and penalty scale
        start = self._start([1.0, 1.0, mean_spend])
        if self.initial_params is not None:
            start[2] /= scale
        result = _mle.maximize(
            lambda phi: loglik_derivatives(phi, xk, ms, wk, _by_x=by_x, _sum_log_m=sum_log_m),
            start, PARAM_NAMES,
            n_obs=n, n_rows=len(xk), model=self.name, penalizer=self.penalizer, maxiter=self.maxiter,
            scales=[1.0, 1.0, mean_spend],
        )
        if scale != 1.0:  # back to the amounts' own unit: v scales with money, p and q have no unit
            result.params["v"] *= scale
            result.cov[2, :] *= scale
            result.cov[:, 2] *= scale
            result.log_likelihood -= n * np.log(scale)
        result.extra["spend_frequency_correlation"] = spend_frequency_correlation(xk, mk, wk)
        if result.params["q"] <= 1:
            warnings.warn(f"Gamma-Gamma: fitted q = {result.params['q']:.4g} <= 1: the population mean "
                          "spend is not finite; spend predictions for customers with p x + q <= 1 are inf",
                          DataWarning, stacklevel=3)
        return result

    @property
    def spend_frequency_correlation_(self) -> float:
        """Pearson correlation of frequency and mean spend in the fitted data (the model assumes 0)."""
        self._check_fitted()
        return float(self.result_.extra.get("spend_frequency_correlation", float("nan")))

    # -- kernels (the public predictions are SpendModel's) ---------------------------------
    _loglik = params_first(loglik)

    _loglik_derivatives = weighted_derivatives(loglik_derivatives)

    _expected_spend = params_last(conditional_expected_spend)

    @staticmethod
    def _fit_rows(x, m) -> np.ndarray:
        """Repeat buyers with a positive mean spend (the model's spends are positive)."""
        return (np.asarray(x) > 0) & (np.asarray(m) > 0)

    @classmethod
    def check_inputs(cls, x, m, index) -> None:
        warn_outside_model(x, m, index)
