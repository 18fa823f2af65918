r"""MBG/NBD: the modified beta-geometric / negative-binomial purchase model.

Batislam, E. P., Denizel, M. and Filiztekin, A. (2007), "Empirical validation and comparison of models for
customer base analysis", *International Journal of Research in Marketing* 24(3), 201-209.
Wagner, U. and Hoppe, D. (2008), "Erratum on the MBG/NBD model", *IJRM* 25(3), 225-226.

As in BG/NBD (Fader, Hardie & Lee 2005; :mod:`clv_forecast.estimators.purchases.bgnbd`) an active customer buys as
a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` and drops out with probability ``p ~ Beta(a, b)``
after each repeat purchase; in MBG/NBD he may also drop out right after his *first* purchase (time 0). A customer
with ``x`` repeat purchases has had ``x + 1`` chances to drop out, and one with ``x = 0`` may be dead. For ``x``
repeat purchases, the last at ``t_x``, observed for ``T`` time units since the first:

.. math::

    \ell = \ln\Gamma(r+x) - \ln\Gamma(r) + r\ln\alpha + \ln B(a, b+x+1) - \ln B(a, b)
           + \ln\left[e^{A_3} + e^{A_4}\right]

    A_3 = -(r+x)\ln(\alpha+T), \qquad A_4 = \ln a - \ln(b+x) - (r+x)\ln(\alpha+t_x)

(every ``x``, ``t_x = 0`` when ``x = 0``), evaluated with ``logaddexp``; the beta-function ratio comes from
BG/NBD's sums (:func:`~clv_forecast.estimators.purchases.bgnbd._log_beta_ratio` at ``x + 1``), which do not cancel
when ``b`` is large.

**A mixture of BG/NBD.** A customer survives the first chance with probability ``E[1 - p] = b / (a + b)``; given
that, ``p ~ Beta(a, b + 1)`` and he is a BG/NBD customer with parameters ``(r, alpha, a, b + 1)``; otherwise he
is dead from the start and never buys again. Per customer

.. math:: L_{MBG}(r, \alpha, a, b) = \frac{b}{a+b}\, L_{BG}(r, \alpha, a, b+1) + \delta_{x=0}\,\frac{a}{a+b}

(``B(a, b+x+1) / B(a, b) = b/(a+b) B(a, b+1+x) / B(a, b+1)``), so the predictions are BG/NBD's at ``b + 1``
(its numerically robust kernels and helpers are used, not written again):

.. math::

    P(\text{alive} \mid x, t_x, T) = \left[1 + \frac{a}{b+x}
        \left(\frac{\alpha+T}{\alpha+t_x}\right)^{r+x}\right]^{-1}

    E[Y(t) \mid \text{alive}, x, T] = \frac{a+b+x}{a-1}\left[1 - \left(\frac{\alpha+T}{\alpha+T+t}\right)^{r+x}
        {}_2F_1\!\left(r+x, b+x+1; a+b+x; \tfrac{t}{\alpha+T+t}\right)\right]

    E[X(t)] = \frac{b}{a-1}\left[1 - \left(\frac{\alpha}{\alpha+t}\right)^r
        {}_2F_1\!\left(r, b+1; a+b; \tfrac{t}{\alpha+t}\right)\right]

    P(X(t) = n) = \frac{b}{a+b}\, P_{BG}(X(t) = n;\, r, \alpha, a, b+1) + \delta_{n=0}\,\frac{a}{a+b}

(Batislam et al. 2007, appendix; the conditional expectation as corrected by Wagner & Hoppe 2008). The last is
evaluated in the paper's own form with BG/NBD's beta-function sums (:func:`prob_purchases`). The analytic
score and Hessian follow the same split: BG/NBD's at ``b + 1`` for the repeat buyers plus the derivatives of
``ln(b / (a + b))``, and a two-term mixture for the customers without a repeat purchase (:func:`loglik_derivatives`).

**Boundaries.** ``a -> 0`` (or ``b -> infinity``): no dropout at all, the likelihood tends to the NBD's
(:mod:`~clv_forecast.estimators.purchases.nbd`), exactly as for BG/NBD; a fit whose supremum is there names it and
keeps the NBD's fit (``boundary_result_``), as BG/NBD does. ``a, b -> infinity`` with ``a / (a + b) = p`` is one
dropout probability for everybody *including the first purchase*: that limit is not the layer's
:mod:`~clv_forecast.estimators.purchases.constant_dropout` (whose customers cannot drop out at time 0: its
likelihood lacks the factor ``1 - p`` and the mass ``p`` at ``x = 0``), so no nested model is named there. Nor at
``a, b -> 0`` with ``a / (a + b)`` fixed (that share dead from the start, the others never dropping out: a
zero-inflated NBD, no model of the layer either). A fit running to either keeps the generic problems of
:attr:`~clv_forecast.estimators._mle.MLEResult.problems` (shape parameters beyond 1e5 or below 1e-6, a singular
information matrix, no convergence), so it is not reported as a clean fit (``tests/test_mbgnbd.py`` simulates
both and shows that the limit holds the supremum).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from .. import _mle, _starts
from .._data import ByValue, index_by_value
from ..base import PurchaseModel, once_per_pair, params_first, params_last, weighted_derivatives
from . import _bgnbd_boundary, bgnbd, nbd

NAME = "MBG/NBD"
PARAM_NAMES = ("r", "alpha", "a", "b")
SCALE_FREE_PARAMS = ("r", "a", "b")
#: BG/NBD's ranges (:data:`clv_forecast.estimators.purchases.bgnbd.PARAM_BOUNDS`): every kernel is BG/NBD's at
#: ``b + 1``, whose whole numbers ``b + 1 + x`` stay exact up to ``b = 1e15`` too
PARAM_BOUNDS = dict(bgnbd.PARAM_BOUNDS)
#: each boundary that is a known nested model, in a few words (the line a user sees)
BOUNDARIES = {_bgnbd_boundary.NBD: "a -> 0: the data show no dropout"}


def _log_survive_first(a, b):
    """``ln(b / (a + b))`` and ``ln(a / (a + b))``: surviving / dying at the first purchase (no cancellation)."""
    return -np.log1p(a / b), -np.log1p(b / a)


def loglik(r, alpha, a, b, frequency, recency, T) -> np.ndarray:
    """Per-customer MBG/NBD log-likelihood (module docstring), vectorised; terms in ``x`` alone once per
    distinct frequency."""
    r, alpha, a, b = (np.float64(v) for v in (r, alpha, a, b))
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    xu, idx = index_by_value(x)
    with np.errstate(over="ignore", divide="ignore"):
        head = (special.gammaln(r + xu) - special.gammaln(r) + r * np.log(alpha)
                + bgnbd._log_beta_ratio(a, b, xu + 1.0))
        c4 = np.log(a) - np.log(b + xu)  # ln a - ln(b + x), b itself for x = 0 (not (b + 1) - 1)
        a3 = -(r + x) * np.log(alpha + T)
        a4 = c4[idx] - (r + x) * np.log(alpha + t_x)
        return head[idx] + np.logaddexp(a3, a4)


@dataclass(frozen=True)
class Split:
    """The statistics of a fit, split once: repeat buyers (rows for BG/NBD's derivatives, with their
    :class:`ByValue`) and the customers without a repeat purchase, by distinct T with summed weights."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    w: np.ndarray
    by_x: ByValue
    T0: np.ndarray
    w0: np.ndarray

    @classmethod
    def of(cls, x, t_x, T, w) -> "Split":
        x, t_x, T, w = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T, w))
        pos = x > 0
        codes, values = pd.factorize(T[~pos], sort=False)
        w0 = np.bincount(codes, weights=w[~pos], minlength=len(values)) if len(values) else np.zeros(0)
        x1, w1 = x[pos], w[pos]
        return cls(x1, t_x[pos], T[pos], w1, ByValue.of(x1, w1), np.asarray(values, dtype=np.float64), w0)


