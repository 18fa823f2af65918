"""Streaming batch scoring of an RFM table (CSV or Parquet) on one machine.

:func:`score_file` reads the table in batches with pyarrow (memory bounded by the batch size, not
by the file), gives each row a verdict with the RFM rules the models validate with
(:func:`clv_forecast.estimators._data.rfm_verdict`), scores the valid rows with the model's vectorised
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

Ids written by pandas as floats (``1.0``, a Parquet float column, or a CSV column of integral-float
text such as ``13904.0``) become integers when every id in the column is integral: the rule the
transaction reader applies (:func:`clv_forecast.transactions._integer_ids_if_lossless`); the column
is then read twice (the id column alone first). A text column whose first batch has no such id is
kept as text.

:func:`score_transactions` scores a raw transaction log: it is summarised first
(:func:`clv_forecast.rfm.summarize`, with the model's time unit and summary settings) and the
per-customer table goes through the same scoring path as a file.

MLflow tracking of ``score`` runs is the CLI's (:func:`clv_forecast.tracking.log_score_run`);
distributed scoring is :mod:`clv_forecast.spark`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import atomic_write
from .csv_guard import guard_table
from .errors import ClvInputError
from .units import DEFAULT_DISCOUNT_RATE, DEFAULT_HORIZON, DEFAULT_MARGIN, DEFAULT_STEP, value_settings_of
from .ids import arrow_ids, escape_control

__all__ = ["ScoreReport", "TooManyRejectsError", "score_file", "score_transactions", "load_scoring_model",
           "summary_settings"]

# the rules of one batch (verdicts, their precedence, number parsing, the scores), shared by every engine;
# the reasons and nonfinite_reasons stay importable from here
from ._score_batch import (DUPLICATE_ID, MISSING_ID, NOT_FINITE, NOT_NUMERIC, RFM_COLUMNS, UNBOUNDED_SPEND,  # noqa: F401
                           ZERO_SPEND, literal_nan, nonfinite_reasons, score_batch)


@dataclass
class ScoreReport:
    """What :func:`score_file` / :func:`score_transactions` did: rows read, scored and rejected,
    rejects by reason, seconds, the total CLV of the scored rows (finite values) and the local model
    file used (None for a model object), the model's time unit. ``summary``: for a transaction log, the summary's ``attrs``
    (its row accounting, see :data:`clv_forecast.rfm.LEFT_OUT_ROWS`) and ``customers`` its length;
    the rows read are then its customers."""

    read: int
    scored: int
    rejected: int
    reasons: dict = field(default_factory=dict)
    seconds: float = 0.0
    output: Path | None = None
    rejects: Path | None = None
    clv_total: float = 0.0
    model_file: Path | None = None
    summary: dict | None = None
    time_unit: str | None = None  # the model's
    #: the CLV settings the scores were computed with (:func:`clv_forecast.units.value_settings`)
    settings: dict | None = None
    #: with an interval: the band of the scored rows' total expected purchases and CLV
    #: (:meth:`clv_forecast.uncertainty.Portfolio.band`)
    portfolio: dict | None = None
    #: why the model is not reliable (its file's ``"reliable": false``); empty for a reliable model
    model_problems: list = field(default_factory=list)
    guarded_cells: int = 0  # text cells written to a CSV with a leading ' (clv_forecast.csv_guard)
    #: with periods or windows: each forecast's total over the scored rows, with its band under an interval
    #: (:meth:`clv_forecast.uncertainty.ColumnTotals.band`), by column name
    column_totals: dict | None = None

    @property
    def reject_share(self) -> float:
        return self.rejected / self.read if self.read else 0.0


class TooManyRejectsError(ClvInputError):
    """More rows rejected than ``max_reject_share``; ``report`` says how many and why."""

    def __init__(self, message: str, report: ScoreReport) -> None:
        super().__init__(message)
        self.report = report


def _model_file(model) -> Path | None:
    """The local JSON file a model is read from: the path itself, or for an MLflow model URI
    (``runs:/<run>/model``, ``models:/NAME/1``, ``models:/NAME@champion``) its
    ``artifacts/clv_model.json`` downloaded (mlflow is imported only then); None for a model object."""
    from .model import ClvModel

    if isinstance(model, ClvModel):
        return None
    text = str(model)
    if text.startswith(("runs:/", "models:/")):
        import os

        from . import tracking

        # the server is asked once, quickly, before MLflow's client (whose retries we bound) is used:
        # a server that is down or hangs fails in seconds, tracked or not
        servers = [tracking.resolve_tracking_uri(None)]
        if text.startswith("models:/"):
            servers.append(os.environ.get("MLFLOW_REGISTRY_URI", "").strip() or None)
        for uri in servers:
            reason = tracking.server_problem(uri)
            if reason is not None:
                raise ClvInputError(f"cannot download the model: the MLflow server {uri} is not reachable "
                                    f"({reason}); start it, or set MLFLOW_TRACKING_URI to where the model is",
                                    argument="model", value=text)
        import mlflow.artifacts

        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=text.rstrip("/") + "/artifacts/clv_model.json")
        except Exception as exc:  # MLflow raises its own exception types; one line for the user
            raise ClvInputError(f"{text}: cannot download the model ({' '.join(str(exc).split())[:300]})") from None
        return Path(local)
    return Path(text)


def load_scoring_model(model):
    """A :class:`~clv_forecast.model.ClvModel`: itself, a model JSON file, or an MLflow model URI
    (``runs:/<run>/model``, ``models:/NAME/1``, ``models:/NAME@champion``) whose
    ``artifacts/clv_model.json`` is downloaded (mlflow is imported only then)."""
    return _load(model)[0]


def _load(model):
    """``(ClvModel, local model file or None)``."""
    from .model import ClvModel

    path = _model_file(model)
    return (model if path is None else ClvModel.load(path)), path


def scoring_setup(model, time_unit=None, *, allow_unreliable: bool = False):
    """The model to score with (:func:`load_scoring_model`; it must have a spend model) and the input's
    time unit in canonical form (``None``: the model's). Shared by the local and the Spark scorers.
    An unreliable model (``"reliable": false`` in its file: the fit did not converge or does not identify
    its parameters) is refused unless ``allow_unreliable=True``; then it is used with a warning."""
    return _setup(model, time_unit, allow_unreliable=allow_unreliable)[:2]


def check_reliable_for_scoring(clv_model, allow_unreliable: bool | None, where=None) -> list[str]:
    """The model's problems (:attr:`ClvModel.problems_`): refused (one line naming the flag) unless
    ``allow_unreliable``, then one warning; returned so that the run can record them. ``None``: checked
    already by the caller (no error, no second warning)."""
    import warnings

    problems = list(clv_model.problems_)
    if not problems or allow_unreliable is None:
        return problems
    name = f"{where}: " if where else ""
    text = "; ".join(problems)
    text = text if len(text) <= 200 else text[:197] + "..."
    if not allow_unreliable:
        raise ClvInputError(f"{name}the model is not reliable ({text}); its scores cannot be trusted: refit it, "
                            "or give {{allow_unreliable=True}} to score with it anyway")
    warnings.warn(f"{name}scoring with an unreliable model ({text})", UserWarning, stacklevel=3)
    return problems


def _setup(model, time_unit=None, *, allow_unreliable: bool = False, known_spend: bool = False):
    """:func:`scoring_setup` plus the local model file (None for a model object) and the model's problems.
    ``known_spend``: the input gives each customer's spend per purchase (no spend model needed)."""
    clv_model, model_file = _load(model)
    if clv_model.spend_ is None and not known_spend:
        raise ClvInputError("the model has no spend model (fit it with a monetary_value column) to score CLV; "
                            "or give each customer's known spend per purchase with {{spend_col}}")
    problems = check_reliable_for_scoring(clv_model, allow_unreliable, model_file)
    if time_unit is not None:
        from .units import TimeUnit

        try:
            time_unit = str(TimeUnit.parse(time_unit))
        except ClvInputError as exc:
            raise ClvInputError(exc.reason.split(": ", 1)[-1], argument="time_unit", value=time_unit) from None
    return clv_model, time_unit, model_file, problems


def check_periods(time_unit: str, horizon, step, discount_rate, period, windows, interval=None,
                  interval_method="delta", residual: bool = False) -> None:
    """With periods or windows (:mod:`clv_forecast.periods`), their plan checked before any data is read (one line
    naming the option); the intervals of a value-by-period table are the delta method's only; the residual value
    beyond the horizon is a column of that table (it needs periods or windows) and a positive discount rate."""
    if period is None and windows is None:
        if residual:
            raise ClvInputError("the value beyond the horizon is a column of the value-by-period table: give "
                                "{{period}} or {{windows}} with it", argument="residual")
        return
    if residual:
        from .units import Rate

        if not Rate.parse(discount_rate).value > 0:
            raise ClvInputError("must be positive with the residual value: without discounting the value of a "
                                "customer who may never leave is infinite", argument="discount_rate",
                                value=discount_rate)
    from .periods import plan_periods

    plan_periods(time_unit, horizon=horizon, period=period, windows=windows, step=step, discount_rate=discount_rate)
    if interval is not None and interval_method != "delta":
        raise ClvInputError("value by period has delta-method intervals only; use delta", argument="interval_method",
                            value=interval_method)


#: with periods or windows, at most this many output values (rows x columns) are scored at a time: the batches
#: are cut to fit (a 60-month table with its intervals has ~400 columns), so memory does not grow with the columns
PERIOD_VALUES_PER_BATCH = 1 << 24


def period_columns(time_unit: str, clv_args: dict) -> list[str] | None:
    """The columns of the wide value-by-period table the settings ``clv_args`` ask for
    (:func:`clv_forecast.periods.output_columns`), None without periods or windows."""
    if clv_args.get("period") is None and clv_args.get("windows") is None:
        return None
    from .periods import output_columns, plan_periods

    plan = plan_periods(time_unit, horizon=clv_args["horizon"], period=clv_args.get("period"),
                        windows=clv_args.get("windows"), step=clv_args["step"], discount_rate=clv_args["discount_rate"])
    return output_columns(plan, clv_args.get("interval"), clv_args.get("residual", False))


def period_batch_rows(batch_rows: int, time_unit: str, clv_args: dict) -> int:
    """The rows scored at a time: ``batch_rows``, fewer for a wide value-by-period table
    (:data:`PERIOD_VALUES_PER_BATCH`)."""
    columns = period_columns(time_unit, clv_args)
    if columns is None:
        return batch_rows
    # the forecasts, their bounds and the delta method's working arrays (about as many again per parameter)
    width = len(columns) * (1 if clv_args.get("interval") is None else 3)
    return max(1, min(batch_rows, PERIOD_VALUES_PER_BATCH // width))


def check_value_settings(time_unit: str, horizon, step, discount_rate) -> None:
    """Check the CLV settings before any data is read, each error naming its argument (the CLI renders
    ``--horizon 12: ...``): horizon and step are durations with a unit, the rate has its period, and
    the horizon is a whole number of steps (:func:`clv_forecast.value.discount_schedule`)."""
    from .units import Duration, Rate
    from .value import discount_schedule

    for argument, value, parse in (("horizon", horizon, Duration.parse), ("step", step, Duration.parse),
                                   ("discount_rate", discount_rate, Rate.parse)):
        try:
            parse(value)
        except ClvInputError as exc:
            raise ClvInputError(exc.reason.split(": ", 1)[-1], argument=argument, value=value) from None
    try:
        discount_schedule(time_unit, horizon, step, discount_rate)
    except ClvInputError as exc:
        if exc.argument is not None:  # names its option already (too many steps)
            raise
        argument = "step" if "CLV step" in exc.reason else "horizon"
        value = step if argument == "step" else horizon
        raise ClvInputError(exc.reason.split(": ", 1)[-1], argument=argument, value=value) from None


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
        for name in columns:
            check_column_type(str(path), name, reader.schema_arrow.field(name).type, id_column=name == columns[0])
        wanted = list(columns)
        try:
            for batch in reader.iter_batches(batch_size=batch_rows, columns=wanted):
                yield batch, None
        except (pa.ArrowInvalid, OSError) as exc:  # a damaged page or a truncated file: name the file
            raise ClvInputError(f"{path}: cannot read Parquet file ({' '.join(str(exc).split())[:300]})") from None
        return
    try:
        header = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16)).schema.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise _csv_error(path, exc) from None
    _require_columns(path, header, columns)
    wanted = list(columns)
    # every column as text: a bad number rejects its row instead of failing the file; empty = missing
    # (only empty: "NA" or "NULL" is an id, clv_forecast.ids; in a number column it is not a number, as in
    # a Parquet text column)
    convert = pcsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                  strings_can_be_null=True, null_values=[""])
    block = int(min(max(batch_rows * 48, 1 << 16), 1 << 28))
    try:
        reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=block), convert_options=convert)
        for batch in reader:
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows), None
    except (pa.ArrowInvalid, OSError) as exc:  # a malformed row, or a truncated/corrupt .gz: name the file
        raise _csv_error(path, exc) from None


