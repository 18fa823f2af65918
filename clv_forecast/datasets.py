"""Bundled example data: the CDNOW sample (2357 customers, Jan 1997 - Jun 1998).

The raw file ``data/CDNOW_sample.txt`` has no header and whitespace-separated columns:
master-file customer id, sample customer id (1..2357), date ``YYYYMMDD``, number of CDs and
dollar value. The papers (Fader, Hardie & Lee 2005) calibrate on purchases up to
1997-09-30 (inclusive) and hold out the rest up to 1998-06-30, in weeks, with purchases on
the same day merged.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the constants and the path cost no numpy/pandas/polars import
    import pandas as pd

__all__ = ["CDNOW_CALIBRATION_END", "CDNOW_OBSERVATION_END", "cdnow_sample_path", "load_cdnow_sample"]

CDNOW_CALIBRATION_END = "1997-09-30"
CDNOW_OBSERVATION_END = "1998-06-30"

_COLUMNS = ("master_id", "customer_id", "date", "cds", "amount")


def cdnow_sample_path() -> Path:
    """Path of the bundled raw CDNOW sample file."""
    return Path(str(resources.files("clv_forecast").joinpath("data", "CDNOW_sample.txt")))


def load_cdnow_sample() -> pd.DataFrame:
    """The raw CDNOW sample, one row per transaction.

    Columns: ``master_id`` (int), ``customer_id`` (int, 1..2357), ``date`` (datetime64),
    ``cds`` (int) and ``amount`` (float, dollars).
    """
    import polars as pl

    # one text column per line, then split on runs of whitespace (polars has no regex separator)
    lines = pl.read_csv(
        cdnow_sample_path(),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        schema_overrides={"line": pl.String},
    )
    fields = (
        lines.lazy()
        .select(
            pl.col("line")
            .str.strip_chars()
            .str.replace_all(r"\s+", " ")
            .str.split_exact(" ", len(_COLUMNS) - 1)
            .struct.rename_fields(list(_COLUMNS))
            .alias("fields")
        )
        .unnest("fields")
        .select(
            pl.col("master_id").cast(pl.Int64),
            pl.col("customer_id").cast(pl.Int64),
            pl.col("date").str.strptime(pl.Datetime("ns"), "%Y%m%d"),
            pl.col("cds").cast(pl.Int64),
            pl.col("amount").cast(pl.Float64),
        )
        .collect()
    )
    return fields.to_pandas()
