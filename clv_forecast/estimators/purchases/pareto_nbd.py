r"""Pareto/NBD: Poisson purchases with exponential lifetimes, both rates gamma across customers.

Schmittlein, D. C., Morrison, D. G. and Colombo, R. (1987), "Counting Your Customers: Who Are They and
What Will They Do Next?", *Management Science* 33(1), 1-24.
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "A Note on Deriving the Pareto/NBD Model and Related
Expressions" (the likelihood, P(alive) and the conditional expectation used here).
Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "RFM and CLV: Using Iso-Value Curves for Customer
Base Analysis", *Journal of Marketing Research* 42(4), 415-430 (DERT, eq. 2 of its appendix).

While alive a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; his lifetime is
exponential with rate ``mu ~ Gamma(s, beta)``. For ``x`` repeat purchases, the last at ``t_x``, observed
for ``T`` time units since the first:

.. math::

    L = \frac{\Gamma(r+x)\alpha^r\beta^s}{\Gamma(r)}\left[\frac{1}{(\alpha+T)^{r+x}(\beta+T)^s}
        + s \int_{t_x}^{T} \frac{d\tau}{(\alpha+\tau)^{r+x}(\beta+\tau)^{s+1}}\right]

(the second term: death at ``tau`` in ``(t_x, T]``). The paper writes the integral with Gauss's
hypergeometric function (its ``A_0``); here it is written as a ratio to the first term,

.. math::

    \ell = \ln\Gamma(r+x) - \ln\Gamma(r) + r\ln\alpha + s\ln\beta - (r+x)\ln(\alpha+T) - s\ln(\beta+T)
           + \ln(1 + sR), \qquad P(\text{alive} \mid x, t_x, T) = \frac{1}{1 + sR},

    sR = \frac{s}{A}\left[e^{D}\,\Phi(t_x) - \Phi(T)\right], \quad A = r+s+x, \quad
    D = (r+x)\ln\frac{\alpha+T}{\alpha+t_x} + s\ln\frac{\beta+T}{\beta+t_x},

with :math:`\Phi(\tau) = h(r+x, A, w)` for ``alpha >= beta`` and :math:`\Phi(\tau) = (1-w)\,h(s+1, A, w)` for
``alpha < beta``, where :math:`h(q, A, w) = {}_2F_1(1, q; A+1; w)` and
:math:`w = |\alpha-\beta| / (\max(\alpha, \beta) + \tau) \in [0, 1)`. These are the paper's two hypergeometric
forms after Euler's transformation (first parameter 1: every term of the series is positive, and
``1 <= Phi <= A/s``); ``ln(sR)`` is formed in log space (``D`` is never exponentiated) and ``ln(1 + sR)`` with
``logaddexp``. Its error is at most a few ulps of ``ln L`` for every input, also when ``t_x`` is close to ``T``
(where the bracket cancels: its rounding is bounded by ``s Phi / A <= 1`` ulps).

:func:`log_h` evaluates ``h`` and its derivatives: by its power series where ``w <= W_SERIES`` (positive
terms, grouped by frequency so that the coefficients are computed once per distinct ``x``), and otherwise by
quadrature of its integral representation :math:`h = A\int_0^\infty e^{-\psi(v)}dv`,
:math:`\psi(v) = (A-q)v + q\ln(1 + \epsilon(e^v - 1))`, ``epsilon = 1 - w`` (convex in ``v``), on panels
placed where ``psi`` rises by fixed steps (:func:`_convex_integral`). scipy's ``hyp2f1`` is not used: it
returns NaN for large ``r + x`` near ``w = 1`` and loses digits when ``A - q`` is near an integer.

The derivatives of the log-likelihood in ``(r, alpha, s, beta)`` are analytic: the series and the quadrature
give those of ``ln h`` in ``(q, A, ln(1-w))``, and the chain rule does the rest
(:func:`loglik_derivatives`); ``tests/test_contract.py`` checks them against finite differences.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special

from .. import _mle, _starts
from . import _bgnbd_boundary, nbd
from .._data import ByValue
from ..base import PurchaseModel, _unique_pairs, future_columns, params_first, params_last, weighted_derivatives

NAME = "Pareto/NBD"
PARAM_NAMES = ("r", "alpha", "s", "beta")
SCALE_FREE_PARAMS = ("r", "s")
#: Where the formulas are finite and tested (tests/test_pareto_nbd.py: r, s in 1e-4..1e4, alpha, beta in
#: 1e-4..1e8); the bounds leave a margin around that.
PARAM_BOUNDS = {"r": (1e-6, 1e5), "alpha": (1e-6, 1e10), "s": (1e-6, 1e5), "beta": (1e-6, 1e10)}

#: the power series of h serves ``w <= W_SERIES`` (at most ~440 terms; ~70 up to ``W_BAND``); quadrature the rest
W_SERIES, W_BAND = 0.9, 0.5
#: Gauss-Legendre rule of each quadrature panel of :func:`_convex_integral`: 8 points (the rule every result
#: and test since P(X(t) = n) was added has used: a second ``_GL_X`` of 8 points further down replaced the 10 here)
_PANEL_X, _PANEL_W = np.polynomial.legendre.leggauss(8)
#: rises of psi above its minimum at which quadrature panels end (e^-48 of the peak: beyond any digit)
#: quadrature panel ends around the knee of psi (``eps e^v = 1``), in units of v: psi - (its asymptote) decays
#: like e^-(v - knee) to the right, and psi's slope rises on a unit scale up to the knee
_KNEE_BREAKS = np.concatenate((np.arange(-24.0, 8.0), [10.0, 12.0, 15.0, 19.0, 24.0, 30.0, 40.0]))
_LEVELS = np.concatenate(([1 / 64, 1 / 16, 1 / 4, 1 / 2], np.arange(1.0, 12.0), np.arange(12.0, 49.0, 2.0)))


# ---------------------------------------------------------------------------------------------------
# h(q, A, w) = 2F1(1, q; A+1; w) and its derivatives in (q, A, zeta = ln(1 - w))


def _series_terms(w_max: float) -> int:
    """Terms of the series for ``w <= w_max``: the tail, below ``n^2 w^n / (1-w)`` with ``c_n <= 1``, under 1e-19."""
    if w_max <= 0:
        return 3
    return int(max(3, math.ceil(math.log(1e-19 * (1 - w_max) ** 3) / math.log(w_max)) + 2))


def _series_coefficients(q: np.ndarray, A: np.ndarray, n_terms: int, derivatives: bool):
    """Per distinct (q, A): the series coefficients ``c_n = (q)_n / (A+1)_n``, n = 0..N, and (with
    ``derivatives``) the columns whose power sums give h's derivatives in (q, A, w), shape (k, N+1, 10)."""
    k = np.arange(n_terms, dtype=np.float64)
    qk = q[:, None] + k[None, :]
    ak = A[:, None] + 1.0 + k[None, :]
    with np.errstate(under="ignore"):
        c = np.concatenate((np.ones((len(q), 1)), np.cumprod(qk / ak, axis=1)), axis=1)
    c[c < 1e-280] = 0.0  # (no subnormal numbers: see _log_h_series)
    if not derivatives:
        return c
    zero = np.zeros((len(q), 1))
    P = np.concatenate((zero, np.cumsum(1.0 / qk, axis=1)), axis=1)
    Q = np.concatenate((zero, np.cumsum(1.0 / ak, axis=1)), axis=1)
    P2 = np.concatenate((zero, np.cumsum(1.0 / qk**2, axis=1)), axis=1)
    Q2 = np.concatenate((zero, np.cumsum(1.0 / ak**2, axis=1)), axis=1)
    n = np.arange(n_terms + 1, dtype=np.float64)[None, :]
    cols = np.zeros((len(q), n_terms + 1, 10))
    cols[:, :, 0] = c
    cols[:, :, 1] = c * P
    cols[:, :, 2] = -c * Q
    cols[:, :, 3] = c * (P * P - P2)
    cols[:, :, 4] = c * (Q * Q + Q2)
    cols[:, :, 5] = -c * P * Q
    # w-derivatives: coefficients of w^m with m = n - 1 (n - 2 for the second)
    nc = n * c
    cols[:, :-1, 6] = nc[:, 1:]
    cols[:, :-2, 7] = (n * (n - 1) * c)[:, 2:]
    cols[:, :-1, 8] = (nc * P)[:, 1:]
    cols[:, :-1, 9] = -(nc * Q)[:, 1:]
    return cols