def check_column_type(source: str, column: str, type_, *, id_column: bool) -> None:
    """An id column holds integers, floats or text; a number column numbers or text (each text value is then
    read or rejected). Any other type (a list, a struct, a map...) is refused with one line naming the
    source, the column and the type. ``type_``: a pyarrow type, or its name (a Spark type's
    ``simpleString``)."""
    import pyarrow as pa

    if isinstance(type_, pa.DataType):
        if pa.types.is_dictionary(type_):
            type_ = type_.value_type
        fits = (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_string(type_)
                or pa.types.is_large_string(type_)
                or (not id_column and (pa.types.is_decimal(type_) or pa.types.is_boolean(type_))))
    else:
        name = str(type_)
        fits = name in ("string", "tinyint", "smallint", "int", "bigint", "float", "double") or (
            not id_column and (name.startswith("decimal") or name == "boolean"))
    if not fits:
        what = "customer ids must be integers or text" if id_column else "the RFM columns must be numbers (or text)"
        raise ClvInputError(f"{source}: column {column!r} has type {type_}; {what}")


def _csv_error(path: Path, exc: BaseException) -> ClvInputError:
    """pyarrow's CSV error in the project's words: its ``Row #N`` counts the header, "row N" is the N-th data
    record; the echoed text is shortened."""
    import re

    text = " ".join(str(exc).split())
    if "Expected" in text and "columns" in text:  # a ragged row: found and named as the transaction reader does
        from .transactions import _ragged_line

        ragged = _ragged_line(path, ",")
        if ragged is not None:
            return ClvInputError(f"{path}: cannot read CSV file: {ragged}")
    text = re.sub(r"Row #(\d+)", lambda m: f"row {int(m.group(1)) - 1}", text)
    return ClvInputError(f"{path}: cannot read CSV file ({text if len(text) <= 160 else text[:157] + '...'})")


