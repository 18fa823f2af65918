"""Per-customer RFM summaries (frequency, recency, T, monetary value) for BTYD models.

:func:`summarize` turns a transaction log into the summary that BG/NBD and Gamma-Gamma are fit
on, optionally split at a calibration end into calibration columns and holdout columns.

Conventions (the papers' CDNOW convention is the default ``merge="D"``, ``time_unit="W"``):

* ``merge=R`` (a time unit such as ``"D"``, ``"W"``, ``"2D"``, ``"h"``): time is cut into
  buckets ``floor((timestamp - 1970-01-01) / R)``, or for a whole number of weeks
  ``floor((timestamp - first week_start on or after 1970-01-01) / R)`` (weeks run Monday to Sunday
  by default, as pandas' ``to_period("W")``); purchases of a customer in one bucket are
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
* ``df.attrs`` records the options (``time_unit``, ``merge``, ``week_start``,
  ``include_first_transaction``, ``returns``, ``duplicates``, ``missing_customer``), the ends
  actually used as ISO text (``calibration_end``, ``observation_end``) and accounts for every input
  row. ``n_transactions`` (rows read) = ``n_transactions_summarised`` (rows behind the summary)
  + the rows left out, each counted once (:data:`LEFT_OUT_ROWS`):

  - ``n_rows_missing_customer``: no customer id (``missing_customer="drop"``);
  - ``n_duplicate_rows_dropped``: extra copies of identical rows (``duplicates="drop"``;
    ``n_duplicate_rows`` counts the extra copies found either way);
  - ``n_return_rows``: rows with a negative amount (every mode; ``return_value`` is their sum,
    negative). With ``returns="net"`` they split into ``n_returns_netted``,
    ``n_returns_unmatched`` (no earlier purchase of the customer),
    ``n_returns_across_calibration_end`` (a holdout return whose purchase is in the calibration
    period: not netted back) and ``n_returns_after_observation_end``;
  - ``n_purchases_fully_returned``: purchase rows whose purchase was netted to <= 0 (``"net"``);
    in every mode ``n_returns_matching`` returns (total ``return_value_matching``) match a purchase of
    the same customer at or before them in the same period and would cancel ``n_purchases_cancelled``
    purchase rows in full (worth ``return_cancelled_purchase_value``): with ``"net"`` these are netted
    (the same numbers as ``n_returns_netted`` and ``n_purchases_fully_returned``); with ``"drop"`` those
    purchases are still counted at full value (the run says so: a same-day cancellation of a whole
    order keeps the order);
  - ``n_transactions_after_observation_end``: purchase rows after the observation end;
  - ``n_transactions_first_purchase_after_calibration``: rows of the
    ``n_customers_first_purchase_after_calibration`` customers first seen in the holdout period.

  ``n_customers`` is the summary's length; ``n_customers_returns_only`` counts customers left
  with no purchase once returns are taken out.
* A calibration/holdout boundary inside a merge bucket (e.g. ``merge="W"``) splits that bucket:
  purchases up to the end are calibration, later ones holdout (as in ``lifetimes``).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
import polars as pl

from .errors import ClvInputError, show_value
from .transactions import _ingest, _is_standard, _Options
from .units import TimeUnit

__all__ = ["summarize", "compress", "LEFT_OUT_ROWS", "SummaryOptions", "SummaryPlan", "plan_summary", "assemble",
           "AGGREGATES", "AMOUNT_AGGREGATES", "summarize_periods", "PeriodPlan", "plan_periods", "PERIODS"]

_NS_PER_DAY = 86_400 * 10**9
_TICK_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000}


# --------------------------------------------------------------------------------------------
# option parsing
# --------------------------------------------------------------------------------------------


def _parse_unit(value: Any, option: str) -> TimeUnit:
    try:
        return TimeUnit.parse(value)
    except ClvInputError as exc:
        raise ClvInputError(exc.reason, argument=option, value=value) from None


def _parse_merge(value: Any) -> TimeUnit | None:
    if isinstance(value, str) and value.strip().lower() == "exact":
        return None
    try:
        return TimeUnit.parse(value)
    except ClvInputError as exc:
        raise ClvInputError(f"{exc.reason}; or use 'exact' to merge only identical timestamps",
                            argument="merge", value=value) from None


_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_FULL_WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


def _parse_week_start(value: Any) -> int:
    """0 = Monday ... 6 = Sunday (Python's ``date.weekday()``), from a number or a day name."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= int(value) <= 6:
        return int(value)
    if isinstance(value, str):
        text = value.strip().upper()
        for names in (_WEEKDAYS, _FULL_WEEKDAYS):
            if text in names:
                return names.index(text)
    raise ClvInputError("use a day name MON, TUE, WED, THU, FRI, SAT, SUN or its number 0 (Monday) to 6 (Sunday)",
                        argument="week_start", value=value)


class _Point:
    """A calibration/observation end: the last included instant and the boundary, in ns."""

    def __init__(self, last_ns: int, boundary_ns: int, label: str, start_ns: int) -> None:
        self.last_ns = last_ns  # transactions at or before this instant are included
        self.boundary_ns = boundary_ns  # exact-mode end of the period
        self.start_ns = start_ns  # the value itself (midnight for a date)
        self.label = label


# strftime directives of the time of day: a format's date part ends before the first of them
_TIME_DIRECTIVES = re.compile(r"%(?:[-_0^#]?[HIMSpfzZTRXrklPsc]|\.f|:z|\.3f|\.6f|\.9f)")


def _date_part(date_format: str) -> str | None:
    match = _TIME_DIRECTIVES.search(date_format)
    if match is None or match.start() == 0:
        return None
    part = date_format[: match.start()].rstrip(" T,;-_/:")
    return part if "%" in part else None


def _python_format(date_format: str) -> str:
    """polars' (chrono's) fraction directives in Python's strptime spelling."""
    return re.sub(r"%\.(?:3|6|9)?f", ".%f", date_format)


def _read_end_text(text: str, value: Any, option: str, date_format: str | None) -> _dt.datetime:
    if date_format is not None:
        fmt = _python_format(date_format)
        for candidate in (fmt, _date_part(fmt)):
            if candidate is None:
                continue
            try:
                return _dt.datetime.strptime(text, candidate)
            except ValueError:
                pass
        try:  # ISO is unambiguous: accepted with any date_format
            return _dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        part = _date_part(fmt)
        also = f" or its date part {part!r}" if part else ""
        raise ClvInputError(f"not a date in {{{{date_format}}}} {date_format!r}{also}, nor an ISO date such as '1997-09-30'",
                            argument=option, value=value)
    if re.fullmatch(r"\d{8}", text):
        try:
            return _dt.datetime.strptime(text, "%Y%m%d")
        except ValueError:
            pass
    try:  # ISO 8601 only: "02/03/2020" could be either day or month first
        return _dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    raise ClvInputError("not a date or datetime in ISO form (use e.g. '1997-09-30'); for other forms give "
                        "{{date_format}}, e.g. '%d/%m/%Y'", argument=option, value=value)


def _parse_point(value: Any, option: str, date_format: str | None, tz: str | None) -> _Point:
    """An end: text (ISO, YYYYMMDD, or in ``date_format`` / its date part), an integer YYYYMMDD,
    ``datetime.date`` / ``datetime.datetime`` / ``pd.Timestamp`` / ``numpy.datetime64``, or a
    ``pd.Period`` (the whole period is included). A date, or a time of 00:00, includes that whole day."""
    if isinstance(value, pd.Period):
        try:
            start = int(value.start_time.as_unit("ns").value)
            boundary = int((value + 1).start_time.as_unit("ns").value)  # the next period's start
        except (OverflowError, pd.errors.OutOfBoundsDatetime):
            raise _out_of_range(option, value) from None
        last = boundary - 1
        label = (_iso_date(boundary - _NS_PER_DAY) if boundary % _NS_PER_DAY == 0
                 else pd.Timestamp(last, unit="ns").isoformat())
        return _Point(last, boundary, label, start)
    try:
        if isinstance(value, str):
            stamp = pd.Timestamp(_read_end_text(value.strip(), value, option, date_format))
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            stamp = pd.Timestamp(_dt.datetime.strptime(str(int(value)), _python_format(date_format or "%Y%m%d")))
        elif isinstance(value, (_dt.date, np.datetime64)):  # datetime, pd.Timestamp are dates too
            stamp = pd.Timestamp(value)
        else:
            raise TypeError(type(value).__name__)
    except ClvInputError:
        raise
    except (ValueError, TypeError, OverflowError):
        raise ClvInputError("not a date or datetime (use e.g. '1997-09-30', a datetime.date or a pandas Period)",
                            argument=option, value=value) from None
    if stamp is pd.NaT or pd.isna(stamp):
        raise ClvInputError("not a date or datetime (use e.g. '1997-09-30')", argument=option, value=value)
    if stamp.tzinfo is not None:
        stamp = (stamp.tz_convert(tz) if tz else stamp).tz_localize(None)
    from .transactions import DATE_RANGE

    if not (pd.Timestamp(DATE_RANGE[0]) <= stamp < pd.Timestamp(DATE_RANGE[1]) + pd.Timedelta(days=1)):
        raise _out_of_range(option, value)
    stamp = stamp.as_unit("ns")
    ns = int(stamp.value)
    if stamp == stamp.normalize():  # a date (or midnight): the whole day is included
        boundary = ns + _NS_PER_DAY
        return _Point(boundary - 1, boundary, stamp.date().isoformat(), ns)
    return _Point(ns, ns, stamp.isoformat(), ns)


def _sum_overflow(source: str, amount_col: str | None, customer: Any) -> ClvInputError:
    """A customer's purchases (one merged purchase, or all of them) sum beyond the float range."""
    return ClvInputError(f"{source}: column {amount_col or 'amount'!r}: the purchases of customer {show_value(customer)} "
                         "sum beyond the floating-point range (about 1.8e308); check the amounts' unit")


def _out_of_range(option: str, value: Any) -> ClvInputError:
    from .transactions import DATE_RANGE_TEXT

    return ClvInputError(f"outside the supported range {DATE_RANGE_TEXT}", argument=option, value=value)


def _iso_date(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns").date().isoformat()


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns").isoformat()


# --------------------------------------------------------------------------------------------
# summarize
# --------------------------------------------------------------------------------------------


def _trusted_standard(transactions: Any, customer_col: str, date_col: str, amount_col: str | None,
                      quantity_col: str | None) -> bool:
    """True for the output of :func:`read_transactions` (then its conversion is not repeated)."""
    if quantity_col is not None or not _is_standard(transactions):
        return False
    cols = transactions.columns
    wants_other = (customer_col != "customer_id" and customer_col not in cols) or (
        date_col not in ("date", "timestamp") and date_col not in cols
    )
    if wants_other or not (amount_col is None or amount_col == "amount"):
        return False
    if amount_col is not None and "amount" not in cols:
        return False
    # already validated by read_transactions: only re-check the O(1) null counts and the
    # finiteness of amounts (one vectorised pass), in case it was built by hand
    return not any(transactions.get_column(c).null_count() for c in cols) and (
        "amount" not in cols or bool(transactions.get_column("amount").is_finite().all())
    )


def _net_returns(tx: pl.DataFrame, ticks: pl.Expr, cal_last: int | None, obs_last: int) -> tuple[pl.DataFrame, dict]:
    """``returns="net"``: subtract each return from the same customer's latest purchase at or before it.

    A purchase is all of a customer's purchase rows at one timestamp (their amounts summed; ``rows``
    keeps how many input rows it stands for). Returns are matched with a backward as-of join by
    customer *and period* (calibration / holdout): netting never crosses the calibration end. A
    purchase netted to <= 0 is left out (``n_purchases_fully_returned`` counts its input rows).
    Returns after the observation end (by default the last purchase) are outside the observed
    window: not netted, counted in ``n_returns_after_observation_end``."""
    period = (ticks > cal_last).cast(pl.Int8) if cal_last is not None else pl.lit(0, pl.Int8)
    lf = tx.lazy().with_columns(ticks.alias("_t"), period.alias("_p"))
    negative = pl.col("amount") < 0
    purchases = (
        lf.filter(~negative)
        .group_by("customer_id", "timestamp")
        .agg(pl.col("amount").sum(), pl.len().cast(pl.Int64).alias("rows"), pl.col("_t").first(),
             pl.col("_p").first())
        .sort("_t")
        .with_row_index("_pid")
        .collect()
    )
    returns = lf.filter(negative).select("customer_id", "amount", "_t", "_p").collect()
    stats = {"n_returns_after_observation_end": int((returns.get_column("_t") > obs_last).sum())}
    returns = returns.filter(pl.col("_t") <= obs_last).sort("_t")
    matched = returns.join_asof(purchases.select("customer_id", "_t", "_p", "_pid"), on="_t",
                                by=["customer_id", "_p"], strategy="backward", check_sortedness=False)
    unmatched = matched.filter(pl.col("_pid").is_null())
    # a holdout return of a calibration purchase: reported, not netted back across the calibration end
    calibration_buyers = purchases.filter(pl.col("_p") == 0).select("customer_id").unique()
    across = unmatched.filter(pl.col("_p") == 1).join(calibration_buyers, on="customer_id", how="semi").height
    netted = matched.filter(pl.col("_pid").is_not_null())
    stats["n_returns_netted"] = netted.height
    stats["n_returns_across_calibration_end"] = across
    stats["n_returns_unmatched"] = unmatched.height - across
    per_purchase = netted.group_by("_pid").agg(pl.col("amount").sum().alias("_ret"))
    purchases = purchases.join(per_purchase, on="_pid", how="left")
    fully = pl.col("_ret").is_not_null() & (pl.col("amount") + pl.col("_ret") <= 0)
    cancelled = purchases.filter(fully)
    stats["n_purchases_fully_returned"] = int(cancelled.get_column("rows").sum())
    stats["return_value_netted"] = float(netted.get_column("amount").sum())
    stats["return_cancelled_purchase_value"] = float(cancelled.get_column("amount").sum())
    kept = (
        purchases.filter(~fully)
        .sort("_pid")
        .with_columns(pl.col("amount") + pl.col("_ret").fill_null(0.0))
        .select("customer_id", "timestamp", "amount", "rows")
    )
    stats["n_customers_returns_only"] = (
        tx.get_column("customer_id").n_unique() - kept.get_column("customer_id").n_unique()
    )
    return kept, stats


def _returns_matching(tx: pl.DataFrame, returns: pl.DataFrame, ticks: pl.Expr, cal_last: int | None,
                      obs_last: int) -> dict:
    """``returns="drop"``: what ``"net"`` would do with the dropped ``returns``, without doing it: the
    returns that match a purchase of the same customer at or before them in the same period (the
    matching of :func:`_net_returns`), their value, and the purchase rows they would cancel in full
    (``amount + returns <= 0``) with their value. Only the customers with returns are looked at; one
    sort of their rows, then a forward fill (no per-customer join): a return's match is the last purchase
    row before it in (customer, period, time) order, when that row is of its customer and period."""
    if returns.height == 0:
        return {}
    period = (ticks > cal_last).cast(pl.Int8) if cal_last is not None else pl.lit(0, pl.Int8)
    mine = tx.filter(pl.col("customer_id").is_in(returns.get_column("customer_id").unique().implode()))
    rows = (
        pl.concat([mine.select("customer_id", "timestamp", "amount").with_columns(pl.lit(0, pl.Int8).alias("_r")),
                   returns.select("customer_id", "timestamp", "amount").with_columns(pl.lit(1, pl.Int8).alias("_r"))],
                  how="vertical_relaxed")
        .lazy()
        .with_columns(ticks.alias("_t"))
        .filter((pl.col("_r") == 0) | (pl.col("_t") <= obs_last))  # returns after the window are never netted
        # (the period follows the time: no sort key of its own); a purchase before a return at the same instant
        .sort("customer_id", "_t", "_r")
        .with_columns(period.alias("_p"))
        .with_columns(*(pl.when(pl.col("_r") == 0).then(pl.col(c)).forward_fill().alias(f"_m{c}")
                        for c in ("customer_id", "_p", "_t")))
        .collect()
        .lazy()
    )
    matched = rows.filter((pl.col("_r") == 1) & (pl.col("_mcustomer_id") == pl.col("customer_id"))
                          & (pl.col("_m_p") == pl.col("_p")))
    per_purchase = matched.group_by("customer_id", "_m_t").agg(pl.col("amount").sum().alias("_ret"))
    bought = (rows.filter(pl.col("_r") == 0).join(per_purchase, left_on=["customer_id", "_t"],
                                                  right_on=["customer_id", "_m_t"], how="inner")
              .group_by("customer_id", "_t")
              .agg(pl.col("amount").sum(), pl.len().alias("rows"), pl.col("_ret").first()))
    cancelled = bought.filter(pl.col("amount") + pl.col("_ret") <= 0)
    totals = pl.concat([
        matched.select(pl.len().cast(pl.Int64).alias("n"), pl.col("amount").sum().cast(pl.Float64).alias("v")),
        cancelled.select(pl.col("rows").sum().cast(pl.Int64).alias("n"), pl.col("amount").sum().cast(pl.Float64).alias("v")),
    ]).collect()
    n, v = totals.get_column("n").to_list(), totals.get_column("v").to_list()
    return {"n_returns_netted": int(n[0] or 0), "return_value_netted": float(v[0] or 0.0),
            "n_purchases_fully_returned": int(n[1] or 0), "return_cancelled_purchase_value": float(v[1] or 0.0)}


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


# --------------------------------------------------------------------------------------------
# the plan: every scalar decision, made before any aggregation (pure)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryOptions:
    """The summary options, parsed and checked (the same for every engine)."""

    time_unit: TimeUnit
    merge: TimeUnit | None  # None: "exact" (only identical timestamps are one purchase)
    week_start: int  # 0 = Monday ... 6 = Sunday
    include_first_transaction: bool = False

    @classmethod
    def parse(cls, *, time_unit: Any = "W", merge: Any = "D", week_start: Any = "MON",
              include_first_transaction: bool = False) -> "SummaryOptions":
        return cls(_parse_unit(time_unit, "time_unit"), _parse_merge(merge), _parse_week_start(week_start),
                   bool(include_first_transaction))

    def tick(self, data_tick_ns: int) -> int:
        """The tick (ns) an engine counts time in: the data's, or 1 ns when the merge resolution is
        not a whole number of the data's ticks."""
        if self.merge is None:
            return data_tick_ns
        step_ns = int(round(self.merge.days * _NS_PER_DAY))
        if step_ns < 1:
            raise ClvInputError("the resolution is shorter than a nanosecond", argument="merge", value=str(self.merge))
        return data_tick_ns if step_ns % data_tick_ns == 0 else 1


@dataclass(frozen=True)
class SummaryPlan:
    """Everything a summary computes besides the per-customer aggregates, as integers.

    Times are wall-clock *ticks* of ``tick_ns`` nanoseconds since 1970-01-01. An engine puts each
    purchase at time ``t <= obs_last`` in bucket ``b = (t - origin) // step_ticks`` and period
    ``t > cal_last`` (holdout) and aggregates per customer (see :data:`AGGREGATES`); :func:`assemble`
    turns those into the RFM columns. ``origin`` is a bucket start at or before the first purchase
    (keeps bucket numbers small); for whole weeks it falls on ``week_start``. In exact mode the
    buckets are the timestamps' common grain (``step_ticks``) and times run to the boundaries.
    """

    options: SummaryOptions
    tick_ns: int
    step_ticks: int
    origin: int
    obs_last: int  # last included tick
    obs_boundary: int  # exact mode: the end of the observed period (ticks)
    observation_label: str
    cal_last: int | None = None
    cal_boundary: int | None = None
    calibration_label: str | None = None

    @property
    def exact(self) -> bool:
        return self.options.merge is None

    @property
    def split(self) -> bool:
        """True with a calibration end (calibration and holdout columns)."""
        return self.cal_last is not None

    def bucket(self, tick: int) -> int:
        return (tick - self.origin) // self.step_ticks

    def rebased(self, first_tick: int) -> "SummaryPlan":
        """The same plan with the origin moved to the bucket holding ``first_tick``."""
        return replace(self, origin=_origin(self.options, self.step_ticks, self.tick_ns, first_tick))

    def ratio(self) -> tuple[int, int]:
        """``(num, den)``: a difference of the integers :func:`assemble` subtracts (ticks in exact
        mode, buckets otherwise) is ``diff * num / den`` in the time unit."""
        grain = self.tick_ns if self.exact else self.step_ticks * self.tick_ns
        return _ratio(grain, self.options.time_unit)

    def holdout_duration(self) -> int:
        """The holdout period's length in the integers of :meth:`ratio`."""
        if self.exact:
            return self.obs_boundary - self.cal_boundary
        return self.bucket(self.obs_last) - self.bucket(self.cal_last)

    def attrs(self) -> dict:
        """The options and ends as the summary's ``attrs`` record them."""
        opts = self.options
        return {
            "time_unit": str(opts.time_unit),
            "merge": "exact" if opts.merge is None else str(opts.merge),
            "week_start": _WEEKDAYS[opts.week_start],
            "include_first_transaction": opts.include_first_transaction,
            "calibration_end": self.calibration_label,
            "observation_end": self.observation_label,
        }


def _origin(options: SummaryOptions, step_ticks: int, tick_ns: int, first_tick: int) -> int:
    # weeks (and multiples of them) start on ``week_start``; 1970-01-01 (tick 0) was a Thursday
    anchor = 0
    if options.merge is not None and (step_ticks * tick_ns) % (7 * _NS_PER_DAY) == 0:
        anchor = ((options.week_start - 3) % 7) * (_NS_PER_DAY // tick_ns)
    return anchor + ((first_tick - anchor) // step_ticks) * step_ticks


def plan_summary(options: SummaryOptions, *, tick_ns: int, first_tick: int, last_tick: int, grain_ticks: int = 1,
                 calibration_end: Any = None, observation_end: Any = None, date_format: str | None = None,
                 tz: str | None = None) -> SummaryPlan:
    """The plan of a summary from the data's range of purchase times (``first_tick`` .. ``last_tick``,
    ticks of ``tick_ns`` ns from :meth:`SummaryOptions.tick`) and the period ends (parsed and
    checked against that range here, one-line errors naming the argument). ``grain_ticks``: in exact
    mode, the common grain of the timestamps (a day, an hour, ...: smaller integers, equal results)."""
    if options.merge is None:
        step_ticks = grain_ticks
    else:
        step_ticks = int(round(options.merge.days * _NS_PER_DAY)) // tick_ns
    data_range = f"the data run from {_iso(first_tick * tick_ns)} to {_iso(last_tick * tick_ns)}"
    cal = None if calibration_end is None else _parse_point(calibration_end, "calibration_end", date_format, tz)
    if observation_end is None:
        obs_last = obs_boundary = last_tick
        obs_label = _iso(last_tick * tick_ns)
    else:
        obs = _parse_point(observation_end, "observation_end", date_format, tz)
        obs_last, obs_boundary, obs_label = obs.last_ns // tick_ns, obs.boundary_ns // tick_ns, obs.label
        if obs_last < first_tick:
            raise ClvInputError(f"{obs.label} is before the first transaction; {data_range}",
                                argument="observation_end", value=observation_end)
    cal_last = cal_boundary = None
    if cal is not None:
        cal_last, cal_boundary = cal.last_ns // tick_ns, cal.boundary_ns // tick_ns
        if cal_last < first_tick:
            raise ClvInputError(f"{cal.label} is before the first transaction; {data_range}",
                                argument="calibration_end", value=calibration_end)
        if cal.start_ns // tick_ns > last_tick:
            raise ClvInputError(f"{cal.label} is after the last transaction; {data_range}",
                                argument="calibration_end", value=calibration_end)
        if observation_end is None and obs_boundary < cal_boundary:
            # the default end (the last transaction) falls inside the calibration end's day
            obs_last, obs_boundary = max(obs_last, cal_last), cal_boundary
        if obs_boundary < cal_boundary:
            raise ClvInputError(f"{obs_label} is before the calibration end {cal.label}",
                                argument="observation_end", value=observation_end)
    return SummaryPlan(options=options, tick_ns=tick_ns, step_ticks=step_ticks,
                       origin=_origin(options, step_ticks, tick_ns, first_tick),
                       obs_last=obs_last, obs_boundary=obs_boundary, observation_label=obs_label,
                       cal_last=cal_last, cal_boundary=cal_boundary,
                       calibration_label=None if cal is None else cal.label)


#: exact-mode grains (ns) tried, coarsest first: a day, an hour, a minute, a second, ms, us
GRAINS_NS = (_NS_PER_DAY, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3)


# --------------------------------------------------------------------------------------------
# the shared assembly: per-customer aggregates -> RFM columns (pure numpy)
# --------------------------------------------------------------------------------------------

#: What an engine's kernel gives per customer (buckets are merged purchases; in exact mode, the
#: timestamps' grain). ``n_cal`` / ``n_hold``: buckets up to / after the calibration end (all are
#: calibration without one); ``first_b``: the first bucket; ``last_cal_b``: the last calibration
#: bucket (any value when ``n_cal == 0``); ``rows``: input rows behind the customer; with amounts,
#: ``first_sum`` (the first bucket's amount when it is a calibration bucket, else 0),
#: ``rest_cal_sum`` (the later calibration buckets), ``hold_sum`` (the holdout buckets).
AGGREGATES = ("n_cal", "n_hold", "first_b", "last_cal_b", "rows")
AMOUNT_AGGREGATES = ("first_sum", "rest_cal_sum", "hold_sum")


def assemble(plan: SummaryPlan, agg: Any, *, has_amount: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """RFM columns from per-customer aggregates (:data:`AGGREGATES`; a dict of arrays or a frame).

    Returns the columns for every customer given and the mask of the customers a summary keeps
    (with a calibration end, those with a calibration purchase). Every engine calls this one
    function, so equal aggregates give equal summaries: differences of integers, one final division
    (:func:`_to_time`), means of the summed amounts."""
    n_cal = np.asarray(agg["n_cal"], dtype=np.int64)
    first_b = np.asarray(agg["first_b"], dtype=np.int64)
    last_cal_b = np.asarray(agg["last_cal_b"], dtype=np.int64)
    keep = n_cal > 0
    frequency = n_cal - 1
    num, den = plan.ratio()
    if plan.exact:
        # exact: measured in ticks, from the first purchase to the boundary
        end = (plan.cal_boundary if plan.split else plan.obs_boundary) - plan.origin
        first = first_b * plan.step_ticks
        recency = _to_time((last_cal_b - first_b) * plan.step_ticks, num, den)
        T = _to_time(end - first, num, den)
    else:
        recency = _to_time(last_cal_b - first_b, num, den)
        T = _to_time(plan.bucket(plan.cal_last if plan.split else plan.obs_last) - first_b, num, den)
    out: dict[str, np.ndarray] = {"frequency": frequency, "recency": recency, "T": T}
    if has_amount:
        first_sum = np.asarray(agg["first_sum"], dtype=np.float64)
        rest = np.asarray(agg["rest_cal_sum"], dtype=np.float64)
        if plan.options.include_first_transaction:
            total = first_sum + rest
            out["monetary_value"] = np.divide(total, n_cal, out=np.zeros_like(total), where=keep)
        else:
            out["monetary_value"] = np.divide(rest, frequency, out=np.zeros_like(rest), where=frequency > 0)
    if plan.split:
        n_hold = np.asarray(agg["n_hold"], dtype=np.int64)
        out["frequency_holdout"] = n_hold
        if has_amount:
            hold = np.asarray(agg["hold_sum"], dtype=np.float64)
            out["monetary_value_holdout"] = np.divide(hold, n_hold, out=np.zeros_like(hold), where=n_hold > 0)
        out["duration_holdout"] = _to_time(np.full(n_cal.shape[0], plan.holdout_duration(), dtype=np.int64),
                                           num, den)
    return out, keep


def returns_matching_attrs(stats: dict) -> dict:
    """The attrs of the returns that match earlier purchases (``stats`` of :func:`_net_returns`, netted or
    not): counted and valued in every mode, so that ``returns="drop"`` says what it keeps."""
    return {
        "n_returns_matching": int(stats.get("n_returns_netted", 0)),
        "return_value_matching": float(stats.get("return_value_netted", 0.0)),
        "n_purchases_cancelled": int(stats.get("n_purchases_fully_returned", 0)),
        "return_cancelled_purchase_value": float(stats.get("return_cancelled_purchase_value", 0.0)),
    }


def accounting(plan: SummaryPlan, acc: Any, net: dict, *, n_customers: int, n_used_rows: int, late_rows: int,
               n_late: int, n_after: int, returns: str, duplicates: str, missing_customer: str) -> dict:
    """A summary's ``attrs``: the plan's options and ends, and where every input row went."""
    return {
        **plan.attrs(),
        "returns": returns,
        "duplicates": duplicates,
        "missing_customer": missing_customer,
        "n_transactions": int(acc.n_transactions),
        "n_customers": int(n_customers),
        "n_transactions_summarised": int(n_used_rows - late_rows),
        "n_rows_missing_customer": int(acc.n_rows_missing_customer),
        "n_duplicate_rows": int(acc.n_duplicate_rows),
        "n_duplicate_rows_dropped": int(acc.n_duplicate_rows_dropped),
        "n_return_rows": int(acc.n_return_rows),
        "return_value": float(acc.return_value),
        "n_customers_returns_only": int(net.get("n_customers_returns_only", acc.n_customers_returns_only)),
        "n_returns_netted": int(net.get("n_returns_netted", 0)),
        "n_returns_unmatched": int(net.get("n_returns_unmatched", 0)),
        "n_returns_across_calibration_end": int(net.get("n_returns_across_calibration_end", 0)),
        "n_returns_after_observation_end": int(net.get("n_returns_after_observation_end", 0)),
        "n_purchases_fully_returned": int(net.get("n_purchases_fully_returned", 0)),
        "n_transactions_after_observation_end": int(n_after),
        "n_customers_first_purchase_after_calibration": int(n_late),
        "n_transactions_first_purchase_after_calibration": int(late_rows),
    }


# --------------------------------------------------------------------------------------------
# the polars / numpy kernel
# --------------------------------------------------------------------------------------------


def _polars_aggregates(tx: pl.DataFrame, ticks: pl.Expr, plan: SummaryPlan, *, has_amount: bool,
                       weighted: bool, last_tick: int, source: str,
                       amount_col: str | None) -> tuple[pl.Series, dict[str, np.ndarray], int]:
    """Per-customer aggregates (:data:`AGGREGATES`) of a standard frame, customers sorted.

    Returns the customer ids, the aggregates and the number of rows after the observation end. A
    merged purchase whose amounts sum beyond the float range is an error naming its customer."""
    origin, step_ticks = plan.origin, plan.step_ticks
    b_expr = (ticks - origin) // step_ticks if step_ticks != 1 else ticks - origin
    if plan.split:
        b2_expr = 2 * b_expr + (ticks > plan.cal_last).cast(pl.Int64)  # odd = holdout
    else:
        b2_expr = 2 * b_expr
    lf = tx.lazy()
    n_after = 0
    if plan.obs_last < last_tick:
        after = ticks > plan.obs_last
        counted = pl.col("rows").filter(after).sum() if weighted else after.sum()
        n_after = int(tx.lazy().select(counted).collect().item())
        lf = lf.filter(ticks <= plan.obs_last)

    cid_dtype = tx.schema["customer_id"]
    cols = [pl.col("amount")] if has_amount else []
    if weighted:
        cols.append(pl.col("rows"))
    # bucket*2+flag fits in ``shift`` bits: the key is (customer << shift) | bucket*2+flag
    shift = max(1, int(2 * (plan.bucket(max(plan.obs_last, last_tick)) + 1) + 2).bit_length())
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
        rows = rows.drop("k")
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
    del lf

    n_used = rows.height
    n_groups = gstart.shape[0]
    g_hold = (gb2 & 1).astype(bool)
    gb = np.right_shift(gb2, 1, out=gb2)
    n_groups_c = np.diff(cstart, append=n_groups)
    n_hold = np.add.reduceat(g_hold.view(np.uint8), cstart, dtype=np.int64) if plan.split else np.zeros_like(n_groups_c)
    n_cal = n_groups_c - n_hold
    row_start = gstart[cstart]  # first row of each customer
    if weighted:
        customer_rows = np.add.reduceat(rows.get_column("rows").to_numpy(), row_start, dtype=np.int64)
    else:
        customer_rows = np.diff(row_start, append=n_used)
    agg: dict[str, np.ndarray] = {
        "n_cal": n_cal,
        "n_hold": n_hold,
        "first_b": gb[cstart],
        "last_cal_b": gb[cstart + np.maximum(n_cal, 1) - 1],
        "rows": customer_rows,
    }
    if has_amount:
        amount = rows.get_column("amount").to_numpy()
        with np.errstate(over="ignore"):  # a sum beyond the float range is reported just below
            gsum = np.add.reduceat(amount, gstart)  # merged purchase values
        del amount
        rows = None  # the per-row amounts are summed: free them before the per-customer arrays
        overflow = ~np.isfinite(gsum)
        if overflow.any():
            group = int(np.flatnonzero(overflow)[0])
            raise _sum_overflow(source, amount_col, customer_ids[int(np.searchsorted(cstart, group, side="right") - 1)])
        del overflow
        with np.errstate(over="ignore"):
            if plan.split:
                agg["hold_sum"] = np.add.reduceat(np.where(g_hold, gsum, 0.0), cstart)
                gsum[g_hold] = 0.0  # in place from here: the calibration purchases only
            else:
                agg["hold_sum"] = np.zeros(cstart.shape[0])
            agg["first_sum"] = gsum[cstart]  # 0 when the first purchase is a holdout one
            gsum[cstart] = 0.0  # the first purchase is not a repeat purchase
            agg["rest_cal_sum"] = np.add.reduceat(gsum, cstart)
            total = agg["first_sum"] + agg["rest_cal_sum"] + agg["hold_sum"]
        del gsum
        if not np.isfinite(total).all():  # each purchase is finite, a customer's sum of them is not
            raise _sum_overflow(source, amount_col, customer_ids[int(np.flatnonzero(~np.isfinite(total))[0])])
        del total
    return customer_ids, agg, n_after


# --------------------------------------------------------------------------------------------
# summarize
# --------------------------------------------------------------------------------------------


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
    encoding: str = "utf-8",
    decimal_comma: bool = False,
    quantity_col: str | None = None,
    price_col: str | None = None,
    missing_customer: str = "error",
    duplicates: str = "keep",
    returns: str | None = None,
    week_start: "str | int" = "MON",
    include_first_transaction: bool = False,
) -> pd.DataFrame:
    """Summarise transactions per customer: ``frequency, recency, T[, monetary_value]``.

    ``transactions`` is anything :func:`~clv_forecast.transactions.read_transactions` accepts
    (a path, a pandas or polars frame) or its output (then its ``amount`` column, if any, is
    used); ``encoding``, ``decimal_comma``, ``quantity_col``/``price_col``, ``missing_customer``,
    ``duplicates`` and ``returns`` mean what they mean there (one implementation, same counts).
    With ``calibration_end`` the summary covers the calibration period and gains
    ``frequency_holdout[, monetary_value_holdout], duration_holdout``.

    ``frequency`` counts repeat purchases (after merging), ``recency`` is last minus first
    purchase, ``T`` is the calibration (or observation) end minus the first purchase, both in
    ``time_unit``; ``monetary_value`` is the mean of the merged repeat purchases (0 without
    any), or with ``include_first_transaction=True`` the mean of all merged calibration purchases,
    the first included.

    Returns (negative amounts) are never purchases; the default policy is ``"net"`` for amounts given as
    ``quantity_col`` x ``price_col`` (invoice lines), ``"drop"`` for an ``amount_col``
    (:func:`clv_forecast.transactions.default_returns`). ``returns="drop"``: left out of
    frequency, recency and spend, and counted; the returns that match an earlier purchase of the same
    customer, and the purchases they cancel in full (kept), are counted too (``n_returns_matching`` ...,
    module docs). ``returns="net"``: each is subtracted from the same
    customer's latest purchase at or before it in the same period (a purchase is the customer's
    rows at one timestamp; netting never crosses the calibration end); a purchase netted to <= 0 is
    no longer a purchase, a return with no such purchase is counted as unmatched (or as crossing
    the calibration end) and left out. ``returns="error"``: refused. Zero amounts are purchases.

    ``calibration_end`` / ``observation_end``: text (ISO or YYYYMMDD; with ``date_format``, text in
    that format or only in its date part, e.g. ``"08/09/2011"`` with ``'%d/%m/%Y %H:%M'`` is 8
    September), an integer YYYYMMDD, a ``datetime.date`` / ``datetime.datetime`` / ``pd.Timestamp`` /
    ``numpy.datetime64``, or a ``pd.Period`` (the whole period is included). A date includes its
    whole day. ``week_start`` (``"MON"`` .. ``"SUN"``, or 0 = Monday .. 6 = Sunday): the first day
    of the buckets when ``merge`` is a whole number of weeks (default Monday: weeks run Monday to
    Sunday, as pandas' ``to_period("W")`` and lifetimes cut them).

    Returns a pandas DataFrame indexed and sorted by ``customer_id``; ``df.attrs`` records the
    options and the ends used (ISO text) and accounts for every input row (see the module docs).
    """
    options = SummaryOptions.parse(time_unit=time_unit, merge=merge, week_start=week_start,
                                   include_first_transaction=include_first_transaction)
    opts = _Options.check(customer_col=customer_col, date_col=date_col, amount_col=amount_col,
                          quantity_col=quantity_col, price_col=price_col, date_format=date_format,
                          encoding=encoding, decimal_comma=decimal_comma, missing_customer=missing_customer,
                          duplicates=duplicates, returns=returns)
    trusted = _trusted_standard(transactions, customer_col, date_col, amount_col, quantity_col)
    tx, acc, source = _ingest(transactions, opts, trust_standard=trusted)
    has_amount = "amount" in tx.columns

    # --- the data's ticks and range --------------------------------------------------------
    ts_dtype = tx.schema["timestamp"]
    tz = getattr(ts_dtype, "time_zone", None)
    ts_expr = pl.col("timestamp")
    if tz is not None:
        ts_expr = ts_expr.dt.replace_time_zone(None)
    tick_ns = _TICK_NS[getattr(ts_dtype, "time_unit", None) or "us"]
    if options.tick(tick_ns) != tick_ns:
        # the resolution is not a whole number of the data's ticks: work in nanoseconds
        ts_expr, tick_ns = ts_expr.cast(pl.Datetime("ns")), 1
    ticks = ts_expr.cast(pl.Int64)

    netting = has_amount and opts.returns == "net" and acc.n_return_rows > 0
    # the data's range is the purchases' (with returns="net" the frame still holds the returns)
    span = ticks.filter(pl.col("amount") >= 0) if netting else ticks
    bounds = tx.lazy().select(span.min().alias("lo"), span.max().alias("hi")).collect().row(0)
    if bounds[0] is None:
        raise ClvInputError(f"{source}: every row is a return (negative amount); there are no purchases")
    first_tick, last_tick = int(bounds[0]), int(bounds[1])
    grain = 1
    if options.merge is None:
        # exact mode: if all timestamps are whole days/hours/.../seconds, bucket at that grain
        # (identical results, smaller integers: the fast single-key sort usually applies)
        grains = [g // tick_ns for g in GRAINS_NS if g % tick_ns == 0 and g > tick_ns]
        if grains:
            exact = tx.lazy().select(
                [(ticks % g == 0).all().alias(f"g{i}") for i, g in enumerate(grains)]
            ).collect().row(0)
            grain = next((g for g, ok in zip(grains, exact) if ok), 1)
    plan = plan_summary(options, tick_ns=tick_ns, first_tick=first_tick, last_tick=last_tick, grain_ticks=grain,
                        calibration_end=calibration_end, observation_end=observation_end,
                        date_format=date_format, tz=tz)

    # --- returns="net": returns are subtracted from purchases (a purchase then weighs its rows) -
    net: dict[str, int] = {}
    weighted = False
    if netting:
        tx, net = _net_returns(tx, ticks, plan.cal_last, plan.obs_last)
        weighted = True
        if tx.height == 0:
            raise ClvInputError(f"{source}: no purchase is left after netting the returns")
        first_tick, last_tick = tx.lazy().select(ticks.min(), ticks.max().alias("hi")).collect().row(0)
        plan = plan.rebased(first_tick)
        matching = net
    elif has_amount and getattr(acc, "_dropped_returns", None) is not None:
        matching = _returns_matching(tx, acc._dropped_returns, ticks, plan.cal_last, plan.obs_last)
    else:
        matching = {}
    acc._dropped_returns = None  # (no longer needed)

    # --- the kernel, then the shared assembly ------------------------------------------------
    customer_ids, agg, n_after = _polars_aggregates(tx, ticks, plan, has_amount=has_amount, weighted=weighted,
                                                    last_tick=last_tick, source=source, amount_col=amount_col)
    del tx  # the input frame is no longer needed: free it before the per-customer arrays
    out, keep = assemble(plan, agg, has_amount=has_amount)
    rows = agg["rows"]
    n_used_rows = int(rows.sum())
    late_rows = int(rows[~keep].sum()) if plan.split else 0
    n_late = int((~keep).sum()) if plan.split else 0
    del agg
    if not keep.all():
        kept = np.flatnonzero(keep)
        out = {name: values.take(kept) for name, values in out.items()}
        customer_ids = customer_ids.gather(kept)
    if customer_ids.dtype == pl.String:
        index = pd.Index(customer_ids.to_list(), name="customer_id")
    else:
        index = pd.Index(customer_ids.to_numpy(), name="customer_id")
    result = pd.DataFrame(out, index=index, copy=False)
    result.attrs = accounting(plan, acc, net, n_customers=len(result), n_used_rows=n_used_rows, late_rows=late_rows,
                              n_late=n_late, n_after=n_after, returns=opts.returns, duplicates=opts.duplicates,
                              missing_customer=opts.missing_customer)
    if has_amount:
        result.attrs.update(returns_matching_attrs(matching))
    return result


#: attrs keys of the rows left out of a summary: ``n_transactions`` = ``n_transactions_summarised``
#: + the sum of these (each input row is in exactly one of them or summarised)
LEFT_OUT_ROWS = (
    "n_rows_missing_customer", "n_duplicate_rows_dropped", "n_return_rows", "n_purchases_fully_returned",
    "n_transactions_after_observation_end", "n_transactions_first_purchase_after_calibration",
)


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


# --------------------------------------------------------------------------------------------
# the discrete summary: periods with a transaction (BG/BB)
# --------------------------------------------------------------------------------------------

#: the calendar periods of :func:`summarize_periods` and the time unit each is measured in
PERIODS = {"D": "D", "W": "W", "M": "M", "Q": "3M", "Y": "Y"}


def _period_of(value: Any) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    key = text.upper() if text.upper() in PERIODS else None
    if key is None and text:
        try:
            unit = TimeUnit.parse(text)
            key = unit.base if unit.n == 1 and unit.base in PERIODS else None
        except ClvInputError:
            key = None
    if key is None:
        raise ClvInputError("a calendar period: D (day), W (week), M (month), Q (quarter) or Y (year)",
                            argument="period", value=value)
    return key


@dataclass(frozen=True)
class PeriodPlan:
    """The scalar decisions of a discrete summary, made before any aggregation (pure): the calendar period,
    its numbering and the last calibration and observation periods.

    Period numbers are consecutive integers: days and weeks (starting on ``week_start``) since 1970, months
    ``12 * year + month - 1``, quarters ``4 * year + (month - 1) // 3``, years the year."""

    period: str
    week_start: int
    cal_period: int | None
    obs_period: int
    obs_last_ns: int
    calibration_label: str | None
    observation_label: str

    def expr(self, timestamps: pl.Expr) -> pl.Expr:
        """The period number of each timestamp (wall clock)."""
        if self.period in ("D", "W"):
            days = timestamps.dt.epoch("d").cast(pl.Int64)
            return days if self.period == "D" else (days - (self.week_start - 3) % 7) // 7
        year, month = timestamps.dt.year().cast(pl.Int64), timestamps.dt.month().cast(pl.Int64)
        return {"M": 12 * year + month - 1, "Q": 4 * year + (month - 1) // 3, "Y": year}[self.period]

    @staticmethod
    def number(period: str, week_start: int, ns: int) -> int:
        """The period number of an instant (ns since 1970, wall clock), as :meth:`expr`."""
        stamp = pd.Timestamp(ns, unit="ns")
        if period in ("D", "W"):
            days = ns // _NS_PER_DAY
            return days if period == "D" else (days - (week_start - 3) % 7) // 7
        return {"M": 12 * stamp.year + stamp.month - 1, "Q": 4 * stamp.year + (stamp.month - 1) // 3,
                "Y": stamp.year}[period]


def plan_periods(period: Any, *, first_ns: int, last_ns: int, calibration_end: Any = None, observation_end: Any = None,
                 week_start: Any = "MON", date_format: str | None = None, tz: str | None = None) -> PeriodPlan:
    """The plan of a discrete summary of purchases from ``first_ns`` to ``last_ns`` (wall clock). An end must be
    the last day of a period (a one-line error names the period's last day otherwise: a period is never cut); the
    default observation end is the end of the last purchase's period."""
    key, start = _period_of(period), _parse_week_start(week_start)

    def last_period(value, option):
        point = _parse_point(value, option, date_format, tz)
        number = PeriodPlan.number(key, start, point.last_ns)
        if PeriodPlan.number(key, start, point.boundary_ns) == number:
            ends = [PeriodPlan.number(key, start, point.last_ns) - 1, number]
            last_days = [_period_last_day(key, start, p) for p in ends]
            raise ClvInputError(f"{point.label} is inside a period {key} (a period is never cut): give the last day "
                                f"of one, e.g. {last_days[1]} or {last_days[0]}", argument=option, value=value)
        return number, point

    cal_period = cal_label = None
    if calibration_end is not None:
        cal_period, point = last_period(calibration_end, "calibration_end")
        cal_label = point.label
        if point.last_ns < first_ns:
            raise ClvInputError(f"{point.label} is before the first transaction ({_iso(first_ns)})",
                                argument="calibration_end", value=calibration_end)
    if observation_end is None:
        obs_period = PeriodPlan.number(key, start, last_ns)
        obs_last, obs_label = last_ns, _period_last_day(key, start, obs_period)
        if cal_period is not None and obs_period < cal_period:
            obs_period, obs_label = cal_period, cal_label
    else:
        obs_period, point = last_period(observation_end, "observation_end")
        obs_last, obs_label = point.last_ns, point.label
        if cal_period is not None and obs_period < cal_period:
            raise ClvInputError(f"{obs_label} is before the calibration end {cal_label}",
                                argument="observation_end", value=observation_end)
        if point.last_ns < first_ns:
            raise ClvInputError(f"{obs_label} is before the first transaction ({_iso(first_ns)})",
                                argument="observation_end", value=observation_end)
    return PeriodPlan(key, start, cal_period, obs_period, obs_last, cal_label, obs_label)


def _period_last_day(period: str, week_start: int, number: int) -> str:
    """The last day of period ``number`` (ISO date)."""
    if period == "D":
        return _iso_date(number * _NS_PER_DAY)
    if period == "W":
        return _iso_date(((number + 1) * 7 + (week_start - 3) % 7 - 1) * _NS_PER_DAY)
    months = {"M": 1, "Q": 3, "Y": 12}[period]
    first_month = number * months if period != "Y" else number * 12
    year, month = divmod(first_month + months, 12)
    return (pd.Timestamp(year=year, month=month + 1, day=1) - pd.Timedelta(days=1)).date().isoformat()


def summarize_periods(
    transactions: Any,
    *,
    period: str = "Y",
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str | None = None,
    date_format: str | None = None,
    calibration_end: Any = None,
    observation_end: Any = None,
    week_start: "str | int" = "MON",
    encoding: str = "utf-8",
    missing_customer: str = "error",
    duplicates: str = "keep",
    returns: str | None = None,
) -> pd.DataFrame:
    """Summarise transactions in calendar periods, one transaction opportunity each (BG/BB's data).

    A customer's first period (his cohort's birth period, period 0) holds his first transaction; the periods
    after it up to the calibration (or observation) end are his ``n`` opportunities. Columns, per customer,
    in the model's inputs: ``frequency`` = x, the periods among them with at least one transaction;
    ``recency`` = t_x, the last of them counted from period 0 (0 when x = 0); ``T`` = n; whole numbers in
    the unit ``attrs["time_unit"]`` (the period: ``"Y"``, ``"M"``, ``"3M"`` for quarters, ``"W"``, ``"D"``).
    With ``calibration_end`` also ``frequency_holdout`` (x*, the holdout periods with a transaction) and
    ``duration_holdout`` (n*, the holdout periods); with ``amount_col`` also ``monetary_value`` (the mean of
    the repeat periods' summed amounts, 0 without any).

    ``period``: ``"D"``, ``"W"`` (weeks from ``week_start``), ``"M"``, ``"Q"`` or ``"Y"``. The ends are read as
    in :func:`summarize` and must be the last day of a period (a period is never cut: a calibration end inside
    one is an error naming the nearest ends); the default observation end is the end of the last transaction's
    period. Customers first seen after the calibration end and transactions after the observation end are left
    out and counted in ``attrs``. The reading options mean what they mean in :func:`summarize`.
    """
    opts = _Options.check(customer_col=customer_col, date_col=date_col, amount_col=amount_col, quantity_col=None,
                          price_col=None, date_format=date_format, encoding=encoding, decimal_comma=False,
                          missing_customer=missing_customer, duplicates=duplicates, returns=returns)
    trusted = _trusted_standard(transactions, customer_col, date_col, amount_col, None)
    tx, acc, source = _ingest(transactions, opts, trust_standard=trusted)
    ts = pl.col("timestamp")
    tz = getattr(tx.schema["timestamp"], "time_zone", None)
    if tz is not None:
        ts = ts.dt.replace_time_zone(None)
    ns = ts.cast(pl.Datetime("ns")).cast(pl.Int64)
    first_ns, last_ns = tx.lazy().select(ns.min(), ns.max().alias("hi")).collect().row(0)
    if first_ns is None:
        raise ClvInputError(f"{source}: no transactions")
    plan = plan_periods(period, first_ns=first_ns, last_ns=last_ns, calibration_end=calibration_end,
                        observation_end=observation_end, week_start=week_start, date_format=date_format, tz=tz)
    has_amount = "amount" in tx.columns
    after = ns > plan.obs_last_ns
    n_after = int(tx.lazy().select(after.sum()).collect().item())
    # (customer, period) -> one purchase opportunity used; then per customer (columnar group-bys)
    cal = pl.lit(True) if plan.cal_period is None else pl.col("p") <= plan.cal_period
    per_period = (tx.lazy().filter(~after)
                  .group_by(pl.col("customer_id"), plan.expr(ts).alias("p"))
                  .agg(pl.len().alias("rows"), *([pl.col("amount").sum()] if has_amount else [])))
    first_p = pl.col("p").filter(cal).min()
    aggregates = [
        first_p.alias("first"),
        cal.sum().cast(pl.Int64).alias("n_cal"),
        pl.col("p").filter(cal).max().alias("last"),
        (~cal).sum().cast(pl.Int64).alias("n_hold"),
        pl.col("rows").sum().alias("rows"),
    ]
    if has_amount:
        aggregates.append(pl.col("amount").filter(cal & (pl.col("p") > first_p)).sum().alias("repeat_amount"))
    per_customer = per_period.group_by("customer_id").agg(aggregates).sort("customer_id").collect()
    keep = per_customer.get_column("n_cal").to_numpy() > 0
    late = per_customer.filter(~pl.Series(keep))
    per_customer = per_customer.filter(pl.Series(keep))
    first = per_customer.get_column("first").to_numpy().astype(np.int64)
    frequency = per_customer.get_column("n_cal").to_numpy() - 1
    end = plan.obs_period if plan.cal_period is None else plan.cal_period
    out = {"frequency": frequency,
           "recency": per_customer.get_column("last").to_numpy().astype(np.int64) - first,
           "T": end - first}
    if has_amount:
        repeat = per_customer.get_column("repeat_amount").to_numpy().astype(np.float64)
        out["monetary_value"] = np.divide(repeat, frequency, out=np.zeros_like(repeat), where=frequency > 0)
    if plan.cal_period is not None:
        out["frequency_holdout"] = per_customer.get_column("n_hold").to_numpy()
        out["duration_holdout"] = np.full(len(first), plan.obs_period - plan.cal_period, dtype=np.int64)
    ids = per_customer.get_column("customer_id")
    index = pd.Index(ids.to_list() if ids.dtype == pl.String else ids.to_numpy(), name="customer_id")
    result = pd.DataFrame(out, index=index)
    result.attrs = {
        "time_unit": PERIODS[plan.period], "period": plan.period, "week_start": _WEEKDAYS[plan.week_start],
        "calibration_end": plan.calibration_label, "observation_end": plan.observation_label,
        "n_transactions": int(acc.n_transactions), "n_customers": len(result),
        "n_transactions_summarised": int(per_customer.get_column("rows").sum() or 0),
        "n_rows_missing_customer": int(acc.n_rows_missing_customer),
        "n_duplicate_rows_dropped": int(acc.n_duplicate_rows_dropped), "n_return_rows": int(acc.n_return_rows),
        "n_transactions_after_observation_end": n_after,
        "n_customers_first_purchase_after_calibration": late.height,
        "n_transactions_first_purchase_after_calibration": int(late.get_column("rows").sum() or 0),
    }
    return result
