r"""Historical (descriptive, rule-of-thumb) CLV and retention formulas.

Every formula of ``docs/historical-formulas.md`` is a small vectorised function; the docstring gives
the formula and the id of the source document (000-004 in ``shared/seeds``). Money formulas take an
optional ``margin`` (share of revenue kept as profit) and ``discount_rate`` (a rate with its period,
``"10%/Y"``) with the units of the core (:mod:`clv_forecast.units`), so that a historical CLV and the
predictive :meth:`ClvModel.clv` are on the same money basis.

Two forms of each value formula:

* **aggregate**: the scalar functions (:func:`apv`, :func:`apfr`, :func:`clv_simple`, ...) on the totals
  of a business or segment over one period; :func:`aggregate_summary` computes them from an RFM table.
* **per customer**: the same functions broadcast over arrays; :func:`customer_summary` applies them to
  each customer's own history in an RFM table (``frequency, recency, T, monetary_value``, made by
  :func:`clv_forecast.rfm.summarize`), or to a transaction log that it summarises first.

Shares (retention, churn, repeat purchase rate) are returned as fractions (0.6, not 60): multiply by
100 for the documents' percentages.

Per-customer inputs from an RFM table (times converted from the table's unit to ``period``):

* purchases counted: ``frequency`` repeat purchases (the first purchase's amount is not in a table
  built with the default ``include_first_transaction=False``); with ``include_first_transaction=True``
  all ``frequency + 1`` purchases;
* own APV: ``monetary_value``; a customer without a counted purchase (a one-time buyer in a
  repeat-only table) gets the aggregate APV (his own is unknown);
* own purchase rate: counted purchases / ``T`` (purchases per period since his first purchase; the
  documents' "repeat purchases per year");
* own observed lifespan: ``recency`` (last - first purchase) in periods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import ClvInputError
from .units import Duration, Rate, TimeUnit

__all__ = [
    "apv", "apfr", "customer_value", "lifespan", "lifespan_from_churn", "clv_simple", "ltv_profit", "clv_net",
    "ltv_cac", "cac_ceiling", "crr", "retention_simple", "churn", "repeat_purchase_rate", "discounted_duration",
    "customer_summary", "aggregate_summary", "period_counts", "cohort_retention", "n_day_retention",
    "rolling_retention",
]


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _num(value: Any, argument: str, *, positive: bool = False):
    """``value`` as a float array (or float), finite and >= 0 (> 0 with ``positive``)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ClvInputError("must be a number or numbers", argument=argument, value=value) from None
    if (~np.isfinite(arr)).any() or (arr <= 0 if positive else arr < 0).any():
        raise ClvInputError(f"must be {'positive' if positive else 'non-negative'} finite number(s)",
                            argument=argument, value=_short(value))
    return arr if arr.ndim else float(arr)


def _short(value: Any) -> Any:
    return value if np.ndim(value) == 0 else "..."


def _margin(margin: Any) -> float:
    if not (isinstance(margin, (int, float, np.floating, np.integer)) and not isinstance(margin, bool)
            and np.isfinite(margin) and margin >= 0):
        raise ClvInputError("must be a non-negative number (share of revenue kept as profit), e.g. 0.3",
                            argument="margin", value=margin)
    return float(margin)


def _period(period: Any) -> TimeUnit:
    try:
        d = Duration.parse(period)
    except ClvInputError as exc:
        raise ClvInputError(exc.reason, argument="period", value=period) from None
    if d.value <= 0:
        raise ClvInputError("must be a positive duration such as '1Y' or '1M'", argument="period", value=period)
    return TimeUnit(d.value * d.unit.n, d.unit.base)


def _rate(discount_rate: Any) -> Rate:
    try:
        return Rate.parse(discount_rate)
    except ClvInputError as exc:
        raise ClvInputError(exc.reason, argument="discount_rate", value=discount_rate) from None


def _ratio(numerator, denominator, num_arg: str, den_arg: str):
    n = _num(numerator, num_arg)
    d = _num(denominator, den_arg)
    if np.any(np.asarray(d) == 0):
        raise ClvInputError(f"must not be 0 (it divides {{{{{num_arg}}}}})", argument=den_arg, value=_short(denominator))
    return n / d


# --------------------------------------------------------------------------------------------
# value formulas (aggregate scalars, or per customer when given arrays)
# --------------------------------------------------------------------------------------------


