r"""BG/BB: the beta-geometric / beta-binomial model of discrete purchase opportunities.

Fader, P. S., Hardie, B. G. S. and Shang, J. (2010), "Customer-Base Analysis in a Discrete-Time
Noncontractual Setting", *Marketing Science* 29(6), 1086-1108.

Time runs in *periods*, one transaction opportunity each (a yearly appeal, a weekly event). A customer
is acquired in period 0 and observed for ``n`` more periods. While alive he transacts at each opportunity
with probability ``p ~ Beta(alpha, beta)``; at the start of each period he drops out for good with
probability ``theta ~ Beta(gamma, delta)``. His history is ``x`` (periods with a transaction among
``1..n``), ``t_x`` (the last of them, 0 when ``x = 0``) and ``n``; in the layer's columns: frequency = x,
recency = t_x, T = n, whole numbers with ``x <= t_x <= n`` (:attr:`BetaGeoBetaBinomModel.whole_periods`).
All four parameters are shape parameters: nothing here has a unit of time. With ``B`` the beta function
(FHS 2010):

.. math::

    L = \frac{B(\alpha+x, \beta+n-x)}{B(\alpha,\beta)}\frac{B(\gamma, \delta+n)}{B(\gamma,\delta)}
      + \sum_{i=0}^{n-t_x-1} \frac{B(\alpha+x, \beta+t_x-x+i)}{B(\alpha,\beta)}
        \frac{B(\gamma+1, \delta+t_x+i)}{B(\gamma,\delta)}

(alive through period ``n``, or dropped out at the start of period ``t_x + i + 1``). Each term is kept as
its logarithm, a sum of differences ``ln Gamma(z + k) - ln Gamma(z)`` for whole ``k`` (:func:`_shift`: scipy's
gamma functions for ``z < 20``, the difference of Stirling series above, so that no large ``ln Gamma(z)``
cancels against another), and ``ln L`` is their log-sum-exp. The likelihood depends on ``(x, t_x, n)`` only:
it is evaluated once per distinct triple, and its cost is the number of terms, ``sum (1 + n - t_x)`` over
the distinct triples (the usual data have tens of opportunities at most).

Predictions (FHS 2010; eq. 13 the conditional expectation), ``P(alive)`` of being alive in period ``n``:

.. math::

    P(\text{alive} \mid x, t_x, n) = \frac{1}{L}\frac{B(\alpha+x, \beta+n-x)}{B(\alpha,\beta)}
        \frac{B(\gamma, \delta+n)}{B(\gamma,\delta)}

    E[X(n, n+m) \mid \text{alive}, x, n] = \frac{\alpha+x}{\alpha+\beta+n}\, G_{\delta+n}(m), \qquad
    G_{d}(m) = \sum_{k=1}^{m} \frac{B(\gamma, d+k)}{B(\gamma, d)}
             = \frac{d}{\gamma-1}\left[1 - \frac{\Gamma(\gamma+d)\,\Gamma(1+d+m)}
                                                  {\Gamma(1+d)\,\Gamma(\gamma+d+m)}\right]

and a new customer's ``E[X(m)] = alpha/(alpha+beta) G_delta(m)``. ``G`` is evaluated without the
0/0 at ``gamma = 1``: ``G_d(m) = d (e^S - 1) / (1 - gamma)`` with ``S = sum_{i<m} ln((1+d+i)/(gamma+d+i))``,
as ``d * exprel(S) * (S / (1 - gamma))`` where ``S / (1 - gamma)`` is summed term by term (its terms tend to
``1/(1+d+i)`` as ``gamma -> 1``). BTYD's ``bgbb.PAlive`` is alive in period ``n + 1``: ours times
``(delta+n)/(gamma+delta+n)``; lifetimes' ``conditional_probability_alive(0, ...)`` is ours.

Horizons in periods: a horizon ``t`` (model units: periods) holds the ``m = floor(t)`` opportunities that
end within it (a rounding of 1e-9 relative forgiven), so that ``E[X(n, n+t)]`` steps at every whole period: with
monthly CLV steps on a yearly model, each year's expected transactions fall in (and are discounted at) the
step where that year ends.

:class:`BetaGeoBetaBinomModel` (kind ``"bgbb"``) is the model of the layer; the discrete summary of a
transaction log is :func:`clv_forecast.rfm.summarize_periods`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from .. import _mle
from ..base import PurchaseModel, future_columns, params_first, params_last

NAME = "BG/BB"
PARAM_NAMES = ("alpha", "beta", "gamma", "delta")

#: Every parameter from 1e-8 to 1e12: shape parameters, where every kernel is finite for every valid history
#: (tested to both ends). Towards 1e12 the beta distributions are points (the homogeneous limits), served by the
#: Stirling differences of :func:`_shift` without loss.
PARAM_BOUNDS = {name: (1e-8, 1e12) for name in PARAM_NAMES}

# --------------------------------------------------------------------------------------------
# ln Gamma(z + k) - ln Gamma(z) and its derivatives, for whole k
# --------------------------------------------------------------------------------------------

#: from this z on, the differences come from Stirling's series (truncation error below 1e-17 relative)
_STIRLING_MIN = 20.0
#: the Bernoulli numbers B_2 .. B_10 of the series
_BERNOULLI = (1.0 / 6, -1.0 / 30, 1.0 / 42, -1.0 / 30, 5.0 / 66)


def _power_difference(z, k, p: int):
    """``(z + k)^-p - z^-p`` without cancellation: ``z^-p expm1(-p log1p(k / z))``."""
    return z ** -float(p) * np.expm1(-p * np.log1p(k / z))


def _shift(z, k, derivatives: bool = True):
    r"""``P = ln Gamma(z+k) - ln Gamma(z)`` and, with ``derivatives``, ``D = psi(z+k) - psi(z)`` and
    ``T = psi'(z+k) - psi'(z)``, for ``z > 0`` and whole ``k >= 0`` (arrays, broadcast).

    Below :data:`_STIRLING_MIN` scipy's functions (all terms small: no cancellation); above, the exact
    differences of the asymptotic series, e.g.

    .. math:: P = (z - \tfrac12)\ln(1 + k/z) + k(\ln(z+k) - 1)
                  + \sum_{j=1}^{5}\frac{B_{2j}}{2j(2j-1)}\left[(z+k)^{1-2j} - z^{1-2j}\right]

    whose terms are each of the size of the result (``ln Gamma(1e10 + 3) - ln Gamma(1e10)`` to 1e-16
    relative, where scipy's difference of two numbers of 2.2e11 keeps 5 digits).
    """
    z, k = np.broadcast_arrays(np.asarray(z, dtype=np.float64), np.asarray(k, dtype=np.float64))
    small = z < _STIRLING_MIN
    P = np.empty(z.shape)
    D = np.empty(z.shape) if derivatives else None
    T = np.empty(z.shape) if derivatives else None
    if small.any():
        zs, ks = z[small], k[small]
        P[small] = special.gammaln(zs + ks) - special.gammaln(zs)
        if derivatives:
            D[small] = special.digamma(zs + ks) - special.digamma(zs)
            T[small] = special.polygamma(1, zs + ks) - special.polygamma(1, zs)
    large = ~small
    if large.any():
        zl, kl = z[large], k[large]
        log_ratio = np.log1p(kl / zl)
        p = (zl - 0.5) * log_ratio + kl * (np.log(zl + kl) - 1.0)
        if derivatives:
            d1, d2 = _power_difference(zl, kl, 1), _power_difference(zl, kl, 2)
            d = log_ratio - 0.5 * d1
            t = d1 + 0.5 * d2
        for j, b in enumerate(_BERNOULLI, start=1):
            p += b / (2 * j * (2 * j - 1)) * _power_difference(zl, kl, 2 * j - 1)
            if derivatives:
                d -= b / (2 * j) * _power_difference(zl, kl, 2 * j)
                t += b * _power_difference(zl, kl, 2 * j + 1)
        P[large] = p
        if derivatives:
            D[large], T[large] = d, t
    return (P, D, T) if derivatives else P


# --------------------------------------------------------------------------------------------
# the likelihood's terms
# --------------------------------------------------------------------------------------------

#: at most this many terms are held at once (rows are taken in chunks): the working arrays stay ~100 MB
_TERMS_PER_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Terms:
    r"""The terms of the likelihood of distinct rows (x, t_x, n), fixed for a fit.

    Term ``k`` of a row is ``ln B(alpha+X, beta+Y)/B(alpha, beta) + ln B(gamma+S, delta+V)/B(gamma, delta)``;
    a row's terms are contiguous from ``start``, the first the alive one ``(x, n - x, 0, n)``, then
    ``(x, j - x, 1, j)`` for ``j = t_x .. n-1`` (dropped out at the start of period ``j + 1``)."""

    row: np.ndarray
    start: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    S: np.ndarray
    V: np.ndarray
    XY: np.ndarray  # X + Y
    SV: np.ndarray  # S + V

    @classmethod
    def of(cls, x, t_x, n) -> "_Terms":
        x, t_x, n = (np.asarray(v, dtype=np.int64) for v in (x, t_x, n))
        count = 1 + n - t_x
        start = np.zeros(len(x), dtype=np.int64)
        np.cumsum(count[:-1], out=start[1:])
        row = np.repeat(np.arange(len(x)), count)
        k = np.arange(row.size, dtype=np.int64) - start[row]
        alive = k == 0
        V = np.where(alive, n[row], t_x[row] + k - 1)
        X, S = x[row], (~alive).astype(np.int64)
        return cls(row, start, X, V - X, S, V, V, S + V)  # (X + Y = V: n, then j)


def _chunks(x, t_x, n) -> list[tuple[slice, _Terms]]:
    """The rows in consecutive chunks of at most :data:`_TERMS_PER_CHUNK` terms (a row is never split)."""
    count = 1 + np.asarray(n, dtype=np.int64) - np.asarray(t_x, dtype=np.int64)
    ends = np.cumsum(count)
    out, lo = [], 0
    while lo < len(count):
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _TERMS_PER_CHUNK, side="right")))
        out.append((slice(lo, hi), _Terms.of(x[lo:hi], t_x[lo:hi], n[lo:hi])))
        lo = hi
    return out


class _Tables:
    """``_shift`` of the six beta-function arguments at every whole shift the terms use (0 .. max n + 1)."""

    def __init__(self, params, kmax: int, derivatives: bool) -> None:
        a, b, g, d = (float(v) for v in params)
        k = np.arange(kmax + 2, dtype=np.float64)
        zs = np.array([a, b, a + b, g, d, g + d])
        values = _shift(zs[:, None], k[None, :], derivatives)
        if derivatives:
            self.P, self.D, self.T = values
        else:
            self.P = values

    def logs(self, t: _Terms) -> np.ndarray:
        P = self.P
        return (P[0].take(t.X) + P[1].take(t.Y) - P[2].take(t.XY) + P[3].take(t.S) + P[4].take(t.V)
                - P[5].take(t.SV))


def _log_sum_rows(logs: np.ndarray, t: _Terms) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``ln sum exp(logs)`` over its terms, and each term's share ``exp(logs - that)``."""
    top = np.maximum.reduceat(logs, t.start)
    share = np.exp(logs - top[t.row])
    total = np.add.reduceat(share, t.start)
    share /= total[t.row]
    return top + np.log(total), share


def _distinct(x, t_x, n):
    """Distinct (x, t_x, n) rows and each row's position among them (None when deduplicating does not pay)."""
    if x.size <= 2_000:
        return x, t_x, n, None
    top = int(n.max()) + 1
    if float(top) ** 3 < 2.0 ** 62:
        key = (n.astype(np.int64) * top + t_x.astype(np.int64)) * top + x.astype(np.int64)
        codes, uniques = pd.factorize(key, sort=False)
        if len(uniques) > x.size // 2:
            return x, t_x, n, None
        return ((uniques % top).astype(np.float64), (uniques // top % top).astype(np.float64),
                (uniques // (top * top)).astype(np.float64), codes)
    stacked, inverse = np.unique(np.stack([x, t_x, n], axis=1), axis=0, return_inverse=True)
    if len(stacked) > x.size // 2:
        return x, t_x, n, None
    return stacked[:, 0], stacked[:, 1], stacked[:, 2], inverse.reshape(-1)


def _row_parts(params, x, t_x, n) -> tuple[np.ndarray, np.ndarray]:
    """Per row: ``ln L`` and the log of its alive term (once per distinct triple)."""
    x, t_x, n = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (x, t_x, n)))
    shape = x.shape
    xu, tu, nu, inverse = _distinct(x.ravel(), t_x.ravel(), n.ravel())
    ll, alive = np.empty(len(xu)), np.empty(len(xu))
    if len(xu):
        tables = _Tables(params, int(nu.max()), derivatives=False)
        for rows, terms in _chunks(xu, tu, nu):
            logs = tables.logs(terms)
            ll[rows] = _log_sum_rows(logs, terms)[0]
            alive[rows] = logs[terms.start]
    if inverse is not None:
        ll, alive = ll[inverse], alive[inverse]
    return ll.reshape(shape), alive.reshape(shape)


def loglik(alpha, beta, gamma, delta, frequency, recency, T) -> np.ndarray:
    """Per-customer BG/BB log-likelihood (FHS 2010), log-space; ``T`` is the number of opportunities n."""
    return _row_parts((alpha, beta, gamma, delta), frequency, recency, T)[0]


def loglik_derivatives(params, x, t_x, n, weights=None, _chunked=None):
    r"""Weighted total log-likelihood, score (4,) and Hessian (4, 4) in (alpha, beta, gamma, delta), analytic.

    With ``l_k`` a row's terms, ``w_k = e^{l_k - ln L}`` their shares and ``g_k`` their gradients (each a
    difference of digamma differences, :func:`_shift`):
    ``d ln L = sum_k w_k g_k`` and ``d^2 ln L = sum_k w_k (H_k + (g_k - d ln L)(g_k - d ln L)^T)`` (centred:
    no difference of large numbers). ``H_k`` is block-diagonal: (alpha, beta) and (gamma, delta).
    ``_chunked``: the rows' terms of a fit, built once (:func:`_chunks`)."""
    x, t_x, n = (np.asarray(v, dtype=np.float64) for v in (x, t_x, n))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if _chunked is None:
        _chunked = _chunks(x, t_x, n)
    tables = _Tables(params, int(n.max()) if n.size else 0, derivatives=True)
    D, Tr = tables.D, tables.T
    ll, score, hess = 0.0, np.zeros(4), np.zeros((4, 4))
    size = D.shape[1]
    for rows, t in _chunked:
        logs = tables.logs(t)
        row_ll, share = _log_sum_rows(logs, t)
        d_xy, d_sv = D[2].take(t.XY), D[5].take(t.SV)
        grads = np.stack([D[0].take(t.X) - d_xy, D[1].take(t.Y) - d_xy, D[3].take(t.S) - d_sv, D[4].take(t.V) - d_sv])
        mean = np.stack([np.add.reduceat(share * g, t.start) for g in grads])  # (4, rows): d ln L per row
        wr = w[rows]
        ll += float(np.dot(wr, row_ll))
        score += mean @ wr
        omega = wr.take(t.row) * share
        centred = grads - mean.take(t.row, axis=1)
        hess += (centred * omega) @ centred.T
        # sum_k omega_k H_k: each entry a function of one index (X, Y, X + Y, ...), so a weighted count per value
        by = {key: np.bincount(getattr(t, key), weights=omega, minlength=size)
              for key in ("X", "Y", "XY", "S", "V", "SV")}
        t_ab, t_gd = np.dot(by["XY"], Tr[2]), np.dot(by["SV"], Tr[5])
        hess[0, 0] += np.dot(by["X"], Tr[0]) - t_ab
        hess[1, 1] += np.dot(by["Y"], Tr[1]) - t_ab
        hess[0, 1] -= t_ab
        hess[2, 2] += np.dot(by["S"], Tr[3]) - t_gd
        hess[3, 3] += np.dot(by["V"], Tr[4]) - t_gd
        hess[2, 3] -= t_gd
    hess[1, 0], hess[3, 2] = hess[0, 1], hess[2, 3]
    return ll, score, hess


# --------------------------------------------------------------------------------------------
# predictions
# --------------------------------------------------------------------------------------------


def periods(t) -> np.ndarray:
    """The whole opportunities within horizons ``t`` (periods): ``floor(t)``, a rounding of 1e-9 relative
    forgiven (``12 * (1/12)`` is one period)."""
    t = np.asarray(t, dtype=np.float64)
    return np.floor(t + 1e-9 * np.maximum(1.0, t))


def p_alive(frequency, recency, T, alpha, beta, gamma, delta) -> np.ndarray:
    """P(alive in period n | x, t_x, n) (FHS 2010; BTYD's ``PAlive`` is period n + 1)."""
    ll, alive = _row_parts((alpha, beta, gamma, delta), frequency, recency, T)
    return np.minimum(np.exp(alive - ll), 1.0)


def p_alive_after(t, frequency, recency, T, alpha, beta, gamma, delta) -> np.ndarray:
    r"""P(alive in period n + m | x, t_x, n), ``m = floor(t)`` whole periods, whatever happens in between:

    .. math:: P(\text{alive} \mid x, t_x, n)\,\frac{B(\gamma, \delta+n+m)}{B(\gamma, \delta+n)}

    Given alive in period n the dropout probability's posterior is ``theta ~ Beta(gamma, delta+n)`` (n chances
    survived), and surviving the m chances at the starts of the next periods has probability
    ``E[(1-theta)^m]`` (the terms of ``G``, FHS 2010). The ratio is
    ``[ln Gamma(delta+n+m) - ln Gamma(delta+n)] - [ln Gamma(gamma+delta+n+m) - ln Gamma(gamma+delta+n)]`` by
    :func:`_shift` (no cancellation of large ``ln Gamma``), in log space. ``t`` a scalar or a vector of
    horizons (one column each)."""
    ll, alive = _row_parts((alpha, beta, gamma, delta), frequency, recency, T)
    log_alive = np.minimum(alive - ll, 0.0)
    t, n, log_alive = future_columns(t, T, log_alive)
    m = periods(t)
    log_s = _shift(delta + n, m, derivatives=False) - _shift(gamma + delta + n, m, derivatives=False)
    return np.exp(log_alive + np.minimum(log_s, 0.0))


#: the dropout sums G are read from one cumulative table over the periods ``min n .. max n + max m`` when it
#: has at most this many entries, else from the closed form (:func:`_dropout_sums`)
_TABLE_MAX = 1 << 22


def _log_ratio_over_u(gamma: float, c: np.ndarray) -> np.ndarray:
    """``ln((1 + c - gamma) / c) / (1 - gamma)`` per ``c = gamma + delta + s`` (``1/c`` at ``gamma = 1``)."""
    u = 1.0 - gamma
    if u == 0.0:
        return 1.0 / c
    z = u / c
    with np.errstate(divide="ignore"):
        log_ratio = np.where(np.abs(z) <= 0.5, np.log1p(z), np.log((c + u) / c))
    return log_ratio / u


def _dropout_sums(gamma: float, delta: float, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    r"""``G_{delta+n}(m) = sum_{k=1}^{m} B(gamma, delta+n+k) / B(gamma, delta+n)`` for whole n, m (broadcast).

    ``G = d exprel(S) (S/u)`` with ``d = delta + n``, ``u = 1 - gamma`` and
    ``S/u = sum_{i<m} ln((1+d+i)/(gamma+d+i)) / u``, a difference of one cumulative sum of positive terms
    over the periods (no 0/0 at ``gamma = 1``). Beyond :data:`_TABLE_MAX` periods (horizons of millions of
    periods), ``S`` is the difference of two :func:`_shift` values, whose cancellation grows as ``gamma -> 1``
    (2e-8 relative at ``gamma = 1 - 1e-7`` for 40 periods; exact at ``gamma = 1``)."""
    n, m = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(m, dtype=np.float64))
    u = 1.0 - gamma
    d = delta + n
    if n.size == 0:
        return np.zeros(n.shape)
    lo, hi = int(n.min()), int((n + m).max())
    if hi - lo <= _TABLE_MAX:
        s = np.arange(lo, hi + 1, dtype=np.float64)
        cumulative = np.zeros(len(s) + 1)
        np.cumsum(_log_ratio_over_u(gamma, gamma + delta + s), out=cumulative[1:])
        first = (n - lo).astype(np.int64)
        s_over_u = cumulative[first + m.astype(np.int64)] - cumulative[first]
        s_over_u = np.maximum(s_over_u, 0.0)  # a sum of positive terms (rounding of the difference)
    else:
        S = _shift(1.0 + d, m, derivatives=False) - _shift(gamma + d, m, derivatives=False)
        s_over_u = _shift(1.0 + d, m)[1] if u == 0.0 else S / u
    return d * special.exprel(u * s_over_u) * s_over_u


def expected_if_alive(t, frequency, T, alpha, beta, gamma, delta) -> np.ndarray:
    r"""E[X(n, n+t) | alive in period n, x, n] = ``(alpha+x)/(alpha+beta+n) G_{delta+n}(floor t)`` (the
    posterior means of p and of the survival, FHS 2010 eq. 13 divided by P(alive)). ``t`` a scalar or, for
    arrays of customers, a vector of horizons (one column each)."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(frequency, dtype=np.float64)
    n = np.asarray(T, dtype=np.float64)
    m = periods(t)
    if t.ndim == 1 and x.ndim == 1:
        x, n = x[:, None], n[:, None]
    return (alpha + x) / (alpha + beta + n) * _dropout_sums(gamma, delta, n, m)


def conditional_expected_purchases(t, frequency, recency, T, alpha, beta, gamma, delta) -> np.ndarray:
    """E[X(n, n+t) | x, t_x, n] (FHS 2010, eq. 13): ``P(alive) * expected_if_alive``."""
    alive = p_alive(frequency, recency, T, alpha, beta, gamma, delta)
    if_alive = expected_if_alive(t, frequency, T, alpha, beta, gamma, delta)
    if if_alive.ndim == 2 and alive.ndim == 1:
        alive = alive[:, None]
    return alive * if_alive


def expected_new(t, alpha, beta, gamma, delta) -> np.ndarray:
    r"""E[X(t)] of a new customer over ``floor(t)`` opportunities (FHS 2010):
    ``alpha/(alpha+beta) * delta/(gamma-1) * [1 - Gamma(gamma+delta) Gamma(1+delta+t) / (Gamma(1+delta)
    Gamma(gamma+delta+t))]``."""
    t = np.asarray(t, dtype=np.float64)
    return alpha / (alpha + beta) * _dropout_sums(gamma, delta, np.zeros(t.shape), periods(t))


def prob_purchases(k, t, alpha, beta, gamma, delta) -> np.ndarray:
    r"""P(X(m) = k) of a new customer over ``m = floor(t)`` opportunities (FHS 2010, eq. 7), log-space:

    .. math:: \binom{m}{k}\frac{B(\alpha+k, \beta+m-k)}{B(\alpha,\beta)}\frac{B(\gamma,\delta+m)}{B(\gamma,\delta)}
              + \sum_{i=k}^{m-1}\binom{i}{k}\frac{B(\alpha+k,\beta+i-k)}{B(\alpha,\beta)}
              \frac{B(\gamma+1,\delta+i)}{B(\gamma,\delta)}

    The sum over ``i`` is a cumulative log-sum-exp per distinct ``k`` (0 outside ``0 <= k <= m``, ``k`` whole)."""
    k, t = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(t, dtype=np.float64))
    m = periods(t)
    valid = (k >= 0) & (k == np.floor(k)) & (k <= m)
    out = np.zeros(k.shape)
    if not valid.any():
        return out
    kv, mv = k[valid], m[valid]
    ku, kidx = np.unique(kv, return_inverse=True)
    top = int(mv.max())
    P = _Tables((alpha, beta, gamma, delta), top, derivatives=False).P
    kk = ku.astype(np.int64)[:, None]
    i = np.arange(top, dtype=np.int64)[None, :]
    y = np.maximum(i - kk, 0)  # (the terms with i < k are none: -inf below)
    dropped = (special.gammaln(i + 1.0) - special.gammaln(kk + 1.0) - special.gammaln(y + 1.0)
               + P[0, kk] + P[1, y] - P[2, i] + P[3, 1] + P[4, i] - P[5, i + 1])
    dropped = np.where(i >= kk, dropped, -np.inf)
    cumulative = np.logaddexp.accumulate(dropped, axis=1) if top else dropped
    kvi, mvi = kv.astype(np.int64), mv.astype(np.int64)
    alive = (special.gammaln(mv + 1.0) - special.gammaln(kv + 1.0) - special.gammaln(mv - kv + 1.0)
             + P[0, kvi] + P[1, mvi - kvi] - P[2, mvi] + P[4, mvi] - P[5, mvi])
    before = np.full(kv.shape, -np.inf)
    some = mvi > kvi
    before[some] = cumulative[kidx[some], mvi[some] - 1]
    out[valid] = np.exp(np.logaddexp(alive, before))
    return out


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------

#: the starts after the data-driven one: (alpha + beta, gamma, delta), alpha / (alpha + beta) from the data
START_GRID = ((1.0, 1.0, 1.0), (4.0, 0.5, 2.0), (0.5, 2.0, 10.0), (10.0, 0.2, 0.5))


def _distinct_weighted(x, t_x, n, w):
    """Distinct (x, t_x, n) rows with their total weight (the likelihood depends on nothing else)."""
    xu, tu, nu, inverse = _distinct(x, t_x, n)
    if inverse is None:
        return x, t_x, n, w
    return xu, tu, nu, np.bincount(inverse, weights=w, minlength=len(xu))


def start_mean_p(x, t_x, w) -> float:
    """The share of opportunities with a transaction while alive, ``sum(w x) / sum(w t_x)`` (through ``t_x``
    a customer was alive), clipped to [0.05, 0.95]: the mean of ``p``, ``alpha / (alpha + beta)``, of the starts."""
    seen = float(np.dot(w, t_x))
    return float(np.clip(np.dot(w, x) / seen, 0.05, 0.95)) if seen > 0 else 0.5


class BetaGeoBetaBinomModel(PurchaseModel):
    """The BG/BB model of discrete purchase opportunities (Fader, Hardie & Shang 2010; module docstring).

    Its data are whole periods (:attr:`whole_periods`): frequency = periods with a transaction after the
    first, recency = the last such period, T = the number of opportunities n (``summarize_periods`` builds
    them from a transaction log); the model's time unit is the period, and a horizon holds the whole periods
    that end within it.

    Parameters
    ----------
    penalizer : float
        L2 penalty ``penalizer * (alpha^2 + beta^2 + gamma^2 + delta^2)`` on the mean log-likelihood (all four
        are shape parameters).
    initial_params : dict, optional
        The first start; by default ``alpha / (alpha + beta)`` is the data's share of opportunities with a
        transaction, with ``alpha + beta = 1`` and ``gamma = delta = 1``. When the fit from there is not a clean
        interior maximum, the starts of :data:`START_GRID` are tried too and the best log-likelihood wins
        (``result_.extra["starts"]`` counts them).
    maxiter : int
        Iteration limit of the trust-region optimiser.
    """

    kind = "bgbb"
    name = NAME
    param_names = PARAM_NAMES
    scale_free_params = PARAM_NAMES
    param_bounds = PARAM_BOUNDS
    whole_periods = True

    def __init__(self, penalizer: float = 0.0, initial_params: dict | None = None, maxiter: int = 200) -> None:
        self.penalizer = penalizer
        self.initial_params = initial_params
        self.maxiter = maxiter

    def _fit_statistics(self, x, t_x, T, w) -> _mle.MLEResult:
        """Several starts on the distinct (x, t_x, n) rows; the best (penalised) log-likelihood wins."""
        xu, tu, nu, wu = _distinct_weighted(x, t_x, T, w)
        chunked = _chunks(xu, tu, nu)
        mean_p = start_mean_p(xu, tu, wu)
        starts = [[mean_p * s, (1.0 - mean_p) * s, g, d] for s, g, d in START_GRID]
        if self.initial_params is not None:
            starts = [self._start(())] + starts

        return self._fit_from_starts(lambda phi: loglik_derivatives(phi, xu, tu, nu, wu, _chunked=chunked), starts,
                                     n_obs=float(w.sum()), n_rows=len(x))

    # -- kernels (the public predictions are PurchaseModel's) ------------------------------
    _loglik = params_first(loglik)

    @staticmethod
    def _loglik_derivatives(params, frequency, recency, T, weights=None):
        x, t_x, n = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
        w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
        return loglik_derivatives(params, *_distinct_weighted(x, t_x, n, w))

    _p_alive = params_last(p_alive)

    _expected_if_alive = params_last(expected_if_alive)

    _expected_new = params_last(expected_new)

    _prob_purchases = params_last(prob_purchases)

    _p_alive_after = params_last(p_alive_after)

    def population(self) -> dict:
        """The transaction probability per opportunity ``p ~ Beta(alpha, beta)`` and the dropout probability
        per period ``theta ~ Beta(gamma, delta)``, as frozen scipy distributions."""
        from scipy import stats

        alpha, beta, gamma, delta = self._check_fitted()
        return {"transaction_probability": stats.beta(alpha, beta), "dropout_probability": stats.beta(gamma, delta)}
