"""Reading and validating transaction logs.

:func:`read_transactions` turns a file (CSV or Parquet) or an in-memory frame (pandas or polars)
into the *standard transaction frame*: a polars DataFrame with the columns ``customer_id``
(integer or string, as given), ``timestamp`` (Datetime) and, when an amount column is named,
``amount`` (Float64). Every problem with the input is a :class:`~clv_forecast.errors.ClvInputError`
whose one-line message names the source, the column, the first offending data rows (1-based,
header not counted) with their values, and the reason.

Validation is vectorised (null counts, ``is_finite``); the offending rows are only searched for
once something is known to be wrong, so the happy path stays fast.

The row rules (missing customer ids, exact duplicate rows, returns) live in one place
(``_apply_rules``) used by :func:`read_transactions` and by :func:`~clv_forecast.rfm.summarize`;
each rule counts what it finds (:class:`ReadAccounting`), so no row is dropped silently.

Reading a CSV: a UTF-8 (or other ``encoding``) file with ISO dates is read by pyarrow's
multi-threaded reader with explicit types (dates and amounts parsed while reading, ids as text and
converted to integers when lossless, other columns as text for the duplicate check). Anything that
does not fit that (another date form, a decimal comma, a bad value, a ragged line, bytes not in the
encoding) goes through the general path: polars reads the text, one ISO format is detected from the
first value and tried on the whole column, and the checks name the offending rows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .errors import ClvInputError, row_error
from .ids import control_character, polars_ids, polars_missing, polars_trim

__all__ = ["read_transactions", "ReadAccounting", "STANDARD_COLUMNS"]

#: Columns of the standard transaction frame (``amount`` only when an amount column was given).
STANDARD_COLUMNS = ("customer_id", "timestamp", "amount")

_CSV_SUFFIXES = (".csv", ".txt", ".csv.gz", ".txt.gz", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SHOW = 5  # offending rows/values shown in a message


# --------------------------------------------------------------------------------------------
# error helpers
# --------------------------------------------------------------------------------------------


def _row_error(source: str, column: str, series: pl.Series, mask: pl.Series, reason: str,
               rows: pl.Series | None = None) -> ClvInputError:
    """``rows``: the 1-based input row of each element when rows were left out before (else position + 1)."""
    idx = mask.fill_null(True).arg_true()
    numbers = (idx + 1) if rows is None else rows.gather(idx)
    return row_error(source, column, numbers.to_list(), series.gather(idx.head(_SHOW)).to_list(), reason, _SHOW)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in _CSV_SUFFIXES + _PARQUET_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _sniff_separator(path: Path, source: str, data: Any = None, encoding: str = "utf-8") -> str:
    """Pick the separator of a delimited text file from its header line."""
    import gzip

    try:
        if data is not None and not isinstance(data, Path):
            header = bytes(data.getbuffer()[:1 << 16]).split(b"\n", 1)[0].decode("utf-8", errors="replace")
        else:
            opener = gzip.open if path.name.lower().endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8", errors="replace") as handle:  # type: ignore[operator]
                header = handle.readline()
    except (OSError, EOFError) as exc:
        raise _gzip_error(path, source) or ClvInputError(f"{source}: cannot read the file: {exc}") from None
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


def _read_csv(path: Path, source: str, wanted: dict[str, str], opts: "_Options") -> pl.DataFrame:
    numbers = {wanted[r] for r in ("amount column", "quantity column", "price column") if r in wanted}
    customer_col = wanted["customer column"]
    fast = not opts.decimal_comma and opts.date_format is None
    if fast and _codec(opts.encoding) not in ("utf-8", "utf-8-sig"):
        # another encoding: pyarrow transcodes while it reads (no copy of the file in memory)
        frame = _read_csv_arrow_encoded(path, source, wanted, numbers, _codec(opts.encoding))
        if frame is not None:
            ids = frame.get_column(customer_col)
            return frame if ids.dtype.is_integer() else frame.with_columns(_clean_text_ids(ids))
    data, encoding = _csv_bytes_source(path, source, opts.encoding)
    if isinstance(data, Path):
        _check_utf8_header(path, source, opts.encoding)
    separator = _sniff_separator(path, source, data, encoding)
    try:
        header = pl.read_csv(_rewind(data), separator=separator, n_rows=0, infer_schema_length=0).columns
    except pl.exceptions.NoDataError:
        raise ClvInputError(f"{source}: the file is empty (no header, no data rows)") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a user-facing input problem
        raise _csv_failure(path, source, separator, exc, data, opts.encoding) from None
    _check_duplicates(source, [re.sub(r"_duplicated_\d+$", "", c) for c in header], wanted)
    _check_columns(source, header, wanted)
    # explicit types: dates and ids are text (parsed by us: explicit formats, clear errors; "007" and
    # "7" stay two customers); numbers are Float64 (text with a decimal comma); every other column
    # is read as text, for the exact-duplicate check (a row is compared in all its columns)
    text_cols = {wanted["date column"], wanted["customer column"]}
    if fast and len(set(header)) == len(header):
        frame = _read_csv_arrow(path if isinstance(data, Path) else data, separator, header, wanted, numbers)
        if frame is not None:
            ids = frame.get_column(customer_col)
            return frame if ids.dtype.is_integer() else frame.with_columns(_clean_text_ids(ids))
    schema = {
        c: (pl.Float64 if c in numbers and not opts.decimal_comma and c not in text_cols else pl.String)
        for c in header
    }
    try:
        frame = pl.read_csv(_rewind(data), separator=separator, schema=schema, has_header=True)
    except Exception as exc:  # noqa: BLE001
        # e.g. an amount that is not a number (the exception class differs across polars versions):
        # read everything as text; the checks then name the offending rows, and a file that cannot
        # be read even so is reported as such
        try:
            frame = pl.read_csv(_rewind(data), separator=separator, schema={c: pl.String for c in header}, has_header=True)
        except Exception as exc2:  # noqa: BLE001
            raise _csv_failure(path, source, separator, exc2, data, opts.encoding) from None
        del exc
    return frame.with_columns(_clean_text_ids(frame.get_column(customer_col), opts.decimal_comma))


def _clean_text_ids(ids: pl.Series, decimal_comma: bool = False) -> pl.Series:
    """Ids of a text file: integers when lossless, else stripped text (" 1" and "1 " are customer "1"; a
    blank id is a missing id: :func:`clv_forecast.ids.polars_ids`)."""
    as_int = _integer_ids_if_lossless(ids, decimal_comma)
    if as_int.dtype != pl.String:
        return as_int
    return _integer_ids_if_lossless(polars_trim(ids), decimal_comma)


def _read_csv_arrow_encoded(path: Path, source: str, wanted: dict[str, str], numbers: set[str],
                            codec: str) -> pl.DataFrame | None:
    """The fast path for a file in another encoding; None (the general path) on any doubt."""
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:  # type: ignore[operator]
            line = handle.readline().decode(codec).rstrip("\r\n")
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    counts = {sep: line.count(sep) for sep in (",", "\t", ";", "|")}
    separator = max(counts, key=counts.__getitem__) if max(counts.values()) > 0 else ","
    header = next(csv.reader([line], delimiter=separator), [])
    if not header or len(set(header)) != len(header):
        return None
    _check_columns(source, header, wanted)
    return _read_csv_arrow(path, separator, header, wanted, numbers, codec)


def _read_csv_arrow(path: Any, separator: str, header: list[str], wanted: dict[str, str],
                    numbers: set[str], encoding: str = "utf8") -> pl.DataFrame | None:
    """The fast path for a UTF-8 file with ISO dates: pyarrow's multi-threaded reader parses the
    dates and amounts while reading (one pass). None when anything does not fit (a date that is not
    plain ISO, a number that is not one, a ragged line, ...): the general path then reads the file
    and names the problem."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = {c: pa.string() for c in header}
    types[wanted["date column"]] = pa.timestamp("us")
    for c in numbers:
        types[c] = pa.float64()
    try:
        table = pacsv.read_csv(
            _rewind(path),
            read_options=pacsv.ReadOptions(encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=separator),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                                 quoted_strings_can_be_null=True),
        )
        if table.num_rows == 0:
            return None
    except Exception:  # noqa: BLE001 - the general path reads it and reports what is wrong
        return None
    try:
        if table.column_names != header:  # repeated names in the header: polars' numbered names
            if table.num_columns != len(header):
                return None
            table = table.rename_columns(header)
        table = _arrow_integer_ids(table, wanted["customer column"])
        frame = pl.from_arrow(table, rechunk=False)  # zero-copy: no second copy of the columns
    except Exception:  # noqa: BLE001 - e.g. a header that is not UTF-8: the general path names it
        return None
    del table
    pa.default_memory_pool().release_unused()
    return frame  # type: ignore[return-value]


