"""Choosing the purchase model: every applicable model fitted on the same statistics and ranked.

``ClvModel(purchases="auto")`` (CLI ``--purchase-model auto``, a spec's ``[model] purchases = "auto"``) fits
every discovered purchase model (:func:`clv_forecast.estimators.available`) that applies to the data on the
same compressed statistics, and keeps the winner as its purchase part, with the ranking in ``selection_``.

The ranking criterion (``criterion="auto"``):

* with a holdout (a calibration split), the **per-customer root mean squared error of the holdout purchases**
  (each model's expected purchases in the holdout window, ``E[X(T, T + t) | x, t_x, T]``, against what each
  customer bought). The models predict conditional means, and the mean is what minimises the expected squared
  error, so RMSE is the proper score for them (MAE rewards predicting the median, 0 for most customers); the
  table shows MAE, the total error and the error of the purchases-by-frequency chart (Fader, Hardie & Lee
  2005, fig. 3) beside it;
* without one, the **BIC** (Schwarz 1978): ``k ln n - 2 LL``, which penalises the extra parameters of a richer
  model by the number of customers; AIC is shown beside it.

A fit that is not reliable (did not converge, parameters not identified) is listed with its problem and
cannot win; a fit on a boundary is the nested model (``on_boundary="nested"``), listed once under the nested
model's own name when that model is a candidate too. ``criterion`` may also be ``"holdout_rmse"``,
``"holdout_mae"``, ``"bic"`` or ``"aic"``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from ..errors import ClvInputError, IdentificationError
from ._mle import Settings

__all__ = ["AUTO", "AutoPurchases", "Selection", "CRITERIA"]

AUTO = "auto"

#: criterion -> (column of the ranking table, what it is, needs a holdout)
CRITERIA = {
    "holdout_rmse": ("holdout_rmse", "holdout RMSE per customer", True),
    "holdout_mae": ("holdout_mae", "holdout MAE per customer", True),
    "bic": ("bic", "BIC", False),
    "aic": ("aic", "AIC", False),
}

#: the columns of :attr:`Selection.table`, in order
COLUMNS = ("model", "fitted", "k", "log_likelihood", "aic", "bic", "holdout_mae", "holdout_rmse",
           "holdout_total_error_pct", "by_frequency_error", "reliable", "note", "rank")


def _by_frequency_error(x, predicted, actual, w) -> float:
    """The error of the purchases-by-frequency chart: the customer-weighted mean of |mean predicted - mean
    actual| over the calibration-frequency bins 0, 1, ..., 6, 7+."""
    bins = np.minimum(np.asarray(x, dtype=float), 7).astype(np.int64)
    n = np.bincount(bins, weights=w, minlength=8)
    pred = np.bincount(bins, weights=w * predicted, minlength=8)
    act = np.bincount(bins, weights=w * actual, minlength=8)
    used = n > 0
    return float(np.sum(np.abs(pred[used] - act[used])) / n.sum())


@dataclass
class Selection:
    """The ranking of :class:`AutoPurchases`: ``table`` (one row per candidate kind, winners first; see
    :data:`COLUMNS`), ``winner`` (the kind whose model is the purchase part), ``criterion`` (a key of
    :data:`CRITERIA`), ``reason`` (one line: why the winner won) and ``models`` (kind -> the fitted purchase
    estimator, for the backtest tournament; a refused fit has none)."""

    table: pd.DataFrame
    winner: str
    criterion: str
    reason: str
    holdout_duration: float | None = None
    models: dict = field(default_factory=dict, repr=False)
    time_unit: str | None = None  #: the unit of ``holdout_duration`` (the models' time unit), when known

    def _repr_html_(self) -> str:
        """The report's "Model selection" table and the reason, for notebooks."""
        from ..report import selection_html

        return selection_html(self)

    def to_dict(self) -> dict:
        """JSON-ready: ``criterion``, ``winner``, ``reason``, ``holdout_duration`` and ``ranking`` (the table's
        rows as records with ``kind``; NaN -> None)."""
        rows = []
        for kind, row in self.table.iterrows():
            rec = {"kind": kind}
            for key, value in row.items():
                if isinstance(value, (float, np.floating)):
                    value = float(value) if math.isfinite(value) else None
                elif isinstance(value, (np.integer,)):
                    value = int(value)
                if key in ("rank", "k") and value is not None:
                    value = int(value)
                elif isinstance(value, np.bool_):
                    value = bool(value)
                rec[key] = value
            rows.append(rec)
        return {"criterion": self.criterion, "criterion_name": CRITERIA[self.criterion][1], "winner": self.winner,
                "reason": self.reason, "holdout_duration": self.holdout_duration, "ranking": rows}


