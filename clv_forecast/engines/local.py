"""The local engine: one machine. The summary is :func:`clv_forecast.rfm.summarize` (polars), the fit runs
on every customer's row (:meth:`ClvModel.fit`), the per-customer table is a pandas frame written as CSV or
Parquet, and scoring streams pyarrow batches (:func:`clv_forecast.scoring.score_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ClvInputError
from . import register
from .base import Engine, Holdout, compressed_statistics

__all__ = ["LocalEngine", "write_table"]


@register
class LocalEngine(Engine):
    """One machine: every table a pandas frame (:attr:`in_memory`)."""

    name = "local"
    in_memory = True
    score_options = ("batch_rows", "verbatim_csv", "spend_col")
    score_progress = True

    def open(self, source, data: dict, timings: dict) -> Any:
        from .. import _warmup
        from ..rfm import summarize  # noqa: F401 - numpy, pandas and polars, in this thread

        _warmup.start()  # scipy and the model modules in the background while polars reads the log
        return source

    def summarize(self, source, options: dict, *, calibration_end):
        from ..rfm import summarize

        return summarize(source, calibration_end=calibration_end, **options)

    def statistics(self, summary, inputs: dict | None = None) -> dict:
        """The compressed statistics of a local summary (see :meth:`Engine.statistics`): what the Spark
        engine collects to its driver, computed with pandas."""
        import numpy as np

        def count(columns, repeat_buyers):
            rows = summary[summary["frequency"] > 0] if repeat_buyers else summary
            out = rows.groupby(columns, sort=True, as_index=False).size().rename(columns={"size": "count"})
            return out.astype({"count": np.int64}).reset_index(drop=True)

        return compressed_statistics(count, inputs=inputs, split="frequency_holdout" in summary.columns,
                                     has_amount="monetary_value" in summary.columns, attrs=summary.attrs)

    def fit(self, model, summary):
        return model.fit(summary)  # on every customer's row (row numbers in its errors)

    def holdout(self, model, summary) -> Holdout | None:
        import numpy as np
        import pandas as pd

        if "frequency_holdout" not in summary.columns:
            return None
        duration = self.holdout_duration(summary)
        predicted = model.purchases_.conditional_expected_purchases(duration, summary)
        table = pd.DataFrame({"predicted": predicted, "actual": summary["frequency_holdout"].to_numpy()},
                             index=summary.index)
        return Holdout(table, np.ones(len(table)), duration)

    def holdout_duration(self, summary) -> float:
        return float(summary["duration_holdout"].iloc[0])

    def predict(self, model, summary, value: dict):
        from .tables import clv_table

        table = clv_table(model, summary, value)
        out = summary.join(table)
        if "portfolio" in table.attrs:  # (the band of the totals: clv_forecast.uncertainty)
            out.attrs["portfolio"] = table.attrs["portfolio"]
        return out

    def value_coverage(self, table) -> dict:
        from .tables import value_coverage

        return value_coverage(table) if "clv" in table else {}

    def write_predictions(self, table, path, spec: dict, model) -> tuple[Path, int]:
        from .tables import table_metadata

        return write_table(table, path, metadata=table_metadata(spec, model.time_unit_),
                           verbatim_csv=bool(spec["output"].get("verbatim_csv")))

    def score(self, model, input_path, output_path, *, transactions=None, read: dict | None = None, **options):
        from ..scoring import score_file, score_transactions

        if transactions is not None:
            if options.pop("spend_col", None) is not None:  # (a log has amounts, not a spend column)
                from ..errors import ClvInputError

                raise ClvInputError("{{spend_col}} names a column of an RFM table, not of a transaction log")
            return score_transactions(model, transactions, output_path, **dict(read or {}), **options)
        return score_file(model, input_path, output_path, **options)

    def score_retention(self, model, input_path, output_path, **options):
        from ..estimators.retention._scoring import score_retention_file

        return score_retention_file(model, input_path, output_path, **options)


def write_table(table, path, metadata: dict | None = None, *, verbatim_csv: bool = False) -> tuple[Path, int]:
    """Write a per-customer table (index as the first column) to CSV or Parquet, atomically; a Parquet
    file also carries ``metadata`` (key-value); returns the path and how many CSV cells the spreadsheet
    formula guard changed (:mod:`clv_forecast.csv_guard`; none with ``verbatim_csv``)."""
    from .._io import atomic_write
    from ..csv_guard import guard_frame

    path = Path(path)
    suffix = path.name.lower()
    frame = table.reset_index()
    if suffix.endswith((".parquet", ".pq")):
        # dictionary encoding only where values repeat (ids, counts, the summary's recency and T in whole
        # days): on the model's continuous outputs it builds a hash table per column and then falls back
        # to plain encoding anyway (10M customers: ~0.6 s of CPU for a smaller file by nothing)
        repeating = [str(c) for c, dtype in frame.dtypes.items()
                     if dtype.kind not in "fc" or c in ("recency", "T")]
        if not metadata:
            return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False, use_dictionary=repeating)), 0
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **metadata})
        return atomic_write(path, lambda tmp: pq.write_table(arrow, tmp, use_dictionary=repeating)), 0
    if suffix.endswith((".csv", ".txt", ".csv.gz")):
        compression = "gzip" if suffix.endswith(".gz") else None
        frame, guarded = guard_frame(frame, verbatim_csv)
        return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, compression=compression)), guarded
    raise ClvInputError(f"{path}: unknown output type; use .csv, .csv.gz or .parquet", argument="predictions")
