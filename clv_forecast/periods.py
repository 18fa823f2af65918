r"""Value by period and window: per customer, the expected purchases and the discounted value of every period
(months, quarters, years) up to the horizon and of named windows (years 1-3, 3-5), in one pass.

With the discount schedule of :func:`clv_forecast.value.discount_schedule` (steps of length ``s`` ending at
:math:`t_k = ks`, factors :math:`f_k = (1+d)^{-k}`, :math:`k = 1..K`) and :math:`E_k = E[Y(t_k) \mid \text{alive},
x, T]` the purchase model's if-alive expectation (``_expected_if_alive``, :mod:`clv_forecast.estimators.base`),
a span of steps :math:`(a, b]` (a period or a window) has

.. math:: N_{(a,b]} = P(\text{alive})\,(E_b - E_a), \qquad
          V_{(a,b]} = \text{margin}\cdot E[Z]\cdot P(\text{alive}) \sum_{k=a+1}^{b} f_k\,(E_k - E_{k-1})

(the CLV of :mod:`clv_forecast.value` restricted to the span; Fader, Hardie & Lee 2005, "RFM and CLV", for the
factorisation :math:`E[Y(t) \mid x, t_x, T] = P(\text{alive})\,E[Y(t) \mid \text{alive}, x, T]`). Both are
linear in :math:`(E_1, ..., E_K)`: :math:`N = \sum_k w_k E_k` with :math:`w_b = 1, w_a = -1`, and
:math:`V \propto \sum_{k=a+1}^{b-1} (f_k - f_{k+1}) E_k + f_b E_b - f_{a+1} E_a`. So the kernel is evaluated once
per distinct (x, T) pair at the K step times and multiplied by one (K x columns) weight matrix
(:func:`span_weights`) built once for every period, every window and the whole horizon; the columns are then
spread to the customers and scaled by P(alive) and the spend. The monthly periods' values add up to the CLV
with monthly steps over the same horizon; each window's to the periods it covers.

Intervals (``interval``): the delta method of :mod:`clv_forecast.uncertainty` for every column, on the log
scale, its gradient split into the pair's part and the customer's
(:func:`clv_forecast.uncertainty.factored_log_variance`); P(alive), the expected spend, and the horizon's
expected purchases and CLV exactly as :func:`clv_forecast.value.customer_lifetime_value` gives them. The
portfolio band of each column's total is :class:`clv_forecast.uncertainty.ColumnTotals`.

The residual value beyond the horizon (``residual=True``): :func:`clv_forecast.value_tail.residual_value` with
the same steps and rate (the CLV's discounting continued to infinity; the NBD in closed form, the other models by
a numerical tail with a stated truncation bound), as the last columns ``residual_purchases`` and ``residual_value``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import ClvInputError
from .units import DEFAULT_DISCOUNT_RATE, DEFAULT_MARGIN, DEFAULT_STEP, Duration
from .value import _pairs_per_slice, discount_schedule, value_inputs

__all__ = ["PeriodPlan", "plan_periods", "span_weights", "value_by_period", "output_columns", "DEFAULT_PERIODS_HORIZON"]

#: the horizon of :func:`value_by_period` when none is given
DEFAULT_PERIODS_HORIZON = "5Y"
#: period names beyond the units' grammar
_PERIOD_ALIASES = {"Q": "3M", "quarter": "3M", "quarters": "3M"}
#: the label prefix of a period of one unit (a quarter: Q); any other length: P
_PREFIX = {"M": "M", "Y": "Y", "W": "W", "D": "D"}
_WINDOW = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*-\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]+)\s*$")


@dataclass(frozen=True)
class PeriodPlan:
    """The schedule of one value-by-period forecast: the step times and discount factors
    (:func:`~clv_forecast.value.discount_schedule`), the spans of steps ``(a, b]`` of the periods and the windows
    with their labels, and the (K, 2S) weight matrix (:func:`span_weights`; S spans: the periods, the windows,
    then the whole horizon)."""

    times: np.ndarray
    factors: np.ndarray
    period_labels: tuple
    window_labels: tuple
    spans: tuple
    weights: np.ndarray
    step: str

    @property
    def labels(self) -> tuple:
        """The spans' labels: periods, windows (the whole horizon is the output's ``expected_purchases``/``clv``)."""
        return self.period_labels + self.window_labels


def span_weights(factors: np.ndarray, spans) -> np.ndarray:
    r"""(K, 2S) weights of the cumulative if-alive expectations :math:`E_1..E_K`: column ``s`` gives the expected
    purchases in span ``s`` = steps ``(a, b]`` (:math:`E_b - E_a`, :math:`E_0 = 0`), column ``S + s`` its discounted
    purchases :math:`\sum_{k=a+1}^{b} f_k (E_k - E_{k-1})`, rewritten as weights on :math:`E_k` (module docstring).
    A single span ``(0, K)`` gives the CLV's weights (``value._step_weights``)."""
    factors = np.asarray(factors, dtype=np.float64)
    k = len(factors)
    n = len(spans)
    w = np.zeros((k, 2 * n))
    for s, (a, b) in enumerate(spans):
        w[b - 1, s] += 1.0
        if a > 0:
            w[a - 1, s] -= 1.0
        w[a:b, n + s] = factors[a:b] - np.append(factors[a + 1:b], 0.0)
        if a > 0:
            w[a - 1, n + s] -= factors[a]
    return w


