"""Shared maximum-likelihood driver.

A model supplies one function ``loglik(params) -> (ll, score, hessian)``: the weighted total
log-likelihood of its data and its first and second derivatives in the *natural* parameters.
The driver optimises on log-parameters (every parameter is positive) with scipy's exact-Hessian
trust-region method, and turns the Hessian at the optimum into the covariance of the natural
parameters.

Objective (minimised): ``-ll(phi) / n + penalizer * sum(phi ** 2)`` with ``phi = exp(theta)`` and
``n`` the number of customers (the sum of the weights), so the penalty strength does not depend
on the sample size. With ``penalizer = 0`` this is plain maximum likelihood.

Covariance: at the maximum the score is zero, so the observed information in natural parameters
is ``-H(phi)`` and ``cov(phi) = inv(-H(phi))``. This equals the delta method applied to the
log-parameter covariance, ``J inv(-H_theta) J`` with ``J = diag(phi)``, off-diagonal terms
included. With a penalty the (penalised) information ``-H + 2 n penalizer I`` is used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from ..errors import ClvInputError, ConvergenceWarning, IdentificationError, NotFittedError

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

    @property
    def bse(self) -> pd.Series:
        """Standard errors of the natural parameters (square roots of the covariance diagonal)."""
        with np.errstate(invalid="ignore"):
            return pd.Series(np.sqrt(np.diag(self.cov)), index=self.param_names, name="bse")

    def cov_params(self) -> pd.DataFrame:
        """Full covariance matrix of the natural parameters."""
        return pd.DataFrame(self.cov, index=self.param_names, columns=self.param_names)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald ``1 - alpha`` confidence intervals ``params +/- z * bse`` (natural scale)."""
        z = special.ndtri(1 - alpha / 2)
        return pd.DataFrame(
            {"lower": self.params - z * self.bse, "upper": self.params + z * self.bse},
            index=list(self.param_names),
        )

    @property
    def k(self) -> int:
        return len(self.param_names)

    @property
    def aic(self) -> float:
        return 2 * self.k - 2 * self.log_likelihood

    @property
    def bic(self) -> float:
        return self.k * math.log(self.n_obs) - 2 * self.log_likelihood

    def summary(self) -> str:
        """A readable table: estimates, standard errors, 95 % intervals and fit statistics."""
        ci = self.conf_int()
        lines = [
            f"{self.model} maximum-likelihood fit",
            f"  customers: {self.n_obs:,.0f}   unique rows: {self.n_rows:,}   time unit: {self.time_unit}",
            f"  log-likelihood: {self.log_likelihood:.4f}   AIC: {self.aic:.2f}   BIC: {self.bic:.2f}",
            f"  converged: {self.converged} ({self.n_iter} iterations)   penalizer: {self.penalizer:g}",
            f"  {'param':>8} {'estimate':>12} {'std err':>12} {'[0.025':>12} {'0.975]':>12}",
        ]
        for name in self.param_names:
            lines.append(
                f"  {name:>8} {self.params[name]:12.6g} {self.bse[name]:12.6g} "
                f"{ci.loc[name, 'lower']:12.6g} {ci.loc[name, 'upper']:12.6g}"
            )
        for key, value in self.extra.items():
            lines.append(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
        return "\n".join(lines)

    def draws(self, n: int, seed=None) -> np.ndarray:
        """``n`` parameter vectors from the estimate's asymptotic distribution, shape (n, k).

        Drawn on the log scale, ``log(phi) ~ N(log(phi_hat), J^-1 cov J^-1)`` with
        ``J = diag(phi_hat)`` (the delta method backwards), so every draw is positive.
        """
        if not np.all(np.isfinite(self.cov)):
            raise IdentificationError(f"{self.model}: no finite covariance; parameter uncertainty is unavailable")
        phi = self.params.to_numpy()
        cov_log = self.cov / np.outer(phi, phi)
        rng = np.random.default_rng(seed)
        return np.exp(rng.multivariate_normal(np.log(phi), cov_log, size=n, method="eigh"))

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
            "extra": {k: v for k, v in self.extra.items()},
        }

    @classmethod
    def from_dict(cls, model: str, names: Sequence[str], data: dict, time_unit: str | None) -> "MLEResult":
        names = tuple(names)
        return cls(
            model=model,
            param_names=names,
            params=pd.Series([data["params"][n] for n in names], index=names, name="params"),
            cov=np.asarray(data["cov"], dtype=float).reshape(len(names), len(names)),
            log_likelihood=float(data["log_likelihood"]),
            n_obs=float(data["n_obs"]),
            n_rows=int(data["n_rows"]),
            converged=bool(data["converged"]),
            n_iter=int(data["n_iter"]),
            message=str(data.get("message", "")),
            penalizer=float(data.get("penalizer", 0.0)),
            time_unit=time_unit,
            extra=dict(data.get("extra", {})),
        )


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
) -> MLEResult:
    """Maximise ``loglik`` over positive parameters; return estimates and their covariance."""
    names = tuple(names)
    k = len(names)
    cache: dict[bytes, tuple[float, np.ndarray, np.ndarray]] = {}

    def evaluate(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        key = theta.tobytes()
        if key not in cache:
            cache.clear()
            phi = np.exp(theta)
            with np.errstate(all="ignore"):
                cache[key] = loglik(phi)
        ll, score, hess = cache[key]
        return ll, score, hess, np.exp(theta)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ll, score, _, phi = evaluate(theta)
        value = -ll / n_obs + penalizer * np.sum(phi**2)
        grad_phi = -score / n_obs + 2 * penalizer * phi
        if not np.isfinite(value) or not np.all(np.isfinite(grad_phi)):
            return np.inf, np.zeros(k)
        return value, grad_phi * phi

    def hess(theta: np.ndarray) -> np.ndarray:
        ll, score, h, phi = evaluate(theta)
        grad_phi = -score / n_obs + 2 * penalizer * phi
        h_phi = -h / n_obs + 2 * penalizer * np.eye(k)
        out = phi[:, None] * h_phi * phi[None, :] + np.diag(grad_phi * phi)
        if not np.all(np.isfinite(out)):
            return np.eye(k)
        return out

    from scipy import optimize  # imported here only: a loaded model that predicts never needs it

    theta0 = np.log(np.asarray(x0, dtype=float))
    res = optimize.minimize(
        fun, theta0, jac=True, hess=hess, method="trust-exact", options={"maxiter": maxiter, "gtol": gtol}
    )
    theta = _newton_polish(res.x, fun, hess)
    ll, score, h, phi = evaluate(theta)
    grad_norm = float(np.max(np.abs(fun(theta)[1])))
    converged = bool(res.success) or grad_norm < 1e-7
    if not converged:
        warnings.warn(
            f"{model}: the optimiser did not converge after {res.nit} iterations "
            f"({res.message}; largest gradient {grad_norm:.3g}); estimates may be unreliable",
            ConvergenceWarning,
            stacklevel=3,
        )
    info = -h + 2 * penalizer * n_obs * np.eye(k)
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
    return np.linalg.inv(info)


def require(condition: bool, message: str) -> None:
    """Raise :class:`IdentificationError` when ``condition`` is false."""
    if not condition:
        raise IdentificationError(message)


class MLEModel:
    """State shared by the fitted models: settings in, ``params_``/``result_`` out (scikit-learn style).

    Subclasses set ``name``, ``param_names`` and ``settings`` (the constructor arguments saved
    with the model) and call :meth:`_store` at the end of ``fit``.
    """

    name = "model"
    param_names: tuple[str, ...] = ()
    settings: tuple[str, ...] = ("penalizer",)

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
        self.result_ = result
        self.params_ = result.params
        self.log_likelihood_ = result.log_likelihood
        self.time_unit_ = time_unit
        self.n_customers_ = result.n_obs

    def _check_fitted(self) -> tuple[float, ...]:
        if not hasattr(self, "params_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call fit() or load a saved model first.")
        return tuple(float(self.params_[k]) for k in self.param_names)

    def summary(self) -> str:
        self._check_fitted()
        return self.result_.summary()

    def to_dict(self) -> dict:
        self._check_fitted()
        return {"model": self.name, **{k: getattr(self, k) for k in self.settings}, "time_unit": self.time_unit_,
                **self.result_.to_dict()}

    @classmethod
    def from_dict(cls, data: dict):
        model = cls(**{k: data[k] for k in cls.settings if k in data})
        model._store(MLEResult.from_dict(cls.name, cls.param_names, data, data.get("time_unit")), data.get("time_unit"))
        return model

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.settings)
        if hasattr(self, "params_"):
            params = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
            return f"<{type(self).__name__} fitted: {params}; time unit {self.time_unit_}; {settings}>"
        return f"{type(self).__name__}({settings})"
