r"""Parameter uncertainty of every forecast: an interval per customer and a band for the portfolio total.

The fitted parameters' sampling distribution is the fit's asymptotic normal one on the log scale, the scale the fit
works in (:mod:`clv_forecast.estimators._mle`): :math:`\log\hat\phi \sim N(\log\phi, \Sigma)`,
:math:`\Sigma = \mathrm{cov} / (\hat\phi\hat\phi^T)`. The purchase and the spend model are fitted separately, on
different statistics, so their estimates are treated as independent (a block-diagonal :math:`\Sigma`).

Methods (``interval_method``):

``"delta"`` (the default)
    Each forecast :math:`q(\phi)` is taken on a scale where it is unbounded, :math:`g = \log` for the expected
    purchases, the expected spend and the CLV, :math:`g = \mathrm{logit}` for P(alive), and linearised in the
    log-parameters at the estimate:

    .. math:: \mathrm{se}(g(q)) = \sqrt{d^T \Sigma d}, \qquad d_j = \frac{\partial g(q)}{\partial \log\phi_j},
              \qquad [g^{-1}(g(\hat q) - z\,\mathrm{se}),\; g^{-1}(g(\hat q) + z\,\mathrm{se})]

    (Cramér 1946; Oehlert 1992, "A note on the delta method", *The American Statistician* 46(1), 27-29). The
    gradient is taken by forward differences in the log-parameters (step :data:`DELTA_STEP`): one more evaluation
    of the model's kernels per parameter, on the same distinct (x, T) pairs, whatever the parameters are. Since
    :math:`\mathrm{CLV} = \text{margin}\cdot E[Z]\cdot D` (``D`` the discounted expected purchases),
    :math:`\log\mathrm{CLV}` is the sum of a spend part and a purchase part and its variance the sum of theirs.
    Where P(alive) is within :data:`LOGIT_EDGE` of 0 or 1 its logit cannot be differenced accurately; there the
    interval is taken on the natural scale and clipped to [0, 1]. A forecast that is exactly 0 (or P(alive)
    exactly 0 or 1: the NBD has no dropout) does not depend on the parameters and gets a zero-width interval.

``"draws"``
    ``n_draws`` parameter vectors drawn from that distribution (clipped to the model's ``param_bounds``), every
    forecast computed for each, the central order statistics per customer. Its cost grows with ``n_draws``; its
    intervals follow the forecast's own shape where the linearisation is poor.

The portfolio total (the sum of a forecast over the customers of the table) is one function of the same
parameters: its gradient is the sum of the customers' gradients on the natural scale, and its band is
:math:`\exp(\log T \mp z\,\mathrm{se}(\log T))` from that gradient and :math:`\Sigma` (not the sum of the customers'
intervals: the customers share the parameters). :class:`Portfolio` adds it up batch by batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .errors import ClvInputError

#: the interval methods (module docstring)
INTERVAL_METHODS = ("delta", "draws", "bootstrap")
#: the forward-difference step of the delta method, in the log-parameters (relative error of a standard error
#: about this size; rounding error about 1e-16 / DELTA_STEP)
DELTA_STEP = 1e-6
#: P(alive) closer than this to 0 or 1 gets its interval on the natural scale (module docstring)
LOGIT_EDGE = 1e-6
#: the forecasts that carry an interval, in the order of the output's columns
QUANTITIES = ("expected_purchases", "p_alive", "expected_spend", "clv")
#: the columns an interval adds, after the forecasts: ``<quantity>_lower``, ``<quantity>_upper`` for each
INTERVAL_COLUMNS = tuple(f"{q}_{side}" for q in QUANTITIES for side in ("lower", "upper"))


def check_level(interval) -> float:
    """``interval`` as a probability strictly between 0 and 1 (one-line error otherwise)."""
    if isinstance(interval, bool) or not isinstance(interval, (int, float, np.integer, np.floating)) \
            or not 0 < float(interval) < 1:
        raise ClvInputError(f"interval {interval!r}: must be a probability between 0 and 1, e.g. 0.9")
    return float(interval)


def check_method(method) -> str:
    if method not in INTERVAL_METHODS:
        raise ClvInputError(f"must be one of {', '.join(INTERVAL_METHODS)}", argument="interval_method",
                            value=method)
    return method


def log_covariance(model) -> np.ndarray:
    """:math:`\\Sigma`, the covariance of a fitted model's log-parameters; a one-line error naming the model when it
    has none (built from parameters without a covariance, or a fit that did not identify them)."""
    res = model.result_
    phi = res.params.to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        cov = np.asarray(res.cov, dtype=float) / phi[:, None] / phi[None, :]
    if not np.all(np.isfinite(cov)):
        why = ("it was built from parameters without a covariance (from_params(..., cov=...))"
               if res.source == "params" else "its fit did not identify the parameters")
        raise ClvInputError(f"parameter uncertainty is unavailable: the {model.name} model has no covariance ({why})",
                            argument="interval", value="...")
    return (cov + cov.T) / 2


def _z(level: float) -> float:
    return float(special.ndtri(0.5 + level / 2))


def _quad(grad: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Per row, ``grad_i^T cov grad_i`` (>= 0)."""
    return np.maximum(np.einsum("ij,jk,ik->i", grad, cov, grad), 0.0)