def _period_duration(period) -> Duration:
    text = _PERIOD_ALIASES.get(str(period).strip(), period) if isinstance(period, str) else period
    try:
        return Duration.parse(text)
    except ClvInputError as exc:
        raise ClvInputError(exc.reason.split(": ", 1)[-1] + " (or Q for quarters)", argument="period",
                            value=period) from None


def _period_prefix(period) -> str:
    if isinstance(period, str) and period.strip() in _PERIOD_ALIASES:
        return "Q"
    d = _period_duration(period)
    return _PREFIX.get(d.unit.base, "P") if d.value == 1 and d.unit.n == 1 else "P"


def _parse_windows(windows) -> list[tuple[str, Duration, Duration]]:
    """``"0-1Y,1-3Y"`` or ``[(start, end), ...]`` (durations) -> ``[(label, start, end)]``."""
    if isinstance(windows, str):
        items = [w for w in windows.split(",") if w.strip()]
        if not items:
            raise ClvInputError("no window given; write them as 0-1Y,1-3Y,3-5Y", argument="windows", value=windows)
        out = []
        for item in items:
            match = _WINDOW.match(item)
            if match is None:
                raise ClvInputError(f"window {item.strip()!r} not understood; write START-END with a unit, e.g. "
                                    "0-1Y or 6M-2Y", argument="windows", value=windows)
            a, a_unit, b, b_unit = match.groups()
            try:
                start = Duration.parse(f"{a}{a_unit or b_unit}")
                end = Duration.parse(f"{b}{b_unit}")
            except ClvInputError as exc:
                raise ClvInputError(f"window {item.strip()!r}: {exc.reason}", argument="windows",
                                    value=windows) from None
            out.append(("".join(item.split()), start, end))
        return out
    out = []
    try:
        pairs = list(windows)
    except TypeError:
        raise ClvInputError("must be text such as 0-1Y,1-3Y or a list of (start, end) durations",
                            argument="windows", value=type(windows).__name__) from None
    for pair in pairs:
        try:
            a, b = pair
            start, end = Duration.parse(a), Duration.parse(b)
        except (TypeError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, ClvInputError) else "each window is a (start, end) pair of durations"
            raise ClvInputError(f"window {pair!r}: {reason}", argument="windows", value="...") from None
        label = (f"{start.value:g}-{end.value:g}{end.unit}" if start.unit == end.unit else f"{start}-{end}")
        out.append((label, start, end))
    return out


def _whole_steps(duration: Duration, step_len: float, unit: str) -> float:
    return duration.to(unit) / step_len


