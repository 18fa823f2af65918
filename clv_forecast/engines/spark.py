"""The Spark engine (pyspark, the optional extra ``clv-forecast[spark]``; imported only when it runs).

The summary runs on the executors (:func:`clv_forecast.spark.summarize_spark`: the local plan, kernel on
Spark, the local assemble), the fit on the driver on the compressed statistics, the holdout check from
them, the per-customer table on the executors (:func:`clv_forecast.spark.summary.predict_spark`, the
shared :func:`~clv_forecast.engines.tables.clv_table` per partition) written as a Parquet directory, and
scoring with the shared batch rules per partition (:func:`clv_forecast.spark.scoring.score_command`).
The report's analysis needs every customer on one machine: refused here.
"""

from __future__ import annotations

from typing import Any

from ..errors import ClvInputError
from . import register
from .base import Engine

__all__ = ["SparkEngine", "LOCAL_ONLY"]

#: the reading options of a CSV log that a typed Parquet source does not take, with their defaults
LOCAL_ONLY = {"quantity_col": None, "price_col": None, "date_format": None, "encoding": "utf-8",
              "decimal_comma": False}


@register
class SparkEngine(Engine):
    """Apache Spark: the summary and the per-customer table are Spark DataFrames (not :attr:`in_memory`)."""

    name = "spark"
    in_memory = False
    score_options = ("spark_master", "spark_conf", "spark_remote")

    def check(self, spec: dict, *, save: bool, analyse: bool | None) -> None:
        data, out = spec["data"], spec["output"]
        for key, default in LOCAL_ONLY.items():
            if data.get(key, default) != default:
                raise ClvInputError("not available with the Spark engine (Parquet columns are typed: compute it "
                                    "upstream), or use the local engine", argument=key, value=data[key])
        if analyse or (save and out.get("report")):
            raise ClvInputError("the report compares every customer on one machine: not available with the Spark "
                                "engine; write the predictions and report on a sample, or use the local engine",
                                argument="report", value=out.get("report"))
        if not isinstance(data["source"], str) or data["source"] == "cdnow_sample":
            raise ClvInputError("the Spark engine reads Parquet files; export the sample first", argument="source",
                                value=data["source"])

    def check_predictions_path(self, path) -> None:
        """A directory of Parquet files: a file, or a folder of other things, is refused now, not after the job."""
        from pathlib import Path

        from .._paths import check_writable
        from ..spark.session import check_replaceable  # (no pyspark import)

        path = Path(path)
        check_replaceable(path, "the per-customer table (a directory of Parquet files)", "predictions")
        check_writable(path / "part.parquet", "the per-customer table", "part.parquet")

    def open(self, source, data: dict, timings: dict) -> Any:
        import time

        from .. import spark as sps

        sps.check_parquet_path(source, argument="source")
        start = time.perf_counter()
        session = sps.spark_session(data.get("spark_master"), app_name="clv-forecast", remote=data.get("spark_remote"))
        sdf = sps.read_parquet(session, source)
        timings["spark_start"] = time.perf_counter() - start
        return {"session": session, "frame": sdf, "source": str(source)}

    def summarize(self, source, options: dict, *, calibration_end):
        from .. import spark as sps

        sps.quiet_pyspark_warnings()
        options = {k: v for k, v in options.items() if k not in LOCAL_ONLY}
        return sps.summarize_spark(source["frame"], calibration_end=calibration_end, source=source["source"],
                                   **options)

    def statistics(self, summary, inputs: dict | None = None) -> dict:
        return summary.statistics(inputs)

    def time_unit(self, summary) -> str:
        return summary.time_unit

    def holdout_duration(self, summary) -> float:
        return summary.holdout_duration()

    def predict(self, model, summary, value: dict):
        """The per-customer table, persisted (memory, then disk): its coverage is counted and it is written
        from one computation."""
        from pyspark import StorageLevel

        from ..spark.summary import portfolio_band_spark, predict_spark

        table = predict_spark(model, summary.rfm, value, time_unit=summary.time_unit)
        # with an interval, the band of the totals: one more pass over the customers (a Spark DataFrame carries
        # no attrs: kept here for value_coverage, as the local engine keeps it in the table's attrs)
        self._band = portfolio_band_spark(model, summary.rfm, value, time_unit=summary.time_unit)
        return table.persist(StorageLevel.MEMORY_AND_DISK)

    def value_coverage(self, table) -> dict:
        from .tables import band_metrics
        from ..spark.summary import value_coverage_frame

        return {**band_metrics(getattr(self, "_band", None)), **value_coverage_frame(table)}

    def write_predictions(self, table, path, spec: dict, model) -> tuple[Any, int]:
        from ..spark.session import write_parquet_dir

        try:
            return write_parquet_dir(table, path), 0
        finally:
            table.unpersist()

    def score(self, model, input_path, output_path, **options):
        """Score on Spark; value by period and window (``period``, ``windows``) is the local engine's: refused with
        one line (its wide table is streamed in batches of any file size there)."""
        from ..spark.scoring import score_command

        given = {name: options.pop(name, None) for name in ("period", "windows", "residual")}
        asked = {name: value for name, value in given.items() if value not in (None, False)}
        if asked:
            argument, value = next(iter(asked.items()))
            raise ClvInputError("value by period and window needs the local engine ({{engine='local'}}: the wide "
                                "table streamed in batches of any file size)", argument=argument,
                                **({} if value is True else {"value": value}))  # (a flag: named, no value)
        return score_command(model, input_path, output_path, **options)

    def score_retention(self, model, input_path, output_path, **options):
        """Refused: Spark's scorer (:mod:`clv_forecast.spark.scoring`) scores the RFM tables of purchase models;
        a retention model's table is one pass of the local engine, the model evaluated once per distinct
        renewals count."""
        raise ClvInputError("the Spark engine scores the RFM tables of purchase models, not a retention model's "
                            "table; score it with {{engine='local'}} (batches of any file size, the model evaluated "
                            "once per distinct renewals count)")
