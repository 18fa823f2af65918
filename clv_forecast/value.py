r"""Discounted customer lifetime value from a purchase model and a spend model.

For a customer with history (x, t_x, T), a horizon of K steps of length ``s`` (in the model's
time unit) and a discount rate ``d`` per step:

.. math:: \mathrm{CLV} = \text{margin}\cdot E[Z \mid x, m]\sum_{k=1}^{K}
          \frac{E[Y(ks) \mid x, t_x, T] - E[Y((k-1)s) \mid x, t_x, T]}{(1+d)^k}

``E[Y(t)|...]`` is the BG/NBD conditional expectation and ``E[Z|x, m]`` the Gamma-Gamma
conditional expected spend: expected purchases in each step, valued and discounted at the step's
end. Units are explicit: ``horizon`` and ``step`` are durations (``"12M"``, ``"52W"``) and the
discount rate has its own period (``"10%/Y"``, ``Rate(0.01, "M")``); everything is converted to
the model's time unit, so a weekly model and a monthly rate cannot be mixed silently.

``lifetimes``' ``customer_lifetime_value(..., time=12, discount_rate=0.01, freq="W")`` is
``horizon="52.14W", step="4.345W", discount_rate=Rate(0.01, "4.345W")`` here (it steps in months of
4.345 weeks).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .btyd import bgnbd, gamma_gamma
from .btyd._data import as_frame_index, column, rfm_arrays
from .errors import ClvInputError
from .units import Duration, Rate, TimeUnit


def discount_schedule(time_unit: str, horizon, step, discount_rate) -> tuple[np.ndarray, np.ndarray]:
    """Step end times (model units) and their discount factors ``1 / (1 + d_step) ** k``."""
    if time_unit is None:
        raise ClvInputError("CLV: the purchase model's time unit is unknown; fit it with time_unit=...")
    horizon_d = Duration.parse(horizon)
    step_d = Duration.parse(step)
    rate = Rate.parse(discount_rate)
    step_len = step_d.to(time_unit)
    if step_len <= 0:
        raise ClvInputError(f"CLV step {step}: must be a positive duration")
    n_steps = horizon_d.to(time_unit) / step_len
    k = round(n_steps)
    if k < 1 or not math.isclose(n_steps, k, rel_tol=1e-9, abs_tol=1e-9):
        raise ClvInputError(
            f"CLV horizon {horizon}: must be a whole number (>= 1) of steps of {step} ({n_steps:.6g} steps)"
        )
    per_step = rate.over(TimeUnit(step_d.value * step_d.unit.n, step_d.unit.base))
    steps = np.arange(1, k + 1)
    return steps * step_len, 1.0 / (1.0 + per_step) ** steps


def _step_weights(factors: np.ndarray) -> np.ndarray:
    """Weights of the cumulative expectations E_k such that ``sum_k w_k E_k`` is the discounted sum of
    the increments: ``sum_k f_k (E_k - E_{k-1}) = sum_k E_k (f_k - f_{k+1})``, ``f_{K+1} = 0`` (no
    customers x steps difference array)."""
    return factors - np.append(factors[1:], 0.0)


def _clv_parts(purchase_params, spend_params, x, t_x, big_t, m, times, weights):
    """Expected purchases over the horizon, P(alive), expected spend and discounted purchases."""
    r, alpha, a, b = purchase_params
    if_alive = bgnbd._expected_if_alive(times, x, big_t, r, alpha, a, b)  # (customers, steps)
    alive = bgnbd.p_alive(x, t_x, big_t, r, alpha, a, b)
    expected_spend = gamma_gamma.conditional_expected_spend(x, m, *spend_params)
    return alive * if_alive[..., -1], alive, expected_spend, alive * (if_alive @ weights)


def customer_lifetime_value(purchases, spend, data=None, *, horizon="12M", discount_rate="0%/Y", step="1M",
                            margin: float = 1.0, interval: float | None = None, n_draws: int = 200,
                            seed=0, frequency=None, recency=None, T=None, monetary_value=None) -> pd.DataFrame:
    """Per-customer discounted CLV over ``horizon``.

    Returns a DataFrame indexed like ``data`` with ``expected_purchases`` (over the horizon),
    ``p_alive``, ``expected_spend`` (per purchase) and ``clv`` (margin x spend x discounted
    purchases). With ``interval`` (e.g. 0.9), also ``clv_lower`` / ``clv_upper``: the central
    interval of the CLV over ``n_draws`` draws of both models' parameters from their estimated
    sampling distributions (parameter uncertainty; not the customer's own purchase randomness).
    """
    if not (np.isfinite(margin) and margin >= 0):
        raise ClvInputError(f"margin {margin!r}: must be a non-negative number (share of revenue kept as profit)")
    if interval is not None and not (0 < interval < 1):
        raise ClvInputError(f"interval {interval!r}: must be a probability between 0 and 1, e.g. 0.9")
    purchase_params = purchases._check_fitted()
    spend_params = spend._check_fitted()
    rfm = rfm_arrays(data, frequency=frequency, recency=recency, T=T, with_weights=False)
    m = column(data, "monetary_value", monetary_value, "RFM table" if data is not None else "input")
    times, factors = discount_schedule(purchases.time_unit_, horizon, step, discount_rate)
    weights = _step_weights(factors)
    x, t_x, big_t = rfm.frequency, rfm.recency, rfm.T
    gamma_gamma.warn_outside_model(x, m, as_frame_index(data, len(x)))
    expected, alive, expected_spend, discounted = _clv_parts(purchase_params, spend_params, x, t_x, big_t, m,
                                                             times, weights)
    out = pd.DataFrame(
        {
            "expected_purchases": expected,
            "p_alive": alive,
            "expected_spend": expected_spend,
            "clv": margin * expected_spend * discounted,
        },
        index=as_frame_index(data, len(x)),
    )
    if interval is not None:
        out["clv_lower"], out["clv_upper"] = _clv_interval(purchases, spend, x, t_x, big_t, m, times, weights,
                                                           margin, interval, n_draws, seed)
    return out


def _clv_interval(purchases, spend, x, t_x, big_t, m, times, weights, margin, interval, n_draws, seed,
                  max_values: int = 2**25):
    """Central ``interval`` of the CLV over parameter draws, per customer.

    Customers are taken in blocks (at most ``max_values`` samples, 256 MiB, held at once); within
    a block the hypergeometric part is evaluated once per distinct (x, T) pair and draw.
    """
    draws_p = purchases.result_.draws(n_draws, seed)
    draws_s = spend.result_.draws(n_draws, None if seed is None else seed + 1)
    lower, upper = np.empty(len(x)), np.empty(len(x))
    block = max(1, max_values // n_draws)
    for start in range(0, len(x), block):
        rows = slice(start, start + block)
        xb, tb, big_tb, mb = x[rows], t_x[rows], big_t[rows], m[rows]
        xu, tu, codes = bgnbd.distinct_pairs(xb, big_tb)  # once per block, not per draw
        samples = np.empty((n_draws, len(xb)))
        for i in range(n_draws):
            discounted = bgnbd._expected_if_alive(times, xu, tu, *draws_p[i], dedupe=False) @ weights
            if codes is not None:
                discounted = discounted[codes]
            samples[i] = (margin * gamma_gamma.conditional_expected_spend(xb, mb, *draws_s[i])
                          * bgnbd.p_alive(xb, tb, big_tb, *draws_p[i]) * discounted)
        # order statistics, not interpolation: a draw with q <= 1 gives an infinite spend, and
        # interpolating between inf and a number would give NaN
        lower[rows] = np.quantile(samples, (1 - interval) / 2, axis=0, method="lower")
        upper[rows] = np.quantile(samples, (1 + interval) / 2, axis=0, method="higher")
    return lower, upper
