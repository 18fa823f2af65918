r"""Per-customer scores of a retention model, written once for every door: :meth:`RetentionModel.predict`, the
batch scorer of ``clv-forecast score`` (:func:`score_retention_file`) and the MLflow pyfunc (:func:`predict_frame`).

A customer is scored from ``renewals``, the number of times he has renewed (he is in his period ``renewals``, a
customer since period 0), and optionally ``churned`` (1: he has left, every score 0; 0 or no column: a customer):

* ``p_renew``: the probability that he renews at the end of his current period, ``r(n + 1) = S(n + 1) / S(n)``;
* ``expected_remaining_lifetime``: his expected future renewals, ``sum_{t > n} S(t) / S(n)`` (infinite when the
  survival curve's tail is too heavy: sBG ``alpha <= 1``; a number, not an error: the model's answer);
* ``derl``: his discounted expected residual lifetime at a discount rate ``d`` per period (Fader & Hardie 2010,
  eq. 6; :mod:`._base`), finite for every ``d >= MIN_DISCOUNT_RATE``;
* ``residual_value``: ``margin * derl``, ``margin`` the money he leaves per period.

The kernels run once per distinct ``renewals`` (:func:`customer_scores`), so a table of any length costs what
its longest tenure costs.

A row of a scored file is rejected, with its 1-based row number, its id and one reason naming the column, when
``renewals`` is missing, not a number, negative, not a whole number or above :data:`~._data.MAX_PERIODS`,
``churned`` (when the column is there) is missing, not a number or not 0 or 1, its id is missing, repeated or
holds a control character: the rules and their precedence of the purchase models' scorer
(:mod:`clv_forecast._score_batch`), whose file reading, id rules, rejects file, threshold and atomic output
:func:`score_retention_file` shares (:mod:`clv_forecast.scoring`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ClvInputError, row_error
from ...units import DEFAULT_DISCOUNT_RATE
from ._data import MAX_PERIODS

__all__ = ["SCORE_COLUMNS", "INPUT_COLUMNS", "RetentionScoreReport", "customer_scores", "discount_per_period",
           "predict_frame", "renewal_verdicts", "score_retention_file"]

#: the per-customer scores, in this order
SCORE_COLUMNS = ("p_renew", "expected_remaining_lifetime", "derl", "residual_value")
#: the columns a scored table has: ``renewals`` (required) and ``churned`` (optional)
INPUT_COLUMNS = ("renewals", "churned")

# the reasons of a rejected row (besides the id's, shared with the purchase models' scorer)
_REASONS = {
    "missing": "{column} missing",
    "not_numeric": "{column} not numeric",
    "negative": "renewals negative",
    "not_whole": "renewals not a whole number",
    "too_large": f"renewals above {MAX_PERIODS:,}",
    "not_flag": "churned not 0 or 1",
}


# -- the numbers ---------------------------------------------------------------------------------------


def discount_per_period(model, discount_rate) -> float:
    """The discount rate per period of ``model``: a number (or its text, ``"0.1"``) is per period, a rate with its
    period (``"10%/Y"``) is converted to the model's (:meth:`RetentionModel._discount`: one line naming
    ``discount_rate`` for a rate the model cannot take)."""
    if isinstance(discount_rate, str):
        try:
            discount_rate = float(discount_rate)
        except ValueError:
            pass
    return model._discount(discount_rate)


def _margin(margin) -> float:
    from ._base import _margin as check

    return check(margin)


def customer_scores(model, renewals, churned=None, *, d: float, margin: float,
                    lifetime: bool = True) -> pd.DataFrame:
    """The columns of :data:`SCORE_COLUMNS` for valid rows (``renewals`` whole numbers from 0 to
    :data:`~._data.MAX_PERIODS`, ``churned`` 0/1 or None), ``d`` the discount rate per period: the kernels once
    per distinct ``renewals``; 0 for a customer who has left. Index 0..n-1. Without ``lifetime``, no
    ``expected_remaining_lifetime`` (:meth:`RetentionModel.predict`: a kernel a model may not have)."""
    params = model._check_fitted()
    cls = type(model)
    n = np.asarray(renewals, dtype=np.float64)
    values, inverse = np.unique(n, return_inverse=True)
    columns = {"p_renew": cls._retention_rate(params, values + 1.0)[inverse]}
    if lifetime:
        columns["expected_remaining_lifetime"] = cls._expected_remaining(params, values)[inverse]
    columns["derl"] = cls._derl(params, d, values)[inverse]
    if churned is not None:
        active = np.asarray(churned, dtype=np.float64) == 0
        columns = {k: np.where(active, v, 0.0) for k, v in columns.items()}
    columns["residual_value"] = float(margin) * columns["derl"]
    return pd.DataFrame(columns)


def renewal_verdicts(renewals, churned=None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``renewals`` and ``churned`` as float64 (NaN where missing; ``churned`` None without the column) and each
    row's reason (``""``: valid), naming the column; the first column's reason wins, and a value that is not a
    number wins over a rule. The columns: pyarrow arrays or pandas Series (the number rule of scoring,
    :func:`clv_forecast._score_batch.numbers`)."""
    from ..._score_batch import numbers

    r, r_text = numbers(renewals)
    reason = np.full(len(r), "", dtype=object)
    c = None
    if churned is not None:
        c, c_text = numbers(churned)
        with np.errstate(invalid="ignore"):
            reason[(c != 0) & (c != 1)] = _REASONS["not_flag"]
        reason[np.isnan(c)] = _REASONS["missing"].format(column="churned")
        reason[c_text] = _REASONS["not_numeric"].format(column="churned")
    with np.errstate(invalid="ignore"):
        reason[r != np.floor(r)] = _REASONS["not_whole"]
        reason[r > MAX_PERIODS] = _REASONS["too_large"]
        reason[r < 0] = _REASONS["negative"]
    reason[np.isnan(r)] = _REASONS["missing"].format(column="renewals")
    reason[r_text] = _REASONS["not_numeric"].format(column="renewals")
    return r, c, reason