def _log_h_series(q, A, w, group, derivatives: bool):
    """``ln h`` (and derivatives in (q, A, zeta)) by the power series; ``group`` indexes the distinct (q, A)
    of every element (q, A are per distinct value, w per element)."""
    n_terms = _series_terms(float(w.max()) if w.size else 0.0)
    coef = _series_coefficients(q, A, n_terms, derivatives)
    order = np.argsort(group, kind="stable")
    ws = w[order]
    powers = np.empty((n_terms + 1, len(w)))  # powers[n] = w^n, one contiguous row per power
    powers[0] = 1.0
    with np.errstate(under="ignore"):
        for n in range(1, n_terms + 1):
            np.multiply(powers[n - 1], ws, out=powers[n])
    powers[powers < 1e-280] = 0.0  # subnormal numbers make the products below 100x slower; these terms are 0
    bounds = np.searchsorted(group[order], np.arange(len(q) + 1))
    if not derivatives:
        h = np.empty(len(w))
        for u in range(len(q)):  # one product per distinct frequency (not per customer)
            lo, hi = bounds[u], bounds[u + 1]
            if hi > lo:
                h[lo:hi] = coef[u] @ powers[:, lo:hi]
        out = np.empty(len(w))
        out[order] = np.log(h)
        return out, None, None
    sums = np.empty((10, len(w)))
    for u in range(len(q)):
        lo, hi = bounds[u], bounds[u + 1]
        if hi > lo:
            sums[:, lo:hi] = coef[u].T @ powers[:, lo:hi]
    sums = sums[:, np.argsort(order, kind="stable")].T
    h = sums[:, 0]
    g = sums / h[:, None]  # derivatives of h divided by h
    # to zeta = ln(1 - w): dw/dzeta = w - 1 = d2w/dzeta2
    m = w - 1.0
    grad = np.stack((g[:, 1], g[:, 2], g[:, 6] * m), axis=1)
    hess = np.empty((len(w), 3, 3))
    hess[:, 0, 0] = g[:, 3]
    hess[:, 1, 1] = g[:, 4]
    hess[:, 2, 2] = g[:, 7] * m * m + g[:, 6] * m
    hess[:, 0, 1] = hess[:, 1, 0] = g[:, 5]
    hess[:, 0, 2] = hess[:, 2, 0] = g[:, 8] * m
    hess[:, 1, 2] = hess[:, 2, 1] = g[:, 9] * m
    hess -= grad[:, :, None] * grad[:, None, :]
    return np.log(h), grad, hess


