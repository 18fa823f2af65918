"""clv-forecast: probabilistic customer-lifetime-value forecasting.

The path data takes::

    read_transactions -> summarize (RFM, calibration/holdout) -> compress (unique rows + counts)
      -> BetaGeoModel (purchases) + GammaGammaModel (spend) = ClvModel -> predict / clv

Every step is a plain function or a small class usable on its own.

Importing the package is cheap: the names below are imported from their modules on first use
(PEP 562), so ``import clv_forecast`` or ``from clv_forecast.errors import ClvInputError`` loads
none of numpy, pandas, polars or scipy, and ``clv-forecast --help`` starts quickly.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these are imported on first use
    from .estimators.purchases.bgnbd import BetaGeoModel
    from .estimators.spend.gamma_gamma import GammaGammaModel
    from .errors import ClvInputError, ConvergenceWarning, DataWarning, IdentificationError, NotFittedError
    from .model import ClvModel
    from .rfm import compress, summarize
    from .simulate import simulate
    from .transactions import read_transactions
    from .units import Duration, Rate, TimeUnit
    from .value import customer_lifetime_value

    __version__: str

__all__ = [
    "BetaGeoModel", "GammaGammaModel", "ClvModel", "ClvInputError", "ConvergenceWarning", "DataWarning",
    "IdentificationError", "NotFittedError", "compress", "summarize", "simulate", "read_transactions",
    "Duration", "Rate", "TimeUnit", "customer_lifetime_value", "__version__",
]

# public name -> the module that defines it
_EXPORTS = {
    "BetaGeoModel": ".estimators.purchases.bgnbd", "GammaGammaModel": ".estimators.spend.gamma_gamma",
    "ClvInputError": ".errors", "ConvergenceWarning": ".errors", "DataWarning": ".errors",
    "IdentificationError": ".errors", "NotFittedError": ".errors",
    "ClvModel": ".model",
    "compress": ".rfm", "summarize": ".rfm",
    "simulate": ".simulate",
    "read_transactions": ".transactions",
    "Duration": ".units", "Rate": ".units", "TimeUnit": ".units",
    "customer_lifetime_value": ".value",
}
# submodules reachable as attributes (``clv_forecast.rfm``) without importing them first
_SUBMODULES = ("btyd", "cli", "compare", "datasets", "errors", "estimators", "experiment", "historical", "model", "plots", "report",
               "rfm", "scoring", "simulate", "transactions", "units", "value")


def _read_version() -> str:
    # the one place the version is written is pyproject.toml; the installed metadata carries it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clv-forecast")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
    elif name == "__version__":
        value = _read_version()
    elif name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name != "simulate":  # cached as a plain attribute: later look-ups cost nothing
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    dunders = {name for name in globals() if name.startswith("__")}
    return sorted(dunders | set(__all__) | set(_SUBMODULES))


class _Package(ModuleType):
    """The package module, with one fixed attribute: ``simulate`` is the function.

    ``clv_forecast.simulate`` names both a submodule and the function it defines. Importing the
    submodule (``from clv_forecast.simulate import simulate_customers``) makes Python set the
    package attribute ``simulate`` to the module; this data descriptor keeps it the function,
    as it was when the package imported everything eagerly.
    """

    @property
    def simulate(self):  # noqa: D401 - see the class docstring
        return import_module(".simulate", __name__).simulate

    @simulate.setter
    def simulate(self, value) -> None:  # the import system binding the submodule: ignored
        pass


sys.modules[__name__].__class__ = _Package