def _arrow_integer_ids(table: Any, column: str) -> Any:
    """Text ids that are all plain integers (no leading zeros, signs or spaces) as int64, in arrow
    (the text column is then never copied into polars); anything else is left as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = table.column(column)
    try:
        as_int = pc.cast(ids, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return table
    zero = pc.starts_with(ids, "0")
    if pc.any(zero).as_py() and pc.any(pc.and_(zero, pc.greater(pc.utf8_length(ids), 1))).as_py():
        return table  # e.g. "007": the text is the id
    if pc.any(pc.starts_with(ids, "+")).as_py() or pc.any(pc.starts_with(ids, "-0")).as_py():
        return table
    return table.set_column(table.schema.get_field_index(column), column, as_int)


def _rewind(data: Any) -> Any:
    """A path as it is; in-memory bytes from their start (each reader leaves them at the end)."""
    if not isinstance(data, Path):
        data.seek(0)
    return data


def _csv_bytes_source(path: Path, source: str, encoding: str) -> "tuple[Any, str]":
    """The CSV as polars reads it: the path itself for UTF-8, else the bytes transcoded to UTF-8."""
    codec = _codec(encoding)
    if codec in ("utf-8", "utf-8-sig"):
        return path, codec
    import gzip
    import io

    try:
        raw = gzip.open(path).read() if path.name.lower().endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise _gzip_error(path, source) or ClvInputError(f"{source}: cannot read the file: {exc}") from None
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise _decode_error(source, raw, exc, encoding) from None
    return io.BytesIO(text.encode("utf-8")), codec


def _codec(encoding: Any) -> str:
    import codecs

    try:
        return codecs.lookup(str(encoding)).name
    except (LookupError, TypeError):
        raise ClvInputError("unknown encoding; give a Python codec name such as 'utf-8', 'latin-1' or 'cp1252'",
                            argument="encoding", value=encoding) from None


def _decode_error(source: str, raw: bytes, exc: UnicodeDecodeError, encoding: str) -> ClvInputError:
    line = raw.count(b"\n", 0, exc.start) + 1
    bad = raw[exc.start:exc.start + 4][: max(1, exc.end - exc.start)]
    hint = ("give {{encoding='latin-1'}} (or cp1252)" if _codec(encoding).startswith("utf-8")
            else "check the file's encoding")
    return ClvInputError(
        f"{source}: line {line} is not valid {encoding} text (bytes {bad.hex(' ')}); {hint}",
        argument="encoding", value=encoding,
    )


def _check_utf8_header(path: Path, source: str, encoding: str) -> None:
    """The header line must be UTF-8 too (polars would read its names with replacement characters)."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:  # type: ignore[operator]
            line = handle.readline()
    except (OSError, EOFError):
        return  # reported by the reader
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClvInputError(
            f"{source}: line 1 is not valid UTF-8 text (bytes {line[exc.start:exc.end].hex(' ')}); "
            "give {{encoding='latin-1'}} (or cp1252)", argument="encoding", value=encoding) from None


