"""The rules of scoring one batch of RFM rows, written once for every engine.

The local streaming scorer (:func:`clv_forecast.scoring.score_file`, a pyarrow batch at a time) and the
Spark scorer (:func:`clv_forecast.spark.score_spark`, a pandas frame per ``mapInPandas`` batch) both call
:func:`score_batch`: what differs between them is only where the rows come from, how the ids are
checked for duplicates (an ordered scan on one machine, a window on Spark) and where the results go.
So the verdicts, their precedence and the scores are equal across engines by construction.

A row's verdict, in increasing precedence (a later rule's reason replaces an earlier one's):

1. the RFM rules the models validate with (:func:`clv_forecast.estimators._data.rfm_verdict`,
   texts from :func:`~clv_forecast.estimators._data.verdict_reasons`), for a model of whole-period data
   (BG/BB) then those of :data:`~clv_forecast.estimators._data.PERIOD_RULES` in the model's unit;
2. ``<column> not numeric`` (:data:`NOT_NUMERIC`; the first such column of frequency, recency, T,
   monetary_value wins);
3. ``duplicate id`` (:data:`DUPLICATE_ID`);
4. ``missing id`` (:data:`MISSING_ID`);
5. an id holding a control character (:data:`clv_forecast.ids.CONTROL_REASON`).

The rows without a reason are scored with :meth:`ClvModel.clv <clv_forecast.model.ClvModel.clv>` (with periods or
windows in the settings, :meth:`ClvModel.value_by_period <clv_forecast.model.ClvModel.value_by_period>`); a row
whose scores are not all finite is a reject too (:func:`nonfinite_reasons`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["RFM_COLUMNS", "MISSING_ID", "DUPLICATE_ID", "NOT_NUMERIC", "UNBOUNDED_SPEND", "ZERO_SPEND", "NOT_FINITE",
           "BatchResult", "score_batch", "batch_verdicts", "numbers", "literal_nan", "nonfinite_reasons"]

RFM_COLUMNS = ("frequency", "recency", "T", "monetary_value")
# reasons of the rejects that are not RFM rules
MISSING_ID = "missing id"
DUPLICATE_ID = "duplicate id"
NOT_NUMERIC = "{column} not numeric"
# reasons of the rows whose scores are not finite numbers (valid inputs the model gives no number for)
UNBOUNDED_SPEND = "expected spend unbounded: Gamma-Gamma p x + q <= 1"
ZERO_SPEND = "monetary_value 0 for a repeat buyer: outside the spend model"
NOT_FINITE = "score not finite ({column})"


def literal_nan(text) -> np.ndarray:
    """Mask of the texts that spell NaN (``nan``, ``NaN``, ``-nan``...): numbers, missing ones."""
    stripped = text.astype(object).map(lambda v: v.strip().lower().lstrip("+-") if isinstance(v, str) else "")
    return (stripped == "nan").to_numpy(dtype=bool)


def _parse_text(column) -> tuple[np.ndarray, np.ndarray]:
    """A pandas column of text (or of mixed values) as float64 and the mask of its non-numeric values:
    null is missing, a literal ``nan`` a missing number, a blank or any other text not numeric."""
    import pandas as pd

    text = column.astype(object).where(column.notna(), None)
    stripped = text.map(lambda v: v.strip() if isinstance(v, str) else v)
    values = pd.to_numeric(stripped, errors="coerce")
    values = np.asarray(values, dtype=np.float64)
    bad = stripped.notna().to_numpy() & np.isnan(values) & ~literal_nan(stripped)
    return values, bad


def numbers(column) -> tuple[np.ndarray, np.ndarray]:
    """A column as float64 (NaN where missing) and the mask of its non-numeric values: the one number
    rule of scoring. ``column``: a pyarrow array (the local scorer) or a pandas Series (Spark's
    ``mapInPandas``). Numbers (integers, floats, decimals, booleans) are converted; text is read with
    surrounding whitespace trimmed, a text that is not a number marks its row."""
    import pandas as pd

    if isinstance(column, pd.Series):
        if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
            return column.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), bool)
        return _parse_text(column)
    import pyarrow as pa
    import pyarrow.compute as pc

    from .errors import ClvInputError

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:  # the usual case: every text of the batch is a number, parsed by Arrow at once
            values = pc.cast(pc.utf8_trim_whitespace(column), pa.float64())
        except pa.ArrowInvalid:
            return _parse_text(column.to_pandas())
        return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), np.zeros(len(column), bool)
    try:
        values = pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ClvInputError(f"column of type {column.type} is not numeric") from None
    return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), np.zeros(len(column), bool)


def nonfinite_reasons(scores, names) -> np.ndarray | None:
    """Per row, why its scores are not all finite (``""`` when they are), or None when every score is
    finite (the usual case: no per-row array is built): the output columns ``names`` of ``scores`` (a
    DataFrame or a mapping of arrays) checked column by column (vectorised).

    An infinite expected spend is :data:`UNBOUNDED_SPEND` (Gamma-Gamma: ``p x + q <= 1``, e.g. one-time
    buyers when ``q <= 1``, a valid model), a NaN one :data:`ZERO_SPEND` (a repeat buyer whose mean spend
    is 0); any other non-finite value :data:`NOT_FINITE` naming the first such column. Such a row is a
    reject, counted against ``max_reject_share``.
    """
    reason = None
    for name in reversed(list(names)):  # the first column's reason wins
        bad = ~np.isfinite(np.asarray(scores[name], dtype=np.float64))
        if bad.any():
            if reason is None:
                reason = np.full(len(bad), "", dtype=object)
            reason[bad] = NOT_FINITE.format(column=name)
    if reason is None:
        return None
    if "expected_spend" in names:
        spend = np.asarray(scores["expected_spend"], dtype=np.float64)
        reason[np.isnan(spend)] = ZERO_SPEND
        reason[np.isinf(spend)] = UNBOUNDED_SPEND
    return reason


def batch_verdicts(columns: Mapping[str, Any], n: int, *, present: np.ndarray, control: np.ndarray | None = None,
                   duplicate: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """The RFM values of a batch of ``n`` rows (float64 arrays by column, NaN where missing) and each row's
    reason (``""``: valid), with the precedence of the module docstring.

    ``columns``: the RFM columns (pyarrow arrays or pandas Series, :func:`numbers`); a column left out is
    missing in every row. ``present``: the rows with an id; ``control``: the rows whose id holds a control
    character; ``duplicate``: the rows whose id is a duplicate (each engine finds them its way)."""
    from .estimators._data import rfm_verdict, verdict_reasons
    from .ids import CONTROL_REASON

    values, non_numeric = {}, np.full(n, "", dtype=object)
    for name in reversed(RFM_COLUMNS):  # the first column's reason wins
        column = columns.get(name)
        if column is None:
            values[name] = np.full(n, np.nan)
            continue
        values[name], bad = numbers(column)
        non_numeric[bad] = NOT_NUMERIC.format(column=name)
    codes = rfm_verdict(values["frequency"], values["recency"], values["T"], values["monetary_value"])
    reason = np.where(codes > 0, verdict_reasons(codes), "").astype(object)
    reason[non_numeric != ""] = non_numeric[non_numeric != ""]
    if duplicate is not None:
        reason[duplicate] = DUPLICATE_ID
    reason[~present] = MISSING_ID
    if control is not None:
        reason[control] = CONTROL_REASON
    return values, reason


def _rename_spend_reasons(reason: np.ndarray, spend_name: str) -> None:
    """The reasons about ``monetary_value`` (in place) named with the input's spend column ``spend_name``."""
    column = RFM_COLUMNS[-1]
    for i in np.flatnonzero(reason != ""):
        if reason[i].startswith(column):
            reason[i] = spend_name + reason[i][len(column):]


