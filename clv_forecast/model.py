"""The fitted CLV model: a purchase model + a spend model (by default BG/NBD + Gamma-Gamma), one object,
one time unit.

``ClvModel`` is what runs, the CLI, tracking and scoring pass around. It is saved as a small
human-readable JSON file (parameters, covariance, fit statistics, time unit, training-data
summary and library versions), never as a pickle of the data.

Model file format (``"format": "clv-forecast-model"``):

* version 1: settings of the sub-models stored beside their fit statistics;
* version 2: each sub-model's constructor settings in ``"settings"``, fit
  diagnostics (``max_gradient``, ``source``, ``problems``) and, at the top level, ``reliable`` and
  ``problems``;
* version 3 (written now): the sub-models keyed by role (``"purchases"``, ``"spend"``), each with its
  ``"kind"`` (which picks the class on load: :func:`clv_forecast.estimators.get`); the top-level
  ``"settings"`` name the kinds. Versions 1 and 2 (keys ``"bgnbd"``, ``"gamma_gamma"``) still load;
  every field is checked on load. A purchase model fitted on a boundary of the requested one (the NBD for
  BG/NBD at ``a -> 0``) is stored as what it is (its own ``"kind"``) with a ``"requested"`` object under
  ``"purchases"``: the kind and settings asked for, the boundary and the reason (:attr:`ClvModel.boundary_`);
  ``settings.purchases`` names the requested kind and ``settings.on_boundary`` the composite's choice.
  An optional top-level ``"bootstrap"`` object holds the parameter vectors refitted on resamples of the customers
  (:meth:`ClvModel.bootstrap`, :class:`clv_forecast.bootstrap.BootstrapResult`); files without it load as before.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_write_text
from . import estimators
from .estimators._data import rfm_arrays, time_unit_of
from .estimators._mle import Fields, Settings, plain_setting
from .errors import ClvInputError, NotFittedError, UnreliableFitError, show_value
from .units import DEFAULT_DISCOUNT_RATE, DEFAULT_HORIZON, DEFAULT_MARGIN, DEFAULT_STEP, TimeUnit
from .value import customer_lifetime_value

FORMAT = "clv-forecast-model"
FORMAT_VERSION = 3
#: the role keys of format versions 1 and 2 (each role had one model then)
_LEGACY_KEYS = {"purchases": "bgnbd", "spend": "gamma_gamma"}
#: what a fit whose supremum is on a boundary that is a known nested model gives (:class:`ClvModel`)
ON_BOUNDARY = ("nested", "refuse")
#: the composite's settings of format versions 1 and 2, now the sub-models' own (deprecated aliases)
_ALIASES = {"penalizer": ("purchases", "penalizer"), "spend_penalizer": ("spend", "penalizer"),
            "strict_spend": ("spend", "strict")}


def _versions() -> dict:
    import scipy

    from . import __version__

    return {"clv_forecast": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "pandas": pd.__version__, "python": platform.python_version()}


def json_safe(value):
    """Standard JSON: NaN and infinities (e.g. standard errors of an unidentified fit) become null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _compress_for_fit(data, inputs=("frequency", "recency", "T")) -> pd.DataFrame:
    """Unique rows of the purchase model's ``inputs`` with counts: all its likelihood needs."""
    from .rfm import compress

    return compress(data[list(inputs)])


def _estimator(value, role: str):
    """A new, unfitted estimator for ``role`` from a setting: a kind (``"bgnbd"``), a class, or an estimator
    (copied with its settings, so the setting itself is never fitted)."""
    from .estimators.selection import AUTO, AutoPurchases

    if isinstance(value, str):
        return AutoPurchases() if value == AUTO and role == "purchases" else estimators.get(value, role)()
    if isinstance(value, type):
        return value()
    if getattr(value, "role", None) != role or not hasattr(value, "get_params"):
        raise ClvInputError(f"must be a {role} model kind ({', '.join(estimators.available(role))}) or a "
                            f"{role} estimator", argument=role, value=type(value).__name__)
    return type(value)(**value.get_params(deep=False))


def _kind(value, role: str) -> str:
    return value if isinstance(value, str) else _estimator(value, role).kind


def _setting_of(sub):
    """The composite's setting that makes ``sub`` again: its kind when its settings are the defaults, else an
    unfitted estimator with its settings."""
    params = sub.get_params(deep=False)
    return sub.kind if params == type(sub)._defaults() else type(sub)(**params)


def _requested(fields: Fields, value, kind: str) -> dict:
    """The ``purchases.requested`` object of a model file (the model asked for, whose fit was on a boundary
    with ``kind`` its nested model), checked field by field."""
    where = "purchases.requested"
    fields.mapping(where, value)
    asked = fields.get(value, "kind", where)
    if not isinstance(asked, str) or asked not in estimators.available("purchases"):
        fields.fail(f"{where}.kind", asked, f"unknown model (this clv-forecast knows "
                    f"{', '.join(estimators.available('purchases'))}); upgrade clv-forecast")
    asked_cls = estimators.get(asked, "purchases")
    if kind not in asked_cls.boundaries:
        fields.fail("purchases.kind", kind, f"is not a boundary of {asked_cls.name} "
                    f"({', '.join(asked_cls.boundaries) or 'it has none'})")
    out = {"kind": asked, "name": fields.text(f"{where}.name", fields.get(value, "name", where)),
           "settings": fields.settings(asked_cls, f"{where}.settings", value.get("settings"))}
    for key in ("boundary", "reason"):
        out[key] = fields.text(f"{where}.{key}", fields.get(value, key, where))
    return out


