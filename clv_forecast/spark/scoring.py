"""Scoring an RFM table held in a Spark DataFrame (pyspark, an optional extra: ``clv-forecast[spark]``).

:func:`score_spark` scores each partition with the same vectorised code as the local path
(:mod:`clv_forecast.scoring`): every row gets a verdict from the same RFM rules
(:func:`clv_forecast.estimators._data.rfm_verdict`, texts from :func:`verdict_reasons`), the valid rows are
scored with :meth:`ClvModel.clv` (with ``interval``, ``clv_lower`` and ``clv_upper`` as in
:func:`~clv_forecast.scoring.score_file`), the invalid ones keep their reason and null numbers.

:func:`score_spark_to_parquet` is the Spark counterpart of :func:`~clv_forecast.scoring.score_file`:
Parquet in (a file or a directory of Parquet files), the scores and the rejects out as Parquet
directories published atomically, the rows read / scored / rejected counted with one aggregation,
:class:`~clv_forecast.scoring.TooManyRejectsError` over ``max_reject_share``. ``clv-forecast score
--engine spark`` calls it through :func:`score_command`.

The model is loaded once on the driver (:func:`clv_forecast.scoring.load_scoring_model`: a ClvModel,
a model JSON file or an MLflow URI) and sent to the executors as its JSON dict in the function's
closure (a few kB; works with classic Spark and Spark Connect alike); each Python worker rebuilds it
with :meth:`ClvModel.from_dict` once per partition.

pyspark is imported only inside the functions: importing this module does not need it.

Differences with :func:`clv_forecast.scoring.score_file`:

* **Duplicate ids**: Spark rows have no order, so "the later occurrence" (which the local path
  rejects, scoring the first) is undefined: here *every* row of an id that occurs more than once is
  rejected with reason ``duplicate id``. The ids are counted with a window over the id (one shuffle;
  no id is collected on the driver); text ids are compared with surrounding whitespace trimmed, as
  the local path compares them, and exactly (no hashing).
* **Which row**: Spark has no row numbers. A reject is identified by its input file
  (``_metadata.file_path``) and its 1-based row within that file (``_metadata.row_index + 1``): for
  a single input file, the ``row`` of the local rejects file.
* **Outputs** are Parquet directories (part files), written by Spark under a temporary name next to
  the target and renamed at the end; they must be on the local (or a mounted, shared) file system,
  since the renames are the driver's.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from .._score_batch import RFM_COLUMNS  # the one batch rule set, shared with the local scorer
from ..errors import ClvInputError
from ..ids import spark_ids
from ..units import DEFAULT_DISCOUNT_RATE, DEFAULT_HORIZON, DEFAULT_MARGIN, DEFAULT_STEP
from .session import (_is_uri, _publish, _require_pyspark, _spark_error, _temporary, cancel_jobs, check_parquet_path,
                      check_replaceable, coalesce_cached, spark_path, spark_session)

__all__ = ["score_spark", "score_spark_to_parquet", "score_command", "SCORE_COLUMNS"]

SCORE_COLUMNS = ("expected_purchases", "p_alive", "expected_spend", "clv")


from ..uncertainty import INTERVAL_COLUMNS  # noqa: E402 (every forecast's bounds)


_DUPLICATE = "__clv_duplicate_id"  # the window's flag, given to the scoring function, not returned


#: the ``reject_reason`` of a partition's band row (:func:`_score_frames` with ``band``): this prefix, then the
#: partition's :meth:`clv_forecast.uncertainty.Portfolio.state` as JSON. No reason of a real row starts with it.
BAND_MARKER = "\x00band:"


def _score_frames(model_dict: dict, id_col: str, time_unit, clv_args: dict, keep: tuple = (), band: bool = False):
    """The function given to ``mapInPandas``: rebuilds the model once per iterator (partition). With ``band`` (and
    an interval) each partition adds its scored rows to a :class:`clv_forecast.uncertainty.Portfolio` and ends with
    one more row: null id and numbers, ``reject_reason`` :data:`BAND_MARKER` + the accumulator's state, which
    :func:`score_spark_to_parquet` merges on the driver into the band of the totals (in the same pass as the
    scores) and drops from every output."""
    from .. import estimators

    registered = estimators.registered()

    def score(frames):
        import pandas as pd

        from .._score_batch import score_batch
        from ..ids import pandas_ids
        from ..model import ClvModel

        names = SCORE_COLUMNS + (INTERVAL_COLUMNS if clv_args.get("interval") is not None else ())

        estimators.restore(registered)  # models registered on the driver (not modules of the package)
        model = ClvModel.from_dict(model_dict, source="model")
        args, portfolio = clv_args, None
        if band and clv_args.get("interval") is not None:
            from ..uncertainty import Portfolio

            portfolio = Portfolio()
            args = {**clv_args, "portfolio": portfolio}
        for frame in frames:
            n = len(frame)
            if n == 0:
                continue
            ids = frame[id_col]
            present, control = pandas_ids(ids)  # the one id rule (clv_forecast.ids), as in score_file
            duplicate = (frame[_DUPLICATE].to_numpy(dtype=bool, na_value=False) if _DUPLICATE in frame.columns
                         else None)
            # the one batch rule set (clv_forecast._score_batch), as in score_file
            result = score_batch(model, {name: frame[name] for name in RFM_COLUMNS}, n, present=present,
                                 control=control, duplicate=duplicate, time_unit=time_unit, clv_args=args)
            reason = result.reason
            out = {name: np.full(n, np.nan) for name in names}
            if result.scored.size:
                for name in names:
                    out[name][result.scored] = result.scores[name].to_numpy(dtype=np.float64)
            reason[reason == ""] = None
            yield pd.DataFrame({id_col: ids.to_numpy(), **{k: frame[k].to_numpy() for k in keep}, **out,
                                "reject_reason": reason})
        if portfolio is not None and portfolio.customers:
            state = BAND_MARKER + json.dumps(portfolio.state())
            yield pd.DataFrame({id_col: pd.Series([None], dtype=object),
                                **{k: pd.Series([None], dtype=object) for k in keep},
                                **{name: [np.nan] for name in names}, "reject_reason": [state]})

    return score


def _duplicate_flags(sdf, id_col: str):
    """``sdf`` with the column :data:`_DUPLICATE`: true on every row whose (present) id occurs more than
    once. A window count over the id: one shuffle, nothing collected. Text ids are compared trimmed
    (a blank id is a missing id, never a duplicate); a NaN id is missing too."""
    from pyspark.sql import Window, functions as F
    from pyspark.sql.types import DoubleType, FloatType, StringType

    column, dtype = F.col(id_col), sdf.schema[id_col].dataType
    if isinstance(dtype, StringType):  # the one id rule (clv_forecast.ids); an id with a control character
        key, control = spark_ids(column)  # is rejected for it, never a duplicate
        key = F.when(~control, key)
    elif isinstance(dtype, (DoubleType, FloatType)):
        key = F.when(~F.isnan(column), column)
    else:
        key = column
    # the window's shuffle has spark.sql.shuffle.partitions (200 by default), each a Python task of fixed cost
    # downstream: adaptive execution coalesces them, in a plan then cached too (session.coalesce_cached)
    count = F.count(F.lit(1)).over(Window.partitionBy(key))
    return sdf.withColumn(_DUPLICATE, key.isNotNull() & (count > 1))


def score_spark(model, sdf, *, horizon=DEFAULT_HORIZON, discount_rate=DEFAULT_DISCOUNT_RATE, step=DEFAULT_STEP,
                margin=DEFAULT_MARGIN, interval: float | None = None, interval_method: str = "delta",
                id_col: str = "customer_id", time_unit=None, reject_duplicates: bool = True, keep=(),
                allow_unreliable: bool = False, _band: bool = False):
    """Score a Spark DataFrame of RFM rows; returns a (lazy) Spark DataFrame.

    ``model``: a ClvModel, a model JSON file or an MLflow URI (loaded on the driver).
    ``sdf``: ``id_col``, frequency, recency, T and monetary_value (numbers, or text parsed as numbers;
    recency and T in the model's time unit unless ``time_unit`` names theirs: then converted).
    The result has ``id_col`` (its input type), the ``keep`` columns unchanged, ``expected_purchases,
    p_alive, expected_spend, clv`` (doubles; with ``interval``, e.g. 0.9, also the bounds of every forecast,
    :data:`clv_forecast.uncertainty.INTERVAL_COLUMNS`, the same numbers as
    :func:`~clv_forecast.scoring.score_file` gives; the band of the totals is computed by
    :func:`score_spark_to_parquet`) and
    ``reject_reason``: null for a scored row; for a rejected row the reason (the RFM rule it breaks,
    ``<column> not numeric``, ``duplicate id`` or ``missing id``) and null numbers. One output row per
    input row; ``horizon``, ``discount_rate``, ``step`` and ``margin`` as in :meth:`ClvModel.clv`.

    Duplicate ids: every row of an id that occurs more than once is rejected (see the module
    docstring); ``reject_duplicates=False`` skips the check (and its shuffle) when the ids are known
    to be unique. An unreliable model is refused unless ``allow_unreliable=True`` (as in
    :func:`~clv_forecast.scoring.score_file`). The CLV settings are recorded in the ``clv`` column's
    metadata (``clv_forecast.<setting>``; Spark writes it into the Parquet footer).
    """
    _require_pyspark()
    import pandas as pd
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    from ..scoring import scoring_setup

    clv_model, time_unit = scoring_setup(model, time_unit, allow_unreliable=allow_unreliable)
    keep = tuple(keep)
    from ..scoring import check_column_type, missing_columns_error

    missing = missing_columns_error(None, sdf.columns, id_col, (*RFM_COLUMNS, *keep))
    if missing is not None:
        raise missing

    for name in (id_col, *RFM_COLUMNS):
        check_column_type("the input", name, sdf.schema[name].dataType.simpleString(), id_column=name == id_col)
    clv_args = dict(horizon=horizon, discount_rate=discount_rate, step=step, margin=float(margin),
                    interval=interval, interval_method=interval_method)
    # the settings are checked here, on the driver, by scoring one valid row: a bad horizon, interval
    # or a model without covariance (for an interval) is a one-line error, not a failed Spark task
    clv_model.clv(pd.DataFrame({"frequency": [1.0], "recency": [1.0], "T": [2.0], "monetary_value": [1.0]}),
                  time_unit=time_unit, **clv_args)
    # the JSON form save() writes: plain values, what from_dict reads back on the executors
    model_dict = json.loads(clv_model.to_json())
    names = SCORE_COLUMNS + (INTERVAL_COLUMNS if interval is not None else ())
    from ..units import value_settings

    # the CLV settings travel with the clv column (Spark writes a field's metadata into the Parquet footer)
    meta = {f"clv_forecast.{k}": v
            for k, v in value_settings(horizon, discount_rate, step, margin, interval, interval_method).items()}
    band = _band and interval is not None
    given = [sdf.schema[id_col]] + [sdf.schema[c] for c in keep]
    if band:  # the partitions' band rows have null ids and keep columns
        given = [StructField(f.name, f.dataType, True, f.metadata) for f in given]
    schema = StructType(given
                        + [StructField(name, DoubleType(), True, meta if name == "clv" else None) for name in names]
                        + [StructField("reject_reason", StringType(), True)])
    fn = _score_frames(model_dict, id_col, time_unit, clv_args, keep, band=band)
    rows = sdf.select(id_col, *RFM_COLUMNS, *keep)
    if reject_duplicates:
        rows = _duplicate_flags(rows, id_col)
    return rows.mapInPandas(fn, schema)


SOURCE_FILE, SOURCE_ROW = "__clv_source_file", "__clv_source_row"


def score_spark_to_parquet(model, input_path, output_path, *, spark=None, rejects_path=None,
                           max_reject_share: float = 0.01, horizon=DEFAULT_HORIZON,
                           discount_rate=DEFAULT_DISCOUNT_RATE, step=DEFAULT_STEP, margin=DEFAULT_MARGIN,
                           interval: float | None = None, interval_method: str = "delta",
                           id_col: str = "customer_id", time_unit=None, allow_unreliable: bool = False):
    """Score a Parquet RFM table with Spark into a Parquet directory; the Spark :func:`score_file`.

    ``input_path``: a Parquet file or a directory of Parquet files (a local path, or a URI Spark reads).
    ``output_path``: the directory of the scores (``id_col``, ``expected_purchases, p_alive,
    expected_spend, clv`` (+ ``clv_lower``, ``clv_upper`` with ``interval``)), one row per scored row.
    ``rejects_path`` (default ``<output>.rejects``): a Parquet directory of the rejected rows, ``file``
    and ``row`` (the input file and the 1-based row in it), ``customer_id`` (the id as text) and
    ``reason``, sorted by file and row. ``spark``: the session (default: the active one, else a new one).

    The scored DataFrame is persisted (memory, then disk) so that the rows are scored once: one
    aggregation counts them by reject reason, then the rejects and the scores are written from it.
    Both are written under temporary names next to their targets and renamed at the end (the rejects
    first). More rejects than ``max_reject_share`` of the rows read raises
    :class:`~clv_forecast.scoring.TooManyRejectsError` with the :class:`ScoreReport`; the scores are
    then not published, the rejects are (to say why), as with :func:`score_file`. An existing target
    is replaced only if it is an earlier Spark output (``_SUCCESS``) or empty.
    """
    _require_pyspark()
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from ..scoring import ScoreReport, TooManyRejectsError, rejects_id_column

    started = time.perf_counter()
    input_text = str(input_path)
    output_path = Path(output_path)
    if _is_uri(output_path) or (rejects_path is not None and _is_uri(rejects_path)):
        raise ClvInputError(f"{output_path}: the outputs are renamed into place by the driver: give local (or "
                            "mounted) paths, not URIs", argument="output_path", value=str(output_path))
    from ..scoring import score_paths

    # the one check of the files (same file, an output holding or inside the input directory)
    rejects_path = score_paths(model, input_text, output_path, rejects_path, default_rejects=".rejects")
    if not (0 <= max_reject_share <= 1):
        raise ClvInputError("must be a share between 0 and 1", argument="max_reject_share", value=max_reject_share)
    check_parquet_path(input_text, argument="input_path")
    if not _is_uri(input_text):
        input_text = spark_path(input_text)
    check_replaceable(output_path, "the scores", "output_path")
    check_replaceable(rejects_path, "the rejects", "rejects_path")
    from ..scoring import check_reliable_for_scoring, scoring_setup
    from ..units import value_settings

    clv_model, time_unit = scoring_setup(model, time_unit, allow_unreliable=None)  # fails before Spark starts
    problems = check_reliable_for_scoring(clv_model, allow_unreliable)
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    from pyspark.errors import AnalysisException

    try:
        sdf = spark.read.parquet(input_text)
        sdf = sdf.select("*", F.col("_metadata.file_path").alias(SOURCE_FILE),
                         (F.col("_metadata.row_index") + 1).alias(SOURCE_ROW))
    except AnalysisException as exc:
        raise ClvInputError(f"{input_path}: cannot read Parquet ({_spark_error(exc)})",
                            argument="input_path", value=str(input_path)) from None
    scored = score_spark(clv_model, sdf, horizon=horizon, discount_rate=discount_rate, step=step, margin=margin,
                         interval=interval, interval_method=interval_method, id_col=id_col, time_unit=time_unit,
                         keep=(SOURCE_FILE, SOURCE_ROW),
                         allow_unreliable=None, _band=True)  # (checked above)
    names = SCORE_COLUMNS + (INTERVAL_COLUMNS if interval is not None else ())
    reason = F.col("reject_reason")
    temporaries = []
    interrupted = False
    restore = coalesce_cached(spark)  # the cached scores in as many partitions as they need, not 200
    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        finite = F.col("clv").between(-1.7976931348623157e308, 1.7976931348623157e308)  # not NaN, not +-inf
        grouped = scored.groupBy("reject_reason").agg(F.count(F.lit(1)).alias("count"),
                                                      F.sum(F.when(finite, F.col("clv"))).alias("clv_total")).collect()
        portfolio = None
        if interval is not None:  # the partitions' band rows, merged (BAND_MARKER)
            from ..uncertainty import Portfolio

            portfolio = Portfolio()
            for row in grouped:
                if (row["reject_reason"] or "").startswith(BAND_MARKER):
                    portfolio.merge(json.loads(row["reject_reason"][len(BAND_MARKER):]))
        grouped = [row for row in grouped if not (row["reject_reason"] or "").startswith(BAND_MARKER)]
        counts = {row["reject_reason"]: int(row["count"]) for row in grouped}
        clv_total = float(next((row["clv_total"] or 0.0 for row in grouped if row["reject_reason"] is None), 0.0))
        read = sum(counts.values())
        good = counts.pop(None, 0)
        reasons = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        rejected = read - good

        def report(published: bool) -> ScoreReport:
            return ScoreReport(read=read, scored=good, rejected=rejected, reasons=reasons,
                               seconds=time.perf_counter() - started,
                               output=output_path if published else None, rejects=rejects_path,
                               clv_total=clv_total,
                               settings=value_settings(horizon, discount_rate, step, margin, interval,
                                                       interval_method),
                               portfolio=None if portfolio is None or not portfolio.customers
                               else portfolio.band(float(interval)),
                               model_problems=problems)

        rejects_tmp = _temporary(rejects_path)
        temporaries.append(rejects_tmp)
        rejects_path.parent.mkdir(parents=True, exist_ok=True)
        (scored.filter(reason.isNotNull() & ~reason.startswith(BAND_MARKER))
         .select(F.col(SOURCE_FILE).alias("file"), F.col(SOURCE_ROW).alias("row"),
                 F.col(id_col).cast("string").alias(rejects_id_column(id_col)), reason.alias("reason"))
         .orderBy("file", "row")
         .write.mode("error").parquet(spark_path(rejects_tmp)))
        share = rejected / read if read else 0.0
        if share > max_reject_share:
            _publish(rejects_tmp, rejects_path)
            raise TooManyRejectsError(f"{input_path}: {rejected} of {read} rows rejected ({share:.4%}), more than "
                                      f"max_reject_share {max_reject_share:.4%}; output not written; rejected rows "
                                      f"and reasons in {rejects_path}", report(False))
        output_tmp = _temporary(output_path)
        temporaries.append(output_tmp)
        output_path.parent.mkdir(parents=True, exist_ok=True)
        (scored.filter(reason.isNull()).select(id_col, *names)
         .write.mode("error").parquet(spark_path(output_tmp)))
        _publish(rejects_tmp, rejects_path)
        _publish(output_tmp, output_path)
        return report(True)
    except BaseException:
        cancel_jobs(spark)  # interrupted (Ctrl-C, SIGTERM): stop the writers before removing their directories
        interrupted = True
        raise
    finally:
        try:
            scored.unpersist()
            restore()
        except Exception:  # noqa: BLE001 - after an interrupt py4j may fail: the interrupt is what is reported
            if not interrupted:
                raise
        for tmp in temporaries:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def score_command(model, input_path, output_path, *, spark_master: str | None = None, spark_conf=(),
                  spark_remote: str | None = None, transactions=None, read: dict | None = None, **args):
    """``clv-forecast score --engine spark``: checks the paths (Parquet in, a directory out), starts a session
    (:func:`spark_session`: classic on ``spark_master``, default ``local[*]``, or Spark Connect with
    ``spark_remote``), runs :func:`score_spark_to_parquet` and stops the session.

    With ``transactions`` (a Parquet log) instead of ``input_path``: the log is summarised on Spark with
    the model's settings (:func:`clv_forecast.scoring.summary_settings`, ``read``: the reading options
    and ``observation_end``), the summary written to a temporary Parquet directory beside the output
    and scored from there; the report carries the summary's accounting."""
    from ..scoring import score_paths

    # before Spark starts: no output may replace the input, the model or the other output
    score_paths(model, input_path if transactions is None else transactions, output_path, args.get("rejects_path"),
                input_role="{{input_path}}" if transactions is None else "{{transactions}}", default_rejects=".rejects")
    if transactions is not None:
        check_parquet_path(transactions, argument="transactions")
    for argument, path, what in (("input_path", input_path, "reads Parquet (a .parquet file or a directory of "
                                                            "Parquet files)"),
                                 ("output_path", output_path, "writes a directory of Parquet files"),
                                 ("rejects_path", args.get("rejects_path"), "writes a directory of Parquet files")):
        if path is not None and str(path).lower().endswith((".csv", ".csv.gz", ".txt")):
            raise ClvInputError(f"the Spark engine {what}, not CSV; use --engine local for CSV",
                                argument=argument, value=str(path))
    try:
        _require_pyspark()
    except ImportError as exc:
        raise ClvInputError(f"--engine spark: {exc}") from None
    from pyspark.sql import SparkSession

    # called from a program with its own classic session: keep it running (a Connect session is always a new one)
    running = None if spark_remote is not None else SparkSession.getActiveSession()
    spark = spark_session(spark_master, spark_conf, remote=spark_remote)
    failed = False
    try:
        if transactions is None:
            return score_spark_to_parquet(model, input_path, output_path, spark=spark, **args)
        return _score_log(spark, model, transactions, output_path, dict(read or {}), args)
    except BaseException:
        failed = True
        raise
    finally:
        if running is None:
            try:
                spark.stop()
            except Exception:  # noqa: BLE001 - an interrupt can leave py4j unusable: report the interrupt
                if not failed:
                    raise


def _score_log(spark, model, transactions, output_path, read: dict, args: dict):
    import shutil

    from .._io import temporary_path
    from ..engines.spark import LOCAL_ONLY
    from ..scoring import scoring_setup, summary_settings
    from .session import read_parquet
    from .summary import summarize_spark

    for key, default in LOCAL_ONLY.items():
        if read.pop(key, default) != default:
            raise ClvInputError("not available with the Spark engine (Parquet columns are typed: compute it upstream)",
                                argument=key)
    # an unreliable model is refused (or warned about) before the summary's work, once
    clv_model, _ = scoring_setup(model, allow_unreliable=args.get("allow_unreliable", False))
    args = {**args, "allow_unreliable": None}  # checked
    summary = summarize_spark(read_parquet(spark, transactions), source=str(transactions), **summary_settings(clv_model),
                              **read)
    output_path = Path(output_path)
    table = temporary_path(output_path, ".summary")
    try:
        summary.rfm.write.parquet(spark_path(table))
        report = score_spark_to_parquet(clv_model, table, output_path, spark=spark, **args)
    finally:
        shutil.rmtree(table, ignore_errors=True)
    report.summary = dict(summary.attrs)
    report.time_unit = str(clv_model.time_unit_)
    return report
