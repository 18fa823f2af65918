"""Reading and validating transaction logs.

:func:`read_transactions` turns a file (CSV or Parquet) or an in-memory frame (pandas or polars)
into the *standard transaction frame*: a polars DataFrame with the columns ``customer_id``
(integer or string, as given), ``timestamp`` (Datetime) and, when an amount column is named,
``amount`` (Float64). Every problem with the input is a :class:`~clv_forecast.errors.ClvInputError`
whose one-line message names the source, the column, the first offending data rows (1-based,
header not counted) with their values, and the reason.

Validation is vectorised (null counts, ``is_finite``); the offending rows are only searched for
once something is known to be wrong, so the happy path stays fast.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import polars as pl

from .errors import ClvInputError, row_error

__all__ = ["read_transactions", "STANDARD_COLUMNS"]

#: Columns of the standard transaction frame (``amount`` only when an amount column was given).
STANDARD_COLUMNS = ("customer_id", "timestamp", "amount")

_CSV_SUFFIXES = (".csv", ".txt", ".csv.gz", ".txt.gz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SHOW = 5  # offending rows/values shown in a message


# --------------------------------------------------------------------------------------------
# error helpers
# --------------------------------------------------------------------------------------------


def _row_error(source: str, column: str, series: pl.Series, mask: pl.Series, reason: str) -> ClvInputError:
    idx = mask.fill_null(True).arg_true()
    return row_error(source, column, (idx + 1).to_list(), series.gather(idx.head(_SHOW)).to_list(), reason, _SHOW)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in _CSV_SUFFIXES + _PARQUET_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _sniff_separator(path: Path, source: str) -> str:
    """Pick the separator of a delimited text file from its header line."""
    import gzip

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:  # type: ignore[operator]
            header = handle.readline()
    except OSError as exc:
        raise ClvInputError(f"{source}: cannot read the file: {exc}") from None
    counts = {sep: header.count(sep) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] > 0 else ","


def _missing_column_error(source: str, column: str, role: str, available: list[str]) -> ClvInputError:
    shown = ", ".join(repr(c) for c in available[:30])
    if len(available) > 30:
        shown += f" (and {len(available) - 30} more)"
    return ClvInputError(
        f"{source}: column {column!r} ({role}) not found; available columns: {shown or 'none'}"
    )


def _check_duplicates(source: str, names: list[str], wanted: dict[str, str]) -> None:
    for column in dict.fromkeys(wanted.values()):
        if names.count(column) > 1:
            raise ClvInputError(f"{source}: column {column!r} appears {names.count(column)} times; "
                                "rename the duplicates so that the column to use is unambiguous")


def _check_columns(source: str, available: list[str], wanted: dict[str, str]) -> None:
    for role, column in wanted.items():
        if column not in available:
            raise _missing_column_error(source, column, role, available)


def _read_csv(path: Path, source: str, wanted: dict[str, str]) -> pl.DataFrame:
    separator = _sniff_separator(path, source)
    try:
        header = pl.read_csv(path, separator=separator, n_rows=0, infer_schema_length=0).columns
    except pl.exceptions.NoDataError:
        raise ClvInputError(f"{source}: the file is empty (no header, no data rows)") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-facing input problem
        raise ClvInputError(f"{source}: cannot read as CSV: {_first_line(exc)}") from None
    _check_duplicates(source, [re.sub(r"_duplicated_\d+$", "", c) for c in header], wanted)
    _check_columns(source, header, wanted)
    columns = list(dict.fromkeys(wanted.values()))
    date_col = wanted["date column"]
    customer_col = wanted["customer column"]
    text = {date_col: pl.String, customer_col: pl.String}
    try:
        # dates are always read as text and parsed by us (explicit formats, clear errors); ids as
        # text too, so that "007" and "7" stay two customers; amounts are inferred.
        frame = pl.read_csv(path, separator=separator, columns=columns, schema_overrides=text,
                            infer_schema_length=10_000)
    except Exception:  # noqa: BLE001
        # e.g. a value later in the file does not fit the inferred type (the exception class
        # differs across polars versions): read everything as text; the checks below then name
        # the offending rows, and a file that cannot be read even so is reported as such
        try:
            frame = pl.read_csv(path, separator=separator, columns=columns, infer_schema_length=0)
        except Exception as exc:  # noqa: BLE001
            raise ClvInputError(f"{source}: cannot read as CSV: {_ragged_line(path, separator) or _first_line(exc)}"
                                ) from None
    ids = frame.get_column(customer_col)
    if ids.dtype == pl.String:
        ids = ids.str.strip_chars()  # " 1" and "1 " in a text file are customer "1"
    return frame.with_columns(_integer_ids_if_lossless(ids))


def _ragged_line(path: Path, separator: str) -> str | None:
    """The first line whose number of fields differs from the header's (only read after a failure)."""
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:  # type: ignore[operator]
            reader = csv.reader(handle, delimiter=separator)
            width = len(next(reader, []))
            for record in reader:
                if record and len(record) != width:
                    return (f"line {reader.line_num} (data row {reader.line_num - 1}) has {len(record)} fields, "
                            f"the header has {width}")
    except (OSError, csv.Error):
        return None
    return None


