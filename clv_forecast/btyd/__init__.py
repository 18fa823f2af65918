"""The probability models ("buy 'til you die"), one module each.

Each module keeps the model's mathematics as small pure vectorised functions (log-likelihood,
score, Hessian, predictions) and one estimator class that holds the fitted state.
"""

from .bgnbd import BetaGeoModel
from .gamma_gamma import GammaGammaModel

__all__ = ["BetaGeoModel", "GammaGammaModel"]