def _require_columns(path: Path, names, columns) -> None:
    """``columns`` (the id column first) are all in the file's ``names``, else :func:`missing_columns_error`."""
    error = missing_columns_error(str(path), names, columns[0], columns[1:], spend_hint=True)
    if error is not None:
        raise error


def missing_columns_error(source: str | None, names, id_col: str, columns, *,
                          spend_hint: bool = False) -> ClvInputError | None:
    """The one-line error of an input without some of its columns (None when none is missing): the columns
    missing and the ones found; a missing id column names the option that gives another (``{{id_col}}``, with
    the first found column that is not an RFM column as the example), and with ``spend_hint`` a missing
    ``monetary_value`` the option of a known spend (``{{spend_col}}``). Shared by the local and Spark scorers."""
    names = [str(n) for n in names]
    missing = [c for c in (id_col, *columns) if c not in names]
    if not missing:
        return None
    text = (f"{source + ': ' if source else ''}column(s) {', '.join(map(repr, missing))} not found; "
            f"columns are: {', '.join(names) or 'none'}")
    if id_col in missing:
        others = [n for n in names if n not in RFM_COLUMNS and n not in columns]
        text += ("; give the customer id column with " + (f"{{{{id_col='{others[0]}'}}}}" if others
                                                           else "{{id_col}}"))
    if spend_hint and RFM_COLUMNS[-1] in missing:
        text += "; with a known spend per purchase instead, give its column with {{spend_col}}"
    return ClvInputError(text)


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