def _newton_level(f, target, v0, v_lo, v_hi, iterations: int = 60):
    """Roots of a convex function ``f`` (returning value, slope) at ``target``, by Newton's method from a
    start on the outer side of each root (monotone convergence), kept in ``[v_lo, v_hi]``, to 1e-10
    relative: the roots are panel ends of a quadrature, where no more digits change the integral (at 1e-15 the
    iterations ran to their limit on rounding, half the cost of an evaluation).

    ``f`` is evaluated on (n, k) arrays with one row per element of its parameters, and ``f.subset(rows)`` is the
    same function for the given rows: each iteration evaluates only the roots still moving (most converge in a
    few steps, a few take three times as many), as a column of (row, root) pairs."""
    v = v0.copy()
    shape = v.shape
    target, lo, hi = (np.broadcast_to(np.asarray(a, dtype=np.float64), shape) for a in (target, v_lo, v_hi))
    rows, cols = (i.ravel() for i in np.indices(shape))
    for _ in range(iterations):
        current = v[rows, cols]
        value, slope = f.subset(rows)(current[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(slope[:, 0] != 0, (value[:, 0] - target[rows, cols]) / slope[:, 0], 0.0)
        step = np.where(np.isfinite(step), step, 0.0)
        new = np.clip(current - step, lo[rows, cols], hi[rows, cols])
        v[rows, cols] = new
        moving = np.abs(new - current) > 1e-10 * np.maximum(1.0, np.abs(current))
        rows, cols = rows[moving], cols[moving]
        if rows.size == 0:
            break
    return v


def _nonempty_panels(breaks):
    """Panel ends ``(lo, hi)`` between sorted ``breaks`` (n, k), without the empty panels: repeated breaks (every
    level left of a mode at 0, knee breaks clipped to the range) are about half of them, and an empty panel adds
    exactly 0 to the integral. Each row's non-empty panels come first, in order; rows with fewer than the most are
    padded with empty panels at their right end."""
    lo, hi = breaks[:, :-1], breaks[:, 1:]
    full = hi > lo
    keep = int(full.sum(axis=1).max()) if full.size else 0
    order = np.argsort(~full, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(lo, order, axis=1), np.take_along_axis(hi, order, axis=1)


def _convex_integral(psi, v_mode, v_upper, extra_breaks):
    r"""Nodes ``v`` and normalised weights ``p`` (rows sum to 1) of :math:`\int_0^\infty e^{-\psi(v)}dv`
    for convex ``psi`` with ``psi(0) = 0``, minimum at ``v_mode`` (>= 0), the log of the integral, and what
    ``psi.at_nodes`` gave besides the values (for the caller's derivatives at the same nodes).

    ``psi(v)`` returns (value, slope) elementwise for arrays of shape (n, k), ``psi.at_nodes(v)`` the value alone and
    a part of it the caller reuses (or None), and ``psi.subset(rows)`` is the same function for a subset of the
    elements. ``v_upper(level)`` is a point
    right of the mode where ``psi >= psi(v_mode) + level``. Panels end where ``psi`` has risen by each of
    :data:`_LEVELS` above its minimum (both sides of the mode) and at ``extra_breaks`` (where ``psi'``
    changes on a unit scale); each is integrated by an 8-point Gauss-Legendre rule, on which ``e^{-psi}``
    changes by a factor of at most ``e^2``.
    """
    n = len(v_mode)
    psi_mode = psi(v_mode[:, None])[0][:, 0]
    levels = psi_mode[:, None] + _LEVELS[None, :]
    # right of the mode: Newton from the right
    start = np.maximum(v_upper(_LEVELS[None, :]), v_mode[:, None] + 1e-300)
    for _ in range(200):  # make sure every start is right of its root
        low = psi(start)[0] < levels
        if not low.any():
            break
        start = np.where(low, v_mode[:, None] + 2.0 * (start - v_mode[:, None]) + 1.0, start)
    right = _newton_level(psi, levels, start, v_mode[:, None], np.inf)
    v_end = right[:, -1]
    # left of the mode (only where the mode is interior): Newton from v = 0, levels above psi(0) clip to 0
    left = np.zeros((n, len(_LEVELS)))
    interior = v_mode > 0
    if interior.any():
        vm = v_mode[interior][:, None]
        lv = levels[interior]
        left[interior] = _newton_level(psi.subset(interior), lv, np.zeros_like(lv), 0.0, vm)
        left[interior] = np.where(lv >= 0.0, 0.0, left[interior])
    breaks = np.concatenate((np.zeros((n, 1)), v_mode[:, None], right, left,
                             np.clip(extra_breaks, 0.0, v_end[:, None])), axis=1)
    lo, hi = _nonempty_panels(np.sort(breaks, axis=1))
    half = 0.5 * (hi - lo)
    nodes = (lo + half)[:, :, None] + half[:, :, None] * _PANEL_X[None, None, :]
    weights = half[:, :, None] * _PANEL_W[None, None, :]
    nodes = nodes.reshape(n, -1)
    weights = weights.reshape(n, -1)
    value, parts = psi.at_nodes(nodes)
    with np.errstate(under="ignore"):
        mass = weights * np.exp(-(value - psi_mode[:, None]))
    total = mass.sum(axis=1)
    return nodes, mass / total[:, None], np.log(total) - psi_mode, parts


class _Psi:
    r""":math:`\psi(v) = p v + q \ln(1 + \epsilon(e^v - 1))` per element (p = A - q, eps = 1 - w), on (n, k)."""

    def __init__(self, p, q, log_eps):
        self.p, self.q, self.log_eps = p[:, None], q[:, None], log_eps[:, None]
        self.log_1m_eps = np.log(-np.expm1(log_eps))[:, None]

    def inner(self, v):
        """``ln(1 + eps (e^v - 1)) = logaddexp(ln(1 - eps), ln eps + v)``."""
        return np.logaddexp(self.log_1m_eps, self.log_eps + v)

    def __call__(self, v):
        inner = self.inner(v)
        sigma = np.exp(self.log_eps + v - inner)  # eps e^v / (1 + eps (e^v - 1)), in (0, 1]
        return self.p * v + self.q * inner, self.p + self.q * sigma

    def at_nodes(self, v):
        """``psi(v)`` without its slope (the quadrature's nodes need no slope), and :meth:`inner` at ``v``, which
        the derivatives at the same nodes reuse."""
        inner = self.inner(v)
        return self.p * v + self.q * inner, inner

    def subset(self, rows):
        out = _Psi.__new__(_Psi)
        out.p, out.q, out.log_eps, out.log_1m_eps = self.p[rows], self.q[rows], self.log_eps[rows], self.log_1m_eps[rows]
        return out


def _log_h_quadrature(q, A, zeta, derivatives: bool):
    r"""``ln h`` (and derivatives in (q, A, zeta)) by quadrature of :math:`h = A\int_0^\infty e^{-\psi}dv`."""
    p = A - q
    psi = _Psi(p, q, zeta)
    eps = np.exp(zeta)
    # the minimum of psi: psi'(0) = p + q eps; interior (p < 0) at e^v = -p (1 - eps) / (eps A)
    with np.errstate(divide="ignore", invalid="ignore"):
        v_mode = np.where(p + q * eps < 0, np.log(-p) + np.log(-np.expm1(zeta)) - zeta - np.log(A), 0.0)
    v_mode = np.maximum(v_mode, 0.0)

    def v_upper(level):
        # psi(v) >= A v + q ln eps (and >= p v when p > 0): a point where psi >= psi_min + level
        psi_min = psi(v_mode[:, None])[0]
        bound = (psi_min + level - q[:, None] * zeta[:, None]) / A[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            linear = np.where(p[:, None] > 0, (psi_min + level) / p[:, None], np.inf)
        return np.minimum(bound, linear)

    knee = -zeta  # where eps e^v = 1: psi' turns from p towards A over a few units of v
    extra = knee[:, None] + _KNEE_BREAKS[None, :]
    nodes, prob, log_int, inner = _convex_integral(psi, v_mode, v_upper, extra)
    log_h = np.log(A) + log_int
    if not derivatives:
        return log_h, None, None
    omega = -np.expm1(-inner)  # eps (e^v - 1) / (1 + eps (e^v - 1))
    d_q = inner - nodes  # d psi / d q (p = A - q)
    d_A = nodes
    d_z = q[:, None] * omega
    e = lambda f: np.einsum("ij,ij->i", prob, f)  # noqa: E731
    m_q, m_A, m_z = e(d_q), e(d_A), e(d_z)
    grad = np.stack((-m_q, 1.0 / A - m_A, -m_z), axis=1)
    hess = np.empty((len(q), 3, 3))
    cq, cA, cz = d_q - m_q[:, None], d_A - m_A[:, None], d_z - m_z[:, None]
    hess[:, 0, 0] = e(cq * cq)
    hess[:, 1, 1] = e(cA * cA) - 1.0 / A**2
    hess[:, 2, 2] = e(cz * cz) - q * e(omega * (1.0 - omega))
    hess[:, 0, 1] = hess[:, 1, 0] = e(cq * cA)
    hess[:, 0, 2] = hess[:, 2, 0] = e(cq * cz) - e(omega)
    hess[:, 1, 2] = hess[:, 2, 1] = e(cA * cz)
    return log_h, grad, hess


def log_h(q, A, zeta, group=None, derivatives: bool = False):
    r"""``ln 2F1(1, q; A+1; w)`` with ``w = 1 - e^zeta`` in [0, 1), for ``q > 0``, ``A > q - 1``, ``A > 0``.

    ``q`` and ``A`` are given per distinct value and ``group`` (default: one each) maps every element of
    ``zeta`` to its value. Returns ``(ln h, gradient (n, 3), Hessian (n, 3, 3))`` in ``(q, A, zeta)``; the last
    two are None without ``derivatives``. The power series (positive terms) where ``w <= W_SERIES``, quadrature
    (:func:`_log_h_quadrature`) elsewhere.
    """
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    A = np.atleast_1d(np.asarray(A, dtype=np.float64))
    zeta = np.atleast_1d(np.asarray(zeta, dtype=np.float64))
    group = np.arange(len(zeta)) if group is None else np.asarray(group)
    w = -np.expm1(zeta)
    out = np.empty(len(zeta))
    grad = np.empty((len(zeta), 3)) if derivatives else None
    hess = np.empty((len(zeta), 3, 3)) if derivatives else None
    series = w <= W_SERIES
    for band in (w <= W_BAND, series & (w > W_BAND)):  # fewer terms for the small arguments
        if band.any():
            idx = np.flatnonzero(band)
            out[idx], g, h = _log_h_series(q, A, w[idx], group[idx], derivatives)
            if derivatives:
                grad[idx], hess[idx] = g, h
    if not series.all():
        idx = np.flatnonzero(~series)
        gi = group[idx]
        out[idx], g, h = _log_h_quadrature(q[gi], A[gi], zeta[idx], derivatives)
        if derivatives:
            grad[idx], hess[idx] = g, h
    return out, grad, hess


# ---------------------------------------------------------------------------------------------------
# the likelihood


def _dot(a, b) -> float:
    """Inner product of two vectors (einsum: BLAS's dot runs threads that cost more than the sum on a busy machine)."""
    return float(np.einsum("i,i->", a, b))


class Pairs:
    """Rows (x, t_x, T) with their distinct (x, tau) pairs, tau in {t_x} and {T}: ``Phi`` is evaluated once per
    pair. Built once per fit (the pairs do not depend on the parameters)."""

    def __init__(self, x, t_x, T) -> None:
        from .._data import index_by_value

        self.x = np.asarray(x, dtype=np.float64)
        self.t_x = np.asarray(t_x, dtype=np.float64)
        self.T = np.asarray(T, dtype=np.float64)
        n = len(self.x)
        px, ptau, codes = _unique_pairs(np.concatenate((self.x, self.x)), np.concatenate((self.t_x, self.T)))
        self.pair_x, self.pair_tau = np.asarray(px, dtype=np.float64), np.asarray(ptau, dtype=np.float64)
        self.idx_tx, self.idx_T = codes[:n], codes[n:]
        self.xu, self.pair_group = index_by_value(self.pair_x)
        self.row_xu, self.row_group = index_by_value(self.x)
        self.gap = self.T - self.t_x

    def log_phi(self, params, derivatives: bool = False):
        r""":math:`\ln\Phi(\tau)` per pair (and its gradient (P, 4), Hessian (P, 4, 4) in (r, alpha, s, beta))."""
        r, alpha, s, beta = (float(v) for v in params)
        tau = self.pair_tau
        A = r + s + self.xu
        if alpha >= beta:
            q, big, small, sign = r + self.xu, alpha, beta, 1.0
        else:
            q, big, small, sign = np.full(len(self.xu), s + 1.0), beta, alpha, -1.0
        w = (big - small) / (big + tau)
        with np.errstate(divide="ignore"):
            zeta = np.where(w < 0.5, np.log1p(-w), np.log(small + tau) - np.log(big + tau))
        g, grad3, hess3 = log_h(q, A, zeta, self.pair_group, derivatives)
        if sign < 0:
            g = g + zeta
        if not derivatives:
            return g, None, None
        n = len(tau)
        ia, ib = 1.0 / (alpha + tau), 1.0 / (beta + tau)
        J = np.zeros((n, 3, 4))
        J[:, 0, 0 if sign > 0 else 2] = 1.0
        J[:, 1, 0] = J[:, 1, 2] = 1.0
        J[:, 2, 1], J[:, 2, 3] = -sign * ia, sign * ib  # d zeta / d(alpha, beta)
        grad = np.einsum("pi,pia->pa", grad3, J)
        hess = np.einsum("pia,pij,pjb->pab", J, hess3, J)
        zeta_aa, zeta_bb = sign * ia * ia, -sign * ib * ib
        hess[:, 1, 1] += grad3[:, 2] * zeta_aa
        hess[:, 3, 3] += grad3[:, 2] * zeta_bb
        if sign < 0:  # ln Phi = zeta + ln h
            grad += J[:, 2, :]
            hess[:, 1, 1] += zeta_aa
            hess[:, 3, 3] += zeta_bb
        return g, grad, hess

    def terms(self, params, log_phi=None):
        """Per row: ``L1 = ln(s/A) + D + ln Phi(t_x)``, ``L2 = ln(s/A) + ln Phi(T)`` and ``M = ln(1 + sR)``."""
        r, alpha, s, beta = (float(v) for v in params)
        lp = self.log_phi(params)[0] if log_phi is None else log_phi
        a = r + self.x
        D = a * np.log1p(self.gap / (alpha + self.t_x)) + s * np.log1p(self.gap / (beta + self.t_x))
        c = math.log(s) - np.log(r + s + self.x)
        L1 = c + D + lp[self.idx_tx]
        L2 = c + lp[self.idx_T]
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = L1 - L2  # >= 0; 0 when t_x = T (then sR = 0)
            log_sr = np.where(delta > 0, L1 + np.log(-np.expm1(-np.maximum(delta, 0.0))), -np.inf)
        return L1, L2, np.logaddexp(0.0, log_sr), D

    def head(self, params):
        """Per row: ``ln Gamma(r+x) - ln Gamma(r) + r ln alpha + s ln beta - (r+x) ln(alpha+T) - s ln(beta+T)``."""
        r, alpha, s, beta = (float(v) for v in params)
        gam = (special.gammaln(r + self.row_xu) - special.gammaln(r))[self.row_group]
        return gam + r * math.log(alpha) - (r + self.x) * np.log(alpha + self.T) - s * np.log1p(self.T / beta)

    def loglik(self, params) -> np.ndarray:
        return self.head(params) + self.terms(params)[2]

    def derivatives(self, params, weights):
        """Weighted total log-likelihood, score (4,) and Hessian (4, 4): analytic (module docstring)."""
        r, alpha, s, beta = (float(v) for v in params)
        x, t_x, T, wt = self.x, self.t_x, self.T, weights
        lp, gp, hp = self.log_phi(params, derivatives=True)
        L1, L2, M, _ = self.terms(params, lp)
        by_x = ByValue.of(x, wt)
        xu, wu = by_x.values, by_x.weights
        n = wu.sum()
        a = r + x
        # head
        ia_T, ib_T = 1.0 / (alpha + T), 1.0 / (beta + T)
        ll = float(_dot(wu, special.gammaln(r + xu)) - n * special.gammaln(r) + n * r * math.log(alpha)
                   - _dot(wt * a, np.log(alpha + T)) - s * _dot(wt, np.log1p(T / beta)) + _dot(wt, M))
        score = np.array([
            _dot(wu, special.digamma(r + xu)) - n * special.digamma(r) + n * math.log(alpha) - _dot(wt, np.log(alpha + T)),
            n * r / alpha - _dot(wt * a, ia_T),
            -_dot(wt, np.log1p(T / beta)),
            s * _dot(wt, T / (beta * (beta + T))),
        ])
        hess = np.zeros((4, 4))
        hess[0, 0] = _dot(wu, special.polygamma(1, r + xu)) - n * special.polygamma(1, r)
        hess[0, 1] = _dot(wt, T / (alpha * (alpha + T)))
        hess[1, 1] = -n * r / alpha**2 + _dot(wt * a, ia_T**2)
        hess[2, 3] = _dot(wt, T / (beta * (beta + T)))
        hess[3, 3] = -n * s / beta**2 + s * _dot(wt, ib_T**2)
        # M = ln(1 + sR): dM = U1 g1 - U2 g2, d2M = U1 (g1 g1' + H1) - U2 (g2 g2' + H2) - dM dM'
        U1, U2 = np.exp(L1 - M), np.exp(L2 - M)
        A = r + s + x
        ia_tx, ib_tx = 1.0 / (alpha + t_x), 1.0 / (beta + t_x)
        d_a = -self.gap * ia_T * ia_tx  # 1/(alpha+T) - 1/(alpha+t_x)
        d_b = -self.gap * ib_T * ib_tx
        g_c = np.zeros((len(x), 4))
        g_c[:, 0] = -1.0 / A
        g_c[:, 2] = 1.0 / s - 1.0 / A
        g_d = np.zeros((len(x), 4))
        g_d[:, 0] = np.log1p(self.gap * ia_tx)
        g_d[:, 1] = a * d_a
        g_d[:, 2] = np.log1p(self.gap * ib_tx)
        g_d[:, 3] = s * d_b
        g1 = g_c + g_d + gp[self.idx_tx]
        g2 = g_c + gp[self.idx_T]
        w1, w2 = wt * U1, wt * U2
        dM = U1[:, None] * g1 - U2[:, None] * g2
        score += wt @ dM
        h = (w1[:, None] * g1).T @ g1 - (w2[:, None] * g2).T @ g2 - (wt[:, None] * dM).T @ dM
        # second derivatives of c = ln s - ln A (both terms) and of D (first term only)
        wc = float(np.sum(w1 - w2))
        inv_a2 = _dot(w1 - w2, 1.0 / A**2)
        h[0, 0] += inv_a2
        h[0, 2] += inv_a2
        h[2, 0] += inv_a2
        h[2, 2] += inv_a2 - wc / s**2
        h_d01 = _dot(w1, d_a)
        h_d23 = _dot(w1, d_b)
        h[0, 1] += h_d01
        h[1, 0] += h_d01
        h[2, 3] += h_d23
        h[3, 2] += h_d23
        h[1, 1] += _dot(w1 * a, (ia_tx - ia_T) * (ia_tx + ia_T))
        h[3, 3] += s * _dot(w1, (ib_tx - ib_T) * (ib_tx + ib_T))
        # the pairs' Hessians, weighted by the rows that use them
        p1 = np.bincount(self.idx_tx, weights=w1, minlength=len(lp))
        p2 = np.bincount(self.idx_T, weights=w2, minlength=len(lp))
        h += np.tensordot(p1 - p2, hp, axes=1)
        hess = np.triu(hess) + np.triu(hess, 1).T + h
        return ll, score, hess


def loglik(r, alpha, s, beta, frequency, recency, T) -> np.ndarray:
    """Per-customer Pareto/NBD log-likelihood (module docstring), vectorised."""
    return Pairs(frequency, recency, T).loglik((r, alpha, s, beta))


def loglik_derivatives(params, x, t_x, T, weights=None, _pairs: Pairs | None = None):
    """Weighted total log-likelihood, score (4,) and Hessian (4, 4) in (r, alpha, s, beta), analytic."""
    pairs = _pairs if _pairs is not None else Pairs(x, t_x, T)
    w = np.ones(len(pairs.x)) if weights is None else np.asarray(weights, dtype=np.float64)
    return pairs.derivatives(params, w)


def p_alive(frequency, recency, T, r, alpha, s, beta) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + sR) = exp(-M)."""
    return np.exp(-Pairs(frequency, recency, T).terms((r, alpha, s, beta))[2])


def p_alive_after(t, frequency, recency, T, r, alpha, s, beta) -> np.ndarray:
    r"""P(alive at T + t | x, t_x, T), whatever happens in (T, T + t]:

    .. math:: P(\text{alive} \mid x, t_x, T)\left(\frac{\beta+T}{\beta+T+t}\right)^{s}

    Given alive at T the dropout rate's posterior is ``mu ~ Gamma(s, beta+T)`` (an active customer's likelihood is
    ``lambda^x e^{-lambda T} e^{-mu T}``: the exponent of ``mu`` is not raised, and ``lambda`` drops out), and the
    lifetime is memoryless: ``E[e^{-mu t}] = (1 + t/(beta+T))^{-s}`` (FHL 2005 note: the integrand of eq. 22).
    In log space, ``-M - s log1p(t/(beta+T))``; ``t`` a scalar or a vector of horizons (one column each)."""
    log_alive = -Pairs(frequency, recency, T).terms((r, alpha, s, beta))[2]
    t, T_ = future_columns(t, T)
    log_alive = future_columns(t, log_alive)[1]
    return np.exp(log_alive - s * np.log1p(t / (beta + T_)))


def _rate_integral(k, u):
    """``(1 - (1 + u)^-k) / k``, with its limit ``ln(1 + u)`` at k = 0, for k > -1 and u >= 0."""
    k = np.asarray(k, dtype=np.float64)
    lg = np.log1p(u)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.expm1(-k * lg) / k
    return np.where(k == 0, lg, out)


def expected_if_alive(t, frequency, T, r, alpha, s, beta) -> np.ndarray:
    r"""E[Y(t) | alive at T, x, T] (FHL 2005 note, eq. 22 over P(alive)):

    .. math:: \frac{r+x}{\alpha+T}\,\frac{\beta+T}{s-1}\left[1 - \left(\frac{\beta+T}{\beta+T+t}\right)^{s-1}\right]

    written as ``(r+x)/(alpha+T) (beta+T) (1 - (1+u)^(1-s))/(s-1)``, ``u = t/(beta+T)``: finite at s = 1 (the
    limit ``ln(1+u)``) and for s < 1. ``t`` a scalar, or a vector of horizons for arrays of customers (one
    column each)."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(frequency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if t.ndim == 1 and x.ndim == 1:
        x, T = x[:, None], T[:, None]
    return (r + x) / (alpha + T) * (beta + T) * _rate_integral(s - 1.0, t / (beta + T))


def expected_new(t, r, alpha, s, beta) -> np.ndarray:
    r"""E[X(t)] of a new customer: :math:`\frac{r\beta}{\alpha(s-1)}[1 - (\beta/(\beta+t))^{s-1}]` (s = 1: its limit)."""
    t = np.asarray(t, dtype=np.float64)
    return r / alpha * beta * _rate_integral(s - 1.0, t / beta)


#: Gauss-Legendre rule of each geometric panel of :func:`prob_purchases`
_MIX_X, _MIX_W = np.polynomial.legendre.leggauss(8)


def _log_nb(n, t, r, alpha):
    """log P(N(t) = n) for a customer alive throughout (0, t]: the NBD pmf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (special.gammaln(r + n) - special.gammaln(r) - special.gammaln(n + 1) - r * np.log1p(t / alpha)
                + special.xlogy(n, t / (alpha + t)))


def prob_purchases(n, t, r, alpha, s, beta) -> np.ndarray:
    r"""P(X(t) = n) of a new customer: alive through t, or dropped out at :math:`\tau < t` (Pareto II):

    .. math:: P(X(t)=n) = \left(\frac{\beta}{\beta+t}\right)^s \mathrm{NB}(n; t)
              + \int_0^t \mathrm{NB}(n; \tau)\, \frac{s}{\beta}\left(\frac{\beta}{\beta+\tau}\right)^{s+1} d\tau

    with :math:`\mathrm{NB}(n; \tau)` the NBD pmf of ``r, alpha`` over a lifetime ``tau`` (Fader & Hardie 2006,
    "Deriving an expression for P(X(t) = x) under the Pareto/NBD model", eq. 5's mixture before it is integrated in
    closed form). The integral is evaluated by 8-point Gauss-Legendre on geometric panels
    :math:`[t 2^{-k-1}, t 2^{-k}]` down to a thousandth of the smaller of alpha and beta (the integrand is a smooth
    product of powers on each panel): no 2F1 terms and no differences of large numbers; it sums to 1 over n and
    its mean is :func:`expected_new` (tests/test_pareto_nbd.py)."""
    n, t = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(t, dtype=np.float64))
    shape = n.shape
    n, t = n.ravel(), t.ravel()
    top = float(t.max()) if t.size else 0.0
    panels = int(np.clip(math.ceil(math.log2(max(top / (1e-3 * min(alpha, beta)), 2.0))) + 8, 16, 200))
    hi = 2.0 ** -np.arange(panels, dtype=np.float64)  # panel ends as fractions of t: 1, 1/2, ...
    lo = np.append(hi[1:], 0.0)
    mid, half = (hi + lo) / 2, (hi - lo) / 2
    u = (mid[:, None] + half[:, None] * _MIX_X[None, :]).ravel()
    wq = (half[:, None] * _MIX_W[None, :]).ravel()
    out = np.empty(n.size)
    step = max(1, 2_000_000 // u.size)  # rows per block: bounded memory for long inputs
    for i in range(0, n.size, step):
        nb, tb = n[i:i + step, None], t[i:i + step, None]
        tau = tb * u[None, :]
        log_f = math.log(s / beta) - (s + 1.0) * np.log1p(tau / beta)
        integral = tb[:, 0] * (np.exp(_log_nb(nb, tau, r, alpha) + log_f) @ wq)
        alive = np.exp(-s * np.log1p(tb[:, 0] / beta) + _log_nb(nb[:, 0], tb[:, 0], r, alpha))
        out[i:i + step] = alive + integral
    return out.reshape(shape)


class _Chi:
    r""":math:`\chi(u) = y(e^u - 1) + (s - 1)u` per element: the exponent of DERT's integral over ``u = ln(1+v/y)``."""

    def __init__(self, y, s):
        self.y, self.k = np.asarray(y, float)[:, None], np.asarray(s, float)[:, None] - 1.0

    def __call__(self, u):
        with np.errstate(over="ignore"):
            return self.y * np.expm1(u) + self.k * u, self.y * np.exp(u) + self.k

    def at_nodes(self, u):
        """``chi(u)`` without its slope (nothing else to reuse)."""
        with np.errstate(over="ignore"):
            return self.y * np.expm1(u) + self.k * u, None

    def subset(self, rows):
        out = _Chi.__new__(_Chi)
        out.y, out.k = self.y[rows], self.k[rows]
        return out


def _log_residual_factor(s, y) -> np.ndarray:
    r"""``ln J`` with :math:`J(s, y) = \int_0^\infty e^{-v}(1 + v/y)^{-s} dv = y e^y E_s(y)` (0 < J <= 1 for s >= 0),
    by quadrature of :math:`y\int_0^\infty e^{-\chi(u)}du` (:func:`_convex_integral`)."""
    y = np.asarray(y, dtype=np.float64)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64), y.shape)
    chi = _Chi(y, s)
    with np.errstate(divide="ignore"):
        v_mode = np.where(y + s - 1.0 < 0, np.log(np.maximum(1.0 - s, 1e-300)) - np.log(y), 0.0)
    v_mode = np.maximum(v_mode, 0.0)
    knee = -np.log(y)
    extra = knee[:, None] + _KNEE_BREAKS[None, :]
    _, _, log_int, _ = _convex_integral(chi, v_mode, lambda level: v_mode[:, None] + 1.0 + 0.0 * level, extra)
    return np.log(y) + log_int