def _head_derivatives(a, b):
    """Gradient and Hessian in (a, b) of ``ln(b / (a + b))`` (written so that nothing cancels or overflows)."""
    ab = a + b
    inv2 = 1.0 / ab / ab
    grad = np.array([-1.0 / ab, (a / b) / ab])
    hess = np.array([[inv2, inv2], [inv2, -(a / b) * (a + 2.0 * b) / b * inv2]])
    return grad, hess


def _zero_derivatives(r, alpha, a, b, T0, w0):
    r"""Total, score and Hessian of the customers without a repeat purchase (weights ``w0`` by distinct ``T0``):
    ``L = ln(e^U + e^V)`` with ``U = ln(b/(a+b)) - r ln(1 + T/alpha)`` (alive at T) and ``V = ln(a/(a+b))``
    (dead from the start); ``dL = q dU + (1-q) dV`` and
    ``d^2L = q d^2U + (1-q) d^2V + q(1-q)(dU - dV)(dU - dV)^T`` with ``q = e^{U - L}``."""
    survive, die = _log_survive_first(a, b)
    ell = np.log1p(T0 / alpha)
    u = survive - r * ell
    big_l = np.logaddexp(u, die)
    q = np.exp(u - big_l)
    wq, wv = w0 * q, w0 * (1.0 - q)
    s_q, s_v = wq.sum(), wv.sum()
    g_h, h_h = _head_derivatives(a, b)  # U's (a, b) part is the head's ln(b/(a+b))
    ab = a + b
    d_ta = (T0 / alpha) / (alpha + T0)  # d ln(1 + T/alpha) / d alpha = -d_ta
    # dU per row: (-ell, r d_ta, g_h[0], g_h[1]); dV: (0, 0, (b/a)/(a+b), -1/(a+b))
    dv_a, dv_b = (b / a) / ab, -1.0 / ab
    diff = [-ell, r * d_ta, np.full_like(ell, g_h[0] - dv_a), np.full_like(ell, g_h[1] - dv_b)]  # dU - dV
    score = np.array([-np.dot(wq, ell), r * np.dot(wq, d_ta), s_q * g_h[0] + s_v * dv_a, s_q * g_h[1] + s_v * dv_b])
    hess = np.zeros((4, 4))
    hess[0, 1] = np.dot(wq, d_ta)
    hess[1, 1] = -r * np.dot(wq, d_ta * (2.0 * alpha + T0) / alpha / (alpha + T0))
    inv2 = 1.0 / ab / ab
    hess[2:, 2:] = s_q * h_h + s_v * np.array([[-(b / a) * (b + 2.0 * a) / a * inv2, inv2], [inv2, inv2]])
    wqv = wq * (1.0 - q)
    for i in range(4):  # the mixture's q(1-q)(dU - dV)(dU - dV)^T (4 x 4: no loop over customers)
        for j in range(i, 4):
            hess[i, j] += np.dot(wqv, diff[i] * diff[j])
    return float(np.dot(w0, big_l)), score, np.triu(hess) + np.triu(hess, 1).T