def predict_frame(model, frame, discount_rate=DEFAULT_DISCOUNT_RATE, margin=1.0, *, source: str = "model input"):
    """The scores of every row of ``frame`` (a DataFrame with ``renewals``, optionally ``churned``), in its order
    (index 0..n-1): the MLflow pyfunc's prediction. A row the scorer would reject is one
    :class:`ClvInputError` naming the column, the rows and the reason (a model's prediction has no rejects file)."""
    frame = pd.DataFrame(frame)
    if "renewals" not in frame.columns:
        raise ClvInputError(f"{source}: column 'renewals' not found (the renewals of each customer, whole numbers "
                            f">= 0; optionally 'churned', 0 or 1); columns are: "
                            f"{', '.join(map(str, frame.columns)) or 'none'}")
    d = discount_per_period(model, discount_rate)
    margin = _margin(margin)
    churned_col = frame["churned"].reset_index(drop=True) if "churned" in frame.columns else None
    r, c, reason = renewal_verdicts(frame["renewals"].reset_index(drop=True), churned_col)
    bad = np.flatnonzero(reason != "")
    if bad.size:
        first = reason[bad[0]]
        column = "churned" if first.startswith("churned") else "renewals"
        rows = bad[reason[bad] == first]
        raise row_error(source, column, (rows + 1).tolist(), frame[column].iloc[rows[:5]].tolist(),
                        first.split(" ", 1)[1])
    return customer_scores(model, r, c, d=d, margin=margin)


# -- the scorer ------------------------------------------------------------------------------------------