def _selection(fields: Fields, value, asked: str):
    """The ``selection`` object of a model file whose purchase model was chosen (``settings.purchases =
    "auto"``): the ranking, checked for shape, and its winner must be the model the file holds."""
    from .estimators.selection import CRITERIA, Selection

    fields.mapping("selection", value)
    winner = fields.get(value, "winner", "selection")
    if winner != asked:
        fields.fail("selection.winner", winner, f"disagrees with the purchase model {asked!r}")
    criterion = fields.get(value, "criterion", "selection")
    if criterion not in CRITERIA:
        fields.fail("selection.criterion", criterion, f"must be one of {', '.join(CRITERIA)}")
    ranking = fields.get(value, "ranking", "selection")
    if not (isinstance(ranking, list) and ranking and all(isinstance(r, dict) and isinstance(r.get("kind"), str)
                                                          for r in ranking)):
        fields.fail("selection.ranking", ranking, "must be a list of rows with a kind")
    reason = fields.text("selection.reason", fields.get(value, "reason", "selection"))
    duration = value.get("holdout_duration")
    table = pd.DataFrame(ranking).set_index("kind")
    return Selection(table, winner, criterion, reason, None if duration is None else float(duration))


class _LegacySettings:
    """The composite's settings of format versions 1 and 2 (checked by type on load)."""

    param_names = ()

    @staticmethod
    def _defaults() -> dict:
        return {"penalizer": 0.0, "spend_penalizer": 0.0, "strict_spend": False}