def loglik_derivatives(params, x, t_x, T, weights=None, _split: Split | None = None):
    r"""Weighted total log-likelihood, score (4,) and Hessian (4, 4) in (r, alpha, a, b), analytic.

    From the mixture form (module docstring): the repeat buyers contribute ``ln(b/(a+b))`` plus BG/NBD's
    log-likelihood at ``(r, alpha, a, b + 1)``, whose analytic derivatives
    (:func:`clv_forecast.estimators.purchases.bgnbd.loglik_derivatives`) are those in ``b`` too
    (``d(b+1)/db = 1``); the customers without a repeat purchase contribute the two-term mixture of
    :func:`_zero_derivatives`. ``_split``: the statistics split once per fit (:class:`Split`).
    """
    r, alpha, a, b = (np.float64(v) for v in params)  # numpy scalars: overflow gives inf, never an exception
    if _split is None:
        w = np.ones(np.shape(x)) if weights is None else weights
        _split = Split.of(x, t_x, T, w)
    s = _split
    total, score, hess = 0.0, np.zeros(4), np.zeros((4, 4))
    if s.x.size:
        ll1, s1, h1 = bgnbd.loglik_derivatives([r, alpha, a, b + 1.0], s.x, s.t_x, s.T, s.w, _by_x=s.by_x)
        n1 = s.w.sum()
        g_h, h_h = _head_derivatives(a, b)
        total += ll1 + n1 * _log_survive_first(a, b)[0]
        score += s1
        score[2:] += n1 * g_h
        hess += h1
        hess[2:, 2:] += n1 * h_h
    if s.T0.size:
        ll0, s0, h0 = _zero_derivatives(r, alpha, a, b, s.T0, s.w0)
        total += ll0
        score += s0
        hess += h0
    return float(total), score, hess


