r"""Discounted customer lifetime value from a purchase model and a spend model.

For a customer with history (x, t_x, T), a horizon of K steps of length ``s`` (in the model's
time unit) and a discount rate ``d`` per step:

.. math:: \mathrm{CLV} = \text{margin}\cdot E[Z \mid x, m]\sum_{k=1}^{K}
          \frac{E[Y(ks) \mid x, t_x, T] - E[Y((k-1)s) \mid x, t_x, T]}{(1+d)^k}

``E[Y(t)|...]`` is the purchase model's conditional expectation (its kernels ``_p_alive`` and
``_expected_if_alive``, :mod:`clv_forecast.estimators.base`) and ``E[Z|x, m]`` the spend model's
conditional expected spend (``_expected_spend``): expected purchases in each step, valued and discounted at the step's
end. Units are explicit: ``horizon`` and ``step`` are durations (``"12M"``, ``"52W"``) and the
discount rate has its own period (``"10%/Y"``, ``Rate(0.01, "M")``); everything is converted to
the model's time unit, so a weekly model and a monthly rate cannot be mixed silently.

A known spend per purchase (``future_spend=``: lifetimes' ``monetary_value``, pymc-marketing's
``future_spend``) replaces ``E[Z|x, m]``; then no spend model is needed. The RFM table's time unit
(``attrs["time_unit"]`` or ``time_unit=``) is converted to the purchase model's.

``lifetimes``' ``customer_lifetime_value(..., time=12, discount_rate=0.01, freq="W")`` is
``horizon="52.14W", step="4.345W", discount_rate=Rate(0.01, "4.345W")`` here (it steps in months of
4.345 weeks).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .estimators._data import as_frame_index, column, rfm_arrays, whole_periods
from .estimators.base import distinct_pairs
from .errors import ClvInputError, format_rows
from .units import (DEFAULT_DISCOUNT_RATE, DEFAULT_HORIZON, DEFAULT_MARGIN, DEFAULT_STEP, Duration, Rate,
                    TimeUnit)


#: At most this many discounting steps in a horizon: daily steps over 27 years, hourly over one year (8,766),
#: pass; ``--step 1s`` over 12 months (31.6M steps) or ``--horizon 100000Y`` in months (1.2M) are refused with
#: one line instead of asking for gigabytes. The CLV's cost grows with the steps (the (pairs x steps)
#: temporaries are bounded by :data:`_VALUES_PER_SLICE` whatever the number of steps).
MAX_STEPS = 10_000


def discount_schedule(time_unit: str, horizon, step, discount_rate) -> tuple[np.ndarray, np.ndarray]:
    """Step end times (model units) and their discount factors ``1 / (1 + d_step) ** k``.

    The horizon must be a whole number of steps, at most :data:`MAX_STEPS`."""
    if time_unit is None:
        raise ClvInputError("CLV: the purchase model's time unit is unknown; fit it with time_unit=...")
    horizon_d = Duration.parse(horizon)
    step_d = Duration.parse(step)
    rate = Rate.parse(discount_rate)
    step_len = step_d.to(time_unit)
    if step_len <= 0:
        raise ClvInputError(f"CLV step {step}: must be a positive duration")
    n_steps = horizon_d.to(time_unit) / step_len
    if not n_steps <= MAX_STEPS * (1 + 1e-9):  # also inf and NaN (a horizon such as 1e308Y)
        count = f"{n_steps:,.0f}" if math.isfinite(n_steps) and n_steps < 1e15 else f"{n_steps:.3g}"
        # the step is named when it is shorter than a day (sub-daily discounting is the unusual choice)
        argument = "step" if step_d.days < 1 else "horizon"
        raise ClvInputError(
            f"{horizon} in steps of {step} is {count} steps; at most {MAX_STEPS:,} (daily steps over 27 years): "
            "give a longer step or a shorter horizon", argument=argument, value=step if argument == "step" else horizon)
    k = round(n_steps)
    if k < 1 or not math.isclose(n_steps, k, rel_tol=1e-9, abs_tol=1e-9):
        raise ClvInputError(
            f"CLV horizon {horizon}: must be a whole number (>= 1) of steps of {step} ({n_steps:.6g} steps)"
        )
    try:
        per_step = rate.over(TimeUnit(step_d.value * step_d.unit.n, step_d.unit.base))
    except ClvInputError as exc:  # a step beyond the time units' range (1ns to 1000Y)
        raise ClvInputError(exc.reason.split(": ", 1)[-1], argument="step", value=step) from None
    steps = np.arange(1, k + 1)
    return steps * step_len, 1.0 / (1.0 + per_step) ** steps


def _step_weights(factors: np.ndarray) -> np.ndarray:
    """Weights of the cumulative expectations E_k such that ``sum_k w_k E_k`` is the discounted sum of
    the increments: ``sum_k f_k (E_k - E_{k-1}) = sum_k E_k (f_k - f_{k+1})``, ``f_{K+1} = 0`` (no
    customers x steps difference array)."""
    return factors - np.append(factors[1:], 0.0)


#: Distinct (frequency, T) pairs evaluated at a time, for 12 steps. The (pairs, steps) arrays then stay near
#: 12 MB, under glibc's largest mmap threshold (32 MB), so their memory is reused from one slice to the next
#: instead of being mapped and faulted in anew: with every pair distinct (10M customers), 1M-pair slices cost
#: 7-9 s of system time in page faults, these 3 s. With more steps the slices are shorter
#: (:data:`_VALUES_PER_SLICE` values at most), so memory does not grow with the number of steps.
_PAIRS_PER_SLICE = 1 << 17
_VALUES_PER_SLICE = _PAIRS_PER_SLICE * 12


def _pairs_per_slice(n_steps: int) -> int:
    return max(1, min(_PAIRS_PER_SLICE, _VALUES_PER_SLICE // max(1, n_steps)))


def discounted_if_alive(model_cls, purchase_params, xu, tu, times, weights) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct (x, T) pair: the expected purchases of an active customer over the whole horizon
    (the last step) and their discounted sum, in slices of pairs (bounded (pairs, steps) temporaries);
    ``model_cls._expected_if_alive`` is the purchase model's kernel."""
    n = xu.shape[0]
    last, discounted = np.empty(n), np.empty(n)
    size = _pairs_per_slice(len(times))
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        if_alive = model_cls._expected_if_alive(purchase_params, times, xu[lo:hi], tu[lo:hi])
        last[lo:hi] = if_alive[:, -1]
        discounted[lo:hi] = np.einsum("ij,j->i", if_alive, weights)  # (row by row: the same bits in any batch)
        del if_alive
    return last, discounted


