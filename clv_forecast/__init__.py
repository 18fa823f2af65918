"""clv-forecast: probabilistic customer-lifetime-value forecasting.

The path data takes::

    read_transactions -> summarize (RFM, calibration/holdout) -> compress (unique rows + counts)
      -> BetaGeoModel (purchases) + GammaGammaModel (spend) = ClvModel -> predict / clv

Every step is a plain function or a small class usable on its own.
"""

__version__ = "0.1.0"

from .btyd import BetaGeoModel, GammaGammaModel
from .errors import ClvInputError, ConvergenceWarning, DataWarning, IdentificationError, NotFittedError
from .model import ClvModel
from .rfm import compress, summarize
from .simulate import simulate
from .transactions import read_transactions
from .units import Duration, Rate, TimeUnit
from .value import customer_lifetime_value

__all__ = [
    "BetaGeoModel", "GammaGammaModel", "ClvModel", "ClvInputError", "ConvergenceWarning", "DataWarning",
    "IdentificationError", "NotFittedError", "compress", "summarize", "simulate", "read_transactions",
    "Duration", "Rate", "TimeUnit", "customer_lifetime_value", "__version__",
]
