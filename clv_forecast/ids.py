"""The one rule for reading a customer id, shared by every reader.

* A text id is trimmed of surrounding white space (``" 17 "`` is customer ``17``).
* An id is **missing** only when it is null (a float NaN too) or text that is blank after trimming.
  Every other text is an id: ``"NA"``, ``"N/A"``, ``"NULL"``, ``"null"``, ``"nan"`` are customers,
  never read as missing (pyarrow's and pandas' default null spellings do not apply to ids).
* An id that still contains a **control character** (Unicode category Cc: U+0000-U+001F and
  U+007F-U+009F, TAB included) is refused: the transaction reader stops with one line naming the
  rows and the character, the scorer rejects the row with :data:`CONTROL_REASON`. Such a character
  is invisible in most tools and would make a second customer out of one ("A" and "A\\0").

:func:`id_state` states the rule for one value; :func:`polars_ids`, :func:`arrow_ids`,
:func:`pandas_ids` and :func:`spark_ids` are its vectorised forms for the transaction reader (polars),
the scorer (pyarrow), the Spark scorer's partitions (pandas) and the Spark summary (Spark columns).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CONTROL_REASON", "CONTROL_PATTERN", "id_state", "control_character", "escape_control", "polars_trim",
           "polars_ids", "polars_missing", "arrow_ids", "pandas_ids", "spark_ids"]

#: Reject reason of an id with a control character (``clv-forecast score``).
CONTROL_REASON = "control character in id"

#: A regular expression matching one control character (Unicode category Cc).
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
_CONTROL = re.compile(CONTROL_PATTERN)
_CONTROL_CHARS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]


def id_state(value: Any) -> str:
    """``"missing"``, ``"control"`` (text with a control character) or ``"ok"``: the rule for one value."""
    if value is None or (isinstance(value, float) and value != value):
        return "missing"
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return "missing"
        if _CONTROL.search(text):
            return "control"
    return "ok"


def control_character(text: str) -> str:
    """The first control character of ``text`` as ``U+0000`` (empty when there is none)."""
    found = _CONTROL.search(text or "")
    return "" if found is None else f"U+{ord(found.group()):04X}"


def escape_control(text: str) -> str:
    """``text`` with each control character written as an escape (``"a\\x00"``), for a file a person reads."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def polars_trim(series):
    """Text ids trimmed of white space, blank ones null (the first half of :func:`polars_ids`)."""
    series = series.str.strip_chars()
    blank = series == ""
    return series.set(blank, None) if blank.any() else series


def polars_ids(series, trimmed: bool = False):
    """Text ids trimmed, blank ones null, and the mask of those with a control character (None when none).
    ``trimmed``: the text was trimmed and blanks nulled before (only the control characters are looked for).

    Other types are returned as they are (a float NaN is missing: :func:`polars_missing`)."""
    import polars as pl

    if series.dtype == pl.Categorical or isinstance(series.dtype, pl.Enum):
        series = series.cast(pl.String)
    if series.dtype != pl.String:
        return series, None
    if not trimmed:
        series = polars_trim(series)
    control = series.str.contains_any(_CONTROL_CHARS)  # Aho-Corasick: faster than the regular expression
    return series, (control.fill_null(False) if control.any() else None)


def polars_missing(series):
    """Mask of missing ids (null, or NaN in a float column) of ids cleaned by :func:`polars_ids`."""
    missing = series.is_null()
    return (missing | series.is_nan()) if series.dtype.is_float() else missing


def arrow_ids(ids):
    """Arrow ids: text trimmed, blank text and NaN null; and the numpy mask of the text ids with a
    control character (None when there is none)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        ids = pc.utf8_trim_whitespace(ids)
        ids = pc.if_else(pc.equal(ids, ""), pa.scalar(None, ids.type), ids)
        if not _may_hold_control(ids):
            return ids, None
        control = pc.match_substring_regex(ids, CONTROL_PATTERN)
        if pc.any(control).as_py():
            return ids, np.asarray(pc.fill_null(control, False).to_numpy(zero_copy_only=False), dtype=bool)
        return ids, None
    if pa.types.is_floating(ids.type):
        return pc.if_else(pc.is_nan(ids), pa.scalar(None, ids.type), ids), None
    return ids, None


def _may_hold_control(ids) -> bool:
    """False when no byte of the text could belong to a control character (none below 0x20, no 0x7F,
    no 0xC2: U+0080-U+009F are C2 80-C2 9F in UTF-8): one pass over the bytes, the exact (slower)
    regular expression only runs when this is true."""
    import numpy as np
    import pyarrow as pa

    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if pa.types.is_large_string(chunk.type)
                                else np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
        data = chunk.buffers()[2]
        if data is None:
            continue
        text = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]
        if (text < 0x20).any() or (text == 0x7F).any() or (text == 0xC2).any():
            return True
    return False


def pandas_ids(ids):
    """Numpy masks ``(present, control)`` of a pandas column of ids (the Spark scorer's partitions)."""
    import numpy as np
    import pandas as pd

    present = ids.notna().to_numpy()
    control = np.zeros(len(ids), dtype=bool)
    if not pd.api.types.is_numeric_dtype(ids.dtype):
        states = ids.map(id_state).to_numpy()
        present = states != "missing"
        control = states == "control"
    return present, control


def spark_ids(column):
    """Spark columns ``(id, control)`` for a text id column: the id trimmed of white space and null when
    blank, and whether it holds a control character."""
    from pyspark.sql import functions as F

    trimmed = F.regexp_replace(column, r"(?U)^\s+|\s+$", "")
    key = F.when(trimmed != "", trimmed)
    return key, F.coalesce(key.rlike(CONTROL_PATTERN), F.lit(False))