def score_file(model, input_path, output_path, *, horizon=DEFAULT_HORIZON, discount_rate=DEFAULT_DISCOUNT_RATE,
               step=DEFAULT_STEP, margin=DEFAULT_MARGIN,
               id_col: str = "customer_id", batch_rows: int = 1_000_000, rejects_path=None,
               max_reject_share: float = 0.01, interval: float | None = None, interval_method: str = "delta",
               time_unit=None, progress=None, allow_unreliable: bool = False,
               verbatim_csv: bool = False, period=None, windows=None, residual: bool = False,
               spend_col: str | None = None) -> ScoreReport:
    """Score an RFM table file batch by batch; see the module docstring.

    ``spend_col``: a column of the table holding each customer's known spend per future purchase: the CLV
    values the expected purchases with it instead of the spend model's expectation (``ClvModel.clv``'s
    ``future_spend``), so ``monetary_value`` is not read and the model needs no spend model; a missing,
    non-numeric or negative spend rejects its row.

    With ``period`` (``"M"``, ``"Q"``, ``"Y"``) and/or ``windows`` (``"0-1Y,1-3Y,3-5Y"``) the output is the wide
    table of :func:`clv_forecast.periods.value_by_period` (``residual``: with the value beyond the horizon; every
    period's and window's expected purchases and
    value, and their bounds with ``interval``), streamed the same way in batches of at most
    :data:`PERIOD_VALUES_PER_BATCH` values; the report's ``column_totals`` has each column's total (and band).

    ``model``: a ClvModel, a model JSON file or an MLflow URI (:func:`load_scoring_model`).
    ``input_path``: CSV or Parquet with ``id_col``, frequency, recency, T and monetary_value
    (recency and T in the model's time unit unless ``time_unit`` names theirs: then converted).
    ``output_path``: ``.csv`` or ``.parquet``. ``progress``: called as ``progress(rows_read, total)``
    after each batch (``total`` the input's row count when known, else None).
    Returns a :class:`ScoreReport`; raises :class:`ClvInputError` when more than
    ``max_reject_share`` of the rows are rejected (nothing published under ``output_path``).
    A model whose file says ``"reliable": false`` is refused unless ``allow_unreliable=True`` (then a
    warning, and the report's ``model_problems`` say why). The settings default to
    :data:`clv_forecast.units.VALUE_DEFAULTS` (as every door does) and are recorded in the report and in a
    Parquet output's key-value metadata.
    CSV outputs (the scores, the rejects) get the spreadsheet formula guard
    (:mod:`clv_forecast.csv_guard`; ``report.guarded_cells`` counts the cells) unless ``verbatim_csv``.
    """
    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    out_kind, rejects_path = _check_outputs(output_path, rejects_path, batch_rows, max_reject_share, input_path,
                                            model=model)
    clv_model, time_unit, model_file, problems = _setup(model, time_unit, allow_unreliable=allow_unreliable,
                                                        known_spend=spend_col is not None)
    total = None
    if input_path.suffix.lower() in (".parquet", ".pq") and input_path.exists():
        try:
            import pyarrow.parquet as pq

            total = pq.ParquetFile(input_path).metadata.num_rows
        except Exception:  # noqa: BLE001 - unreadable: _batches says why
            total = None
    # checks that need no data: fail before reading (a bad horizon is not a batch-time surprise)
    check_value_settings(clv_model.time_unit_, horizon, step, discount_rate)
    check_periods(clv_model.time_unit_, horizon, step, discount_rate, period, windows, interval, interval_method,
                  residual)
    clv_args = _clv_args(horizon, discount_rate, step, margin, interval, interval_method, period, windows, residual)
    batch_rows = period_batch_rows(batch_rows, clv_model.time_unit_, clv_args)
    if spend_col is not None:  # the known spend is scored under the spend column's usual name
        clv_args["future_spend"] = "monetary_value"

    def id_plan(first_ids):
        column = lambda: (b.column(0) for b, _ in _batches(input_path, [id_col], batch_rows))  # noqa: E731
        return _integer_id_converter(first_ids, column, input_path)

    columns = [id_col, *RFM_COLUMNS[:-1], spend_col or RFM_COLUMNS[-1]]
    batches = (b for b, _ in _batches(input_path, columns, batch_rows))
    return _score(clv_model, batches, output_path, out_kind, rejects_path, source=str(input_path), what="rows",
                  id_col=id_col, id_plan=id_plan, max_reject_share=max_reject_share, time_unit=time_unit,
                  clv_args=clv_args,
                  progress=progress, total=total, started=started, model_file=model_file, problems=problems,
                  verbatim_csv=verbatim_csv, spend_col=spend_col)