def _log_step(new: np.ndarray, base: np.ndarray, h: float) -> np.ndarray:
    """Forward-difference derivative of ``log q``; 0 where ``q`` is 0 (a forecast that does not move)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (np.log(new) - np.log(base)) / h
    return np.where(np.isfinite(d) & (base > 0), d, 0.0)


#: the largest log of a bound: a bound beyond the float range (a forecast of 1e-200 with a log-scale standard
#: error of hundreds, from standard errors several times their parameters) is clipped to it, not infinite
_MAX_LOG = np.log(np.finfo(np.float64).max) - 1.0


def _log_interval(q: np.ndarray, var_log: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """``q exp(-/+ z se)`` computed on the log scale (``q = 0``: ``[0, 0]``)."""
    half = z * np.sqrt(var_log)
    with np.errstate(divide="ignore"):
        log_q = np.log(q)
    positive = q > 0
    lower = np.where(positive, np.exp(np.minimum(log_q - half, _MAX_LOG)), 0.0)
    upper = np.where(positive, np.exp(np.minimum(log_q + half, _MAX_LOG)), 0.0)
    return np.minimum(lower, q), np.maximum(upper, q)


@dataclass
class Sensitivity:
    """One model's forecasts at the estimate and at each forward step of a log-parameter (``steps[j]``)."""

    base: dict
    steps: list = field(default_factory=list)
    cov: np.ndarray | None = None  # Sigma of this model's log-parameters (None: the forecasts do not depend on it)
    h: float = DELTA_STEP


def perturbed(params: np.ndarray, h: float = DELTA_STEP):
    """The parameter vectors of the forward differences: ``params`` with its j-th entry times ``e^h``."""
    params = np.asarray(params, dtype=float)
    for j in range(len(params)):
        out = params.copy()
        out[j] = params[j] * math.exp(h)
        yield out


def delta_intervals(purchases: Sensitivity, spend: Sensitivity | None, level: float) -> dict:
    """Per-customer lower and upper bounds of every forecast of :data:`QUANTITIES` (module docstring).

    ``purchases.base`` and each of its ``steps`` hold ``expected_purchases``, ``p_alive`` and ``discounted`` (the
    discounted expected purchases, P(alive) included); ``spend`` (None: a known spend, no uncertainty) holds
    ``expected_spend``; ``margin`` scales the CLV (in ``purchases.base``)."""
    z = _z(level)
    h = purchases.h
    b = purchases.base
    out = {}
    # expected purchases and the discounted purchases: log scale
    g_e = np.column_stack([_log_step(s["expected_purchases"], b["expected_purchases"], h) for s in purchases.steps])
    g_d = np.column_stack([_log_step(s["discounted"], b["discounted"], h) for s in purchases.steps])
    out["expected_purchases"] = _log_interval(b["expected_purchases"], _quad(g_e, purchases.cov), z)
    # P(alive): logit scale inside (LOGIT_EDGE, 1 - LOGIT_EDGE), natural scale (clipped) outside
    a = b["p_alive"]
    inside = (a > LOGIT_EDGE) & (a < 1 - LOGIT_EDGE)
    with np.errstate(divide="ignore", invalid="ignore"):
        logit = special.logit(a)
        g_logit = np.column_stack([(special.logit(s["p_alive"]) - logit) / h for s in purchases.steps])
        g_nat = np.column_stack([(s["p_alive"] - a) / h for s in purchases.steps])
    g_logit = np.where(np.isfinite(g_logit), g_logit, 0.0)
    half_logit = z * np.sqrt(_quad(g_logit, purchases.cov))
    half_nat = z * np.sqrt(_quad(np.where(np.isfinite(g_nat), g_nat, 0.0), purchases.cov))
    lo = np.where(inside, special.expit(logit - half_logit), np.clip(a - half_nat, 0.0, 1.0))
    hi = np.where(inside, special.expit(logit + half_logit), np.clip(a + half_nat, 0.0, 1.0))
    out["p_alive"] = (np.minimum(lo, a), np.maximum(hi, a))
    # expected spend and CLV: log scale; log CLV = log spend + log discounted purchases (independent fits)
    var_d = _quad(g_d, purchases.cov)
    m = b["expected_spend"]
    if spend is not None and spend.cov is not None:
        g_s = np.column_stack([_log_step(s["expected_spend"], m, spend.h) for s in spend.steps])
        var_s = _quad(g_s, spend.cov)
        out["expected_spend"] = _log_interval(m, var_s, z)
    else:  # a known spend per purchase: no uncertainty of its own
        var_s = np.zeros_like(m)
        out["expected_spend"] = (m.copy(), m.copy())
    out["clv"] = _log_interval(b["clv"], var_d + var_s, z)
    return out


