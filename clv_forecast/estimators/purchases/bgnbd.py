r"""BG/NBD: the beta-geometric / negative-binomial purchase model.

Fader, P. S., Hardie, B. G. S. and Lee, K. L. (2005), "'Counting Your Customers' the Easy Way:
An Alternative to the Pareto/NBD Model", *Marketing Science* 24(2), 275-284.
Fader, P. S. and Hardie, B. G. S. (2013), "Overcoming the BG/NBD Model's #NUM! Error Problem"
(the numerically stable log-likelihood used here).

While active, a customer buys as a Poisson process with rate ``lambda ~ Gamma(r, alpha)``; after
each repeat purchase he drops out with probability ``p ~ Beta(a, b)``. For a customer with ``x``
repeat purchases, the last at ``t_x``, observed for ``T`` time units since his first purchase:

.. math::

    \ell = \ln\Gamma(r+x) - \ln\Gamma(r) + r\ln\alpha + \ln B(a, b+x) - \ln B(a, b)
           + \ln\left[e^{A_3} + \delta_{x>0}\, e^{A_4}\right]

    A_3 = -(r+x)\ln(\alpha+T), \qquad A_4 = \ln a - \ln(b+x-1) - (r+x)\ln(\alpha+t_x)

The last term is evaluated with ``logaddexp``: no power of a large number is ever formed.

The math lives in pure vectorised functions (``loglik``, ``loglik_derivatives``,
``expected_purchases``, ``conditional_expected_purchases``, ``p_alive``, ``prob_purchases``);
:class:`BetaGeoModel` holds the fitted state.
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict

import numpy as np
import pandas as pd
from scipy import special

from ...errors import ClvInputError
from ...units import Duration
from .. import _mle, _starts
from . import _bgnbd_boundary as bgnbd_boundary, nbd
from .._data import ByValue, index_by_value
from ..base import (PurchaseModel, _unique_pairs, distinct_pairs,  # noqa: F401  (bgnbd.distinct_pairs: old name)
                    once_per_pair, params_first, params_last, weighted_derivatives)

PARAM_NAMES = ("r", "alpha", "a", "b")

#: Where the formulas are finite, accurate and fast (a model file or ``from_params`` outside is refused):
#:
#: * ``a``, ``b`` up to 1e15: ``b + x - 1`` and ``a + b + x - 1`` must keep every unit of the purchase count
#:   (doubles hold whole numbers exactly up to 2^53 = 9.0e15). Towards that end the dropout is nearly
#:   deterministic (the geometric limit, ``p = a/(a+b)``); the closed form and its series
#:   (:func:`_if_alive_series`) serve it at the usual cost (tested up to 1e15).
#: * ``r`` up to 1e3: ``r + x`` is a parameter of every hypergeometric form, and scipy's ``hyp2f1`` costs
#:   grow with it (10k customers: 0.13 s at r = 1, 0.9 s at 1e3, 4 s at 1e4); at r = 1e3 the purchase
#:   rates differ by 3 % between customers, practically the homogeneous limit.
#: * ``alpha`` up to 1e12 time units; every parameter at least 1e-8 (tested: finite and fast there).
PARAM_BOUNDS = {"r": (1e-8, 1e3), "alpha": (1e-8, 1e12), "a": (1e-8, 1e15), "b": (1e-8, 1e15)}


def _log_a4_constant(a: float, b: float, xu: np.ndarray) -> np.ndarray:
    """``ln a - ln(b + x - 1)`` for x > 0 and ``-inf`` for x = 0 (no dropout term)."""
    out = np.full(xu.shape, -np.inf)
    pos = xu > 0
    out[pos] = np.log(a) - np.log(b + xu[pos] - 1.0)
    return out


#: Above this frequency the beta-function ratios are taken from scipy's gamma functions, not summed.
_SUM_FORM_MAX_X = 1_000_000


def _beta_ratio_sums(a: float, b: float, xu: np.ndarray) -> dict | None:
    r"""The ratio :math:`B(a, b+x) / B(a, b)` and its derivatives for whole frequencies ``xu``, as sums
    that do not cancel, or None when a frequency is not a whole number in ``[0, _SUM_FORM_MAX_X]``.

    For whole ``x``: :math:`\ln B(a, b+x) - \ln B(a, b) = \sum_{k<x} \ln\frac{b+k}{a+b+k}`, and the
    digamma and trigamma differences of its derivatives are the sums :math:`\sum_k 1/(c+k)` and
    :math:`\sum_k 1/(c+k)^2`. Written as differences of gamma functions these cancel when ``b`` is
    large (``betaln(5.2e4, 4.1e10 + x) - betaln(5.2e4, 4.1e10)``: up to 1.3e-4 per customer lost, and an
    optimiser then follows the noise); every term here is computed directly, each to full precision.
    Keys: ``log`` (the log ratio), ``s1_ab`` (:math:`\sum 1/(a+b+k)`), ``s1_diff``
    (:math:`\sum 1/(b+k) - 1/(a+b+k)`), ``s2_ab`` (:math:`\sum 1/(a+b+k)^2`), ``s2_diff``
    (:math:`\sum 1/(b+k)^2 - 1/(a+b+k)^2`).
    """
    xi = xu.astype(np.int64)
    if xu.size == 0 or not np.array_equal(xi, xu) or xi.min() < 0 or xi.max() > _SUM_FORM_MAX_X:
        return None
    k = np.arange(int(xi.max()), dtype=np.float64)
    bk, abk = b + k, a + b + k

    def cumulative(terms: np.ndarray) -> np.ndarray:
        return np.concatenate(([0.0], np.cumsum(terms)))[xi]

    # (a and b running off to 1e200 in a fit without an interior maximum: products overflow to inf and
    # their reciprocals are then the limits, 0)
    with np.errstate(divide="ignore", over="ignore", under="ignore"):
        ratio = bk / abk
        log_terms = np.where(ratio > 0.5, np.log1p(-a / abk), np.log(ratio))
        return {"log": cumulative(log_terms), "s1_ab": cumulative(1.0 / abk),
                "s1_diff": cumulative(a / (bk * abk)), "s2_ab": cumulative(1.0 / abk**2),
                "s2_diff": cumulative(a * (bk + abk) / (abk * bk) ** 2)}


def _log_beta_ratio(a: float, b: float, xu: np.ndarray) -> np.ndarray:
    """``ln B(a, b + x) - ln B(a, b)`` per distinct frequency (:func:`_beta_ratio_sums`, else scipy)."""
    sums = _beta_ratio_sums(a, b, xu)
    return sums["log"] if sums is not None else special.betaln(a, b + xu) - special.betaln(a, b)


def loglik(r, alpha, a, b, frequency, recency, T) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (numerically stable form), vectorised."""
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    xu, idx = index_by_value(x)
    head = (special.gammaln(r + xu) - special.gammaln(r) + r * np.log(alpha) + _log_beta_ratio(a, b, xu))
    a3 = -(r + x) * np.log(alpha + T)
    a4 = _log_a4_constant(a, b, xu)[idx] - (r + x) * np.log(alpha + t_x)
    return head[idx] + np.logaddexp(a3, a4)