def _clv_args(horizon, discount_rate, step, margin, interval, interval_method, period=None, windows=None,
              residual: bool = False) -> dict:
    """The value settings a batch is scored with (periods, windows and the residual only when asked)."""
    out = dict(horizon=horizon, discount_rate=discount_rate, step=step, margin=margin, interval=interval,
               interval_method=interval_method)
    if period is not None or windows is not None:
        out.update(period=period, windows=windows)
    if residual:
        out["residual"] = True
    return out


def summary_settings(model) -> dict:
    """The :func:`~clv_forecast.rfm.summarize` settings a log is scored with: the model's time unit and
    the merge resolution, week start and ``include_first_transaction`` its training table recorded
    (``training_data`` of the model file); a setting the model does not record (a model from
    ``from_params``, an older file) takes ``summarize``'s default."""
    import inspect

    from .rfm import summarize

    training = dict(getattr(model, "training_", None) or {})
    defaults = inspect.signature(summarize).parameters
    out = {"time_unit": str(model.time_unit_)}
    for key in ("merge", "week_start", "include_first_transaction"):
        value = training.get(key)
        out[key] = defaults[key].default if value is None else value
    return out


def score_transactions(model, transactions, output_path, *, observation_end=None, customer_col="customer_id",
                       date_col="date", amount_col=None, quantity_col=None, price_col=None, date_format=None,
                       encoding="utf-8", decimal_comma=False, missing_customer="error", duplicates="keep",
                       returns=None, horizon=DEFAULT_HORIZON, discount_rate=DEFAULT_DISCOUNT_RATE,
                       step=DEFAULT_STEP, margin=DEFAULT_MARGIN,
                       interval: float | None = None, interval_method: str = "delta",
                       batch_rows: int = 1_000_000, rejects_path=None,
                       max_reject_share: float = 0.01, progress=None, allow_unreliable: bool = False,
                       verbatim_csv: bool = False, period=None, windows=None, residual: bool = False) -> ScoreReport:
    """Score a raw transaction log: summarise it per customer, then score the summary as :func:`score_file`
    scores a table (same verdict rules, rejects file, threshold, atomic output, interval).

    The summary (:func:`clv_forecast.rfm.summarize`) runs to ``observation_end`` (default: the last
    transaction) with the model's settings (:func:`summary_settings`), so its numbers equal those of
    ``clv-forecast fit --predictions ... --as-of observation-end`` on the same log. The read options
    (``customer_col`` ... ``returns``) mean what they mean for ``summarize``; CLV needs the amounts
    (``amount_col``, or ``quantity_col`` and ``price_col``). The output's id column is ``customer_id``;
    reject rows are rows of the summary (customers). The summary is held in memory (one row per
    customer); its ``attrs`` (where every log row went) are in the report's ``summary``.
    """
    started = time.perf_counter()
    output_path = Path(output_path)
    source = Path(transactions) if isinstance(transactions, (str, Path)) else None
    out_kind, rejects_path = _check_outputs(output_path, rejects_path, batch_rows, max_reject_share, source,
                                            model=model, input_role="{{transactions}}")
    if amount_col is None and quantity_col is None:
        raise ClvInputError("CLV needs the amounts: give {{amount_col}} (or {{quantity_col}} and {{price_col}})")
    clv_model, _, model_file, problems = _setup(model, allow_unreliable=allow_unreliable)
    check_value_settings(clv_model.time_unit_, horizon, step, discount_rate)
    check_periods(clv_model.time_unit_, horizon, step, discount_rate, period, windows, interval, interval_method,
                  residual)
    clv_args = _clv_args(horizon, discount_rate, step, margin, interval, interval_method, period, windows, residual)
    batch_rows = period_batch_rows(batch_rows, clv_model.time_unit_, clv_args)
    import pyarrow as pa

    from .rfm import summarize

    rfm = summarize(transactions, customer_col=customer_col, date_col=date_col, amount_col=amount_col,
                    quantity_col=quantity_col, price_col=price_col, date_format=date_format, encoding=encoding,
                    decimal_comma=decimal_comma, missing_customer=missing_customer, duplicates=duplicates,
                    returns=returns, observation_end=observation_end, **summary_settings(clv_model))
    attrs = dict(rfm.attrs)
    table = pa.Table.from_pandas(rfm.reset_index()[["customer_id", *RFM_COLUMNS]], preserve_index=False)
    del rfm
    report = _score(clv_model, iter(table.to_batches(max_chunksize=batch_rows)), output_path, out_kind, rejects_path,
                    source=str(transactions) if source is not None else "transactions", what="customers",
                    id_col="customer_id", id_plan=None, max_reject_share=max_reject_share, time_unit=None,
                    clv_args=clv_args, progress=progress, total=table.num_rows, started=started, model_file=model_file, summary=attrs,
                    problems=problems, verbatim_csv=verbatim_csv)
    return report


