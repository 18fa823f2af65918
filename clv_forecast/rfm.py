"""Per-customer RFM summaries (frequency, recency, T, monetary value) for BTYD models.

:func:`summarize` turns a transaction log into the summary that BG/NBD and Gamma-Gamma are fit
on, optionally split at a calibration end into calibration columns and holdout columns.

Conventions (the papers' CDNOW convention is the default ``merge="D"``, ``time_unit="W"``):

* ``merge=R`` (a time unit such as ``"D"``, ``"W"``, ``"2D"``, ``"h"``): time is cut into
  buckets ``floor((timestamp - 1970-01-01) / R)``; purchases of a customer in one bucket are
  one purchase (amounts summed) and times are bucket differences times ``R`` in ``time_unit``.
  All arithmetic is on integer bucket numbers; the one division happens at the very end, so
  e.g. a recency of 213 days in weeks is exactly ``213 / 7.0``.
* ``merge="exact"``: times are measured between the real timestamps; only identical
  timestamps are merged.
* ``calibration_end`` / ``observation_end`` at midnight (a date such as ``"1997-09-30"``, or a
  datetime whose time is 00:00) include that whole day. In merged mode ``T`` runs to the bucket
  holding the last included instant (CDNOW: ``T = 272 / 7`` for a first purchase on
  1997-01-01); in exact mode it runs to the boundary itself (the next midnight for a date).
* Timestamps with a time zone are taken as wall-clock times in that zone.
* ``df.attrs`` accounts for every input row: ``n_transactions`` (rows read) =
  ``n_transactions_after_observation_end`` + ``n_transactions_first_purchase_after_calibration``
  (rows of the ``n_customers_first_purchase_after_calibration`` customers left out of the
  calibration summary) + the rows summarised for the ``n_customers`` customers.
* A calibration/holdout boundary inside a merge bucket (e.g. ``merge="W"``) splits that bucket:
  purchases up to the end are calibration, later ones holdout (as in ``lifetimes``).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd
import polars as pl

from .errors import ClvInputError
from .transactions import _is_standard, read_transactions
from .units import TimeUnit

__all__ = ["summarize", "compress"]

_NS_PER_DAY = 86_400 * 10**9
_TICK_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000}


# --------------------------------------------------------------------------------------------
# option parsing
# --------------------------------------------------------------------------------------------


def _parse_unit(value: Any, option: str) -> TimeUnit:
    try:
        return TimeUnit.parse(value)
    except ClvInputError as exc:
        raise ClvInputError(f"{option}={value!r}: {exc}") from None


def _parse_merge(value: Any) -> TimeUnit | None:
    if isinstance(value, str) and value.strip().lower() == "exact":
        return None
    try:
        return TimeUnit.parse(value)
    except ClvInputError as exc:
        raise ClvInputError(
            f"merge={value!r}: {exc}; or use 'exact' to merge only identical timestamps"
        ) from None


class _Point:
    """A calibration/observation end: the last included instant and the boundary, in ns."""

    def __init__(self, last_ns: int, boundary_ns: int, label: str, start_ns: int) -> None:
        self.last_ns = last_ns  # transactions at or before this instant are included
        self.boundary_ns = boundary_ns  # exact-mode end of the period
        self.start_ns = start_ns  # the value itself (midnight for a date)
        self.label = label


def _parse_point(value: Any, option: str, date_format: str | None, tz: str | None) -> _Point:
    try:
        if isinstance(value, str):
            text = value.strip()
            if date_format is not None:
                try:
                    stamp = pd.Timestamp(_dt.datetime.strptime(text, date_format))
                except ValueError:
                    stamp = pd.Timestamp(text)
            elif re.fullmatch(r"\d{8}", text):
                stamp = pd.Timestamp(_dt.datetime.strptime(text, "%Y%m%d"))
            else:  # ISO 8601 only: "02/03/2020" could be either day or month first
                stamp = pd.Timestamp(_dt.datetime.fromisoformat(text))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            stamp = pd.Timestamp(_dt.datetime.strptime(str(int(value)), date_format or "%Y%m%d"))
        else:
            stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise ClvInputError(f"{option}={value!r}: not a date or datetime in ISO form (use e.g. '1997-09-30'), "
                            "or give date_format") from None
    if stamp is pd.NaT or pd.isna(stamp):
        raise ClvInputError(f"{option}={value!r}: not a date or datetime (use e.g. '1997-09-30')")
    if stamp.tzinfo is not None:
        stamp = (stamp.tz_convert(tz) if tz else stamp).tz_localize(None)
    stamp = stamp.as_unit("ns")
    ns = int(stamp.value)
    if stamp == stamp.normalize():  # a date (or midnight): the whole day is included
        boundary = ns + _NS_PER_DAY
        return _Point(boundary - 1, boundary, stamp.date().isoformat(), ns)
    return _Point(ns, ns, stamp.isoformat(), ns)


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns").isoformat()


# --------------------------------------------------------------------------------------------
# summarize
# --------------------------------------------------------------------------------------------


def _standard_frame(
    transactions: Any,
    customer_col: str,
    date_col: str,
    amount_col: str | None,
    date_format: str | None,
) -> pl.DataFrame:
    if _is_standard(transactions):
        cols = transactions.columns
        wants_other = (customer_col != "customer_id" and customer_col not in cols) or (
            date_col not in ("date", "timestamp") and date_col not in cols
        )
        if not wants_other and (amount_col is None or amount_col == "amount"):
            if amount_col is None or "amount" in cols:
                # already validated by read_transactions: only re-check the O(1) null counts and
                # the finiteness of amounts (one vectorised pass), in case it was built by hand
                if not any(transactions.get_column(c).null_count() for c in cols) and (
                    "amount" not in cols or transactions.get_column("amount").is_finite().all()
                ):
                    return transactions
    return read_transactions(
        transactions,
        customer_col=customer_col,
        date_col=date_col,
        amount_col=amount_col,
        date_format=date_format,
    )


def _ratio(step_ns: int, unit: TimeUnit) -> tuple[int, int]:
    """``step / unit`` as a reduced integer fraction ``num / den``."""
    unit_ns = int(round(unit.days * _NS_PER_DAY))
    g = math.gcd(step_ns, unit_ns)
    return step_ns // g, unit_ns // g


def _to_time(diff: np.ndarray, num: int, den: int) -> np.ndarray:
    """Bucket differences (int) as float times: ``diff * num / den`` with one final division."""
    out = diff.astype(np.float64)
    if num != 1:
        out *= float(num)
    if den != 1:
        out /= float(den)
    return out


def summarize(
    transactions: Any,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str | None = None,
    date_format: str | None = None,
    time_unit: "str | TimeUnit" = "W",
    merge: "str | TimeUnit" = "D",
    calibration_end: Any = None,
    observation_end: Any = None,
) -> pd.DataFrame:
    """Summarise transactions per customer: ``frequency, recency, T[, monetary_value]``.

    ``transactions`` is anything :func:`~clv_forecast.transactions.read_transactions` accepts
    (a path, a pandas or polars frame) or its output (then its ``amount`` column, if any, is
    used). With ``calibration_end`` the summary covers the calibration period and gains
    ``frequency_holdout[, monetary_value_holdout], duration_holdout``.

    ``frequency`` counts repeat purchases (after merging), ``recency`` is last minus first
    purchase, ``T`` is the calibration (or observation) end minus the first purchase, both in
    ``time_unit``; ``monetary_value`` is the mean of the merged repeat purchases (0 without
    any). Returns a pandas DataFrame indexed and sorted by ``customer_id``; ``df.attrs`` records
    the options and accounts for every input row (see the module docs).
    """
    unit = _parse_unit(time_unit, "time_unit")
    step = _parse_merge(merge)
    tx = _standard_frame(transactions, customer_col, date_col, amount_col, date_format)
    has_amount = "amount" in tx.columns
    n_rows = tx.height

    ts_dtype = tx.schema["timestamp"]
    tz = getattr(ts_dtype, "time_zone", None)
    tu = getattr(ts_dtype, "time_unit", None) or "us"
    ts_expr = pl.col("timestamp")
    if tz is not None:
        ts_expr = ts_expr.dt.replace_time_zone(None)
    tick_ns = _TICK_NS[tu]
    step_ns = tick_ns if step is None else int(round(step.days * _NS_PER_DAY))
    if step_ns < 1:
        raise ClvInputError(f"merge={merge!r}: the resolution is shorter than a nanosecond")
    if step_ns % tick_ns:
        # the resolution is not a whole number of the data's ticks: work in nanoseconds
        ts_expr, tick_ns = ts_expr.cast(pl.Datetime("ns")), 1
    ticks = ts_expr.cast(pl.Int64)
    step_ticks = step_ns // tick_ns

    bounds = tx.lazy().select(ticks.min().alias("lo"), ticks.max().alias("hi")).collect().row(0)
    first_tick, last_tick = int(bounds[0]), int(bounds[1])
    if step is None:
        # exact mode: if all timestamps are whole days/hours/.../seconds, bucket at that grain
        # (identical results, smaller integers: the fast single-key sort usually applies)
        grains = [
            g // tick_ns
            for g in (_NS_PER_DAY, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3)
            if g % tick_ns == 0 and g > tick_ns
        ]
        if grains:
            exact = tx.lazy().select(
                [(ticks % g == 0).all().alias(f"g{i}") for i, g in enumerate(grains)]
            ).collect().row(0)
            step_ticks = next((g for g, ok in zip(grains, exact) if ok), 1)
    data_range = f"the data run from {_iso(first_tick * tick_ns)} to {_iso(last_tick * tick_ns)}"

    # --- ends, in ticks -----------------------------------------------------------------
    cal = None if calibration_end is None else _parse_point(calibration_end, "calibration_end", date_format, tz)
    if observation_end is None:
        obs_last = obs_boundary = last_tick
        obs_label = _iso(last_tick * tick_ns)
    else:
        obs = _parse_point(observation_end, "observation_end", date_format, tz)
        obs_last, obs_boundary, obs_label = obs.last_ns // tick_ns, obs.boundary_ns // tick_ns, obs.label
        if obs_last < first_tick:
            raise ClvInputError(
                f"observation_end={obs.label!r} is before the first transaction; {data_range}"
            )
    if cal is not None:
        cal_last, cal_boundary = cal.last_ns // tick_ns, cal.boundary_ns // tick_ns
        if cal_last < first_tick:
            raise ClvInputError(
                f"calibration_end={cal.label!r} is before the first transaction; {data_range}"
            )
        if cal.start_ns // tick_ns > last_tick:
            raise ClvInputError(f"calibration_end={cal.label!r} is after the last transaction; {data_range}")
        if observation_end is None and obs_boundary < cal_boundary:
            # the default end (the last transaction) falls inside the calibration end's day
            obs_last, obs_boundary = max(obs_last, cal_last), cal_boundary
        if obs_boundary < cal_boundary:
            raise ClvInputError(
                f"observation_end={obs_label!r} is before calibration_end={cal.label!r}"
            )

    # --- integer buckets relative to an aligned origin (keeps numbers small) -----------------
    origin = (first_tick // step_ticks) * step_ticks  # a bucket start: floors are unchanged

    def bucket(tick: int) -> int:
        return (tick - origin) // step_ticks

    b_expr = (ticks - origin) // step_ticks if step_ticks != 1 else ticks - origin
    if cal is not None:
        b2_expr = 2 * b_expr + (ticks > cal_last).cast(pl.Int64)  # odd = holdout
    else:
        b2_expr = 2 * b_expr
    lf = tx.lazy()
    n_after = 0
    if obs_last < last_tick:
        n_after = int(tx.lazy().select((ticks > obs_last).sum()).collect().item())
        lf = lf.filter(ticks <= obs_last)

    cid_dtype = tx.schema["customer_id"]
    cols = [pl.col("amount")] if has_amount else []
    # bucket*2+flag fits in ``shift`` bits: the key is (customer << shift) | bucket*2+flag
    shift = max(1, int(2 * (bucket(max(obs_last, last_tick)) + 1) + 2).bit_length())
    composite = False
    if cid_dtype.is_integer():
        cid_lo, cid_hi = tx.select(pl.col("customer_id").min().alias("lo"), pl.col("customer_id").max().alias("hi")).row(0)
        composite = -(2**62) < cid_lo and cid_hi < 2**62 and (cid_hi - cid_lo + 1).bit_length() + shift <= 62

    if composite:
        # one int64 key = (customer, bucket, holdout flag): a single radix sort, no hash group-by
        key = (pl.col("customer_id").cast(pl.Int64) - cid_lo) * (1 << shift) + b2_expr
        rows = lf.select(key.alias("k"), *cols).sort("k").collect()
        k = rows.get_column("k").to_numpy()
        new_group = np.empty(k.shape[0], dtype=bool)
        new_group[0] = True
        np.not_equal(k[1:], k[:-1], out=new_group[1:])
        gstart = np.flatnonzero(new_group)
        del new_group
        gb2 = k[gstart]
        del k
        gcust = gb2 >> shift
        np.bitwise_and(gb2, (1 << shift) - 1, out=gb2)
        g_cnew = np.empty(gcust.shape[0], dtype=bool)
        g_cnew[0] = True
        np.not_equal(gcust[1:], gcust[:-1], out=g_cnew[1:])
        cstart = np.flatnonzero(g_cnew)
        customer_ids = pl.Series("customer_id", gcust[cstart] + cid_lo).cast(cid_dtype)
        del gcust, g_cnew
    else:
        rows = (
            lf.select(pl.col("customer_id"), b2_expr.alias("b2"), *cols)
            .sort("customer_id", "b2")
            .with_columns(
                (pl.col("customer_id") != pl.col("customer_id").shift(1)).fill_null(True).alias("cnew")
            )
            .collect()
        )
        b2 = rows.get_column("b2").to_numpy()
        cnew = rows.get_column("cnew").to_numpy()
        new_group = cnew.copy()
        new_group[1:] |= b2[1:] != b2[:-1]
        gstart = np.flatnonzero(new_group)
        gb2 = b2[gstart]
        g_cnew = cnew[gstart]
        cstart = np.flatnonzero(g_cnew)
        customer_ids = rows.get_column("customer_id").gather(gstart[cstart])
        del b2, cnew, new_group, g_cnew

    n_used = rows.height
    n_groups = gstart.shape[0]
    g_hold = (gb2 & 1).astype(bool)
    gb = np.right_shift(gb2, 1, out=gb2)
    n_groups_c = np.diff(cstart, append=n_groups)
    n_hold_c = np.add.reduceat(g_hold.view(np.uint8), cstart, dtype=np.int64) if cal is not None else 0
    n_cal_c = n_groups_c - n_hold_c
    keep = n_cal_c > 0
    late_rows = 0
    n_late = 0
    if cal is not None and not keep.all():
        n_late = int((~keep).sum())
        row_start = gstart[cstart]  # first row of each customer
        late_rows = int(np.diff(row_start, append=n_used)[~keep].sum())

    first_b = gb[cstart]
    last_cal_b = gb[cstart + np.maximum(n_cal_c, 1) - 1]
    frequency = n_cal_c - 1
    if step is None:
        # exact: buckets are the timestamps' common grain; measure in ticks up to the boundary
        num, den = _ratio(tick_ns, unit)
        end_ticks = (cal_boundary if cal is not None else obs_boundary) - origin
        first_ticks = first_b * step_ticks
        recency = _to_time((last_cal_b - first_b) * step_ticks, num, den)
        T = _to_time(end_ticks - first_ticks, num, den)
        del first_ticks
    else:
        num, den = _ratio(step_ticks * tick_ns, unit)
        recency = _to_time(last_cal_b - first_b, num, den)
        T = _to_time(bucket(cal_last if cal is not None else obs_last) - first_b, num, den)

    out: dict[str, np.ndarray] = {"frequency": frequency, "recency": recency, "T": T}
    if has_amount:
        amount = rows.get_column("amount").to_numpy()
        with np.errstate(over="ignore"):  # a sum beyond the float range is reported below, by customer
            gsum = np.add.reduceat(amount, gstart)  # merged purchase values
        del amount
        overflow = ~np.isfinite(gsum)
        if overflow.any():
            group = int(np.flatnonzero(overflow)[0])
            customer = customer_ids[int(np.searchsorted(cstart, group, side="right") - 1)]
            source = str(transactions) if isinstance(transactions, (str, os.PathLike)) else "DataFrame"
            raise ClvInputError(f"{source}: column {amount_col or 'amount'!r}: the purchases of customer {customer!r} "
                                "sum beyond the floating-point range (about 1.8e308); check the amounts' unit")
        if cal is not None:
            hold_sum = np.add.reduceat(np.where(g_hold, gsum, 0.0), cstart)
            out_hold = np.divide(hold_sum, n_hold_c, out=np.zeros_like(hold_sum), where=n_hold_c > 0)
            del hold_sum
            gsum[g_hold] = 0.0
        gsum[cstart] = 0.0  # the first purchase is not a repeat purchase
        rep_sum = np.add.reduceat(gsum, cstart)
        del gsum
        out["monetary_value"] = np.divide(rep_sum, frequency, out=rep_sum, where=frequency > 0)
        out["monetary_value"][frequency <= 0] = 0.0
    if cal is not None:
        out["frequency_holdout"] = np.asarray(n_hold_c, dtype=np.int64)
        if has_amount:
            out["monetary_value_holdout"] = out_hold
        if step is None:
            duration = obs_boundary - cal_boundary  # ticks
        else:
            duration = bucket(obs_last) - bucket(cal_last)
        out["duration_holdout"] = _to_time(np.full(n_groups_c.shape[0], duration, dtype=np.int64), num, den)
    del rows, gb, g_hold

    if not keep.all():
        kept = np.flatnonzero(keep)
        out = {name: values.take(kept) for name, values in out.items()}
        customer_ids = customer_ids.gather(kept)
    if customer_ids.dtype == pl.String:
        index = pd.Index(customer_ids.to_list(), name="customer_id")
    else:
        index = pd.Index(customer_ids.to_numpy(), name="customer_id")
    out["frequency"] = out["frequency"].astype(np.int64, copy=False)
    result = pd.DataFrame(out, index=index, copy=False)
    result.attrs = {
        "time_unit": str(unit),
        "merge": "exact" if step is None else str(step),
        "calibration_end": None if cal is None else cal.label,
        "observation_end": obs_label,
        "n_transactions": int(n_rows),
        "n_customers": int(len(result)),
        "n_transactions_after_observation_end": int(n_after),
        "n_customers_first_purchase_after_calibration": int(n_late),
        "n_transactions_first_purchase_after_calibration": int(late_rows),
    }
    return result


# --------------------------------------------------------------------------------------------
# compress
# --------------------------------------------------------------------------------------------


def compress(
    rfm: pd.DataFrame,
    columns: Sequence[str] = ("frequency", "recency", "T"),
    return_inverse: bool = False,
) -> "pd.DataFrame | tuple[pd.DataFrame, np.ndarray]":
    """Unique rows of ``columns`` with their multiplicity in a ``count`` (int64) column.

    Sorted by ``columns``; ``rfm.attrs`` are copied. If ``rfm`` already has a ``count`` column
    the counts are summed. With ``return_inverse=True`` also returns an int64 array mapping
    each input row to its row in the compressed frame.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in rfm.columns]
    if missing:
        raise ClvInputError(
            f"compress: column {missing[0]!r} not found; available columns: "
            + ", ".join(repr(str(c)) for c in rfm.columns)
        )
    data = {}
    for column in columns:
        values = np.asarray(rfm[column].to_numpy())
        if values.dtype.kind == "f":
            values = values + 0.0  # -0.0 and 0.0 are one value
        data[column] = values
    frame = pl.DataFrame(data)
    weight = pl.col("count").sum() if "count" in rfm.columns else pl.len()
    if "count" in rfm.columns:
        frame = frame.with_columns(pl.Series("count", np.asarray(rfm["count"].to_numpy(), dtype=np.int64)))
    unique = (
        frame.lazy()
        .group_by(columns)
        .agg(weight.cast(pl.Int64).alias("count"))
        .sort(columns)
        .collect()
    )
    result = pd.DataFrame(
        {c: unique.get_column(c).to_numpy() for c in columns + ["count"]}, copy=False
    )
    for column in columns:
        if result[column].dtype != rfm[column].dtype and rfm[column].dtype.kind in "iuf":
            result[column] = result[column].astype(rfm[column].dtype)
    result.attrs = dict(rfm.attrs)
    if not return_inverse:
        return result
    inverse = (
        frame.select(columns)
        .with_row_index("input_row")
        .join(unique.select(columns).with_row_index("row"), on=columns, how="left")
        .sort("input_row")  # (join's maintain_order needs polars >= 1.18)
        .get_column("row")
        .to_numpy()
        .astype(np.int64, copy=False)
    )
    return result, inverse