def _as_steps(count: float) -> int | None:
    k = round(count)
    return k if math.isfinite(count) and math.isclose(count, k, rel_tol=1e-9, abs_tol=1e-9) else None


def plan_periods(time_unit: str, *, horizon=DEFAULT_PERIODS_HORIZON, period="M", windows=None, step=None,
                 discount_rate=DEFAULT_DISCOUNT_RATE) -> PeriodPlan:
    """The :class:`PeriodPlan` of a forecast in a model of ``time_unit``; every bad setting is one line naming its
    argument: a period or window edge that is not a whole number of steps, a horizon that is not a whole number
    of periods, a window outside the horizon, no period and no window. ``step`` None: one month when the
    horizon, the period and every window edge are whole months, else the period."""
    if period is None and windows is None:
        raise ClvInputError("give the periods (M, Q, Y or a duration) or the windows (0-1Y,1-3Y), or both",
                            argument="period", value=None)
    if period is not None:
        period_d = _period_duration(period)
        if period_d.days <= 0:
            raise ClvInputError("must be a positive duration", argument="period", value=period)
    parsed = [] if windows is None else _parse_windows(windows)
    if step is None:
        candidates = [DEFAULT_STEP] + ([str(period_d)] if period is not None else [])
        first = None
        for candidate in candidates:
            try:
                return plan_periods(time_unit, horizon=horizon, period=period, windows=windows, step=candidate,
                                    discount_rate=discount_rate)
            except ClvInputError as exc:
                first = first or exc
        raise first
    times, factors = discount_schedule(time_unit, horizon, step, discount_rate)
    k = len(times)
    step_len = Duration.parse(step).to(time_unit)
    spans, period_labels = [], []
    if period is not None:
        per = _as_steps(_whole_steps(period_d, step_len, time_unit))
        if per is None or per < 1:
            raise ClvInputError(f"must be a whole number of steps of {step} "
                                f"({_whole_steps(period_d, step_len, time_unit):.6g} steps)", argument="period",
                                value=period)
        count = k / per
        if _as_steps(count) is None:
            raise ClvInputError(f"the horizon {horizon} is not a whole number of periods of {period} "
                                f"({count:.6g} periods)", argument="horizon", value=horizon)
        n = round(count)
        prefix, width = _period_prefix(period), len(str(n))
        for j in range(n):
            spans.append((j * per, (j + 1) * per))
            period_labels.append(f"{prefix}{j + 1:0{width}d}")
    window_labels = []
    for label, start, end in parsed:
        a = _as_steps(_whole_steps(start, step_len, time_unit))
        b = _as_steps(_whole_steps(end, step_len, time_unit))
        if a is None or b is None:
            raise ClvInputError(f"window {label}: its edges must be whole numbers of steps of {step}",
                                argument="windows", value=windows if isinstance(windows, str) else "...")
        if not b > a:
            raise ClvInputError(f"window {label}: its end must be after its start", argument="windows",
                                value=windows if isinstance(windows, str) else "...")
        if b > k:
            raise ClvInputError(f"window {label} ends after the horizon {horizon}", argument="windows",
                                value=windows if isinstance(windows, str) else "...")
        if label in window_labels or label in period_labels:
            raise ClvInputError(f"window {label} is given twice", argument="windows",
                                value=windows if isinstance(windows, str) else "...")
        spans.append((a, b))
        window_labels.append(label)
    spans.append((0, k))  # the whole horizon
    return PeriodPlan(times, factors, tuple(period_labels), tuple(window_labels), tuple(spans),
                      span_weights(factors, spans), str(step))


def output_columns(plan: PeriodPlan, interval=None, residual: bool = False) -> list[str]:
    """The columns of :func:`value_by_period`'s table, in order (the scorers' schema); ``next_period_purchases``
    only when there are periods; the residual's columns last."""
    names = (["next_period_purchases"] if plan.period_labels else []) + [
        "p_alive", "expected_spend", "expected_purchases", "clv"]
    names += [f"purchases_{label}" for label in plan.labels] + [f"value_{label}" for label in plan.labels]
    if interval is not None:
        names += [f"{name}_{side}" for name in names for side in ("lower", "upper")]
    if residual:
        names += ["residual_purchases", "residual_value"] + (
            ["residual_value_lower", "residual_value_upper"] if interval is not None else [])
    return names


