r"""The residual value beyond the horizon: the discounted expected purchases after the last step, to infinity.

With the discrete discounting of :mod:`clv_forecast.value` (steps of length ``s``, rate ``d`` per step,
``f_k = (1+d)^{-k}``, a step's purchases valued at its end) and ``K`` steps in the horizon, a customer's residual is

.. math:: R = \sum_{k > K} f_k\,(E_k - E_{k-1}) = P(\text{alive})\,q^K \sum_{j \ge 1} q^j\,\Delta_{K+j},
          \qquad q = \frac{1}{1+d},\quad \Delta_k = g(ks) - g((k-1)s)

with ``E_k = P(alive) g(ks)`` and ``g`` the model's expected purchases of an active customer (``_expected_if_alive``).
``CLV over the horizon + margin x spend x R`` is the value with the horizon pushed to infinity.

**The numerical tail and its error bound.** For every model of the layer the purchase rate of an active customer
does not increase with time (it is a mixture of decaying survivals times a constant rate: ``g`` is concave), so the
increments ``Delta_k`` never increase. After ``J`` steps past the horizon the rest of the sum is then at most

.. math:: \sum_{j > J} q^j \Delta_{K+j} \le \Delta_{K+J}\,\frac{q^{J+1}}{1-q},

which is computed per customer; the sum stops, per distinct (x, T) pair, once this bound is below ``rtol`` times the
partial sum (default :data:`RTOL`), in chunks of steps that double (64, 128, ... :data:`MAX_CHUNK`). Since the
partial sum is at least ``q Delta_{K+1}``, every pair has stopped after ``ln(rtol (1-q)) / ln q`` steps whatever
the model (about 3,500 monthly steps at 10 %/year and ``rtol = 1e-9``); a model whose customers leave sooner stops
sooner. For a discrete-time model (BG/BB) ``g`` is flat inside a period and the increments that never increase are
those per period: the bound uses the next period's increment and ``q^{1/s}`` per period. The expected purchases
without dropout (NBD: ``g(t) = c t``) have the closed form ``R = c s q^{K+1} / (1-q)``: an infinite undiscounted total,
a finite discounted one.

The kernels are evaluated once per distinct (x, T) pair (:func:`clv_forecast.estimators.base.distinct_pairs`), in
slices of pairs with at most :data:`clv_forecast.value._VALUES_PER_SLICE` values at a time (bounded memory).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ClvInputError
from .estimators.base import distinct_pairs
from .value import _VALUES_PER_SLICE

#: the default relative truncation error of the tail (module docstring)
RTOL = 1e-9
#: the largest chunk of steps evaluated at once per pair (the first is 64; each next one twice the last)
MAX_CHUNK = 1024
#: the most steps past the horizon; a rate per step so small that the tail needs more is refused with one line
MAX_TAIL_STEPS = 1_000_000


def _nbd_tail(params, xu, tu, K: int, step_len: float, q: float) -> np.ndarray:
    """NBD (no dropout): ``g(t) = (r+x) t / (alpha+T)``, so ``R / P(alive) = (r+x)/(alpha+T) s q^{K+1} / (1-q)``."""
    r, alpha = params
    return (r + xu) / (alpha + tu) * step_len * q ** (K + 1) / (1.0 - q)


#: closed forms of the tail of an active customer by model kind (module docstring)
CLOSED_FORMS = {"nbd": _nbd_tail}


def tail_steps_bound(q: float, rtol: float, steps_per_unit: float = 1.0) -> int:
    """The a priori number of steps past the horizon after which every pair has met ``rtol`` (module docstring);
    ``steps_per_unit``: steps per unit of non-increasing increments (1 for continuous time; ``1/s`` per period of
    a discrete-time model with steps of ``s`` periods)."""
    per_unit = q ** (1.0 / steps_per_unit) if steps_per_unit != 1.0 else q
    return int(math.ceil(math.log(rtol * (1.0 - per_unit)) / math.log(q))) + 2 + int(math.ceil(steps_per_unit))


def _tail_if_alive(model_cls, params, xu, tu, K: int, step_len: float, q: float, rtol: float) -> np.ndarray:
    """``q^K sum_{j>=1} q^j Delta_{K+j}`` per distinct pair (module docstring), in slices of pairs."""
    whole = bool(getattr(model_cls, "whole_periods", False))
    # steps per unit of non-increasing increments: a period of a discrete-time model, else a step
    per_unit = 1.0 / step_len if whole else 1.0
    cap = tail_steps_bound(q, rtol, per_unit)
    if cap > MAX_TAIL_STEPS:
        raise ClvInputError(f"the residual value needs about {cap:,} steps past the horizon at this rate per step "
                            f"(at most {MAX_TAIL_STEPS:,}): give a larger discount rate or a longer step",
                            argument="discount_rate", value=f"{1.0 / q - 1.0:.3g} per step")
    n = len(xu)
    out = np.zeros(n)
    size = max(1, _VALUES_PER_SLICE // MAX_CHUNK)
    kernel = model_cls._expected_if_alive
    per_period = q ** (1.0 / step_len) if whole else q
    for lo in range(0, n, size):
        x, T = xu[lo:lo + size], tu[lo:lo + size]
        total = np.zeros(len(x))
        g_prev = kernel(params, np.array([K * step_len]), x, T)[:, 0]
        active = np.arange(len(x))
        done_steps, chunk = 0, 64
        while active.size and done_steps < cap:
            j = np.arange(done_steps + 1, min(done_steps + chunk, cap) + 1, dtype=np.float64)
            g = kernel(params, (K + j) * step_len, x[active], T[active])
            inc = np.diff(np.concatenate([g_prev[active, None], g], axis=1), axis=1)
            np.maximum(inc, 0.0, out=inc)  # (rounding of a flat g)
            total[active] += inc @ q ** j
            g_prev[active] = g[:, -1]
            done_steps = int(j[-1])
            if whole:  # the next period's increment bounds every later one (module docstring)
                m = math.floor((K + done_steps) * step_len + 1e-9)
                ends = kernel(params, np.array([m, m + 1.0]), x[active], T[active])
                bound = (ends[:, 1] - ends[:, 0]) * q ** ((m + 1) / step_len - K) / (1.0 - per_period)
            else:
                bound = inc[:, -1] * q ** (done_steps + 1) / (1.0 - q)
            converged = (bound <= rtol * total[active]) | ~(bound > 0)
            active = active[~converged]
            chunk = min(2 * chunk, MAX_CHUNK)
        out[lo:lo + size] = total
    with np.errstate(under="ignore"):
        return out * q ** K


def check_steps(horizon_len: float, step_len: float) -> int:
    """The number of steps in the horizon (a whole number >= 0; one clear line otherwise)."""
    if not (np.isfinite(step_len) and step_len > 0):
        raise ClvInputError(f"step {step_len!r}: must be a positive length", argument="step", value=step_len)
    steps = horizon_len / step_len
    K = round(steps)
    if not (np.isfinite(steps) and K >= 0 and math.isclose(steps, K, rel_tol=1e-9, abs_tol=1e-9)):
        raise ClvInputError(f"must be a whole number (>= 0) of steps of {step_len:g} ({steps:.6g} steps)",
                            argument="horizon", value=horizon_len)
    return int(K)


def residual_discounted(model_cls, params, x, t_x, T, horizon_len: float, step_len: float, per_step_rate: float,
                        *, rtol: float = RTOL) -> np.ndarray:
    r"""Per customer, the discounted expected purchases after the horizon (module docstring):
    ``sum_{k>K} (1+d)^{-k} (E_k - E_{k-1})`` with ``K = horizon_len / step_len`` (a whole number) steps in the
    horizon, ``d = per_step_rate`` (> 0), lengths in the model's time unit. Exact for the NBD (closed form); for
    the other models a relative truncation error of at most ``rtol`` (plus the kernels' rounding)."""
    if not (isinstance(per_step_rate, (int, float, np.floating)) and np.isfinite(per_step_rate)
            and per_step_rate > 0):
        raise ClvInputError("must be positive: without discounting the residual purchases of a customer who may "
                            "never leave are infinite", argument="discount_rate", value=per_step_rate)
    if not (0 < rtol < 1):
        raise ClvInputError("must be between 0 and 1", argument="rtol", value=rtol)
    K = check_steps(float(horizon_len), float(step_len))
    q = 1.0 / (1.0 + float(per_step_rate))
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    xu, tu, inverse = distinct_pairs(x, T)
    closed = CLOSED_FORMS.get(getattr(model_cls, "kind", ""))
    if closed is not None:
        tail = closed(params, xu, tu, K, float(step_len), q)
    else:
        tail = _tail_if_alive(model_cls, params, xu, tu, K, float(step_len), q, rtol)
    if inverse is not None:
        tail = tail[inverse]
    return model_cls._p_alive(params, x, np.asarray(t_x, dtype=np.float64), T) * tail


def residual_value(purchases, spend=None, data=None, *, horizon, discount_rate, step, margin: float = 1.0,
                   interval: float | None = None, future_spend=None, time_unit=None):
    r"""Per customer: ``residual_purchases`` (:func:`residual_discounted`, the discounted expected purchases after
    ``horizon``), ``expected_spend`` per purchase and ``residual_value = margin x expected_spend x
    residual_purchases``, indexed like ``data``. Units and defaults as in
    :func:`clv_forecast.value.customer_lifetime_value` (the same ``horizon``, ``step`` and ``discount_rate``: the
    CLV plus this is the value over an unbounded horizon). With ``interval`` (e.g. 0.9),
    ``residual_value_lower``/``_upper``: the delta method on the log-parameters
    (:mod:`clv_forecast.uncertainty`; one more tail per parameter, by :func:`~clv_forecast.uncertainty.perturbed`)."""
    import pandas as pd

    from . import uncertainty
    from .value import discount_schedule, value_inputs

    if not (np.isfinite(margin) and margin >= 0):
        raise ClvInputError("must be a non-negative number (share of revenue kept as profit)", argument="margin",
                            value=margin)
    if interval is not None:
        interval = uncertainty.check_level(interval)
    params = purchases.check_fitted()
    if data is None:
        raise ClvInputError("the residual value needs an RFM table", argument="data", value=None)
    x, t_x, big_t, m, expected_spend, index = value_inputs(purchases, spend, data, future_spend=future_spend,
                                                           time_unit=time_unit)
    times, factors = discount_schedule(purchases.time_unit_, horizon, step, discount_rate)
    step_len, K, d = float(times[0]), len(times), float(1.0 / factors[0] - 1.0)
    cls = type(purchases)
    covs = None
    if interval is not None:
        covs = (uncertainty.log_covariance(purchases),
                None if future_spend is not None else uncertainty.log_covariance(spend))
    residual = residual_discounted(cls, params, x, t_x, big_t, K * step_len, step_len, d)
    value = margin * expected_spend * residual
    out = pd.DataFrame({"residual_purchases": residual, "expected_spend": expected_spend, "residual_value": value},
                       index=index)
    if interval is None:
        return out
    h = uncertainty.DELTA_STEP
    g_p = np.column_stack([uncertainty._log_step(residual_discounted(cls, phi, x, t_x, big_t, K * step_len, step_len, d),
                                                 residual, h) for phi in uncertainty.perturbed(params)])
    var = uncertainty._quad(g_p, covs[0])
    if covs[1] is not None:
        g_s = np.column_stack([uncertainty._log_step(type(spend)._expected_spend(psi, x, m), expected_spend, h)
                               for psi in uncertainty.perturbed(spend.check_fitted())])
        var = var + uncertainty._quad(g_s, covs[1])
    out["residual_value_lower"], out["residual_value_upper"] = uncertainty.log_bounds(value, var, interval)
    return out