@dataclass
class BatchResult:
    """A scored batch: ``reason`` per row (``""`` for a scored row), ``scored`` the positions of the scored
    rows (in order) and ``scores`` their scores (a DataFrame of the model's CLV columns, one row per
    position of ``scored``; None when no row is scored)."""

    reason: np.ndarray
    scored: np.ndarray
    scores: Any = None


def score_batch(model, columns: Mapping[str, Any], n: int, *, present: np.ndarray, control: np.ndarray | None = None,
                duplicate: np.ndarray | None = None, time_unit=None, clv_args: dict,
                first_row: int | None = None, spend_name: str | None = None) -> BatchResult:
    """One batch through the verdicts (:func:`batch_verdicts`) and the model: the valid rows scored with
    :meth:`ClvModel.clv` (``time_unit``: the input's, None for the model's; ``clv_args``: horizon,
    discount_rate, step, margin, interval), a row whose scores are not all finite rejected with its
    reason (:func:`nonfinite_reasons`). ``first_row``: the input's 1-based number of the batch's first
    row, when the engine knows it: the frame given to the model is then indexed by the rows' numbers, so
    that a warning about some rows names them. ``spend_name``: the input's column given as ``monetary_value``
    (a known spend per purchase), named so in the reasons of its rows."""
    import pandas as pd

    values, reason = batch_verdicts(columns, n, present=present, control=control, duplicate=duplicate)
    if spend_name is not None:
        _rename_spend_reasons(reason, spend_name)
    purchases = getattr(model, "purchases_", None)
    if getattr(purchases, "whole_periods", False):  # a discrete-time model: the rules of whole periods too
        from .estimators._data import convert_times, period_reasons

        rows = np.flatnonzero(reason == "")
        unit = purchases.time_unit_
        times = [convert_times(values[c][rows], time_unit or unit, unit) for c in ("recency", "T")]
        reason[rows] = period_reasons(values["frequency"][rows], *times)
    good = np.flatnonzero(reason == "")
    if good.size == 0:
        return BatchResult(reason, good)
    index = None if first_row is None else pd.Index(good + first_row, name="row")
    frame = pd.DataFrame({name: values[name][good] for name in RFM_COLUMNS}, index=index)
    with np.errstate(all="ignore"):  # (inf - inf and the like: such rows are rejected next)
        if clv_args.get("period") is not None or clv_args.get("windows") is not None:  # the wide table
            scores = model.value_by_period(frame, time_unit=time_unit, **clv_args)
            # its totals are in the scorer's accumulators; pandas would deep-copy the attrs at every column taken
            scores.attrs = {}
        else:
            scores = model.clv(frame, time_unit=time_unit, **clv_args)
    unscored = nonfinite_reasons(scores, list(scores.columns))
    if unscored is not None:
        hit = unscored != ""
        reason[good[hit]] = unscored[hit]
        good, scores = good[~hit], scores[~hit]
    return BatchResult(reason, good, scores)
