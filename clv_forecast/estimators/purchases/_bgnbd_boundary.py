r"""Which boundary a BG/NBD fit without an interior maximum is on, and the nested model there.

The BG/NBD likelihood (:mod:`clv_forecast.estimators.purchases.bgnbd`) has two boundaries that are known, simpler
models:

* ``a -> 0`` (``b`` free): every dropout probability is 0, the data show no dropout, and the
  likelihood tends to the NBD's (Ehrenberg 1959; :mod:`clv_forecast.estimators.purchases.nbd`), parameters ``r, alpha``;
* ``a, b -> infinity`` with ``a / (a + b) = p``: one dropout probability for every customer, no
  heterogeneity in dropout (:mod:`clv_forecast.estimators.purchases.constant_dropout`), parameters ``r, alpha, p``.

A fit whose supremum is on one of them sends ``a`` (or ``a`` and ``b``) off and stops somewhere on
the way, with a singular information matrix or shape parameters of 1e7 or 1e-9. The size of the
values reached alone does not say whether the supremum is on a boundary (an interior maximum can sit
at ``a = 0.003``) nor on which; the likelihood does: the nested model is BG/NBD's limit, so BG/NBD's
supremum is at least the nested model's maximum, and the boundary holds the supremum exactly when the
nested model's maximised log-likelihood reaches the best BG/NBD log-likelihood found (from every start,
:mod:`clv_forecast.estimators._starts`) within :data:`TOLERANCE_PER_CUSTOMER` per customer. When both do
(``p -> 0`` of constant dropout is the NBD again) the simpler NBD is named.

A third limit, ``a, b -> 0`` with ``a / (a + b) = pi``, puts every dropout probability at 0 or 1: a share
``pi`` of the customers drops out right after their first repeat purchase and the others never do
(:func:`two_point_loglik`). It is not a model of this package, so it is not given as one: when its
maximised log-likelihood reaches BG/NBD's best (:func:`two_point_limit`) the refused fit says so, with
``pi``, instead of the generic "no interior maximum".
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

from .. import _mle
from . import constant_dropout, nbd

#: the nested model "reaches" BG/NBD's best log-likelihood when it is at most this much lower per
#: customer (the optimiser stops on its way to the boundary a few 1e-9 per customer short of it)
TOLERANCE_PER_CUSTOMER = 1e-6
#: against a clean interior maximum a nested model must be higher by more than rounding
RELATIVE_NOISE = 1e-12

NBD = "nbd"
CONSTANT_DROPOUT = "constant_dropout"
MODULES = {NBD: nbd, CONSTANT_DROPOUT: constant_dropout}
#: each boundary in a few words, by the nested model's kind (``BetaGeoModel.boundaries``: the line a user sees)
DESCRIPTIONS = {NBD: "a -> 0: the data show no dropout",
                CONSTANT_DROPOUT: "a, b -> infinity: one dropout probability for every customer"}


def _arrays(stats):
    """(x, t_x, T, weights) from a tuple or a table of (compressed) statistics
    (columns frequency, recency, T and an optional count)."""
    if isinstance(stats, tuple):
        x, t_x, T, *rest = stats
        w = rest[0] if rest and rest[0] is not None else None
    else:
        x, t_x, T = (stats[c] for c in ("frequency", "recency", "T"))
        w = stats["count"] if "count" in getattr(stats, "columns", stats) else None
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=np.float64)
    return x, t_x, T, w


def nested_fits(stats, *, penalizer: float = 0.0, scales=None, nbd_fit: _mle.MLEResult | None = None) -> dict:
    """The nested models fitted to ``stats``, by kind. With a penalty only the NBD (the penalty keeps
    ``a`` and ``b`` finite, so BG/NBD cannot approach constant dropout). ``scales``: the penalty scales
    of (r, alpha)."""
    x, t_x, T, w = _arrays(stats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = {NBD: nbd_fit if nbd_fit is not None else
                nbd.fit_statistics(x, t_x, T, w, penalizer=penalizer, scales=scales)}
        if penalizer == 0:
            fits[CONSTANT_DROPOUT] = constant_dropout.fit_statistics(
                x, t_x, T, w, x0=[float(fits[NBD].params["r"]), float(fits[NBD].params["alpha"]), 0.1])
    return fits


def _penalised_total(result: _mle.MLEResult) -> float:
    """The maximised (penalised) log-likelihood in total: ``-objective * n``."""
    value = -result.objective * result.n_obs
    return value if np.isfinite(value) else -np.inf


def reaches(nested: _mle.MLEResult, result: _mle.MLEResult) -> bool:
    """Whether the nested model's maximum reaches the BG/NBD ``result``'s (penalised) log-likelihood.

    A clean interior maximum (converged, finite covariance, shape parameters of ordinary size) is the
    supremum unless the nested model is higher by more than rounding (then it was a local maximum); a
    fit on its way to a boundary stops short of it, by up to :data:`TOLERANCE_PER_CUSTOMER` per customer.
    """
    best = _penalised_total(result)
    tolerance = (RELATIVE_NOISE * abs(best) if not result.problems
                 else TOLERANCE_PER_CUSTOMER * max(result.n_obs, 1.0))
    return bool(nested.converged) and _penalised_total(nested) >= best - tolerance


def nbd_limit(result: _mle.MLEResult, nbd_fit: _mle.MLEResult, limit: str, reached: str):
    """None, or ``("nbd", reason)`` when the NBD's maximum reaches ``result`` (:func:`reaches`): for a model whose
    only diagnosed boundary is the NBD (MBG/NBD's ``a -> 0``, Pareto/NBD's ``s -> 0``). ``limit``: the boundary
    in words; ``reached``: the values the fit reached, in words."""
    if result.source != "fit" or not reaches(nbd_fit, result):
        return None
    return NBD, (f"{limit}: the data show no dropout ({reached}); the NBD (Ehrenberg) is the model (r = "
                 f"{nbd_fit.params['r']:.4g}, alpha = {nbd_fit.params['alpha']:.4g}; log-likelihood "
                 f"{nbd_fit.log_likelihood:.4f}, the {result.model} supremum)")


def diagnose_boundary(result: _mle.MLEResult, stats, *, fits: dict | None = None) -> tuple[str, str] | None:
    """None, or ``(kind, reason)`` when the BG/NBD ``result`` (the best of its starts) has its supremum on
    the boundary of a nested model (module docstring): ``kind`` is ``"nbd"`` or ``"constant_dropout"``,
    ``reason`` one line for the user. ``stats``: the fitted statistics (a tuple ``(x, t_x, T, weights)``
    or a table with ``frequency, recency, T[, count]``); ``fits``: the nested fits when already made
    (:func:`nested_fits`)."""
    if result.source != "fit":
        return None
    fits = fits if fits is not None else nested_fits(stats, penalizer=result.penalizer)
    reached = [kind for kind, fit in fits.items() if reaches(fit, result)]
    if not reached:
        return None
    kind = NBD if NBD in reached else reached[0]
    fit = fits[kind]
    a, b = (float(result.params[k]) for k in ("a", "b"))
    if kind == NBD:
        reason = (f"a -> 0: the data show no dropout (reached a = {a:.3g}, b = {b:.3g}, mean dropout probability "
                  f"a/(a+b) = {a / (a + b):.3g}); the NBD (Ehrenberg) is the model "
                  f"(r = {fit.params['r']:.4g}, alpha = {fit.params['alpha']:.4g}; log-likelihood "
                  f"{fit.log_likelihood:.4f}, the BG/NBD supremum)")
    else:
        reason = (f"a, b -> infinity with a/(a+b) = p (reached a = {a:.3g}, b = {b:.3g}): constant dropout "
                  f"probability p = {fit.params['p']:.4g} without heterogeneity (r = {fit.params['r']:.4g}, "
                  f"alpha = {fit.params['alpha']:.4g}; log-likelihood {fit.log_likelihood:.4f}, the BG/NBD "
                  "supremum)")
    return kind, reason


def two_point_loglik(params, x, t_x, T) -> np.ndarray:
    r"""Per-customer log-likelihood of BG/NBD's limit ``a, b -> 0`` with ``a / (a + b) = pi`` (module
    docstring): purchase rates ``lambda ~ Gamma(r, alpha)``; a share ``pi`` drops out right after the first
    repeat purchase, the rest never. With ``A = r log alpha + log Gamma(r + x) - log Gamma(r)``:

    * ``x = 0``: ``A - r log(alpha + T)`` (nobody has dropped out yet);
    * ``x = 1``: ``A + log[(1 - pi) (alpha + T)^{-(r+1)} + pi (alpha + t_x)^{-(r+1)}]``;
    * ``x >= 2``: ``A + log(1 - pi) - (r + x) log(alpha + T)`` (only those who never drop out).

    It is the BG/NBD likelihood (Fader, Hardie & Lee 2005, eq. 6) as ``a, b -> 0``: ``B(a, b + x) / B(a, b)``
    tends to ``1 - pi`` and ``B(a + 1, b + x - 1) / B(a, b)`` to ``pi`` for ``x = 1`` and to 0 beyond.
    """
    r, alpha, pi = (float(v) for v in params)
    x, t_x, T = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    head = r * np.log(alpha) + special.gammaln(r + x) - special.gammaln(r)
    stay = np.log1p(-pi) - (r + x) * np.log(alpha + T)
    one = np.logaddexp(stay, np.log(pi) - (r + 1.0) * np.log(alpha + t_x))
    return head + np.where(x == 0, -r * np.log(alpha + T), np.where(x == 1, one, stay))


def fit_two_point(stats) -> tuple[dict, float] | None:
    """The limit's maximum on ``stats`` (:func:`_arrays`): ``({"r", "alpha", "pi"}, total log-likelihood)``,
    or None when the optimiser fails. Parameters on log / logit scale, numerical gradients (three of them,
    on the compressed rows: a diagnosis, not a fit the user is given)."""
    from scipy import optimize  # (a fit's import: loading and predicting do not need the optimiser)

    x, t_x, T, w = _arrays(stats)

    def natural(theta):
        return np.exp(theta[0]), np.exp(theta[1]), special.expit(theta[2])

    def objective(theta):
        with np.errstate(all="ignore"):
            value = float(np.dot(w, two_point_loglik(natural(theta), x, t_x, T)))
        return -value if np.isfinite(value) else np.inf

    mean_t = float(np.average(T, weights=w)) or 1.0
    best = None
    for start in ([0.0, np.log(mean_t), 0.0], [np.log(0.5), np.log(mean_t / 2), -2.0]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = optimize.minimize(objective, np.array(start), method="Nelder-Mead",
                                    options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 4000})
            res = optimize.minimize(objective, res.x, method="BFGS", options={"gtol": 1e-8})
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        return None
    r, alpha, pi = natural(best.x)
    return {"r": float(r), "alpha": float(alpha), "pi": float(pi)}, -float(best.fun)


def two_point_limit(result: _mle.MLEResult, stats) -> str | None:
    """None, or one line for the user when the BG/NBD ``result`` (not a clean interior maximum, no nested
    model reached) runs to the limit ``a, b -> 0`` (:func:`two_point_loglik`): the limit's maximum reaches
    the best log-likelihood found within :data:`TOLERANCE_PER_CUSTOMER` per customer."""
    if result.source != "fit" or result.penalizer != 0 or not result.problems:
        return None
    a, b = (float(result.params[k]) for k in ("a", "b"))
    if not (np.isfinite(a) and np.isfinite(b)) or a + b > 1e-3:
        return None
    fit = fit_two_point(stats)
    if fit is None:
        return None
    params, ll = fit
    if ll < _penalised_total(result) - TOLERANCE_PER_CUSTOMER * max(result.n_obs, 1.0):
        return None
    return (f"a, b -> 0 with a/(a+b) = pi (reached a = {a:.3g}, b = {b:.3g}): a share pi = {params['pi']:.4g} of "
            "the customers drops out right after their first repeat purchase and the others never do (r = "
            f"{params['r']:.4g}, alpha = {params['alpha']:.4g}; log-likelihood {ll:.4f}, the BG/NBD supremum); "
            "this limit is not a model the package fits; another purchase model (--purchase-model mbgnbd, "
            "pareto_nbd) may fit, at a lower likelihood")