@dataclass
class RetentionScoreReport:
    """What :func:`score_retention_file` did: the fields of :class:`clv_forecast.scoring.ScoreReport` that a
    retention model has, and the totals of its scores."""

    read: int
    scored: int
    rejected: int
    reasons: dict = field(default_factory=dict)
    seconds: float = 0.0
    output: Path | None = None
    rejects: Path | None = None
    model_file: Path | None = None
    time_unit: str | None = None  # the model's period
    discount_rate: str = ""  # as given
    discount_rate_per_period: float = float("nan")
    margin: float = 1.0
    residual_value_total: float = 0.0
    derl_total: float = 0.0
    #: the scored rows whose expected remaining lifetime is infinite (alpha <= 1: a heavy tail)
    infinite_lifetimes: int = 0
    model_problems: list = field(default_factory=list)
    guarded_cells: int = 0
    # (no transaction log, no CLV settings: ``clv-forecast score`` prints and logs these fields as for a purchase
    # model's report)
    summary: dict | None = None
    settings: dict | None = None

    @property
    def reject_share(self) -> float:
        return self.rejected / self.read if self.read else 0.0

    @property
    def totals(self) -> dict[str, float]:
        """The report's totals, logged as metrics (a purchase model's report logs ``clv_total``)."""
        return {"residual_value_total": self.residual_value_total, "derl_total": self.derl_total,
                "infinite_lifetimes": float(self.infinite_lifetimes)}


def load_retention_model(model):
    """``(RetentionModel, its local file or None)``: the model itself, or a retention model file."""
    from ._base import RetentionModel

    if isinstance(model, RetentionModel):
        return model, None
    path = Path(str(model))
    return RetentionModel.load(path), path