def _clv_parts(model_cls, purchase_params, x, t_x, big_t, times, weights, pairs=None, if_alive=None):
    """Expected purchases over the horizon, P(alive) and the discounted purchases.

    The per-step expectations are computed and reduced (last step, discounted sum) once per
    distinct (x, T) pair; only the two reduced columns are spread back to the customers, never a
    customers x steps array (10M customers x 12 steps would be 960 MB). ``pairs``: the distinct pairs
    (:func:`clv_forecast.estimators.base.distinct_pairs`) when already known; ``if_alive``: the pairs' reduced
    columns (:func:`discounted_if_alive`) when already known."""
    xu, tu, codes = distinct_pairs(x, big_t) if pairs is None else pairs
    last, discounted = (discounted_if_alive(model_cls, purchase_params, xu, tu, times, weights) if if_alive is None
                        else if_alive)
    if codes is not None:  # (spread: new arrays)
        last, discounted = last[codes], discounted[codes]
    elif if_alive is not None:  # (scaled in place below: the caller's arrays stay as they were)
        last, discounted = last.copy(), discounted.copy()
    alive = model_cls._p_alive(purchase_params, x, t_x, big_t)
    last *= alive
    discounted *= alive
    return last, alive, discounted


#: The delta method's gradient of the if-alive expectations is evaluated on a grid of T (relative spacing
#: :data:`GRADIENT_GRID`, ``T = exp(k * GRADIENT_GRID)``) when that has at most half as many distinct (x, T) pairs as
#: the data (T continuous: every pair distinct) and at least :data:`GRADIENT_GRID_MIN_PAIRS` of them. The forecast at
#: the estimate stays exact per pair; only its relative change under each parameter step is read at the nearest grid
#: T (:func:`_sensitivities`). The log-derivatives are smooth in log T, so a shift of at most half the
#: spacing (5e-4 relative) changes a standard error by about that relative amount: bounds move by a few parts in
#: 1e4 of their distance to the estimate (tested), while 1M customers with continuous T cost 1 + 5 small grid
#: evaluations instead of 5 full ones.
GRADIENT_GRID = 1e-3
GRADIENT_GRID_MIN_PAIRS = 20_000