def apv(revenue, purchases):
    """Average purchase value ``APV = R / P`` (document 003).

    ``revenue`` R and ``purchases`` P (orders) of one period, for the business, a segment or each
    customer (arrays broadcast). Example: 10,000 over 50 orders -> 200.
    """
    return _ratio(revenue, purchases, "revenue", "purchases")


def apfr(purchases, customers):
    """Average purchase frequency rate ``APFR = P / C``: purchases per buying customer in the period (003).

    Example: 50 orders by 20 customers -> 2.5.
    """
    return _ratio(purchases, customers, "purchases", "customers")


def customer_value(purchase_value, purchase_rate):
    """Customer value per period ``= APV x APFR`` (document 003). Example: 200 x 2.5 -> 500."""
    return _num(purchase_value, "purchase_value") * _num(purchase_rate, "purchase_rate")


def lifespan_from_churn(churn_rate):
    """Average customer lifespan in periods ``= 1 / churn`` (churn per period as a share; 002, 003).

    Example: churn 20 %/year -> 5 years.
    """
    c = _num(churn_rate, "churn_rate")
    if np.any((np.asarray(c) <= 0) | (np.asarray(c) > 1)):
        raise ClvInputError("must be a share in (0, 1] (0.2 for 20 %); a churn of 0 means an infinite lifespan",
                            argument="churn_rate", value=_short(churn_rate))
    return 1.0 / c


def lifespan(first, last, *, period="1Y"):
    """Observed average customer lifespan (document 003): mean over customers of
    ``last purchase - first purchase``, in ``period`` units.

    ``first`` and ``last`` are datetimes (arrays, Series) of each customer's first and last purchase;
    returns the mean (for the per-customer values use ``(last - first) / period``).
    For an RFM table use :func:`aggregate_summary` (mean ``recency``); the alternative estimator is
    :func:`lifespan_from_churn`.
    """
    unit = _period(period)
    first = pd.to_datetime(pd.Series(np.asarray(first).ravel()))
    last = pd.to_datetime(pd.Series(np.asarray(last).ravel()))
    if len(first) != len(last) or len(first) == 0:
        raise ClvInputError(f"needs one last purchase per first purchase ({len(first)} vs {len(last)}), at least one",
                            argument="last", value="...")
    days = (last - first).dt.total_seconds().to_numpy() / 86_400.0
    if (days < 0).any():
        raise ClvInputError("a last purchase is before its first purchase", argument="last", value="...")
    return float(np.mean(days) / unit.days)


def discounted_duration(duration, discount_rate="0%/Y", *, period="1Y"):
    r"""Present value of one money unit per period received for ``duration`` periods.

    The value of each period is counted at the period's end, the last (partial) period pro rata:
    :math:`\sum_{k=1}^{\lceil L\rceil} \min(1, L-k+1) / (1+d)^k` with ``d`` the rate over one ``period``.
    Equal to ``duration`` when the rate is 0. Vectorised over ``duration``.
    """
    L = _num(duration, "duration")
    d = _rate(discount_rate).over(_period(period))
    if d == 0:
        return L
    n = np.floor(L)
    v = 1.0 / (1.0 + d)
    full = (1.0 - v ** n) / d
    return full + (L - n) * v ** (n + 1)


def clv_simple(purchase_value, purchases_per_period, retention_periods, *, margin=1.0, discount_rate="0%/Y",
               period="1Y"):
    """Simple CLV ``= average purchase value x purchases per period x retention time (periods)``
    (documents 001, 002, 003), times ``margin``, the retention time discounted by
    :func:`discounted_duration` at ``discount_rate``.

    Example (002): 1,000 every two months for five years: ``clv_simple(1000, 6, 5) = 30,000``.
    """
    value = customer_value(purchase_value, purchases_per_period)
    return _margin(margin) * value * discounted_duration(retention_periods, discount_rate, period=period)


def ltv_profit(duration, profit_per_period, *, discount_rate="0%/Y", period="1Y"):
    """LTV ``= engagement duration x average profit per period`` (document 000); ``duration`` in periods,
    discounted by :func:`discounted_duration`. Example: 5 periods x 40 -> 200."""
    return _num(profit_per_period, "profit_per_period") * discounted_duration(duration, discount_rate, period=period)


def clv_net(revenue, *, acquisition_cost=0.0, service_cost=0.0, margin=1.0):
    """Net CLV ``= margin x revenue from the customer - acquisition cost - cost to serve`` (document 002).

    Example: 200,000 of revenue over five years, 100,000 of costs -> 100,000. May be negative.
    """
    return (_margin(margin) * _num(revenue, "revenue") - _num(acquisition_cost, "acquisition_cost")
            - _num(service_cost, "service_cost"))


