r"""The base of the retention models (role ``"retention"``): every public method written once over small kernels.

A contractual customer is acquired in period 0 and, at the end of each period, renews or leaves for good; ``T``
is the period at whose end he leaves (``T = t``: he renewed ``t - 1`` times), ``S(t) = P(T > t)`` the share of a
cohort still customers at the start of period ``t`` (after ``t`` renewals). A model writes, as ``@staticmethod`` s
taking the parameter vector first:

* ``_log_survival(params, t)``: ``ln S(t)`` at whole ``t >= 0`` (any shape);
* ``_loglik(params, renewals, churned)``: the per-row log-likelihood, ``ln P(T = n + 1)`` for a customer who left
  after ``n`` renewals, ``ln S(n)`` for one still a customer after ``n``;
* ``_loglik_derivatives(params, renewals, churned, weights)`` (optional): the weighted total, score and Hessian in
  the natural parameters (without it the base differentiates ``_loglik`` numerically);
* ``_retention_rate(params, t)`` (optional): ``r(t) = S(t) / S(t - 1)`` for ``t >= 1`` (default: from
  ``_log_survival``);
* ``_expected_remaining(params, n)`` (optional): the expected number of future renewals of a customer who has
  renewed ``n`` times, ``sum_{t > n} S(t) / S(n)``;
* ``_derl(params, d, n)`` (optional): the discounted expected residual lifetime (below); by default the discounted
  sum of ``S`` itself, term by term, until the terms no longer count.

DERL (Fader & Hardie 2010, "Customer-Base Valuation in a Contractual Setting: The Perils of Ignoring
Heterogeneity", *Marketing Science* 29(1), 85-93, eq. 6, whose customer with ``n - 1`` renewals is our ``n``):

.. math:: \mathrm{DERL}(d \mid n) = \sum_{t=n+1}^{\infty} \frac{S(t)}{S(n)} \frac{1}{(1+d)^{t-n-1}}

a customer's future renewals (a payment each) counted at the date of his next renewal decision (the end of his
current period, when the first of them would be paid) and discounted by ``d`` per period; times the margin per
period it is his expected residual value. At ``d = 0`` it is :meth:`RetentionModel.expected_remaining_lifetime`.

The public methods (``fit``, ``survival``, ``retention_rate``, ``churn_probability``, ``project``, ``curve``,
``expected_remaining_lifetime``, ``derl``, ``expected_residual_value``, ``predict``, ``save``/``load`` and those
of every estimator: ``from_params``, ``to_dict``/``from_dict``, ``summary``, ``summary_frame``, ``problems_``,
``check_reliable``) are this base's. What a fit reads is :mod:`._data`'s.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ...errors import ClvInputError
from ...units import DEFAULT_DISCOUNT_RATE, Rate, TimeUnit
from .. import _mle
from ..base import Estimator
from . import _data

#: the smallest discount rate per period DERL takes (below, use :meth:`RetentionModel.expected_remaining_lifetime`,
#: the undiscounted value): the discounted sums converge in about ``13 / sqrt(d)`` steps
MIN_DISCOUNT_RATE = 1e-6
#: the model file of a retention model
FORMAT = "clv-forecast-retention-model"
FORMAT_VERSION = 1


def whole_periods(t, what: str = "period", low: int = 0) -> np.ndarray:
    """``t`` as a float array of whole numbers ``>= low`` (one-line error otherwise)."""
    try:
        arr = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError):
        raise ClvInputError(f"{what} {t!r}: must be whole numbers") from None
    bad = ~np.isfinite(arr) | (arr < low) | (arr != np.floor(arr))
    if np.any(bad):
        value = arr[bad].ravel()[0] if arr.ndim else float(arr)
        raise ClvInputError(f"{what} {value:g}: must be a whole number >= {low}")
    return arr


def _margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) \
            or not math.isfinite(margin):
        raise ClvInputError("must be a finite number (money per period)", argument="margin", value=margin)
    return float(margin)


def pooled_curve(curve: pd.DataFrame) -> pd.DataFrame:
    """A :meth:`RetentionModel.curve` table over its cohorts, one row per period (the index): ``cohorts`` (those
    observed at the period), their ``alive`` and ``size``, ``share`` (actual share alive: ``alive / size`` of the
    cohorts observed there), ``retention`` (actual: the customers of the cohorts observed at both ``t - 1`` and
    ``t``, ``alive[t] / alive[t - 1]``), ``survival`` (projected share alive ``S(t)``) and
    ``projected_retention`` (``r(t)``); NaN where no cohort is observed."""
    seen = curve["alive"].notna()
    before = curve.groupby("cohort", sort=False)["alive"].shift(1)
    both = seen & before.notna()
    g = curve.assign(seen=seen, alive0=curve["alive"].where(seen, 0.0), size0=curve["size"].where(seen, 0.0),
                     now=curve["alive"].where(both, 0.0), prev=before.where(both, 0.0)).groupby("period")
    out = g.agg(cohorts=("seen", "sum"), alive=("alive0", "sum"), size=("size0", "sum"), now=("now", "sum"),
                prev=("prev", "sum"), survival=("survival", "first"),
                projected_retention=("projected_retention", "first"))
    with np.errstate(divide="ignore", invalid="ignore"):
        out["share"] = np.where(out["size"] > 0, out["alive"] / out["size"], np.nan)
        out["retention"] = np.where(out["prev"] > 0, out["now"] / out["prev"], np.nan)
    return out


def share_alive_gap(pooled: pd.DataFrame) -> float:
    """The mean absolute gap between the projected and the actual share alive, ``|S(t) - share(t)|``, over the
    observed periods ``t >= 1`` of a :func:`pooled_curve` (period 0 is 1 on both sides); NaN without one."""
    observed = pooled[(pooled.index >= 1) & (pooled["cohorts"] > 0)]
    if observed.empty:
        return float("nan")
    return float(np.mean(np.abs(observed["survival"].to_numpy() - observed["share"].to_numpy())))


class RetentionModel(Estimator):
    """Base of the contractual retention models (module docstring): survival, retention rates, projections and
    DERL written once over the model's kernels."""

    role: ClassVar[str] = "retention"
    inputs: ClassVar[tuple[str, ...]] = ("renewals", "churned")

    # -- kernels ------------------------------------------------------------------------------------
    @staticmethod
    def _log_survival(params, t) -> np.ndarray:  # pragma: no cover - every model writes it
        raise NotImplementedError

    @classmethod
    def _retention_rate(cls, params, t) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return np.exp(cls._log_survival(params, t) - cls._log_survival(params, t - 1.0))

    @classmethod
    def _expected_remaining(cls, params, n) -> np.ndarray:
        cls._not_available("the expected remaining lifetime")

    @classmethod
    def _derl(cls, params, d: float, n) -> np.ndarray:
        """The discounted sum of the survival curve itself, ``sum_k S(n+1+k) / S(n) x^k`` with ``x = 1/(1+d)``,
        in blocks of periods until a block adds less than 1e-17 of the total (every model's fallback, and the
        check of a closed form)."""
        n = np.asarray(n, dtype=np.float64)
        flat = n.ravel()
        total = np.zeros(flat.shape)
        log_x = -math.log1p(d)
        base = cls._log_survival(params, flat)
        start, block = 0, 4096
        while True:
            k = np.arange(start, start + block, dtype=np.float64)
            logs = cls._log_survival(params, flat[:, None] + 1.0 + k[None, :]) - base[:, None] + k[None, :] * log_x
            part = np.exp(logs).sum(axis=1)
            total += part
            start += block
            if np.all(part <= 1e-17 * total) or start > 1e9:
                break
            block = min(block * 2, 1 << 20)
        return total.reshape(n.shape)

    # -- the fit ------------------------------------------------------------------------------------
    def fit(self, data=None, *, size=None, weights=None, time_unit=None):
        """Fit on a cohort table (customers alive per cohort and period; counts, or shares with ``size``) or on
        one row per customer (``renewals``, ``churned``, optional ``count``); the forms are :mod:`._data`'s, and
        ``historical.cohort_retention(log, counts=True)`` and :func:`~._data.cohorts_from_log` are read as they
        are. ``time_unit`` is the length of a period (``"M"``, ``"Y"``) when the table does not carry it.

        Several cohorts are independent contributions to one likelihood (a pooled fit); to fit each alone, fit
        one model per cohort (``clv-forecast retention --by-cohort``). A failure leaves a previous fit as it was.
        """
        self._check_penalizer()
        lifetimes, cohorts = _data.read(data, size=size, weights=weights, time_unit=time_unit)
        keep = lifetimes.weights > 0
        r, c, w = lifetimes.renewals[keep], lifetimes.churned[keep], lifetimes.weights[keep]
        _mle.require(len(r) > 0, f"{self.name}: no customers to fit")
        _mle.require(bool(np.any(c > 0)), f"{self.name}: no customer left; the churn probabilities cannot be "
                     "identified (the likelihood is largest as they go to 0)")
        _mle.require(bool(np.any(r > 0)), f"{self.name}: every customer left at his first renewal decision; nobody "
                     "renewed")
        _mle.require(bool(np.any((c > 0) & (r >= 1)) or np.any((c == 0) & (r >= 2))),
                     f"{self.name}: the data cover one renewal decision only; its share of renewals identifies the "
                     "mean churn probability but not how it varies between customers (two periods or more are "
                     "needed)")
        result = self._fit_statistics(r, c, w)
        if cohorts is not None:
            result.extra["cohorts"] = len(cohorts.labels)
            result.extra["periods"] = int(cohorts.lengths.max())
        self._store(result, lifetimes.time_unit)
        self.cohorts_ = cohorts
        return self

    def _fit_statistics(self, renewals, churned, w) -> "_mle.MLEResult":  # pragma: no cover
        """The model's fit on validated rows with weights ``w > 0``: an :class:`~.._mle.MLEResult`."""
        raise NotImplementedError

    # -- inputs of the predictions ------------------------------------------------------------------
    def _discount(self, discount_rate) -> float:
        """A discount rate per period: a number is per period; text (``"10%/Y"``) or a
        :class:`~clv_forecast.units.Rate` is converted to the model's period."""
        if isinstance(discount_rate, (int, float, np.integer, np.floating)) and not isinstance(discount_rate, bool):
            d = float(discount_rate)
        else:
            if self.time_unit_ is None:
                raise ClvInputError("the model's period has no time unit (fit with time_unit=...); give the rate "
                                    "per period as a number", argument="discount_rate", value=str(discount_rate))
            d = Rate.parse(discount_rate).over(TimeUnit.parse(self.time_unit_))
        if not (math.isfinite(d) and d >= MIN_DISCOUNT_RATE):
            raise ClvInputError(f"must be at least {MIN_DISCOUNT_RATE:g} per period (the undiscounted value is "
                                "expected_remaining_lifetime)", argument="discount_rate", value=discount_rate)
        return d

    # -- predictions ----------------------------------------------------------------------------------
    def survival(self, t) -> np.ndarray:
        """``S(t)``: the share of a new cohort still customers at the start of period ``t`` (after ``t``
        renewals); ``t`` whole periods."""
        params = self._check_fitted()
        return np.exp(type(self)._log_survival(params, whole_periods(t)))

    def retention_rate(self, t) -> np.ndarray:
        """``r(t) = S(t) / S(t - 1)``: the share of the customers of period ``t - 1`` who renew into period ``t``
        (``t >= 1``): the retention rate a cohort shows in its ``t``-th renewal."""
        params = self._check_fitted()
        return type(self)._retention_rate(params, whole_periods(t, low=1))

    def churn_probability(self, t) -> np.ndarray:
        """``P(T = t) = S(t - 1) - S(t)``: the share of a new cohort that leaves at the end of period ``t - 1``
        (after ``t - 1`` renewals), ``t >= 1``."""
        params = self._check_fitted()
        t = whole_periods(t, low=1)
        return np.exp(type(self)._log_survival(params, t - 1.0)) * (1.0 - type(self)._retention_rate(params, t))

    def project(self, size, periods: int) -> pd.Series:
        """The customers of a new cohort of ``size`` expected at the start of periods ``0..periods``:
        ``size * S(t)``."""
        if not (isinstance(size, (int, float, np.integer, np.floating)) and math.isfinite(size) and size > 0):
            raise ClvInputError("must be a positive number of customers", argument="size", value=size)
        t = np.arange(int(whole_periods(periods, "periods")) + 1, dtype=np.float64)
        return pd.Series(float(size) * self.survival(t), index=pd.Index(t.astype(np.int64), name="period"),
                         name="projected")

    def expected_remaining_lifetime(self, renewals=0) -> np.ndarray:
        """The expected number of future renewals of a customer who has renewed ``renewals`` times (his periods
        after the current one): ``sum_{t > n} S(t) / S(n)``, DERL without discounting. It is infinite when the
        survival curve's tail is too heavy (sBG: ``alpha <= 1``)."""
        params = self._check_fitted()
        return type(self)._expected_remaining(params, whole_periods(renewals, "renewals"))

    def derl(self, discount_rate, renewals=0) -> np.ndarray:
        """Discounted expected residual lifetime (module docstring) of a customer who has renewed ``renewals``
        times: his expected future renewals discounted by ``discount_rate`` (a number per period, or with its
        period: ``"10%/Y"``) to the date of his next renewal decision. Finite for any rate
        ``>= MIN_DISCOUNT_RATE``."""
        params = self._check_fitted()
        return type(self)._derl(params, self._discount(discount_rate), whole_periods(renewals, "renewals"))

    def expected_residual_value(self, margin, discount_rate, renewals=0) -> np.ndarray:
        """DERL times ``margin`` (the money a customer leaves per period): a customer's expected residual value."""
        return _margin(margin) * self.derl(discount_rate, renewals)

    def predict(self, data, discount_rate=DEFAULT_DISCOUNT_RATE, *, margin: float = 1.0) -> pd.DataFrame:
        """Per customer of a table with ``renewals`` (and ``churned``; without it every customer is still one):
        ``p_renew`` (the probability that he renews at the end of his current period, ``r(n + 1)``), ``derl`` and
        ``residual_value`` (``margin * derl``); 0 for a customer who has left. Indexed like ``data``. The same
        numbers as ``clv-forecast score`` and the MLflow model give (:mod:`._scoring`), which add the expected
        remaining lifetime (:meth:`expected_remaining_lifetime`: infinite for a heavy-tailed curve)."""
        from ._scoring import customer_scores

        self._check_fitted()
        if not _data.is_customer_table(data):
            raise ClvInputError("predict reads one row per customer (columns renewals, churned); for cohorts use "
                                "curve()")
        rows, _ = _data.read(data if "churned" in data.columns else data.assign(churned=0))
        scores = customer_scores(self, rows.renewals, rows.churned, d=self._discount(discount_rate),
                                 margin=_margin(margin), lifetime=False)
        return scores.set_axis(data.index)

    def curve(self, data=None, periods: int | None = None, *, size=None, time_unit=None) -> pd.DataFrame:
        """The retention curve, projected vs actual: one row per cohort and period ``0..periods`` (default: the
        cohorts' last observed period), columns ``cohort``, ``period``, ``size``, ``alive`` (observed; NaN after
        a cohort's last period), ``projected`` (``size * S(t)``), ``survival`` (``S(t)``), ``retention``
        (observed ``alive[t] / alive[t - 1]``) and ``projected_retention`` (``r(t)``). ``data`` is a cohort table
        as :meth:`fit` reads it (default: the one the model was fitted on)."""
        params = self._check_fitted()
        if data is None:
            cohorts = getattr(self, "cohorts_", None)
            if cohorts is None:
                raise ClvInputError("give a cohort table: this model was not fitted on one (or was loaded)")
        else:
            lifetimes, cohorts = _data.read(data, size=size, time_unit=time_unit)
            if cohorts is None:
                raise ClvInputError("curve reads a cohort table, not one row per customer")
        last = int(cohorts.lengths.max()) if periods is None else int(whole_periods(periods, "periods"))
        t = np.arange(last + 1, dtype=np.float64)
        k = len(cohorts.labels)
        observed = np.full((k, last + 1), np.nan)
        for i, a in enumerate(cohorts.alive):  # one copy per cohort
            m = min(len(a), last + 1)
            observed[i, :m] = a[:m]
        sizes = cohorts.sizes
        log_s = type(self)._log_survival(params, t)
        rate = np.r_[np.nan, type(self)._retention_rate(params, t[1:])]
        with np.errstate(divide="ignore", invalid="ignore"):
            actual_rate = np.c_[np.full(k, np.nan), observed[:, 1:] / observed[:, :-1]]
        return pd.DataFrame({
            "cohort": np.repeat(np.array(cohorts.labels, dtype=object), last + 1),
            "period": np.tile(t.astype(np.int64), k),
            "size": np.repeat(sizes, last + 1),
            "alive": observed.ravel(),
            "projected": (sizes[:, None] * np.exp(log_s)[None, :]).ravel(),
            "survival": np.tile(np.exp(log_s), k),
            "retention": actual_rate.ravel(),
            "projected_retention": np.tile(rate, k),
        })

    # -- the model file -------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the model as indented JSON (``"format": "clv-forecast-retention-model"``), atomically; a model
        whose fit has problems is written too, its problems recorded (``load`` shows them again)."""
        from ..._io import atomic_write_text
        from ...model import json_safe

        self._check_fitted()
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "role": self.role, "kind": self.kind,
               **self.to_dict()}
        text = json.dumps(json_safe(doc), indent=2, allow_nan=False)
        type(self).from_dict(json.loads(text), source=str(path))  # never write what load refuses
        return atomic_write_text(path, text + "\n")

    @classmethod
    def load(cls, path) -> "RetentionModel":
        """Read a model written by :meth:`save` (every field checked; one line naming the file and the field)."""
        from .. import get

        from ..._io import read_model_json

        path = Path(path)
        doc = read_model_json(path)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ClvInputError(f"{path}: not a clv-forecast retention model file (no 'format': '{FORMAT}')")
        fields = _mle.Fields(str(path))
        version = doc.get("format_version")
        if not (isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= FORMAT_VERSION):
            fields.fail("format_version", version, f"must be a whole number from 1 to {FORMAT_VERSION}")
        kind = doc.get("kind")
        try:
            model_cls = get(kind, "retention")
        except ClvInputError:
            fields.fail("kind", kind, "unknown retention model")
        if not issubclass(model_cls, cls):
            fields.fail("kind", kind, f"not a {cls.__name__}")
        return model_cls.from_dict({k: v for k, v in doc.items() if k not in ("format", "format_version", "role",
                                                                              "kind")}, source=str(path))