def _first_bad_utf8(path: Path, source: str, encoding: str) -> ClvInputError | None:
    """After a reader failure: the first line that is not valid UTF-8, as an error (streamed)."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:  # type: ignore[operator]
            for number, line in enumerate(handle, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    bad = line[exc.start:exc.end]
                    return ClvInputError(
                        f"{source}: line {number} is not valid UTF-8 text (bytes {bad.hex(' ')}); "
                        "give {{encoding='latin-1'}} (or cp1252)", argument="encoding", value=encoding)
    except (OSError, EOFError):
        return None
    return None


def _gzip_problem(path: Path) -> str | None:
    """Why a ``.gz`` file is not a whole gzip stream (truncated, or failing its checksum), or None (also
    for other files). Streamed; read only after a reader failed."""
    import gzip
    import zlib

    if not path.name.lower().endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _gzip_error(path: Path, source: str) -> ClvInputError | None:
    """The one-line error for a truncated or corrupt ``.gz`` file, or None."""
    problem = _gzip_problem(path)
    if problem is None:
        return None
    return ClvInputError(f"{source}: truncated or corrupt gzip file ({problem[:200]}); "
                         "compress it again or give the uncompressed file")


def _csv_failure(path: Path, source: str, separator: str, exc: BaseException, data: Any,
                 encoding: str) -> ClvInputError:
    broken = _gzip_error(path, source)
    if broken is not None:
        return broken
    if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
        found = _first_bad_utf8(path, source, encoding) if isinstance(data, Path) else None
        if found is not None:
            return found
    ragged = _ragged_line(path, separator) if isinstance(data, Path) else None
    return ClvInputError(f"{source}: cannot read as CSV: {ragged or _first_line(exc)}")


def _ragged_line(path: Path, separator: str) -> str | None:
    """The first line whose number of fields differs from the header's (only read after a failure)."""
    import csv
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:  # type: ignore[operator]
            reader = csv.reader(handle, delimiter=separator)
            width = len(next(reader, []))
            number = 0  # the row number counts records (a quoted field may span lines), not lines
            for record in reader:
                number += bool(record)
                if record and len(record) != width:
                    return (f"row {number} (line {reader.line_num}) has {len(record)} fields, "
                            f"the header has {width}")
    except (OSError, EOFError, csv.Error):
        return None
    return None


