r"""The inputs of a retention model: cohorts of a contractual business, or one row per customer.

A contractual customer is a customer from period 0 (his acquisition) and, at the end of each period, renews or
leaves for good. A retention model reads either form of the same data:

* **a cohort table**: how many customers of a cohort are still customers at the start of periods 0, 1, ..., n
  (period 0: the whole cohort; period t: those who renewed t times). Several cohorts are independent
  contributions to one likelihood and may be observed for different numbers of periods. Accepted as

  - a *long* table, one row per (cohort, period): columns ``cohort``, ``period`` (0, 1, ...) and ``alive``
    (customers), or ``share`` (of the cohort, 0 to 1) and ``size`` (the cohort's customers, the same on each of
    its rows);
  - a *wide* table, one row per cohort (labelled by the index, or by a ``cohort`` column) and one column per
    period ``0, 1, ..., K`` (numbers, or their text as read from a file), a cohort's cells after its last observed
    period empty (NaN); counts, or shares (period 0 is 1) with an optional ``size`` column or ``size=``. This is
    the shape of :func:`clv_forecast.historical.cohort_retention`: ``cohort_retention(log, period="1M",
    counts=True)`` is read as it is (its ``size`` column is its column 0, and the cohorts' monthly
    ``PeriodIndex`` gives the time unit ``M``), and its default table of shares with
    ``size=counts["size"]``. That function counts the customers *active* in each period, which a
    non-contractual log can make rise (a customer who skips a month): a rise is refused here, naming the cohort
    and period, and :func:`cohorts_from_log` counts a customer as a customer through his last active period
    instead;
  - a Series or sequence of counts (or of shares with ``size=``): one cohort, the period its position.

* **one row per customer**: columns ``renewals`` (how many times he renewed: he was a customer at the start of
  periods 0..renewals) and ``churned`` (1: he did not renew after that; 0: still a customer when the data
  end), optionally ``count`` (a row standing for several customers).

A cohort table is the same data counted: ``alive[t] - alive[t + 1]`` customers left after ``t`` renewals, and
the ``alive[n]`` of a cohort's last observed period are still customers after ``n`` renewals
(:meth:`Cohorts.lifetimes`). Counts need not be whole numbers (shares times a size): they weigh the likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ...errors import ClvInputError, row_error, show_value
from ...units import TimeUnit
from .._data import column, weights_of

#: the longest history a likelihood reads, in periods (the kernels sum over every period up to it)
MAX_PERIODS = 1_000_000

_PERIOD_FREQ = {"M": "M", "Y": "Y", "A": "Y", "W": "W", "D": "D", "Q": "3M"}


@dataclass
class Lifetimes:
    """One row per customer (or per group of customers, ``weights``): renewals made and whether he left after
    them (1.0) or was still a customer when the data end (0.0)."""

    renewals: np.ndarray
    churned: np.ndarray
    weights: np.ndarray
    time_unit: str | None = None


@dataclass
class Cohorts:
    """Customers alive at the start of each observed period, per cohort (``alive[i][t]``, t = 0..n_i)."""

    labels: list
    alive: list
    time_unit: str | None = None
    source: str = "cohort table"
    attrs: dict = field(default_factory=dict)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([float(a[0]) for a in self.alive])

    @property
    def lengths(self) -> np.ndarray:
        """The last observed period of each cohort."""
        return np.array([len(a) - 1 for a in self.alive], dtype=np.int64)

    def lifetimes(self) -> Lifetimes:
        """The per-customer rows of the cohorts: from period t to t + 1, ``alive[t] - alive[t + 1]`` left after t
        renewals; the ``alive[n]`` of the last period are still customers after n renewals (rows of weight 0 are
        left out)."""
        renewals, churned, weights = [], [], []
        for a in self.alive:  # one pass per cohort (a few), vectorised within
            n = len(a) - 1
            renewals += [np.arange(n, dtype=np.float64), np.array([float(n)])]
            churned += [np.ones(n), np.zeros(1)]
            weights += [a[:-1] - a[1:], a[-1:]]
        r, c, w = (np.concatenate(v) if v else np.zeros(0) for v in (renewals, churned, weights))
        keep = w > 0
        return Lifetimes(r[keep], c[keep], w[keep], self.time_unit)

    def select(self, i: int) -> "Cohorts":
        """The ``i``-th cohort alone."""
        return Cohorts([self.labels[i]], [self.alive[i]], self.time_unit, self.source, dict(self.attrs))


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _unit_text(unit) -> str:
    return str(TimeUnit.parse(unit))


def _own_unit(data) -> str | None:
    """The time unit a table carries: ``attrs["time_unit"]``, else its index's calendar period."""
    attrs = getattr(data, "attrs", None) or {}
    if attrs.get("time_unit"):
        return _unit_text(attrs["time_unit"])
    index = getattr(data, "index", None)
    if isinstance(index, pd.PeriodIndex):
        code = index.freqstr.split("-")[0].lstrip("0123456789")[:1]
        if code in _PERIOD_FREQ:
            return _PERIOD_FREQ[code]
    return None


