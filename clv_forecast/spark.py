"""Scoring an RFM table held in a Spark DataFrame (pyspark, an optional extra: ``clv-forecast[spark]``).

:func:`score_spark` scores each partition with the same vectorised code as the local path
(:mod:`clv_forecast.scoring`): every row gets a verdict from the same RFM rules
(:func:`clv_forecast.btyd._data.rfm_verdict`, texts from :func:`verdict_reasons`), the valid rows are
scored with :meth:`ClvModel.clv`, the invalid ones keep their reason and null numbers.

The model is loaded once on the driver (:func:`clv_forecast.scoring.load_scoring_model`: a ClvModel,
a model JSON file or an MLflow URI) and sent to the executors as its JSON dict in the function's
closure (a few kB; works with classic Spark and Spark Connect alike); each Python worker rebuilds it
with :meth:`ClvModel.from_dict` once per partition.

pyspark is imported only inside the functions: importing this module does not need it.

Differences with :func:`clv_forecast.scoring.score_file`: duplicate ids are not rejected (Spark rows
have no order, so "the later occurrence" is undefined; deduplicate upstream if needed), and there
is no reject-share limit or rejects file: the caller filters on ``reject_reason``.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import ClvInputError

__all__ = ["score_spark", "SCORE_COLUMNS"]

RFM_COLUMNS = ("frequency", "recency", "T", "monetary_value")
SCORE_COLUMNS = ("expected_purchases", "p_alive", "expected_spend", "clv")


def _require_pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise ImportError("clv_forecast.spark needs pyspark: pip install 'clv-forecast[spark]'") from None


def _numbers(column) -> tuple[np.ndarray, np.ndarray]:
    """A pandas column as float64 (NaN where missing) and the mask of its non-numeric values."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan), np.zeros(len(column), bool)
    text = column.astype(object).where(column.notna(), None)
    stripped = text.map(lambda v: v.strip() if isinstance(v, str) else v)
    stripped = stripped.where(stripped != "", None)
    values = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = stripped.notna().to_numpy() & np.isnan(values)
    return values, bad


def _score_frames(model_dict: dict, id_col: str, time_unit, clv_args: dict):
    """The function given to ``mapInPandas``: rebuilds the model once per iterator (partition)."""

    def score(frames):
        import pandas as pd

        from .btyd._data import rfm_verdict, verdict_reasons
        from .model import ClvModel
        from .scoring import MISSING_ID, NOT_NUMERIC

        model = ClvModel.from_dict(model_dict, source="model")
        for frame in frames:
            n = len(frame)
            if n == 0:
                continue
            ids = frame[id_col]
            present = ids.notna().to_numpy()
            if not pd.api.types.is_numeric_dtype(ids.dtype):  # text ids: blank = missing, as in score_file
                blank = ids.map(lambda v: isinstance(v, str) and v.strip() == "").to_numpy(dtype=bool)
                present = present & ~blank
            values, non_numeric = {}, np.full(n, "", dtype=object)
            for name in reversed(RFM_COLUMNS):  # the first column's reason wins, as in score_file
                values[name], bad = _numbers(frame[name])
                non_numeric[bad] = NOT_NUMERIC.format(column=name)
            codes = rfm_verdict(values["frequency"], values["recency"], values["T"], values["monetary_value"])
            reason = np.where(codes > 0, verdict_reasons(codes), "").astype(object)
            reason[non_numeric != ""] = non_numeric[non_numeric != ""]
            reason[~present] = MISSING_ID
            good = np.flatnonzero(reason == "")
            out = {name: np.full(n, np.nan) for name in SCORE_COLUMNS}
            if good.size:
                rfm = pd.DataFrame({name: values[name][good] for name in RFM_COLUMNS})
                scores = model.clv(rfm, time_unit=time_unit, **clv_args)
                for name in SCORE_COLUMNS:
                    out[name][good] = scores[name].to_numpy(dtype=np.float64)
            reason[reason == ""] = None
            yield pd.DataFrame({id_col: ids.to_numpy(), **out, "reject_reason": reason})

    return score


def score_spark(model, sdf, *, horizon="12M", discount_rate="0%/Y", step="1M", margin=1.0,
                id_col: str = "customer_id", time_unit=None):
    """Score a Spark DataFrame of RFM rows; returns a (lazy) Spark DataFrame.

    ``model``: a ClvModel, a model JSON file or an MLflow URI (loaded on the driver).
    ``sdf``: ``id_col``, frequency, recency, T and monetary_value (numbers, or text parsed as numbers;
    recency and T in the model's time unit unless ``time_unit`` names theirs: then converted).
    The result has ``id_col`` (its input type), ``expected_purchases, p_alive, expected_spend, clv``
    (doubles) and ``reject_reason``: null for a scored row; for a rejected row the reason (the RFM
    rule it breaks, ``<column> not numeric`` or ``missing id``) and null numbers. One output row per
    input row; ``horizon``, ``discount_rate``, ``step`` and ``margin`` as in :meth:`ClvModel.clv`.
    """
    _require_pyspark()
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    from .model import json_safe
    from .scoring import scoring_setup
    from .value import discount_schedule

    clv_model, time_unit = scoring_setup(model, time_unit)
    # checks that need no data fail here, on the driver, not in a Spark task
    discount_schedule(clv_model.time_unit_, horizon, step, discount_rate)
    float(margin)
    missing = [c for c in (id_col, *RFM_COLUMNS) if c not in sdf.columns]
    if missing:
        raise ClvInputError(f"column(s) {', '.join(map(repr, missing))} not found; "
                            f"columns are: {', '.join(sdf.columns) or 'none'}")
    # the JSON form save() writes: plain values, what from_dict reads back on the executors
    model_dict = json.loads(json.dumps(json_safe(clv_model.to_dict()), allow_nan=False))
    schema = StructType([sdf.schema[id_col]]
                        + [StructField(name, DoubleType(), True) for name in SCORE_COLUMNS]
                        + [StructField("reject_reason", StringType(), True)])
    clv_args = dict(horizon=horizon, discount_rate=discount_rate, step=step, margin=margin)
    fn = _score_frames(model_dict, id_col, time_unit, clv_args)
    return sdf.select(id_col, *RFM_COLUMNS).mapInPandas(fn, schema)
