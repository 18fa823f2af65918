"""Historical CLV formulas next to the predictive BG/NBD + Gamma-Gamma CLV, and a holdout backtest.

Historical methods (all computed from the RFM table alone, in the table's time unit as the period; a
window of length ``H`` is the horizon of :func:`side_by_side` or the holdout window of :func:`backtest`).
Each method predicts a number of purchases per period and a value per purchase; its CLV over the window is
``margin x value per purchase x purchases per period x discounted active time`` where the active time is
capped at ``H`` and discounted with :func:`clv_forecast.historical.discounted_duration` (each period's
value counted at its end, as the core counts each step's purchases at the step's end):

* ``simple``: the per-customer simple CLV (documents 001-003): his own APV x his own purchase rate
  (counted purchases / T) x his own observed lifespan (last - first purchase), capped at ``H``;
* ``run_rate``: his own APV x his own rate for the whole window (the formula's assumption that every
  customer is retained for the whole horizon);
* ``ltv_profit``: engagement duration x his own average profit per period (document 000), the
  engagement duration being the aggregate average lifespan (mean observed last - first), capped at ``H``;
* ``average``: the aggregate simple CLV (aggregate APV x pooled APFR x average lifespan, capped at
  ``H``), the same for every customer (the documents' usage);
* ``segment_average``: the same aggregate formula computed within the customer's segment (document
  002: "segmenting customers and calculating by segments").

Customers without a counted purchase (one-time buyers in a table of repeat purchases) get the aggregate
APV (theirs is unknown) and a purchase rate of 0. Nothing is estimated from the holdout period.

Default segments (:func:`rfm_segments`): one-time buyers (``frequency == 0``) form segment
``"one-time"``; repeat buyers are scored by terciles, among repeat buyers, of frequency (``F1`` lowest to
``F3``) and of time since the last purchase ``T - recency`` (``R3`` the most recent), labelled e.g.
``"R3F2"`` (ties share a score: terciles of the average rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import ClvInputError
from .units import DEFAULT_DISCOUNT_RATE, DEFAULT_HORIZON, DEFAULT_MARGIN, TimeUnit

__all__ = ["side_by_side", "backtest", "Comparison", "Backtest", "rfm_segments", "spearman", "top_share",
           "HISTORICAL_METHODS", "METHOD_DESCRIPTIONS", "SEGMENT_CODES"]

HISTORICAL_METHODS = ("simple", "run_rate", "ltv_profit", "average", "segment_average")
#: each historical method in one sentence (the module docstring's definitions), for readers of the report
METHOD_DESCRIPTIONS = {
    "simple": "the customer's own average purchase value x his own purchase rate (repeat purchases per period) x "
              "his own observed lifespan (first to last purchase), the lifespan capped at the window: the simple "
              "CLV formula of the source documents",
    "run_rate": "the customer's own average purchase value x his own purchase rate, for the whole window (assumes "
                "every customer stays for all of it)",
    "ltv_profit": "the customer's own average value per period x the average observed lifespan of all customers "
                  "(the engagement duration), capped at the window",
    "average": "one value for everybody: the average purchase value x the average purchase rate x the average "
               "lifespan, over all customers",
    "segment_average": "the same aggregate formula as average, computed within the customer's segment (see the "
                       "segment codes)",
}
#: what the codes of :func:`rfm_segments` mean, in words
SEGMENT_CODES = ("one-time: no repeat purchase in the calibration period. R<r>F<f> (repeat buyers only): F is the "
                 "tercile of the number of repeat purchases among repeat buyers (F1 the fewest, F3 the most), R the "
                 "tercile of the time since the last purchase (R1 the longest ago, R3 the most recent); ties share "
                 "a tercile. R3F3: frequent buyers who bought recently.")
METRICS = ("mae", "rmse", "total_error_pct", "spearman", "top10_share", "top20_share", "gini")


def _json(value):
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def _records(frame: pd.DataFrame) -> list:
    return _json(frame.reset_index().to_dict(orient="records"))


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------


def spearman(a, b) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks, as ``scipy.stats.spearmanr``);
    NaN when either side is constant."""
    ra = pd.Series(np.asarray(a, dtype=float)).rank().to_numpy()
    rb = pd.Series(np.asarray(b, dtype=float)).rank().to_numpy()
    if len(ra) < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def top_share(predicted, actual, share: float) -> float:
    """Share of the total ``actual`` value captured by the top ``ceil(share x n)`` customers ranked by
    ``predicted`` (highest first). Customers tied with the last one taken count pro rata (each tied
    customer for ``slots left / customers tied``), so that ties are not broken by row order."""
    p = np.asarray(predicted, dtype=float)
    a = np.asarray(actual, dtype=float)
    total = a.sum()
    if len(p) == 0 or total == 0:
        return float("nan")
    k = min(len(p), math.ceil(share * len(p) - 1e-9))
    threshold = np.sort(p)[::-1][k - 1]
    above = p > threshold
    tied = p == threshold
    slots = k - above.sum()
    return float((a[above].sum() + a[tied].sum() * slots / tied.sum()) / total)