def ltv_cac(clv, cac):
    """LTV:CAC ratio ``= CLV / acquisition cost`` (document 002); below 1 the acquisition loses money."""
    return _ratio(clv, cac, "clv", "cac")


def cac_ceiling(clv, planned_cac=None) -> dict:
    """Break-even acquisition spend (document 002): one may spend at most the customer's CLV to acquire him.

    Returns ``{"ceiling": CLV, "planned_cac", "surplus": CLV - planned (negative: the loss),
    "ltv_cac": CLV / planned}`` (the last three None without ``planned_cac``). Example: CLV 30,000 and a
    planned 40,000 -> surplus -10,000 (a loss of 10,000), LTV:CAC 0.75.
    """
    c = _num(clv, "clv")
    out = {"ceiling": c, "planned_cac": None, "surplus": None, "ltv_cac": None}
    if planned_cac is not None:
        p = _num(planned_cac, "planned_cac")
        out.update(planned_cac=p, surplus=c - p, ltv_cac=ltv_cac(c, p))
    return out


# --------------------------------------------------------------------------------------------
# retention formulas (counts)
# --------------------------------------------------------------------------------------------


def _counts(start, end, new=None):
    s = _num(start, "start")
    if np.any(np.asarray(s) == 0):
        raise ClvInputError("no customers at the start of the period (S = 0): retention is undefined",
                            argument="start", value=_short(start))
    e = _num(end, "end")
    n = None if new is None else _num(new, "new")
    if n is not None and np.any(np.asarray(n) > np.asarray(e)):
        raise ClvInputError("more new customers than customers at the end ({{end}})", argument="new", value=_short(new))
    return s, e, n


def crr(start, end, new):
    """Customer retention rate ``CRR = (E - N) / S`` as a share (documents 000, 001, 004).

    ``start`` S customers at the start of the period, ``end`` E at its end, ``new`` N acquired during
    it. Example (coffee shop): S = 1,000, E = 800, N = 200 -> 0.6 (60 %). Document 004 calls a CRR
    above 0.35 good for e-commerce.
    """
    s, e, n = _counts(start, end, new)
    return (e - n) / s


def retention_simple(start, end):
    """Simple retention ``E / S`` as a share (document 001); it ignores new customers and so overstates
    retention. Example: S = 1,000, E = 800 -> 0.8."""
    s, e, _ = _counts(start, end)
    return e / s


def churn(retention):
    """Churn rate ``= 1 - CRR`` (customers lost during the period / S; documents 002, 004), shares.
    Example: CRR 0.6 -> 0.4."""
    r = _num(retention, "retention")
    if np.any(np.asarray(r) > 1):
        raise ClvInputError("must be a share between 0 and 1 (0.6 for 60 %)", argument="retention",
                            value=_short(retention))
    return 1.0 - r


def repeat_purchase_rate(repeaters, customers):
    """Repeat purchase rate ``= customers with more than one purchase / all customers`` (document 004).

    Example: 30 repeaters of 120 -> 0.25. From an RFM table: ``repeat_purchase_rate((rfm.frequency > 0).sum(),
    len(rfm))`` (:func:`aggregate_summary` does it).
    """
    r = _ratio(repeaters, customers, "repeaters", "customers")
    if np.any(np.asarray(r) > 1):
        raise ClvInputError("more repeaters than customers ({{customers}})", argument="repeaters",
                            value=_short(repeaters))
    return r


# --------------------------------------------------------------------------------------------
# from an RFM table / transaction log
# --------------------------------------------------------------------------------------------


def _rfm(data: Any, summarize_kwargs: dict | None) -> pd.DataFrame:
    """An RFM table as it is, or a transaction log summarised with ``summarize(**summarize_kwargs)``."""
    if isinstance(data, pd.DataFrame) and {"frequency", "recency", "T"} <= set(data.columns):
        rfm = data
    else:
        from .rfm import summarize

        rfm = summarize(data, **(summarize_kwargs or {}))
    if rfm.attrs.get("time_unit") is None:
        raise ClvInputError("RFM table: time unit unknown; build it with summarize() (attrs['time_unit'])")
    if len(rfm) == 0:
        raise ClvInputError("RFM table: no customers")
    x = rfm["frequency"].to_numpy(dtype=np.float64)
    if (~np.isfinite(x) | (x < 0)).any():
        raise ClvInputError("RFM table: column 'frequency' has negative or missing counts")
    if "monetary_value" not in rfm.columns:
        raise ClvInputError("RFM table: no 'monetary_value' column (build it with summarize(..., amount_col=...))")
    return rfm