def _integer_ids_if_lossless(ids: pl.Series, decimal_comma: bool = False) -> pl.Series:
    """Integer customer ids when every text id is a plain integer (no leading zeros, signs or spaces),
    or an integral float as pandas writes an id column with gaps (``"13904.0"`` is customer 13904)."""
    as_int = ids.cast(pl.Int64, strict=False)
    if as_int.null_count() != ids.null_count():
        point = "[.,]" if decimal_comma else r"\."
        if not ids.str.contains(rf"^-?(?:0|[1-9][0-9]{{0,17}}){point}0+$|^-?(?:0|[1-9][0-9]{{0,17}})$").fill_null(True).all():
            return ids
        return ids.str.replace(rf"{point}0+$", "").cast(pl.Int64)
    zero = ids.str.starts_with("0")
    if (zero.any() and (zero & (ids.str.len_bytes() > 1)).any()) or ids.str.starts_with("-0").any() or (
        ids.str.starts_with("+").any()
    ):
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
        return pl.read_parquet(path)  # every column: exact duplicates are judged on whole rows
    except Exception as exc:  # noqa: BLE001
        raise ClvInputError(f"{source}: cannot read as Parquet: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _pandas_column(series: Any, name: str) -> pl.Series:
    try:
        return pl.from_pandas(series).rename(name)
    except Exception:  # noqa: BLE001 - e.g. object columns mixing ints and strings
        values = series.astype(object)
        return pl.Series(name, [None if v is None or v != v else str(v) for v in values], pl.String)


def _from_pandas(frame: Any, source: str, wanted: dict[str, str]) -> pl.DataFrame:
    available = [str(c) for c in frame.columns]
    customer_col = wanted["customer column"]
    if customer_col not in available and customer_col in (frame.index.names or []):
        frame = frame.reset_index(level=customer_col)
        available = [str(c) for c in frame.columns]
    _check_duplicates(source, available, wanted)
    _check_columns(source, available, wanted)
    # every column (exact duplicates are judged on whole rows), under its text name; a column
    # whose label repeats and is not used is kept once per position under a numbered name
    names, seen = [], set()
    for i, c in enumerate(available):
        name = c if c not in seen else f"{c}_duplicated_{i}"
        seen.add(name)
        names.append(name)
    try:
        subset = frame.copy(deep=False)
        subset.columns = names
        return pl.from_pandas(subset, include_index=False)
    except Exception:  # noqa: BLE001 - e.g. object columns mixing ints and strings
        pass
    return pl.DataFrame([_pandas_column(frame.iloc[:, i], name) for i, name in enumerate(names)])


def _load(source: Any, source_name: str | None, wanted: dict[str, str], opts: "_Options") -> tuple[pl.DataFrame, str, bool]:
    """The input as a polars frame with every column, its name, and whether it came from a text file."""
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
            return _read_csv(path, name, wanted, opts), name, True
        if suffix in _PARQUET_SUFFIXES:
            return _read_parquet(path, name, wanted), name, False
        raise ClvInputError(
            f"{name}: unknown file type {suffix or '(no extension)'!r}; use .csv, .txt, .csv.gz, .parquet or .pq"
        )
    name = source_name or "DataFrame"
    if isinstance(source, pl.LazyFrame):
        available = list(source.collect_schema().names())
        _check_columns(name, available, wanted)
        return source.collect(), name, False
    if isinstance(source, pl.DataFrame):
        _check_columns(name, source.columns, wanted)
        return source, name, False
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(source, pd.DataFrame):
        return _from_pandas(source, name, wanted), name, False
    raise ClvInputError(
        f"{name}: unsupported transactions source of type {type(source).__name__}; "
        "give a CSV/Parquet path, a pandas DataFrame or a polars DataFrame/LazyFrame"
    )


# --------------------------------------------------------------------------------------------
# column conversion
# --------------------------------------------------------------------------------------------


def _missing_ids(series: pl.Series) -> pl.Series | None:
    """Mask of missing customer ids (null, NaN, or blank text; "NA" or "null" are ids) of ids cleaned by
    :func:`clv_forecast.ids.polars_ids`; None when there are none."""
    missing = polars_missing(series)
    return missing if missing.any() else None


def _control_error(source: str, column: str, series: pl.Series, control: pl.Series,
                   rows: pl.Series | None) -> ClvInputError:
    """Ids holding a control character (after trimming): refused with their rows and the character."""
    first = series.filter(control).head(1).item()
    return _row_error(source, column, series, control,
                      f"control character {control_character(first)} in the customer id (an invisible character "
                      "that would make a second customer); remove control characters from the ids in the source",
                      rows)


def _customer_ids(series: pl.Series, source: str, column: str, rows: pl.Series | None) -> pl.Series:
    dtype = series.dtype
    if series.null_count():
        raise _row_error(source, column, series, series.is_null(), "missing customer id", rows)
    if dtype.is_integer() or dtype == pl.String:
        pass
    elif dtype in (pl.Categorical,) or isinstance(dtype, pl.Enum):
        series = series.cast(pl.String)
    elif dtype.is_float():
        integral = series.is_finite() & (series == series.floor()) & (series.abs() < 2.0**63)
        if not integral.all():
            raise _row_error(source, column, series, ~integral, "customer ids must be integers or strings", rows)
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
_ISO_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}(?:([T ])\d{2}:\d{2}(:\d{2})?(\.\d+)?)?")
_DAY_MONTH_SHAPE = re.compile(r"\d{1,2}([/.-])\d{1,2}\1\d{2,4}(?:[ T]\d{1,2}:\d{2}(:\d{2})?)?")


def _iso_format(sample: str) -> str | None:
    """The one ISO format that reads ``sample`` (the first value): the whole column is tried in it first."""
    match = _ISO_SHAPE.fullmatch(sample)
    if match is None:
        return None
    sep, seconds, fraction = match.groups()
    if sep is None:
        return "%Y-%m-%d"
    return f"%Y-%m-%d{sep}%H:%M" + (":%S" if seconds else "") + ("%.f" if fraction else "")


def _parse_iso(series: pl.Series) -> pl.Series:
    """ISO dates / datetimes; a UTC offset is dropped: the time is the local wall-clock time as written
    (the rule for time-zone-aware columns too), so a purchase at 23:00+05:00 stays on its local day.

    The format of the first value is tried on the whole column in one pass; only the values it does
    not read go through the other ISO forms."""
    parsed = None
    sample = series.drop_nulls().head(1)
    if sample.len():
        fmt = _iso_format(sample.item())
        if fmt is not None:
            parsed = series.str.strptime(pl.Datetime("us"), fmt, strict=False, cache=fmt == "%Y-%m-%d")
            if parsed.null_count() == series.null_count():
                return parsed
    todo = series.is_not_null() if parsed is None else (parsed.is_null() & series.is_not_null())
    rest = series.filter(todo).str.strip_chars()
    found = pl.Series(series.name, [None] * rest.len(), pl.Datetime("us"))
    for attempt in (rest, rest.str.replace(_UTC_OFFSET, "")):
        for fmt in _ISO_FORMATS:
            if found.null_count() == 0:
                break
            found = found.fill_null(attempt.str.strptime(pl.Datetime("us"), fmt, strict=False))
    if parsed is None:
        parsed = pl.Series(series.name, [None] * series.len(), pl.Datetime("us"))
    return parsed.scatter(todo.arg_true(), found)


