"""One validation layer for the per-customer inputs of the models (RFM tables or arrays)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ClvInputError, row_error
from ..units import TimeUnit

WEIGHT_COLUMNS = ("count", "weight", "weights")


def _bad(name: str, what: str, mask: np.ndarray, values: np.ndarray, source: str) -> ClvInputError:
    rows = np.flatnonzero(mask)
    return row_error(source, name, (rows + 1).tolist(), values[rows[:5]].tolist(), what)


def column(data, name: str, given, source: str, required: bool = True) -> np.ndarray | None:
    """Take ``given`` if not None, else ``data[name]``, as a float64 array."""
    if given is None:
        if data is None or name not in getattr(data, "columns", ()):
            if not required:
                return None
            cols = ", ".join(map(str, getattr(data, "columns", []))) or "none"
            raise ClvInputError(f"{source}: column '{name}' not found; columns are: {cols}")
        given = data[name]
    try:
        arr = np.asarray(given, dtype=np.float64)
    except (TypeError, ValueError):
        raise ClvInputError(f"{source}: column '{name}': values are not numeric") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ClvInputError(f"{source}: column '{name}': expected one value per customer (1-d), got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise _bad(name, "missing or non-finite value", bad, arr, source)
    return arr


def _not_whole(x: np.ndarray) -> np.ndarray:
    return (x < 0) | (x != np.floor(x))


def whole_number_frequency(x: np.ndarray, source: str) -> None:
    bad = _not_whole(x)
    if bad.any():
        raise _bad("frequency", "not a non-negative whole number", bad, x, source)


def weights_of(data, weights, n: int, source: str) -> np.ndarray:
    if weights is None and data is not None:
        for name in WEIGHT_COLUMNS:
            if name in getattr(data, "columns", ()):
                weights = data[name]
                break
    if weights is None:
        return np.ones(n)
    w = column(None, "count", weights, source)
    if len(w) != n:
        raise ClvInputError(f"{source}: weights have {len(w)} values for {n} customers")
    bad = w < 0
    if bad.any():
        raise _bad("count", "negative weight", bad, w, source)
    return w


def time_unit_of(data, time_unit) -> str | None:
    """The time unit of the data: the table's own (``attrs["time_unit"]``, set by ``summarize``), or
    ``time_unit`` (declared by the caller for a table or arrays without one); both must agree.

    A declared unit that contradicts the table's raises :class:`ClvInputError` with
    ``argument="time_unit"`` (units of the same length, ``"W"`` and ``"7D"``, agree).
    """
    attrs = getattr(data, "attrs", None) or {}
    own = str(TimeUnit.parse(attrs["time_unit"])) if attrs.get("time_unit") else None
    given = None if time_unit is None else str(TimeUnit.parse(time_unit))
    if own is not None and given is not None and TimeUnit.parse(own).days != TimeUnit.parse(given).days:
        raise ClvInputError(f"contradicts the RFM table, whose recency and T are in {own!r} (its attrs); "
                            "rebuild the table with summarize(time_unit=...) or leave time_unit out",
                            argument="time_unit", value=time_unit)
    return given or own


def unit_factor(source_unit, target_unit) -> tuple[float, float]:
    """``(num, den)`` with ``value_in_target = value_in_source * num / den``: the ratio of the units'
    lengths, taken from their multiples alone when the base unit is the same (days vs days: exact),
    else from their lengths in days."""
    a, b = TimeUnit.parse(source_unit), TimeUnit.parse(target_unit)
    if a.base == b.base:
        return a.n, b.n
    return a.days, b.days


def convert_times(values: np.ndarray, source_unit, target_unit) -> np.ndarray:
    """Times (recency, T) measured in ``source_unit`` expressed in ``target_unit``."""
    if source_unit is None or target_unit is None:
        return values
    num, den = unit_factor(source_unit, target_unit)
    if num == den:
        return values
    with np.errstate(over="ignore"):  # a time beyond the largest double is inf: its scores are then rejected
        return values * num / den


# The RFM rules, in the order they are checked: (column, what is wrong, mask of the rows breaking the
# rule given frequency x, recency t, T and monetary value m). Rule i has verdict code i + 1. The
# raising path (rfm_arrays) and the per-row verdict (rfm_verdict, batch scoring) both read this list.
RFM_RULES = (
    ("frequency", "missing or non-finite value", lambda x, t, T, m: ~np.isfinite(x)),
    ("recency", "missing or non-finite value", lambda x, t, T, m: ~np.isfinite(t)),
    ("T", "missing or non-finite value", lambda x, t, T, m: ~np.isfinite(T)),
    ("frequency", "not a non-negative whole number", lambda x, t, T, m: _not_whole(x)),
    ("recency", "negative", lambda x, t, T, m: t < 0),
    ("T", "negative", lambda x, t, T, m: T < 0),
    ("recency", "greater than T", lambda x, t, T, m: t > T * (1 + 1e-12)),
    ("recency", "non-zero for a customer with frequency 0", lambda x, t, T, m: (x == 0) & (t != 0)),
    ("monetary_value", "missing or non-finite value", lambda x, t, T, m: ~np.isfinite(m)),
    ("monetary_value", "negative", lambda x, t, T, m: m < 0),
)
_MONETARY_RULES = 2  # the last rules, checked only when a monetary value is given


def rfm_verdict(frequency, recency, T, monetary_value=None) -> np.ndarray:
    """Per-row verdict of the RFM rules: ``uint8`` codes, 0 for a valid row, else the number of the
    first rule the row breaks (see :func:`verdict_reasons` for the text).

    The rules are those :func:`rfm_arrays` raises on (one copy, :data:`RFM_RULES`): missing or
    non-finite values, frequency not a non-negative whole number, negative recency or T, recency > T,
    non-zero recency with frequency 0, and with ``monetary_value`` a missing or negative spend.
    Inputs are float arrays of one length (NaN for a missing or non-numeric value).
    """
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    big_t = np.asarray(T, dtype=np.float64)
    m = None if monetary_value is None else np.asarray(monetary_value, dtype=np.float64)
    rules = RFM_RULES if m is not None else RFM_RULES[:-_MONETARY_RULES]
    codes = np.zeros(len(x), dtype=np.uint8)
    with np.errstate(invalid="ignore"):
        for code, (_, _, mask) in enumerate(rules, start=1):
            hit = mask(x, t_x, big_t, m)
            codes[hit & (codes == 0)] = code
    return codes


def verdict_reasons(codes) -> np.ndarray:
    """The text of each verdict code (``""`` for 0): ``"recency greater than T"``."""
    texts = np.array([""] + [f"{name} {what}" for name, what, _ in RFM_RULES], dtype=object)
    return texts[np.asarray(codes, dtype=np.intp)]


@dataclass
class RFM:
    """Validated per-customer purchase history: frequency, recency, T (+ weights).

    ``time_unit`` is the unit recency and T are expressed in: the model's, when one was given to
    :func:`rfm_arrays` (the input's own unit was then converted to it), else the input's.
    """

    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    weights: np.ndarray
    time_unit: str | None

    def __len__(self) -> int:
        return len(self.frequency)


def rfm_arrays(data=None, *, frequency=None, recency=None, T=None, weights=None, time_unit=None,
               model_unit=None, source: str | None = None, with_weights: bool = True) -> RFM:
    """Validate frequency/recency/T from a table or arrays (frequency >= 0 integer, 0 <= recency <= T).

    Time units: the input's unit is the table's ``attrs["time_unit"]`` or the declared
    ``time_unit`` (they must agree, see :func:`time_unit_of`). With ``model_unit`` (a fitted
    model's unit) and a known input unit that differs, recency and T are converted to the model's
    unit by the ratio of the units' lengths (:func:`unit_factor`): a weekly model predicts a daily
    table exactly as it predicts the same customers in weeks. An input without a unit is taken to
    be in the model's unit.
    """
    source = source or ("RFM table" if data is not None else "input")
    unit = time_unit_of(data, time_unit)
    x = column(data, "frequency", frequency, source)
    t_x = column(data, "recency", recency, source)
    big_t = column(data, "T", T, source)
    n = len(x)
    if not (len(t_x) == n and len(big_t) == n):
        raise ClvInputError(f"{source}: frequency, recency and T have different lengths ({n}, {len(t_x)}, {len(big_t)})")
    codes = rfm_verdict(x, t_x, big_t)
    if codes.any():
        # the first rule that any row breaks, with all the rows that break it (rules in order)
        code = int(codes[codes > 0].min())
        name, what = RFM_RULES[code - 1][:2]
        raise _bad(name, what, codes == code, {"frequency": x, "recency": t_x, "T": big_t}[name], source)
    w = weights_of(data, weights, n, source) if with_weights else np.ones(n)
    t_x = np.minimum(t_x, big_t)
    if model_unit is not None:
        t_x, big_t = convert_times(t_x, unit, model_unit), convert_times(big_t, unit, model_unit)
        unit = str(TimeUnit.parse(model_unit))
    return RFM(x, t_x, big_t, w, unit)


def _not_whole_time(t: np.ndarray) -> np.ndarray:
    """Times that are not whole numbers (a unit conversion's rounding, 1e-9 relative, is forgiven)."""
    return np.abs(t - np.round(t)) > 1e-9 * np.maximum(1.0, np.abs(t))


#: The rules of data in whole periods (a discrete-time model's, :attr:`~clv_forecast.estimators.base.PurchaseModel.
#: whole_periods`: recency = the period of the last transaction, T = the number of periods), checked on recency and
#: T in the model's unit after the rules of :data:`RFM_RULES`: (column, what is wrong, mask given x, recency, T).
PERIOD_RULES = (
    ("recency", "not a whole number of periods", lambda x, t, T: _not_whole_time(t)),
    ("T", "not a whole number of periods", lambda x, t, T: _not_whole_time(T)),
    ("frequency", "greater than recency (at most one transaction per period)", lambda x, t, T: x > np.round(t)),
)


def period_reasons(frequency, recency, T) -> np.ndarray:
    """Per row, the first rule of :data:`PERIOD_RULES` it breaks as text (``"recency not a whole number of
    periods"``), ``""`` for a valid row (the scorers' verdict for a model of whole-period data)."""
    x, t_x, big_t = (np.asarray(v, dtype=np.float64) for v in (frequency, recency, T))
    reason = np.full(len(x), "", dtype=object)
    for name, what, mask in reversed(PERIOD_RULES):  # the first rule wins
        reason[mask(x, t_x, big_t)] = f"{name} {what}"
    return reason


def whole_periods(rfm: RFM, source: str) -> RFM:
    """``rfm`` (in the model's unit) checked against :data:`PERIOD_RULES`, recency and T rounded to whole
    periods; the first rule broken is a one-line :class:`ClvInputError` naming the column and the rows."""
    x, t_x, big_t = rfm.frequency, rfm.recency, rfm.T
    for name, what, mask in PERIOD_RULES:
        bad = mask(x, t_x, big_t)
        if bad.any():
            if name != "frequency":
                what += ("; a discrete-time model reads whole periods: summarise with merge = time_unit (e.g. 'W') "
                         "or with clv_forecast.rfm.summarize_periods")
            raise _bad(name, what, bad, {"frequency": x, "recency": t_x, "T": big_t}[name], source)
    return RFM(x, np.round(t_x), np.round(big_t), rfm.weights, rfm.time_unit)


def index_by_value(x) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a whole-number array and each element's position among them.

    Model terms that depend on the purchase count alone (gamma functions and their derivatives)
    are computed once per distinct value: a table over ``0..max(x)`` when that is small (O(n), no
    sort), ``np.unique`` otherwise.
    """
    x = np.asarray(x, dtype=np.float64)
    top = float(x.max()) if x.size else 0.0
    if top <= max(4096, 4 * x.size):
        return np.arange(int(top) + 1, dtype=np.float64), x.astype(np.intp)
    values, idx = np.unique(x, return_inverse=True)
    return values, idx.reshape(-1)


@dataclass(frozen=True)
class ByValue:
    """Distinct purchase counts, each row's position among them and the total weight of each.

    Fixed for a fit: built once, then every likelihood evaluation reuses it.
    """

    values: np.ndarray
    index: np.ndarray
    weights: np.ndarray

    @classmethod
    def of(cls, x, weights) -> "ByValue":
        values, index = index_by_value(x)
        return cls(values, index, np.bincount(index, weights=weights, minlength=len(values)))


def as_frame_index(data, n: int):
    """The index to give prediction outputs: the table's own index, else a range."""
    if isinstance(data, pd.DataFrame) and len(data) == n:
        return data.index
    return pd.RangeIndex(n)
