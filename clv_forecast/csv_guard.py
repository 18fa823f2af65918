"""The spreadsheet formula guard of every CSV the package writes (OWASP's CSV injection guidance).

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula
by a spreadsheet that opens the file (a customer id ``=HYPERLINK("http://x")``). In CSV outputs such
cells are written with a leading ``'`` (the spreadsheet then shows the text), and the number of cells
so written is reported; ``verbatim_csv=True`` (``--verbatim-csv``, ``[output] verbatim_csv``) writes
them as they are, for programs that read the file. Only text columns are concerned: numbers
(``-1.5``) are never changed, and Parquet outputs are never altered.

:func:`guard_table` is the one implementation (pyarrow.compute on the text columns);
:func:`guard_frame` applies it to the text columns of a pandas frame.
"""

from __future__ import annotations

__all__ = ["FORMULA_START", "guard_table", "guard_frame", "guard_message"]

#: The first characters that make a spreadsheet read a cell as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

_FIRST_BYTE = [False] * 256
for _c in FORMULA_START:
    _FIRST_BYTE[ord(_c)] = True


def _guard_array(array):
    """``(array, count)``: a text array with a ``'`` before each value starting like a formula."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        chunks = [_guard_array(chunk) for chunk in array.chunks]
        count = sum(n for _, n in chunks)
        if count == 0:
            return array, 0
        return pa.chunked_array([c.cast(array.type) for c, _ in chunks], array.type), count
    if len(array) == 0 or array.null_count == len(array):
        return array, 0
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())  # a string view
    risky = _first_byte_risky(array)
    count = int(risky.sum())
    if count == 0:
        return array, 0
    quoted = pc.binary_join_element_wise(pa.scalar("'", array.type), array, pa.scalar("", array.type))
    return pc.if_else(pa.array(risky), quoted, array), count


def _first_byte_table():
    import numpy as np

    return np.array(_FIRST_BYTE, dtype=bool)


def _first_byte_risky(array):
    """Numpy mask of the values whose first byte is one of :data:`FORMULA_START` (all ASCII, so the first
    byte is the first character): read from the offsets and the data buffer, about 4x faster than a
    regular expression (the scoring hot path writes a text id per row)."""
    import numpy as np
    import pyarrow as pa

    wide = pa.types.is_large_string(array.type)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[array.offset:array.offset + len(array) + 1]
    data = array.buffers()[2]
    if data is None or len(data) == 0:
        return np.zeros(len(array), dtype=bool)
    data = np.frombuffer(data, dtype=np.uint8)
    starts = offsets[:-1]
    risky = (offsets[1:] > starts) & _first_byte_table()[data[np.minimum(starts, len(data) - 1)]]
    if array.null_count:
        risky &= array.is_valid().to_numpy(zero_copy_only=False)
    return risky


def _is_text(type_) -> bool:
    import pyarrow as pa

    return pa.types.is_string(type_) or pa.types.is_large_string(type_) or (
        hasattr(pa.types, "is_string_view") and pa.types.is_string_view(type_))


def guard_table(table, verbatim: bool = False):
    """``(table, count)``: the text columns of an arrow table (or record batch) guarded; ``count`` cells
    were given a leading ``'``. With ``verbatim`` the table is returned as it is (count 0)."""
    if verbatim:
        return table, 0
    total = 0
    for i, field in enumerate(table.schema):
        if _is_text(field.type):
            column, count = _guard_array(table.column(i))
            if count:
                column = column.cast(field.type)  # a string view stays one (the writer's schema)
                table = table.set_column(i, field, column) if hasattr(table, "set_column") else \
                    _batch_with(table, i, column)
                total += count
    return table, total


def _batch_with(batch, i, column):
    import pyarrow as pa

    columns = list(batch.columns)
    columns[i] = column
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def guard_frame(frame, verbatim: bool = False):
    """``(frame, count)``: the text columns (object or string dtype holding only text) of a pandas frame
    guarded as :func:`guard_table` does; a copy when anything changed, else the frame itself."""
    if verbatim:
        return frame, 0
    import pandas as pd
    import pyarrow as pa

    total, changed = 0, {}
    for position, (name, dtype) in enumerate(frame.dtypes.items()):
        if not (dtype == object or isinstance(dtype, pd.StringDtype)):
            continue
        try:
            array = pa.array(frame.iloc[:, position], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue  # mixed values: not a text column
        if not _is_text(array.type):
            continue
        guarded, count = _guard_array(array)
        if count:
            changed[position] = pd.Series(guarded.to_pandas(), index=frame.index, dtype=dtype)
            total += count
    if not changed:
        return frame, 0
    frame = frame.copy()
    for position, values in changed.items():
        frame.isetitem(position, values)
    return frame, total


def guard_message(count: int) -> str:
    """The line a front end prints after writing ``count`` guarded cells (``{{verbatim_csv}}`` names the option)."""
    return (f"{count:,} text cell{'s' if count != 1 else ''} starting with = + - @ written with a leading ' "
            "(spreadsheet formula guard); {{verbatim_csv}} keeps them")