def _span_values(model_cls, params, xu, tu, times, weights) -> np.ndarray:
    """(2S, U): per distinct pair, the if-alive expected and discounted purchases of every span; the kernel is
    evaluated once per pair at the K step times, in slices of pairs (bounded (pairs, steps) temporaries)."""
    n = xu.shape[0]
    out = np.empty((weights.shape[1], n))
    size = _pairs_per_slice(len(times))
    for lo in range(0, n, size):
        hi = min(n, lo + size)
        if_alive = model_cls._expected_if_alive(params, times, xu[lo:hi], tu[lo:hi])
        out[:, lo:hi] = weights.T @ if_alive.T
        del if_alive
    return out


def _rows(plan: PeriodPlan) -> list[int]:
    """The rows of the (2S, .) span arrays in the order of the output's forecasts after P(alive) and the spend:
    the horizon's purchases and discounted purchases, then the spans' purchases, then their discounted purchases
    (``next_period_purchases`` is the first span's purchases, row 2)."""
    s, n_labels = len(plan.spans), len(plan.labels)
    return [s - 1, 2 * s - 1] + list(range(n_labels)) + list(range(s, s + n_labels))


class _Columns:
    """The forecasts of one table: per distinct pair the span rows (``by_pair``, in :func:`_rows` order), per
    customer P(alive) and the value scale (margin x spend); :meth:`frame` spreads them to the customers."""

    def __init__(self, plan: PeriodPlan, by_pair: np.ndarray, alive: np.ndarray, scale: np.ndarray) -> None:
        self.rows = _rows(plan)
        self.by_pair = by_pair[self.rows]
        self.alive, self.scale = alive, scale
        n_rows = len(self.rows)
        # the value rows: the horizon's CLV, then the spans' values (the last rows)
        self.value_rows = (slice(1, 2), slice(2 + len(plan.labels), n_rows))
        self.is_value = np.zeros(n_rows, dtype=bool)
        for rows in self.value_rows:
            self.is_value[rows] = True

    def with_scale(self, scale: np.ndarray) -> "_Columns":
        """The same forecasts under another value scale (a spend model's forward step)."""
        other = object.__new__(_Columns)
        other.__dict__.update(self.__dict__, scale=scale)
        return other

    def spread(self, codes, out: np.ndarray | None = None) -> np.ndarray:
        """(C, n): each customer's forecasts (purchases x P(alive); values x P(alive) x margin x spend), written
        into ``out`` (a C-contiguous (C, n) array, e.g. rows of the output's table) when given; in place."""
        if out is None:
            out = np.empty((self.by_pair.shape[0], len(self.alive)))
        if codes is None:
            out[...] = self.by_pair
        else:
            np.take(self.by_pair, codes, axis=1, out=out, mode="clip")  # (codes are valid: no check, no buffer)
        out *= self.alive
        for rows in self.value_rows:
            out[rows] *= self.scale
        return out

    def totals(self, codes, counted: np.ndarray) -> np.ndarray:
        """(C,): each forecast's total over the ``counted`` customers, without spreading: a total is the sum over
        the pairs of the pair's value times the sum of its customers' P(alive) (x their value scale)."""
        n_u = self.by_pair.shape[1]
        a = np.where(counted, self.alive, 0.0)
        w_a = _pair_sums(codes, n_u, a)
        w_v = _pair_sums(codes, n_u, a * np.where(counted, self.scale, 0.0))
        return np.where(self.is_value, self.by_pair @ w_v, self.by_pair @ w_a)


def _pair_sums(codes, n_pairs: int, row_weights: np.ndarray) -> np.ndarray:
    """Per pair, the sum of ``row_weights`` over its customers."""
    if codes is None:
        return row_weights
    return np.bincount(codes, weights=row_weights, minlength=n_pairs)