def _format_hint(series: pl.Series, bad: pl.Series) -> str:
    """A fix for unparseable non-ISO dates: the date_format that the first bad value suggests."""
    value = series.filter(bad).drop_nulls().head(1)
    match = _DAY_MONTH_SHAPE.fullmatch(value.item().strip()) if value.len() else None
    if match is None:
        return "; give {{date_format}} for other forms"
    sep, seconds = match.group(1), match.group(2)
    year = "%Y" if len(value.item().strip().split(sep)[2].split()[0].split("T")[0]) == 4 else "%y"
    clock = "" if " " not in value.item().strip() and "T" not in value.item().strip() else (
        " %H:%M:%S" if seconds else " %H:%M")
    return (f"; give {{{{date_format}}}}, e.g. '%d{sep}%m{sep}{year}{clock}' (day first) "
            f"or '%m{sep}%d{sep}{year}{clock}' (month first)")


def _timestamps(series: pl.Series, date_format: str | None, source: str, column: str,
                rows: pl.Series | None = None) -> pl.Series:
    dtype = series.dtype
    hint = ""
    iso = False
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
                    "integer values are not dates; give {{date_format}} (e.g. '%Y%m%d') or a date column", rows,
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
            hint = " (expected ISO dates such as 1997-01-31 or 1997-01-31 14:05:00)"
            iso = True
    else:
        raise ClvInputError(
            f"{source}: column {column!r} has type {dtype}, not dates; give datetimes, dates, "
            "ISO date strings, or integers such as 19970131 with {{date_format='%Y%m%d'}}"
        )
    if parsed.null_count():
        bad = parsed.is_null()
        if series.null_count() == parsed.null_count():
            reason = "missing date"
        else:
            if iso:
                hint += _format_hint(series, bad & series.is_not_null())
            reason = "missing or unparseable date" + hint if series.null_count() else "unparseable date" + hint
        raise _row_error(source, column, series, bad, reason, rows)
    _check_date_range(parsed, series, date_format, source, column, rows)
    return parsed.rename("timestamp")


#: The dates every step supports (pandas' nanosecond timestamps reach 1677-09-21 .. 2262-04-11; a
#: margin keeps period ends, week starts and horizons inside): first and last day, inclusive.
DATE_RANGE = ("1678-01-01", "2261-12-31")
DATE_RANGE_TEXT = f"{DATE_RANGE[0]} to {DATE_RANGE[1]}"


def _check_date_range(parsed: pl.Series, series: pl.Series, date_format: str | None, source: str, column: str,
                      rows: pl.Series | None) -> None:
    """Timestamps outside :data:`DATE_RANGE` are an error naming their rows; a year read with ``%Y`` from
    two digits (``12/1/10`` as year 10) says to use ``%y``."""
    import datetime as _dt

    low = _dt.datetime.fromisoformat(DATE_RANGE[0])
    high = _dt.datetime.fromisoformat(DATE_RANGE[1]) + _dt.timedelta(days=1)
    if getattr(parsed.dtype, "time_zone", None):  # the wall-clock time counts (the reader's rule)
        parsed = parsed.dt.replace_time_zone(None)
    lo, hi = parsed.min(), parsed.max()
    if lo is None or (low <= lo and hi < high):
        return
    outside = (parsed < low) | (parsed >= high)
    first = parsed.filter(outside).head(1).item()
    shown = series if series.dtype == pl.String else series.cast(pl.String)
    if date_format is not None and "%Y" in date_format and first.year < 100:
        better = date_format.replace("%Y", "%y")
        reason = (f"the year is 2 digits (read as year {first.year} with %Y): use %y, "
                  f"{{{{date_format='{better}'}}}}")
    else:
        reason = f"date outside the supported range {DATE_RANGE_TEXT}"
    raise _row_error(source, column, shown, outside, reason, rows)


_DECIMAL_COMMA = r"^[+-]?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]*)(?:,[0-9]*)?(?:[eE][+-]?[0-9]+)?$"


def _numbers(series: pl.Series, source: str, column: str, what: str, decimal_comma: bool,
             rows: pl.Series | None) -> pl.Series:
    """A numeric column as Float64: missing, non-numeric and non-finite values are errors."""
    dtype = series.dtype
    if dtype.is_numeric():
        values = series.cast(pl.Float64)
    elif dtype == pl.String:
        text = series.str.strip_chars()
        if decimal_comma:
            shape = text.str.contains(_DECIMAL_COMMA) & text.str.contains("[0-9]")
            if not shape.fill_null(True).all():
                raise _row_error(source, column, series, ~shape.fill_null(True),
                                 f"{what} is not a number written with a decimal comma (e.g. 1.234,56)", rows)
            text = text.str.replace_all(".", "", literal=True).str.replace(",", ".", literal=True)
        values = text.cast(pl.Float64, strict=False)
        unparsed = values.is_null() & series.is_not_null()
        if unparsed.any():
            fix = "" if decimal_comma or not series.filter(unparsed).str.contains(r"^\s*[+-]?[0-9.]*,[0-9]+\s*$").any() \
                else "; give {{decimal_comma=True}} for values such as 2,5"
            raise _row_error(source, column, series, unparsed, f"{what} is not a number{fix}", rows)
    else:
        raise ClvInputError(f"{source}: column {column!r} has type {dtype}; {what}s must be numbers")
    if values.null_count():
        raise _row_error(source, column, series, values.is_null(), f"missing {what}", rows)
    if not values.is_finite().all():
        raise _row_error(source, column, series, ~values.is_finite(), f"{what} is not finite (nan or inf)", rows)
    return values


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


