"""Prototype of a faster ``transactions._parse_iso`` (for the owner of transactions.py).

Today every ISO form is tried on the whole column until all values parse; a failing
``str.strptime`` costs more than a succeeding one (0.46 s for 3.1M values), and the default
``cache=True`` hashes every (mostly distinct) timestamp string. Here the form is chosen on a sample
of 1,000 values, the whole column is parsed once with it and ``cache=False``, and only the values it
did not parse (other ISO forms, surrounding spaces, UTC offsets) go through the existing loop.
Same result for every input: a value that the chosen form parses is parsed to the same instant by
the first form the old loop would have accepted (ISO fields are unambiguous).
"""
import polars as pl
from clv_forecast import transactions as T

_SAMPLE = 1_000


def detect_iso_format(series: pl.Series) -> str | None:
    """The first ISO form that parses every value of a sample of the column as it is (no strip)."""
    head = series.drop_nulls().head(_SAMPLE)
    if head.len() == 0:
        return None
    for fmt in T._ISO_FORMATS:
        if head.str.strptime(pl.Datetime("us"), fmt, strict=False, cache=False).null_count() == 0:
            return fmt
    return None


def parse_iso_fast(series: pl.Series) -> pl.Series:
    fmt = detect_iso_format(series)
    if fmt is None:
        return ORIGINAL(series)
    parsed = series.str.strptime(pl.Datetime("us"), fmt, strict=False, cache=False)
    if parsed.null_count() == series.null_count():
        return parsed
    missing = (parsed.is_null() & series.is_not_null()).arg_true()
    rest = ORIGINAL(series.gather(missing))  # other forms, spaces, offsets: the long way, on those rows only
    return parsed.scatter(missing, rest)


ORIGINAL = T._parse_iso


def install() -> None:
    T._parse_iso = parse_iso_fast
