"""Deprecated location of the model classes, kept one release: they live in :mod:`clv_forecast.estimators`.

``clv_forecast.btyd.bgnbd``, ``.gamma_gamma``, ``._mle`` and ``._data`` are the moved modules themselves
(aliases in ``sys.modules``, not copies), so reading or monkeypatching an attribute through the old name
reaches the owner.
"""

import sys as _sys

from ..estimators import _data, _mle
from ..estimators.purchases import bgnbd
from ..estimators.spend import gamma_gamma
from ..estimators.purchases.bgnbd import BetaGeoModel
from ..estimators.spend.gamma_gamma import GammaGammaModel

for _name, _module in (("_data", _data), ("_mle", _mle), ("bgnbd", bgnbd), ("gamma_gamma", gamma_gamma)):
    _sys.modules[f"{__name__}.{_name}"] = _module

__all__ = ["BetaGeoModel", "GammaGammaModel"]