# --------------------------------------------------------------------------------------------
# options and row accounting
# --------------------------------------------------------------------------------------------

MISSING_CUSTOMER = ("error", "drop")
DUPLICATES = ("keep", "drop")
RETURNS = ("drop", "net", "error")


def default_returns(quantity_col) -> str:
    """The ``returns`` policy when none is given: ``"net"`` for an invoice-line export (amount = quantity x
    unit price: a negative quantity cancels a line of the customer's order, so the order is netted, and an
    order cancelled in full is no purchase), ``"drop"`` for an amount column (a negative amount may be a
    refund, a chargeback or an adjustment of no identified purchase: left out and reported, with the
    returns that do match a purchase counted)."""
    return "net" if quantity_col is not None else "drop"


def _choice(value: Any, argument: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise ClvInputError("use " + ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}",
                            argument=argument, value=value)
    return text


@dataclass(frozen=True)
class _Options:
    customer_col: str
    date_col: str
    amount_col: str | None
    quantity_col: str | None
    price_col: str | None
    date_format: str | None
    encoding: str
    decimal_comma: bool
    missing_customer: str
    duplicates: str
    returns: str

    @classmethod
    def check(cls, *, customer_col, date_col, amount_col, quantity_col, price_col, date_format, encoding,
              decimal_comma, missing_customer, duplicates, returns) -> "_Options":
        if amount_col is not None and (quantity_col is not None or price_col is not None):
            raise ClvInputError("{{amount_col}} and {{quantity_col}}/{{price_col}}: give either an amount column or both "
                                "{{quantity_col}} and {{price_col}} (amount = quantity x unit price), not both")
        if (quantity_col is None) != (price_col is None):
            given, other = ("{{quantity_col}}", "{{price_col}}") if price_col is None else ("{{price_col}}", "{{quantity_col}}")
            raise ClvInputError(f"{given} without {other}: the amount is quantity x unit price; give both "
                                "(or {{amount_col}} instead)")
        if date_format is not None and (not isinstance(date_format, str) or "%" not in date_format):
            raise ClvInputError("not a strftime format; give e.g. '%d/%m/%Y %H:%M'",
                                argument="date_format", value=date_format)
        _codec(encoding)
        return cls(customer_col, date_col, amount_col, quantity_col, price_col, date_format, str(encoding),
                   bool(decimal_comma), _choice(missing_customer, "missing_customer", MISSING_CUSTOMER),
                   _choice(duplicates, "duplicates", DUPLICATES),
                   _choice(default_returns(quantity_col) if returns is None else returns, "returns", RETURNS))

    def wanted(self) -> dict[str, str]:
        wanted = {"customer column": self.customer_col, "date column": self.date_col}
        if self.amount_col is not None:
            wanted["amount column"] = self.amount_col
        if self.quantity_col is not None:
            wanted["quantity column"] = self.quantity_col
            wanted["price column"] = self.price_col  # type: ignore[assignment]
        return wanted

    @property
    def has_amount(self) -> bool:
        return self.amount_col is not None or self.quantity_col is not None


@dataclass
class ReadAccounting:
    """Where every row read by :func:`read_transactions` went (``read_transactions(..., with_accounting=True)``).

    ``n_transactions`` (rows read) = ``n_rows`` (rows of the returned frame)
    + ``n_rows_missing_customer`` (with ``missing_customer="drop"``) + ``n_duplicate_rows_dropped``
    + ``n_return_rows`` when ``returns="drop"`` (with ``returns="net"`` the return rows stay in the
    frame, with their negative amounts, for :func:`~clv_forecast.rfm.summarize` to net).
    """

    n_transactions: int = 0
    n_rows: int = 0
    n_rows_missing_customer: int = 0
    n_duplicate_rows: int = 0
    n_duplicate_rows_dropped: int = 0
    n_return_rows: int = 0
    return_value: float = 0.0
    n_customers_returns_only: int = 0
    missing_customer: str = "error"
    duplicates: str = "keep"
    returns: str = "drop"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def _row_numbers(rows: pl.Series | None, n: int) -> pl.Series:
    return pl.int_range(1, n + 1, eager=True, dtype=pl.Int64) if rows is None else rows


def _sorted_candidates(frame: pl.DataFrame, key: tuple[str, str]) -> pl.Series | None:
    """Rows that may repeat another row, when the frame is ordered (by time, or by customer then
    time) so that identical rows are neighbours: the rows equal to a neighbour in (customer, time).
    None when the frame is in no such order."""
    customers, stamps = frame.get_column(key[0]), frame.get_column(key[1])
    if stamps.is_sorted():
        same = (stamps == stamps.shift(1)).fill_null(False)
    elif customers.is_sorted() and not (
        (customers == customers.shift(1)) & (stamps < stamps.shift(1))
    ).fill_null(False).any():
        same = ((customers == customers.shift(1)) & (stamps == stamps.shift(1))).fill_null(False)
    else:
        return None
    return same | same.shift(-1, fill_value=False)