class ClvModel(Settings):
    """A purchase model and a spend model fitted together on one RFM table (scikit-learn's composite style).

    Parameters
    ----------
    purchases : str or purchase estimator
        A kind (``clv_forecast.estimators.available("purchases")``: ``"bgnbd"``) or an estimator such as
        ``BetaGeoModel(maxiter=300)`` (copied at ``fit``, never fitted itself).
    spend : str, spend estimator or None
        A kind (``"gamma_gamma"``), an estimator, or None for no spend model (CLV then needs
        ``future_spend=``). The spend model is fitted when the table has a ``monetary_value`` column.
    on_boundary : "nested" or "refuse"
        When the purchase model's likelihood has its supremum on a boundary that is a known, simpler model
        (BG/NBD: ``a -> 0`` is the NBD without dropout; ``a, b -> infinity`` one dropout probability for
        everybody), ``"nested"`` (default) makes that model the purchase part, fitted with standard errors on
        the same statistics and labelled (:attr:`boundary_`, the model file, every front end); ``"refuse"``
        keeps the requested model, unreliable ("maximum on a boundary"), as a user who insists on it asks.
    penalizer, spend_penalizer, strict_spend :
        Deprecated aliases (one release) of ``purchases__penalizer``, ``spend__penalizer`` and
        ``spend__strict``: a :class:`DeprecationWarning`, then set on the sub-models.

    ``get_params(deep=True)`` gives the nested settings (``purchases__penalizer``, ``spend__strict``, ...),
    ``set_params(purchases__maxiter=300)`` changes one.

    Attributes (after ``fit``, ``load`` or ``from_params``)
    ------------------------------------------------------
    purchases_ : the fitted purchase model;  spend_ : the fitted spend model or None;  time_unit_ : str;
    training_ : dict (summary of the training table);  problems_ : list of str (why the fit is
    unreliable; empty when it is not);  boundary_ : None, or when the purchase part is the nested model of a
    boundary, a dict ``kind``/``name``/``settings`` (the model asked for), ``boundary`` (which, in a few
    words) and ``reason`` (the diagnosis, one line); :meth:`boundary_line` says it for people.
    """

    def __init__(self, purchases="bgnbd", spend="gamma_gamma", *, on_boundary="nested", penalizer=None,
                 spend_penalizer=None, strict_spend=None) -> None:
        self.purchases = purchases
        self.spend = spend
        self.on_boundary = on_boundary
        aliases = {k: v for k, v in (("penalizer", penalizer), ("spend_penalizer", spend_penalizer),
                                     ("strict_spend", strict_spend)) if v is not None}
        if aliases:
            import warnings

            new = ", ".join(f"{'__'.join(_ALIASES[k])}=" for k in aliases)
            warnings.warn(f"ClvModel({', '.join(f'{k}=' for k in aliases)}) is deprecated: use set_params({new}...) "
                          "or give the sub-model, e.g. ClvModel(purchases=BetaGeoModel(penalizer=0.01))",
                          DeprecationWarning, stacklevel=2)
            self._set_aliases(aliases)

    def _set_aliases(self, aliases: dict) -> None:
        nested = {}
        for key, value in aliases.items():
            role, name = _ALIASES[key]
            if role == "spend" and self.spend is None:
                continue
            nested[f"{role}__{name}"] = value
        self.set_params(**nested)

    # -- settings: the two roles, and their own settings nested (purchases__penalizer) -------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        return ["purchases", "spend", "on_boundary"]

    @classmethod
    def _defaults(cls) -> dict:
        return {"purchases": "bgnbd", "spend": "gamma_gamma", "on_boundary": "nested"}

    def get_params(self, deep: bool = True) -> dict:
        """``purchases`` and ``spend``; with ``deep``, each sub-model's settings as ``role__setting``
        (a kind's are its class defaults)."""
        out = {"purchases": self.purchases, "spend": self.spend, "on_boundary": self.on_boundary}
        if deep:
            for role in ("purchases", "spend"):
                value = out[role]
                if value is None:
                    continue
                sub = value if hasattr(value, "get_params") and not isinstance(value, type) else _estimator(value, role)
                out.update({f"{role}__{k}": v for k, v in sub.get_params(deep=True).items()})
        return out

    def set_params(self, **params) -> "ClvModel":
        """Change settings (effective at the next ``fit``): ``purchases``/``spend`` (a kind or an estimator),
        ``purchases__penalizer=...`` (a kind becomes its estimator with that setting), and the deprecated
        ``penalizer``, ``spend_penalizer``, ``strict_spend``; returns ``self``."""
        nested: dict[str, dict] = {}
        for key, value in params.items():
            role, sep, rest = key.partition("__")
            if key in ("purchases", "spend", "on_boundary"):
                setattr(self, key, value)
            elif key in _ALIASES:
                self._set_aliases({key: value})
            elif sep and role in ("purchases", "spend"):
                nested.setdefault(role, {})[rest] = value
            else:
                valid = ["purchases", "spend", "on_boundary"] + sorted(k for k in self.get_params(deep=True) if "__" in k)
                raise ClvInputError(f"ClvModel has no setting {key!r}; settings are: {', '.join(valid)}",
                                    argument=key, value=value)
        for role, values in nested.items():
            current = getattr(self, role)
            if current is None:
                raise ClvInputError(f"this ClvModel has no {role} model", argument=next(iter(values)),
                                    value=next(iter(values.values())))
            if isinstance(current, (str, type)):
                current = _estimator(current, role)
                setattr(self, role, current)
            current.set_params(**values)
        return self

    def _settings_text(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())

    def inputs(self) -> dict:
        """The columns each role's model reads, ``{"purchases": (...), "spend": (...)}`` (the settings' models;
        no spend without a spend model): what the Spark statistics group by."""
        out = {"purchases": tuple(_estimator(self.purchases, "purchases").inputs)}
        if self.spend is not None:
            out["spend"] = tuple(_estimator(self.spend, "spend").inputs)
        return out

    def parts(self) -> list[tuple[str, object]]:
        """The fitted sub-models as ``[(role, estimator)]``: purchases first, then spend (when there is one)."""
        self._check()
        out = [("purchases", self.purchases_)]
        if self.spend_ is not None:
            out.append(("spend", self.spend_))
        return out

    def fit(self, rfm: pd.DataFrame, *, time_unit=None) -> "ClvModel":
        """Fit both models on an RFM table (frequency, recency, T, monetary_value).

        With ``purchases="auto"`` every candidate purchase model is fitted and the best kept
        (:mod:`clv_forecast.estimators.selection`; the ranking in :attr:`selection_`): by the holdout
        error when the table has holdout columns (``summarize(..., calibration_end=...)``), else by BIC.

        A fit that does not converge or does not identify its parameters is kept (with a
        ``ConvergenceWarning``) but reported by :attr:`problems_`; :meth:`save` refuses it unless
        told otherwise and :meth:`check_reliable` raises.
        """
        unit = time_unit_of(rfm, time_unit)
        if unit is None:
            raise ClvInputError("RFM table: time unit unknown; build it with summarize() or pass time_unit='W'")
        rfm_arrays(rfm)  # validate once, with row numbers of the user's table
        spend = rfm if "monetary_value" in rfm.columns and self.spend is not None else None
        inputs = _estimator(self.purchases, "purchases").inputs
        holdout = duration = None
        if self._selects() and {"frequency_holdout", "duration_holdout"} <= set(rfm.columns) and len(rfm):
            from .rfm import compress

            columns = list(inputs) + ["frequency_holdout"]
            holdout = compress(rfm[columns], columns=columns)
            duration = float(rfm["duration_holdout"].iloc[0])
        return self._fit(_compress_for_fit(rfm, inputs), spend, unit, dict(getattr(rfm, "attrs", {}) or {}), len(rfm),
                         holdout=holdout, holdout_duration=duration)

    def _selects(self) -> bool:
        """The purchase model is chosen at fit time (``purchases="auto"``)."""
        from .estimators.selection import AutoPurchases

        return isinstance(_estimator(self.purchases, "purchases"), AutoPurchases)

    def fit_statistics(self, purchases: pd.DataFrame, spend: "pd.DataFrame | None" = None, *, time_unit,
                       training: dict | None = None, holdout: "pd.DataFrame | None" = None,
                       holdout_duration: float | None = None) -> "ClvModel":
        """Fit on compressed sufficient statistics: ``purchases`` holds unique ``frequency, recency, T``
        rows with their ``count``; ``spend`` (optional) unique ``frequency, monetary_value`` rows with
        their ``count``. The likelihoods are sums over customers, so this is the same fit as on every
        customer (how the Spark engine fits: :func:`clv_forecast.spark.fit_spark`).
        ``training``: the summary's accounting, recorded in :attr:`training_`. ``holdout`` (unique rows of the
        purchase inputs and ``frequency_holdout`` with ``count``) and its window ``holdout_duration`` rank the
        candidates of ``purchases="auto"`` by their holdout error."""
        unit = time_unit_of(purchases, time_unit)
        rfm_arrays(purchases, time_unit=unit)  # validate, with row numbers of the statistics
        n = int(np.asarray(purchases["count"], dtype=np.int64).sum()) if "count" in purchases else len(purchases)
        return self._fit(purchases, spend, unit, dict(training or {}), n, holdout=holdout,
                         holdout_duration=holdout_duration)

    def _check_on_boundary(self) -> None:
        if self.on_boundary not in ON_BOUNDARY:
            raise ClvInputError(f"must be one of {', '.join(ON_BOUNDARY)}", argument="on_boundary",
                                value=self.on_boundary)

    def _fit(self, purchases_data, spend_data, unit, attrs: dict, n_customers: int, holdout=None,
             holdout_duration=None) -> "ClvModel":
        self._check_on_boundary()
        import warnings

        from .estimators.selection import AutoPurchases

        estimator = _estimator(self.purchases, "purchases")
        selection = None
        if isinstance(estimator, AutoPurchases):  # every candidate fitted and ranked; the winner is the model
            selection, purchases, boundary = estimator.select(purchases_data, time_unit=unit,
                                                              on_boundary=self.on_boundary, holdout=holdout,
                                                              holdout_duration=holdout_duration)
            return self._store_fit(purchases, boundary, spend_data, unit, attrs, n_customers, selection)
        # fit into locals: a failure leaves the model as it was, never half-refitted
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            purchases = estimator.fit(purchases_data, time_unit=unit)
        boundary = None
        nested = purchases.boundary_model() if self.on_boundary == "nested" else None
        if nested is None:  # the requested model's warnings hold (a nested model replaces its runaway fit)
            for caught_warning in caught:
                warnings.warn(caught_warning.message, caught_warning.category, stacklevel=3)
        if nested is not None:  # the supremum is a simpler model: that model, labelled (not the runaway values)
            kind, reason = purchases.result_.boundary
            boundary = {"kind": purchases.kind, "name": purchases.name,
                        "settings": {k: plain_setting(v) for k, v in purchases.get_params(deep=False).items()},
                        "boundary": type(purchases).boundaries.get(kind, kind), "reason": reason}
            purchases = nested
        return self._store_fit(purchases, boundary, spend_data, unit, attrs, n_customers, None)

    def _store_fit(self, purchases, boundary, spend_data, unit, attrs: dict, n_customers: int, selection):
        """Fit the spend model and store both parts (nothing is stored when a fit fails)."""
        spend = None
        if spend_data is not None and self.spend is not None:
            spend = _estimator(self.spend, "spend").fit(spend_data, time_unit=unit)
        training = {k: (v if isinstance(v, (int, float, str, type(None))) else str(v)) for k, v in attrs.items()}
        training.setdefault("n_customers", int(n_customers))
        self.purchases_, self.spend_, self.time_unit_, self.training_ = purchases, spend, unit, training
        self.boundary_ = boundary
        self.selection_ = selection
        self.bootstrap_ = None  # a new fit: earlier resamples' vectors no longer belong to it
        return self

    def boundary_line(self) -> str | None:
        """None, or the one line that says the purchase part is a boundary's nested model: which model was
        asked for, which boundary, what was fitted (e.g. ``BG/NBD maximum on a boundary (a -> 0: the data show
        no dropout); fitted the NBD instead: r = 0.52, alpha = 6.1``)."""
        self._check()
        b = getattr(self, "boundary_", None)
        if not b:
            return None
        params = ", ".join(f"{k} = {v:.4g}" for k, v in self.purchases_.params_.items())
        return (f"{b['name']} maximum on a boundary ({b['boundary']}); fitted the {self.purchases_.name} "
                f"instead: {params}")

    @classmethod
    def from_parts(cls, purchases, spend=None, *, time_unit, on_boundary: str = "nested") -> "ClvModel":
        """A composite of already fitted sub-models (e.g. the candidates of ``purchases="auto"`` with one
        spend model): nothing is fitted; each part keeps its own fit and standard errors."""
        model = cls(purchases=_setting_of(purchases), spend=None if spend is None else _setting_of(spend),
                    on_boundary=on_boundary)
        model.purchases_, model.spend_, model.time_unit_ = purchases, spend, str(time_unit)
        model.training_ = {}
        model.boundary_ = model.selection_ = model.bootstrap_ = None
        return model

    @classmethod
    def from_params(cls, *, purchases, spend=None, time_unit="W", purchases_cov=None, spend_cov=None,
                    purchase_model="bgnbd", spend_model="gamma_gamma") -> "ClvModel":
        """A model from given parameters instead of a fit.

        ``purchases``: the purchase model's parameters (BG/NBD: ``r, alpha, a, b``; a dict by name, or a
        sequence in that order); ``spend``: the spend model's (Gamma-Gamma: ``p, q, v``) or None (then CLV
        needs ``future_spend=``); ``purchase_model`` / ``spend_model``: their kinds (or classes);
        ``time_unit``: the unit of the purchase parameters' time scale (``alpha``);
        ``purchases_cov`` / ``spend_cov``: covariances (k x k) for standard errors and CLV
        intervals; without them standard errors are NaN and an interval request raises.
        """
        from .units import DEFAULT_DISCOUNT_RATE, DEFAULT_HORIZON, DEFAULT_MARGIN, DEFAULT_STEP, TimeUnit

        unit = str(TimeUnit.parse(time_unit))
        model = cls(purchases=purchase_model, spend=spend_model if spend is not None else None)
        p_cls = type(_estimator(purchase_model, "purchases"))
        model.purchases_ = p_cls.from_params(purchases, purchases_cov, time_unit=unit)
        model.spend_ = None if spend is None else type(_estimator(spend_model, "spend")).from_params(
            spend, spend_cov, time_unit=unit)
        if spend is None and spend_cov is not None:
            raise ClvInputError("given without spend parameters", argument="spend_cov", value="array")
        model.time_unit_ = unit
        model.training_ = {"source": "parameters given (from_params)"}
        model.boundary_ = model.selection_ = model.bootstrap_ = None
        return model

    def _check(self) -> None:
        if not hasattr(self, "purchases_"):
            raise NotFittedError("This ClvModel is not fitted yet: call fit() or ClvModel.load(path) first.")

    # -- reliability -----------------------------------------------------------------------
    @property
    def problems_(self) -> list[str]:
        """Why this model's estimates cannot be trusted, one line each (empty when they can):
        the sub-models' :attr:`MLEResult.problems` (did not converge, not identified)."""
        return [problem for _, sub in self.parts() for problem in sub.result_.problems]

    def check_reliable(self) -> "ClvModel":
        """Raise :class:`UnreliableFitError` listing :attr:`problems_` and the settings that may help
        (:meth:`remedies`); return ``self`` when there are none."""
        problems = self.problems_
        if problems:
            raise UnreliableFitError("unreliable model: " + "; ".join(problems) + " ("
                                     + self.remedies("save(..., {{allow_unreliable=True}}) keeps it anyway") + ")")
        return self

    def remedies(self, keep: str) -> str:
        """The settings that may help an unreliable fit, as argument mentions (:func:`clv_forecast.errors.render_text`:
        the CLI names its options, the API its arguments): ``keep`` (how to keep the model anyway), then a penalty
        for each part whose fit has problems (a small one keeps runaway parameters finite)."""
        self._check()
        out = [keep]
        if self.purchases_.result_.problems:
            if self.purchases_.result_.boundary is not None and self.on_boundary == "refuse":
                out.append(f"{{{{on_boundary='nested'}}}} gives the simpler model the data support")
            out.append(f"a small {{{{penalizer}}}} (e.g. 0.001) holds back runaway {self.purchases_.name} parameters")
        if self.spend_ is not None and self.spend_.result_.problems:
            out.append(f"a small {{{{spend_penalizer}}}} holds back runaway {self.spend_.name} parameters")
        return "; ".join(out)

    def _check_value(self, future_spend) -> None:
        """Fitted, and a spend per purchase to value the purchases with (the spend model or ``future_spend``)."""
        self._check()
        if self.spend_ is None and future_spend is None:
            raise ClvInputError("this model has no spend model: fit it on an RFM table with a monetary_value "
                                "column, or give a known spend per purchase with future_spend=")

    # -- bootstrap ---------------------------------------------------------------------------
    def bootstrap(self, rfm: pd.DataFrame, n_boot: int = 200, seed=0) -> "ClvModel":
        """Refit the purchase and the spend model on ``n_boot`` resamples of the customers of ``rfm`` (the training
        table, one row per customer) and keep the refitted parameter vectors in :attr:`bootstrap_`, for
        ``interval_method="bootstrap"`` (:mod:`clv_forecast.bootstrap`: each refit is one fit on the compressed
        statistics with the resample's counts as weights, started from the estimate). Refits that fail or land on
        a boundary are counted in :attr:`bootstrap_` (``failed``, ``on_boundary``, ``line()``). The vectors are
        saved in the model file. Returns ``self``."""
        from .bootstrap import bootstrap_model

        self._check()
        self.bootstrap_ = bootstrap_model(self, rfm, n_boot, seed)
        return self

    # -- predictions -----------------------------------------------------------------------
    def predict(self, rfm: pd.DataFrame, horizon="39W", *, time_unit=None) -> pd.DataFrame:
        """Per customer: expected purchases in the horizon, P(alive) and expected spend per purchase.

        ``time_unit`` declares the unit of recency and T for a table without ``attrs["time_unit"]``;
        a table in another unit than the model's is converted to it.
        """
        self._check()
        out = self.purchases_.predict(rfm, horizon, time_unit=time_unit)
        if self.spend_ is not None and "monetary_value" in rfm.columns:
            out["expected_spend"] = self.spend_.conditional_expected_spend(rfm)
        return out

    def clv(self, rfm: pd.DataFrame, *, horizon=DEFAULT_HORIZON, discount_rate=DEFAULT_DISCOUNT_RATE,
            step=DEFAULT_STEP, margin=DEFAULT_MARGIN, interval: float | None = None, interval_method: str = "delta",
            n_draws: int = 200, seed=0, future_spend=None, time_unit=None, portfolio=None) -> pd.DataFrame:
        """Discounted CLV per customer, optionally with a parameter-uncertainty interval on every forecast and
        the portfolio band in ``attrs["portfolio"]`` (see :func:`clv_forecast.value.customer_lifetime_value`). ``future_spend`` (a column name
        or one value per row) replaces the spend model's expectation; ``time_unit`` as in
        :meth:`predict`. The defaults are the package's one set (:data:`clv_forecast.units.VALUE_DEFAULTS`:
        12 months, 10 %/year, monthly steps, margin 1), the same for every command, scorer and the pyfunc."""
        self._check_value(future_spend)
        return customer_lifetime_value(self.purchases_, self.spend_, rfm, horizon=horizon,
                                       discount_rate=discount_rate, step=step, margin=margin,
                                       interval=interval, interval_method=interval_method, n_draws=n_draws,
                                       seed=seed,
                                       future_spend=future_spend, time_unit=time_unit, portfolio=portfolio,
                                       bootstrap=getattr(self, "bootstrap_", None))

    def residual_value(self, rfm: pd.DataFrame, *, horizon=DEFAULT_HORIZON, discount_rate=DEFAULT_DISCOUNT_RATE,
                       step=DEFAULT_STEP, margin=DEFAULT_MARGIN, interval: float | None = None, future_spend=None,
                       time_unit=None) -> pd.DataFrame:
        """The value beyond ``horizon`` per customer: ``margin x expected spend x`` the discounted expected purchases
        after the horizon, to infinity, with the CLV's discrete discounting (:func:`clv_forecast.value_tail.residual_value`;
        columns ``residual_purchases``, ``expected_spend``, ``residual_value`` and, with ``interval``, its delta-method
        bounds). :meth:`clv` plus this, at the same settings, is the value over an unbounded horizon."""
        from .value_tail import residual_value

        self._check_value(future_spend)
        return residual_value(self.purchases_, self.spend_, rfm, horizon=horizon, discount_rate=discount_rate,
                              step=step, margin=margin, interval=interval, future_spend=future_spend,
                              time_unit=time_unit)

    def value_by_period(self, rfm: pd.DataFrame, *, horizon="5Y", period="M", windows=None,
                        discount_rate=DEFAULT_DISCOUNT_RATE, step=None, margin=DEFAULT_MARGIN,
                        interval: float | None = None, interval_method: str = "delta", future_spend=None,
                        time_unit=None, residual: bool = False, portfolio=None, column_totals=None) -> pd.DataFrame:
        """Expected purchases and discounted value per customer for every period (``"M"``, ``"Q"``, ``"Y"``) up to
        the horizon and every window (``"0-1Y,1-3Y,3-5Y"``), in one pass, optionally with delta-method intervals
        and the band of each column's total: :func:`clv_forecast.periods.value_by_period`."""
        from .periods import value_by_period

        self._check_value(future_spend)
        return value_by_period(self.purchases_, self.spend_, rfm, horizon=horizon, period=period, windows=windows,
                               discount_rate=discount_rate, step=step, margin=margin, interval=interval,
                               interval_method=interval_method, future_spend=future_spend, time_unit=time_unit,
                               residual=residual, portfolio=portfolio, column_totals=column_totals)

    @property
    def params_(self) -> dict:
        """The fitted parameters by model kind: ``{"bgnbd": {"r": ...}, "gamma_gamma": {...}}``."""
        return {sub.kind: dict(sub.params_) for sub in self._parts().values()}

    def _parts(self) -> dict:
        """The fitted sub-models by kind (the keys of :meth:`fit_stats`, :attr:`params_` and tracking)."""
        return {sub.kind: sub for _, sub in self.parts()}

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """Estimates, standard errors and Wald intervals of both models, indexed by (model kind, param):
        the one results table that the text summary, the CLI, the report and tracking show."""
        self._check()
        frames = {key: sub.result_.summary_frame(alpha) for key, sub in self._parts().items()}
        return pd.concat(frames, names=["model", "param"])

    def fit_stats(self) -> dict:
        """Fit statistics of both models as plain values by kind, ``{"bgnbd": {...}, "gamma_gamma": {...}}``."""
        self._check()
        return {key: sub.result_.fit_stats() for key, sub in self._parts().items()}

    def summary(self) -> str:
        parts = [sub.summary() for _, sub in self.parts()]
        problems = self.problems_
        if problems:
            parts.append("UNRELIABLE: " + "; ".join(problems))
        return "\n\n".join(parts)

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check()
        problems = self.problems_
        boundary = getattr(self, "boundary_", None)
        selection = getattr(self, "selection_", None)
        out = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "time_unit": self.time_unit_,
            "versions": _versions(),
            "settings": {"purchases": "auto" if selection is not None else
                         boundary["kind"] if boundary else self.purchases_.kind,
                         "spend": None if self.spend_ is None else self.spend_.kind,
                         "on_boundary": self.on_boundary},
            "reliable": not problems,
            "problems": problems,
            "training_data": self.training_,
            "purchases": {"kind": self.purchases_.kind, **self.purchases_.to_dict(),
                          **({"requested": dict(boundary)} if boundary else {})},
            "spend": None if self.spend_ is None else {"kind": self.spend_.kind, **self.spend_.to_dict()},
        }
        if selection is not None:  # the purchase model was chosen: the ranking, and why it won
            out["selection"] = selection.to_dict()
        boot = getattr(self, "bootstrap_", None)
        if boot is not None:  # the refitted vectors of ClvModel.bootstrap (interval_method="bootstrap")
            out["bootstrap"] = boot.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "model") -> "ClvModel":
        """Rebuild a model from :meth:`to_dict` output (format versions 1, 2 and 3).

        Every field is checked: format and version, one parseable time unit (top level and
        sub-models agree), settings of the right types, each parameter positive and finite, the
        covariance k x k, symmetric, numbers or null, standard errors consistent with it. A bad
        field raises a one-line :class:`ClvInputError` naming ``source`` and the field, e.g.
        ``models/x.json: purchases.params.r = -0.24: must be a positive finite number``. A role's ``kind``
        picks its class (:func:`clv_forecast.estimators.get`); an unknown kind is one line naming the known
        ones. Versions 1 and 2 keep the roles under ``"bgnbd"`` and ``"gamma_gamma"``.
        """
        fields = Fields(source)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ClvInputError(f"{source}: not a clv-forecast model file (no 'format': '{FORMAT}')")
        version = data.get("format_version")
        if not (isinstance(version, int) and not isinstance(version, bool)):
            fields.fail("format_version", version, f"must be a whole number from 1 to {FORMAT_VERSION}")
        if version > FORMAT_VERSION:
            raise ClvInputError(f"{source}: model format version {show_value(version)} is newer than this "
                                f"clv-forecast understands ({FORMAT_VERSION}); upgrade clv-forecast")
        if version < 1:
            fields.fail("format_version", version, f"must be a whole number from 1 to {FORMAT_VERSION}")
        unit = fields.unit("time_unit", fields.get(data, "time_unit", ""))
        if unit is None:
            fields.fail("time_unit", None, "must be a time unit such as 'W'")
        legacy = version < 3
        if legacy:
            settings = fields.settings(_LegacySettings, "settings", data.get("settings"))
        else:
            settings = fields.mapping("settings", data.get("settings"), nullable=True)
            for key, value in settings.items():
                if key not in ("purchases", "spend", "on_boundary"):
                    fields.fail(f"settings.{key}", value, "unknown setting (settings are purchases, spend, on_boundary)")
                if key == "on_boundary":
                    if value not in ON_BOUNDARY:
                        fields.fail("settings.on_boundary", value, f"must be one of {', '.join(ON_BOUNDARY)}")
                    continue
                if not (value is None and key == "spend") and not isinstance(value, str):
                    fields.fail(f"settings.{key}", value, "must be a model kind" + (" or null" if key == "spend" else ""))
        training = fields.mapping("training_data", data.get("training_data"), nullable=True)
        for key, check in (("created", fields.text), ("reliable", fields.boolean)):
            if key in data:
                check(key, data[key])
        if "versions" in data:
            fields.mapping("versions", data["versions"], nullable=True)
        if "problems" in data and not (isinstance(data["problems"], list)
                                       and all(isinstance(p, str) for p in data["problems"])):
            fields.fail("problems", data["problems"], "must be a list of text")
        subs, keys, requested, selection = {}, {}, None, None
        for role in ("purchases", "spend"):
            key = _LEGACY_KEYS[role] if legacy else role
            value = fields.get(data, key, "") if role == "purchases" else data.get(key)
            keys[role] = key
            if value is None and role == "spend":
                subs[role] = None
                continue
            if legacy:
                sub_cls = estimators.get(_LEGACY_KEYS[role], role)
            else:
                fields.mapping(key, value)
                kind = fields.get(value, "kind", key)
                if not isinstance(kind, str) or kind not in estimators.available(role):
                    fields.fail(f"{key}.kind", kind, f"unknown model (this clv-forecast knows "
                                f"{', '.join(estimators.available(role))}); upgrade clv-forecast")
                if role == "purchases" and value.get("requested") is not None:
                    requested = _requested(fields, value["requested"], kind)
                nested = role == "purchases" and requested is not None
                asked = requested["kind"] if nested else kind
                if role == "purchases" and settings.get(role) == "auto":  # chosen: the ranking says which won
                    selection = _selection(fields, data.get("selection"), asked)
                elif role in settings and settings[role] != asked:
                    fields.fail(f"settings.{role}", settings[role], f"disagrees with {key}."
                                + ("requested.kind" if nested else "kind") + f" {asked!r}")
                sub_cls = estimators.get(kind, role)
            subs[role] = sub_cls.from_dict(value, source=source, where=key)
        purchases, spend = subs["purchases"], subs["spend"]
        for role, sub in subs.items():
            if sub is not None and sub.time_unit_ is not None and TimeUnit.parse(sub.time_unit_).days != unit.days:
                fields.fail(f"{keys[role]}.time_unit", sub.time_unit_,
                            f"disagrees with the model's time_unit {str(unit)!r}")
        asked = purchases if requested is None else estimators.get(requested["kind"], "purchases")(**requested["settings"])
        model = cls(purchases="auto" if selection is not None else _setting_of(asked),
                    spend=None if spend is None else _setting_of(spend),
                    on_boundary=settings.get("on_boundary", "nested") if not legacy else "nested")
        if legacy:  # the composite's settings of versions 1 and 2, now the sub-models' own
            model._set_aliases({k: v for k, v in settings.items() if v != _LegacySettings._defaults()[k]})
        model.purchases_, model.spend_, model.time_unit_, model.training_ = purchases, spend, str(unit), dict(training)
        model.boundary_ = requested
        model.selection_ = selection
        model.bootstrap_ = None
        if data.get("bootstrap") is not None:  # (older files have none)
            from .bootstrap import BootstrapResult

            shapes = {"purchases": len(type(purchases).param_names),
                      "spend": None if spend is None else len(type(spend).param_names)}
            model.bootstrap_ = BootstrapResult.from_dict(data["bootstrap"], fields, shapes)
        for sub in (purchases, spend):
            if sub is not None:
                sub.time_unit_ = sub.result_.time_unit = str(unit)
        return model

    def save(self, path, *, allow_unreliable: bool = False) -> Path:
        """Write the model as indented JSON, atomically (temporary file + rename).

        An unreliable model (:attr:`problems_` not empty) is refused with
        :class:`UnreliableFitError` unless ``allow_unreliable=True``; the file then records
        ``"reliable": false`` and the problems, and :meth:`load` shows them again. A model that
        :meth:`load` would refuse (a runaway fit with parameters outside the models' ``param_bounds``)
        is never written: :class:`UnreliableFitError` naming the file, the parameter and the bound.
        """
        self._check()
        problems = self.problems_
        if problems and not allow_unreliable:
            raise UnreliableFitError(f"{path}: not saved, the model is unreliable: " + "; ".join(problems)
                                     + " (save(..., allow_unreliable=True) saves it anyway, marked unreliable)")
        text = self.to_json(indent=2)
        try:  # never write a file that load() refuses (parameters outside the bounds of a runaway fit)
            self.from_dict(json.loads(text), source=str(path))
        except ClvInputError as exc:
            raise UnreliableFitError(f"not saved, even with allow_unreliable: {exc}") from None
        return atomic_write_text(path, text + "\n")

    def to_json(self, indent: int | None = None) -> str:
        """The model as the JSON text :meth:`save` writes (plain values; :meth:`from_dict` of its
        ``json.loads`` rebuilds the model, as Spark's executors do)."""
        return json.dumps(json_safe(self.to_dict()), indent=indent, allow_nan=False)

    @classmethod
    def load(cls, path) -> "ClvModel":
        """Read a model saved by :meth:`save`; every field is checked (see :meth:`from_dict`)."""
        from ._io import read_model_json

        return cls.from_dict(read_model_json(path), source=str(Path(path)))

    def _repr_html_(self) -> str | None:
        """The parameters and fit statistics (the tables of :meth:`summary` and the report) for notebooks; None
        before ``fit`` (the text ``repr`` is shown)."""
        from .report import model_html

        return model_html(self)

    def __repr__(self) -> str:
        if hasattr(self, "purchases_"):
            flag = " UNRELIABLE" if self.problems_ else ""
            return f"<ClvModel{flag} {self.purchases_!r} {self.spend_!r} time unit {self.time_unit_}; {self._settings_text()}>"
        return f"ClvModel({self._settings_text()})"