def _inputs(rfm: pd.DataFrame, unit: TimeUnit):
    """Counted purchases, revenue, T and recency (in ``unit``) per customer."""
    scale = TimeUnit.parse(rfm.attrs["time_unit"]).days / unit.days
    x = rfm["frequency"].to_numpy(dtype=np.float64)
    m = rfm["monetary_value"].to_numpy(dtype=np.float64)
    n = x + 1.0 if rfm.attrs.get("include_first_transaction") else x
    revenue = np.where(n > 0, m * n, 0.0)
    return n, revenue, rfm["T"].to_numpy(dtype=np.float64) * scale, rfm["recency"].to_numpy(dtype=np.float64) * scale


def aggregate_summary(data: Any, *, period="1Y", margin=1.0, discount_rate="0%/Y", churn_rate=None,
                      summarize_kwargs: dict | None = None) -> dict:
    """The aggregate formulas for all customers of an RFM table (or log, summarised first), per ``period``.

    ``apv`` = total counted revenue / counted purchases; ``apfr`` = counted purchases / total customer time
    ``T`` in periods (a pooled purchases-per-period rate, since customers are observed for different
    lengths of time); ``customer_value`` = apv x apfr; ``lifespan`` = mean observed ``recency`` in
    periods, or ``1 / churn_rate`` when given; ``clv_simple`` = margin x customer_value x (discounted)
    lifespan; ``repeat_purchase_rate``; ``customers``.
    """
    unit = _period(period)
    rfm = _rfm(data, summarize_kwargs)
    n, revenue, T, recency = _inputs(rfm, unit)
    if n.sum() == 0:
        raise ClvInputError("RFM table: no counted purchase (no repeat buyer) to take an average purchase value from")
    value = apv(revenue.sum(), n.sum())
    rate = apfr(n.sum(), T.sum())
    life = float(np.mean(recency)) if churn_rate is None else lifespan_from_churn(churn_rate)
    return {
        "customers": int(len(rfm)),
        "apv": value,
        "apfr": rate,
        "customer_value": customer_value(value, rate),
        "lifespan": life,
        "clv_simple": clv_simple(value, rate, life, margin=margin, discount_rate=discount_rate, period=period),
        "repeat_purchase_rate": repeat_purchase_rate(int((rfm["frequency"] > 0).sum()), len(rfm)),
        "period": str(unit),
    }


def customer_summary(data: Any, *, period="1Y", margin=1.0, discount_rate="0%/Y", lifespan_periods=None,
                     summarize_kwargs: dict | None = None) -> pd.DataFrame:
    """The per-customer forms, one row per customer of an RFM table (or log, summarised first).

    Columns: ``apv`` (own average purchase value; the aggregate APV for a customer without a counted
    purchase), ``apfr`` (own purchases per period = counted purchases / T), ``customer_value``
    (apv x apfr), ``lifespan`` (own observed last - first purchase, in periods), ``clv_simple``
    (margin x customer_value x discounted retention time: his own observed lifespan, or
    ``lifespan_periods`` when given, a number or one per customer), ``repeat_buyer`` (bool).
    """
    unit = _period(period)
    rfm = _rfm(data, summarize_kwargs)
    n, revenue, T, recency = _inputs(rfm, unit)
    if ((T <= 0) & (n > 0)).any():
        raise ClvInputError("RFM table: some customers have counted purchases and T = 0: no purchase rate")
    fallback = revenue.sum() / n.sum() if n.sum() > 0 else 0.0
    own_apv = np.where(n > 0, revenue / np.where(n > 0, n, 1.0), fallback)
    # no counted purchase: an own rate of 0, whatever T (a customer first seen on the last day, T = 0,
    # is such a customer: any non-cohort export has some)
    rate = np.where(n > 0, n / np.where(T > 0, T, 1.0), 0.0)
    life = recency if lifespan_periods is None else np.broadcast_to(
        _num(lifespan_periods, "lifespan_periods"), recency.shape)
    return pd.DataFrame({
        "apv": own_apv,
        "apfr": rate,
        "customer_value": own_apv * rate,
        "lifespan": recency,
        "clv_simple": clv_simple(own_apv, rate, life, margin=margin, discount_rate=discount_rate, period=period),
        "repeat_buyer": rfm["frequency"].to_numpy() > 0,
    }, index=rfm.index)