def value_by_period(purchases, spend=None, data=None, *, horizon=DEFAULT_PERIODS_HORIZON, period="M", windows=None,
                    discount_rate=DEFAULT_DISCOUNT_RATE, step=None, margin: float = DEFAULT_MARGIN,
                    interval: float | None = None, interval_method: str = "delta", future_spend=None,
                    time_unit=None, residual: bool = False, portfolio=None, column_totals=None,
                    frequency=None, recency=None, T=None, monetary_value=None) -> pd.DataFrame:
    """Per customer: expected purchases and discounted value of every period up to ``horizon`` and of every
    window (module docstring), in one pass over the distinct (x, T) pairs.

    ``period``: ``"M"``, ``"Q"``, ``"Y"`` or any duration (``"2W"``), None for windows only; ``windows``: text
    such as ``"0-1Y,1-3Y,3-5Y"`` or a list of ``(start, end)`` durations. ``horizon``, ``step``, ``discount_rate``
    carry their units and are converted to the model's (as for :func:`clv_forecast.value.customer_lifetime_value`;
    ``step`` None: monthly when everything is whole months, else the period); every period and window edge must be
    a whole number of steps and the horizon a whole number of periods.

    Returns a DataFrame indexed like ``data`` (:func:`output_columns`): ``next_period_purchases`` (the first
    period's expected purchases; with periods), ``p_alive``, ``expected_spend``, ``expected_purchases`` and ``clv``
    over the whole horizon (those of :func:`~clv_forecast.value.customer_lifetime_value` with the same step), then
    ``purchases_<label>`` for each period (``M01..M60``, ``Q1..``, ``Y1..``; ``P1..`` for other lengths) and window
    (its text, ``0-1Y``), then ``value_<label>`` for each. With ``interval`` (delta method only),
    ``<column>_lower``/``_upper`` for each.

    ``attrs["totals"]``: each forecast's total (from ``expected_purchases`` on) over the customers whose forecasts
    are all finite, with its band under an interval (:class:`~clv_forecast.uncertainty.ColumnTotals`;
    ``column_totals``: an accumulator to add this table to, a scorer's over its batches); ``attrs["cumulative"]``
    the total value up to each period's end, by period label, with its band; ``attrs["portfolio"]``
    the band of the horizon's totals as the CLV gives it (``portfolio``: likewise); ``attrs["plan"]`` the step,
    the labels and the spans in steps.

    ``residual``: also ``residual_purchases`` and ``residual_value`` (with ``interval``, their ``_lower``/``_upper``
    after them), the discounted expected purchases and value after the horizon, to infinity, with the same steps
    and rate (:func:`clv_forecast.value_tail.residual_value`); ``attrs["residual_total"]``: the value's total over
    the customers with a finite one.
    """
    from . import uncertainty
    from .estimators.base import distinct_pairs

    if not (np.isfinite(margin) and margin >= 0):
        raise ClvInputError(f"margin {margin!r}: must be a non-negative number (share of revenue kept as profit)")
    if interval is not None:
        interval = uncertainty.check_level(interval)
        uncertainty.check_method(interval_method)
        if interval_method != "delta":
            raise ClvInputError("value by period has delta-method intervals only (parameter draws would hold "
                                "draws x customers x columns numbers); use delta", argument="interval_method",
                                value=interval_method)
    purchase_params = purchases.check_fitted()
    plan = plan_periods(purchases.time_unit_, horizon=horizon, period=period, windows=windows, step=step,
                        discount_rate=discount_rate)
    x, t_x, big_t, m, expected_spend, index = value_inputs(purchases, spend, data, frequency=frequency,
                                                           recency=recency, T=T, monetary_value=monetary_value,
                                                           future_spend=future_spend, time_unit=time_unit)
    spend = None if future_spend is not None else spend
    covs = None
    if interval is not None:  # checked before any work: a model without covariance is one line
        covs = (uncertainty.log_covariance(purchases), None if spend is None else uncertainty.log_covariance(spend))
    p_cls = type(purchases)
    xu, tu, codes = distinct_pairs(x, big_t)
    alive = p_cls._p_alive(purchase_params, x, t_x, big_t)
    base = _Columns(plan, _span_values(p_cls, purchase_params, xu, tu, plan.times, plan.weights), alive,
                    margin * expected_spend)
    names = output_columns(plan)
    first = 1 if plan.period_labels else 0
    n = len(x)
    # the output's rows: [next period's purchases], P(alive), the spend, then the forecasts of the spans
    values = np.empty((len(names), n))
    values[first], values[first + 1] = alive, expected_spend
    base.spread(codes, values[first + 2:])  # (the rows of _Columns)
    if first:  # the next period's purchases: the first period's
        values[0] = values[first + 4]
    with np.errstate(invalid="ignore"):
        counted = np.isfinite(values).all(axis=0)
    bounds = None
    column_totals = uncertainty.ColumnTotals() if column_totals is None else column_totals
    total_names = names[first + 2:]
    if interval is None:
        column_totals.add(total_names, base.totals(codes, counted), int(counted.sum()))
    else:
        bounds, p_sens, s_sens, moved, scales = _delta(purchases, spend, plan, covs, base, values, names, x, t_x,
                                                       big_t, m, xu, tu, codes, interval, margin)
        with np.errstate(invalid="ignore"):
            counted &= np.isfinite(bounds).all(axis=0)
        portfolio = uncertainty.Portfolio() if portfolio is None else portfolio
        portfolio.add(p_sens, s_sens, margin, rows=counted)
        grad_p, grad_s = _total_gradients(base, moved, scales, codes, counted, uncertainty.DELTA_STEP)
        del moved
        column_totals.add(total_names, base.totals(codes, counted), int(counted.sum()), grad_p, grad_s, covs[0],
                          covs[1])
    table = values if bounds is None else np.concatenate([values, bounds])
    out = pd.DataFrame(table.T, index=index, columns=output_columns(plan, interval), copy=False)
    out.attrs["totals"] = column_totals.band(interval)
    if plan.period_labels:  # the customers' cumulative value up to each period's end, with its band
        out.attrs["cumulative"] = dict(zip(plan.period_labels, column_totals.running_band(
            [f"value_{label}" for label in plan.period_labels], interval)))
    out.attrs["plan"] = {"step": plan.step, "periods": list(plan.period_labels), "windows": list(plan.window_labels),
                         "spans": [list(span) for span in plan.spans[:-1]]}
    if interval is not None:
        out.attrs["portfolio"] = portfolio.band(interval)
    if residual:
        from .value_tail import residual_value

        beyond = residual_value(purchases, spend, data, horizon=horizon, discount_rate=discount_rate,
                                step=plan.step, margin=margin, interval=interval, future_spend=future_spend,
                                time_unit=time_unit)
        for name in ("residual_purchases", "residual_value"):
            out[name] = beyond[name].to_numpy()
        if interval is not None:  # (the residual purchases' bounds: those of the value, which has the spend's too)
            for side in ("lower", "upper"):
                out[f"residual_value_{side}"] = beyond[f"residual_value_{side}"].to_numpy()
        finite = np.isfinite(out["residual_value"].to_numpy())
        out.attrs["residual_total"] = float(out["residual_value"].to_numpy()[finite].sum())
    return out