def _duplicate_copies(frame: pl.DataFrame, key: tuple[str, str] | None = None) -> pl.Series | None:
    """Mask of rows that repeat an earlier row in every column (None when there are none).

    Identical rows have the same customer and time: in a frame ordered by time (or by customer
    then time) only rows equal to a neighbour in those two columns can be copies. Among the
    candidates a 64-bit row hash decides quickly that there are none; rows with a repeated hash
    are then compared exactly, so a hash collision never counts as a duplicate."""
    if frame.height < 2:
        return None
    index = None
    candidates = _sorted_candidates(frame, key) if key is not None else None
    if candidates is not None:
        if not candidates.any():
            return None
        index = candidates.arg_true()
        subset = frame.filter(candidates)
    else:
        subset = frame
    hashes = subset.hash_rows()
    if hashes.n_unique() == subset.height:
        return None
    repeated = hashes.is_duplicated()
    where = repeated.arg_true() if index is None else index.gather(repeated.arg_true())
    first = subset.filter(repeated).select(pl.struct(pl.all()).is_first_distinct()).to_series()
    mask = pl.Series("dup", [False] * frame.height, pl.Boolean).scatter(where.filter(~first), True)
    return mask if mask.any() else None


def _apply_rules(raw: pl.DataFrame, name: str, opts: _Options, *, standard: bool = False,
                 trimmed: bool = False) -> tuple[pl.DataFrame, ReadAccounting]:
    """The one implementation of the row rules: missing ids, duplicates, conversion, returns. ``trimmed``:
    the text ids were trimmed by the CSV reader (:func:`_clean_text_ids`)."""
    acc = ReadAccounting(n_transactions=raw.height, missing_customer=opts.missing_customer,
                         duplicates=opts.duplicates, returns=opts.returns)
    rows: pl.Series | None = None  # 1-based input row of each remaining row (None: unchanged)
    customer_col = "customer_id" if standard else opts.customer_col
    cleaned, control = polars_ids(raw.get_column(customer_col), trimmed)  # the one id rule (clv_forecast.ids)
    if control is not None:
        raise _control_error(name, customer_col, raw.get_column(customer_col), control, None)
    if cleaned.dtype == pl.String:
        raw = raw.with_columns(cleaned.rename(customer_col))
    missing = _missing_ids(cleaned)
    if missing is not None:
        if opts.missing_customer == "error":
            raise _row_error(name, customer_col, raw.get_column(customer_col), missing,
                             "missing customer id; give {{missing_customer='drop'}} to leave such rows out "
                             "(they are counted)", None)
        acc.n_rows_missing_customer = int(missing.sum())
        rows = _row_numbers(rows, raw.height).filter(~missing)
        raw = raw.filter(~missing)
        if raw.height == 0:
            raise ClvInputError(f"{name}: every row has a missing customer id (column {customer_col!r})")
    if standard:
        frame = raw
        _check_date_range(frame.get_column("timestamp"), frame.get_column("timestamp"), None, name, "timestamp", rows)
        copies = _duplicate_copies(frame, ("customer_id", "timestamp"))
    else:
        ids = _customer_ids(raw.get_column(opts.customer_col), name, opts.customer_col, rows)
        stamps = _timestamps(raw.get_column(opts.date_col), opts.date_format, name, opts.date_col, rows)
        columns = [ids, stamps]
        if opts.amount_col is not None:
            columns.append(_numbers(raw.get_column(opts.amount_col), name, opts.amount_col, "amount",
                                    opts.decimal_comma, rows).rename("amount"))
        elif opts.quantity_col is not None:
            quantity = _numbers(raw.get_column(opts.quantity_col), name, opts.quantity_col, "quantity",
                                opts.decimal_comma, rows)
            price = _numbers(raw.get_column(opts.price_col), name, opts.price_col, "price",  # type: ignore[arg-type]
                             opts.decimal_comma, rows)
            amount = (quantity * price).rename("amount")
            if not amount.is_finite().all():
                raise _row_error(name, opts.quantity_col, raw.get_column(opts.quantity_col), ~amount.is_finite(),
                                 "quantity x price is beyond the floating-point range", rows)
            columns.append(amount)
        frame = pl.DataFrame(columns)
        # duplicates: every column of the row, the id and date as converted ("13904.0" = "13904")
        copies = _duplicate_copies(raw.with_columns(ids.rename(opts.customer_col), stamps.rename(opts.date_col)),
                                   (opts.customer_col, opts.date_col))
        del raw
    if copies is not None:
        acc.n_duplicate_rows = int(copies.sum())
        if opts.duplicates == "drop":
            acc.n_duplicate_rows_dropped = acc.n_duplicate_rows
            rows = _row_numbers(rows, frame.height).filter(~copies)
            frame = frame.filter(~copies)
    if "amount" in frame.columns:
        frame = _apply_returns(frame, name, opts, acc, rows)
    acc.n_rows = frame.height
    return frame, acc


def _apply_returns(frame: pl.DataFrame, name: str, opts: _Options, acc: ReadAccounting,
                   rows: pl.Series | None) -> pl.DataFrame:
    amount = frame.get_column("amount")
    if not (amount < 0).any():
        return frame
    negative = amount < 0
    acc.n_return_rows = int(negative.sum())
    acc.return_value = float(amount.filter(negative).sum())
    if opts.returns == "error":
        column = opts.amount_col or opts.quantity_col or "amount"
        raise _row_error(name, column, amount, negative,
                         "negative amount (a return or cancellation); give {{returns='drop'}} or {{returns='net'}}", rows)
    if opts.returns == "drop":
        ids = frame.get_column("customer_id")
        kept = frame.filter(~negative)
        # kept aside (not in the accounting's counts): summarize reports which of them match purchases
        acc._dropped_returns = frame.filter(negative)
        acc.n_customers_returns_only = _customers_without(ids.filter(negative), kept.get_column("customer_id"))
        if kept.height == 0:
            raise ClvInputError(f"{name}: every row is a return (negative amount); there are no purchases")
        return kept
    return frame  # "net": summarize nets each return against the customer's latest purchase