@dataclass
class Portfolio:
    """The portfolio totals of the expected purchases and the CLV, with the gradients that give their band
    (module docstring), added up batch by batch (:meth:`add`); :meth:`band` at the end."""

    expected_purchases: float = 0.0
    clv: float = 0.0
    customers: int = 0
    grad_purchases: np.ndarray | None = None  # d total expected purchases / d log purchase parameters
    grad_clv_p: np.ndarray | None = None  # d total CLV / d log purchase parameters
    grad_clv_s: np.ndarray | None = None  # d total CLV / d log spend parameters
    cov_p: np.ndarray | None = None
    cov_s: np.ndarray | None = None
    #: with parameter draws (``interval_method="draws"``): the totals under each draw, by quantity
    draw_totals: dict | None = None
    method: str = "delta"

    def add(self, purchases: Sensitivity, spend: Sensitivity | None, margin: float, rows=None) -> None:
        """Add the customers of one table (``rows``: a boolean mask of those counted, e.g. the ones with finite
        forecasts; default all)."""
        if rows is not None and not np.all(rows):
            purchases = Sensitivity({k: v[rows] for k, v in purchases.base.items()},
                                    [{k: v[rows] for k, v in s.items()} for s in purchases.steps], purchases.cov,
                                    purchases.h)
            if spend is not None:
                spend = Sensitivity({k: v[rows] for k, v in spend.base.items()},
                                    [{k: v[rows] for k, v in s.items()} for s in spend.steps], spend.cov, spend.h)
        b, h = purchases.base, purchases.h
        e, d, m = b["expected_purchases"], b["discounted"], b["expected_spend"]
        self.expected_purchases += float(e.sum())
        self.clv += float(b["clv"].sum())
        self.customers += len(e)
        gp = np.array([float((s["expected_purchases"] - e).sum()) / h for s in purchases.steps])
        gc = np.array([margin * float(np.dot(m, s["discounted"] - d)) / h for s in purchases.steps])
        self.grad_purchases = gp if self.grad_purchases is None else self.grad_purchases + gp
        self.grad_clv_p = gc if self.grad_clv_p is None else self.grad_clv_p + gc
        self.cov_p = purchases.cov
        if spend is not None and spend.cov is not None:
            gs = np.array([margin * float(np.dot(d, s["expected_spend"] - m)) / spend.h for s in spend.steps])
            self.grad_clv_s = gs if self.grad_clv_s is None else self.grad_clv_s + gs
            self.cov_s = spend.cov

    def add_draws(self, totals: dict, estimates: dict, customers: int, method: str = "draws") -> None:
        """Add one table's totals under each parameter vector (``interval_method="draws"`` or ``"bootstrap"``)
        and at the estimate."""
        self.method = method
        if self.draw_totals is None:
            self.draw_totals = {q: np.zeros_like(t) for q, t in totals.items()}
        for q, t in totals.items():
            self.draw_totals[q] += t
        self.expected_purchases += float(estimates["expected_purchases"])
        self.clv += float(estimates["clv"])
        self.customers += customers

    _ARRAYS = ("grad_purchases", "grad_clv_p", "grad_clv_s", "cov_p", "cov_s")

    def state(self) -> dict:
        """This accumulator as plain JSON values (a Spark partition's share, merged on the driver by
        :meth:`merge`)."""
        out = {"expected_purchases": self.expected_purchases, "clv": self.clv, "customers": self.customers,
               "method": self.method}
        for name in self._ARRAYS:
            value = getattr(self, name)
            out[name] = None if value is None else np.asarray(value, dtype=float).tolist()
        out["draw_totals"] = (None if self.draw_totals is None
                              else {q: np.asarray(t, dtype=float).tolist() for q, t in self.draw_totals.items()})
        return out

    def merge(self, state: dict) -> "Portfolio":
        """Add another accumulator's :meth:`state` (the customers of another partition); returns self."""
        self.expected_purchases += float(state["expected_purchases"])
        self.clv += float(state["clv"])
        self.customers += int(state["customers"])
        self.method = state.get("method", self.method)
        for name in ("grad_purchases", "grad_clv_p", "grad_clv_s"):
            if state.get(name) is not None:
                value = np.asarray(state[name], dtype=float)
                mine = getattr(self, name)
                setattr(self, name, value if mine is None else mine + value)
        for name in ("cov_p", "cov_s"):
            if state.get(name) is not None:
                setattr(self, name, np.asarray(state[name], dtype=float))
        if state.get("draw_totals") is not None:
            if self.draw_totals is None:
                self.draw_totals = {q: np.zeros(len(t)) for q, t in state["draw_totals"].items()}
            for q, t in state["draw_totals"].items():
                self.draw_totals[q] += np.asarray(t, dtype=float)
        return self

    def band(self, level: float) -> dict:
        """``{"level", "method", "customers", "expected_purchases": {"total", "lower", "upper"}, "clv": {...}}``:
        the delta method's band on the log scale of each total, or the central quantiles of the draws' totals."""
        if self.draw_totals is not None:
            lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
            out = {"level": level, "method": self.method, "customers": self.customers}
            for q, total in (("expected_purchases", self.expected_purchases), ("clv", self.clv)):
                t = self.draw_totals[q]
                out[q] = {"total": total, "lower": min(total, float(np.quantile(t, lo_q, method="lower"))),
                          "upper": max(total, float(np.quantile(t, hi_q, method="higher")))}
            return out
        return {"level": level, "method": self.method, "customers": self.customers,
                "expected_purchases": total_band(self.expected_purchases, [(self.grad_purchases, self.cov_p)], level),
                "clv": total_band(self.clv, [(self.grad_clv_p, self.cov_p), (self.grad_clv_s, self.cov_s)], level)}


