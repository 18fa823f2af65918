"""Shared maximum-likelihood driver.

A model supplies one function ``loglik(params) -> (ll, score, hessian)``: the weighted total
log-likelihood of its data and its first and second derivatives in the *natural* parameters.
The driver optimises on log-parameters (every parameter is positive) with scipy's exact-Hessian
trust-region method, and turns the Hessian at the optimum into the covariance of the natural
parameters.

Objective (minimised): ``-ll(phi) / n + penalizer * sum((phi / s) ** 2)`` with ``phi = exp(theta)``,
``n`` the number of customers (the sum of the weights, so the penalty strength does not depend on
the sample size) and ``s`` the model's penalty scales: 1 for a parameter without a unit (a shape
parameter), and for a parameter with a unit (BG/NBD's ``alpha``, in time units; Gamma-Gamma's
``v``, in money) a scale taken from the data in that same unit. ``phi / s`` is then a pure number,
and the penalised fit is the same model whatever the unit of time or money: a change of unit
multiplies the parameter and its scale by the same factor. With ``penalizer = 0`` this is plain
maximum likelihood.

Units: on log-parameters a change of the time unit (days to weeks: every duration divided by 7) is a
shift of ``log alpha`` by ``log 7`` and a constant added to the log-likelihood (the Jacobian of the
rescaled durations); its gradient and Hessian in ``theta`` are unchanged. The trust-region steps are
therefore the same in every unit when the starting points scale with the data's unit too (a model's
starts: :mod:`clv_forecast.estimators._starts`).

Covariance: at the maximum the score is zero, so the observed information in natural parameters
is ``-H(phi)`` and ``cov(phi) = inv(-H(phi))``. This equals the delta method applied to the
log-parameter covariance, ``J inv(-H_theta) J`` with ``J = diag(phi)``, off-diagonal terms
included. With a penalty the (penalised) information ``-H + 2 n penalizer diag(1 / s^2)`` is used.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from ..errors import (ClvInputError, ConvergenceWarning, IdentificationError, NotFittedError,
                      UnreliableFitError, show_value)

#: shape parameters outside [RUNAWAY_LOW, RUNAWAY_HIGH], or any parameter with a relative standard
#: error above RUNAWAY_LOG_SE, mark a fit whose likelihood has no interior maximum
RUNAWAY_LOW, RUNAWAY_HIGH, RUNAWAY_LOG_SE = 1e-6, 1e5, 1e3

LogLik = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]


@dataclass
class MLEResult:
    """Result of a maximum-likelihood fit, in the style of statsmodels' results objects."""

    model: str
    param_names: tuple[str, ...]
    params: pd.Series
    cov: np.ndarray
    log_likelihood: float
    n_obs: float
    n_rows: int
    converged: bool
    n_iter: int
    message: str
    penalizer: float = 0.0
    time_unit: str | None = None
    extra: dict = field(default_factory=dict)
    max_gradient: float = float("nan")
    source: str = "fit"  # "fit", or "params" for a model built from given parameters
    scale_free: tuple[str, ...] = ()  # parameters without a unit (shape parameters), judged by size
    bounds: dict = field(default_factory=dict)  # the model's param_bounds (a fit outside them is a problem)
    #: None, or (kind, reason) when the likelihood's supremum is on a boundary that is a known nested model
    #: (BG/NBD: :func:`clv_forecast.estimators.purchases._bgnbd_boundary.diagnose_boundary`)
    boundary: tuple[str, str] | None = None
    #: None, or one line when the supremum is at a limit of the parameter space that is not a model of the
    #: package (BG/NBD's ``a, b -> 0``: :func:`clv_forecast.estimators.purchases._bgnbd_boundary.two_point_limit`);
    #: the fit stays refused, and this is its first problem
    limit: str | None = None
    objective: float = field(default=float("nan"), repr=False)  # the minimised (penalised) objective

    @property
    def problems(self) -> list[str]:
        """Why these estimates cannot be trusted, one line each (empty for a reliable fit).

        Derived from the state, never stored apart from it: a fit that did not converge, non-finite
        estimates, and a covariance that is not finite (the information matrix was singular or not
        positive definite: the data do not identify the parameters). A model built from given
        parameters (``from_params``) has no fit to judge; without a covariance it simply has no
        standard errors.
        """
        out = [f"{self.model} maximum at a limit: {self.limit}"] if self.limit else []
        if not np.all(np.isfinite(self.params.to_numpy(dtype=float))):
            out.append(f"{self.model} has non-finite parameter estimates")
        if self.source == "params":
            return out
        outside = [f"{n} = {v:.3g} {bound_problem(n, float(v), self.bounds)}" for n, v in self.params.items()
                   if math.isfinite(v) and bound_problem(n, float(v), self.bounds)]
        if outside:
            out.append(f"{self.model} parameters outside the range a model file may hold: " + "; ".join(outside))
        if not self.converged:
            grad = "unknown" if not math.isfinite(self.max_gradient) else f"{self.max_gradient:.3g}"
            out.append(f"{self.model} did not converge (largest gradient {grad} after {self.n_iter} iterations)")
        if not np.all(np.isfinite(self.cov)) and self.boundary is None:
            out.append(f"{self.model} parameters not identified (singular or non-finite information matrix; "
                       "no standard errors)")
            return out
        # A likelihood without an interior maximum (no heterogeneity in the data: one customer,
        # identical customers) sends shape parameters off to infinity; the optimiser then stops on a
        # flat surface and reports success. Shape parameters are unit-free, so their size is telling;
        # a log-scale standard error above RUNAWAY_LOG_SE says the same for any parameter.
        if self.boundary is not None:  # which boundary, and which simpler model the data support
            out.append(f"{self.model} maximum on a boundary: {self.boundary[1]}")
            return out
        with np.errstate(invalid="ignore", divide="ignore"):
            log_se = np.sqrt(np.diag(self.cov)) / self.params.to_numpy(dtype=float)
        runaway = [n for n, v, se in zip(self.param_names, self.params, log_se)
                   if (n in self.scale_free and not (RUNAWAY_LOW <= v <= RUNAWAY_HIGH)) or se > RUNAWAY_LOG_SE]
        if runaway:
            shown = ", ".join(f"{n} = {self.params[n]:.3g}" for n in runaway)
            out.append(f"{self.model} parameters not identified ({shown}, relative std err up to "
                       f"{np.nanmax(log_se):.3g}: the likelihood has no interior maximum)")
        return out

    @property
    def bse(self) -> pd.Series:
        """Standard errors of the natural parameters (square roots of the covariance diagonal)."""
        with np.errstate(invalid="ignore"):
            return pd.Series(np.sqrt(np.diag(self.cov)), index=self.param_names, name="bse")

    def cov_params(self) -> pd.DataFrame:
        """Full covariance matrix of the natural parameters."""
        return pd.DataFrame(self.cov, index=self.param_names, columns=self.param_names)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald ``1 - alpha`` confidence intervals on the log scale, where the fit is made:
        ``params * exp(-/+ z * bse / params)``.

        Every parameter of these models is positive; the interval ``params +/- z * bse`` on the natural
        scale can reach below zero (a dropout probability of 0.0014 with a standard error of 0.0012 would
        get a lower bound of -0.0009), the log-scale one cannot, and it is the interval of the
        parametrisation whose likelihood is close to quadratic. ``bse`` stays the natural-scale standard
        error (delta method: ``se(log theta) = bse / theta``)."""
        z = special.ndtri(1 - alpha / 2)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            spread = np.exp(z * self.bse / self.params)
        return pd.DataFrame({"lower": self.params / spread, "upper": self.params * spread},
                            index=list(self.param_names))

    @property
    def k(self) -> int:
        return len(self.param_names)

    @property
    def aic(self) -> float:
        return 2 * self.k - 2 * self.log_likelihood

    @property
    def bic(self) -> float:
        return self.k * math.log(self.n_obs) - 2 * self.log_likelihood

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """One row per parameter: ``estimate``, ``std_err`` and the Wald ``1 - alpha`` interval on the
        log scale (``lower``, ``upper``; :meth:`conf_int`). The one table behind :meth:`summary`, the CLI, the report and tracking."""
        ci = self.conf_int(alpha)
        return pd.DataFrame({"estimate": self.params, "std_err": self.bse, "lower": ci["lower"],
                             "upper": ci["upper"]}, index=pd.Index(self.param_names, name="param"))

    def fit_stats(self) -> dict:
        """The fit statistics as plain values: customers, unique rows, time unit, log-likelihood, AIC,
        BIC, convergence, iterations, penalizer, the model's extras and its problems."""
        return {"model": self.model, "customers": float(self.n_obs), "unique_rows": int(self.n_rows),
                "time_unit": self.time_unit, "log_likelihood": float(self.log_likelihood), "aic": float(self.aic),
                "bic": float(self.bic), "converged": bool(self.converged), "iterations": int(self.n_iter),
                "penalizer": float(self.penalizer), **self.extra, "problems": list(self.problems)}

    def summary(self) -> str:
        """A readable table: estimates, standard errors, 95 % intervals and fit statistics."""
        frame, stats = self.summary_frame(), self.fit_stats()
        lines = [
            f"{self.model} maximum-likelihood fit",
            f"  customers: {stats['customers']:,.0f}   unique rows: {stats['unique_rows']:,}   "
            f"time unit: {stats['time_unit']}",
            f"  log-likelihood: {stats['log_likelihood']:.4f}   AIC: {stats['aic']:.2f}   BIC: {stats['bic']:.2f}",
            f"  converged: {stats['converged']} ({stats['iterations']} iterations)   penalizer: {stats['penalizer']:g}",
            f"  {'param':>8} {'estimate':>12} {'std err':>12} {'[0.025':>12} {'0.975]':>12}",
        ]
        for name, row in frame.iterrows():
            lines.append(f"  {name:>8} {row['estimate']:12.6g} {row['std_err']:12.6g} {row['lower']:12.6g} "
                         f"{row['upper']:12.6g}")
        for key, value in self.extra.items():
            lines.append(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
        lines += [f"  problem: {problem}" for problem in stats["problems"]]
        return "\n".join(lines)

    def draws(self, n: int, seed=None, bounds: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
        """``n`` parameter vectors from the estimate's asymptotic distribution, shape (n, k).

        Drawn on the log scale, ``log(phi) ~ N(log(phi_hat), J^-1 cov J^-1)`` with
        ``J = diag(phi_hat)`` (the delta method backwards), so every draw is positive; a draw outside
        ``bounds`` (the model's :attr:`MLEModel.param_bounds`) is clipped to them. The covariance is
        scaled on the log scale before it is drawn from (``cov / phi phi^T`` would overflow for tiny
        parameters such as ``alpha = 1e-300``); a log-scale covariance that is not finite raises.
        """
        if not np.all(np.isfinite(self.cov)):
            raise IdentificationError(f"{self.model}: no finite covariance; parameter uncertainty is unavailable")
        phi = self.params.to_numpy()
        with np.errstate(all="ignore"):
            cov_log = self.cov / phi[:, None] / phi[None, :]
        if not np.all(np.isfinite(cov_log)):
            raise IdentificationError(f"{self.model}: the covariance on the log scale is not finite; "
                                      "parameter uncertainty is unavailable")
        rng = np.random.default_rng(seed)
        out = np.exp(rng.multivariate_normal(np.log(phi), cov_log, size=n, method="eigh"))
        for j, name in enumerate(self.param_names):
            low, high = (bounds or {}).get(name, (0.0, np.inf))
            np.clip(out[:, j], low, high, out=out[:, j])
        return out

    def to_dict(self) -> dict:
        return {
            "params": {k: float(v) for k, v in self.params.items()},
            "bse": {k: float(v) for k, v in self.bse.items()},
            "cov": [[float(v) for v in row] for row in self.cov],
            "log_likelihood": float(self.log_likelihood),
            "n_obs": float(self.n_obs),
            "n_rows": int(self.n_rows),
            "converged": bool(self.converged),
            "n_iter": int(self.n_iter),
            "message": self.message,
            "penalizer": float(self.penalizer),
            "max_gradient": float(self.max_gradient),
            "source": self.source,
            "problems": self.problems,
            "extra": {k: v for k, v in self.extra.items()},
            **({"boundary": list(self.boundary)} if self.boundary is not None else {}),
            **({"limit": self.limit} if self.limit else {}),
        }

    @classmethod
    def from_dict(cls, model: str, names: Sequence[str], data: dict, time_unit: str | None) -> "MLEResult":
        """Rebuild from :meth:`to_dict` output (validated first by :func:`check_model_dict`); null -> NaN."""
        names = tuple(names)
        return cls(
            model=model,
            param_names=names,
            params=pd.Series([float(data["params"][n]) for n in names], index=names, name="params"),
            cov=np.array([[_nan(v) for v in row] for row in data["cov"]], dtype=float).reshape(len(names), len(names)),
            log_likelihood=_nan(data.get("log_likelihood")),
            n_obs=_nan(data.get("n_obs")),
            n_rows=int(data.get("n_rows", 0)),
            converged=bool(data.get("converged", True)),
            n_iter=int(data.get("n_iter", 0)),
            message=str(data.get("message", "")),
            penalizer=float(data.get("penalizer", 0.0)),
            time_unit=time_unit,
            extra=dict(data.get("extra") or {}),
            max_gradient=_nan(data.get("max_gradient")),
            source=str(data.get("source", "fit")),
            boundary=tuple(data["boundary"]) if data.get("boundary") is not None else None,
            limit=str(data["limit"]) if data.get("limit") else None,
        )


def _nan(value) -> float:
    """A stored number; JSON null (an unavailable value) is NaN."""
    return float("nan") if value is None else float(value)


def maximize(
    loglik: LogLik,
    x0: Sequence[float],
    names: Sequence[str],
    *,
    n_obs: float,
    n_rows: int,
    model: str,
    penalizer: float = 0.0,
    maxiter: int = 200,
    gtol: float = 1e-6,
    scales: Sequence[float] | None = None,
    stop_outside: Mapping[str, tuple[float, float]] | None = None,
) -> MLEResult:
    """Maximise ``loglik`` over positive parameters; return estimates and their covariance.

    ``scales``: the penalty scale of each parameter (module docstring; default 1 for every one).
    ``stop_outside``: bounds by parameter name (a model's ``param_bounds``); the optimisation stops, not
    converged, at the first iterate outside them: it is running off towards a boundary, the result would be
    flagged there anyway (:attr:`MLEResult.problems`), and for some models (Pareto/NBD) every evaluation far out
    costs many times one inside; the boundary diagnosis then says what the supremum is.
    """
    names = tuple(names)
    k = len(names)
    inv_s2 = np.ones(k) if scales is None else 1.0 / np.asarray(scales, dtype=float) ** 2
    cache: dict[bytes, tuple[float, np.ndarray, np.ndarray]] = {}

    def evaluate(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        key = theta.tobytes()
        if key not in cache:
            cache.clear()
            phi = np.exp(theta)
            with np.errstate(all="ignore"):
                try:
                    cache[key] = loglik(phi)
                except (OverflowError, ZeroDivisionError):  # Python-float arithmetic far off: not finite
                    cache[key] = (float("nan"), np.full(k, np.nan), np.full((k, k), np.nan))
        ll, score, hess = cache[key]
        return ll, score, hess, np.exp(theta)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ll, score, _, phi = evaluate(theta)
        value = -ll / n_obs + penalizer * np.sum(phi**2 * inv_s2)
        grad_phi = -score / n_obs + 2 * penalizer * phi * inv_s2
        if not np.isfinite(value) or not np.all(np.isfinite(grad_phi)):
            return np.inf, np.zeros(k)
        best["calls"] += 1
        if value < best["value"]:  # where to go on from if scipy's step computation fails
            best.update(value=value, theta=np.array(theta, dtype=float))
        return value, grad_phi * phi

    def hess(theta: np.ndarray) -> np.ndarray:
        ll, score, h, phi = evaluate(theta)
        grad_phi = -score / n_obs + 2 * penalizer * phi * inv_s2
        h_phi = -h / n_obs + 2 * penalizer * np.diag(inv_s2)
        out = phi[:, None] * h_phi * phi[None, :] + np.diag(grad_phi * phi)
        if not np.all(np.isfinite(out)):
            return np.eye(k)
        return out

    from scipy import optimize  # imported here only: a loaded model that predicts never needs it

    theta0 = np.log(np.asarray(x0, dtype=float))
    best = {"value": np.inf, "theta": theta0, "calls": 0}
    low = np.array([(stop_outside or {}).get(n, (0.0, np.inf))[0] for n in names])
    high = np.array([(stop_outside or {}).get(n, (0.0, np.inf))[1] for n in names])

    def outside(intermediate_result) -> None:
        phi = np.exp(intermediate_result.x)
        if np.any(phi < low) or np.any(phi > high):
            raise StopIteration

    try:
        res = optimize.minimize(
            fun, theta0, jac=True, hess=hess, method="trust-exact", options={"maxiter": maxiter, "gtol": gtol},
            callback=outside if stop_outside else None,
        )
        if stop_outside and not res.success and "StopIteration" in str(res.message):
            res.message = "stopped: the parameters ran off towards a boundary, out of the model's ordinary range"
            res.ran_off = True
    except (ArithmeticError, ValueError, np.linalg.LinAlgError, UnboundLocalError) as exc:
        # scipy's exact trust-region subproblem can end without a step on an extreme or degenerate Hessian (an
        # UnboundLocalError in some versions): go on from the best point reached with the truncated-CG
        # subproblem; if that fails too, stop there as not converged
        try:
            res = optimize.minimize(fun, best["theta"], jac=True, hess=hess, method="trust-ncg",
                                    options={"maxiter": maxiter, "gtol": gtol})
        except (ArithmeticError, ValueError, np.linalg.LinAlgError, UnboundLocalError):
            res = optimize.OptimizeResult(x=best["theta"], success=False, nit=best["calls"],
                                          message=f"the trust-region step failed ({type(exc).__name__})")
    theta = res.x if getattr(res, "ran_off", False) else _newton_polish(res.x, fun, hess)
    ll, score, h, phi = evaluate(theta)
    objective, final_grad = fun(theta)
    grad_norm = float(np.max(np.abs(final_grad)))
    converged = bool(res.success) or grad_norm < 1e-7
    if not converged:
        warnings.warn(
            f"{model}: the optimiser did not converge after {res.nit} iterations "
            f"({res.message}; largest gradient {grad_norm:.3g}); estimates may be unreliable",
            ConvergenceWarning,
            stacklevel=3,
        )
    info = -h + 2 * penalizer * n_obs * np.diag(inv_s2)
    cov = _covariance(info, names, model, phi)
    return MLEResult(
        model=model,
        param_names=names,
        params=pd.Series(phi, index=names, name="params"),
        cov=cov,
        log_likelihood=float(ll),
        n_obs=float(n_obs),
        n_rows=int(n_rows),
        converged=converged,
        n_iter=int(res.nit),
        message=str(res.message),
        penalizer=float(penalizer),
        max_gradient=grad_norm,
        objective=float(objective),
    )


def _newton_polish(theta: np.ndarray, fun, hess, steps: int = 5) -> np.ndarray:
    """A few plain Newton steps on the gradient alone.

    The trust-region method judges steps by changes of the objective, which rounding limits to
    ~1e-16 relative; near the optimum of a flat likelihood that can stop it early. Newton steps
    only need the (accurate) gradient; a step is kept while it shrinks the gradient.
    """
    grad = fun(theta)[1]
    for _ in range(steps):
        try:
            step = np.linalg.solve(hess(theta), grad)
        except np.linalg.LinAlgError:
            break
        candidate = theta - step
        new_grad = fun(candidate)[1]
        if not np.all(np.isfinite(new_grad)) or np.max(np.abs(new_grad)) >= np.max(np.abs(grad)):
            break
        theta, grad = candidate, new_grad
    return theta


def _covariance(info: np.ndarray, names: tuple[str, ...], model: str, phi: np.ndarray) -> np.ndarray:
    """Invert the observed information; warn when the data do not identify the parameters."""
    k = len(names)
    if not np.all(np.isfinite(info)):
        warnings.warn(f"{model}: the information matrix is not finite; standard errors unavailable",
                      ConvergenceWarning, stacklevel=4)
        return np.full((k, k), np.nan)
    # Judge definiteness on the log scale, where the parameters are comparable.
    scaled = phi[:, None] * info * phi[None, :]
    eig = np.linalg.eigvalsh(scaled)
    if eig[0] <= eig[-1] * 1e-12:
        warnings.warn(
            f"{model}: the information matrix is singular or not positive definite at the estimate "
            f"(smallest eigenvalue {eig[0]:.3g}); the data do not identify all of {', '.join(names)}; "
            "standard errors unavailable",
            ConvergenceWarning,
            stacklevel=4,
        )
        return np.full((k, k), np.nan)
    cov = np.linalg.inv(info)
    return (cov + cov.T) / 2  # an ill-conditioned inverse is symmetric only to rounding


def require(condition: bool, message: str) -> None:
    """Raise :class:`IdentificationError` when ``condition`` is false."""
    if not condition:
        raise IdentificationError(message)


# -- settings from the constructor signature (scikit-learn's get_params convention) --------------


class Settings:
    """Settings derived from the ``__init__`` signature, as scikit-learn's ``BaseEstimator`` does.

    Every constructor argument is stored under its own name and is a setting: ``get_params()``
    reads them back, and saving, loading and ``repr`` use it, so no list kept by hand can drift
    from the constructor (a new argument is saved as soon as it exists).
    """

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        names = []
        for p in inspect.signature(init).parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}: constructor arguments must be explicit (no *args/**kwargs)")
            names.append(p.name)
        return names  # in signature order

    @classmethod
    def _defaults(cls) -> dict:
        return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"}

    def get_params(self, deep: bool = True) -> dict:
        """The constructor arguments (settings) of this estimator, by name."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Change settings (they take effect at the next ``fit``); returns ``self``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ClvInputError(f"{type(self).__name__} has no setting {name!r}; settings are: {', '.join(valid)}",
                                    argument=name, value=value)
            setattr(self, name, value)
        return self

    def _settings_text(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())


def plain_setting(value):
    """A setting as JSON-ready data (a mapping of parameters becomes a dict of floats)."""
    if isinstance(value, (Mapping, pd.Series)):
        return {str(k): float(v) for k, v in dict(value).items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- validation of given parameters and of stored model documents ---------------------------------


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def bound_problem(name: str, value: float, bounds: Mapping[str, tuple[float, float]]) -> str | None:
    """Why ``value`` is outside the range where the model's formulas are finite and fast (``bounds``:
    the model's :attr:`MLEModel.param_bounds`), or None when it is inside."""
    low, high = bounds.get(name, (0.0, math.inf))
    if value < low:
        return f"below {low:g}, the smallest value the model's formulas are evaluated at"
    if value > high:
        return f"above {high:g}, the largest value the model's formulas are evaluated at"
    return None


def param_vector(params, names: Sequence[str], model: str, argument: str = "params",
                 bounds: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Given parameters (a mapping by name, or a sequence in the order ``names``) as a checked vector:
    positive, finite and within ``bounds`` (see :attr:`MLEModel.param_bounds`)."""
    names = tuple(names)
    if isinstance(params, (Mapping, pd.Series)):
        params = dict(params)
        missing = [n for n in names if n not in params]
        unknown = [str(k) for k in params if k not in names]
        if missing or unknown:
            what = (f"missing {', '.join(missing)}" if missing else "") + ("; " if missing and unknown else "") \
                + (f"unknown {', '.join(unknown)}" if unknown else "")
            raise ClvInputError(f"{model} parameters are {', '.join(names)}: {what}", argument=argument, value=params)
        values = [params[n] for n in names]
    elif isinstance(params, (str, bytes)) or not isinstance(params, Sequence | np.ndarray):
        raise ClvInputError(f"{model} parameters must be a dict by name or a sequence ({', '.join(names)})",
                            argument=argument, value=params)
    else:
        values = list(np.asarray(params, dtype=object).ravel())
        if len(values) != len(names):
            raise ClvInputError(f"{model} takes {len(names)} parameters ({', '.join(names)}), got {len(values)}",
                                argument=argument, value=params)
    for name, value in zip(names, values):
        if not (_is_number(value) and math.isfinite(float(value)) and float(value) > 0):
            raise ClvInputError(f"{model} parameter {name} = {show_value(value)}: must be a positive finite number",
                                argument=argument, value=_short(params))
        problem = bound_problem(name, float(value), bounds or {})
        if problem:
            raise ClvInputError(f"{model} parameter {name} = {float(value):g}: {problem}",
                                argument=argument, value=_short(params))
    return np.array([float(v) for v in values])


def _short(value):
    """A value echoed in a message, shortened (a long one by :func:`show_value`)."""
    return value if len(repr(value)) <= 80 else show_value(value)


def cov_matrix(cov, names: Sequence[str], model: str, argument: str = "cov") -> np.ndarray:
    """A given covariance (k x k array, or a DataFrame labelled by parameter): finite, symmetric,
    non-negative variances; ``None`` is an unavailable covariance (all NaN: no standard errors)."""
    k = len(names)
    if cov is None:
        return np.full((k, k), np.nan)
    if isinstance(cov, pd.DataFrame):
        try:
            cov = cov.loc[list(names), list(names)]
        except KeyError:
            raise ClvInputError(f"{model} covariance must be labelled by {', '.join(names)}",
                                argument=argument, value="DataFrame") from None
    try:
        c = np.asarray(cov, dtype=float)
    except (TypeError, ValueError):
        raise ClvInputError(f"{model} covariance is not a numeric matrix", argument=argument, value=cov) from None
    if c.shape != (k, k):
        raise ClvInputError(f"{model} covariance must be {k} x {k} ({', '.join(names)}), got shape {c.shape}",
                            argument=argument, value="array")
    if not np.all(np.isfinite(c)):
        raise ClvInputError(f"{model} covariance has non-finite entries", argument=argument, value="array")
    if not np.allclose(c, c.T, rtol=1e-8, atol=0):
        raise ClvInputError(f"{model} covariance is not symmetric", argument=argument, value="array")
    if np.any(np.diag(c) < 0):
        raise ClvInputError(f"{model} covariance has a negative variance", argument=argument, value="array")
    return c


class Fields:
    """One-line errors about a stored document's fields: ``source: path.to.field = value: reason``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, field_name: str, value, reason: str):
        try:
            text = json.dumps(value, default=str) if not isinstance(value, float) or math.isfinite(value) \
                else repr(value)
        except (ValueError, RecursionError):  # an integer too long to print, a structure too deep
            text = "..."
        text = text if len(text) <= 60 else text[:57] + "..."
        field_name = field_name if len(field_name) <= 80 else field_name[:77] + "..."
        reason = reason if len(reason) <= 200 else reason[:197] + "..."
        raise ClvInputError(f"{self.source}: {field_name} = {text}: {reason}")

    def missing(self, field_name: str):
        raise ClvInputError(f"{self.source}: {field_name} is missing (the model file is incomplete or corrupt)")

    def get(self, data: dict, key: str, where: str, required: bool = True, default=None):
        if key not in data:
            if required:
                self.missing(_join(where, key))
            return default
        return data[key]

    def positive(self, where: str, value) -> float:
        if not (_is_number(value) and math.isfinite(float(value)) and float(value) > 0):
            self.fail(where, value, "must be a positive finite number")
        return float(value)

    def non_negative(self, where: str, value, nullable: bool = False) -> float:
        if value is None and nullable:
            return float("nan")
        if not (_is_number(value) and math.isfinite(float(value)) and float(value) >= 0):
            self.fail(where, value, "must be a non-negative finite number" + (" or null" if nullable else ""))
        return float(value)

    def number(self, where: str, value, nullable: bool = True) -> float:
        if value is None and nullable:
            return float("nan")
        if not (_is_number(value) and math.isfinite(float(value))):
            self.fail(where, value, "must be a finite number" + (" or null" if nullable else ""))
        return float(value)

    def integer(self, where: str, value, low: int = 0) -> int:
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
            self.fail(where, value, f"must be a whole number >= {low}")
        return int(value)

    def boolean(self, where: str, value) -> bool:
        if not isinstance(value, bool):
            self.fail(where, value, "must be true or false")
        return value

    def text(self, where: str, value) -> str:
        if not isinstance(value, str):
            self.fail(where, value, "must be text")
        return value

    def mapping(self, where: str, value, nullable: bool = False) -> dict:
        if value is None and nullable:
            return {}
        if not isinstance(value, dict):
            self.fail(where, value, "must be an object" + (" or null" if nullable else ""))
        return value

    def setting(self, where: str, value, default, param_names: Sequence[str]):
        """A constructor setting, checked against the type of its default."""
        if isinstance(default, bool):
            return self.boolean(where, value)
        if isinstance(default, int):
            return self.integer(where, value, low=1)
        if isinstance(default, float):
            return self.non_negative(where, value)
        if default is None:  # initial_params: null or a dict of positive numbers by parameter
            if value is None:
                return None
            self.mapping(where, value)
            for name, v in value.items():
                if name not in param_names:
                    self.fail(_join(where, name), v, f"unknown parameter (parameters are {', '.join(param_names)})")
                self.positive(_join(where, name), v)
            return dict(value)
        return value

    def settings(self, cls, where: str, value) -> dict:
        value = self.mapping(where, value, nullable=True)
        defaults = cls._defaults()
        out = {}
        for name, v in value.items():
            if name not in defaults:
                self.fail(_join(where, name), v, f"unknown setting (settings are {', '.join(defaults)})")
            out[name] = self.setting(_join(where, name), v, defaults[name], getattr(cls, "param_names", ()))
        return out

    def unit(self, where: str, value):
        from ..units import TimeUnit

        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(where, value, "must be a time unit such as 'W'")
        try:
            return TimeUnit.parse(value)
        except ClvInputError as exc:
            self.fail(where, value, exc.reason)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check_model_dict(cls, data, fields: Fields, where: str = "") -> dict:
    """Validate one stored sub-model (the output of :meth:`MLEModel.to_dict`); returns its settings.

    Every parameter positive and finite; ``cov`` a k x k matrix of numbers or nulls (null: not
    available), symmetric to 1e-8 relative, with non-negative variances; ``bse`` (when stored)
    consistent with its diagonal; fit statistics of the right types. Raises a one-line
    :class:`ClvInputError` naming the field.
    """
    names = cls.param_names
    k = len(names)
    fields.mapping(where or "model", data)
    if "model" in data and data["model"] != cls.name:
        fields.fail(_join(where, "model"), data["model"], f"expected {cls.name!r}")
    params = fields.mapping(_join(where, "params"), fields.get(data, "params", where))
    for name in names:
        value = fields.positive(_join(where, f"params.{name}"), fields.get(params, name, _join(where, "params")))
        problem = bound_problem(name, value, cls.param_bounds)
        if problem:
            fields.fail(_join(where, f"params.{name}"), value, problem)
    for name in params:
        if name not in names:
            fields.fail(_join(where, f"params.{name}"), params[name], f"unknown parameter (parameters are {', '.join(names)})")
    cov = fields.get(data, "cov", where)
    if not (isinstance(cov, list) and len(cov) == k and all(isinstance(row, list) and len(row) == k for row in cov)):
        fields.fail(_join(where, "cov"), cov, f"must be a {k} x {k} matrix ({', '.join(names)})")
    c = np.array([[fields.number(_join(where, f"cov[{i}][{j}]"), v) for j, v in enumerate(row)]
                  for i, row in enumerate(cov)])
    for i in range(k):
        if math.isfinite(c[i, i]) and c[i, i] < 0:
            fields.fail(_join(where, f"cov[{i}][{i}]"), cov[i][i], "a variance cannot be negative")
        for j in range(i + 1, k):
            u, v = c[i, j], c[j, i]
            same = (math.isnan(u) and math.isnan(v)) or abs(u - v) <= 1e-8 * max(abs(u), abs(v))
            if not same:
                fields.fail(_join(where, f"cov[{i}][{j}]"), cov[i][j], f"not symmetric (cov[{j}][{i}] = {cov[j][i]})")
    if "bse" in data:
        bse = fields.mapping(_join(where, "bse"), data["bse"])
        for i, name in enumerate(names):
            se = fields.non_negative(_join(where, f"bse.{name}"), fields.get(bse, name, _join(where, "bse")), nullable=True)
            expected = math.sqrt(c[i, i]) if math.isfinite(c[i, i]) else float("nan")
            if math.isnan(se) != math.isnan(expected) or (
                    not math.isnan(se) and abs(se - expected) > 1e-8 * max(se, expected)):
                fields.fail(_join(where, f"bse.{name}"), bse[name],
                            f"inconsistent with the covariance (sqrt of its diagonal is {expected:.10g})")
    for key, check in (("log_likelihood", fields.number), ("max_gradient", fields.number)):
        if key in data:
            check(_join(where, key), data[key])
    if "n_obs" in data:
        fields.non_negative(_join(where, "n_obs"), data["n_obs"], nullable=True)
    for key in ("n_rows", "n_iter"):
        if key in data:
            fields.integer(_join(where, key), data[key])
    if "converged" in data:
        fields.boolean(_join(where, "converged"), data["converged"])
    if "message" in data:
        fields.text(_join(where, "message"), data["message"])
    if "penalizer" in data:
        fields.non_negative(_join(where, "penalizer"), data["penalizer"])
    if "extra" in data:
        fields.mapping(_join(where, "extra"), data["extra"], nullable=True)
    if "source" in data and data["source"] not in ("fit", "params"):
        fields.fail(_join(where, "source"), data["source"], "must be 'fit' or 'params'")
    if data.get("boundary") is not None and not (isinstance(data["boundary"], list) and len(data["boundary"]) == 2
                                                 and all(isinstance(p, str) for p in data["boundary"])):
        fields.fail(_join(where, "boundary"), data["boundary"], "must be null or [kind, reason] (two texts)")
    if data.get("limit") is not None:
        fields.text(_join(where, "limit"), data["limit"])
    if "problems" in data and not (isinstance(data["problems"], list) and all(isinstance(p, str) for p in data["problems"])):
        fields.fail(_join(where, "problems"), data["problems"], "must be a list of text")
    fields.unit(_join(where, "time_unit"), data.get("time_unit"))
    if "settings" in data:  # format version 2: the constructor's arguments in one object
        return fields.settings(cls, _join(where, "settings"), data["settings"])
    # format version 1: settings stored beside the fit statistics
    defaults = cls._defaults()
    legacy = {k: data[k] for k in defaults if k in data}
    return fields.settings(cls, where, legacy)


class MLEModel(Settings):
    """State shared by the fitted models: settings in, ``params_``/``result_`` out (scikit-learn style).

    Subclasses set ``name`` and ``param_names``; their settings are their constructor's arguments
    (:class:`Settings`). ``fit`` ends with :meth:`_store`.
    """

    name = "model"
    param_names: tuple[str, ...] = ()
    scale_free_params: tuple[str, ...] = ()  # shape parameters (no unit of time or money)
    #: (low, high) of each parameter: where the model's formulas are finite and their cost does not depend
    #: on the parameters; :meth:`from_params` and :meth:`from_dict` (model files) refuse values outside
    param_bounds: dict[str, tuple[float, float]] = {}

    def _check_penalizer(self) -> None:
        if isinstance(self.penalizer, bool) or not isinstance(self.penalizer, (int, float, np.number)) \
                or not (np.isfinite(self.penalizer) and self.penalizer >= 0):
            raise ClvInputError(f"penalizer {self.penalizer!r}: must be a non-negative number")

    def _start(self, default: Sequence[float]) -> list[float]:
        if self.initial_params is not None:
            return [float(self.initial_params[k]) for k in self.param_names]
        return [float(v) for v in default]

    def _store(self, result: MLEResult, time_unit: str | None) -> None:
        result.time_unit = time_unit
        result.scale_free = tuple(self.scale_free_params)
        result.bounds = dict(self.param_bounds)
        self.result_ = result
        self.params_ = result.params
        self.log_likelihood_ = result.log_likelihood
        self.time_unit_ = time_unit
        self.n_customers_ = result.n_obs

    def _check_fitted(self) -> tuple[float, ...]:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit() or load a saved model first.")
        return tuple(float(self.params_[k]) for k in self.param_names)

    @classmethod
    def from_params(cls, params, cov=None, *, time_unit=None):
        """A model with given parameters instead of a fit (e.g. published or elsewhere estimated values).

        ``params`` is a dict by name or a sequence in the order of ``param_names``; every value a
        positive finite number. ``cov`` (k x k array or a DataFrame labelled by parameter) gives the
        standard errors and CLV intervals; without it they are NaN and intervals are unavailable.
        ``time_unit`` is the unit of the parameters' time scale (``alpha`` of BG/NBD is in it).
        """
        from ..units import TimeUnit

        phi = param_vector(params, cls.param_names, cls.name, bounds=cls.param_bounds)
        c = cov_matrix(cov, cls.param_names, cls.name)
        unit = None if time_unit is None else str(TimeUnit.parse(time_unit))
        result = MLEResult(
            model=cls.name, param_names=tuple(cls.param_names),
            params=pd.Series(phi, index=cls.param_names, name="params"), cov=c,
            log_likelihood=float("nan"), n_obs=float("nan"), n_rows=0, converged=True, n_iter=0,
            message="parameters given, not fitted", source="params",
        )
        model = cls()
        model._store(result, unit)
        return model

    @property
    def problems_(self) -> list[str]:
        """Reasons not to trust the fit (did not converge, not identified), one line each; [] if none."""
        self._check_fitted()
        return self.result_.problems

    def check_reliable(self):
        """Raise :class:`UnreliableFitError` listing :attr:`problems_`; return ``self`` when there are none."""
        problems = self.problems_
        if problems:
            raise UnreliableFitError("unreliable fit: " + "; ".join(problems))
        return self

    def summary(self) -> str:
        self._check_fitted()
        return self.result_.summary()

    def _repr_html_(self) -> str | None:
        """The table of :meth:`summary` (estimates, standard errors, intervals, fit statistics) as the report shows
        it, for notebooks; None before ``fit`` (the text ``repr`` is shown)."""
        from ..report import model_html

        return model_html(self)

    def to_dict(self) -> dict:
        self._check_fitted()
        return {"model": self.name, "settings": {k: plain_setting(v) for k, v in self.get_params().items()},
                "time_unit": self.time_unit_, **self.result_.to_dict()}

    @classmethod
    def from_dict(cls, data: dict, source: str = "model", where: str = ""):
        """Rebuild a model saved by :meth:`to_dict`; every field is checked first (one-line
        :class:`ClvInputError` naming ``source`` and the field)."""
        settings = check_model_dict(cls, data, Fields(source), where)
        model = cls(**settings)
        unit = data.get("time_unit")
        unit = None if unit is None else str(Fields(source).unit(_join(where, "time_unit"), unit))
        model._store(MLEResult.from_dict(cls.name, cls.param_names, data, unit), unit)
        return model

    def __repr__(self) -> str:
        settings = self._settings_text()
        if hasattr(self, "params_"):
            params = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
            return f"<{type(self).__name__} fitted: {params}; time unit {self.time_unit_}; {settings}>"
        return f"{type(self).__name__}({settings})"
