"""Streaming batch scoring of an RFM table (CSV or Parquet) on one machine.

:func:`score_file` reads the table in batches with pyarrow (memory bounded by the batch size, not
by the file), gives each row a verdict with the RFM rules the models validate with
(:func:`clv_forecast.btyd._data.rfm_verdict`), scores the valid rows with the model's vectorised
CLV (identical (frequency, T) pairs are evaluated once by the BG/NBD dedupe) and writes

* the scores, ``customer_id`` (the ``id_col``), ``expected_purchases, p_alive, expected_spend, clv`` (+ ``clv_lower``,
  ``clv_upper`` with ``interval``), batch by batch to a temporary file renamed at the end: a crash,
  an error or Ctrl-C leaves nothing under the output's name;
* the rejected rows, ``row`` (1-based data row of the input), the id and the ``reason``, to the
  rejects file (default ``<output>.rejects.csv``), also published at the end.

More rejects than ``max_reject_share`` of the rows read raises :class:`ClvInputError` and the
output is not published (the rejects file is, to say why).

Duplicate ids: the ids seen so far are kept as one sorted ``int64`` array, 8 bytes per customer
(80 MB for 10M customers). Integer ids are kept exactly; text ids as a 64-bit hash of the text, so
two different ids may collide with probability about ``n**2 / 2**65`` (3e-6 for 10M ids), and the
second would then be rejected as a duplicate.

Out of scope: tracking ``score`` runs in MLflow, scoring raw transaction logs (summarize first),
distributed (Spark) scoring.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import atomic_write
from .btyd._data import rfm_verdict, verdict_reasons
from .errors import ClvInputError

__all__ = ["ScoreReport", "TooManyRejectsError", "score_file", "load_scoring_model"]

RFM_COLUMNS = ("frequency", "recency", "T", "monetary_value")
# reasons of the rejects that are not RFM rules
MISSING_ID = "missing id"
DUPLICATE_ID = "duplicate id"
NOT_NUMERIC = "{column} not numeric"


@dataclass
class ScoreReport:
    """What :func:`score_file` did: rows read, scored and rejected, rejects by reason, seconds."""

    read: int
    scored: int
    rejected: int
    reasons: dict = field(default_factory=dict)
    seconds: float = 0.0
    output: Path | None = None
    rejects: Path | None = None

    @property
    def reject_share(self) -> float:
        return self.rejected / self.read if self.read else 0.0


class TooManyRejectsError(ClvInputError):
    """More rows rejected than ``max_reject_share``; ``report`` says how many and why."""

    def __init__(self, message: str, report: ScoreReport) -> None:
        super().__init__(message)
        self.report = report


def load_scoring_model(model):
    """A :class:`~clv_forecast.model.ClvModel`: itself, a model JSON file, or an MLflow model URI
    (``runs:/<run>/model``, ``models:/NAME/1``, ``models:/NAME@champion``) whose
    ``artifacts/clv_model.json`` is downloaded (mlflow is imported only then)."""
    from .model import ClvModel

    if isinstance(model, ClvModel):
        return model
    text = str(model)
    if text.startswith(("runs:/", "models:/")):
        import mlflow.artifacts

        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=text.rstrip("/") + "/artifacts/clv_model.json")
        except Exception as exc:  # MLflow raises its own exception types; one line for the user
            raise ClvInputError(f"{text}: cannot download the model ({' '.join(str(exc).split())[:300]})") from None
        return ClvModel.load(local)
    return ClvModel.load(text)


def scoring_setup(model, time_unit=None):
    """The model to score with (:func:`load_scoring_model`; it must have a spend model) and the input's
    time unit in canonical form (``None``: the model's). Shared by the local and the Spark scorers."""
    clv_model = load_scoring_model(model)
    if clv_model.spend_ is None:
        raise ClvInputError("the model has no spend model (fit it with a monetary_value column) to score CLV")
    if time_unit is not None:
        from .units import TimeUnit

        try:
            time_unit = str(TimeUnit.parse(time_unit))
        except ClvInputError as exc:
            raise ClvInputError(exc.reason.split(": ", 1)[-1], argument="time_unit", value=time_unit) from None
    return clv_model, time_unit


def _kind(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ClvInputError(f"{path}: {what} must be a .csv or .parquet file")


def _batches(path: Path, columns: list[str], batch_rows: int):
    """Yield ``(record_batch, bytes_or_None)``: at most ``batch_rows`` rows each, only ``columns``."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if not path.exists():
        raise ClvInputError(f"{path}: input file not found")
    kind = _kind(path, "the input")
    if kind == "parquet":
        try:
            reader = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ClvInputError(f"{path}: cannot read Parquet file ({exc})") from None
        names = reader.schema_arrow.names
        _require_columns(path, names, columns)
        wanted = list(columns)
        yield from ((b, None) for b in reader.iter_batches(batch_size=batch_rows, columns=wanted))
        return
    try:
        header = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16)).schema.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise ClvInputError(f"{path}: cannot read CSV file ({' '.join(str(exc).split())})") from None
    _require_columns(path, header, columns)
    wanted = list(columns)
    # every column as text: a bad number rejects its row instead of failing the file; empty = missing
    convert = pcsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                  strings_can_be_null=True)
    block = int(min(max(batch_rows * 48, 1 << 16), 1 << 28))
    reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=block), convert_options=convert)
    try:
        for batch in reader:
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows), None
    except pa.ArrowInvalid as exc:
        raise ClvInputError(f"{path}: cannot read CSV file ({' '.join(str(exc).split())})") from None


def _require_columns(path: Path, names, columns) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ClvInputError(f"{path}: column(s) {', '.join(map(repr, missing))} not found; "
                            f"columns are: {', '.join(names) or 'none'}")


def _numbers(array) -> tuple[np.ndarray, np.ndarray]:
    """A column as float64 (NaN where missing) and the mask of the non-numeric values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        try:
            values = pc.cast(pc.utf8_trim_whitespace(array), pa.float64())
        except pa.ArrowInvalid:
            import pandas as pd

            text = array.to_pandas()
            values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
            # a literal "nan" is a missing value, as when the whole batch parses (above), not a non-number
            bad = text.notna().to_numpy() & np.isnan(values) & ~literal_nan(text)
            return values, bad
        return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), np.zeros(len(array), bool)
    try:
        values = pc.cast(array, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ClvInputError(f"column of type {array.type} is not numeric") from None
    return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), np.zeros(len(array), bool)


def literal_nan(text) -> np.ndarray:
    """Mask of the texts that spell NaN (``nan``, ``NaN``, ``-nan``...): numbers, missing ones."""
    stripped = text.astype(object).map(lambda v: v.strip().lower().lstrip("+-") if isinstance(v, str) else "")
    return (stripped == "nan").to_numpy(dtype=bool)


class _SeenIds:
    """The ids met so far, as one sorted int64 array (integer ids exactly, text ids hashed)."""

    def __init__(self) -> None:
        self.seen = np.empty(0, dtype=np.int64)

    @staticmethod
    def keys(ids) -> np.ndarray:
        import pyarrow as pa

        if pa.types.is_integer(ids.type):
            return ids.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        import pandas as pd

        text = ids.cast(pa.string()).to_numpy(zero_copy_only=False)
        return pd.util.hash_array(text.astype(object), categorize=False).view(np.int64)

    def duplicates(self, ids, present: np.ndarray) -> np.ndarray:
        """Mask of the rows whose id was met before (in an earlier batch or earlier in this one)."""
        dup = np.zeros(len(ids), dtype=bool)
        rows = np.flatnonzero(present)
        if rows.size == 0:
            return dup
        keys = self.keys(ids.filter(present) if not present.all() else ids)
        uniq, first = np.unique(keys, return_index=True)
        repeat = np.ones(len(keys), dtype=bool)
        repeat[first] = False  # later occurrences within the batch
        if self.seen.size:
            pos = np.searchsorted(self.seen, keys)
            pos[pos == self.seen.size] = 0
            repeat |= self.seen[pos] == keys
        dup[rows] = repeat
        self.seen = np.sort(np.concatenate([self.seen, uniq]), kind="stable")  # two sorted runs: linear
        return dup


def score_file(model, input_path, output_path, *, horizon="12M", discount_rate="0%/Y", step="1M", margin=1.0,
               id_col: str = "customer_id", batch_rows: int = 1_000_000, rejects_path=None,
               max_reject_share: float = 0.01, interval: float | None = None, time_unit=None,
               progress=None) -> ScoreReport:
    """Score an RFM table file batch by batch; see the module docstring.

    ``model``: a ClvModel, a model JSON file or an MLflow URI (:func:`load_scoring_model`).
    ``input_path``: CSV or Parquet with ``id_col``, frequency, recency, T and monetary_value
    (recency and T in the model's time unit unless ``time_unit`` names theirs: then converted).
    ``output_path``: ``.csv`` or ``.parquet``. ``progress``: called as ``progress(rows_read, total)``
    after each batch (``total`` the input's row count when known, else None).
    Returns a :class:`ScoreReport`; raises :class:`ClvInputError` when more than
    ``max_reject_share`` of the rows are rejected (nothing published under ``output_path``).
    """
    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    out_kind = _kind(output_path, "the output")
    if not (isinstance(batch_rows, int) and batch_rows >= 1):
        raise ClvInputError("must be a whole number >= 1", argument="batch_rows", value=batch_rows)
    if not (0 <= max_reject_share <= 1):
        raise ClvInputError("must be a share between 0 and 1", argument="max_reject_share", value=max_reject_share)
    if output_path.resolve() == input_path.resolve():
        raise ClvInputError(f"{output_path}: the output would overwrite the input")
    rejects_path = Path(rejects_path) if rejects_path is not None else output_path.with_name(
        output_path.name + ".rejects.csv")
    clv_model, time_unit = scoring_setup(model, time_unit)
    total = None
    if input_path.suffix.lower() in (".parquet", ".pq") and input_path.exists():
        try:
            import pyarrow.parquet as pq

            total = pq.ParquetFile(input_path).metadata.num_rows
        except Exception:  # noqa: BLE001 - unreadable: _batches says why
            total = None
    # checks that need no data: fail before reading (a bad horizon is not a batch-time surprise)
    from .value import discount_schedule

    discount_schedule(clv_model.time_unit_, horizon, step, discount_rate)
    counts = {"read": 0, "scored": 0}
    reasons: Counter = Counter()

    def write_all(out_tmp: Path) -> None:
        def write_with_rejects(rej_tmp: Path) -> None:
            _stream(clv_model, input_path, out_tmp, out_kind, rej_tmp, id_col, batch_rows, time_unit,
                    dict(horizon=horizon, discount_rate=discount_rate, step=step, margin=margin, interval=interval),
                    counts, reasons, progress, total)

        atomic_write(rejects_path, write_with_rejects)
        rejected = sum(reasons.values())
        share = rejected / counts["read"] if counts["read"] else 0.0
        if share > max_reject_share:
            raise TooManyRejectsError(f"{input_path}: {rejected} of {counts['read']} rows rejected ({share:.4%}), "
                                      f"more than "
                                f"max_reject_share {max_reject_share:.4%}; output not written; rejected rows "
                                f"and reasons in {rejects_path}", _report())

    def _report(published: bool = False) -> ScoreReport:
        return ScoreReport(read=counts["read"], scored=counts["scored"], rejected=sum(reasons.values()),
                           reasons=dict(reasons.most_common()), seconds=time.perf_counter() - started,
                           output=output_path if published else None, rejects=rejects_path)

    atomic_write(output_path, write_all)
    return _report(published=True)


def _output_schema(id_col, id_type, interval):
    import pyarrow as pa

    names = ["expected_purchases", "p_alive", "expected_spend", "clv"] + (
        ["clv_lower", "clv_upper"] if interval is not None else [])
    return pa.schema([pa.field(id_col, id_type)] + [pa.field(n, pa.float64()) for n in names])


def _stream(model, input_path, out_tmp, out_kind, rej_tmp, id_col, batch_rows, time_unit, clv_args,
            counts, reasons, progress, total) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    seen = _SeenIds()
    writer = schema = None
    rejects_schema = pa.schema([("row", pa.int64()), ("customer_id", pa.string()), ("reason", pa.string())])
    rej_writer = pcsv.CSVWriter(str(rej_tmp), rejects_schema)
    try:
        for batch, _ in _batches(input_path, [id_col, *RFM_COLUMNS], batch_rows):
            n = batch.num_rows
            if n == 0:
                continue
            first_row = counts["read"] + 1
            counts["read"] += n
            ids = batch.column(id_col)
            if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
                ids = pc.utf8_trim_whitespace(ids)
                ids = pc.if_else(pc.equal(ids, ""), pa.scalar(None, ids.type), ids)
            present = ids.is_valid().to_numpy(zero_copy_only=False)
            dup = seen.duplicates(ids, present)
            values, non_numeric = {}, np.full(n, "", dtype=object)
            for name in reversed(RFM_COLUMNS):  # the first column's reason wins
                if name in batch.schema.names:
                    values[name], bad = _numbers(batch.column(name))
                    non_numeric[bad] = NOT_NUMERIC.format(column=name)
                else:
                    values[name] = np.full(n, np.nan)
            codes = rfm_verdict(values["frequency"], values["recency"], values["T"], values["monetary_value"])
            reason = np.where(codes > 0, verdict_reasons(codes), "").astype(object)
            reason[non_numeric != ""] = non_numeric[non_numeric != ""]
            reason[dup] = DUPLICATE_ID
            reason[~present] = MISSING_ID
            bad = reason != ""
            if bad.any():
                rows = np.flatnonzero(bad)
                id_text = ids.take(pa.array(rows)).cast(pa.string())
                rej_writer.write_table(pa.table({"row": pa.array(rows + first_row, pa.int64()),
                                                 "customer_id": id_text,
                                                 "reason": pa.array(reason[rows].tolist(), pa.string())},
                                                schema=rejects_schema))
                reasons.update(reason[rows].tolist())
            good = np.flatnonzero(~bad)
            if writer is None:
                schema = _output_schema(id_col, ids.type if ids.type != pa.null() else pa.string(),
                                        clv_args["interval"])
                writer = (pq.ParquetWriter(str(out_tmp), schema) if out_kind == "parquet"
                          else pcsv.CSVWriter(str(out_tmp), schema))
            if good.size:
                frame = pd.DataFrame({name: values[name][good] for name in RFM_COLUMNS})
                scores = model.clv(frame, time_unit=time_unit, **clv_args)
                columns = {id_col: ids.take(pa.array(good)).cast(schema.field(0).type)}
                for name in schema.names[1:]:
                    columns[name] = pa.array(scores[name].to_numpy(), pa.float64())
                writer.write_table(pa.table(columns, schema=schema))
                counts["scored"] += int(good.size)
            if progress is not None:
                progress(counts["read"], total)
        if writer is None:  # an empty input: an empty output with the header
            schema = _output_schema(id_col, pa.string(), clv_args["interval"])
            writer = (pq.ParquetWriter(str(out_tmp), schema) if out_kind == "parquet"
                      else pcsv.CSVWriter(str(out_tmp), schema))
    finally:
        rej_writer.close()
        if writer is not None:
            writer.close()