def total_band(total: float, parts, level: float) -> dict:
    """The delta method's band of a portfolio total (module docstring): ``parts``, pairs of the total's gradient
    in a model's log-parameters and that model's :math:`\\Sigma` (None entries: no such model), give
    :math:`\\mathrm{se}(T)`; the band is :math:`T\\exp(\\mp z\\,\\mathrm{se}/T)`."""
    var = sum(float(g @ c @ g) for g, c in parts if g is not None and c is not None)
    if not total > 0:
        return {"total": total, "lower": total, "upper": total, "se": 0.0}
    se_log = math.sqrt(max(var, 0.0)) / total
    lower, upper = _log_interval(np.array([total]), np.array([se_log ** 2]), _z(level))
    return {"total": total, "lower": float(lower[0]), "upper": float(upper[0]), "se": se_log * total}


def log_bounds(q: np.ndarray, var_log: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The delta method's central ``level`` interval of forecasts ``q`` (any shape) from the variance of their
    logs: ``q exp(-/+ z se)`` (``q = 0``: ``[0, 0]``)."""
    return _log_interval(q, var_log, _z(level))


def factored_log_variance(pair_grads: np.ndarray, row_grads: np.ndarray, cov: np.ndarray,
                          codes: np.ndarray | None) -> np.ndarray:
    r"""Variance of the log of many forecasts that factor into a part shared by the customers of one distinct
    (x, T) pair and a part of the customer's own: :math:`\log q_{ci} = \log f_c(u_i) + \log g_i` (a period's
    expected purchases: the if-alive expectation of the pair times the customer's P(alive)).

    ``pair_grads`` (k, C, U): :math:`\partial \log f_c(u) / \partial \log\phi_j`; ``row_grads`` (k, n):
    :math:`\partial \log g_i / \partial \log\phi_j`; ``codes``: each customer's pair (None: pairs are the
    customers). With :math:`d = a + b` the gradient of :math:`\log q`,

    .. math:: d^T\Sigma d = a^T\Sigma a + 2\,a^T(\Sigma b) + b^T\Sigma b,

    the first term once per pair and column, the last once per customer, the middle one ``k`` products per
    customer and column: no (customers x columns x parameters) array. Returns (C, n), >= 0; the delta method of
    :func:`delta_intervals` for C columns at once."""
    k = pair_grads.shape[0]
    quad_pairs = np.einsum("jcu,jl,lcu->cu", pair_grads, cov, pair_grads)  # (C, U)
    sb = cov @ row_grads  # (k, n)
    quad_rows = np.einsum("jn,jn->n", row_grads, sb)
    out = quad_pairs if codes is None else np.take(quad_pairs, codes, axis=1, mode="clip")
    out = out + quad_rows
    for j in range(k):
        a_j = pair_grads[j] if codes is None else np.take(pair_grads[j], codes, axis=1, mode="clip")
        a_j *= 2.0 * sb[j]
        out += a_j
        del a_j
    return np.maximum(out, 0.0)


@dataclass
class ColumnTotals:
    """Portfolio totals of many forecast columns (a period's expected purchases, a window's value) with their
    gradients in each model's log-parameters, added batch by batch (:meth:`add`); :meth:`band` gives each
    total's band by the delta method (:func:`total_band`): the sibling of :class:`Portfolio` for any number of
    columns. Without gradients (no interval asked) only the totals."""

    names: tuple = ()
    totals: np.ndarray | None = None
    grad_p: np.ndarray | None = None  # (C, k_p)
    grad_s: np.ndarray | None = None  # (C, k_s)
    cov_p: np.ndarray | None = None
    cov_s: np.ndarray | None = None
    customers: int = 0

    def add(self, names, totals, customers: int, grad_p=None, grad_s=None, cov_p=None, cov_s=None) -> None:
        names = tuple(names)
        if self.totals is None:
            self.names, self.totals = names, np.zeros(len(names))
        elif names != self.names:
            raise ValueError("ColumnTotals: the columns of a batch differ from the first batch's")
        self.totals = self.totals + np.asarray(totals, dtype=float)
        self.customers += int(customers)
        if grad_p is not None:
            self.grad_p = grad_p if self.grad_p is None else self.grad_p + grad_p
            self.cov_p = cov_p
        if grad_s is not None:
            self.grad_s = grad_s if self.grad_s is None else self.grad_s + grad_s
            self.cov_s = cov_s

    def running_band(self, names, level: float | None = None) -> list[dict]:
        """The bands of the running sums of the columns ``names`` in order (the cumulative value of the periods up
        to each one): a running sum's gradient is the running sum of the gradients, so its band is exact, not
        built from the columns' bands."""
        rows = [self.names.index(name) for name in names]
        totals = np.cumsum(self.totals[rows])
        if level is None or self.grad_p is None:
            return [{"total": float(t)} for t in totals]
        g_p = np.cumsum(self.grad_p[rows], axis=0)
        g_s = None if self.grad_s is None else np.cumsum(self.grad_s[rows], axis=0)
        return [total_band(float(totals[i]), [(g_p[i], self.cov_p), (None if g_s is None else g_s[i], self.cov_s)],
                           level) for i in range(len(rows))]

    def band(self, level: float | None = None) -> dict:
        """``{column: {"total", "lower", "upper", "se"}}`` (only ``"total"`` without a ``level`` or gradients)."""
        out = {}
        for c, name in enumerate(self.names):
            total = float(self.totals[c])
            if level is None or self.grad_p is None:
                out[name] = {"total": total}
                continue
            parts = [(self.grad_p[c], self.cov_p),
                     (None if self.grad_s is None else self.grad_s[c], self.cov_s)]
            out[name] = total_band(total, parts, level)
        return out