def _integer_ids_if_lossless(ids: pl.Series) -> pl.Series:
    """Integer customer ids when every text id is a plain integer (no leading zeros, signs or spaces)."""
    as_int = ids.cast(pl.Int64, strict=False)
    if as_int.null_count() != ids.null_count():
        return ids
    if not (as_int.cast(pl.String) == ids).fill_null(True).all():
        return ids  # e.g. "007": the text is the id
    return as_int


def _read_parquet(path: Path, source: str, wanted: dict[str, str]) -> pl.DataFrame:
    try:
        available = list(pl.scan_parquet(path).collect_schema().names())
    except Exception as exc:  # noqa: BLE001
        raise ClvInputError(f"{source}: cannot read as Parquet: {_first_line(exc)}") from None
    _check_columns(source, available, wanted)
    try:
        return pl.read_parquet(path, columns=list(dict.fromkeys(wanted.values())))
    except Exception as exc:  # noqa: BLE001
        raise ClvInputError(f"{source}: cannot read as Parquet: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _from_pandas(frame: Any, source: str, wanted: dict[str, str]) -> pl.DataFrame:
    available = [str(c) for c in frame.columns]
    customer_col = wanted["customer column"]
    if customer_col not in available and customer_col in (frame.index.names or []):
        frame = frame.reset_index(level=customer_col)
        available = [str(c) for c in frame.columns]
    _check_duplicates(source, available, wanted)
    _check_columns(source, available, wanted)
    columns = list(dict.fromkeys(wanted.values()))
    label = {str(c): c for c in frame.columns}  # the user names columns by text, e.g. "1" for label 1
    subset = frame.loc[:, [label[c] for c in columns]]
    subset.columns = columns
    try:
        return pl.from_pandas(subset, include_index=False)
    except Exception:  # noqa: BLE001 - e.g. object columns mixing ints and strings
        pass
    data = {}
    for column in columns:
        try:
            data[column] = pl.from_pandas(subset[column])
        except Exception:  # noqa: BLE001
            values = subset[column].astype(object)
            data[column] = pl.Series(column, [None if v is None or v != v else str(v) for v in values], pl.String)
    return pl.DataFrame(data)


def _load(source: Any, source_name: str | None, wanted: dict[str, str]) -> tuple[pl.DataFrame, str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = source_name or str(source)
        if not path.exists():
            raise ClvInputError(f"{name}: file not found")
        if path.is_dir():
            raise ClvInputError(f"{name}: cannot read: it is a directory, not a transactions file")
        if not os.access(path, os.R_OK):
            raise ClvInputError(f"{name}: cannot read the file (permission denied)")
        suffix = _suffix(path)
        if suffix in _CSV_SUFFIXES:
            return _read_csv(path, name, wanted), name
        if suffix in _PARQUET_SUFFIXES:
            return _read_parquet(path, name, wanted), name
        raise ClvInputError(
            f"{name}: unknown file type {suffix or '(no extension)'!r}; use .csv, .txt, .csv.gz, .parquet or .pq"
        )
    name = source_name or "DataFrame"
    if isinstance(source, pl.LazyFrame):
        available = list(source.collect_schema().names())
        _check_columns(name, available, wanted)
        return source.select(list(dict.fromkeys(wanted.values()))).collect(), name
    if isinstance(source, pl.DataFrame):
        _check_columns(name, source.columns, wanted)
        return source.select(list(dict.fromkeys(wanted.values()))), name
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(source, pd.DataFrame):
        return _from_pandas(source, name, wanted), name
    raise ClvInputError(
        f"{name}: unsupported transactions source of type {type(source).__name__}; "
        "give a CSV/Parquet path, a pandas DataFrame or a polars DataFrame/LazyFrame"
    )


# --------------------------------------------------------------------------------------------
# column conversion
# --------------------------------------------------------------------------------------------


def _customer_ids(series: pl.Series, source: str, column: str) -> pl.Series:
    dtype = series.dtype
    if series.null_count():
        raise _row_error(source, column, series, series.is_null(), "missing customer id")
    if dtype.is_integer() or dtype == pl.String:
        pass
    elif dtype in (pl.Categorical,) or isinstance(dtype, pl.Enum):
        series = series.cast(pl.String)
    elif dtype.is_float():
        integral = series.is_finite() & (series == series.floor()) & (series.abs() < 2.0**63)
        if not integral.all():
            raise _row_error(source, column, series, ~integral, "customer ids must be integers or strings")
        series = series.cast(pl.Int64)
    elif dtype == pl.Object:
        series = series.map_elements(str, return_dtype=pl.String)
    else:
        raise ClvInputError(
            f"{source}: column {column!r} has type {dtype}; customer ids must be integers or strings"
        )
    return series.rename("customer_id")


_YYYYMMDD = "%Y%m%d"


# ISO 8601 forms accepted without a date_format: never a guess between day-first and month-first.
_ISO_FORMATS = (
    "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
)
_UTC_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _parse_iso(series: pl.Series) -> pl.Series:
    """ISO dates / datetimes; a UTC offset is dropped: the time is the local wall-clock time as written
    (the rule for time-zone-aware columns too), so a purchase at 23:00+05:00 stays on its local day."""
    text = series.str.strip_chars()
    parsed = pl.Series(series.name, [None] * series.len(), pl.Datetime("us"))
    for attempt in (text, text.str.replace(_UTC_OFFSET, "")):
        for fmt in _ISO_FORMATS:
            if parsed.null_count() == series.null_count():
                return parsed
            parsed = parsed.fill_null(attempt.str.strptime(pl.Datetime("us"), fmt, strict=False))
    return parsed


def _timestamps(series: pl.Series, date_format: str | None, source: str, column: str) -> pl.Series:
    dtype = series.dtype
    hint = ""
    if isinstance(dtype, pl.Datetime):
        parsed = series
    elif dtype == pl.Date:
        parsed = series.cast(pl.Datetime("us"))
    elif dtype.is_integer():
        if date_format is None:
            lo, hi = series.min(), series.max()
            if lo is None or (10_000_101 <= lo and hi <= 99_991_231):
                date_format = _YYYYMMDD
            else:
                bad = (series < 10_000_101) | (series > 99_991_231)
                raise _row_error(
                    source, column, series, bad,
                    "integer values are not dates; give date_format (e.g. '%Y%m%d') or a date column",
                )
        parsed = series.cast(pl.String).str.strptime(pl.Datetime("us"), date_format, strict=False)
        hint = f" (expected format {date_format!r})"
    elif dtype == pl.String:
        if date_format is None and series.len() > series.null_count():
            sample = series.drop_nulls().head(1).item()
            if len(sample) == 8 and sample.isdigit():
                date_format = _YYYYMMDD
        if date_format is not None:
            parsed = series.str.strptime(pl.Datetime("us"), date_format, strict=False)
            hint = f" (expected format {date_format!r})"
        else:
            parsed = _parse_iso(series)
            hint = " (expected ISO dates such as 1997-01-31 or 1997-01-31 14:05:00, or give date_format)"
    else:
        raise ClvInputError(
            f"{source}: column {column!r} has type {dtype}, not dates; give datetimes, dates, "
            "ISO date strings, or integers such as 19970131 with date_format='%Y%m%d'"
        )
    if parsed.null_count():
        bad = parsed.is_null()
        if series.null_count() == parsed.null_count():
            reason = "missing date"
        else:
            reason = "missing or unparseable date" + hint if series.null_count() else "unparseable date" + hint
        raise _row_error(source, column, series, bad, reason)
    return parsed.rename("timestamp")


def _amounts(series: pl.Series, source: str, column: str) -> pl.Series:
    dtype = series.dtype
    if dtype.is_numeric():
        values = series.cast(pl.Float64)
    elif dtype == pl.String:
        values = series.str.strip_chars().cast(pl.Float64, strict=False)
        unparsed = values.is_null() & series.is_not_null()
        if unparsed.any():
            raise _row_error(source, column, series, unparsed, "amount is not a number")
    else:
        raise ClvInputError(f"{source}: column {column!r} has type {dtype}; amounts must be numbers")
    if values.null_count():
        raise _row_error(source, column, series, values.is_null(), "missing amount")
    if not values.is_finite().all():
        raise _row_error(source, column, series, ~values.is_finite(), "amount is not finite (nan or inf)")
    return values.rename("amount")


def _is_standard(frame: Any) -> bool:
    """True for a polars frame that already is the output of :func:`read_transactions`."""
    if not isinstance(frame, pl.DataFrame):
        return False
    schema = frame.schema
    names = list(schema.names())
    if names not in (["customer_id", "timestamp"], ["customer_id", "timestamp", "amount"]):
        return False
    cid = schema["customer_id"]
    return (
        (cid.is_integer() or cid == pl.String)
        and isinstance(schema["timestamp"], pl.Datetime)
        and ("amount" not in schema or schema["amount"] == pl.Float64)
    )


def read_transactions(
    source: Any,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str | None = None,
    date_format: str | None = None,
    source_name: str | None = None,
) -> pl.DataFrame:
    """Read a transaction log into the standard polars frame ``customer_id, timestamp[, amount]``.

    ``source`` is a path to a CSV (``.csv``, ``.txt``, ``.csv.gz``; separator sniffed from the
    header among ``, tab ; |``) or Parquet file (``.parquet``, ``.pq``), a pandas DataFrame
    (the customer column may also be its index) or a polars DataFrame/LazyFrame.

    Dates may be datetimes (kept as they are), dates, ISO strings, or integers/strings in
    ``date_format`` (8-digit ``YYYYMMDD`` values are recognised without it). Customer ids
    keep their type (integer or string). Amounts become Float64; negative amounts (returns)
    are allowed, missing, non-numeric and non-finite ones are not.

    Raises :class:`ClvInputError` (one line: source, column, first offending rows and values,
    reason) for a missing/unreadable file, an unknown extension, a missing column, no data
    rows, missing customer ids, missing/unparseable dates and bad amounts.
    """
    wanted = {"customer column": customer_col, "date column": date_col}
    if amount_col is not None:
        wanted["amount column"] = amount_col
    frame, name = _load(source, source_name, wanted)
    if frame.height == 0:
        raise ClvInputError(f"{name}: no data rows (the input has only a header)")
    columns = [
        _customer_ids(frame.get_column(customer_col), name, customer_col),
        _timestamps(frame.get_column(date_col), date_format, name, date_col),
    ]
    if amount_col is not None:
        columns.append(_amounts(frame.get_column(amount_col), name, amount_col))
    return pl.DataFrame(columns)