def dert(delta, frequency, recency, T, r, alpha, s, beta) -> np.ndarray:
    r"""Discounted expected residual transactions at continuous rate ``delta`` per time unit (FHL 2005, JMR):

    .. math:: \mathrm{DERT} = P(\text{alive})\,\frac{r+x}{\alpha+T}\,E\!\left[\frac{1}{\delta+\mu}\right]
              = P(\text{alive})\,\frac{r+x}{\alpha+T}\,\frac{J(s, \delta(\beta+T))}{\delta}

    (the paper's :math:`\delta^{s-1}(\beta+T)^s\,\Psi(s, s; \delta(\beta+T))` with Tricomi's function
    :math:`\Psi(s, s; y) = e^y\Gamma(1-s, y)`): the posterior of ``lambda`` is Gamma(r+x, alpha+T), that of
    ``mu`` Gamma(s, beta+T), and a customer alive at T buys at rate lambda until an exponential(mu) death.
    ``J`` is evaluated once per distinct T."""
    x = np.asarray(frequency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    alive = p_alive(x, recency, T, r, alpha, s, beta)
    tu, inverse = np.unique(T, return_inverse=True)
    log_j = _log_residual_factor(s, delta * (beta + tu))[inverse]
    return alive * (r + x) / (alpha + T) * np.exp(log_j) / delta


# ---------------------------------------------------------------------------------------------------
# the model


#: (s, beta / mean T) of the starts after the first; (r, alpha) come from the NBD fitted to the same data
SB_GRID = ((1.0, 1.0), (0.5, 0.25), (2.0, 4.0), (0.1, 0.05))
#: each boundary that is a known nested model, in a few words (the line a user sees)
BOUNDARIES = {_bgnbd_boundary.NBD: "s -> 0 or beta -> infinity: the data show no dropout"}


def diagnose_boundary(result: _mle.MLEResult, nbd_fit: _mle.MLEResult) -> tuple[str, str] | None:
    r"""None, or ``("nbd", reason)`` when the NBD's maximum reaches the (best) Pareto/NBD ``result``.

    As ``s -> 0`` or ``beta -> infinity`` every dropout rate ``mu ~ Gamma(s, beta)`` goes to 0 (mean
    ``s / beta``): no customer dies and the likelihood tends to the NBD's (Schmittlein et al. 1987 note the
    NBD as this limit). The NBD is nested, so the Pareto/NBD supremum is at least its maximum, and the
    boundary holds the supremum exactly when the NBD reaches the best Pareto/NBD log-likelihood found
    (:func:`_bgnbd_boundary.reaches`, the test BG/NBD uses). Not covered: ``s, beta -> infinity`` with
    ``s / beta`` fixed (one dropout rate for every customer) is a limit no model of the layer is; there the fit
    keeps its generic "no interior maximum" problem."""
    s, beta = (float(result.params[k]) for k in ("s", "beta"))
    return _bgnbd_boundary.nbd_limit(result, nbd_fit, "s -> 0 or beta -> infinity",
                                     f"reached s = {s:.3g}, beta = {beta:.3g}")


class ParetoNBDModel(PurchaseModel):
    """Pareto/NBD purchase model fitted by maximum likelihood (Schmittlein, Morrison & Colombo 1987; module
    docstring).

    Parameters
    ----------
    penalizer : float
        L2 penalty on unit-free parameters: ``penalizer * (r^2 + (alpha/a0)^2 + s^2 + (beta/b0)^2)`` per
        customer, with ``a0`` the data's time per repeat purchase and ``b0`` its mean T (both in the data's
        unit), so that a penalised fit is the same model in every time unit.
    initial_params : dict, optional
        The first start; by default ``r, alpha`` of the NBD fitted to the same data with ``s = 1``,
        ``beta = mean T``. When the fit from there is not a clean interior maximum, the starts of
        :data:`SB_GRID` are tried too and the best log-likelihood wins (``result_.extra["starts"]``).
    maxiter : int
        Iteration limit of the trust-region optimiser.
    """

    kind = "pareto_nbd"
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
        pairs = Pairs(x, t_x, big_t)
        n = float(w.sum())
        mean_t = _dot(w, big_t) / n
        scales = [1.0, _starts.data_scale_alpha(x, big_t, w), 1.0, mean_t]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbd_fit = nbd.fit_statistics(x, t_x, big_t, w, penalizer=self.penalizer, scales=scales[:2])
        r0, alpha0 = (float(v) for v in nbd_fit.params)
        if not (np.isfinite(r0) and np.isfinite(alpha0)):
            r0, alpha0 = nbd.start(x, big_t, w)
        r0, alpha0 = float(np.clip(r0, 1e-3, 1e2)), float(np.clip(alpha0, 1e-6, 1e8))
        starts = [[r0, alpha0, sk, bk * mean_t] for sk, bk in SB_GRID]
        if self.initial_params is not None:
            starts = [self._start(())] + starts

        def more_needed(result):  # not a clean interior maximum, or the NBD (no dropout) reaches it
            return bool(result.problems) or _bgnbd_boundary.reaches(nbd_fit, result)

        result = self._fit_from_starts(lambda phi: pairs.derivatives(phi, w), starts, n_obs=n, n_rows=len(x),
                                       scales=scales, more_needed=more_needed, stop_outside=True)
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

    _expected_if_alive = params_last(expected_if_alive)

    _expected_new = params_last(expected_new)

    _prob_purchases = params_last(prob_purchases)

    _dert = params_last(dert)

    _p_alive_after = params_last(p_alive_after)

    def population(self) -> dict:
        """Purchase rates ``lambda ~ Gamma(r, alpha)`` and dropout rates ``mu ~ Gamma(s, beta)`` per time unit."""
        from scipy import stats

        r, alpha, s, beta = self._check_fitted()
        return {"purchase_rate": stats.gamma(r, scale=1.0 / alpha), "dropout_rate": stats.gamma(s, scale=1.0 / beta)}