def _log_odds_dead(r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """``ln[a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x)]`` for every x (``ln(b + x)`` once per distinct x)."""
    xu, idx = index_by_value(x)
    return (np.log(a) - np.log(b + xu))[idx] + (r + x) * np.log1p((T - t_x) / (alpha + t_x))


def p_alive(frequency, recency, T, r, alpha, a, b) -> np.ndarray:
    """P(alive | x, t_x, T) = ``1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))`` (module docstring), for
    ``x = 0`` too; evaluated as ``1 / (1 + exp(log-odds))``: in [0, 1] for every input."""
    x = np.asarray(frequency, dtype=np.float64)
    odds = np.asarray(_log_odds_dead(r, alpha, a, b, x, np.asarray(recency, dtype=np.float64),
                                     np.asarray(T, dtype=np.float64)), dtype=np.float64)
    with np.errstate(over="ignore"):
        np.exp(odds, out=odds)
    odds += 1.0
    return np.reciprocal(odds, out=odds)


def expected_if_alive(t, frequency, T, r, alpha, a, b, dedupe: bool = True) -> np.ndarray:
    """Expected purchases in (T, T+t] of a customer alive at T: BG/NBD's at ``b + 1`` (his dropout probability
    given x + 1 chances survived is ``Beta(a, b + x + 1)``). ``t`` a scalar or, for arrays of customers, a
    vector of horizons (one column each)."""
    return bgnbd._expected_if_alive(t, frequency, T, r, alpha, a, b + 1.0, dedupe=dedupe)


def p_alive_after(t, frequency, recency, T, r, alpha, a, b) -> np.ndarray:
    r"""P(alive at T + t | x, t_x, T): P(alive) times BG/NBD's survival at ``b + 1``
    (:func:`~clv_forecast.estimators.purchases.bgnbd.log_survival_if_alive`: given alive at T, ``p ~ Beta(a, b+x+1)``,
    ``lambda ~ Gamma(r+x, alpha+T)``, and the next dropout chances come after purchases, at rate ``lambda p``):

    .. math:: P(\text{alive} \mid x, t_x, T)\;{}_2F_1\!\left(r+x, a; a+b+x+1; -\frac{t}{\alpha+T}\right)

    in log space; ``t`` a scalar or a vector of horizons (one column each)."""
    x = np.asarray(frequency, dtype=np.float64)
    log_alive = -np.logaddexp(0.0, _log_odds_dead(r, alpha, a, b, x, np.asarray(recency, dtype=np.float64),
                                                   np.asarray(T, dtype=np.float64)))
    log_s = once_per_pair(bgnbd.log_survival_if_alive, t, x, T, r, alpha, a, b + 1.0)
    if log_s.ndim == 2 and log_alive.ndim == 1:
        log_alive = log_alive[:, None]
    return np.exp(log_alive + log_s)


def conditional_expected_purchases(t, frequency, recency, T, r, alpha, a, b) -> np.ndarray:
    """E[Y(t) | x, t_x, T] = P(alive) x expected purchases if alive (module docstring)."""
    alive = p_alive(frequency, recency, T, r, alpha, a, b)
    if_alive = expected_if_alive(t, frequency, T, r, alpha, a, b)
    if if_alive.ndim == 2 and alive.ndim == 1:
        alive = alive[:, None]
    return alive * if_alive


def expected_purchases(t, r, alpha, a, b) -> np.ndarray:
    r"""E[X(t)] of a customer just acquired: ``b/(a+b)`` times BG/NBD's at ``b + 1`` (module docstring),
    ``b/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b+1; a+b; t/(alpha+t))]``."""
    return np.exp(_log_survive_first(a, b)[0]) * bgnbd.expected_purchases(t, r, alpha, a, b + 1.0)


def prob_purchases(n, t, r, alpha, a, b) -> np.ndarray:
    r"""P(X(t) = n) of a customer just acquired (Batislam et al. 2007), in log space:

    .. math:: \frac{B(a, b+n+1)}{B(a, b)}\,\mathrm{NB}(n; r, \tfrac{\alpha}{\alpha+t})
              + \frac{a}{a+b+n}\frac{B(a, b+n)}{B(a, b)}\,P(\mathrm{NB}(r, \tfrac{\alpha}{\alpha+t}) \ge n)

    (alive after ``n`` purchases, or dead at the chance right after the ``n``-th; for ``n = 0`` the second term is
    ``a/(a+b)``: dead from the start). The beta-function ratios are BG/NBD's sums
    (:func:`~clv_forecast.estimators.purchases.bgnbd._log_beta_ratio`), exact for ``a``, ``b`` up to 1e15 where
    ``betaln`` differences cancel; the negative-binomial terms are BG/NBD's too."""
    n = np.asarray(n, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        first = bgnbd._log_beta_ratio(a, b, n + 1.0) + bgnbd._nbinom_logpmf(n, r, t, alpha)
        tail = np.where(n > 0, bgnbd._nbinom_logsf_below(np.maximum(n, 1.0), r, t, alpha), 0.0)
        second = -np.log1p((b + n) / a) + bgnbd._log_beta_ratio(a, b, n) + tail
    return np.exp(np.logaddexp(first, second))


def diagnose_boundary(result: _mle.MLEResult, nbd_fit: _mle.MLEResult) -> tuple[str, str] | None:
    """None, or ``("nbd", reason)`` when the NBD's maximum reaches the (best) MBG/NBD ``result``: its supremum is
    on ``a -> 0`` (module docstring; the test is BG/NBD's, :func:`_bgnbd_boundary.reaches`)."""
    a, b = (float(result.params[k]) for k in ("a", "b"))
    return _bgnbd_boundary.nbd_limit(result, nbd_fit, "a -> 0", f"reached a = {a:.3g}, b = {b:.3g}, mean dropout "
                                     f"probability a/(a+b) = {a / (a + b):.3g}")


class ModifiedBetaGeoModel(PurchaseModel):
    """MBG/NBD purchase model fitted by maximum likelihood (Batislam, Denizel & Filiztekin 2007; module docstring).

    Parameters
    ----------
    penalizer : float
        L2 penalty on unit-free parameters, ``penalizer * (r^2 + (alpha / s)^2 + a^2 + b^2)`` with ``s`` the data's
        time per repeat purchase (as BG/NBD's: the same model in days, weeks or months, ``alpha`` rescaled).
    initial_params : dict, optional
        The first starting values; by default ``r, alpha`` of the NBD fitted to the same data and ``a = b = 1``.
        When the fit from there is not a clean interior maximum (or the NBD reaches it), the other starts of
        :data:`clv_forecast.estimators._starts.AB_GRID` are tried and the best log-likelihood wins
        (``result_.extra["starts"]`` counts them).
    maxiter : int
        Iteration limit of the trust-region optimiser.

    Attributes (after ``fit``)
    --------------------------
    params_ : pandas.Series (r, alpha, a, b);  result_ : MLEResult (standard errors, covariance, ``boundary``);
    boundary_result_ : the NBD's fit when the supremum is on ``a -> 0``, else None.
    """

    kind = "mbgnbd"
    name = NAME
    boundaries = BOUNDARIES
    param_names = PARAM_NAMES
    scale_free_params = SCALE_FREE_PARAMS
    param_bounds = PARAM_BOUNDS

    def __init__(self, penalizer: float = 0.0, initial_params: dict | None = None, maxiter: int = 200) -> None:
        self.penalizer = penalizer
        self.initial_params = initial_params
        self.maxiter = maxiter

    def _fit_statistics(self, x, t_x, big_t, w) -> _mle.MLEResult:
        """Several starts, the best wins (:func:`_starts.run_starts`), then the boundary diagnosis when the best is
        not a clean interior maximum or the NBD reaches it (:func:`diagnose_boundary`)."""
        split = Split.of(x, t_x, big_t, w)
        n = float(w.sum())
        scales = [1.0, _starts.data_scale_alpha(x, big_t, w), 1.0, 1.0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbd_fit = nbd.fit_statistics(x, t_x, big_t, w, penalizer=self.penalizer, scales=scales[:2])
        r0, alpha0 = (float(v) for v in nbd_fit.params)
        if not (np.isfinite(r0) and np.isfinite(alpha0)):
            r0, alpha0 = nbd.start(x, big_t, w)
        given = None if self.initial_params is None else self._start(())
        starts = _starts.grid(float(np.clip(r0, 1e-3, 1e2)), float(np.clip(alpha0, 1e-6, 1e8)), given)

        def more_needed(result):  # not a clean interior maximum, or the NBD (a -> 0) reaches it
            return bool(result.problems) or _bgnbd_boundary.reaches(nbd_fit, result)

        result = self._fit_from_starts(lambda phi: loglik_derivatives(phi, None, None, None, _split=split), starts,
                                       n_obs=n, n_rows=len(x), scales=scales, more_needed=more_needed)
        self.boundary_result_ = None
        if more_needed(result):
            result.boundary = diagnose_boundary(result, nbd_fit)
            if result.boundary is not None:
                self.boundary_result_ = nbd_fit
        return result

    # -- kernels (the public predictions are PurchaseModel's) ------------------------------
    _loglik = params_first(loglik)

    _loglik_derivatives = weighted_derivatives(loglik_derivatives)

    _p_alive = params_last(p_alive)

    _expected_if_alive = params_last(functools.partial(expected_if_alive, dedupe=False))  # (the base dedupes)

    _expected_new = params_last(expected_purchases)

    _prob_purchases = params_last(prob_purchases)

    _p_alive_after = params_last(p_alive_after)

    def population(self) -> dict:
        """Purchase rates ``lambda ~ Gamma(r, alpha)`` (per time unit) and dropout probabilities ``p ~ Beta(a, b)``
        (at the first purchase and after each repeat purchase), as frozen scipy distributions."""
        from scipy import stats

        r, alpha, a, b = self._check_fitted()
        return {"purchase_rate": stats.gamma(r, scale=1.0 / alpha), "dropout": stats.beta(a, b)}