def score_paths(model, input_path, output_path, rejects_path, *, input_role: str = "{{input_path}}",
                default_rejects: str = ".rejects.csv") -> Path:
    """The one check of a scoring run's files (:func:`clv_forecast._paths.check_paths`), before any work:
    the input (``input_role``) and a local model file are read, the scores and the rejects written; no
    two may be the same file, and no output may hold (or lie inside) another. Returns the rejects path
    (default: the output's name + ``default_rejects``). Shared by the local and the Spark scorers."""
    from ._paths import check_paths
    from .model import ClvModel

    output_path = Path(output_path)
    given = rejects_path is not None
    rejects_path = Path(rejects_path) if given else output_path.with_name(output_path.name + default_rejects)
    model_path = None if isinstance(model, ClvModel) or model is None else model
    check_paths({input_role: input_path, "{{model}}": model_path},
                {"{{output_path}}": output_path, "{{rejects_path}}" if given else "the rejects file": rejects_path})
    return rejects_path


def _check_outputs(output_path: Path, rejects_path, batch_rows, max_reject_share, input_path: Path | None,
                   model=None, input_role: str = "{{input_path}}"):
    """The output's kind and the rejects path, after the checks that need nothing read (the files first:
    :func:`score_paths`)."""
    rejects_path = score_paths(model, input_path, output_path, rejects_path, input_role=input_role)
    out_kind = _kind(output_path, "the output")
    if not (isinstance(batch_rows, int) and not isinstance(batch_rows, bool) and batch_rows >= 1):
        raise ClvInputError("must be a whole number >= 1", argument="batch_rows", value=batch_rows)
    if not (0 <= max_reject_share <= 1):
        raise ClvInputError("must be a share between 0 and 1", argument="max_reject_share", value=max_reject_share)
    return out_kind, rejects_path


def _score(clv_model, batches, output_path, out_kind, rejects_path, *, source, what, id_col, id_plan,
           max_reject_share, time_unit, clv_args, progress, total, started, model_file,
           summary=None, problems=(), verbatim_csv: bool = False, spend_col: str | None = None) -> ScoreReport:
    """The one scoring path of a file and of a summarised log: verdicts, scores and rejects written batch
    by batch to temporary files; the rejects published, then the scores unless there are too many rejects."""
    counts = {"read": 0, "scored": 0, "clv_total": 0.0, "guarded": 0}
    reasons: Counter = Counter()
    portfolio = None
    if clv_args.get("interval") is not None:  # one band over every batch (clv_forecast.uncertainty.Portfolio)
        from .uncertainty import Portfolio, check_level, check_method

        check_level(clv_args["interval"])
        if check_method(clv_args.get("interval_method", "delta")) == "bootstrap" \
                and getattr(clv_model, "bootstrap_", None) is None:  # one line before any work
            raise ClvInputError(f"{model_file or 'the model'}: has no bootstrap parameter vectors; fit it with "
                                "--bootstrap N (ClvModel.bootstrap) and save it again", argument="interval_method",
                                value="bootstrap")
        portfolio = Portfolio()
        clv_args = {**clv_args, "portfolio": portfolio}
    column_totals = None
    if clv_args.get("period") is not None or clv_args.get("windows") is not None:  # each column's total and band
        from .uncertainty import ColumnTotals

        column_totals = ColumnTotals()
        clv_args = {**clv_args, "column_totals": column_totals}

    def report(published: bool = False) -> ScoreReport:
        return ScoreReport(read=counts["read"], scored=counts["scored"], rejected=sum(reasons.values()),
                           reasons=dict(reasons.most_common()), seconds=time.perf_counter() - started,
                           output=output_path if published else None, rejects=rejects_path,
                           clv_total=counts["clv_total"], model_file=model_file, summary=summary,
                           time_unit=str(clv_model.time_unit_), settings=value_settings_of(clv_args),
                           model_problems=list(problems), guarded_cells=counts["guarded"],
                           portfolio=None if portfolio is None or not portfolio.customers
                           else portfolio.band(float(clv_args["interval"])),
                           column_totals=None if column_totals is None or column_totals.totals is None
                           else column_totals.band(clv_args.get("interval")))

    publish(output_path, rejects_path,
            lambda out_tmp, rej_tmp: _stream(clv_model, batches, out_tmp, out_kind, rej_tmp, id_col, id_plan,
                                             time_unit, clv_args, counts, reasons, progress, total, verbatim_csv,
                                             spend_col),
            counts, reasons, max_reject_share, source, what, report)
    return report(published=True)


