"""The RFM summary of a transaction log held in a Spark DataFrame, and the fit on its statistics.

:func:`summarize_spark` is :func:`clv_forecast.rfm.summarize` with Spark as the engine. The three
steps of :mod:`clv_forecast.rfm` are shared: the same :class:`~clv_forecast.rfm.SummaryOptions` and
:func:`~clv_forecast.rfm.plan_summary` (every scalar decision, made on the driver from one
aggregation giving the data's range), a Spark kernel computing the per-customer aggregates
(:data:`~clv_forecast.rfm.AGGREGATES`) on the executors, and the same
:func:`~clv_forecast.rfm.assemble` applied to them partition by partition (``mapInPandas``). Equal
aggregates give equal summaries, so the Spark and the single-machine summaries agree by
construction (sums of amounts may differ in their last bits: Spark adds in another order).

The plan and the row accounting travel explicitly in the returned :class:`SparkSummary`, not in
pandas ``attrs``. Only compressed sufficient statistics reach the driver
(:meth:`SparkSummary.statistics`): the unique (frequency, recency, T) rows with their counts, the
unique (frequency, monetary_value) rows of the repeat buyers, and with a calibration split the
holdout purchases by (frequency, recency, T); :func:`fit_spark` fits the usual
:class:`~clv_forecast.model.ClvModel` on them.

Times: a ``timestamp`` column is read as wall-clock time in the session's time zone
(``spark.sql.session.timeZone``; the CLI sets UTC), a ``timestamp_ntz`` or ``date`` column as
written; text is parsed as ISO timestamps. Time is counted in microseconds (Spark's resolution).

Row rules as in :func:`~clv_forecast.transactions.read_transactions`: rows without a customer id
(null or blank text) are an error or, with ``missing_customer="drop"``, counted and left out;
duplicates are rows equal in every column of the DataFrame, counted, kept or dropped; negative
amounts are returns, dropped and counted (``"drop"``) or refused (``"error"``). ``returns="net"``
is not available on Spark (it needs an as-of join per customer; summarise on one machine). Spark
rows have no row numbers: an invalid value is reported with its column, how many rows have it and
one example customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ClvInputError, show_value
from ..ids import control_character, escape_control, spark_ids
from .session import _require_pyspark

__all__ = ["summarize_spark", "SparkSummary", "fit_spark", "predict_spark", "value_coverage_spark",
           "value_coverage_frame"]

_US = 1_000  # a tick of Spark's timestamps, in ns


_CUSTOMER, _TICK, _AMOUNT, _ROWS = "customer_id", "_t", "_amount", "_rows"


@dataclass
class SparkSummary:
    """A summary computed by Spark: ``rfm`` (a lazy Spark DataFrame, one row per customer:
    ``customer_id, frequency, recency, T[, monetary_value][, frequency_holdout,
    monetary_value_holdout, duration_holdout]``), the ``plan`` it was computed with and ``attrs``,
    the same accounting as :func:`clv_forecast.rfm.summarize` gives (every input row counted)."""

    rfm: Any
    plan: Any
    attrs: dict
    has_amount: bool

    def __len__(self) -> int:
        return int(self.attrs["n_customers"])

    @property
    def columns(self) -> list[str]:
        return [c for c in self.rfm.columns if c != _CUSTOMER]

    @property
    def time_unit(self) -> str:
        return str(self.plan.options.time_unit)

    def holdout_duration(self) -> float:
        """The holdout period's length in the time unit (as the local summary's ``duration_holdout``)."""
        from ..rfm import _to_time

        return float(_to_time(np.array([self.plan.holdout_duration()]), *self.plan.ratio())[0])

    def head(self, n: int = 5):
        """The first ``n`` customers as a pandas frame indexed by ``customer_id`` (a small collect)."""
        frame = self.rfm.limit(int(n)).toPandas().set_index(_CUSTOMER)
        frame.attrs = dict(self.attrs)
        return frame

    def to_pandas(self):
        """The whole summary on the driver, as :func:`clv_forecast.rfm.summarize` returns it (sorted
        by customer, ``attrs`` set). For data that fit on one machine (tests, checks)."""
        frame = self.rfm.toPandas().set_index(_CUSTOMER).sort_index()
        frame["frequency"] = frame["frequency"].astype(np.int64)
        if "frequency_holdout" in frame:
            frame["frequency_holdout"] = frame["frequency_holdout"].astype(np.int64)
        frame.attrs = dict(self.attrs)
        return frame

    def statistics(self, inputs: dict | None = None) -> dict:
        """The compressed sufficient statistics, collected to the driver (pandas frames), per role grouped
        by the columns its model reads (``inputs``: role -> columns, the models' ``inputs``; by default
        BG/NBD's and Gamma-Gamma's):

        * ``"purchases"``: unique purchase inputs (``frequency, recency, T``) with ``count``;
        * ``"spend"``: unique spend inputs (``frequency, monetary_value``) of the repeat buyers (the rows
          that carry a mean spend) with ``count``, or None without amounts;
        * ``"holdout"`` (with a calibration split): unique ``frequency, recency, T,
          frequency_holdout`` with ``count`` (the holdout check: expected against actual purchases).
        """
        from pyspark.sql import functions as F

        from ..engines.base import compressed_statistics

        def count(columns, repeat_buyers):
            rows = self.rfm.filter(F.col("frequency") > 0) if repeat_buyers else self.rfm
            return _collect(rows.groupBy(*columns).agg(F.count("*").alias("count")), list(columns))

        return compressed_statistics(count, inputs=inputs, split=bool(self.plan.split), has_amount=self.has_amount,
                                     attrs=self.attrs)


def _collect(sdf, keys):
    frame = sdf.toPandas().sort_values(keys, kind="stable").reset_index(drop=True)
    for name in ("frequency", "frequency_holdout", "count"):
        if name in frame:
            frame[name] = frame[name].astype(np.int64)
    return frame


def _timestamps(sdf, column: str, session_tz: str):
    """Wall-clock microseconds since 1970-01-01 of a timestamp / timestamp_ntz / date / ISO text column."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = sdf.schema[column].dataType
    col = F.col(column)
    if isinstance(dtype, T.DateType):
        return F.unix_date(col).cast("long") * F.lit(86_400_000_000)
    if isinstance(dtype, T.StringType):
        col = F.try_to_timestamp(F.trim(col))  # unreadable text -> null, reported below
    elif not isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        raise ClvInputError(f"column {column!r} is {dtype.simpleString()}, not a timestamp, date or ISO text",
                            argument="date_col", value=column)
    # the instant as a wall-clock reading in the session's zone, counted as if it were UTC
    return F.unix_micros(F.from_utc_timestamp(col.cast("timestamp"), session_tz))