def _customers_without(candidates: pl.Series, having: pl.Series) -> int:
    """How many distinct ``candidates`` do not occur in ``having``."""
    wanted = candidates.unique().to_frame("c")
    return wanted.height - wanted.join(having.unique().to_frame("c"), on="c", how="semi").height


def _ingest(source: Any, opts: _Options, source_name: str | None = None,
            *, trust_standard: bool = False) -> tuple[pl.DataFrame, ReadAccounting, str]:
    """Read + apply the row rules; a frame that already is standard skips the conversion."""
    if trust_standard:
        name = source_name or "DataFrame"
        return (*_apply_rules(source, name, opts, standard=True), name)
    frame, name, text = _load(source, source_name, opts.wanted(), opts)
    if frame.height == 0:
        raise ClvInputError(f"{name}: no data rows (the input has only a header)")
    out, acc = _apply_rules(frame, name, opts, trimmed=text)
    return out, acc, name


def read_transactions(
    source: Any,
    *,
    customer_col: str = "customer_id",
    date_col: str = "date",
    amount_col: str | None = None,
    date_format: str | None = None,
    source_name: str | None = None,
    encoding: str = "utf-8",
    decimal_comma: bool = False,
    quantity_col: str | None = None,
    price_col: str | None = None,
    missing_customer: str = "error",
    duplicates: str = "keep",
    returns: str | None = None,
    with_accounting: bool = False,
) -> "pl.DataFrame | tuple[pl.DataFrame, ReadAccounting]":
    """Read a transaction log into the standard polars frame ``customer_id, timestamp[, amount]``.

    ``source`` is a path to a CSV (``.csv``, ``.txt``, ``.csv.gz``; separator sniffed from the
    header among ``, tab ; |``) or Parquet file (``.parquet``, ``.pq``), a pandas DataFrame
    (the customer column may also be its index) or a polars DataFrame/LazyFrame.

    * Dates may be datetimes (kept as they are), dates, ISO strings, or integers/strings in
      ``date_format`` (8-digit ``YYYYMMDD`` values are recognised without it). Day-first or
      month-first text (``08/09/2011 10:15``) is never guessed: give ``date_format``.
    * Customer ids keep their type (integer or string); text ids that are all plain integers, or all
      integral floats as pandas writes them (``"13904.0"``), become integers.
    * ``encoding``: the text encoding of a CSV (any Python codec: ``"latin-1"``, ``"cp1252"``, ...;
      the file is transcoded to UTF-8 in memory). A file that is not valid in it is an error naming
      its first bad line; bytes are never replaced silently.
    * ``decimal_comma=True``: numbers are written ``1.234,56`` / ``2,5``.
    * The amount is ``amount_col``, or ``quantity_col`` x ``price_col`` (both given, and no amount_col).
    * ``missing_customer``: rows without a customer id (null, NaN, blank) are an ``"error"`` (default)
      or are ``"drop"``-ped and counted. Text ids are trimmed; ``"NA"``, ``"NULL"`` or ``"nan"`` are ids;
      an id holding a control character is an error naming its rows (:mod:`clv_forecast.ids`).
    * Dates outside 1678-01-01 .. 2261-12-31 (:data:`DATE_RANGE`) are an error naming their rows.
    * ``duplicates``: rows identical to an earlier row in *every* column of the input (not only the
      columns used: two items of one invoice with equal amounts are not duplicates) are counted;
      ``"keep"`` (default) keeps them, ``"drop"`` removes the extra copies. Rows with a missing
      customer that are dropped are not counted as duplicates.
    * ``returns``: rows with a negative amount (returns, cancellations) are not purchases.
      ``"drop"`` removes and counts them; ``"error"`` names them; ``"net"`` keeps them in the
      frame (negative amounts) so that :func:`~clv_forecast.rfm.summarize` can subtract each one from
      the same customer's latest earlier purchase. Default (None): ``"net"`` with ``quantity_col`` x
      ``price_col`` (invoice-line exports: a negative quantity cancels a line of an order), ``"drop"``
      with ``amount_col`` (:func:`default_returns`). Zero amounts are purchases.

    With ``with_accounting=True`` returns ``(frame, ReadAccounting)``: the counts of every rule
    (see :class:`ReadAccounting`); nothing is dropped without being counted there.

    Raises :class:`ClvInputError` (one line: source, column, first offending rows and values,
    reason) for a missing/unreadable file, an unknown extension, a missing column, no data
    rows, missing customer ids, missing/unparseable dates and bad amounts; option errors carry
    the argument's name (``exc.argument``).
    """
    opts = _Options.check(customer_col=customer_col, date_col=date_col, amount_col=amount_col,
                          quantity_col=quantity_col, price_col=price_col, date_format=date_format,
                          encoding=encoding, decimal_comma=decimal_comma, missing_customer=missing_customer,
                          duplicates=duplicates, returns=returns)
    frame, acc, _ = _ingest(source, opts, source_name)
    acc._dropped_returns = None  # (kept for summarize's matching only)
    return (frame, acc) if with_accounting else frame
