"""Apache Spark for clv-forecast (pyspark, the optional extra ``clv-forecast[spark]``).

* :mod:`.summary`: the RFM summary of a transaction log in a Spark DataFrame (the Spark kernel of
  :mod:`clv_forecast.rfm`'s plan -> kernel -> assemble), the fit on its compressed statistics, the
  per-customer table of the pipeline (``clv-forecast fit --engine spark``);
* :mod:`.scoring`: scoring an RFM table in a Spark DataFrame or a Parquet dataset with the local rule
  set and vectorised code (``clv-forecast score --engine spark``);
* :mod:`.session`: the session the commands start, reading Parquet, publishing Parquet directories
  atomically.

Importing this package (or any of its modules) does not import pyspark; calling does.
"""

from __future__ import annotations

import importlib

__all__ = ["summarize_spark", "fit_spark", "SparkSummary", "score_spark", "score_spark_to_parquet",
           "spark_session", "read_parquet", "SCORE_COLUMNS"]

_HOME = {"summarize_spark": "summary", "fit_spark": "summary", "SparkSummary": "summary",
         "predict_spark": "summary", "value_coverage_spark": "summary", "value_coverage_frame": "summary",
         "score_spark": "scoring", "score_spark_to_parquet": "scoring", "score_command": "scoring",
         "SCORE_COLUMNS": "scoring",
         "spark_session": "session", "read_parquet": "session", "check_parquet_path": "session",
         "write_parquet_dir": "session", "quiet_pyspark_warnings": "session"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_HOME))