def loglik_derivatives(params, x, t_x, T, weights=None, _by_x: ByValue | None = None):
    """Weighted total log-likelihood, score (4,) and Hessian (4, 4) in (r, alpha, a, b).

    All derivatives are analytic. With ``w = e^{A_4 - L}`` the weight of the dropout term in
    ``L = ln(e^{A_3} + e^{A_4})``: ``dL = (1-w) dA_3 + w dA_4`` and
    ``d^2 L = (1-w) d^2A_3 + w d^2A_4 + w(1-w) (dA_4 - dA_3)(dA_4 - dA_3)^T``.
    """
    r, alpha, a, b = (float(v) for v in params)
    x = np.asarray(x, dtype=np.float64)
    weights = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    by_x = _by_x if _by_x is not None else ByValue.of(x, weights)  # (a fit passes it: fixed per fit)
    xu, idx, wu_x = by_x.values, by_x.index, by_x.weights  # wu_x: total weight per distinct x
    n = wu_x.sum()

    # Terms in x alone: A1 + A2, summed with the per-x weights. The beta-function ratio and its (a, b)
    # derivatives as sums over whole frequencies (no cancellation when b is large: _beta_ratio_sums).
    g_rx, d_rx, t_rx = special.gammaln(r + xu), special.digamma(r + xu), special.polygamma(1, r + xu)
    sums = _beta_ratio_sums(a, b, xu)
    if sums is None:  # frequencies that are not whole numbers: the gamma-function differences
        d_bx, d_abx = special.digamma(b + xu), special.digamma(a + b + xu)
        t_bx, t_abx = special.polygamma(1, b + xu), special.polygamma(1, a + b + xu)
        d_ab, d_b = special.digamma(a + b), special.digamma(b)
        t_ab, t_b = special.polygamma(1, a + b), special.polygamma(1, b)
        sums = {"log": special.betaln(a, b + xu) - special.betaln(a, b), "s1_ab": d_abx - d_ab,
                "s1_diff": (d_bx - d_b) - (d_abx - d_ab), "s2_ab": t_ab - t_abx,
                "s2_diff": (t_b - t_bx) - (t_ab - t_abx)}
    head_ll = np.dot(wu_x, g_rx - special.gammaln(r) + r * np.log(alpha) + sums["log"])
    d_r, t_r = special.digamma(r), special.polygamma(1, r)
    score = np.array([
        np.dot(wu_x, d_rx) - n * d_r + n * np.log(alpha),
        n * r / alpha,
        -np.dot(wu_x, sums["s1_ab"]),
        np.dot(wu_x, sums["s1_diff"]),
    ])
    hess = np.zeros((4, 4))
    hess[0, 0] = np.dot(wu_x, t_rx) - n * t_r
    hess[0, 1] = n / alpha
    hess[1, 1] = -n * r / alpha / alpha
    hess[2, 2] = np.dot(wu_x, sums["s2_ab"])
    hess[2, 3] = np.dot(wu_x, sums["s2_ab"])
    hess[3, 3] = -np.dot(wu_x, sums["s2_diff"])

    # Per-row mixture term L = logaddexp(A3, A4).
    c4 = _log_a4_constant(a, b, xu)
    inv_b = np.zeros_like(xu)
    inv_b[xu > 0] = 1.0 / (b + xu[xu > 0] - 1.0)
    rx = r + x
    inv_T, inv_tx = 1.0 / (alpha + T), 1.0 / (alpha + t_x)
    log_T, log_tx = np.log(alpha + T), np.log(alpha + t_x)
    a3 = -rx * log_T
    a4 = c4[idx] - rx * log_tx
    big_l = np.logaddexp(a3, a4)
    w = np.exp(a4 - big_l)
    ib = inv_b[idx]
    ww = weights * w
    wu = weights - ww
    wwu = ww * (1.0 - w)
    d_r4 = log_T - log_tx
    d_al4 = rx * (inv_T - inv_tx)

    ll = head_ll + np.dot(weights, big_l)
    score += np.array([
        -np.dot(wu, log_T) - np.dot(ww, log_tx),
        -np.dot(wu, rx * inv_T) - np.dot(ww, rx * inv_tx),
        ww.sum() / a,
        -np.dot(ww, ib),
    ])
    wwu_dr, wwu_dal = wwu * d_r4, wwu * d_al4
    hess[0, 0] += np.dot(wwu_dr, d_r4)
    hess[0, 1] += -np.dot(wu, inv_T) - np.dot(ww, inv_tx) + np.dot(wwu_dr, d_al4)
    hess[1, 1] += np.dot(wu * rx, inv_T**2) + np.dot(ww * rx, inv_tx**2) + np.dot(wwu_dal, d_al4)
    s_wwu = wwu.sum()
    hess[0, 2] = wwu_dr.sum() / a
    hess[0, 3] = -np.dot(wwu_dr, ib)
    hess[1, 2] = wwu_dal.sum() / a
    hess[1, 3] = -np.dot(wwu_dal, ib)
    hess[2, 2] += (s_wwu - ww.sum()) / a / a  # (a / a: no OverflowError when a runs off to 1e200)
    hess[2, 3] += -np.dot(wwu, ib) / a
    hess[3, 3] += np.dot(ww, ib**2) + np.dot(wwu, ib**2)
    hess = np.triu(hess) + np.triu(hess, 1).T
    return float(ll), score, hess


def expected_purchases(t, r, alpha, a, b) -> np.ndarray:
    r"""E[X(t)] for a customer just acquired (FHL 2005, eq. 9).

    .. math:: \frac{a+b-1}{a-1}\left[1 - \left(\frac{\alpha}{\alpha+t}\right)^r
              {}_2F_1\!\left(r, b; a+b-1; \frac{t}{\alpha+t}\right)\right]

    This is the conditional expectation of a customer with x = 0 observed for T = 0 (who is alive
    for sure), so it shares that function's numerically robust evaluation.
    """
    t = np.asarray(t, dtype=np.float64)
    return _expected_if_alive(t, 0.0, 0.0, r, alpha, a, b)


