r"""The two model bases: every public method written once, each model supplies small vectorised kernels.

A purchase model (:class:`PurchaseModel`, role ``"purchases"``) writes, as ``@staticmethod`` s taking the
parameter vector first and then its data columns in the order of :attr:`Estimator.inputs`:

* ``_loglik(params, *columns)``: the (n,) log-likelihood per row;
* ``_loglik_derivatives(params, *columns, weights)`` (optional): the weighted total, score and Hessian in the
  natural parameters; without it :meth:`Estimator._loglik_derivatives` differentiates ``_loglik``
  numerically (the contract suite checks an analytic one against finite differences);
* ``_p_alive(params, x, t_x, T)``: (n,) P(alive | x, t_x, T);
* ``_expected_if_alive(params, times, x, T)``: (n, k) expected purchases in (T, T + t_j] of a customer still
  alive, at the k horizons ``times``; it depends on (x, T) only, so the base evaluates it once per distinct
  (x, T) pair;
* ``_expected_new(params, t)``: E[X(t)] of a newly acquired customer;
* ``_prob_purchases(params, n, t)`` (optional): P(X(t) = n) of a newly acquired customer.
* ``_p_alive_after(params, t, x, t_x, T)`` (optional): P(alive at T + t | x, t_x, T), whatever happens in
  (T, T + t] (:meth:`PurchaseModel.p_alive_at`).

Two kernels suffice for every conditional prediction because

.. math:: E[Y(t) \mid x, t_x, T] = P(\text{alive} \mid x, t_x, T)\; E[Y(t) \mid \text{alive}, x, T]

(Fader, Hardie & Lee 2005, eq. 10 for BG/NBD; the same factorisation holds for MBG/NBD, Pareto/NBD and BG/BB).

A spend model (:class:`SpendModel`, role ``"spend"``) writes ``_expected_spend(params, x, m)`` (expected
spend per transaction given x repeat purchases of mean value m) and ``_fit_rows(x, m)`` (the rows its
likelihood can use); optionally ``check_inputs`` (say which rows are outside the model).

Every estimator class carries ``kind`` (its module's name: the registry key, the model-file key, the CLI and
experiment value), ``name`` (for display), ``role``, ``param_names``, ``inputs`` (the RFM columns it
reads), ``scale_free_params`` and ``param_bounds``. How to add a model: ``CONTRIBUTING.md``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

import warnings

from ..errors import ClvInputError, DataWarning, NotFittedError, row_error  # noqa: F401  (NotFittedError: interface)
from ..units import Duration
from . import _mle
from ._data import (RFM, as_frame_index, column, index_by_value, rfm_arrays, time_unit_of, weights_of,
                    whole_number_frequency, whole_periods)


def params_first(function):
    """A kernel ``k(params, *data)`` from a module function ``function(*params, *data)`` (a staticmethod)."""
    def kernel(params, *data):
        return function(*params, *data)

    kernel.__doc__ = function.__doc__
    return staticmethod(kernel)


def params_last(function):
    """A kernel ``k(params, *data)`` from a module function ``function(*data, *params)`` (a staticmethod)."""
    def kernel(params, *data):
        return function(*data, *params)

    kernel.__doc__ = function.__doc__
    return staticmethod(kernel)


def weighted_derivatives(function):
    """A ``_loglik_derivatives(params, *data, weights=None)`` kernel from ``function(params, *data, weights)``."""
    def kernel(params, *data, weights=None):
        return function(params, *data, weights)

    kernel.__doc__ = function.__doc__
    return staticmethod(kernel)


class Estimator(_mle.MLEModel):
    """A model fitted by maximum likelihood: settings from the constructor's signature, ``params_`` and
    ``result_`` after ``fit`` (scikit-learn style), ``from_params``, ``to_dict``/``from_dict``, ``summary``,
    ``summary_frame``, ``problems_``, ``check_reliable`` and ``repr`` (from :class:`_mle.MLEModel`)."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = "model"
    role: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()

    # -- settings: scikit-learn's get_params(deep=True) / set_params(a__b) ---------------------
    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments by name; with ``deep``, those of estimator-valued settings too
        (``purchases__penalizer``)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            out[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update({f"{name}__{k}": v for k, v in value.get_params(deep=True).items()})
        return out

    def set_params(self, **params):
        """Change settings (effective at the next ``fit``); ``a__b`` sets ``b`` of the estimator in ``a``."""
        nested: dict[str, dict] = {}
        plain = {}
        for key, value in params.items():
            head, sep, rest = key.partition("__")
            if sep:
                nested.setdefault(head, {})[rest] = value
            else:
                plain[key] = value
        if plain:
            super().set_params(**plain)
        valid = self._get_param_names()
        for head, values in nested.items():
            if head not in valid:
                raise ClvInputError(f"{type(self).__name__} has no setting {head!r}; settings are: {', '.join(valid)}",
                                    argument=f"{head}__{next(iter(values))}", value=next(iter(values.values())))
            getattr(self, head).set_params(**values)
        return self

    def check_fitted(self) -> tuple[float, ...]:
        """The fitted parameters in the order of ``param_names``; :class:`NotFittedError` before ``fit``."""
        return self._check_fitted()

    # -- results ------------------------------------------------------------------------------
    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """Estimates, standard errors and Wald ``1 - alpha`` intervals, one row per parameter."""
        self._check_fitted()
        return self.result_.summary_frame(alpha)

    # -- fitting ------------------------------------------------------------------------------
    def _fit_from_starts(self, derivatives, starts, *, n_obs: float, n_rows: int, scales=None,
                         more_needed=None, stop_outside: bool = False) -> "_mle.MLEResult":
        """Maximise one objective from several starts (:func:`clv_forecast.estimators._starts.run_starts`)
        with this model's settings (``penalizer``, ``maxiter``), parameter names, scale-free parameters and
        bounds: ``derivatives(phi)`` -> (total log-likelihood, score, Hessian); the other starts run when
        ``more_needed(result)`` (default: the first fit has problems); ``result.extra["starts"]`` counts them;
        ``stop_outside``: stop an optimisation at its first iterate outside ``param_bounds``
        (:func:`clv_forecast.estimators._mle.maximize`)."""
        from . import _starts

        def prepare(result):
            result.scale_free, result.bounds = tuple(self.scale_free_params), dict(self.param_bounds)

        result, n_starts = _starts.run_starts(
            lambda x0, limit: _mle.maximize(derivatives, x0, self.param_names, n_obs=n_obs, n_rows=n_rows,
                                            model=self.name, penalizer=self.penalizer, maxiter=limit, scales=scales,
                                            stop_outside=self.param_bounds if stop_outside else None),
            starts, maxiter=self.maxiter, prepare=prepare,
            more_needed=more_needed or (lambda result: bool(result.problems)))
        result.extra["starts"] = n_starts
        return result

    # -- kernels ------------------------------------------------------------------------------
    @staticmethod
    def _loglik(params, *columns) -> np.ndarray:  # pragma: no cover - every model writes it
        raise NotImplementedError

    @classmethod
    def _loglik_derivatives(cls, params, *columns, weights=None):
        """Weighted total log-likelihood, score and Hessian in the natural parameters, by central differences
        of :meth:`_loglik` on the log scale (relative steps; a model with analytic derivatives overrides it)."""
        phi = np.asarray(params, dtype=np.float64)
        k = len(phi)
        w = None if weights is None else np.asarray(weights, dtype=np.float64)

        def total(p):
            ll = cls._loglik(p, *columns)
            return float(np.sum(ll) if w is None else np.dot(w, ll))

        h = 1e-4
        ll0 = total(phi)
        score, hess = np.zeros(k), np.zeros((k, k))
        # derivatives in theta = log(phi), then back to phi (d/dphi = 1/phi d/dtheta)
        g = np.zeros(k)
        for i in range(k):
            up, down = phi.copy(), phi.copy()
            up[i] *= np.exp(h)
            down[i] *= np.exp(-h)
            g[i] = (total(up) - total(down)) / (2 * h)
            hess[i, i] = (total(up) - 2 * ll0 + total(down)) / h**2
            for j in range(i):
                pp, pm, mp, mm = phi.copy(), phi.copy(), phi.copy(), phi.copy()
                pp[i] *= np.exp(h); pp[j] *= np.exp(h)  # noqa: E702
                pm[i] *= np.exp(h); pm[j] *= np.exp(-h)  # noqa: E702
                mp[i] *= np.exp(-h); mp[j] *= np.exp(h)  # noqa: E702
                mm[i] *= np.exp(-h); mm[j] *= np.exp(-h)  # noqa: E702
                hess[i, j] = hess[j, i] = (total(pp) - total(pm) - total(mp) + total(mm)) / (4 * h * h)
        score = g / phi
        hess = (hess - np.diag(g)) / phi[:, None] / phi[None, :]
        return ll0, score, hess

    @classmethod
    def _not_available(cls, what: str):
        raise ClvInputError(f"{what} is not available for {cls.name}")


def _unique_pairs(x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (x, T) pairs and each row's position among them, in O(n) without sorting.

    x goes through the whole-number table of :func:`index_by_value`, T through a hash
    factorisation; the pair code then indexes a dense occupancy table when that is small
    (the usual case: few distinct x and T), else is factorised again.
    """
    x_values, x_codes = index_by_value(x)
    t_codes, t_values = pd.factorize(T, sort=False)
    n_t = len(t_values)
    key = x_codes.astype(np.int64) * n_t + t_codes
    size = len(x_values) * n_t
    if size <= 4 * len(key):
        seen = np.zeros(size, dtype=bool)
        seen[key] = True
        pairs = np.flatnonzero(seen)
        position = np.empty(size, dtype=np.int64)
        position[pairs] = np.arange(len(pairs))
        codes = position[key]
    else:
        codes, pairs = pd.factorize(key, sort=False)
    return x_values[pairs // n_t], t_values[pairs % n_t], codes


def distinct_pairs(x: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Distinct (x, T) pairs and each row's position, when deduplicating pays (more than 2,000 rows,
    fewer than half of them distinct); otherwise the rows themselves and ``None``."""
    if x.size > 2_000:
        xu, tu, inverse = _unique_pairs(x, T)
        if len(xu) < x.size // 2:
            return xu, tu, inverse
    return x, T, None


def future_columns(t, *columns):
    """``t`` and the customers' columns shaped for a kernel at a future date: a scalar ``t`` gives (n,)
    results; a vector of horizons with (n,) columns gives (n, k), one column per horizon."""
    t = np.asarray(t, dtype=np.float64)
    columns = [np.asarray(c, dtype=np.float64) for c in columns]
    if t.ndim == 1 and columns[0].ndim == 1:
        columns = [c[:, None] for c in columns]
    return (t, *columns)


def once_per_pair(kernel, t, x, T, *params) -> np.ndarray:
    """``kernel(t, x, T, *params)`` (a function of the future date and (x, T) alone) evaluated once per distinct
    (x, T) pair (:func:`distinct_pairs`) and spread back, for a scalar ``t`` or a vector of horizons (one column
    each)."""
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    inverse = None
    if x.ndim == 1 and t.ndim <= 1:
        x, T, inverse = distinct_pairs(x, T)
    out = kernel(*future_columns(t, x, T), *params)
    return out if inverse is None else out[inverse]


class PurchaseModel(Estimator):
    """Base of the purchase models: predictions written once over the model's kernels (module docstring)."""

    role: ClassVar[str] = "purchases"
    inputs: ClassVar[tuple[str, ...]] = ("frequency", "recency", "T")
    #: True for a discrete-time model (BG/BB): its unit is the period (one transaction opportunity), recency is
    #: the period of the last transaction and T the number of periods, whole numbers with frequency <= recency
    #: (:data:`~clv_forecast.estimators._data.PERIOD_RULES`, checked by ``fit``, the predictions, CLV and the
    #: scorers); a horizon counts the periods that end within it.
    whole_periods: ClassVar[bool] = False
    #: why the model gives P(alive) = 1 to a customer without a repeat purchase, in the model's own terms (one
    #: sentence, without the model's name: the report writes "<name>: <this>" under any table showing it); "" for
    #: a model that gives such customers less than 1
    p_alive_without_repeat: ClassVar[str] = ""

    # -- kernels (each model writes the first four) ---------------------------------------------
    @staticmethod
    def _p_alive(params, x, t_x, T) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _expected_if_alive(params, times, x, T) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _expected_new(params, t) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def _prob_purchases(cls, params, n, t) -> np.ndarray:
        cls._not_available("P(X(t) = n) (prob_purchases)")

    @classmethod
    def _dert(cls, params, delta, x, t_x, T) -> np.ndarray:
        """Discounted expected residual transactions at continuous rate ``delta`` per time unit (optional)."""
        cls._not_available("DERT (discounted expected residual transactions)")

    @classmethod
    def _p_alive_after(cls, params, t, x, t_x, T) -> np.ndarray:
        """P(alive at T + t | x, t_x, T) (optional kernel): a scalar ``t`` gives (n,), a vector of horizons (n, k)."""
        cls._not_available("P(alive) at a future date (p_alive_at)")

    def population(self) -> dict:
        """The fitted heterogeneity as frozen scipy distributions by label (for plots); optional."""
        self._not_available("population()")

    @classmethod
    def _if_alive(cls, params, t, x, T) -> np.ndarray:
        """``_expected_if_alive`` at horizon(s) ``t`` (a scalar: (n,); a vector: (n, k)), once per distinct
        (x, T) pair."""
        t = np.asarray(t, dtype=np.float64)
        xu, tu, inverse = distinct_pairs(x, T)
        out = cls._expected_if_alive(params, np.atleast_1d(t).ravel(), xu, tu)
        if inverse is not None:
            out = out[inverse]
        return out[:, 0] if t.ndim == 0 else out

    # -- public methods ---------------------------------------------------------------------------
    def fit(self, data=None, *, frequency=None, recency=None, T=None, weights=None, time_unit=None):
        """Fit on an RFM table (columns frequency, recency, T; optional ``count`` weights) or arrays.

        Written once for every purchase model: the rows are validated (:func:`rfm_arrays`, with row numbers of
        the user's table), rows of weight 0 dropped, and the model's :meth:`_fit_statistics` hook fits the rest;
        a failure leaves a previous fit as it was."""
        self._check_penalizer()
        rfm = rfm_arrays(data, frequency=frequency, recency=recency, T=T, weights=weights, time_unit=time_unit)
        if self.whole_periods:
            rfm = whole_periods(rfm, "RFM table" if data is not None else "input")
        keep = rfm.weights > 0
        x, t_x, big_t, w = rfm.frequency[keep], rfm.recency[keep], rfm.T[keep], rfm.weights[keep]
        _mle.require(len(x) > 0, f"{self.name}: no customers to fit")
        _mle.require(bool(np.any(x > 0)), f"{self.name}: no customer has a repeat purchase (all frequencies are 0); "
                     "the parameters cannot be identified")
        _mle.require(bool(np.any(big_t > 0)), f"{self.name}: every customer has T = 0; nothing was observed")
        result = self._fit_statistics(x, t_x, big_t, w)
        self._store(result, rfm.time_unit)
        return self

    def _fit_statistics(self, x, t_x, T, w) -> "_mle.MLEResult":  # pragma: no cover - every model writes it
        """The model's fit on validated (compressed) statistics with weights ``w > 0``: an
        :class:`~clv_forecast.estimators._mle.MLEResult` (``_mle.maximize`` does the optimisation)."""
        raise NotImplementedError

    #: the boundaries of the parameter space that are known, simpler models: a short description of each
    #: (shown to users) by the nested model's kind. A fit whose supremum is on one sets ``result_.boundary =
    #: (kind, reason)`` and keeps that model's fit on the same statistics in ``boundary_result_``.
    boundaries: ClassVar[dict[str, str]] = {}

    def boundary_model(self):
        """None, or the nested model the data support when this fit's supremum is on a known boundary
        (``result_.boundary``): an estimator of that kind (:func:`clv_forecast.estimators.get`) holding the
        fit made on the same statistics (``boundary_result_``, with standard errors), with this model's
        penalty and time unit. Nothing is fitted again."""
        self._check_fitted()
        boundary, fit = self.result_.boundary, getattr(self, "boundary_result_", None)
        if boundary is None or fit is None:
            return None
        from . import get

        cls = get(boundary[0], self.role)
        shared = {k: v for k, v in self.get_params(deep=False).items() if k == "penalizer" and k in cls._defaults()}
        nested = cls(**shared)
        nested._store(fit, self.time_unit_)
        return nested

    def horizon(self, t) -> np.ndarray:
        """A horizon in the model's time unit: ``"39W"``/:class:`Duration` converted, a number taken as it is."""
        if isinstance(t, (str, Duration)):
            if self.time_unit_ is None:
                raise ClvInputError(f"horizon {t}: the model's time unit is unknown; fit with time_unit=... or give t in model units")
            return np.asarray(Duration.parse(t).to(self.time_unit_))
        t = np.asarray(t, dtype=np.float64)
        if np.any(~np.isfinite(t)) or np.any(t < 0):
            raise ClvInputError(f"horizon {t!r}: must be non-negative and finite")
        return t

    _horizon = horizon  # the name before the base classes (kept for callers of the private name)

    def expected_purchases(self, t):
        """E[X(t)] for a newly acquired customer; ``t`` in model units or with a unit ("12M")."""
        params = self._check_fitted()
        return type(self)._expected_new(params, self.horizon(t))

    def prob_purchases(self, n, t):
        """P(X(t) = n) for a newly acquired customer."""
        params = self._check_fitted()
        return type(self)._prob_purchases(params, n, self.horizon(t))

    def _rfm(self, data, frequency, recency, T, time_unit) -> RFM:
        """Validated inputs with recency and T in the model's time unit (converted from the table's
        unit, ``attrs["time_unit"]``, or the declared ``time_unit``, when it differs)."""
        rfm = rfm_arrays(data, frequency=frequency, recency=recency, T=T, time_unit=time_unit,
                         model_unit=self.time_unit_, with_weights=False)
        return whole_periods(rfm, "RFM table" if data is not None else "input") if self.whole_periods else rfm

    def conditional_expected_purchases(self, t, data=None, *, frequency=None, recency=None, T=None, time_unit=None):
        """Expected purchases in (T, T+t] per customer: ``P(alive) * E[Y(t) | alive, x, T]``. ``t`` is a
        scalar or a vector of horizons (one column each).

        ``time_unit`` declares the unit of recency and T for input without ``attrs["time_unit"]``;
        inputs in another unit than the model's are converted (see :func:`rfm_arrays`).
        """
        params = self._check_fitted()
        rfm = self._rfm(data, frequency, recency, T, time_unit)
        alive = type(self)._p_alive(params, rfm.frequency, rfm.recency, rfm.T)
        if_alive = type(self)._if_alive(params, self.horizon(t), rfm.frequency, rfm.T)
        if if_alive.ndim == 2 and alive.ndim == 1:
            alive = alive[:, None]
        return alive * if_alive

    def dert(self, data=None, *, frequency=None, recency=None, T=None, discount_rate, time_unit=None):
        """Discounted expected residual transactions per customer (infinite horizon; Fader, Hardie & Lee 2005,
        "RFM and CLV"): ``E[integral of e^(-delta t) dY(t)]`` over the customer's remaining life.

        ``discount_rate``: a number ``d`` is the rate per model time unit (compounded once per unit), a
        :class:`~clv_forecast.units.Rate` or text such as ``"10%/Y"`` is converted to the model's unit; the
        continuous rate is ``delta = ln(1 + d)``. Times ``DERT`` a margin per purchase is an infinite-horizon CLV.
        """
        from ..units import Rate

        params = self._check_fitted()
        if isinstance(discount_rate, (int, float, np.number)) and not isinstance(discount_rate, bool):
            d = float(discount_rate)
        else:
            if self.time_unit_ is None:
                raise ClvInputError(f"discount rate {discount_rate}: the model's time unit is unknown; "
                                    "give the rate per model time unit as a number")
            d = Rate.parse(discount_rate).over(self.time_unit_)
        if not (np.isfinite(d) and d > 0):
            raise ClvInputError(f"discount rate {discount_rate!r}: must be positive (DERT is infinite without discounting)")
        rfm = self._rfm(data, frequency, recency, T, time_unit)
        return type(self)._dert(params, float(np.log1p(d)), rfm.frequency, rfm.recency, rfm.T)

    def p_alive(self, data=None, *, frequency=None, recency=None, T=None, time_unit=None):
        """P(customer still active at T); ``time_unit`` as in :meth:`conditional_expected_purchases`."""
        params = self._check_fitted()
        rfm = self._rfm(data, frequency, recency, T, time_unit)
        return type(self)._p_alive(params, rfm.frequency, rfm.recency, rfm.T)

    def p_alive_at(self, t, data=None, *, frequency=None, recency=None, T=None, time_unit=None):
        """P(customer still active at T + t | x, t_x, T), whatever he does in (T, T + t]: P(alive) times the
        posterior probability of surviving ``t`` more (each model's ``_p_alive_after``; ``t = 0`` is
        :meth:`p_alive`). ``t`` a horizon (``"12M"`` or model units) or a vector of horizons (one column each);
        ``time_unit`` as in :meth:`conditional_expected_purchases`. A discrete-time model (BG/BB) counts the
        whole periods that end within ``t``."""
        params = self._check_fitted()
        if isinstance(t, (list, tuple)):
            t = np.concatenate([np.atleast_1d(self.horizon(v)) for v in t])
        else:
            t = self.horizon(t)
        if np.ndim(t) > 1:
            raise ClvInputError(f"p_alive_at: t must be a horizon or a list of horizons (got shape {np.shape(t)})")
        rfm = self._rfm(data, frequency, recency, T, time_unit)
        return type(self)._p_alive_after(params, t, rfm.frequency, rfm.recency, rfm.T)

    def predict(self, data, horizon="39W", *, time_unit=None) -> pd.DataFrame:
        """Per customer: ``expected_purchases`` in (T, T+horizon] and ``p_alive``, indexed like ``data``.

        The if-alive term is evaluated once per distinct (frequency, T) pair. ``time_unit``
        declares the table's unit when it has no ``attrs["time_unit"]``.
        """
        params = self._check_fitted()
        rfm = self._rfm(data, None, None, None, time_unit)
        h = float(self.horizon(horizon))
        alive = type(self)._p_alive(params, rfm.frequency, rfm.recency, rfm.T)
        expected = alive * type(self)._if_alive(params, h, rfm.frequency, rfm.T)
        return pd.DataFrame({"expected_purchases": expected, "p_alive": alive}, index=as_frame_index(data, len(rfm)))


class SpendModel(Estimator):
    """Base of the spend models: expected spend per transaction written once over ``_expected_spend``."""

    role: ClassVar[str] = "spend"
    inputs: ClassVar[tuple[str, ...]] = ("frequency", "monetary_value")

    @staticmethod
    def _expected_spend(params, x, m) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _fit_rows(x, m) -> np.ndarray:
        """The rows the likelihood can use (by default: repeat buyers with a positive mean spend)."""
        return (np.asarray(x) > 0) & (np.asarray(m) > 0)

    @classmethod
    def check_inputs(cls, x, m, index) -> None:
        """Say (a warning) which rows are outside the model; by default nothing is."""

    #: mean spends the likelihood's numbers stay finite for: ``1 / max_spend <= m <= max_spend``
    max_spend: ClassVar[float] = 1e150

    def fit(self, data=None, *, frequency=None, monetary_value=None, weights=None, time_unit=None):
        """Fit on the repeat buyers (columns frequency, monetary_value; optional ``count`` weights) or arrays.

        Written once for every spend model: the columns are validated (row numbers of the user's table),
        repeat buyers that :meth:`_fit_rows` cannot use are left out with a :class:`DataWarning` naming them
        (an error with the model's ``strict=True``), a mean spend outside ``1/max_spend .. max_spend`` is an
        error, and the model's :meth:`_fit_statistics` hook fits the rest; ``excluded_`` holds the ids left out."""
        source = "RFM table" if data is not None else "input"
        self._check_penalizer()
        x = column(data, "frequency", frequency, source)
        m = column(data, "monetary_value", monetary_value, source)
        if len(m) != len(x):
            raise ClvInputError(f"{source}: frequency and monetary_value have different lengths ({len(x)}, {len(m)})")
        whole_number_frequency(x, source)
        w = weights_of(data, weights, len(x), source)
        index = as_frame_index(data, len(x))
        usable = type(self)._fit_rows(x, m)
        bad = (x > 0) & (w > 0) & ~usable
        excluded = index[bad]
        n_bad = int(round(float(w[bad].sum())))  # customers: rows of compressed statistics weigh their count
        if bad.any():
            compressed = weights is not None or (data is not None and any(
                name in getattr(data, "columns", ()) for name in ("count", "weight", "weights")))
            ids = ("(compressed statistics: no ids)" if compressed else
                   ", ".join(map(str, excluded[:10].tolist())) + (" ..." if bad.sum() > 10 else ""))
            msg = (f"{self.name}: {n_bad} customer(s) with repeat purchases have a non-positive mean "
                   f"spend and cannot enter the model: {ids}")
            if getattr(self, "strict", False):
                raise ClvInputError(f"{source}: column 'monetary_value': {msg}")
            warnings.warn(msg + "; they are left out of the fit ({{strict=True}} makes this an error)",
                          DataWarning, stacklevel=2)
        keep = (w > 0) & usable
        limit = type(self).max_spend
        extreme = keep & ((m > limit) | (m < 1.0 / limit))
        if extreme.any():
            rows = np.flatnonzero(extreme)
            ids = ", ".join(map(str, index[rows[:3]].tolist()))
            span = f"{1.0 / limit:.0e} to {limit:.0e}".replace("e+", "e")
            raise row_error(source, "monetary_value", (rows + 1).tolist(), m[rows[:5]].tolist(),
                            f"a mean spend outside {span} (customers {ids}): the spend "
                            "model's variances would not be finite numbers; give the amounts in another unit of money")
        result = self._fit_statistics(x[keep], m[keep], w[keep])
        result.extra["excluded_customers"] = n_bad
        self._store(result, time_unit_of(data, time_unit))
        self.excluded_ = excluded
        return self

    def _fit_statistics(self, x, m, w) -> "_mle.MLEResult":  # pragma: no cover - every model writes it
        """The model's fit on the usable rows (validated; weights ``w > 0``): an
        :class:`~clv_forecast.estimators._mle.MLEResult`."""
        raise NotImplementedError

    def conditional_expected_spend(self, data=None, *, frequency=None, monetary_value=None) -> np.ndarray:
        """Expected spend per transaction for each customer (population mean for frequency 0)."""
        params = self._check_fitted()
        source = "RFM table" if data is not None else "input"
        x = column(data, "frequency", frequency, source)
        m = column(data, "monetary_value", monetary_value, source)
        type(self).check_inputs(x, m, as_frame_index(data, len(x)))
        return type(self)._expected_spend(params, x, m)

    def predict(self, data, horizon=None) -> pd.DataFrame:
        """Per customer: ``expected_spend`` per purchase (spend has no horizon; accepted for a uniform API)."""
        spend = self.conditional_expected_spend(data)
        return pd.DataFrame({"expected_spend": spend}, index=as_frame_index(data, len(spend)))

    @property
    def mean_spend_(self) -> float:
        """Population mean spend per transaction (a customer without repeat purchases); inf when unbounded."""
        params = self._check_fitted()
        return float(type(self)._expected_spend(params, np.zeros(1), np.zeros(1))[0])
