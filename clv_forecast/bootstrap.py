r"""Bootstrap over customers: the fitted models refitted on resamples of the customers
(``interval_method="bootstrap"``, :meth:`clv_forecast.model.ClvModel.bootstrap`).

The nonparametric bootstrap of a maximum-likelihood estimate (Efron & Tibshirani 1993, *An Introduction to the
Bootstrap*, ch. 6 and 13): draw ``N`` customers with replacement from the ``N`` of the training table, refit, and
repeat ``n_boot`` times; the refitted parameter vectors :math:`\hat\phi^{*1}, \dots, \hat\phi^{*B}` stand for the
estimate's sampling distribution without the normal approximation of the delta method and of parameter draws.

A resample gives customer ``i`` a count :math:`c_i`, :math:`(c_1, \dots, c_N) \sim \mathrm{Multinomial}(N; 1/N,
\dots, 1/N)`. Every likelihood here is a sum over customers, so a refit needs only the counts summed over the
customers that share a row of the compressed statistics (:func:`clv_forecast.rfm.compress`):

.. math:: w^*_u = \sum_{i:\, \mathrm{row}(i) = u} c_i, \qquad \ell^*(\phi) = \sum_u w^*_u\, \ell_u(\phi)

and each refit is one compressed fit (the model's ``_loglik_derivatives`` with weights ``w*``) started from the
original estimate, a few trust-region steps, whatever the number of customers. The purchase and the spend model are
refitted on the same resample of customers (their joint distribution is kept). A penalised model
(``penalizer > 0``) is refitted by its own whole fit (its penalty's scales come from the data).

A refit whose parameters are not finite is *failed* and left out; one that does not come back as a clean interior
maximum (it runs off beyond the model's ``param_bounds``, does not converge or does not identify the parameters) is
*on a boundary*: it is kept, clipped to ``param_bounds`` like a parameter draw, because such resamples are part of
the estimate's sampling distribution. Both are counted and their reasons kept (:class:`BootstrapResult`), never
dropped silently.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import ClvInputError
from .estimators import _mle

#: the largest number of resamples (the vectors are stored in the model file)
MAX_BOOT = 10_000
#: problem lines kept per role (the first ones; the counts are complete)
_KEPT_PROBLEMS = 5


@dataclass
class BootstrapResult:
    """The refitted parameter vectors by role (``result["purchases"]``: an (n, k) array in the order of the model's
    ``param_names``; ``"spend"`` likewise, or None without a spend model), and the accounting of the refits."""

    vectors: dict
    n_boot: int
    seed: int | None
    failed: dict = field(default_factory=dict)  # role -> refits whose parameters were not finite (left out)
    on_boundary: dict = field(default_factory=dict)  # role -> refits kept clipped to param_bounds
    problems: dict = field(default_factory=dict)  # role -> the first problem lines
    seconds: float = float("nan")

    def __getitem__(self, role: str):
        return self.vectors.get(role)

    @property
    def n_used(self) -> int:
        """The resamples whose refits are all usable (the vectors' rows)."""
        return int(len(self.vectors["purchases"]))

    def line(self) -> str:
        """One line for people: resamples used, failed and on a boundary, by role."""
        parts = []
        for role, vectors in self.vectors.items():
            if vectors is None:
                continue
            parts.append(f"{role}: {self.failed.get(role, 0)} failed, {self.on_boundary.get(role, 0)} on a boundary")
        return (f"bootstrap: {self.n_used} of {self.n_boot} resamples of customers used (seed {self.seed}; "
                + "; ".join(parts) + ")")

    def to_dict(self) -> dict:
        out = {"n_boot": int(self.n_boot), "seed": self.seed, "seconds": float(self.seconds)}
        for role, vectors in self.vectors.items():
            out[role] = None if vectors is None else {
                "params": [[float(v) for v in row] for row in vectors],
                "failed": int(self.failed.get(role, 0)), "on_boundary": int(self.on_boundary.get(role, 0)),
                "problems": list(self.problems.get(role, []))}
        return out

    @classmethod
    def from_dict(cls, data, fields: "_mle.Fields", shapes: dict) -> "BootstrapResult":
        """Rebuild from :meth:`to_dict` (the ``"bootstrap"`` object of a model file), every field checked;
        ``shapes``: the number of parameters by role (None: the model has no such role)."""
        where = "bootstrap"
        fields.mapping(where, data)
        n_boot = fields.integer(f"{where}.n_boot", fields.get(data, "n_boot", where), low=1)
        seed = data.get("seed")
        if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
            fields.fail(f"{where}.seed", seed, "must be a whole number or null")
        vectors, failed, on_boundary, problems, rows = {}, {}, {}, {}, set()
        for role, k in shapes.items():
            value = data.get(role)
            if k is None or value is None:
                if k is not None:
                    fields.fail(f"{where}.{role}", value, f"missing: the model has a {role} model")
                vectors[role] = None
                continue
            fields.mapping(f"{where}.{role}", value)
            params = fields.get(value, "params", f"{where}.{role}")
            try:
                array = np.array(params, dtype=float)
            except (TypeError, ValueError):
                array = None
            if array is None or array.ndim != 2 or array.shape[1] != k or not len(array) \
                    or not np.all(np.isfinite(array)) or not np.all(array > 0):
                fields.fail(f"{where}.{role}.params", "...", f"must be a non-empty list of rows of {k} positive "
                            "finite numbers")
            vectors[role] = array
            rows.add(len(array))
            failed[role] = fields.integer(f"{where}.{role}.failed", value.get("failed", 0))
            on_boundary[role] = fields.integer(f"{where}.{role}.on_boundary", value.get("on_boundary", 0))
            lines = value.get("problems", [])
            if not (isinstance(lines, list) and all(isinstance(p, str) for p in lines)):
                fields.fail(f"{where}.{role}.problems", lines, "must be a list of text")
            problems[role] = list(lines)
        if len(rows) > 1:
            fields.fail(f"{where}.spend.params", "...", "must have as many rows as bootstrap.purchases.params")
        seconds = data.get("seconds")
        return cls(vectors, n_boot, seed, failed, on_boundary, problems,
                   float("nan") if seconds is None else fields.number(f"{where}.seconds", seconds))


def check_n_boot(n_boot) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or not 2 <= n_boot <= MAX_BOOT:
        raise ClvInputError(f"must be a whole number from 2 to {MAX_BOOT:,} (resamples of customers)",
                            argument="n_boot", value=n_boot)
    return int(n_boot)


def refit(estimator, columns, weights: np.ndarray):
    """One refit of a fitted ``estimator`` on its compressed statistics ``columns`` (in the order of its
    ``inputs``; for a spend model its usable rows) with the resample's ``weights``, started from its estimate
    (module docstring). Returns the :class:`~clv_forecast.estimators._mle.MLEResult` (``problems`` says how it
    ended); raises nothing for a fit that goes wrong (non-finite parameters instead)."""
    cls = type(estimator)
    keep = weights > 0
    cols = tuple(np.ascontiguousarray(np.asarray(c)[keep]) for c in columns)
    w = np.asarray(weights, dtype=np.float64)[keep]
    k = len(cls.param_names)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            if getattr(estimator, "penalizer", 0.0):
                fresh = cls(**estimator.get_params(deep=False))
                result = fresh._fit_statistics(*cols, w)
            else:
                result = _mle.maximize(lambda phi: cls._loglik_derivatives(phi, *cols, weights=w),
                                       estimator.check_fitted(), cls.param_names, n_obs=float(w.sum()),
                                       n_rows=len(w), model=cls.name, maxiter=getattr(estimator, "maxiter", 200),
                                       stop_outside=cls.param_bounds)
        except (ArithmeticError, ValueError, np.linalg.LinAlgError, ClvInputError) as exc:
            return _mle.MLEResult(model=cls.name, param_names=tuple(cls.param_names),
                                  params=pd.Series(np.full(k, np.nan), index=cls.param_names),
                                  cov=np.full((k, k), np.nan), log_likelihood=float("nan"), n_obs=float(w.sum()),
                                  n_rows=len(w), converged=False, n_iter=0,
                                  message=f"{type(exc).__name__}: {exc}")
    result.scale_free, result.bounds = tuple(cls.scale_free_params), dict(cls.param_bounds)
    return result


def _codes(frame, columns):
    """Each row's position among the distinct rows of ``columns`` and those rows' columns (as arrays)."""
    from .rfm import compress

    unique, inverse = compress(frame[list(columns)], columns=list(columns), return_inverse=True)
    return np.asarray(inverse, dtype=np.int64), [unique[c].to_numpy(dtype=np.float64) for c in columns]


def bootstrap_model(model, rfm, n_boot: int, seed) -> BootstrapResult:
    """The refitted vectors of a fitted :class:`~clv_forecast.model.ClvModel` on ``n_boot`` resamples of the
    customers of ``rfm`` (its training table, one row per customer; module docstring)."""
    from .estimators._data import rfm_arrays

    n_boot = check_n_boot(n_boot)
    started = time.perf_counter()
    unit = model.time_unit_
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ClvInputError("must be a whole number or None", argument="seed", value=seed)
    arrays = rfm_arrays(rfm, model_unit=unit, with_weights=False)  # validated; recency and T in the model's unit
    if "count" in rfm.columns:
        raise ClvInputError("the bootstrap resamples customers: give the table with one row per customer, not "
                            "compressed statistics with a 'count' column", argument="rfm", value="count")
    n = len(rfm)
    if n < 2:
        raise ClvInputError(f"{n} customer(s): the bootstrap needs at least 2", argument="rfm", value=n)
    roles = {"purchases": model.purchases_}
    if model.spend_ is not None:
        if "monetary_value" not in rfm.columns:
            raise ClvInputError("the model has a spend model: the table needs the monetary_value column it was "
                                "fitted with", argument="rfm", value="monetary_value")
        roles["spend"] = model.spend_
    prepared = {}
    for role, est in roles.items():
        if role == "spend":
            x = rfm["frequency"].to_numpy(dtype=np.float64)
            m = rfm["monetary_value"].to_numpy(dtype=np.float64)
            usable = np.asarray(type(est)._fit_rows(x, m), dtype=bool)
            codes = np.full(n, -1, dtype=np.int64)
            inner, cols = _codes(rfm.loc[usable], est.inputs)
            codes[usable] = inner
        else:
            table = pd.DataFrame({"frequency": arrays.frequency, "recency": arrays.recency, "T": arrays.T})
            codes, cols = _codes(table, est.inputs)
        prepared[role] = (codes, cols)
    rng = np.random.default_rng(seed)
    rows = {role: [] for role in roles}
    failed = {role: 0 for role in roles}
    on_boundary = {role: 0 for role in roles}
    problems = {role: [] for role in roles}
    for _ in range(n_boot):
        picked = rng.integers(0, n, size=n)
        results = {}
        for role, est in roles.items():
            codes, cols = prepared[role]
            c = codes[picked]
            w = np.bincount(c[c >= 0], minlength=len(cols[0])).astype(np.float64)
            results[role] = refit(est, cols, w)
        usable = True
        for role, result in results.items():
            phi = result.params.to_numpy(dtype=float)
            if not np.all(np.isfinite(phi) & (phi > 0)):
                failed[role] += 1
                usable = False
                why = result.message if not result.problems else result.problems[0]
                if len(problems[role]) < _KEPT_PROBLEMS:
                    problems[role].append(f"failed: {why}")
            elif result.problems:
                on_boundary[role] += 1
                if len(problems[role]) < _KEPT_PROBLEMS:
                    problems[role].append(result.problems[0])
        if not usable:
            continue
        for role, result in results.items():
            phi = result.params.to_numpy(dtype=float).copy()
            for j, name in enumerate(type(roles[role]).param_names):
                low, high = type(roles[role]).param_bounds.get(name, (0.0, np.inf))
                phi[j] = min(max(phi[j], low), high)
            rows[role].append(phi)
    if not rows["purchases"]:
        raise ClvInputError(f"every one of the {n_boot} refits failed ({'; '.join(sum(problems.values(), [])[:2])})",
                            argument="n_boot", value=n_boot)
    vectors = {role: np.array(rows[role]) for role in roles}
    vectors.setdefault("spend", None)
    return BootstrapResult(vectors, n_boot, None if seed is None else int(seed), failed, on_boundary, problems,
                           time.perf_counter() - started)