# --------------------------------------------------------------------------------------------
# from a transaction log: period counts, cohorts, N-day and rolling retention
# --------------------------------------------------------------------------------------------


def _log(transactions: Any, customer_col: str, date_col: str) -> pd.DataFrame:
    """customer, timestamp columns of a pandas or polars log (the standard frame: customer_id, timestamp)."""
    if not isinstance(transactions, pd.DataFrame):
        if hasattr(transactions, "collect") and not hasattr(transactions, "to_dict"):
            transactions = transactions.collect()
        if hasattr(transactions, "to_dict"):  # polars
            transactions = pd.DataFrame(transactions.select([customer_col, date_col]).to_dict(as_series=False))
        else:
            raise ClvInputError("must be a pandas or polars DataFrame", argument="transactions", value="...")
    for col, arg in ((customer_col, "customer_col"), (date_col, "date_col")):
        if col not in transactions.columns:
            raise ClvInputError(f"no such column; columns are: {', '.join(map(str, transactions.columns))}",
                                argument=arg, value=col)
    out = pd.DataFrame({"customer": transactions[customer_col].to_numpy(),
                        "ts": pd.to_datetime(transactions[date_col].to_numpy())})
    if out["ts"].isna().any() or out["customer"].isna().any():
        raise ClvInputError("the log has rows without a customer or a date")
    if len(out) == 0:
        raise ClvInputError("the log has no rows", argument="transactions", value="...")
    return out


_CAL = {"D": "D", "W": "W-SUN", "M": "M", "Y": "Y"}


def _calendar(period: Any) -> str:
    unit = _period(period)
    if unit.n != 1 or unit.base not in _CAL:
        raise ClvInputError("cohorts use calendar periods: one of '1D', '1W' (Monday to Sunday), '1M', '1Y'",
                            argument="period", value=period)
    return _CAL[unit.base]


def period_counts(transactions: Any, start, end, *, customer_col="customer_id", date_col="timestamp",
                  revenue_col: str | None = None, active_within=None) -> dict:
    """S, E, N, P, C (and R) of one period ``[start, end]`` (dates, ``end`` included) from a log,
    for :func:`crr`, :func:`apv`, :func:`apfr`.

    A customer is *a customer* at a date when he has bought within ``active_within`` (a duration such as
    ``"90D"`` or ``"1Y"``) up to that date: ``start`` S = customers with a purchase in the ``active_within``
    before ``start``; ``end`` E = customers with a purchase in the ``active_within`` ending with ``end``;
    ``new`` N = customers whose first purchase is in the period. Without ``active_within`` a customer,
    once acquired, never lapses (S = customers with a purchase before ``start``, E = those with one up
    to ``end``, so E - N = S and the CRR is 1). ``purchases`` P and ``customers`` C (buyers) count rows
    in the period; ``revenue`` R sums ``revenue_col``.
    """
    log = _log(transactions, customer_col, date_col)
    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    if hi <= lo:
        raise ClvInputError("the period ends before it starts ({{start}})", argument="end", value=end)
    first = log.groupby("customer")["ts"].min()
    inside = (log["ts"] >= lo) & (log["ts"] < hi)
    if active_within is None:
        n_start, n_end = int((first < lo).sum()), int((first < hi).sum())
    else:
        try:
            window = pd.Timedelta(days=Duration.parse(active_within).days)
        except ClvInputError as exc:
            raise ClvInputError(exc.reason, argument="active_within", value=active_within) from None
        if window <= pd.Timedelta(0):
            raise ClvInputError("must be a positive duration such as '90D'", argument="active_within",
                                value=active_within)
        ts = log["ts"]
        n_start = int(log.loc[(ts >= lo - window) & (ts < lo), "customer"].nunique())
        n_end = int(log.loc[(ts >= hi - window) & (ts < hi), "customer"].nunique())
    out = {"start": n_start, "end": n_end, "new": int(((first >= lo) & (first < hi)).sum()),
           "purchases": int(inside.sum()), "customers": int(log.loc[inside, "customer"].nunique())}
    if revenue_col is not None:
        out["revenue"] = float(pd.to_numeric(np.asarray(transactions[revenue_col]))[inside.to_numpy()].sum())
    return out