def _time_unit(data, time_unit, source: str) -> str | None:
    own = _own_unit(data)
    if time_unit is None:
        return own
    given = _unit_text(time_unit)
    if own is not None and TimeUnit.parse(own).days != TimeUnit.parse(given).days:
        raise ClvInputError(f"{source} is in periods of {own}; the declared unit contradicts it",
                            argument="time_unit", value=time_unit)
    return given


def _numbers(values, source: str, name: str) -> np.ndarray:
    try:
        return np.asarray(pd.to_numeric(pd.Series(values), errors="raise"), dtype=np.float64)
    except (TypeError, ValueError):
        series = pd.Series(values)
        bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
        rows = np.flatnonzero(bad.to_numpy())
        raise row_error(source, name, (rows + 1).tolist(), series.iloc[rows[:5]].tolist(),
                        "not a number") from None


def _period_of(label) -> int | None:
    """A wide table's column label as a period number (``3``, ``"3"``, ``3.0``), or None."""
    if isinstance(label, (bool, np.bool_)):
        return None
    if isinstance(label, (int, np.integer)):
        return int(label) if label >= 0 else None
    if isinstance(label, (float, np.floating)) and float(label).is_integer() and label >= 0:
        return int(label)
    if isinstance(label, str) and label.strip().isdigit():
        return int(label.strip())
    return None


def _check_alive(labels, alive, source: str, rows_of=None) -> None:
    """Counts finite, non-negative, the cohort not empty, never rising: one line naming cohort, period and row."""
    for i, (label, a) in enumerate(zip(labels, alive)):
        def where(t: int) -> str:
            row = rows_of(i, t) if rows_of is not None else i + 1
            return f"cohort {label}, period {t} (row {row})"

        bad = ~np.isfinite(a) | (a < 0)
        if bad.any():
            t = int(np.flatnonzero(bad)[0])
            raise ClvInputError(f"{source}: {where(t)}: {show_value(float(a[t]))} customers alive: a count must be a "
                                "non-negative finite number")
        if not a[0] > 0:
            raise ClvInputError(f"{source}: {where(0)}: the cohort has no customers at period 0")
        if a.size > MAX_PERIODS + 1:
            raise ClvInputError(f"{source}: cohort {label}: {a.size - 1} periods observed; at most {MAX_PERIODS:,}")
        rise = np.flatnonzero(a[1:] > a[:-1] * (1 + 1e-12))
        if rise.size:
            t = int(rise[0]) + 1
            raise ClvInputError(
                f"{source}: {where(t)}: {a[t]:g} customers alive after {a[t - 1]:g} at period {t - 1}: a contractual "
                "cohort only loses customers (a table of customers active in each period, such as "
                "historical.cohort_retention's, rises when customers skip a period; "
                "retention.cohorts_from_log counts a customer through his last active period)")