def publish(output_path: Path, rejects_path: Path, stream, counts: dict, reasons: Counter, max_reject_share: float,
            source, what: str, report) -> None:
    """Run ``stream(out_tmp, rej_tmp)`` (one pass writing the scores and the rejects to temporary files), publish
    the rejects, then the scores unless more than ``max_reject_share`` of the rows were rejected
    (:class:`TooManyRejectsError` with ``report()``). An error or an interrupt leaves neither file half-written."""

    def write_all(out_tmp: Path) -> None:
        atomic_write(rejects_path, lambda rej_tmp: stream(out_tmp, rej_tmp), also=(output_path,))
        rejected = sum(reasons.values())
        share = rejected / counts["read"] if counts["read"] else 0.0
        if share > max_reject_share:
            raise TooManyRejectsError(f"{source}: {rejected} of {counts['read']} {what} rejected ({share:.4%}), "
                                      f"more than max_reject_share {max_reject_share:.4%}; output not written; "
                                      f"rejected {what} and reasons in {rejects_path}", report())

    atomic_write(output_path, write_all)


# -- ids -------------------------------------------------------------------------------------


def _clean_ids(ids):
    """Text ids stripped, blank text and NaN as missing (null): the id rule, :func:`clv_forecast.ids.arrow_ids`."""
    return arrow_ids(ids)[0]


def _read_ids(column, rows: np.ndarray, control: np.ndarray | None):
    """The ids of the rejected ``rows`` as text, as they were read (never blanked, not trimmed), a control
    character written as an escape (``\\x00``: the character itself is what the rejects explain)."""
    import pyarrow as pa

    text = column.take(pa.array(rows)).cast(pa.string())
    if control is None or not control[rows].any():
        return text
    values = text.to_pylist()
    for i in np.flatnonzero(control[rows]):
        values[i] = escape_control(values[i])
    return pa.array(values, pa.string())


def _as_integers(ids, kind: str):
    """Cleaned ids as int64 when every present one is integral (``kind``: 'float' values, or 'text' as
    the transaction reader reads ``13904.0``), else None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind == "float":
        values = pc.drop_null(ids).to_numpy(zero_copy_only=False)
        if not (np.isfinite(values).all() and (values == np.floor(values)).all() and (np.abs(values) < 2.0**63).all()):
            return None
        return pc.cast(ids, pa.int64())
    import polars as pl

    from .transactions import _integer_ids_if_lossless

    text = pl.from_arrow(ids.cast(pa.string()) if isinstance(ids, pa.Array) else pa.array(ids, pa.string()))
    converted = _integer_ids_if_lossless(text)
    return converted.to_arrow().cast(pa.int64()) if converted.dtype == pl.Int64 else None


def _integer_id_converter(first, column_batches, source):
    """For a first batch of (cleaned) ids written as floats (a float column, or text such as ``1.0``), scan
    the whole id column (``column_batches()``): when every id is integral, a function turning a batch's
    ids into int64; else (and for any other first batch) None."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(first.type):
        kind = "float"
    elif (pa.types.is_string(first.type) or pa.types.is_large_string(first.type)) and pc.any(
            pc.match_substring(first, ".")).as_py() and _as_integers(first, "text") is not None:
        kind = "text"
    else:
        return None
    for ids in column_batches():
        if len(ids) and _as_integers(_clean_ids(ids), kind) is None:
            return None

    def convert(ids):
        out = _as_integers(ids, kind)
        if out is None:
            raise ClvInputError(f"{source}: the file changed while it was being scored")
        return out

    return convert