def _log_odds_dead(r, alpha, a, b, x, t_x, T) -> np.ndarray:
    """``ln[a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)]`` for x > 0, ``-inf`` for x = 0."""
    xu, idx = index_by_value(x)
    return _log_a4_constant(a, b, xu)[idx] + (r + x) * np.log1p((T - t_x) / (alpha + t_x))


def p_alive(frequency, recency, T, r, alpha, a, b) -> np.ndarray:
    r"""P(active | x, t_x, T) (FHL 2005, eq. 11): ``1 / (1 + d_{x>0} a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))``.

    Evaluated as ``1 / (1 + exp(log-odds))`` (``exp`` overflowing to inf gives 0, ``-inf`` gives 1):
    in [0, 1] for every input, accurate at both ends, and cheaper than ``scipy.special.expit``.
    """
    x = np.asarray(frequency, dtype=np.float64)
    odds = np.asarray(_log_odds_dead(r, alpha, a, b, x, np.asarray(recency, float), np.asarray(T, float)))
    with np.errstate(over="ignore"):
        np.exp(odds, out=odds)
    odds += 1.0
    return np.reciprocal(odds, out=odds)


def _bracket_forms(t, x, T, r, alpha, a, b) -> np.ndarray:
    """``1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)`` with ``z = t/(alpha+T+t)``.

    Three equal forms of the same quantity; scipy's ``hyp2f1`` is accurate for each in a different
    region, so every element takes the first form that is finite:

    1. Euler, ``(1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z)``: bounded as z -> 1 when r+x > a-1;
    2. the paper's form, bounded as z -> 1 when r+x < a-1;
    3. Pfaff, ``2F1(r+x, a-1; a+b+x-1; -t/(alpha+T))``: no power prefactor at all.

    Where ``hyp2f1`` fails in all three (it returns NaN for some large ``b`` with z near 1) and
    where the result is below 1e-6 (``1 - value`` has cancelled ~10 of its digits), the value comes from
    the integral over the dropout probability, :func:`_if_alive_by_quadrature`, which has none of
    these problems. For ``a`` near 1 (the 0/0 of the ``1/(a-1)`` factor) and ``c - A - B`` near an integer see
    :func:`_if_alive_closed_form`.
    """
    t, x, T = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (t, x, T)))
    z = t / (alpha + T + t)
    c = a + b + x - 1

    def euler(i, fast=False):
        prefactor = (1.0 - z[i]) ** (a - 1)
        if fast:
            return _hyp2f1_rows(lambda xv: (a + b - 1 - r, a - 1, a + b + xv - 1), x[i], z[i], prefactor)
        return prefactor * special.hyp2f1(a + b - 1 - r, a - 1, c[i], z[i])

    def paper(i, fast=False):
        prefactor = ((alpha + T[i]) / (alpha + T[i] + t[i])) ** (r + x[i])
        if fast:
            return _hyp2f1_rows(lambda xv: (r + xv, b + xv, a + b + xv - 1), x[i], z[i], prefactor)
        return prefactor * special.hyp2f1(r + x[i], b + x[i], c[i], z[i])

    def pfaff(i):
        return special.hyp2f1(r + x[i], a - 1, c[i], -t[i] / (alpha + T[i]))

    value = np.empty(z.shape)
    prefer_euler = r + x >= a - 1
    fast = z.ndim == 1 and z.size >= TAYLOR_MIN_ELEMENTS
    with np.errstate(all="ignore"):
        for form, rows in ((euler, prefer_euler), (paper, ~prefer_euler)):
            if rows.all():
                value[...] = form(slice(None), fast)
            elif rows.any():
                value[rows] = form(rows, fast)
        for form in (paper, euler, pfaff):  # second choices, only where the first was not finite
            bad = ~np.isfinite(value)
            if not bad.any():
                break
            value[bad] = form(bad)
    return 1.0 - value


#: Taylor tables of 2F1 (:func:`_hyp2f1_taylor`): centres ``z0`` evenly spaced in ``u = -ln(1-z)``, so
#: that every element is within ``TAYLOR_Q * (1 - z0)`` of its centre, where ``1 - z0`` is the radius
#: of convergence of the series at ``z0`` (2F1's only finite singularity is z = 1); the truncation error
#: of ``TAYLOR_DEGREE`` terms is then ``~TAYLOR_Q ** (TAYLOR_DEGREE + 1) = 1e-18`` relative.
TAYLOR_Q = 0.01
TAYLOR_DEGREE = 8
TAYLOR_DELTA = 2.0 * float(np.log1p(TAYLOR_Q))
TAYLOR_MAX_U = float(-np.log(1e-4))  # z up to 1 - 1e-4; closer to 1: scipy's own transformations
#: fewer elements than this: scipy's hyp2f1 per element (a table costs ~10 hyp2f1 calls per centre)
TAYLOR_MIN_ELEMENTS = 20_000
#: elements whose ``1 - value`` is below this (cancellation: an absolute error of a few ulps becomes a
#: relative error of ~1e-13 or more in the bracket) take scipy's value, exactly as before the tables
TAYLOR_GUARD = 1e-2
#: the tables serve only parameter sets with |A| and |B| at most this (r, or b + x, not too large)
TAYLOR_MAX_PARAM = 10.0
#: a centre is used only where its series matches scipy's hyp2f1 to this at both ends of its interval
TAYLOR_CHECK = 1e-13
_TAYLOR_CHUNK = 1 << 14  # elements per Horner pass: the working arrays stay in the CPU cache
_TAYLOR_CENTRES = int(np.rint(TAYLOR_MAX_U / TAYLOR_DELTA)) + 1  # centres per group


def _hyp2f1_rows(params, x, z, prefactor) -> np.ndarray:
    """``prefactor * 2F1(*params(x); z)`` per element, through Taylor tables (:func:`_hyp2f1_taylor`).

    ``params(x)`` gives (A, B, C) for purchase counts ``x`` (whole numbers: the table is per
    distinct x). Where the table does not apply, and where ``|1 - value| < TAYLOR_GUARD``, the
    value is scipy's, computed exactly as the direct form computes it (same operations, same bits).
    """
    x = np.asarray(x, dtype=np.float64)
    prefactor = np.broadcast_to(prefactor, z.shape)
    values, codes = index_by_value(x)
    table = None
    if np.array_equal(values[codes], x):  # whole numbers (always so for validated frequencies)
        table = _hyp2f1_taylor(*(np.broadcast_to(p, values.shape) for p in params(values)), z, codes)
    if table is None:
        A, B, C = params(x)
        return prefactor * special.hyp2f1(A, B, C, z)
    f, ok = table
    value = prefactor * f
    redo = ~ok
    redo |= ~(np.abs(1.0 - value) >= TAYLOR_GUARD)
    if redo.any():
        A, B, C = params(x[redo])
        value[redo] = prefactor[redo] * special.hyp2f1(A, B, C, z[redo])
    return value