class AutoPurchases(Settings):
    """The purchase "model" that picks one: every candidate fitted on the same statistics, the best kept.

    Parameters
    ----------
    candidates : None or sequence of kinds
        The purchase models to try (default: every discovered one, :func:`clv_forecast.estimators.available`).
    criterion : "auto", "holdout_rmse", "holdout_mae", "bic" or "aic"
        ``"auto"``: holdout RMSE when the fit has a holdout, else BIC (module docstring).
    penalizer, maxiter :
        Passed to every candidate that has the setting (None: each model's default).
    """

    kind: ClassVar[str] = AUTO
    name: ClassVar[str] = "automatic choice"
    role: ClassVar[str] = "purchases"
    inputs: ClassVar[tuple[str, ...]] = ("frequency", "recency", "T")

    def __init__(self, candidates=None, criterion="auto", penalizer=None, maxiter=None) -> None:
        self.candidates = candidates
        self.criterion = criterion
        self.penalizer = penalizer
        self.maxiter = maxiter

    def __repr__(self) -> str:
        return f"AutoPurchases({self._settings_text()})"

    # -- settings ---------------------------------------------------------------------------------
    def kinds(self) -> list[str]:
        """The candidate kinds, checked (an unknown one is one line naming the known ones)."""
        from . import available

        known = available("purchases")
        if self.candidates is None:
            return known
        kinds = [self.candidates] if isinstance(self.candidates, str) else list(self.candidates)
        if not kinds:
            raise ClvInputError("must name at least one purchase model", argument="candidates", value=kinds)
        for kind in kinds:
            if kind not in known:
                raise ClvInputError(f"unknown purchase model (known: {', '.join(known)})", argument="candidates",
                                    value=kind)
        return list(dict.fromkeys(kinds))

    def _criterion(self, has_holdout: bool) -> str:
        if self.criterion == "auto":
            return "holdout_rmse" if has_holdout else "bic"
        if self.criterion not in CRITERIA:
            raise ClvInputError(f"must be auto or one of {', '.join(CRITERIA)}", argument="criterion",
                                value=self.criterion)
        if CRITERIA[self.criterion][2] and not has_holdout:
            raise ClvInputError(f"{self.criterion} needs a holdout: give a calibration end, or criterion bic/aic",
                                argument="criterion", value=self.criterion)
        return self.criterion

    def _estimator(self, kind: str):
        from . import get

        cls = get(kind, "purchases")
        defaults = cls._defaults()
        settings = {k: v for k, v in (("penalizer", self.penalizer), ("maxiter", self.maxiter))
                    if v is not None and k in defaults}
        return cls(**settings)

    # -- the choice ---------------------------------------------------------------------------------
    def select(self, purchases: pd.DataFrame, *, time_unit, on_boundary: str = "nested", holdout=None,
               holdout_duration: float | None = None) -> tuple[Selection, object, dict | None]:
        """Fit every candidate on ``purchases`` (unique rows with ``count``) and rank them.

        ``holdout``: unique rows of the purchase inputs and ``frequency_holdout`` with ``count`` (the
        engines' ``"holdout"`` statistics), ``holdout_duration`` its window in ``time_unit``. Returns the
        :class:`Selection`, the winner's fitted estimator and its boundary record (None, or the dict
        :attr:`ClvModel.boundary_` holds). A candidate's warnings are kept in its row (``note``), not raised.
        """
        criterion = self._criterion(holdout is not None and holdout_duration is not None)
        rows, fitted, boundaries, inapplicable = {}, {}, {}, []
        for kind in self.kinds():
            row, model, boundary, refusal = self._fit_candidate(kind, purchases, time_unit, on_boundary)
            if model is not None and holdout is not None and holdout_duration is not None:
                row.update(_holdout_scores(model, holdout, holdout_duration))
            rows[kind] = row
            if model is not None:
                fitted[kind] = model
            if boundary is not None:
                boundaries[kind] = boundary
            if refusal is not None:
                inapplicable.append(refusal)
        # a boundary fit that is another candidate's model is that candidate: listed, not ranked twice
        for kind in boundaries:
            same = fitted[kind].kind
            if same != kind and same in fitted and rows[same]["reliable"]:
                rows[kind]["note"] += f"; the same fit as the {rows[same]['model']} row"
                rows[kind]["duplicate"] = True
        table, eligible, periods = _rank(rows, list(fitted), criterion)
        order = list(table.index)
        candidates = [k for k in order if k in fitted]
        if not candidates and len(inapplicable) == len(order):  # the data fit no candidate: the first reason
            raise inapplicable[0]
        if not candidates:
            notes = "; ".join(f"{k}: {table.loc[k, 'note']}" for k in order)
            raise IdentificationError(f"automatic choice of the purchase model: no candidate could be fitted ({notes})")
        winner = candidates[0]  # the best eligible one; if none is eligible, the best unreliable fit (refused later)
        reason = _reason(table, winner, CRITERIA[criterion][0], criterion, eligible, periods)
        selection = Selection(table, winner, criterion, reason, holdout_duration, models=fitted,
                              time_unit=None if time_unit is None else str(time_unit))
        return selection, fitted[winner], boundaries.get(winner)

    def _fit_candidate(self, kind: str, purchases: pd.DataFrame, time_unit, on_boundary: str):
        """One candidate's fit: its table row, the fitted model (the nested one on a boundary; None when refused
        or not applicable), its boundary record (or None) and, when the data are outside the model, the error."""
        est = self._estimator(kind)
        row = {"model": est.name, "fitted": est.name, "k": len(est.param_names), "note": "",
               "periods": bool(getattr(est, "whole_periods", False))}
        if getattr(est, "whole_periods", False) and not _whole(purchases):
            note = (f"not applicable: the {est.name} counts whole periods and these times are not "
                    f"(summarise with merge equal to the time unit, e.g. --merge {time_unit})")
            return {**row, "reliable": False, "note": note}, None, None, ClvInputError(note)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                est.fit(purchases, time_unit=time_unit)
            except IdentificationError as exc:
                return {**row, "reliable": False, "note": "refused: " + " ".join(str(exc).split())}, None, None, None
            except ClvInputError as exc:  # data outside the model (e.g. whole periods for a discrete model)
                note = "not applicable: " + " ".join(str(exc).split())
                return {**row, "reliable": False, "note": note}, None, None, exc
        model, boundary = est, None
        nested = est.boundary_model() if on_boundary == "nested" else None
        if nested is not None:
            boundary_kind, reason = est.result_.boundary
            boundary = {"kind": est.kind, "name": est.name,
                        "settings": {k: _plain(v) for k, v in est.get_params(deep=False).items()},
                        "boundary": type(est).boundaries.get(boundary_kind, boundary_kind), "reason": reason}
            model = nested
            row.update(fitted=nested.name, k=len(nested.param_names),
                       note=f"maximum on a boundary ({boundary['boundary']}): the {nested.name}")
        problems = list(model.problems_)
        if problems:
            row["note"] = "; ".join(problems)
        elif not row["note"] and caught:
            row["note"] = "; ".join(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
        res = model.result_
        row.update(log_likelihood=float(res.log_likelihood), aic=float(res.aic), bic=float(res.bic),
                   reliable=not problems)
        return row, model, boundary, None


def _rank(rows: dict, fitted: list[str], criterion: str) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """The ranking table (the best eligible candidate first; ``rank`` NaN for the ineligible ones), which rows
    are eligible, and which count whole periods."""
    table = pd.DataFrame.from_dict(rows, orient="index")
    for column in COLUMNS:
        if column not in table:
            table[column] = np.nan
    column = CRITERIA[criterion][0]
    eligible = table["reliable"].fillna(False).astype(bool)
    # a likelihood of whole periods (x, t_x, n counted in periods) and a density in continuous time are of
    # different data: their AIC/BIC do not compare; by an information criterion only one family is ranked
    periods = table["periods"].fillna(False).astype(bool)
    family = bool(periods[fitted].all()) if fitted else False
    if not criterion.startswith("holdout"):
        for kind in table.index[(periods != family) & table.index.isin(fitted)]:
            table.loc[kind, "note"] = (str(table.loc[kind, "note"]) + "; " if table.loc[kind, "note"] else "") + (
                "its likelihood is of " + ("whole periods" if periods[kind] else "continuous times")
                + f": its {CRITERIA[criterion][1]} does not compare with the others' (rank on a holdout)")
        eligible &= periods == family
    if "duplicate" in table:
        eligible &= ~table["duplicate"].fillna(False).astype(bool)
    score = pd.to_numeric(table[column], errors="coerce")
    eligible &= np.isfinite(score.to_numpy(dtype=float))
    order = sorted(table.index, key=lambda k: (not eligible[k], _sort_value(score[k]), table.index.get_loc(k)))
    table = table.loc[order, list(COLUMNS)]
    table["rank"] = [i + 1 if eligible[k] else np.nan for i, k in enumerate(order)]
    table.index.name = "kind"
    return table, eligible, periods


def _whole(purchases: pd.DataFrame) -> bool:
    """Recency and T are whole numbers (of the time unit): data a discrete-time model can read."""
    return all(np.all(np.mod(purchases[c].to_numpy(dtype=float), 1.0) == 0) for c in ("recency", "T"))


def _plain(value):
    from ._mle import plain_setting

    return plain_setting(value)


def _sort_value(value) -> float:
    value = float(value) if value is not None else math.nan
    return value if math.isfinite(value) else math.inf


def _holdout_scores(model, holdout: pd.DataFrame, duration: float) -> dict:
    """Holdout MAE, RMSE, total error (%) and the purchases-by-frequency error of one fitted model on the
    compressed holdout rows."""
    w = holdout["count"].to_numpy(dtype=float)
    predicted = np.asarray(model.conditional_expected_purchases(duration, holdout), dtype=float)
    actual = holdout["frequency_holdout"].to_numpy(dtype=float)
    err = predicted - actual
    n, total = w.sum(), float(np.dot(w, actual))
    return {"holdout_mae": float(np.dot(w, np.abs(err)) / n), "holdout_rmse": float(np.sqrt(np.dot(w, err ** 2) / n)),
            "holdout_total_error_pct": 100 * (float(np.dot(w, predicted)) - total) / total if total else math.nan,
            "by_frequency_error": _by_frequency_error(holdout["frequency"].to_numpy(), predicted, actual, w)}


def _reason(table: pd.DataFrame, winner: str, column: str, criterion: str, eligible: pd.Series,
            periods: pd.Series) -> str:
    """One line: why ``winner`` won (its score, the runner-up's and the margin), or why nothing could."""
    name, what = table.loc[winner, "fitted"], CRITERIA[criterion][1]
    others = [k for k in table.index if k != winner and eligible[k]]
    if not eligible[winner]:
        return (f"no candidate gave a reliable fit; the {name} scored best on {what} among the fits reached, "
                "and its problems stand")
    value = float(table.loc[winner, column])
    if not others:
        return f"the {name} is the only candidate with a reliable fit ({what} {value:,.4f})"
    second = others[0]
    v2 = float(table.loc[second, column])
    if criterion.startswith("holdout"):
        rel = 100 * (v2 - value) / value if value else math.inf
        line = (f"the {name} has the lowest {what} ({value:.4f}; next the {table.loc[second, 'fitted']} {v2:.4f}, "
                f"{rel:.2f} % higher)")
        total = table.loc[winner, "holdout_total_error_pct"]
        if np.isfinite(total):
            line += f"; its holdout total is off by {total:+.1f} %"
        if rel < 1.0:
            line += "; the candidates are within 1 % on this holdout"
            same = [k for k in [winner] + others if periods[k] == periods[winner]]  # BIC compares within a family
            if len(same) > 1:
                bic_best = min(same, key=lambda k: table.loc[k, "bic"])
                line += f" (BIC prefers the {table.loc[bic_best, 'fitted']})"
        return line
    diff = v2 - value
    strength = ("very strong" if diff > 10 else "strong" if diff > 6 else "positive" if diff > 2 else "weak")
    return (f"the {name} has the lowest {what} ({value:,.1f}; next the {table.loc[second, 'fitted']} {v2:,.1f}, "
            f"{diff:,.1f} higher: {strength} evidence on Kass & Raftery's scale)" if criterion == "bic" else
            f"the {name} has the lowest {what} ({value:,.1f}; next the {table.loc[second, 'fitted']} {v2:,.1f}, "
            f"{diff:,.1f} higher)")
