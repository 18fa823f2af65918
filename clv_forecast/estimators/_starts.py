r"""Starting points of a fit and the best-of-starts rule.

A likelihood with a boundary supremum next to an interior maximum (BG/NBD on a year of a retailer's
invoices: an interior maximum at ``a = 0.0034`` and a supremum of lower height at ``a, b -> infinity``)
has a watershed between them; a single fixed start can sit on it, and then rounding (the same log
summarised in days or in weeks) decides which way the optimiser goes. So a fit tries several starts and
keeps the best (penalised) log-likelihood:

* the first start is data-driven: ``(r, alpha)`` from the NBD fitted to the distinct ``(x, T)`` pairs
  (:func:`clv_forecast.estimators.purchases.nbd.fit_statistics`, a 2-parameter fit on a few thousand rows: cheap), with
  ``(a, b) = (1, 1)``; ``initial_params`` given by the user replace it;
* when that fit is not a clean interior maximum (it did not converge, runs off towards a boundary, is
  not identified), or when the NBD (BG/NBD's boundary ``a -> 0``) reaches at least its log-likelihood,
  the fit is repeated from the other starts of :data:`AB_GRID` (same ``r, alpha``), and the best
  objective wins. A fit with an interior maximum that the first start finds costs one start only.

Units: ``r``, ``a``, ``b`` have no unit and ``alpha`` comes from the data in the data's unit, so every
start scales with the unit; on log-parameters a change of unit is a shift of ``log alpha``, and the
optimiser's path is the same in every unit (:mod:`clv_forecast.estimators._mle`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from . import _mle

#: (a, b) of the starts, in the order they are tried (the first with the data-driven r, alpha)
AB_GRID = ((1.0, 1.0), (0.1, 1.0), (1.0, 10.0), (0.01, 0.1))
#: iteration limit of the extra starts (a start that runs off towards a boundary would otherwise use
#: the whole ``maxiter``; an interior maximum takes 5-30 iterations)
EXTRA_START_MAXITER = 60


def clean_interior(result: _mle.MLEResult) -> bool:
    """A converged fit at an interior point with a finite covariance and no other problem."""
    return not result.problems


def run_starts(fit: Callable[[Sequence[float], int], _mle.MLEResult], starts: Sequence[Sequence[float]], *,
               maxiter: int, prepare: Callable[[_mle.MLEResult], None],
               more_needed: Callable[[_mle.MLEResult], bool]) -> tuple[_mle.MLEResult, int]:
    """Fit from ``starts[0]``; when ``more_needed(result)``, from the other starts too; return the fit
    with the lowest objective (the penalised negative mean log-likelihood) and the number of starts run.

    ``fit(x0, maxiter)`` runs one optimisation; ``prepare(result)`` sets what :attr:`MLEResult.problems`
    needs (scale-free parameters, bounds). The warnings of the starts that lose are dropped; the
    winner's are issued again.
    """
    runs: list[tuple[_mle.MLEResult, list]] = []

    def one(x0, limit):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fit(x0, limit)
        prepare(result)
        runs.append((result, caught))
        return result

    first = one(starts[0], maxiter)
    if more_needed(first):
        for x0 in starts[1:]:
            one(x0, min(maxiter, EXTRA_START_MAXITER))

    def key(run):
        result = run[0]
        value = result.objective if math.isfinite(result.objective) else math.inf
        return (value, 0 if clean_interior(result) else 1)

    best, caught = min(runs, key=key)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=3)
    return best, len(runs)


def grid(r: float, alpha: float, given: Sequence[float] | None = None) -> list[list[float]]:
    """The starts: ``given`` (the user's ``initial_params``) or ``(r, alpha, 1, 1)`` first, then
    ``(r, alpha, a, b)`` for the rest of :data:`AB_GRID`."""
    starts = [[r, alpha, a, b] for a, b in AB_GRID]
    if given is not None:
        starts = [list(given)] + starts
    return starts


def data_scale_alpha(x: np.ndarray, T: np.ndarray, w: np.ndarray) -> float:
    """The data's time per repeat purchase, ``sum(w T) / sum(w x)``, in the data's unit: the scale of
    ``alpha`` in the unit-free penalty (``alpha / scale`` is comparable to ``r``: the NBD's mean rate is
    ``r / alpha``)."""
    return float(np.dot(w, T) / max(float(np.dot(w, x)), 1e-300))