def _hyp2f1_taylor(A, B, C, z, groups) -> tuple[np.ndarray, np.ndarray] | None:
    r"""``2F1(A_g, B_g; C_g; z)`` for elements ``z`` of groups ``g`` (parameters per group), from Taylor
    series about a few centres per group, and the mask of the elements it serves (the others: NaN).

    About ``z0``, :math:`{}_2F_1(z_0 + h) = \sum_m h^m \frac{(A)_m (B)_m}{(C)_m\, m!}\,
    {}_2F_1(A+m, B+m; C+m; z_0)` (the m-th derivative over m!), each coefficient from scipy. The
    series converges for ``|h| < 1 - z0``; the centres are placed so that ``|h| <= TAYLOR_Q (1 - z0)``.
    A table is built only for the (group, centre) pairs that occur, and only when it is much smaller
    than the input (else None: the caller evaluates per element). Each centre is checked against
    scipy at both ends of its interval; a centre that disagrees by more than ``TAYLOR_CHECK``
    (relative) or has a non-finite coefficient serves no element.

    The horizon steps of a CLV share x and T: for 10M customers x 12 steps the table has a few
    thousand centres, and the 120M values cost ~9 multiply-adds each instead of a hypergeometric
    series of 10-100 terms.
    """
    n = z.size
    n_codes = len(A) * _TAYLOR_CENTRES
    if n_codes > max(4 * n, 1 << 20):
        return None
    # each element's (group, centre) code, in cache-sized slices (no full-size temporaries)
    code = np.empty(n, dtype=np.int64)
    inside = np.empty(n, dtype=bool)
    for lo in range(0, n, _TAYLOR_CHUNK):
        part = slice(lo, lo + _TAYLOR_CHUNK)
        with np.errstate(all="ignore"):
            u = -np.log1p(-z[part])
        ins = (u >= 0) & (u <= TAYLOR_MAX_U)  # False for NaN
        u[~ins] = 0.0
        u *= 1.0 / TAYLOR_DELTA
        code[part] = np.rint(u, out=u)
        code[part] += groups[part] * _TAYLOR_CENTRES
        inside[part] = ins
    used = np.zeros(n_codes, dtype=bool)
    used[code] = True
    codes = np.flatnonzero(used)
    if len(codes) * (TAYLOR_DEGREE + 3) * 8 > n:  # building the table would cost more than it saves
        return None
    position = np.zeros(n_codes, dtype=np.int64)
    position[codes] = np.arange(len(codes))
    coef, good = _taylor_rows(A, B, C, codes // _TAYLOR_CENTRES, codes % _TAYLOR_CENTRES)
    out = np.empty(n)
    ok = inside  # reused in place: inside and served by a good centre
    with np.errstate(all="ignore"):
        for lo in range(0, n, _TAYLOR_CHUNK):
            part = slice(lo, lo + _TAYLOR_CHUNK)
            k = position[code[part]]
            ok[part] &= good[k]
            out[part] = _horner(coef[k], z[part])
    out[~ok] = np.nan
    return out, ok


#: groups (A, B, C) whose Taylor coefficients are kept between calls (:func:`_taylor_rows`); ~37 kB each at most
TAYLOR_CACHE_GROUPS = 256
_TAYLOR_CACHE: OrderedDict = OrderedDict()


def _taylor_rows(A, B, C, g, j) -> tuple[np.ndarray, np.ndarray]:
    """The Taylor coefficients (and the centre, last column) and the check of centres ``j`` of groups ``g``.

    A centre's row depends on (A, B, C, centre) alone, so the rows are kept per (A, B, C) between calls (the
    :data:`TAYLOR_CACHE_GROUPS` last used groups): scoring in batches, or a residual value's tail in chunks of
    steps, meets the same centres again and computes each once (about 11 hyp2f1 calls per centre). A row comes
    from :func:`_taylor_coefficients` whether cached or not: the same bits either way.
    """
    coef = np.empty((len(g), TAYLOR_DEGREE + 2))
    good = np.empty(len(g), dtype=bool)
    entries, rows = [], []
    groups, starts = np.unique(g, return_index=True)  # g is sorted: each group's rows are one run
    for gi, lo, hi in zip(groups, starts, [*starts[1:], len(g)]):
        key = (float(A[gi]), float(B[gi]), float(C[gi]))
        entry = _TAYLOR_CACHE.pop(key, None)
        if entry is None:
            entry = (np.empty((_TAYLOR_CENTRES, TAYLOR_DEGREE + 2)), np.zeros(_TAYLOR_CENTRES, dtype=bool),
                     np.zeros(_TAYLOR_CENTRES, dtype=bool))  # rows, check, known
        _TAYLOR_CACHE[key] = entry  # (most recently used last)
        entries.append(entry)
        rows.append(np.arange(lo, hi))
    while len(_TAYLOR_CACHE) > TAYLOR_CACHE_GROUPS:
        _TAYLOR_CACHE.popitem(last=False)
    missing = [r[~e[2][j[r]]] for e, r in zip(entries, rows)]
    todo = np.concatenate(missing) if missing else np.zeros(0, dtype=np.int64)
    if todo.size:
        new_coef, new_good = _taylor_coefficients(A[g[todo]], B[g[todo]], C[g[todo]], j[todo])
        at = 0
        for (table, check, known), r in zip(entries, missing):
            table[j[r]] = new_coef[at:at + len(r)]
            check[j[r]] = new_good[at:at + len(r)]
            known[j[r]] = True
            at += len(r)
    for (table, check, _), r in zip(entries, rows):
        coef[r] = table[j[r]]
        good[r] = check[j[r]]
    return coef, good


def _taylor_coefficients(a, b, c, j) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the Taylor coefficients of ``2F1(a, b; c; z)`` about centre ``j`` (the centre ``z0`` in the last
    column) and whether the series matches scipy's hyp2f1 at both ends of the centre's interval
    (:func:`_hyp2f1_taylor`)."""
    z0 = -np.expm1(-j * TAYLOR_DELTA)
    coef = np.empty((len(j), TAYLOR_DEGREE + 2))  # the last column: the centre
    scale = np.ones(len(j))
    with np.errstate(all="ignore"):
        for m in range(TAYLOR_DEGREE + 1):
            if m:
                scale = scale * (a + m - 1) * (b + m - 1) / ((c + m - 1) * m)
            coef[:, m] = scale * special.hyp2f1(a + m, b + m, c + m, z0)
        coef[:, -1] = z0
        # scipy's own value is what the guard falls back to; for large |A| or |B| it takes other paths
        # (recurrences) whose rounding differs from a series by more than 1e-12: leave those to scipy
        good = np.isfinite(coef).all(axis=1) & (np.abs(a) <= TAYLOR_MAX_PARAM) & (np.abs(b) <= TAYLOR_MAX_PARAM)
        for end in (-0.5, 0.5):  # the interval's ends, where the truncation error is largest
            z_end = np.maximum(-np.expm1(-(j + end) * TAYLOR_DELTA), 0.0)
            exact = special.hyp2f1(a, b, c, z_end)
            series = _horner(coef, z_end)
            good &= np.abs(series - exact) <= TAYLOR_CHECK * np.abs(exact)
    return coef, good


def _horner(coef: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``sum_m coef[:, m] (z - coef[:, -1])^m`` per row (Horner's scheme, in place)."""
    h = z - coef[:, -1]
    acc = coef[:, -2].copy()
    for m in range(coef.shape[1] - 3, -1, -1):
        acc *= h
        acc += coef[:, m]
    return acc


def _tanh_sinh(step: float = 1 / 16, half_width: float = 3.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tanh-sinh nodes on (0, 1): ``u``, ``1 - u`` (both accurate near the ends) and weights."""
    s = np.arange(-half_width, half_width + step / 2, step)
    y = 2.0 * (np.pi / 2) * np.sinh(s)
    u, v = special.expit(y), special.expit(-y)
    w = step * 2.0 * u * v * (np.pi / 2) * np.cosh(s)
    return u, v, w


_TANH_SINH = _tanh_sinh()


def _if_alive_by_quadrature(t, x, T, r, alpha, a, b) -> np.ndarray:
    r"""Expected purchases in (T, T+t] of an active customer, as an integral over his dropout probability.

    Given activity, ``lambda ~ Gamma(r+x, alpha+T)`` and ``p ~ Beta(a, b+x)``; a customer with
    (lambda, p) makes ``(1 - e^{-lambda p t}) / p`` purchases in expectation, so

    .. math:: \int_0^1 \frac{1 - (1 + p t / (\alpha+T))^{-(r+x)}}{p}\, \mathrm{Beta}(p; a, b+x)\, dp
              = \int_0^1 h(F^{-1}(u))\, du

    evaluated by tanh-sinh quadrature in the Beta quantile ``u`` (``scipy.special.betaincinv``;
    the upper half through the mirrored Beta so that ``p`` near 1 keeps its digits). The
    quantile's endpoint singularities are what tanh-sinh handles well: about 1e-12 relative.
    The nodes depend on ``b + x`` alone: the quantiles are computed once per distinct ``x``
    (an expensive inverse each), then every element costs one ``log1p`` and ``expm1`` per node.
    Used where neither the hypergeometric forms nor the series :func:`_if_alive_series` serve
    (see :func:`_expected_if_alive`).
    """
    u, v, w = _TANH_SINH
    x, t, T = (np.asarray(vv, dtype=np.float64).ravel() for vv in (x, t, T))
    xu, codes = np.unique(x, return_inverse=True)  # the frequencies present only (not a table 0..max x)
    big_b = (b + xu)[:, None]
    with np.errstate(all="ignore"):
        p = np.where(u < 0.5, special.betaincinv(a, big_b, u), 1.0 - special.betaincinv(big_b, a, v))[codes]
        shape, rate = (r + x)[:, None], (alpha + T)[:, None]
        h = -np.expm1(-shape * np.log1p(p * (t[:, None] / rate))) / p
    h = np.where(p > 0, h, shape * t[:, None] / rate)
    return h @ w


#: terms of :func:`_if_alive_series` at most; it stops earlier once every element has converged
SERIES_TERMS = 60


def _if_alive_series(t, x, T, r, alpha, a, b) -> tuple[np.ndarray, np.ndarray]:
    r"""Expected purchases in (T, T+t] of an active customer as a power series in ``s = t/(alpha+T)``,
    and the mask of the elements it serves.

    Averaging ``(1 - (1 + p s)^{-(r+x)}) / p`` over ``p ~ Beta(a, b+x)`` term by term
    (``E[p^j] = (a)_j / (a+b+x)_j``) gives, with ``R = r + x`` and ``c = a + b + x``,

    .. math:: \sum_{k \ge 1} (-1)^{k+1} rac{(R)_k\, s^k}{k!} rac{(a)_{k-1}}{(c)_{k-1}}

    (the Pfaff form of the closed form, without its leading 1: no cancellation, no ``1/(a-1)``). Each
    term is the previous one times ``-(R+k-1) s (a+k-2) / ((c+k-2) k)``, so the series is cheapest where
    the closed form is weakest: tiny horizons, and a dropout probability near 0 (``b`` large, e.g.
    ``b -> inf`` where the model has no dropout and the value is ``R s``). An element is served when
    its terms have fallen below 1e-17 of the sum within :data:`SERIES_TERMS` terms and the rest
    cannot grow back: the ratio of successive terms stays below 1/2 (``s (R+K)/(K+1) < 1/2``), or
    ``p s >= 1/2``, where the expansion in ``p s`` stops, has Beta probability below ``e^-40``
    (``b + x >= 2 s (a + 40 + 9 sqrt(a))``). Fixed cost: at most ``SERIES_TERMS`` multiply-adds per element.
    """
    t, x, T = (np.asarray(v, dtype=np.float64) for v in (t, x, T))
    s = t / (alpha + T)
    R = r + x
    c = a + b + x
    term = R * s
    total = term.copy()
    done = np.zeros(t.shape, dtype=bool)
    k = 1
    with np.errstate(all="ignore"):
        while k < SERIES_TERMS:
            term = term * (-(R + k) * s * ((a + k - 1) / (c + k - 1)) / (k + 1))
            term[done] = 0.0  # converged elements keep their sum
            total += term
            k += 1
            done |= np.abs(term) <= 1e-17 * np.abs(total)
            if done.all():
                break
        tail_small = (s * np.maximum(1.0, (R + k) / (k + 1)) < 0.5) | (b + x >= 2 * s * (a + 40 + 9 * np.sqrt(a)))
    ok = done & tail_small & np.isfinite(total) & (total > 0)
    return np.where(ok, total, 0.0), ok


#: within this distance of a removable singularity of the closed form (a = 1; r + x - (a-1) an
#: integer) the closed form is evaluated at nodes WINDOW and 2 WINDOW away and interpolated
WINDOW = 1e-3
_NODES = np.array([-2.0, -1.0, 1.0, 2.0])


def _if_alive_hypergeometric(t, x, T, r, alpha, a, b) -> tuple[np.ndarray, np.ndarray]:
    """``(a+b+x-1)/(a-1) * bracket`` (a != 1) and the mask of elements where it cannot be trusted:
    non-finite, or a bracket below 1e-6 ("1 - value" has lost ~10 digits to cancellation: tiny t);
    the bracket has the sign of ``a - 1`` and the expectation is positive."""
    bracket = _bracket_forms(t, x, T, r, alpha, a, b)
    signed = bracket * np.sign(a - 1.0)
    hard = ~np.isfinite(signed) | (signed < 1e-6)
    return (a + b + x - 1) / (a - 1) * np.where(hard, 0.0, bracket), hard


def lagrange_weights(nodes: np.ndarray, at: float) -> np.ndarray:
    """Weights ``w_k`` with ``f(at) ~ sum_k w_k f(nodes_k)`` (polynomial interpolation through the nodes)."""
    w = np.ones(len(nodes))
    for k in range(len(nodes)):
        for j in range(len(nodes)):
            if j != k:
                w[k] *= (at - nodes[j]) / (nodes[k] - nodes[j])
    return w


def _interpolated(evaluate, centre: float, at: float, t) -> tuple[np.ndarray, np.ndarray]:
    """Cubic interpolation at ``at`` of ``evaluate(node)`` over the nodes ``centre + WINDOW * (-2, -1, 1, 2)``;
    an element is hard (see :func:`_if_alive_hypergeometric`) when it is hard at any node."""
    weights = lagrange_weights(_NODES, (at - centre) / WINDOW)
    total = np.zeros(np.shape(t))
    hard = np.zeros(np.shape(t), dtype=bool)
    for node, weight in zip(centre + WINDOW * _NODES, weights):
        value, bad = evaluate(node)
        total += weight * value
        hard |= bad
    return total, hard


def _if_alive_closed_form(t, x, T, r, alpha, a, b) -> tuple[np.ndarray, np.ndarray]:
    r"""The hypergeometric form, made safe near its two removable singularities by interpolation.

    * ``a = 1``: the closed form divides by ``a - 1`` (0/0).
    * ``r + x - (a - 1)`` an integer: ``c - A - B`` of every form is that integer, the degenerate
      (logarithmic) case of ``2F1`` at ``z -> 1`` where ``scipy.special.hyp2f1`` loses up to all of
      its digits (9x too large at ``r = 0.1, a = 1.1, b = 0.3, t = 500``). ``x`` is a whole
      number, so this is a property of ``(r, a)`` alone.

    The expectation is analytic in ``a`` and ``r`` (an integral over ``p ~ Beta(a, b+x)`` and
    ``lambda ~ Gamma(r+x, alpha+T)``). Within ``WINDOW`` of a singular point it is evaluated at the
    four nodes ``singular + WINDOW * (-2, -1, 1, 2)``, where the forms are accurate, and
    interpolated (cubic): error at most ``4 WINDOW^4 / 24`` times the fourth derivative, ~2e-13
    relative for derivatives of the function's own size. At most 4 (16 near both points)
    evaluations per element whatever the parameters: the cost does not depend on where a
    parameter draw lands.
    """
    if abs(a - 1.0) < WINDOW:
        return _interpolated(lambda node: _if_alive_r_safe(t, x, T, r, alpha, node, b), 1.0, a, t)
    return _if_alive_r_safe(t, x, T, r, alpha, a, b)


def _if_alive_r_safe(t, x, T, r, alpha, a, b) -> tuple[np.ndarray, np.ndarray]:
    """The hypergeometric form at ``a != 1``, interpolated in ``r`` near an integer ``c - A - B``."""
    shift = r - (a - 1.0)
    r0 = r - (shift - round(shift))  # the nearest r with an integer c - A - B
    if abs(r - r0) < WINDOW and r0 > 2.5 * WINDOW:
        return _interpolated(lambda node: _if_alive_hypergeometric(t, x, T, node, alpha, a, b), r0, r, t)
    return _if_alive_hypergeometric(t, x, T, r, alpha, a, b)


def _expected_if_alive(t, x, T, r, alpha, a, b, dedupe: bool = True) -> np.ndarray:
    """``(a+b+x-1)/(a-1) * bracket``: expected purchases in (T, T+t] of a customer still active.

    Depends on (x, T, t) only, not on recency: for large inputs it is evaluated once per distinct
    (x, T) pair (``dedupe=False`` when the rows are distinct already). ``t`` may be a vector of
    horizons: the result then has one column per horizon. Near its removable singularities the
    closed form is interpolated (:func:`_if_alive_closed_form`); quadrature
    (:func:`_if_alive_by_quadrature`) serves only the elements where the hypergeometric forms fail.
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if dedupe and x.ndim == 1 and t.ndim <= 1:
        xu, tu, inverse = distinct_pairs(x, T)
        if inverse is not None:
            return _expected_if_alive(t, xu, tu, r, alpha, a, b, dedupe=False)[inverse]
    if t.ndim == 1 and x.ndim == 1:
        x, T = x[:, None], T[:, None]
    shape = np.broadcast_shapes(t.shape, x.shape, T.shape)
    tt, xx, TT = (np.broadcast_to(v, shape).ravel() for v in (t, x, T))
    out, hard = _if_alive_closed_form(tt, xx, TT, r, alpha, a, b)
    if hard.any():
        rows = np.flatnonzero(hard)
        value, served = _if_alive_series(tt[rows], xx[rows], TT[rows], r, alpha, a, b)
        out[rows[served]] = value[served]
        rows = rows[~served]
        if rows.size:
            out[rows] = _if_alive_by_quadrature(tt[rows], xx[rows], TT[rows], r, alpha, a, b)
    return np.where(tt == 0, 0.0, out).reshape(shape)


def conditional_expected_purchases(t, frequency, recency, T, r, alpha, a, b) -> np.ndarray:
    r"""E[Y(t) | x, t_x, T]: expected purchases in (T, T+t] (FHL 2005, eq. 10).

    .. math:: P(\text{alive})\,\frac{a+b+x-1}{a-1}\left[1 - (1-z)^{a-1}
              {}_2F_1(a+b-1-r,\, a-1;\, a+b+x-1;\, z)\right], \quad z = \frac{t}{\alpha+T+t}

    The Euler transformation ``2F1(A,B;C;z) = (1-z)^{C-A-B} 2F1(C-A, C-B; C; z)`` turns the
    paper's ``((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)`` into this form, whose
    parameters do not grow with x (no overflow for heavy buyers). ``t`` is a scalar (one value
    per customer) or, for arrays of customers, a vector of horizons (one column each).
    """
    x = np.asarray(frequency, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    alive = p_alive(x, recency, T, r, alpha, a, b)
    if_alive = _expected_if_alive(t, x, T, r, alpha, a, b)
    if if_alive.ndim == 2 and alive.ndim == 1:
        alive = alive[:, None]
    return alive * if_alive


def _survival_forms(t, x, T, r, alpha, a, b) -> tuple[np.ndarray, ...]:
    """The three hypergeometric forms of :func:`log_survival_if_alive` (equal in exact arithmetic), the one
    bounded at ``w -> 1`` first."""
    w = t / (alpha + T + t)
    log_1mw = -np.log1p(t / (alpha + T))  # ln(1 - w) without cancellation
    R, c = r + x, a + b + x
    with np.errstate(all="ignore"):
        euler = np.log(special.hyp2f1(a + b - r, a, c, w)) + a * log_1mw  # bounded at w -> 1 when R > a
        paper = np.log(special.hyp2f1(R, b + x, c, w)) + R * log_1mw  # bounded at w -> 1 when R < a
        pfaff = np.log(special.hyp2f1(R, a, c, -t / (alpha + T)))
    first = R > a
    return np.where(first, euler, paper), np.where(first, paper, euler), pfaff


def _log_survival_by_quadrature(t, x, T, r, alpha, a, b) -> np.ndarray:
    r""":func:`log_survival_if_alive` as the integral over ``p ~ Beta(a, b+x)`` by tanh-sinh quadrature in the
    Beta quantile (the nodes of :func:`_if_alive_by_quadrature`), summed in log space; the last resort where
    no hypergeometric form is finite (about 1e-12 relative while the integrand's mass is not beyond the
    quantile range of the nodes, about 1e-18 in probability)."""
    u, v, wq = _TANH_SINH
    xu, codes = np.unique(x, return_inverse=True)
    big_b = (b + xu)[:, None]
    with np.errstate(all="ignore"):
        p = np.where(u < 0.5, special.betaincinv(a, big_b, u), 1.0 - special.betaincinv(big_b, a, v))[codes]
        terms = -(r + x)[:, None] * np.log1p(p * (t / (alpha + T))[:, None])
        return special.logsumexp(terms, b=wq, axis=1)


def log_survival_if_alive(t, x, T, r, alpha, a, b) -> np.ndarray:
    r"""``ln P(alive at T + t | alive at T, x, T)`` (elementwise over broadcast ``t, x, T``).

    Given alive at T, the posterior of the purchase rate is ``lambda ~ Gamma(r+x, alpha+T)`` and that of the
    dropout probability ``p ~ Beta(a, b+x)``, independent (the likelihood of an active customer factorises,
    FHL 2005 eq. 3 with its ``A_3`` term only). Dropouts come after purchases, so a customer with (lambda, p)
    drops out at rate ``lambda p``: he survives ``t`` more with probability ``e^{-lambda p t}``. Over lambda,
    :math:`(1 + p t/(\alpha+T))^{-(r+x)}`; over p, Euler's integral of Gauss's hypergeometric function:

    .. math:: S = E\left[\left(1 + \frac{p\,t}{\alpha+T}\right)^{-(r+x)}\right]
              = {}_2F_1\!\left(r+x, a; a+b+x; -\frac{t}{\alpha+T}\right)
              = (1-w)^{r+x}\,{}_2F_1(r+x, b+x; a+b+x; w)
              = (1-w)^{a}\,{}_2F_1(a+b-r, a; a+b+x; w),

    ``w = t / (alpha+T+t)`` (Pfaff's and Euler's transformations). The forms are evaluated in log space, the
    one bounded at ``w -> 1`` first (``r + x > a``: the last; else the second), then the others where it is
    not finite or above 1, then :func:`_log_survival_by_quadrature`. 0 at ``t = 0``; at most 0.
    """
    t, x, T = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (t, x, T)))
    shape = t.shape
    t, x, T = t.ravel(), x.ravel(), T.ravel()
    out = np.full(t.shape, np.nan)
    todo = np.ones(t.shape, dtype=bool)
    for form in _survival_forms(t, x, T, r, alpha, a, b):
        ok = todo & np.isfinite(form) & (form <= 1e-12)
        out[ok] = form[ok]
        todo &= ~ok
        if not todo.any():
            break
    if todo.any():
        out[todo] = _log_survival_by_quadrature(t[todo], x[todo], T[todo], r, alpha, a, b)
    out = np.minimum(out, 0.0)
    return np.where(t == 0, 0.0, out).reshape(shape)


def p_alive_after(t, frequency, recency, T, r, alpha, a, b) -> np.ndarray:
    r"""P(alive at T + t | x, t_x, T), whatever happens in (T, T + t]:
    ``P(alive | x, t_x, T) * S(t | x, T)``, with the survival ``S`` of :func:`log_survival_if_alive`, in log space.
    ``t`` a scalar, or a vector of horizons for arrays of customers (one column each)."""
    x = np.asarray(frequency, dtype=np.float64)
    log_alive = -np.logaddexp(0.0, _log_odds_dead(r, alpha, a, b, x, np.asarray(recency, float),
                                                   np.asarray(T, float)))
    log_s = once_per_pair(log_survival_if_alive, t, x, T, r, alpha, a, b)
    if log_s.ndim == 2 and log_alive.ndim == 1:
        log_alive = log_alive[:, None]
    return np.exp(log_alive + log_s)


def _nbinom_logpmf(n, r, t, alpha):
    r"""``ln P(N = n)`` for ``N ~ NB(r, alpha/(alpha+t))``:
    ``ln Gamma(r+n) - ln Gamma(r) - ln n! + r ln(alpha/(alpha+t)) + n ln(t/(alpha+t))``.

    Both probabilities are formed from ``t`` and ``alpha`` directly (no ``1 - p`` cancellation).
    """
    return (special.gammaln(r + n) - special.gammaln(r) - special.gammaln(n + 1)
            - r * np.log1p(t / alpha) + special.xlogy(n, t / (alpha + t)))


def _nbinom_logsf_below(n, r, t, alpha):
    r"""``ln P(N >= n)`` for ``N ~ NB(r, alpha/(alpha+t))`` and ``n >= 1``: the regularised incomplete
    beta function ``I_{t/(alpha+t)}(n, r)`` (the negative binomial's upper tail)."""
    return np.log(special.betainc(n, r, t / (alpha + t)))


def prob_purchases(n, t, r, alpha, a, b) -> np.ndarray:
    r"""P(X(t) = n) for a customer just acquired (FHL 2005, eq. 8), in log space.

    .. math:: \frac{B(a, b+n)}{B(a,b)}\,\mathrm{NB}(n; r, \tfrac{\alpha}{\alpha+t})
              + \delta_{n>0}\frac{B(a+1, b+n-1)}{B(a,b)}\,P(\mathrm{NB}(r, \tfrac{\alpha}{\alpha+t}) \ge n)

    The negative-binomial terms come from ``scipy.special`` (``gammaln``, ``xlogy``, ``betainc``),
    not ``scipy.stats`` (which costs over a second to import). The beta-function ratios are :func:`_log_beta_ratio`'s sums (``B(a+1, b+n-1) = B(a, b+n-1) a / (a+b+n-1)``):
    as differences of ``betaln`` they cancel at large ``a``, ``b`` (P(X(10) = 2) came out as 4.93 at
    ``a = b = 1e15``).
    """
    n = np.asarray(n, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    below = np.maximum(n - 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        first = _log_beta_ratio(a, b, n) + _nbinom_logpmf(n, r, t, alpha)
        second = np.where(
            n > 0,
            -np.log1p((b + below) / a) + _log_beta_ratio(a, b, below)
            + _nbinom_logsf_below(np.maximum(n, 1.0), r, t, alpha),
            -np.inf,
        )
    return np.exp(np.logaddexp(first, second))


class BetaGeoModel(PurchaseModel):
    """BG/NBD purchase model fitted by maximum likelihood (see the module docstring).

    Parameters
    ----------
    penalizer : float
        L2 penalty on unit-free parameters: the objective is
        ``-loglik / n_customers + penalizer * (r^2 + (alpha / s)^2 + a^2 + b^2)`` with
        ``s = sum(T) / sum(frequency)`` (the data's time per repeat purchase, in the data's unit), so
        that a penalised fit is the same model in days, weeks or months (``alpha`` rescaled).
    initial_params : dict, optional
        The first starting values; by default ``r, alpha`` of the NBD fitted to the same data and
        ``a = b = 1``. When the fit from there is not a clean interior maximum, further starts are tried
        and the best log-likelihood wins (:mod:`clv_forecast.estimators._starts`; ``result_.extra["starts"]``
        counts them). When the supremum is on a boundary that is a nested model, ``result_.boundary``
        says which (:func:`clv_forecast.estimators.purchases._bgnbd_boundary.diagnose_boundary`) and ``boundary_result_``
        holds that model's fit.
    maxiter : int
        Iteration limit of the trust-region optimiser.

    Attributes (after ``fit``)
    --------------------------
    params_ : pandas.Series (r, alpha, a, b)
    result_ : MLEResult with ``bse``, ``cov_params()``, ``conf_int()``, ``aic``, ``bic``, ``summary()``
    log_likelihood_ : float, total log-likelihood
    time_unit_ : str, the time unit of recency, T and every horizon
    """

    kind = "bgnbd"
    p_alive_without_repeat = ("a customer can drop out only just after a repeat purchase, so one who has made none "
                              "has had no chance to drop out yet; his forecast still falls the longer he has not "
                              "bought, through his purchase rate")
    name = "BG/NBD"
    boundaries = bgnbd_boundary.DESCRIPTIONS
    param_names = PARAM_NAMES
    scale_free_params = ("r", "a", "b")
    param_bounds = PARAM_BOUNDS

    def __init__(self, penalizer: float = 0.0, initial_params: dict | None = None, maxiter: int = 200) -> None:
        self.penalizer = penalizer
        self.initial_params = initial_params
        self.maxiter = maxiter

    # -- fitting ---------------------------------------------------------------------------
    def _fit_statistics(self, x, t_x, big_t, w) -> _mle.MLEResult:
        """The fit on validated statistics (:meth:`PurchaseModel.fit`): several starts, the best wins, and
        the boundary diagnosis when it is not a clean interior maximum (``boundary_result_``)."""
        _mle.require(bool(np.any(x > 0)),
                     "BG/NBD: no customer has a repeat purchase (all frequencies are 0); "
                     "the purchase rate and dropout parameters cannot be identified")
        by_x = ByValue.of(x, w)
        n = float(w.sum())
        # the penalty on alpha / scale: the same model in every time unit (module _mle)
        scales = [1.0, _starts.data_scale_alpha(x, big_t, w), 1.0, 1.0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbd_fit = nbd.fit_statistics(x, t_x, big_t, w, penalizer=self.penalizer, scales=scales[:2])
        r0, alpha0 = (float(v) for v in nbd_fit.params)
        if not (np.isfinite(r0) and np.isfinite(alpha0)):  # the NBD fit failed: start from its moments
            r0, alpha0 = nbd.start(x, big_t, w)
        given = None if self.initial_params is None else self._start(())
        starts = _starts.grid(float(np.clip(r0, 1e-3, 1e2)), float(np.clip(alpha0, 1e-6, 1e8)), given)

        def more_needed(result):  # not a clean interior maximum, or the NBD (a -> 0) reaches it
            return bool(result.problems) or bgnbd_boundary.reaches(nbd_fit, result)

        result = self._fit_from_starts(lambda phi: loglik_derivatives(phi, x, t_x, big_t, w, _by_x=by_x), starts,
                                       n_obs=n, n_rows=len(x), scales=scales, more_needed=more_needed)
        self.boundary_result_ = None
        if more_needed(result):
            fits = bgnbd_boundary.nested_fits((x, t_x, big_t, w), penalizer=self.penalizer, scales=scales[:2],
                                              nbd_fit=nbd_fit)
            result.boundary = bgnbd_boundary.diagnose_boundary(result, None, fits=fits)
            if result.boundary is not None:
                self.boundary_result_ = fits[result.boundary[0]]
            else:
                result.limit = bgnbd_boundary.two_point_limit(result, (x, t_x, big_t, w))
        return result

    # -- kernels (the public predictions are PurchaseModel's) ------------------------------
    _loglik = params_first(loglik)

    _loglik_derivatives = weighted_derivatives(loglik_derivatives)

    _p_alive = params_last(p_alive)

    _expected_if_alive = params_last(functools.partial(_expected_if_alive, dedupe=False))  # (the base dedupes)

    _expected_new = params_last(expected_purchases)

    _prob_purchases = params_last(prob_purchases)

    _p_alive_after = params_last(p_alive_after)

    def population(self) -> dict:
        """Purchase rates ``lambda ~ Gamma(r, alpha)`` (per time unit) and dropout probabilities
        ``p ~ Beta(a, b)``, as frozen scipy distributions."""
        from scipy import stats

        r, alpha, a, b = self._check_fitted()
        return {"purchase_rate": stats.gamma(r, scale=1.0 / alpha), "dropout": stats.beta(a, b)}