def _shares_to_counts(shares: np.ndarray, size: float, label, source: str, row) -> np.ndarray:
    if not (np.isfinite(size) and size > 0):
        raise ClvInputError(f"{source}: cohort {label} (row {row}): size {show_value(size)}: must be a positive number")
    bad = np.isfinite(shares) & ((shares < 0) | (shares > 1 + 1e-12))
    if bad.any():
        t = int(np.flatnonzero(bad)[0])
        raise ClvInputError(f"{source}: cohort {label}, period {t} (row {row}): share {shares[t]:g}: a share of the "
                            "cohort is from 0 to 1 (divide percentages by 100)")
    if abs(shares[0] - 1.0) > 1e-9:
        raise ClvInputError(f"{source}: cohort {label}, period 0 (row {row}): share {shares[0]:g}: period 0 is the "
                            "whole cohort, share 1")
    return shares * size


def _sizes_for(size, labels, source: str) -> list:
    """``size=``: a number for every cohort, or one per cohort (a mapping or Series by label, or a sequence)."""
    if isinstance(size, (int, float, np.integer, np.floating)) and not isinstance(size, bool):
        return [float(size)] * len(labels)
    if isinstance(size, (pd.Series, dict)):
        lookup = {str(k) if isinstance(k, pd.Period) else k: v for k, v in dict(size).items()}
        missing = [label for label in labels if label not in lookup]
        if missing:
            raise ClvInputError(f"{source}: no size for cohort {missing[0]}", argument="size", value="...")
        return [float(lookup[label]) for label in labels]
    values = np.asarray(size, dtype=object).ravel()
    if len(values) != len(labels):
        raise ClvInputError(f"{source}: {len(values)} sizes for {len(labels)} cohorts", argument="size", value="...")
    return [float(v) for v in values]


def _wide(data: pd.DataFrame, size, source: str) -> Cohorts:
    frame = data
    if "cohort" in frame.columns:
        frame = frame.set_index("cohort")
    sizes_col = None
    periods = {}
    for label in frame.columns:
        if isinstance(label, str) and label.strip() == "size":
            sizes_col = label
            continue
        t = _period_of(label)
        if t is None:
            raise ClvInputError(f"{source}: column {label!r}: not a period; a cohort table has the columns cohort, "
                                "period and alive (one row per cohort and period), or one column per period 0, 1, "
                                "... (one row per cohort)")
        if t in periods:
            raise ClvInputError(f"{source}: columns {periods[t]!r} and {label!r} are the same period {t}")
        periods[t] = label
    if not periods:
        raise ClvInputError(f"{source}: no period columns (0, 1, ...)")
    top = max(periods)
    missing = [t for t in range(top + 1) if t not in periods]
    if missing:
        raise ClvInputError(f"{source}: no column for period {missing[0]} (the periods are 0 to {top}, one column "
                            "each)")
    if len(frame) == 0:
        raise ClvInputError(f"{source}: no cohorts (no rows)")
    values = np.column_stack([_numbers(frame[periods[t]].to_numpy(), source, str(periods[t]))
                              for t in range(top + 1)])
    labels = [str(v) if isinstance(v, pd.Period) else v for v in frame.index]
    own_sizes = None if sizes_col is None else _numbers(frame[sizes_col].to_numpy(), source, "size")
    alive = []
    for i, label in enumerate(labels):
        row = values[i]
        seen = np.isfinite(row)
        n = int(np.argmin(seen)) if not seen.all() else len(row)
        if n == 0:
            raise ClvInputError(f"{source}: cohort {label}, period 0 (row {i + 1}): missing: period 0 is the cohort's "
                                "size")
        if seen[n:].any():
            t = n + int(np.argmax(seen[n:]))
            raise ClvInputError(f"{source}: cohort {label}, period {n} (row {i + 1}): missing, but period {t} is "
                                "given: only the periods after a cohort's last observed one may be empty")
        alive.append(row[:n])
    if size is not None:
        sizes = _sizes_for(size, labels, source)
        alive = [_shares_to_counts(a, s, label, source, i + 1) for i, (a, s, label) in
                 enumerate(zip(alive, sizes, labels))]
    elif own_sizes is not None:
        counts = all(abs(a[0] - s) <= 1e-9 * max(s, 1.0) for a, s in zip(alive, own_sizes))
        shares = all(abs(a[0] - 1.0) <= 1e-12 for a in alive)
        if counts:
            pass
        elif shares:
            alive = [_shares_to_counts(a, s, label, source, i + 1) for i, (a, s, label) in
                     enumerate(zip(alive, own_sizes, labels))]
        else:
            i = next(i for i, (a, s) in enumerate(zip(alive, own_sizes)) if abs(a[0] - s) > 1e-9 * max(s, 1.0))
            raise ClvInputError(f"{source}: cohort {labels[i]} (row {i + 1}): period 0 is {alive[i][0]:g} and size "
                                f"{own_sizes[i]:g}: period 0 is the cohort's size (counts) or 1 (shares)")
    elif all(abs(a[0] - 1.0) <= 1e-12 and np.all(a <= 1.0) for a in alive) and any(
            np.any(a != np.floor(a)) for a in alive):
        raise ClvInputError(f"{source}: the cells are shares of each cohort (period 0 is 1): give the cohorts' "
                            "sizes ({{size}})")
    _check_alive(labels, alive, source)
    return Cohorts(labels, alive, source=source)