def cohort_retention(transactions: Any, *, period="1M", customer_col="customer_id", date_col="timestamp",
                     counts: bool = False) -> pd.DataFrame:
    """Cohort retention table (document 004).

    Cohort = calendar period (``period``: ``"1D"``, ``"1W"``, ``"1M"``, ``"1Y"``) of a customer's first
    purchase; column ``k`` = share of the cohort with at least one purchase in the ``k``-th period after
    it (column 0 is 1 by construction). Rows indexed by the cohort period; cells beyond the log's last
    period are NaN. ``counts=True`` gives the numbers of active customers instead, plus a ``size``
    column.
    """
    freq = _calendar(period)
    log = _log(transactions, customer_col, date_col)
    p = log["ts"].dt.to_period(freq)
    ordinal = p.map(lambda q: q.ordinal).to_numpy(dtype=np.int64) if p.dtype == object else p.array.asi8
    first = pd.Series(ordinal).groupby(log["customer"].to_numpy()).transform("min").to_numpy()
    active = pd.DataFrame({"customer": log["customer"].to_numpy(), "cohort": first, "k": ordinal - first})
    active = active.drop_duplicates()
    table = active.pivot_table(index="cohort", columns="k", values="customer", aggfunc="count", fill_value=0)
    last = int(ordinal.max())
    table = table.reindex(columns=range(0, last - int(first.min()) + 1), fill_value=0).astype(float)
    for cohort in table.index:  # periods not yet observed for this cohort
        table.loc[cohort, table.columns > last - cohort] = np.nan
    size = table[0].copy()
    table.index = pd.PeriodIndex.from_ordinals(table.index.to_numpy(), freq=freq)
    table.index.name, table.columns.name = "cohort", "period"
    if counts:
        table.insert(0, "size", size.to_numpy())
        return table
    return table.div(size.to_numpy(), axis=0)


def _day_retention(transactions, n_days, customer_col, date_col, cohort, observation_end, strict):
    if not (isinstance(n_days, (int, np.integer)) and not isinstance(n_days, bool) and n_days >= 1):
        raise ClvInputError("must be a whole number of days >= 1", argument="n_days", value=n_days)
    freq = _calendar(cohort)
    log = _log(transactions, customer_col, date_col)
    day = log["ts"].dt.normalize()
    first = day.groupby(log["customer"]).transform("min")
    offset = (day - first).dt.days.to_numpy()
    end = day.max() if observation_end is None else pd.Timestamp(observation_end).normalize()
    frame = pd.DataFrame({"customer": log["customer"].to_numpy(), "first": first.to_numpy(), "k": offset})
    frame = frame[(frame["k"] >= 1) & (frame["k"] <= n_days)].drop_duplicates(["customer", "k"])
    active_days = frame.groupby("customer")["k"].nunique()
    firsts = first.groupby(log["customer"].to_numpy()).first()
    eligible = firsts[firsts + pd.Timedelta(days=n_days) <= end]  # day N is observed
    hits = active_days.reindex(eligible.index, fill_value=0)
    retained = hits >= n_days if strict else hits >= 1
    cohorts = eligible.dt.to_period(freq)
    out = pd.DataFrame({"customers": eligible.groupby(cohorts).size(),
                        "retained": retained.groupby(cohorts).sum().astype(int)})
    out["retention"] = out["retained"] / out["customers"]
    out.index.name = "cohort"
    return out


def n_day_retention(transactions: Any, n_days: int, *, cohort="1M", customer_col="customer_id",
                    date_col="timestamp", observation_end=None) -> pd.DataFrame:
    """Classic (strict) N-day retention (document 004: "the casino player who plays every day from day 1 to
    day 40"): share of a cohort active on **every** one of days 1..N after his first purchase day (day 0).

    Only customers whose day N is observed (first day + N <= ``observation_end``, default the log's last
    day) count. One row per cohort (calendar period of the first purchase): ``customers``, ``retained``,
    ``retention``.
    """
    return _day_retention(transactions, n_days, customer_col, date_col, cohort, observation_end, strict=True)


def rolling_retention(transactions: Any, n_days: int, *, cohort="1M", customer_col="customer_id",
                      date_col="timestamp", observation_end=None) -> pd.DataFrame:
    """Rolling retention (document 004: "counted if he comes back at least once within 40 days"): share
    of a cohort active on **at least one** of days 1..N after his first purchase day. Same rows and
    eligibility as :func:`n_day_retention`."""
    return _day_retention(transactions, n_days, customer_col, date_col, cohort, observation_end, strict=False)