def _gains_area(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Area under the gains curve (share of customers ranked by ``predicted``, highest first, against the
    share of the total ``actual`` they hold); customers tied on ``predicted`` share their value pro rata (the
    curve is a straight line across a tie)."""
    frame = pd.DataFrame({"p": predicted, "a": actual}).groupby("p", sort=True)["a"].agg(["sum", "size"])
    frame = frame.iloc[::-1]  # highest prediction first
    share_n = frame["size"].to_numpy(dtype=float) / len(predicted)
    share_a = frame["sum"].to_numpy(dtype=float) / actual.sum()
    before = np.concatenate([[0.0], np.cumsum(share_a)[:-1]])
    return float(np.sum(share_n * (before + share_a / 2)))


def gini(predicted, actual) -> float:
    """Gini coefficient of the gains chart, relative to a perfect ranking: ``(2 A - 1) / (2 A* - 1)`` with
    ``A`` the area under the gains curve of ``predicted`` and ``A*`` that of ranking by ``actual`` itself.
    1: the customers are ranked exactly as they turned out; 0: no better than a random order; negative:
    worse. Ties count pro rata (:func:`_gains_area`). NaN when nothing was spent or every actual value is
    the same."""
    p = np.asarray(predicted, dtype=float)
    a = np.asarray(actual, dtype=float)
    if len(p) == 0 or a.sum() == 0 or not np.all(np.isfinite(p)):
        return float("nan")
    perfect = 2 * _gains_area(a, a) - 1
    if perfect <= 0:
        return float("nan")
    value = float((2 * _gains_area(p, a) - 1) / perfect)
    return 0.0 if abs(value) < 1e-12 else value  # a tie everywhere is 0 (not -1e-17 from rounding)


# --------------------------------------------------------------------------------------------
# segments and historical predictions
# --------------------------------------------------------------------------------------------


def _tercile(values: pd.Series) -> pd.Series:
    pct = values.rank(method="average", pct=True)
    return pd.Series(np.where(pct <= 1 / 3, 1, np.where(pct <= 2 / 3, 2, 3)), index=values.index)


def rfm_segments(rfm: pd.DataFrame) -> pd.Series:
    """Default segments (see the module docstring): ``"one-time"`` or ``"R<r>F<f>"`` for repeat buyers."""
    out = pd.Series("one-time", index=rfm.index, dtype=object)
    repeat = rfm["frequency"] > 0
    if repeat.any():
        sub = rfm.loc[repeat]
        f = _tercile(sub["frequency"].astype(float))
        r = _tercile(-(sub["T"] - sub["recency"]).astype(float))
        out.loc[repeat] = "R" + r.astype(str) + "F" + f.astype(str)
    out.name = "segment"
    return out


def _segments(rfm: pd.DataFrame, segments) -> pd.Series:
    if segments is None:
        return rfm_segments(rfm)
    if isinstance(segments, str):
        if segments not in rfm.columns:
            raise ClvInputError(f"no such column in the RFM table; columns are: {', '.join(map(str, rfm.columns))}",
                                argument="segments", value=segments)
        seg = rfm[segments]
    else:
        seg = pd.Series(segments) if not isinstance(segments, pd.Series) else segments
        if isinstance(segments, pd.Series) and not seg.index.equals(rfm.index):
            seg = seg.reindex(rfm.index)
        elif len(seg) == len(rfm):
            seg = pd.Series(seg.to_numpy(), index=rfm.index)
        if len(seg) != len(rfm):
            raise ClvInputError(f"has {len(seg)} values for {len(rfm)} customers", argument="segments", value="...")
    if seg.isna().any():
        raise ClvInputError(f"{int(seg.isna().sum())} customer(s) without a segment", argument="segments", value="...")
    return pd.Series(seg.to_numpy(), index=rfm.index, name="segment")


def _unit(rfm: pd.DataFrame) -> TimeUnit:
    unit = rfm.attrs.get("time_unit") if hasattr(rfm, "attrs") else None
    if unit is None:
        raise ClvInputError("RFM table: time unit unknown; build it with summarize() (attrs['time_unit'])")
    return TimeUnit.parse(unit)


def _historical(rfm: pd.DataFrame, window: float, unit: TimeUnit, margin: float, discount_rate, segment: pd.Series):
    """Per method: (expected purchases in the window, CLV over the window), arrays per customer."""
    from .historical import aggregate_summary, customer_summary, discounted_duration

    period = f"{unit}" if unit.n != 1 else f"1{unit.base}"
    own = customer_summary(rfm, period=period)
    agg = aggregate_summary(rfm, period=period)
    apv, rate, life = own["apv"].to_numpy(), own["apfr"].to_numpy(), own["lifespan"].to_numpy()

    def disc(duration):
        return discounted_duration(np.minimum(duration, window), discount_rate, period=period)

    # segment aggregates: APV (overall APV when the segment has no counted purchase), pooled rate, mean lifespan
    T = rfm["T"].to_numpy(dtype=float) * (TimeUnit.parse(rfm.attrs["time_unit"]).days / unit.days)
    n = rate * T  # counted purchases
    frame = pd.DataFrame({"seg": segment.to_numpy(), "n": n, "rev": n * apv, "T": T, "life": life})
    g = frame.groupby("seg", sort=False).agg(n=("n", "sum"), rev=("rev", "sum"), T=("T", "sum"), life=("life", "mean"))
    seg_apv = np.where(g["n"] > 0, g["rev"] / g["n"].where(g["n"] > 0, 1.0), agg["apv"])
    seg = pd.DataFrame({"apv": seg_apv, "rate": g["n"] / g["T"], "life": g["life"]}, index=g.index)
    s = seg.reindex(frame["seg"]).to_numpy()
    ones = np.ones(len(rfm))
    parts = {
        "simple": (apv, rate, life),
        "run_rate": (apv, rate, np.full(len(rfm), window)),
        "ltv_profit": (apv, rate, agg["lifespan"] * ones),
        "average": (agg["apv"] * ones, agg["apfr"] * ones, agg["lifespan"] * ones),
        "segment_average": (s[:, 0], s[:, 1], s[:, 2]),
    }
    out = {}
    for method, (value, per_period, duration) in parts.items():
        capped = np.minimum(duration, window)
        out[method] = (per_period * capped, margin * value * per_period * disc(duration))
    return out


def _check_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(margin) and margin >= 0):
        raise ClvInputError("must be a non-negative number (share of revenue kept as profit), e.g. 0.3",
                            argument="margin", value=margin)
    return float(margin)


# --------------------------------------------------------------------------------------------
# side by side
# --------------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Result of :func:`side_by_side`."""

    customers: pd.DataFrame
    segments: pd.DataFrame
    spearman: pd.Series
    disagreements: pd.DataFrame
    horizon: str = ""
    settings: dict = field(default_factory=dict)
    model_name: str = ""  #: the predictive model's purchase model (its display name)

    def _repr_html_(self) -> str:
        """The report's tables of the comparison (by segment, rank agreement), for notebooks."""
        from .report import comparison_html

        return comparison_html(self)

    def to_dict(self) -> dict:
        return _json({"horizon": self.horizon, **self.settings, "customers": len(self.customers),
                      "spearman": self.spearman.to_dict(), "segments": _records(self.segments),
                      "disagreements": _records(self.disagreements)})


def side_by_side(model, rfm: pd.DataFrame, *, horizon=DEFAULT_HORIZON, discount_rate=DEFAULT_DISCOUNT_RATE,
                 margin=DEFAULT_MARGIN, segments=None,
                 top: int = 20) -> Comparison:
    """Every historical CLV method next to the predictive CLV, per customer and per segment.

    ``customers``: per customer ``frequency, recency, T, monetary_value, segment``, one ``clv_<method>``
    column per historical method (module docstring), ``clv_predictive`` (:meth:`ClvModel.clv` with the
    same ``horizon``, ``discount_rate``, monthly steps and ``margin``), ``p_alive`` and
    ``expected_purchases`` (over the horizon).
    ``segments``: by ``segments`` (a column name of ``rfm`` or values per customer; default
    :func:`rfm_segments`): ``customers`` and the mean of every CLV column, ``p_alive`` and
    ``expected_purchases``, sorted by mean predictive CLV.
    ``spearman``: rank correlation of each historical method with ``clv_predictive`` (NaN for a
    constant method such as ``average``).
    ``disagreements``: the ``top`` customers with the largest absolute gap ``|clv_<method> -
    clv_predictive|`` over the methods, in money (columns ``method``: the method with the largest
    gap, ``gap`` = that method minus predictive, with ``frequency``, ``p_alive``, ``clv_predictive``).
    """
    from .units import Duration

    margin = _check_margin(margin)
    if not (isinstance(top, (int, np.integer)) and not isinstance(top, bool) and top >= 0):
        raise ClvInputError("must be a whole number >= 0", argument="top", value=top)
    unit = _unit(rfm)
    try:
        window = Duration.parse(horizon).to(unit)
    except ClvInputError as exc:
        raise ClvInputError(exc.reason, argument="horizon", value=horizon) from None
    seg = _segments(rfm, segments)
    pred = model.clv(rfm, horizon=horizon, discount_rate=discount_rate, step=_step(horizon, window, unit),
                     margin=margin)
    hist = _historical(rfm, window, unit, margin, discount_rate, seg)
    cols = [c for c in ("frequency", "recency", "T", "monetary_value") if c in rfm.columns]
    customers = rfm[cols].copy()
    customers["segment"] = seg
    for method, (_, value) in hist.items():
        customers[f"clv_{method}"] = value
    customers["clv_predictive"] = pred["clv"].to_numpy()
    customers["p_alive"] = pred["p_alive"].to_numpy()
    customers["expected_purchases"] = pred["expected_purchases"].to_numpy()
    clv_cols = [f"clv_{m}" for m in hist] + ["clv_predictive"]
    segments_table = customers.groupby("segment")[clv_cols + ["p_alive", "expected_purchases"]].mean()
    segments_table.insert(0, "customers", customers.groupby("segment").size())
    segments_table = segments_table.sort_values("clv_predictive", ascending=False)
    rho = pd.Series({m: spearman(customers[f"clv_{m}"], customers["clv_predictive"]) for m in hist}, name="spearman")
    gaps = customers[[f"clv_{m}" for m in hist]].sub(customers["clv_predictive"], axis=0)
    gaps.columns = list(hist)
    worst = gaps.abs().idxmax(axis=1)
    dis = customers[["frequency", "segment", "p_alive", "clv_predictive"]].copy()
    dis["method"] = worst
    dis["gap"] = gaps.to_numpy()[np.arange(len(gaps)), gaps.columns.get_indexer(worst)]
    dis["abs_gap"] = dis["gap"].abs()
    dis = dis.sort_values("abs_gap", ascending=False, kind="stable").head(top)
    return Comparison(customers, segments_table, rho, dis, horizon=str(horizon),
                      settings={"discount_rate": str(discount_rate), "margin": margin},
                      model_name=_purchase_name(model))


def _step(horizon, window: float, unit: TimeUnit) -> str:
    """Steps of the predictive CLV's discounting: monthly when the horizon is whole months or years, else one
    step per table unit when the window is a whole number of them, else one step (the whole window)."""
    from .units import Duration

    d = Duration.parse(horizon)
    if d.unit.base in ("M", "Y") and float(d.value * d.unit.n).is_integer():
        return "1M"
    if float(window).is_integer() and window >= 1:
        return f"{unit.n:g}{unit.base}"
    return str(horizon)


# --------------------------------------------------------------------------------------------
# backtest
# --------------------------------------------------------------------------------------------


@dataclass
class Backtest:
    """Result of :func:`backtest`."""

    metrics: pd.DataFrame
    scores: pd.DataFrame
    purchases: pd.DataFrame
    horizon: str = ""
    settings: dict = field(default_factory=dict)
    model_name: str = ""  #: the ``predictive`` row's purchase model (its display name)

    def _repr_html_(self) -> str:
        """The report's backtest tables (every method's scores, the purchases by frequency), for notebooks."""
        from .report import backtest_html

        return backtest_html(self)

    def to_dict(self) -> dict:
        """JSON-friendly: ``{"horizon", "customers", "actual_total", ..., "methods": {method: {mae, rmse,
        total_error_pct, spearman, top10_share, top20_share}}, "purchases": [rows]}`` (NaN -> None)."""
        return _json({"horizon": self.horizon, **self.settings, "customers": len(self.scores),
                      "actual_total": float(self.scores["actual"].sum()),
                      "methods": {m: row.to_dict() for m, row in self.metrics.iterrows()},
                      "purchases": self.purchases.to_dict(orient="records")})


def tournament(model, rfm_split: pd.DataFrame) -> dict:
    """The other purchase models for the backtest, ``{"predictive:<kind>": ClvModel}``: every discovered
    purchase model with a reliable fit on the same calibration table (the candidates of ``purchases="auto"``:
    :attr:`ClvModel.selection_` when the run chose its model, else fitted here), each with the run's spend
    model. The run's own purchase model is the ``predictive`` row and is not repeated; a boundary fit that is
    another candidate's model appears once."""
    from .estimators.selection import AutoPurchases
    from .model import ClvModel

    selection = getattr(model, "selection_", None)
    if selection is None or not selection.models:
        compressed = rfm_split[["frequency", "recency", "T"]]
        from .model import _compress_for_fit
        from .rfm import compress

        columns = ["frequency", "recency", "T", "frequency_holdout"]
        holdout = compress(rfm_split[columns], columns=columns) if "frequency_holdout" in rfm_split else None
        duration = float(rfm_split["duration_holdout"].iloc[0]) if holdout is not None else None
        selection = AutoPurchases().select(_compress_for_fit(compressed), time_unit=model.time_unit_,
                                           on_boundary=model.on_boundary, holdout=holdout,
                                           holdout_duration=duration)[0]
    out, seen = {}, {model.purchases_.kind}
    for kind in selection.table.index:
        est = selection.models.get(kind)
        if est is None or est.kind in seen or est.problems_:
            continue
        seen.add(est.kind)
        out[f"predictive:{est.kind}"] = ClvModel.from_parts(est, model.spend_, time_unit=model.time_unit_)
    return out


def backtest(model, rfm_split: pd.DataFrame, *, discount_rate="0%/Y", margin=1.0, others: dict | None = None) -> Backtest:
    """Score every historical method and the predictive CLV on the holdout window.

    ``others``: more fitted models scored the same way, by label (the tournament: :func:`tournament`); each
    gets a row of ``metrics``, a column of ``scores`` and a ``<label>_mean`` column of ``purchases``.

    All methods use the calibration columns only (``frequency, recency, T, monetary_value``); the window
    is ``duration_holdout`` (one value for every customer) in the table's time unit. The actual value
    is ``margin x frequency_holdout x monetary_value_holdout`` (undiscounted: it is what was spent).
    ``metrics`` (rows: ``predictive`` and the historical methods): ``mae``, ``rmse`` (per customer),
    ``total_error_pct`` = 100 x (predicted total - actual total) / actual total, ``spearman``
    (predicted vs actual), ``top10_share`` / ``top20_share`` (:func:`top_share`).
    ``scores``: per customer ``actual``, ``actual_purchases`` and each method's predicted value.
    ``purchases``: holdout purchases by calibration frequency ``0 .. 6, "7+"`` and a ``"total"`` row
    (Fader, Hardie & Lee 2005, fig. 3): ``customers``, ``actual_mean``, ``predicted_mean`` (BG/NBD),
    ``<method>_mean`` per historical method, ``actual_total``, ``predicted_total``.
    """
    margin = _check_margin(margin)
    unit = _unit(rfm_split)
    missing = [c for c in ("frequency_holdout", "monetary_value_holdout", "duration_holdout")
               if c not in rfm_split.columns]
    if missing:
        raise ClvInputError(f"the RFM table has no holdout columns ({', '.join(missing)}): build it with "
                            "summarize(..., calibration_end=...)", argument="rfm_split", value="...")
    durations = rfm_split["duration_holdout"].to_numpy(dtype=float)
    if len(durations) == 0 or not np.allclose(durations, durations[0]) or not durations[0] > 0:
        raise ClvInputError("duration_holdout must be one positive value for every customer",
                            argument="rfm_split", value="...")
    window = float(durations[0])
    horizon = f"{format(window * unit.n, '.15g')}{unit.base}"  # exact enough: no 6-digit rounding
    pred = model.clv(rfm_split, horizon=horizon, discount_rate=discount_rate, step=_step(horizon, window, unit),
                     margin=margin)
    seg = rfm_segments(rfm_split)
    hist = _historical(rfm_split, window, unit, margin, discount_rate, seg)
    actual_n = rfm_split["frequency_holdout"].to_numpy(dtype=float)
    actual = margin * actual_n * np.nan_to_num(rfm_split["monetary_value_holdout"].to_numpy(dtype=float))
    scores = pd.DataFrame({"actual": actual, "actual_purchases": actual_n,
                           "predictive": pred["clv"].to_numpy()}, index=rfm_split.index)
    purchases_pred = {"predictive": pred["expected_purchases"].to_numpy()}
    extra = tuple(others or {})
    for label, other in (others or {}).items():
        values = other.clv(rfm_split, horizon=horizon, discount_rate=discount_rate, step=_step(horizon, window, unit),
                           margin=margin)
        scores[label] = values["clv"].to_numpy()
        purchases_pred[label] = values["expected_purchases"].to_numpy()
    for method, (n, value) in hist.items():
        scores[method] = value
        purchases_pred[method] = n
    rows = {}
    for method in ("predictive",) + extra + tuple(hist):
        p = scores[method].to_numpy()
        err = p - actual
        rows[method] = {
            "mae": float(np.mean(np.abs(err))),
            "rmse": float(np.sqrt(np.mean(err ** 2))),
            "total_error_pct": float(100 * (p.sum() - actual.sum()) / actual.sum()) if actual.sum() else float("nan"),
            "spearman": spearman(p, actual),
            "top10_share": top_share(p, actual, 0.10),
            "top20_share": top_share(p, actual, 0.20),
            "gini": gini(p, actual),
        }
    metrics = pd.DataFrame.from_dict(rows, orient="index")[list(METRICS)]
    metrics.index.name = "method"
    x = rfm_split["frequency"].to_numpy()
    label = np.where(x >= 7, "7+", x.astype(int).astype(str))
    frame = pd.DataFrame({"frequency": label, "actual": actual_n,
                          **{f"{m}_n": v for m, v in purchases_pred.items()}})
    groups = frame.groupby("frequency", sort=False)
    order = [str(i) for i in range(7)] + ["7+"]
    table = pd.DataFrame({"customers": groups.size(), "actual_mean": groups["actual"].mean(),
                          "predicted_mean": groups["predictive_n"].mean()})
    for m in extra + tuple(hist):
        table[f"{m}_mean"] = groups[f"{m}_n"].mean()
    table["actual_total"] = groups["actual"].sum()
    table["predicted_total"] = groups["predictive_n"].sum()
    table = table.reindex([o for o in order if o in table.index])
    total = {"customers": len(frame), "actual_mean": frame["actual"].mean(),
             "predicted_mean": frame["predictive_n"].mean(),
             **{f"{m}_mean": frame[f"{m}_n"].mean() for m in extra + tuple(hist)},
             "actual_total": frame["actual"].sum(), "predicted_total": frame["predictive_n"].sum()}
    table.loc["total"] = pd.Series(total)
    table["customers"] = table["customers"].astype(int)
    table.index.name = "frequency"
    return Backtest(metrics, scores, table.reset_index(), horizon=horizon,
                    settings={"discount_rate": str(discount_rate), "margin": margin}, model_name=_purchase_name(model))


def _purchase_name(model) -> str:
    """The display name of a model's purchase part ("" when it has none)."""
    return str(getattr(getattr(model, "purchases_", None), "name", "") or "")