def _long(data: pd.DataFrame, source: str) -> Cohorts:
    has_alive = "alive" in data.columns
    if not has_alive and not {"share", "size"} <= set(data.columns):
        cols = ", ".join(map(str, data.columns)) or "none"
        raise ClvInputError(f"{source}: column 'alive' not found (or 'share' with 'size'); columns are: {cols}")
    if len(data) == 0:
        raise ClvInputError(f"{source}: no rows")
    cohort = data["cohort"]
    if cohort.isna().any():
        rows = np.flatnonzero(cohort.isna().to_numpy())
        raise row_error(source, "cohort", (rows + 1).tolist(), [None] * min(5, len(rows)), "missing cohort")
    period = _numbers(data["period"].to_numpy(), source, "period")
    bad = ~np.isfinite(period) | (period < 0) | (period != np.floor(period)) | (period > MAX_PERIODS)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise row_error(source, "period", (rows + 1).tolist(), period[rows[:5]].tolist(),
                        f"not a whole number of periods from 0 to {MAX_PERIODS:,}")
    codes, labels = pd.factorize(cohort, sort=False)
    labels = [str(v) if isinstance(v, pd.Period) else v for v in labels]
    t = period.astype(np.int64)
    order = np.lexsort((t, codes))
    dup = (codes[order][1:] == codes[order][:-1]) & (t[order][1:] == t[order][:-1])
    if dup.any():
        j = int(np.flatnonzero(dup)[0])
        a, b = sorted((int(order[j]) + 1, int(order[j + 1]) + 1))
        raise ClvInputError(f"{source}: rows {a} and {b}: cohort {labels[codes[order[j]]]}, period {t[order[j]]} "
                            "given twice")
    if has_alive:
        values = _numbers(data["alive"].to_numpy(), source, "alive")
        nan = ~np.isfinite(values)
        if nan.any():
            rows = np.flatnonzero(nan)
            raise row_error(source, "alive", (rows + 1).tolist(), values[rows[:5]].tolist(),
                            "missing or non-finite count")
    else:
        values = _numbers(data["share"].to_numpy(), source, "share")
        sizes = _numbers(data["size"].to_numpy(), source, "size")
        for name, v in (("share", values), ("size", sizes)):
            nan = ~np.isfinite(v)
            if nan.any():
                rows = np.flatnonzero(nan)
                raise row_error(source, name, (rows + 1).tolist(), v[rows[:5]].tolist(), "missing or non-finite value")
    starts = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    alive = []
    for c, (lo, hi) in enumerate(zip(starts, ends)):  # one pass per cohort
        rows = order[lo:hi]
        ts = t[rows]
        label = labels[codes[rows[0]]]
        expected = np.arange(len(rows))
        if not np.array_equal(ts, expected):
            gap = int(np.flatnonzero(ts != expected)[0])
            raise ClvInputError(f"{source}: cohort {label}: no row for period {gap} (a cohort's periods run from 0 "
                                f"without gaps; rows {', '.join(str(int(r) + 1) for r in rows[:5])}"
                                f"{' ...' if len(rows) > 5 else ''})")
        if has_alive:
            alive.append(values[rows])
        else:
            s = sizes[rows]
            if np.any(s != s[0]):
                k = int(np.flatnonzero(s != s[0])[0])
                raise row_error(source, "size", [int(rows[k]) + 1], [s[k]],
                                f"cohort {label} has size {s[0]:g} on row {int(rows[0]) + 1}: one size per cohort")
            alive.append(_shares_to_counts(values[rows], float(s[0]), label, source, int(rows[0]) + 1))
    row_of = {(c, int(t[r])): int(r) + 1 for c, (lo, hi) in enumerate(zip(starts, ends)) for r in order[lo:hi]} \
        if len(order) <= 100_000 else None
    cohort_index = [labels[codes[order[lo]]] for lo in starts]
    _check_alive(cohort_index, alive, source, rows_of=(lambda i, tt: row_of[i, tt]) if row_of else None)
    return Cohorts(cohort_index, alive, source=source)