def _header(path: Path) -> list[str]:
    """The column names of a CSV or Parquet input (one line naming the file when it cannot be read)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from ...scoring import _csv_error, _kind

    if not path.exists():
        raise ClvInputError(f"{path}: input file not found")
    if _kind(path, "the input") == "parquet":
        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ClvInputError(f"{path}: cannot read Parquet file ({exc})") from None
    try:
        return list(pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16)).schema.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _csv_error(path, exc) from None


def _output_schema(id_col: str, id_type, d: float, margin: float, discount_rate):
    """The scores' schema; its metadata (a Parquet file's key-value metadata) records the settings."""
    import pyarrow as pa

    meta = {b"clv_forecast.discount_rate": str(discount_rate).encode(),
            b"clv_forecast.discount_rate_per_period": repr(d).encode(), b"clv_forecast.margin": repr(margin).encode()}
    return pa.schema([pa.field(id_col, id_type)] + [pa.field(n, pa.float64()) for n in SCORE_COLUMNS], metadata=meta)


def score_retention_file(model, input_path, output_path, *, discount_rate=DEFAULT_DISCOUNT_RATE, margin=1.0,
                         id_col: str = "customer_id", batch_rows: int = 1_000_000, rejects_path=None,
                         max_reject_share: float = 0.01, allow_unreliable: bool = False, progress=None,
                         verbatim_csv: bool = False, model_file=None) -> RetentionScoreReport:
    """Score a table of customers (CSV or Parquet: ``id_col``, ``renewals``, optionally ``churned``) with a retention
    model, batch by batch, into ``output_path`` (``.csv`` or ``.parquet``): ``id_col`` and the columns of
    :data:`SCORE_COLUMNS`, one row per scored row, in the input's order.

    ``model``: a :class:`~._base.RetentionModel` or its model file (``model_file``: the file a given model was
    read from, for the report). ``discount_rate``: per period (a number) or with its period (``"10%/Y"``, the
    model's period must be known); ``margin``: money per period. Every row is scored or written to the rejects
    file (default ``<output>.rejects.csv``: ``row``, ``customer_id``, ``reason``; the module docstring's rules);
    more rejects than ``max_reject_share`` of the rows raises
    :class:`~clv_forecast.scoring.TooManyRejectsError` and publishes the rejects only. Both files are written to
    temporary files renamed at the end (an error or an interrupt leaves neither half-written). An unreliable
    model is refused unless ``allow_unreliable`` (then a warning). CSV text cells get the spreadsheet formula guard
    unless ``verbatim_csv``."""
    from ...scoring import _batches, _check_outputs, _integer_id_converter, check_reliable_for_scoring, publish

    started = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    out_kind, rejects_path = _check_outputs(output_path, rejects_path, batch_rows, max_reject_share, input_path,
                                            model=model if isinstance(model, (str, Path)) else model_file)
    retention, path = load_retention_model(model)
    model_file = Path(model_file) if model_file is not None else path
    problems = check_reliable_for_scoring(retention, allow_unreliable, model_file)
    d = discount_per_period(retention, discount_rate)  # checked before any row is read
    margin = _margin(margin)
    names = _header(input_path)
    columns = [id_col, "renewals"] + (["churned"] if "churned" in names and id_col != "churned" else [])
    counts = {"read": 0, "scored": 0, "residual": 0.0, "derl": 0.0, "infinite": 0, "guarded": 0}
    reasons: Counter = Counter()

    def report(published: bool = False) -> RetentionScoreReport:
        return RetentionScoreReport(
            read=counts["read"], scored=counts["scored"], rejected=sum(reasons.values()),
            reasons=dict(reasons.most_common()), seconds=time.perf_counter() - started,
            output=output_path if published else None, rejects=rejects_path, model_file=model_file,
            time_unit=None if retention.time_unit_ is None else str(retention.time_unit_),
            discount_rate=str(discount_rate), discount_rate_per_period=d, margin=margin,
            residual_value_total=counts["residual"], derl_total=counts["derl"], infinite_lifetimes=counts["infinite"],
            model_problems=list(problems), guarded_cells=counts["guarded"])

    def id_plan(first_ids):
        column = lambda: (b.column(0) for b, _ in _batches(input_path, [id_col], batch_rows))  # noqa: E731
        return _integer_id_converter(first_ids, column, input_path)

    total = None
    if input_path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        total = pq.ParquetFile(input_path).metadata.num_rows  # (readable: _header read its schema)
    batches = (b for b, _ in _batches(input_path, columns, batch_rows))

    publish(output_path, rejects_path,
            lambda out_tmp, rej_tmp: _stream(retention, batches, out_tmp, out_kind, rej_tmp, id_col, id_plan, d,
                                             margin, discount_rate, counts, reasons, progress, total, verbatim_csv),
            counts, reasons, max_reject_share, input_path, "rows", report)
    return report(published=True)


def _stream(model, batches, out_tmp, out_kind, rej_tmp, id_col, id_plan, d, margin, discount_rate, counts, reasons,
            progress, total, verbatim_csv) -> None:
    """Every batch (:func:`clv_forecast.scoring.stream_scores`): verdicts of ``renewals`` and ``churned``, scores of
    the valid rows."""
    from ...ids import CONTROL_REASON
    from ...scoring import DUPLICATE_ID, MISSING_ID, stream_scores

    def score(batch, n, present, control, duplicate, first_row):
        names = batch.schema.names
        r, c, reason = renewal_verdicts(batch.column("renewals"),
                                        batch.column("churned") if "churned" in names else None)
        reason[duplicate] = DUPLICATE_ID
        reason[~present] = MISSING_ID
        if control is not None:
            reason[control] = CONTROL_REASON
        good = np.flatnonzero(reason == "")
        scores = (customer_scores(model, r[good], None if c is None else c[good], d=d, margin=margin)
                  if good.size else None)
        return reason, good, scores

    def tally(scores) -> None:
        counts["residual"] += float(scores["residual_value"].sum())
        counts["derl"] += float(scores["derl"].sum())
        counts["infinite"] += int(np.isinf(scores["expected_remaining_lifetime"].to_numpy()).sum())

    stream_scores(batches, score, lambda id_type: _output_schema(id_col, id_type, d, margin, discount_rate), tally,
                  out_tmp, out_kind, rej_tmp, id_col, id_plan, counts, reasons, progress, total, verbatim_csv)
