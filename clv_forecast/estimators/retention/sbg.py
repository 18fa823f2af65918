r"""sBG: the shifted-beta-geometric model of contractual retention.

Fader, P. S. and Hardie, B. G. S. (2007), "How to Project Customer Retention", *Journal of Interactive
Marketing* 21(1), 76-90. Fader, P. S. and Hardie, B. G. S. (2010), "Customer-Base Valuation in a Contractual
Setting: The Perils of Ignoring Heterogeneity", *Marketing Science* 29(1), 85-93 (DERL).

At the end of each period a customer leaves with probability ``theta``, fixed for him, and ``theta ~
Beta(alpha, beta)`` across customers. ``T``, the period at whose end he leaves, is shifted-geometric given
``theta``; over the cohort (FH 2007, eqs. 4-8):

.. math::

    S(t) = P(T > t) = \frac{B(\alpha, \beta + t)}{B(\alpha, \beta)}
         = \prod_{i=0}^{t-1} \frac{\beta + i}{\alpha + \beta + i}, \qquad
    P(T = t) = \frac{B(\alpha + 1, \beta + t - 1)}{B(\alpha, \beta)} = S(t-1)\,\frac{\alpha}{\alpha + \beta + t - 1}

    r(t) = \frac{S(t)}{S(t - 1)} = \frac{\beta + t - 1}{\alpha + \beta + t - 1}

The retention rate rises with tenure: the customers with a high ``theta`` leave first (the sorting effect the
papers are about). A cohort observed at periods ``0..n`` with ``n_t`` customers at the start of period ``t``
contributes

.. math:: \ell = \sum_{t=1}^{n} (n_{t-1} - n_t) \ln P(T = t) + n_n \ln S(n)

and several cohorts add their contributions. ``ln S(t)`` is summed term by term,
``sum_{i<t} ln((beta+i)/(alpha+beta+i))`` (``log1p(-alpha/(alpha+beta+i))`` where the ratio exceeds 1/2), so no
two large ``ln Gamma`` or ``ln B`` values are subtracted: exact for ``alpha, beta`` up to 1e12, where a
difference of ``betaln`` values keeps only a few digits. The score and the Hessian are sums of the same kind
(:func:`loglik_derivatives`).

DERL (FH 2010, eq. 6; our customer with ``n`` renewals is their ``n - 1``) of a customer who has renewed ``n``
times, at a discount rate ``d`` per period (see :mod:`._base` for what is counted):

.. math::

    \mathrm{DERL}(d \mid n) = \sum_{t > n} \frac{S(t)}{S(n)} \frac{1}{(1+d)^{t-n-1}}
        = \frac{\beta + n}{\alpha + \beta + n}\;
          {}_2F_1\!\left(1, \beta + n + 1; \alpha + \beta + n + 1; \frac{1}{1+d}\right)

(the Beta integral of ``(1 - theta) / (1 - (1 - theta)/(1 + d))`` over ``theta ~ Beta(alpha, beta + n)``, the
posterior of a customer who renewed ``n`` times). scipy's ``hyp2f1`` cannot be used here: near ``z = 1`` (a small
``d``) it returns NaN for a large second argument and is wrong when ``alpha`` is a whole number (measured: 33 %
off at ``alpha = 1, d = 0.0015``). The 2F1 is evaluated instead by Gauss's continued fraction (DLMF 15.7.5 with
``b = 0``), whose partial numerators ``u_j`` are all positive here,

.. math::

    {}_2F_1(1, a; c + 1; z) = \cfrac{1}{1 - \cfrac{u_1 z}{1 - \cfrac{u_2 z}{1 - \cdots}}},\qquad
    u_{2k+1} = \frac{(a + k)(c + k)}{(c + 2k)(c + 2k + 1)},\;
    u_{2k} = \frac{k\,(c - a + k)}{(c + 2k - 1)(c + 2k)}

with ``a = beta + n + 1``, ``c = alpha + beta + n``, summed by the modified Lentz method to full precision in
about ``13 / sqrt(d)`` steps at worst (a few dozen at yearly rates). Without discounting the sum is the expected
remaining lifetime, ``(beta + n) / (alpha - 1)`` future renewals for ``alpha > 1`` (Gauss's sum), infinite for
``alpha <= 1``: the tail of ``S`` falls like ``t^-alpha``.

:class:`ShiftedBetaGeometricModel` (kind ``"sbg"``) is the model of the layer; its inputs and predictions are
:class:`~._base.RetentionModel`'s.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .. import _mle
from ..base import params_first, weighted_derivatives
from ._base import RetentionModel

NAME = "sBG"
PARAM_NAMES = ("alpha", "beta")

#: Both shape parameters from 1e-8 to 1e12: every kernel is finite and exact there (the sums of
#: :func:`_sums` have no cancellation; the continued fraction of :func:`derl` converges faster the larger they
#: are). Towards 1e12 every customer has the same churn probability ``alpha / (alpha + beta)`` (the geometric
#: model, where a fit without heterogeneity in the data runs off).
PARAM_BOUNDS = {name: (1e-8, 1e12) for name in PARAM_NAMES}

#: ``ln S(t)`` at ``t`` above this comes from ``betaln`` (a few digits fewer when beta >> t), not from sums
_SUM_MAX_T = 1 << 20


def _sums(alpha: float, beta: float, top: int, derivatives: bool = True) -> dict:
    r"""For ``t = 0..top``: ``ln S(t) = sum_{i<t} ln((beta+i)/(alpha+beta+i))`` and, with ``derivatives``, the sums
    of its derivatives, each term computed directly (no cancellation):

    ``s1_ab`` :math:`\sum 1/(\alpha+\beta+i)`, ``s1_diff`` :math:`\sum \alpha/((\beta+i)(\alpha+\beta+i))`
    (:math:`\partial_\beta \ln S`), ``s2_ab`` :math:`\sum 1/(\alpha+\beta+i)^2`, ``s2_diff``
    :math:`\sum \alpha(\alpha+2\beta+2i)/((\beta+i)(\alpha+\beta+i))^2` (:math:`-\partial^2_\beta \ln S`).
    """
    i = np.arange(top, dtype=np.float64)
    b, ab = beta + i, alpha + beta + i

    def cumulative(terms):
        return np.concatenate(([0.0], np.cumsum(terms)))

    # (parameters running off to 1e200 in a fit without an interior maximum: squares overflow to inf and their
    # reciprocals are the limits, 0)
    with np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore"):
        ratio = b / ab
        out = {"log": cumulative(np.where(ratio > 0.5, np.log1p(-alpha / ab), np.log(ratio)))}
        if derivatives:
            out.update(s1_ab=cumulative(1.0 / ab), s1_diff=cumulative(alpha / (b * ab)),
                       s2_ab=cumulative(1.0 / ab**2), s2_diff=cumulative(alpha * (b + ab) / (b * ab) ** 2))
    return out


def log_survival(alpha, beta, t) -> np.ndarray:
    """``ln S(t)`` at whole ``t >= 0`` (any shape): sums up to :data:`_SUM_MAX_T`, ``betaln`` beyond."""
    t = np.asarray(t, dtype=np.float64)
    out = np.empty(t.shape)
    small = t <= _SUM_MAX_T
    if small.any():
        top = int(t[small].max()) if t[small].size else 0
        out[small] = _sums(float(alpha), float(beta), top, derivatives=False)["log"][t[small].astype(np.int64)]
    if (~small).any():
        out[~small] = special.betaln(alpha, beta + t[~small]) - special.betaln(alpha, beta)
    return out


def _log_churn_step(alpha, beta, n) -> np.ndarray:
    """``ln(alpha / (alpha + beta + n))``: leaving at the renewal decision after ``n`` renewals, given those."""
    return -np.log1p((beta + np.asarray(n, dtype=np.float64)) / alpha)


def loglik(alpha, beta, renewals, churned) -> np.ndarray:
    """Per-row sBG log-likelihood: ``ln P(T = n + 1)`` for a customer who left after ``n`` renewals
    (``churned = 1``), ``ln S(n)`` for one still a customer after ``n``."""
    n = np.asarray(renewals, dtype=np.float64)
    c = np.asarray(churned, dtype=np.float64)
    return log_survival(alpha, beta, n) + np.where(c > 0, _log_churn_step(alpha, beta, n), 0.0)


def loglik_derivatives(params, renewals, churned, weights=None):
    """Weighted total log-likelihood, score (2,) and Hessian (2, 2) in (alpha, beta), analytic.

    The rows enter through two weight tables by renewals (every row: ``ln S(n)``; the churned: ``ln(alpha /
    (alpha + beta + n))`` too), so the cost is the longest history, not the number of rows."""
    alpha, beta = (float(v) for v in params)
    n = np.asarray(renewals, dtype=np.float64)
    c = np.asarray(churned, dtype=np.float64)
    w = np.ones_like(n) if weights is None else np.asarray(weights, dtype=np.float64)
    idx = n.astype(np.int64)
    top = int(idx.max()) if idx.size else 0
    w_all = np.bincount(idx, weights=w, minlength=top + 1)
    w_churn = np.bincount(idx, weights=w * (c > 0), minlength=top + 1)
    s = _sums(alpha, beta, top)
    k = np.arange(top + 1, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        ab = alpha + beta + k
        bk = beta + k
        step = _log_churn_step(alpha, beta, k)
        ll = np.dot(w_all, s["log"]) + np.dot(w_churn, step)
        g_a = -np.dot(w_all, s["s1_ab"]) + np.dot(w_churn, bk / (alpha * ab))
        g_b = np.dot(w_all, s["s1_diff"]) - np.dot(w_churn, 1.0 / ab)
        inv2 = 1.0 / ab**2
        h_aa = np.dot(w_all, s["s2_ab"]) - np.dot(w_churn, bk * (2 * alpha + bk) / (alpha * ab) ** 2)
        h_ab = np.dot(w_all, s["s2_ab"]) + np.dot(w_churn, inv2)
        h_bb = -np.dot(w_all, s["s2_diff"]) + np.dot(w_churn, inv2)
    return float(ll), np.array([g_a, g_b]), np.array([[h_aa, h_ab], [h_ab, h_bb]])


def retention_rate(alpha, beta, t) -> np.ndarray:
    """``r(t) = (beta + t - 1) / (alpha + beta + t - 1)``, ``t >= 1``."""
    k = np.asarray(t, dtype=np.float64) - 1.0  # whole: exact (beta + t - 1 would round a tiny beta away)
    return (beta + k) / (alpha + beta + k)


def expected_remaining(alpha, beta, n) -> np.ndarray:
    """Expected future renewals after ``n``: ``(beta + n) / (alpha - 1)`` for ``alpha > 1``, else infinite."""
    n = np.asarray(n, dtype=np.float64)
    if alpha <= 1.0:
        return np.full(n.shape, np.inf)
    return (beta + n) / (alpha - 1.0)


#: the continued fraction stops when a step changes it by less than this (relative)
_CF_TOL = 4.0 * np.finfo(float).eps


def hyp2f1_derl(alpha, b, z) -> np.ndarray:
    r"""``2F1(1, b + 1; alpha + b + 1; z)`` for ``alpha, b > 0`` and ``0 <= z < 1`` by Gauss's continued fraction
    (module docstring, ``a = b + 1``, ``c = alpha + b``; ``c - a = alpha - 1`` is taken from ``alpha`` itself, not
    from a difference that loses it when ``b`` is large), vectorised over ``b``; modified Lentz, until every
    element has converged."""
    b = np.asarray(b, dtype=np.float64)
    shape = b.shape
    b = b.ravel()
    alpha, z = float(alpha), float(z)
    tiny = 1e-300
    g = np.ones(b.shape)
    C = g.copy()
    D = np.zeros(b.shape)
    todo = np.arange(b.size)
    limit = int(64.0 / math.sqrt(max(1.0 - z, 1e-300))) + 1000
    for j in range(1, limit):  # the fraction's steps (each vectorised over the elements not yet converged)
        if todo.size == 0:
            break
        k = j // 2
        bb = b[todo]
        c = alpha + bb
        if j % 2:
            u = (bb + 1.0 + k) * (c + k) / ((c + 2 * k) * (c + 2 * k + 1))
        else:
            u = k * (alpha - 1.0 + k) / ((c + 2 * k - 1) * (c + 2 * k))
        step = -u * z
        d = 1.0 + step * D[todo]
        d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
        cn = 1.0 + step / C[todo]
        cn = np.where(np.abs(cn) < tiny, tiny, cn)
        delta = cn * d
        g[todo] *= delta
        C[todo], D[todo] = cn, d
        todo = todo[np.abs(delta - 1.0) > _CF_TOL]
    return (1.0 / g).reshape(shape)


def derl(alpha, beta, d, n) -> np.ndarray:
    """DERL of a customer who has renewed ``n`` times at discount rate ``d`` per period (module docstring):
    ``(beta + n) / (alpha + beta + n) * 2F1(1, beta + n + 1; alpha + beta + n + 1; 1 / (1 + d))``."""
    n = np.asarray(n, dtype=np.float64)
    b = beta + n
    return b / (alpha + b) * hyp2f1_derl(alpha, b, 1.0 / (1.0 + d))


#: the starts after the first: ``alpha + beta`` (the mean churn probability ``alpha / (alpha + beta)`` from the
#: data: the share of customers who left at their first renewal decision)
START_SCALES = (1.0, 0.2, 5.0, 50.0)


def start_mean_churn(renewals, churned, w) -> float:
    """The share of the customers seen at their first renewal decision who left there, clipped to [0.02, 0.98]."""
    seen = (renewals >= 1) | (churned > 0)
    left = seen & (renewals == 0) & (churned > 0)
    total = float(np.dot(w, seen))
    return float(np.clip(np.dot(w, left) / total, 0.02, 0.98)) if total > 0 else 0.5


class ShiftedBetaGeometricModel(RetentionModel):
    """The sBG model of contractual retention (Fader & Hardie 2007; module docstring).

    Parameters
    ----------
    penalizer : float
        L2 penalty ``penalizer * (alpha^2 + beta^2)`` on the mean log-likelihood (both are shape parameters).
    initial_params : dict, optional
        The first start; by default ``alpha / (alpha + beta)`` is the share of customers who left at their first
        renewal decision, with ``alpha + beta = 1``. When the fit from there is not a clean interior maximum, the
        other scales of :data:`START_SCALES` are tried too and the best log-likelihood wins
        (``result_.extra["starts"]`` counts them).
    maxiter : int
        Iteration limit of the trust-region optimiser.

    Examples
    --------
    Fader & Hardie (2007), Table 1, the regular segment: % of a cohort of 1,000 still customers in years 0-7.

    >>> model = ShiftedBetaGeometricModel().fit([1000, 631, 468, 382, 326, 289, 262, 241], time_unit="Y")
    >>> [round(v, 3) for v in model.params_]
    [0.704, 1.182]
    """

    kind = "sbg"
    name = NAME
    param_names = PARAM_NAMES
    scale_free_params = PARAM_NAMES
    param_bounds = PARAM_BOUNDS

    def __init__(self, penalizer: float = 0.0, initial_params: dict | None = None, maxiter: int = 200) -> None:
        self.penalizer = penalizer
        self.initial_params = initial_params
        self.maxiter = maxiter

    def _fit_statistics(self, renewals, churned, w) -> _mle.MLEResult:
        """Several starts (:meth:`_fit_from_starts`) on the rows compressed by (renewals, churned)."""
        idx = renewals.astype(np.int64)
        top = int(idx.max())
        w_all = np.bincount(idx, weights=w, minlength=top + 1)
        w_churn = np.bincount(idx, weights=w * (churned > 0), minlength=top + 1)
        w_alive = w_all - w_churn
        k = np.arange(top + 1, dtype=np.float64)
        left, stay = w_churn > 0, w_alive > 0
        rows_n = np.r_[k[left], k[stay]]
        rows_c = np.r_[np.ones(int(left.sum())), np.zeros(int(stay.sum()))]
        rows_w = np.r_[w_churn[left], w_alive[stay]]
        m = start_mean_churn(renewals, churned, w)
        starts = [[m * s, (1.0 - m) * s] for s in START_SCALES]
        if self.initial_params is not None:
            starts = [self._start(())] + starts
        result = self._fit_from_starts(lambda phi: loglik_derivatives(phi, rows_n, rows_c, rows_w), starts,
                                       n_obs=float(w.sum()), n_rows=len(renewals))
        alpha, beta = (float(v) for v in result.params)
        if result.problems and alpha + beta > _mle.RUNAWAY_HIGH:  # the supremum: one churn probability for all
            result.boundary = ("geometric", f"alpha, beta -> infinity: the data show no heterogeneity in churn (the "
                               f"retention rate does not rise with tenure); every customer leaves with probability "
                               f"alpha/(alpha+beta) = {alpha / (alpha + beta):.4g} a period (the geometric model)")
        return result

    # -- kernels (the public methods are RetentionModel's) -----------------------------------------
    _loglik = params_first(loglik)
    _loglik_derivatives = weighted_derivatives(loglik_derivatives)
    _log_survival = params_first(log_survival)
    _retention_rate = params_first(retention_rate)
    _expected_remaining = params_first(expected_remaining)
    _derl = params_first(derl)

    def population(self) -> dict:
        """The churn probabilities across customers, ``theta ~ Beta(alpha, beta)`` (frozen scipy distribution)."""
        from scipy import stats

        alpha, beta = self._check_fitted()
        return {"churn_probability": stats.beta(alpha, beta)}