def _one_cohort(values, size, source: str) -> Cohorts:
    label = getattr(values, "name", None)
    label = "1" if label is None else label
    try:
        a = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ClvInputError(f"{source}: the counts of a cohort must be numbers") from None
    if a.size == 0:
        raise ClvInputError(f"{source}: no periods")
    seen = np.isfinite(a)
    n = int(np.argmin(seen)) if not seen.all() else a.size
    if n and seen[n:].any():
        raise ClvInputError(f"{source}: period {n} is missing but a later period is given")
    a = a[:max(n, 1)]
    if size is not None:
        a = _shares_to_counts(a, float(np.asarray(size, dtype=np.float64).ravel()[0]), label, source, 1)
    _check_alive([label], [a], source)
    return Cohorts([label], [a], source=source)


def _customers(data, weights, source: str) -> Lifetimes:
    r = column(data, "renewals", None, source)
    c = column(data, "churned", None, source)
    bad = (r < 0) | (r != np.floor(r)) | (r > MAX_PERIODS)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise row_error(source, "renewals", (rows + 1).tolist(), r[rows[:5]].tolist(),
                        f"not a whole number of renewals from 0 to {MAX_PERIODS:,}")
    bad = (c != 0) & (c != 1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise row_error(source, "churned", (rows + 1).tolist(), c[rows[:5]].tolist(),
                        "must be 1 (left after these renewals) or 0 (still a customer)")
    w = weights_of(data, weights, len(r), source)
    return Lifetimes(r, c, w)


def is_customer_table(data) -> bool:
    return isinstance(data, pd.DataFrame) and "renewals" in data.columns


def read(data, *, size=None, weights=None, time_unit=None, source: str | None = None) -> tuple[Lifetimes,
                                                                                                  Cohorts | None]:
    """A retention model's input (module docstring) as per-customer rows, and its cohorts when it is a cohort
    table (None for a per-customer table). ``time_unit``: the length of a period, when the table does not carry
    it (``attrs["time_unit"]`` or a ``PeriodIndex`` of cohorts)."""
    if hasattr(data, "to_pandas") and not isinstance(data, (pd.DataFrame, pd.Series)):  # polars
        data = data.to_pandas()
    if isinstance(data, pd.DataFrame):
        if is_customer_table(data):
            name = source or "customer table"
            if size is not None:
                raise ClvInputError(f"{name}: size= is for a cohort table of shares, not for one row per customer")
            lifetimes = _customers(data, weights, name)
            lifetimes.time_unit = _time_unit(data, time_unit, name)
            return lifetimes, None
        name = source or "cohort table"
        if weights is not None:
            raise ClvInputError(f"{name}: weights= is for one row per customer (a cohort table counts its customers)")
        cohorts = _long(data, name) if {"cohort", "period"} <= set(data.columns) else _wide(data, size, name)
    elif data is None:
        raise ClvInputError("no data: give a cohort table, or one row per customer (renewals, churned)")
    elif isinstance(data, (str, bytes, dict)):
        raise ClvInputError(f"a cohort table must be a DataFrame or a sequence of counts, not {type(data).__name__}")
    else:
        name = source or "cohort"
        cohorts = _one_cohort(data, size, name)
    cohorts.time_unit = _time_unit(data, time_unit, cohorts.source)
    attrs = getattr(data, "attrs", None) or {}
    cohorts.attrs = {k: v for k, v in attrs.items() if isinstance(v, (str, int, float))}
    return cohorts.lifetimes(), cohorts


# --------------------------------------------------------------------------------------------
# a transaction log as cohorts
# --------------------------------------------------------------------------------------------


def cohorts_from_log(transactions, *, period="1M", customer_col: str = "customer_id", date_col: str = "timestamp",
                     observation_end=None) -> pd.DataFrame:
    """Contractual cohorts of a transaction log (a payment each period while a customer): the wide table of counts
    that :meth:`fit` reads, in the shape of ``historical.cohort_retention(..., counts=True)``.

    A customer's cohort is the calendar period (``"1D"``, ``"1W"`` Monday to Sunday, ``"1M"``, ``"1Y"``) of his
    first transaction; he is a customer from it **through the period of his last transaction** (a period without a
    payment in between is forgiven: the contract ran on), so the counts never rise. Only whole periods count: the
    data end at ``observation_end`` (a day, included; default the log's last transaction), and a period that ends
    after it is not observed (a log whose last transaction is on 28 April ends the monthly table in March;
    April's transactions still say who was a customer through March). Customers first seen in that last
    incomplete period belong to no observed cohort and are left out (``attrs["excluded_customers"]``).

    Rows: cohorts (a ``PeriodIndex``); columns ``size`` and the periods 0, 1, ... since the cohort; a cohort's
    cells after the last whole period are NaN. ``attrs``: ``time_unit``, ``observation_end``, ``last_period``
    (the last whole period), ``customers``, ``excluded_customers``.
    """
    from ...historical import _calendar, _log

    freq = _calendar(period)
    log = _log(transactions, customer_col, date_col)
    if observation_end is None:
        end_day = log["ts"].max().normalize()
    else:
        try:
            end_day = pd.Timestamp(observation_end).normalize()
        except (TypeError, ValueError):
            raise ClvInputError("not a date", argument="observation_end", value=observation_end) from None
        log = log[log["ts"] < end_day + pd.Timedelta(days=1)]
        if len(log) == 0:
            raise ClvInputError("no transaction on or before it", argument="observation_end", value=observation_end)
    ordinal = log["ts"].dt.to_period(freq).array.asi8
    last_period = pd.Period(end_day, freq)
    if (last_period + 1).start_time > end_day + pd.Timedelta(days=1):  # the end's period is not over
        last_period -= 1
    last = int(last_period.ordinal)
    by_customer = pd.DataFrame({"customer": log["customer"].to_numpy(), "p": ordinal}).groupby("customer")["p"]
    first, latest = by_customer.min().to_numpy(), by_customer.max().to_numpy()
    observed = first <= last
    excluded = int((~observed).sum())
    if not observed.any():
        raise ClvInputError(f"no whole {TimeUnit.parse(period)} period is observed: every customer's first "
                            f"transaction is in {last_period + 1}, which ends after the data "
                            f"({end_day.date()})")
    first, latest = first[observed], latest[observed]
    tenure = np.minimum(latest, last) - first  # renewals: a customer through his last active period
    cohorts, code = np.unique(first, return_inverse=True)
    width = int(last - cohorts.min()) + 1
    counts = np.zeros((len(cohorts), width))
    np.add.at(counts, (code, tenure), 1.0)
    alive = counts[:, ::-1].cumsum(axis=1)[:, ::-1]  # alive at k: tenure >= k
    horizon = last - cohorts  # the last observed period of each cohort
    alive[np.arange(width)[None, :] > horizon[:, None]] = np.nan
    table = pd.DataFrame(alive, index=pd.PeriodIndex.from_ordinals(cohorts, freq=freq), columns=range(width))
    table.insert(0, "size", alive[:, 0])
    table.index.name, table.columns.name = "cohort", "period"
    table.attrs.update(time_unit=_PERIOD_FREQ[freq[0]], observation_end=str(end_day.date()),
                       last_period=str(last_period), customers=int(observed.sum()), excluded_customers=excluded)
    return table


__all__ = ["Cohorts", "Lifetimes", "MAX_PERIODS", "cohorts_from_log", "read"]