def _delta(purchases, spend, plan, covs, base: _Columns, values, names, x, t_x, big_t, m, xu, tu, codes, interval,
           margin):
    """The delta method's bounds of every forecast (rows ``names`` of ``values``; rows ``2i, 2i + 1`` of the result)
    and the sensitivities of the horizon's totals (:class:`clv_forecast.uncertainty.Sensitivity`, for
    :func:`~clv_forecast.uncertainty.delta_intervals` and :class:`~clv_forecast.uncertainty.Portfolio`): P(alive),
    the spend, the horizon's purchases and CLV get exactly the CLV's intervals; every span's forecast
    :func:`~clv_forecast.uncertainty.factored_log_variance` (plus the spend's variance for a value)."""
    from . import uncertainty
    from .uncertainty import _log_step, _quad

    p_cls = type(purchases)
    h = uncertainty.DELTA_STEP
    first = 1 if plan.period_labels else 0
    pair_grads, row_grads, steps, all_moved = [], [], [], []
    for phi in uncertainty.perturbed(purchases.check_fitted()):
        moved = _Columns(plan, _span_values(p_cls, phi, xu, tu, plan.times, plan.weights),
                         p_cls._p_alive(phi, x, t_x, big_t), base.scale)
        all_moved.append(moved)
        pair_grads.append(_log_step(moved.by_pair, base.by_pair, h))
        row_grads.append(_log_step(moved.alive, base.alive, h))
        e, d = (moved.by_pair[i] if codes is None else moved.by_pair[i][codes] for i in (0, 1))
        steps.append({"expected_purchases": e * moved.alive, "p_alive": moved.alive, "discounted": d * moved.alive})
    var = uncertainty.factored_log_variance(np.stack(pair_grads), np.stack(row_grads), covs[0], codes)  # (C, n)
    del pair_grads
    n = len(x)
    horizon = {"expected_purchases": values[names.index("expected_purchases")], "p_alive": base.alive,
               "expected_spend": values[names.index("expected_spend")], "clv": values[names.index("clv")]}
    e0 = base.by_pair[1] if codes is None else base.by_pair[1][codes]
    p_sens = uncertainty.Sensitivity({**horizon, "discounted": e0 * base.alive}, steps, covs[0])
    s_sens, var_s, scales = None, np.zeros(n), []
    if spend is not None:
        s_cls = type(spend)
        m_hat = horizon["expected_spend"]
        s_steps = [{"expected_spend": s_cls._expected_spend(psi, x, m)} for psi in uncertainty.perturbed(spend.check_fitted())]
        s_sens = uncertainty.Sensitivity({"expected_spend": m_hat}, s_steps, covs[1])
        var_s = _quad(np.column_stack([_log_step(s["expected_spend"], m_hat, h) for s in s_steps]), covs[1])
        scales = [margin * s["expected_spend"] for s in s_steps]
    fixed = uncertainty.delta_intervals(p_sens, s_sens, interval)
    bounds = np.empty((2 * len(names), n))
    span_row = 0  # the rows of var are those of _Columns: the output's rows after P(alive) and the spend
    for row, name in enumerate(names):
        if name == "next_period_purchases":
            continue  # the first period's purchases: its bounds below
        if name in ("p_alive", "expected_spend"):
            lo, hi = fixed[name]
        else:
            if name in fixed:  # the horizon's expected purchases and CLV: the CLV's own intervals
                lo, hi = fixed[name]
            else:
                v = var[span_row] + (var_s if base.is_value[span_row] else 0.0)
                lo, hi = uncertainty.log_bounds(values[row], v, interval)
            span_row += 1
        bounds[2 * row], bounds[2 * row + 1] = lo, hi
    if first:
        bounds[0], bounds[1] = bounds[2 * (first + 4)], bounds[2 * (first + 4) + 1]
    return bounds, p_sens, s_sens, all_moved, scales


def _total_gradients(base: _Columns, moved: list, spend_scales: list, codes, counted, h: float):
    """The gradients of the forecasts' totals over the ``counted`` customers (rows of :class:`_Columns`) in each
    model's log-parameters from the forward steps :func:`_delta` took (``moved``: the purchase model's,
    ``spend_scales``: the value scales under the spend model's): (C, k_p), and (C, k_s) or None."""
    at = base.totals(codes, counted)
    grad_p = np.column_stack([(step.totals(codes, counted) - at) / h for step in moved])
    if not spend_scales:
        return grad_p, None
    grad_s = np.column_stack([(base.with_scale(scale).totals(codes, counted) - at) / h for scale in spend_scales])
    return grad_p, grad_s