def _writer(path, kind: str, schema, counts: dict | None = None, verbatim_csv: bool = False):
    """The scores' (and the rejects') writer. Parquet without dictionary encoding: ids are unique and the
    scores continuous, so dictionaries only cost time (0.25 s per 10M rows) before Parquet falls back to
    plain pages. CSV: text cells guarded (:func:`clv_forecast.csv_guard.guard_table`), counted in
    ``counts["guarded"]``, unless ``verbatim_csv``."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if kind == "parquet":
        return pq.ParquetWriter(str(path), schema, use_dictionary=False)
    return _GuardedCsvWriter(pcsv.CSVWriter(str(path), schema), counts, verbatim_csv)


class _GuardedCsvWriter:
    """A pyarrow CSV writer whose tables go through the spreadsheet formula guard first."""

    def __init__(self, writer, counts: dict | None, verbatim: bool) -> None:
        self.writer, self.counts, self.verbatim = writer, counts, verbatim

    def write_table(self, table) -> None:
        table, guarded = guard_table(table, self.verbatim)
        if self.counts is not None:
            self.counts["guarded"] = self.counts.get("guarded", 0) + guarded
        self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


def _output_schema(id_col, id_type, clv_args, time_unit=None):
    """The scores' schema; its metadata (the Parquet footer's key-value metadata) records the CLV settings,
    ``clv_forecast.horizon``, ``.discount_rate``, ``.step``, ``.margin``, ``.interval``."""
    import pyarrow as pa

    from .units import parquet_metadata

    from .uncertainty import INTERVAL_COLUMNS

    names = ["expected_purchases", "p_alive", "expected_spend", "clv"] + (
        list(INTERVAL_COLUMNS) if clv_args["interval"] is not None else [])
    wide = None if time_unit is None else period_columns(time_unit, clv_args)
    if wide is not None:  # the wide table of value by period and window
        names = wide
    return pa.schema([pa.field(id_col, id_type)] + [pa.field(n, pa.float64()) for n in names],
                     metadata=parquet_metadata(value_settings_of(clv_args)))


def _stream(model, batches, out_tmp, out_kind, rej_tmp, id_col, id_plan, time_unit, clv_args,
            counts, reasons, progress, total, verbatim_csv: bool = False, spend_col: str | None = None) -> None:
    def score(batch, n, present, control, duplicate, first_row):
        names = batch.schema.names
        columns = {name: batch.column(name) for name in RFM_COLUMNS if name in names}
        if spend_col is not None:  # the known spend per purchase, under the spend column's usual name
            columns[RFM_COLUMNS[-1]] = batch.column(spend_col)
        result = score_batch(model, columns, n, present=present, control=control, duplicate=duplicate,
                             time_unit=time_unit, clv_args=clv_args, first_row=first_row, spend_name=spend_col)
        return result.reason, result.scored, result.scores

    def tally(scores) -> None:
        clv = scores["clv"].to_numpy()
        counts["clv_total"] += float(clv[np.isfinite(clv)].sum())

    stream_scores(batches, score, lambda id_type: _output_schema(id_col, id_type, clv_args, model.time_unit_), tally,
                  out_tmp,
                  out_kind, rej_tmp, id_col, id_plan, counts, reasons, progress, total, verbatim_csv)


def rejects_id_column(id_col: str) -> str:
    """The rejects file's id column: headed like the input's id column (``--id-col``), or ``customer_id`` when
    that name is one of the rejects' own columns (``row``, ``reason``, Spark's ``file``)."""
    return "customer_id" if id_col in ("row", "reason", "file") else id_col


def stream_scores(batches, score, schema_of, tally, out_tmp, out_kind, rej_tmp, id_col, id_plan, counts, reasons,
                  progress, total, verbatim_csv: bool = False) -> None:
    """The one streaming loop of the scorers: per batch, the ids (the one id rule, :mod:`clv_forecast.ids`, and
    duplicates across batches), then ``score(batch, n, present, control, duplicate, first_row)`` -> (reason per
    row, "" when scored; the scored rows' positions; their scores, a DataFrame with the output's columns), the
    rejects and the scores written to their temporary files as they come, ``tally(scores)`` for the totals.
    ``schema_of(id_type)``: the output's schema."""
    import pyarrow as pa

    seen = _SeenIds()
    writer = schema = None
    convert = None
    id_name = rejects_id_column(id_col)
    rejects_schema = pa.schema([("row", pa.int64()), (id_name, pa.string()), ("reason", pa.string())])
    rej_writer = _writer(rej_tmp, "csv", rejects_schema, counts, verbatim_csv)
    try:
        for batch in batches:
            n = batch.num_rows
            if n == 0:
                continue
            first_row = counts["read"] + 1
            ids, control = arrow_ids(batch.column(id_col))  # the one id rule (clv_forecast.ids)
            if writer is None and id_plan is not None:
                convert = id_plan(ids)
            if convert is not None:
                ids = convert(ids)
            counts["read"] += n
            present = ids.is_valid().to_numpy(zero_copy_only=False)
            if control is not None:
                present = present & ~control  # never an id: not remembered for the duplicate check
            dup = seen.duplicates(ids, present)
            reason, good, scores = score(batch, n, present, control, dup, first_row)
            bad = reason != ""
            if bad.any():
                rows = np.flatnonzero(bad)
                id_text = _read_ids(batch.column(id_col), rows, control)
                rej_writer.write_table(pa.table({"row": pa.array(rows + first_row, pa.int64()),
                                                 id_name: id_text,
                                                 "reason": pa.array(reason[rows].tolist(), pa.string())},
                                                schema=rejects_schema))
                reasons.update(reason[rows].tolist())
            if writer is None:
                schema = schema_of(ids.type if ids.type != pa.null() else pa.string())
                writer = _writer(out_tmp, out_kind, schema, counts, verbatim_csv)
            if good.size:
                columns = {id_col: ids.take(pa.array(good)).cast(schema.field(0).type)}
                for name in schema.names[1:]:
                    columns[name] = pa.array(scores[name].to_numpy(), pa.float64())
                writer.write_table(pa.table(columns, schema=schema))
                counts["scored"] += int(good.size)
                tally(scores)
            if progress is not None:
                progress(counts["read"], total)
        if writer is None:  # an empty input: an empty output with the header
            schema = schema_of(pa.string())
            writer = _writer(out_tmp, out_kind, schema, counts, verbatim_csv)
    finally:
        rej_writer.close()
        if writer is not None:
            writer.close()