def gradient_grid(model_cls, pairs):
    """The grid pairs of :data:`GRADIENT_GRID` and each distinct pair's grid pair (codes), or None where the exact
    gradient is as cheap (few distinct pairs) or the model counts whole periods (its T must stay whole)."""
    xu, tu, _ = pairs
    if len(xu) < GRADIENT_GRID_MIN_PAIRS or getattr(model_cls, "whole_periods", False):
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        grid_t = np.where(tu > 0, np.exp(np.round(np.log(tu) / GRADIENT_GRID) * GRADIENT_GRID), tu)
    gx, gt, gcodes = distinct_pairs(xu, grid_t)
    if gcodes is None or 2 * len(gx) > len(xu):
        return None
    return gx, gt, gcodes


def known_spend(data, future_spend, n: int, index) -> np.ndarray:
    """The per-customer spend per purchase given by the caller: a column name of ``data``, or values
    aligned with its rows (a Series indexed like ``data`` is aligned by label); finite and >= 0."""
    if isinstance(future_spend, str):
        if data is None or future_spend not in getattr(data, "columns", ()):
            cols = ", ".join(map(str, getattr(data, "columns", []))) or "none"
            raise ClvInputError(f"no such column in the RFM table; columns are: {cols}",
                                argument="future_spend", value=future_spend)
        values = data[future_spend]
    elif isinstance(future_spend, pd.Series) and isinstance(data, pd.DataFrame) \
            and not future_spend.index.equals(data.index):
        missing = data.index.difference(future_spend.index)
        if len(missing) or not future_spend.index.is_unique:
            raise ClvInputError(f"its index does not match the RFM table's ({len(missing)} customer(s) missing, "
                                f"e.g. {list(missing[:3])}) or has duplicates", argument="future_spend", value="Series")
        values = future_spend.reindex(data.index)
    else:
        values = future_spend
    try:
        spend = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ClvInputError("must be numbers (spend per purchase)", argument="future_spend", value="...") from None
    if len(spend) != n:
        raise ClvInputError(f"has {len(spend)} values for {n} customers", argument="future_spend", value="...")
    bad = ~np.isfinite(spend) | (spend < 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ClvInputError(f"{format_rows((rows + 1).tolist())} (customers {list(index[rows[:5]])}, values "
                            f"{spend[rows[:5]].tolist()}): spend must be finite and >= 0",
                            argument="future_spend", value=future_spend if isinstance(future_spend, str) else "...")
    return spend


def value_inputs(purchases, spend, data, *, frequency=None, recency=None, T=None, monetary_value=None,
                 future_spend=None, time_unit=None):
    """The validated inputs of a value forecast: ``(x, t_x, T, m, expected_spend, index)``, recency and T in the
    purchase model's unit (a discrete-time model's whole-period rules checked), ``m`` the mean spends (None with
    a ``future_spend``) and the expected spend per purchase (the spend model's, or the known one)."""
    purchases.check_fitted()
    if future_spend is None:
        if spend is None:
            raise ClvInputError("CLV needs a spend model or a known spend per purchase (future_spend=...)")
        spend_params = spend.check_fitted()
    rfm = rfm_arrays(data, frequency=frequency, recency=recency, T=T, time_unit=time_unit,
                     model_unit=purchases.time_unit_, with_weights=False)
    if getattr(purchases, "whole_periods", False):  # a discrete-time model: whole periods (its rules)
        rfm = whole_periods(rfm, "RFM table" if data is not None else "input")
    x, t_x, big_t = rfm.frequency, rfm.recency, rfm.T
    index = as_frame_index(data, len(x))
    if future_spend is None:
        m = column(data, "monetary_value", monetary_value, "RFM table" if data is not None else "input")
        if len(m) != len(x):
            raise ClvInputError(f"monetary_value has {len(m)} values for {len(x)} customers")
        type(spend).check_inputs(x, m, index)
        expected_spend = type(spend)._expected_spend(spend_params, x, m)
    else:
        m = None
        expected_spend = known_spend(data, future_spend, len(x), index)
    return x, t_x, big_t, m, expected_spend, index


def customer_lifetime_value(purchases, spend=None, data=None, *, horizon=DEFAULT_HORIZON,
                            discount_rate=DEFAULT_DISCOUNT_RATE, step=DEFAULT_STEP,
                            margin: float = DEFAULT_MARGIN, interval: float | None = None,
                            interval_method: str = "delta", n_draws: int = 200, seed=0, frequency=None,
                            recency=None, T=None, monetary_value=None, future_spend=None,
                            time_unit=None, portfolio=None, bootstrap=None) -> pd.DataFrame:
    """Per-customer discounted CLV over ``horizon``.

    Returns a DataFrame indexed like ``data`` with ``expected_purchases`` (over the horizon),
    ``p_alive``, ``expected_spend`` (per purchase) and ``clv`` (margin x spend x discounted
    purchases). With ``interval`` (e.g. 0.9), also ``<forecast>_lower`` / ``<forecast>_upper`` for each of
    the four (:data:`clv_forecast.uncertainty.INTERVAL_COLUMNS`): the central interval from the models'
    parameter uncertainty (not the customer's own purchase randomness), by ``interval_method`` ``"delta"``
    (default), ``"draws"`` (``n_draws`` parameter draws, ``seed``) or ``"bootstrap"`` (the refitted parameter
    vectors ``bootstrap`` of :meth:`clv_forecast.model.ClvModel.bootstrap`, used as the draws are),
    :mod:`clv_forecast.uncertainty`; and
    ``attrs["portfolio"]``, the band of the totals of the expected purchases and the CLV over the table's
    customers (:meth:`clv_forecast.uncertainty.Portfolio.band`).

    ``future_spend`` (a column name of ``data``, or one value per row) is a known spend per
    purchase used instead of the spend model's expectation: then ``spend`` may be None and intervals
    reflect the purchase parameters only. ``time_unit`` declares the unit of recency and T for a table
    without ``attrs["time_unit"]``; a table in another unit than the purchase model's is converted.
    ``portfolio``: a :class:`clv_forecast.uncertainty.Portfolio` to add this table's customers to (a scorer's
    band over all its batches); the band in ``attrs`` is then that accumulator's so far. Customers with a
    forecast that is not finite are left out of the band (as out of a CLV total).
    """
    from . import uncertainty

    if not (np.isfinite(margin) and margin >= 0):
        raise ClvInputError(f"margin {margin!r}: must be a non-negative number (share of revenue kept as profit)")
    if interval is not None:
        interval = uncertainty.check_level(interval)
        uncertainty.check_method(interval_method)
    purchase_params = purchases.check_fitted()
    x, t_x, big_t, m, expected_spend, index = value_inputs(purchases, spend, data, frequency=frequency,
                                                           recency=recency, T=T, monetary_value=monetary_value,
                                                           future_spend=future_spend, time_unit=time_unit)
    covs = None
    if interval is not None and interval_method == "bootstrap":  # checked before any work
        vectors = _bootstrap_vectors(bootstrap, purchases, None if future_spend is not None else spend)
    elif interval is not None:  # checked before any work: a model without covariance is one line
        covs = (uncertainty.log_covariance(purchases),
                None if future_spend is not None else uncertainty.log_covariance(spend))
    times, factors = discount_schedule(purchases.time_unit_, horizon, step, discount_rate)
    weights = _step_weights(factors)
    pairs = distinct_pairs(x, big_t)
    pair_parts = discounted_if_alive(type(purchases), purchase_params, pairs[0], pairs[1], times, weights)
    expected, alive, discounted = _clv_parts(type(purchases), purchase_params, x, t_x, big_t, times, weights, pairs,
                                             if_alive=pair_parts)
    out = pd.DataFrame(
        {
            "expected_purchases": expected,
            "p_alive": alive,
            "expected_spend": expected_spend,
            "clv": margin * expected_spend * discounted,
        },
        index=index,
    )
    if interval is None:
        return out
    base = {"expected_purchases": expected, "p_alive": alive, "discounted": discounted,
            "expected_spend": expected_spend, "clv": out["clv"].to_numpy()}
    portfolio = uncertainty.Portfolio() if portfolio is None else portfolio
    with np.errstate(invalid="ignore"):
        counted = np.isfinite(out.to_numpy(dtype=float)).all(axis=1)  # (the forecasts; below, their bounds too)
    if interval_method == "delta":
        p_sens, s_sens = _sensitivities(purchases, None if future_spend is not None else spend, base, x, t_x, big_t,
                                        m, times, weights, pairs, covs, pair_parts)
        bounds = uncertainty.delta_intervals(p_sens, s_sens, interval)
    else:
        if interval_method == "draws":
            draws_p = purchases.result_.draws(n_draws, seed, bounds=purchases.param_bounds)
            draws_s = None if future_spend is not None else spend.result_.draws(
                n_draws, None if seed is None else seed + 1, bounds=spend.param_bounds)
        else:
            draws_p, draws_s = vectors
        bounds, totals = _draw_intervals(purchases, None if future_spend is not None else spend, x, t_x, big_t, m,
                                         expected_spend if future_spend is not None else None, times, weights,
                                         margin, interval, draws_p, draws_s, counted)
    for q in uncertainty.QUANTITIES:
        out[f"{q}_lower"], out[f"{q}_upper"] = bounds[q]
    if interval_method == "delta":
        with np.errstate(invalid="ignore"):
            counted &= np.isfinite(out.to_numpy(dtype=float)).all(axis=1)
        portfolio.add(p_sens, s_sens, margin, rows=counted)
    else:
        portfolio.add_draws(totals,
                            {q: out[q].to_numpy()[counted].sum() for q in ("expected_purchases", "clv")},
                            int(counted.sum()), method=interval_method)
    out.attrs["portfolio"] = portfolio.band(interval)
    return out


def _sensitivities(purchases, spend, base: dict, x, t_x, big_t, m, times, weights, pairs, covs, pair_parts=None):
    """The forecasts at the forward steps of each log-parameter (:func:`clv_forecast.uncertainty.perturbed`): the
    purchase model's on the same distinct pairs (their if-alive part read on :func:`gradient_grid` when the pairs are
    many), the spend model's (None without one). ``pair_parts``: the pairs' if-alive columns at the estimate."""
    from . import uncertainty

    p_cls = type(purchases)
    params = purchases.check_fitted()
    grid = gradient_grid(p_cls, pairs) if pair_parts is not None else None
    if grid is not None:
        gx, gt, gcodes = grid
        at_grid = discounted_if_alive(p_cls, params, gx, gt, times, weights)
    steps = []
    for phi in uncertainty.perturbed(params):
        if grid is None:
            e, a, d = _clv_parts(p_cls, phi, x, t_x, big_t, times, weights, pairs)
        else:  # the exact pairs' values times their grid pair's relative change (GRADIENT_GRID)
            moved = discounted_if_alive(p_cls, phi, gx, gt, times, weights)
            parts = tuple(exact * _ratio(new, old)[gcodes] for exact, new, old in zip(pair_parts, moved, at_grid))
            e, a, d = _clv_parts(p_cls, phi, x, t_x, big_t, times, weights, pairs, if_alive=parts)
        steps.append({"expected_purchases": e, "p_alive": a, "discounted": d})
    p_sens = uncertainty.Sensitivity(base, steps, covs[0])
    if spend is None:
        return p_sens, None
    s_cls = type(spend)
    s_steps = [{"expected_spend": s_cls._expected_spend(psi, x, m)}
               for psi in uncertainty.perturbed(spend.check_fitted())]
    return p_sens, uncertainty.Sensitivity({"expected_spend": base["expected_spend"]}, s_steps, covs[1])


def _ratio(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """``new / old``, 1 where it is not a finite number (a forecast of 0 does not move)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = new / old
    return np.where(np.isfinite(out), out, 1.0)


def _bootstrap_vectors(bootstrap, purchases, spend) -> tuple[np.ndarray, np.ndarray | None]:
    """The refitted parameter vectors of :meth:`clv_forecast.model.ClvModel.bootstrap` for the purchase model and
    (None: a known spend) the spend model; one line when there are none or they are another model's."""
    if bootstrap is None or bootstrap["purchases"] is None:
        raise ClvInputError("the model has no bootstrap parameter vectors: call model.bootstrap(rfm) first "
                            "(CLI: fit --bootstrap N)", argument="interval_method", value="bootstrap")
    out = [np.asarray(bootstrap["purchases"], dtype=float), None]
    if spend is not None:
        if bootstrap["spend"] is None:
            raise ClvInputError("the model's bootstrap has no spend vectors: call model.bootstrap(rfm) again on a "
                                "table with monetary_value", argument="interval_method", value="bootstrap")
        out[1] = np.asarray(bootstrap["spend"], dtype=float)
    for vectors, model in zip(out, (purchases, spend)):
        if vectors is not None and vectors.shape[1] != len(model.param_names):
            raise ClvInputError(f"the bootstrap vectors have {vectors.shape[1]} parameters, the {model.name} model "
                                f"{len(model.param_names)}: call model.bootstrap(rfm) again",
                                argument="interval_method", value="bootstrap")
    return out[0], out[1]


def _draw_intervals(purchases, spend, x, t_x, big_t, m, fixed_spend, times, weights, margin, interval, draws_p,
                    draws_s, counted, max_values: int = 2**25) -> tuple[dict, dict]:
    """Central ``interval`` of every forecast over parameter vectors, per customer, and the portfolio totals under
    each vector over the customers ``counted`` (a boolean mask): ``draws_p`` (n, k) the purchase model's,
    ``draws_s`` the spend model's (None: a known spend ``fixed_spend``), row i of both one joint vector; parameter
    draws (``interval_method="draws"``) or the bootstrap's refits (``"bootstrap"``), :mod:`clv_forecast.uncertainty`.

    Customers are taken in blocks (at most ``max_values`` samples of all four forecasts held at once), in the
    order of their (x, T) pair: within a block the hypergeometric part is evaluated once per distinct pair and
    vector, and a pair's customers fill consecutive blocks, so that each pair is evaluated in one block (two where
    a block ends inside its run), not once in every block that happens to hold one of its customers. Each
    customer's bounds are the same bits in any order or block.
    """
    from .uncertainty import QUANTITIES

    n_draws = len(draws_p)
    p_cls, s_cls = type(purchases), type(spend)
    bounds = {q: (np.empty(len(x)), np.empty(len(x))) for q in QUANTITIES}
    totals = {"expected_purchases": np.zeros(n_draws), "clv": np.zeros(n_draws)}
    block = max(1, max_values // (4 * n_draws))
    lo_q, hi_q = (1 - interval) / 2, (1 + interval) / 2
    order = np.lexsort((big_t, x)) if len(x) > block else None  # (one block: the rows as they are)
    for start in range(0, len(x), block):
        rows = slice(start, start + block) if order is None else order[start:start + block]
        xb, tb, big_tb = x[rows], t_x[rows], big_t[rows]
        pairs = distinct_pairs(xb, big_tb)  # once per block, not per draw
        samples = {q: np.empty((n_draws, len(xb))) for q in QUANTITIES}
        for i in range(n_draws):
            e, a, d = _clv_parts(p_cls, draws_p[i], xb, tb, big_tb, times, weights, pairs)
            value = fixed_spend[rows] if draws_s is None else s_cls._expected_spend(draws_s[i], xb, m[rows])
            samples["expected_purchases"][i], samples["p_alive"][i] = e, a
            samples["expected_spend"][i], samples["clv"][i] = value, margin * value * d
        for q in QUANTITIES:
            # order statistics, not interpolation: a draw with q <= 1 gives an infinite spend, and
            # interpolating between inf and a number would give NaN
            bounds[q][0][rows] = np.quantile(samples[q], lo_q, axis=0, method="lower")
            bounds[q][1][rows] = np.quantile(samples[q], hi_q, axis=0, method="higher")
        for q in totals:
            totals[q] += samples[q][:, counted[rows]].sum(axis=1)
    return bounds, totals