def _amounts(sdf, column: str):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = sdf.schema[column].dataType
    if isinstance(dtype, T.StringType):
        return F.expr(f"try_cast(trim(`{column}`) AS double)")  # not a number -> null, reported below
    if not isinstance(dtype, T.NumericType):
        raise ClvInputError(f"column {column!r} is {dtype.simpleString()}, not a number",
                            argument="amount_col", value=column)
    return F.col(column).cast("double")


def summarize_spark(
    sdf: Any,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str | None = None,
    time_unit: Any = "W",
    merge: Any = "D",
    calibration_end: Any = None,
    observation_end: Any = None,
    missing_customer: str = "error",
    duplicates: str = "keep",
    returns: str | None = None,
    week_start: Any = "MON",
    include_first_transaction: bool = False,
    source: str = "Spark DataFrame",
) -> SparkSummary:
    """Summarise a Spark DataFrame of transactions per customer, as :func:`clv_forecast.rfm.summarize`.

    The options mean what they mean there (``returns="net"`` excepted: refused). The per-customer
    work runs on the executors; the driver receives one row of range and validity counts, one row
    of accounting, and later (:meth:`SparkSummary.statistics`) the compressed statistics.
    """
    _require_pyspark()
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from ..rfm import SummaryOptions, plan_summary
    from ..transactions import ReadAccounting

    options = SummaryOptions.parse(time_unit=time_unit, merge=merge, week_start=week_start,
                                   include_first_transaction=include_first_transaction)
    returns = "drop" if returns is None else returns  # amounts only on Spark: the amount column's default
    for name, value, allowed in (("missing_customer", missing_customer, ("error", "drop")),
                                 ("duplicates", duplicates, ("keep", "drop")),
                                 ("returns", returns, ("drop", "error", "net"))):
        if value not in allowed:
            raise ClvInputError(f"use one of {', '.join(map(repr, allowed))}", argument=name, value=value)
    if returns == "net":
        raise ClvInputError("'net' is not available with the Spark engine (it matches each return to an earlier "
                            "purchase); summarise on one machine, or use 'drop'", argument="returns", value=returns)
    missing = [c for c in (customer_col, date_col, amount_col) if c is not None and c not in sdf.columns]
    if missing:
        raise ClvInputError(f"{source}: column {missing[0]!r} not found; columns are: {', '.join(sdf.columns)}",
                            argument="customer_col" if missing[0] == customer_col else
                            "date_col" if missing[0] == date_col else "amount_col", value=missing[0])
    tick_ns = options.tick(_US)
    if tick_ns != _US:
        raise ClvInputError("the Spark engine counts time in microseconds: use a resolution of whole microseconds",
                            argument="merge", value=merge)
    session_tz = sdf.sparkSession.conf.get("spark.sql.session.timeZone")
    has_amount = amount_col is not None
    cid = F.col(customer_col)
    id_type = sdf.schema[customer_col].dataType.simpleString()
    control = F.lit(False)
    if id_type == "string":  # the one id rule (clv_forecast.ids): trimmed, blank = missing, "NA" an id
        key, control = spark_ids(cid)
        sdf = sdf.withColumn(customer_col, key)
    no_id = cid.isNull() | (F.isnan(cid) if id_type in ("double", "float") else F.lit(False))
    t = _timestamps(sdf, date_col, session_tz)
    amount = _amounts(sdf, amount_col) if has_amount else F.lit(0.0)

    # --- one pass: rows, validity, returns, the purchases' range (and the exact-mode grain) -------
    grains = [g // _US for g in (86_400 * 10**9, 3_600 * 10**9, 60 * 10**9, 10**9, 10**6) if g % _US == 0]
    valid = ~no_id
    bad_time = valid & t.isNull()
    bad_amount = valid & (amount.isNull() | F.isnan(amount) | (F.abs(amount) == float("inf"))) if has_amount \
        else F.lit(False)
    import datetime as _dt

    from ..transactions import DATE_RANGE, DATE_RANGE_TEXT

    epoch = _dt.datetime(1970, 1, 1)
    low_us, high_us = ((_dt.datetime.fromisoformat(d) + _dt.timedelta(days=k) - epoch) // _dt.timedelta(microseconds=1)
                       for d, k in zip(DATE_RANGE, (0, 1)))
    bad_range = valid & ~t.isNull() & ((t < F.lit(low_us)) | (t >= F.lit(high_us)))
    purchase = valid & ~bad_time & ~bad_amount & (amount >= 0)
    negative = valid & ~bad_amount & (amount < 0)
    scan = [F.count("*").alias("rows"), F.sum(no_id.cast("long")).alias("no_id"),
            F.sum(control.cast("long")).alias("control"), F.first(F.when(control, cid), ignorenulls=True).alias("control_id"),
            F.sum(bad_time.cast("long")).alias("bad_time"), F.sum(bad_amount.cast("long")).alias("bad_amount"),
            F.sum(bad_range.cast("long")).alias("bad_range"),
            F.first(F.when(bad_range, F.struct(F.col(date_col).cast("string").alias("v"), cid.alias("c"))),
                    ignorenulls=True).alias("bad_range_example"),
            F.first(F.when(bad_time, cid), ignorenulls=True).alias("bad_time_id"),
            F.first(F.when(bad_time, F.col(date_col).cast("string")), ignorenulls=True).alias("bad_time_value"),
            F.first(F.when(bad_amount, cid), ignorenulls=True).alias("bad_amount_id"),
            F.sum(negative.cast("long")).alias("returns"), F.sum(F.when(negative, amount)).alias("return_value"),
            F.min(F.when(purchase, t)).alias("lo"), F.max(F.when(purchase, t)).alias("hi")]
    if options.merge is None:
        scan += [F.sum((purchase & (t % g != 0)).cast("long")).alias(f"g{g}") for g in grains]
    row = sdf.select(*scan).first().asDict()
    n_rows = int(row["rows"])
    if n_rows == 0:
        raise ClvInputError(f"{source}: no data rows")
    if row["control"]:
        raise ClvInputError(f"{source}: column {customer_col!r}: {row['control']} row(s) whose customer id holds a "
                            f"control character ({control_character(row['control_id'])}), e.g. "
                            f"{show_value(escape_control(row['control_id']))}; remove control characters from the "
                            "ids in the source")
    if row["bad_time"]:
        raise ClvInputError(f"{source}: column {date_col!r}: {row['bad_time']} row(s) without a readable timestamp, "
                            f"e.g. {row['bad_time_value']!r} of customer {row['bad_time_id']!r}")
    if row["bad_range"]:
        example = row["bad_range_example"]
        raise ClvInputError(f"{source}: column {date_col!r}: {row['bad_range']} row(s) with a date outside the supported "
                            f"range {DATE_RANGE_TEXT}, e.g. {show_value(example['v'])} of customer "
                            f"{show_value(example['c'])}")
    if row["bad_amount"]:
        raise ClvInputError(f"{source}: column {amount_col!r}: {row['bad_amount']} row(s) whose amount is missing "
                            f"or not a finite number, e.g. of customer {row['bad_amount_id']!r}")
    n_no_id = int(row["no_id"] or 0)
    if n_no_id and missing_customer == "error":
        raise ClvInputError(f"{source}: column {customer_col!r}: {n_no_id} row(s) without a customer id; "
                            "{{missing_customer}} 'drop' leaves them out (counted)", argument="customer_col",
                            value=customer_col)
    if n_no_id == n_rows:
        raise ClvInputError(f"{source}: every row has a missing customer id (column {customer_col!r})")
    n_returns = int(row["returns"] or 0)
    if n_returns and returns == "error":
        raise ClvInputError(f"{source}: column {amount_col!r}: {n_returns} row(s) with a negative amount (returns); "
                            "{{returns}} 'drop' leaves them out (counted)", argument="returns", value=returns)
    if row["lo"] is None:
        raise ClvInputError(f"{source}: every row is a return (negative amount); there are no purchases")
    first_tick, last_tick = int(row["lo"]), int(row["hi"])
    grain = 1
    if options.merge is None:
        grain = next((g for g in grains if not row[f"g{g}"]), 1)
    plan = plan_summary(options, tick_ns=_US, first_tick=first_tick, last_tick=last_tick, grain_ticks=grain,
                        calibration_end=calibration_end, observation_end=observation_end, tz=None)

    # --- rows -> (customer, kind, bucket, period) -> customer, all clustered by the customer ------
    # (one shuffle: the group-bys and the window below need no other). Duplicates are rows equal in
    # every column: grouping by all of them gives each distinct row with its number of copies.
    frame = sdf.filter(valid) if n_no_id else sdf
    frame = frame.repartition(customer_col).groupBy(*sdf.columns).agg(F.count("*").alias("_copies"))
    weight = F.lit(1).cast("long") if duplicates == "drop" else F.col("_copies")
    rows = frame.select(cid.alias(_CUSTOMER), t.alias(_TICK), amount.alias(_AMOUNT), weight.alias(_ROWS),
                        (F.col("_copies") - 1).alias("_dup"))
    tick = F.col(_TICK)
    # kind 0: a purchase in the observed window, 1: a purchase after the observation end, 2: a return
    kind = (F.when(F.col(_AMOUNT) < 0, 2).when(tick > F.lit(plan.obs_last), 1).otherwise(0))
    in_window = kind == 0
    bucket = F.when(in_window, F.expr(f"({_TICK} - {plan.origin}) div {plan.step_ticks}")).otherwise(0)
    hold = (in_window & (tick > F.lit(plan.cal_last))) if plan.split else F.lit(False)
    groups = (rows.select(_CUSTOMER, kind.alias("_k"), bucket.alias("_b"), hold.alias("_h"),
                          (F.col(_AMOUNT) * F.col(_ROWS)).alias("_v"), _ROWS, "_dup")
              .groupBy(_CUSTOMER, "_k", "_b", "_h")
              .agg(F.sum("_v").alias("_s"), F.sum(_ROWS).alias(_ROWS), F.sum("_dup").alias("_dup")))
    purchase = F.col("_k") == 0
    key = F.col("_b") * 2 + F.col("_h").cast("long")
    first = F.min(F.when(purchase, key)).over(Window.partitionBy(_CUSTOMER))
    groups = groups.withColumn("_first", purchase & (key == first))
    cal = purchase & ~F.col("_h")

    s_col, r_col = F.col("_s"), F.col(_ROWS)
    agg = groups.groupBy(_CUSTOMER).agg(
        F.sum(cal.cast("long")).alias("n_cal"),
        F.sum(F.col("_h").cast("long")).alias("n_hold"),
        F.coalesce(F.min(F.when(purchase, F.col("_b"))), F.lit(0)).alias("first_b"),
        F.coalesce(F.max(F.when(cal, F.col("_b"))), F.min(F.when(purchase, F.col("_b"))), F.lit(0)).alias("last_cal_b"),
        F.coalesce(F.sum(F.when(purchase, r_col)), F.lit(0)).alias("rows"),
        F.coalesce(F.sum(F.when(cal & F.col("_first"), s_col)), F.lit(0.0)).alias("first_sum"),
        F.coalesce(F.sum(F.when(cal & ~F.col("_first"), s_col)), F.lit(0.0)).alias("rest_cal_sum"),
        F.coalesce(F.sum(F.when(F.col("_h"), s_col)), F.lit(0.0)).alias("hold_sum"),
        F.coalesce(F.sum(F.when(F.col("_k") == 1, r_col)), F.lit(0)).alias("_after"),
        F.sum("_dup").alias("_dup"),
        F.max((F.col("_k") < 2).cast("int")).alias("_buys"),
    )
    from pyspark import StorageLevel

    agg = agg.persist(StorageLevel.MEMORY_AND_DISK)
    late = (F.col("n_cal") == 0) & (F.col("n_hold") > 0)
    counts = agg.select(
        F.sum((F.col("n_cal") > 0).cast("long")).alias("customers"),
        F.sum("rows").alias("rows"),
        F.sum(late.cast("long")).alias("late"),
        F.sum(F.when(late, F.col("rows"))).alias("late_rows"),
        F.sum("_after").alias("after"),
        F.sum("_dup").alias("dup"),
        F.sum((F.col("_buys") == 0).cast("long")).alias("returns_only"),
        F.max(F.abs(F.col("first_sum") + F.col("rest_cal_sum") + F.col("hold_sum"))).alias("largest"),
    ).first().asDict()
    if counts["largest"] is not None and not np.isfinite(counts["largest"]):
        raise ClvInputError(f"{source}: column {amount_col!r}: the purchases of a customer sum beyond the "
                            "floating-point range (about 1.8e308); check the amounts' unit")
    n_dup = int(counts["dup"] or 0)
    n_after = int(counts["after"] or 0)
    n_customers_returns_only = int(counts["returns_only"] or 0)

    acc = ReadAccounting()
    acc.n_transactions = n_rows
    acc.n_rows_missing_customer = n_no_id
    acc.n_duplicate_rows = n_dup
    acc.n_duplicate_rows_dropped = n_dup if duplicates == "drop" else 0
    acc.n_return_rows = n_returns
    acc.return_value = float(row["return_value"] or 0.0)
    acc.n_customers_returns_only = n_customers_returns_only
    n_late = int(counts["late"] or 0) if plan.split else 0
    late_rows = int(counts["late_rows"] or 0) if plan.split else 0
    from ..rfm import accounting, returns_matching_attrs

    attrs = accounting(plan, acc, {}, n_customers=int(counts["customers"] or 0),
                       n_used_rows=int(counts["rows"] or 0), late_rows=late_rows, n_late=n_late, n_after=n_after,
                       returns=returns, duplicates=duplicates, missing_customer=missing_customer)
    if has_amount:
        attrs.update(returns_matching_attrs(_returns_matching(rows, plan) if n_returns else {}))
    rfm = agg.mapInPandas(_assemble_frames(plan, has_amount), _rfm_schema(agg.schema[_CUSTOMER], plan, has_amount))
    rfm = rfm.persist(StorageLevel.MEMORY_AND_DISK)  # the statistics and the predictions read it
    return SparkSummary(rfm=rfm, plan=plan, attrs=attrs, has_amount=has_amount)


def _returns_matching(rows, plan) -> dict:
    """The local engine's :func:`clv_forecast.rfm._returns_matching` on Spark: the returns that match a purchase
    of the same customer at or before them in the same period, and the purchases they cancel in full. ``rows``
    are the distinct rows with their weight (copies); one group by (customer, instant), a window over the
    customer's instants (the rows are clustered by customer already) and one aggregation."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    tick, amount, weight = F.col(_TICK), F.col(_AMOUNT), F.col(_ROWS)
    buy, back = amount >= 0, amount < 0
    instants = rows.groupBy(_CUSTOMER, _TICK).agg(
        F.sum(F.when(buy, amount * weight)).alias("_buy"), F.sum(F.when(buy, weight)).alias("_buy_rows"),
        F.sum(F.when(back & (tick <= F.lit(plan.obs_last)), amount * weight)).alias("_ret"),
        F.sum(F.when(back & (tick <= F.lit(plan.obs_last)), weight)).alias("_ret_rows"))
    period = (tick > F.lit(plan.cal_last)) if plan.split else F.lit(False)
    window = (Window.partitionBy(_CUSTOMER, period).orderBy(_TICK)
              .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    instants = instants.withColumn("_m", F.last(F.when(F.col("_buy_rows") > 0, tick), ignorenulls=True).over(window))
    matched = instants.filter(F.col("_ret_rows").isNotNull() & F.col("_m").isNotNull())
    per_purchase = matched.groupBy(_CUSTOMER, "_m").agg(F.sum("_ret").alias("_back"))
    bought = instants.select(_CUSTOMER, F.col(_TICK).alias("_m"), "_buy", "_buy_rows")
    cancelled = per_purchase.join(bought, [_CUSTOMER, "_m"]).filter(F.col("_buy") + F.col("_back") <= 0)
    a = matched.agg(F.sum("_ret_rows").alias("n"), F.sum("_ret").alias("v")).first()
    b = cancelled.agg(F.sum("_buy_rows").alias("n"), F.sum("_buy").alias("v")).first()
    return {"n_returns_netted": int(a["n"] or 0), "return_value_netted": float(a["v"] or 0.0),
            "n_purchases_fully_returned": int(b["n"] or 0), "return_cancelled_purchase_value": float(b["v"] or 0.0)}


def _rfm_schema(id_field, plan, has_amount: bool):
    from pyspark.sql.types import DoubleType, LongType, StructField, StructType

    fields = [StructField(_CUSTOMER, id_field.dataType, True), StructField("frequency", LongType(), False),
              StructField("recency", DoubleType(), False), StructField("T", DoubleType(), False)]
    if has_amount:
        fields.append(StructField("monetary_value", DoubleType(), False))
    if plan.split:
        fields.append(StructField("frequency_holdout", LongType(), False))
        if has_amount:
            fields.append(StructField("monetary_value_holdout", DoubleType(), False))
        fields.append(StructField("duration_holdout", DoubleType(), False))
    return StructType(fields)


def _assemble_frames(plan, has_amount: bool):
    """The function given to ``mapInPandas``: :func:`clv_forecast.rfm.assemble` on each batch."""

    def assemble_batches(frames):
        import pandas as pd

        from ..rfm import assemble

        for frame in frames:
            if len(frame) == 0:
                continue
            columns, keep = assemble(plan, frame, has_amount=has_amount)
            out = pd.DataFrame({_CUSTOMER: frame[_CUSTOMER].to_numpy(), **columns})
            yield out[keep] if not keep.all() else out

    return assemble_batches


def fit_spark(summary: SparkSummary, model=None, *, penalizer: float | None = None,
              spend_penalizer: float | None = None, strict_spend: bool | None = None, statistics: dict | None = None):
    """``model`` (a :class:`~clv_forecast.model.ClvModel`, default ``ClvModel()``) fitted on the compressed
    statistics of a Spark summary, grouped by its models' ``inputs`` (the same likelihoods on unique rows
    with counts: the same model as fitting every customer). ``penalizer``, ``spend_penalizer`` and
    ``strict_spend`` are the deprecated aliases of ``purchases__penalizer``, ``spend__penalizer`` and
    ``spend__strict`` (kept one release)."""
    from ..model import ClvModel

    model = ClvModel() if model is None else model
    aliases = {k: v for k, v in (("penalizer", penalizer), ("spend_penalizer", spend_penalizer),
                                 ("strict_spend", strict_spend)) if v is not None}
    if aliases:
        model.set_params(**aliases)
    stats = summary.statistics(model.inputs()) if statistics is None else statistics
    split = "holdout" in stats
    return model.fit_statistics(stats["purchases"], stats["spend"], time_unit=summary.time_unit,
                                training=summary.attrs, holdout=stats["holdout"] if split else None,
                                holdout_duration=summary.holdout_duration() if split else None)


def predict_spark(model, rfm_sdf, value: dict, *, time_unit):
    """The per-customer table of the pipeline (the RFM columns, then expected purchases, P(alive),
    expected spend, CLV and its interval), computed partition by partition with the same function as
    on one machine (:func:`clv_forecast.engines.tables.clv_table`)."""
    import json

    from pyspark.sql.types import DoubleType, StructField, StructType

    from ..engines.tables import clv_table

    model_dict = json.loads(model.to_json())  # the saved file's form, rebuilt on the executors
    unit = str(time_unit)
    # the score columns, from the same function on a one-row sample (no data needed)
    import pandas as pd

    sample = pd.DataFrame({"frequency": [1], "recency": [1.0], "T": [2.0], "monetary_value": [1.0]})
    sample.attrs["time_unit"] = unit
    score_columns = list(clv_table(model, sample, value).columns)
    from ..engines.tables import table_metadata

    # the CLV settings travel with the clv column (Spark writes a field's metadata into the Parquet footer)
    meta = {k.decode(): v.decode() for k, v in table_metadata({"value": value}, unit).items()}
    schema = StructType(list(rfm_sdf.schema.fields) + [StructField(c, DoubleType(), True,
                                                                   meta if c == "clv" else None)
                                                       for c in score_columns])

    from .. import estimators

    registered = estimators.registered()

    def predict(frames):
        from ..model import ClvModel

        estimators.restore(registered)  # models registered on the driver (not modules of the package)
        worker_model = ClvModel.from_dict(model_dict, source="model")
        for frame in frames:
            if len(frame) == 0:
                continue
            frame.attrs["time_unit"] = unit
            scores = clv_table(worker_model, frame, value)
            out = frame.copy()
            for name in score_columns:
                out[name] = scores[name].to_numpy(dtype="float64")
            yield out

    return rfm_sdf.mapInPandas(predict, schema)


def portfolio_band_spark(model, rfm_sdf, value: dict, *, time_unit) -> dict | None:
    """The band of the totals of the expected purchases and the CLV over the customers of ``rfm_sdf``
    (:meth:`clv_forecast.uncertainty.Portfolio.band`), or None without an interval or a spend model: each partition
    adds its customers to a :class:`~clv_forecast.uncertainty.Portfolio` with the same function as on one machine
    (:func:`clv_forecast.engines.tables.clv_table`) and returns its state, one row; the driver merges them."""
    import json

    from ..engines.tables import clv_table

    if not value.get("interval") or model.spend_ is None:
        return None
    model_dict = json.loads(model.to_json())
    unit = str(time_unit)
    from .. import estimators

    registered = estimators.registered()

    def states(frames):
        import pandas as pd

        from ..model import ClvModel
        from ..uncertainty import Portfolio

        estimators.restore(registered)
        worker_model = ClvModel.from_dict(model_dict, source="model")
        portfolio = Portfolio()
        for frame in frames:
            if len(frame):
                frame.attrs["time_unit"] = unit
                clv_table(worker_model, frame, value, portfolio=portfolio)
        if portfolio.customers:
            yield pd.DataFrame({"state": [json.dumps(portfolio.state())]})

    from ..uncertainty import Portfolio

    merged = Portfolio()
    for row in rfm_sdf.mapInPandas(states, "state string").collect():
        merged.merge(json.loads(row["state"]))
    return merged.band(float(value["interval"])) if merged.customers else None


def value_coverage_spark(session, path) -> dict:
    """:func:`clv_forecast.engines.tables.value_coverage` of a predictions directory, as one Spark aggregation."""
    from .session import spark_path

    return value_coverage_frame(session.read.parquet(spark_path(path)))


def value_coverage_frame(table) -> dict:
    """:func:`clv_forecast.engines.tables.value_coverage` of a per-customer Spark DataFrame, as one
    aggregation (with ``n_predictions``, its row count); {} without a ``clv`` column."""
    from pyspark.sql import functions as F

    if "clv" not in table.columns:
        return {}
    from ..engines.tables import SCORE_COLUMNS

    def is_finite(column):
        return ~(F.isnan(column) | column.isNull() | (F.abs(column) == float("inf")))

    clv = F.col("clv")
    finite = is_finite(clv)
    spend = F.col("expected_spend") if "expected_spend" in table.columns else clv
    nan_spend, inf_spend = F.isnan(spend), F.abs(spend) == float("inf")
    others = F.lit(False)
    for name in SCORE_COLUMNS:
        if name in table.columns and name != "clv":
            others = others | ~is_finite(F.col(name))
    row = table.select(
        F.sum(F.when(finite, clv)).alias("clv_total"),
        F.sum(finite.cast("long")).alias("clv_customers"),
        F.sum((~finite).cast("long")).alias("clv_missing"),
        F.sum(nan_spend.cast("long")).alias("clv_missing_nonpositive_spend"),
        F.sum(inf_spend.cast("long")).alias("clv_missing_infinite_spend"),
        F.sum((~finite & ~F.coalesce(nan_spend, F.lit(False)) & ~F.coalesce(inf_spend, F.lit(False)))
              .cast("long")).alias("clv_missing_other"),
        F.sum((finite & others).cast("long")).alias("scores_nonfinite"),
        F.count("*").alias("n_predictions"),
    ).first().asDict()
    return {k: (float(v or 0.0) if k == "clv_total" else int(v or 0)) for k, v in row.items()}
