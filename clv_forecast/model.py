"""The fitted CLV model: BG/NBD purchases + Gamma-Gamma spend, one object, one time unit.

``ClvModel`` is what runs, the CLI, tracking and scoring pass around. It is saved as a small
human-readable JSON file (parameters, covariance, fit statistics, time unit, training-data
summary and library versions), never as a pickle of the data.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from ._io import atomic_write_text
from .btyd import BetaGeoModel, GammaGammaModel
from .btyd._data import rfm_arrays, time_unit_of
from .errors import ClvInputError, NotFittedError
from .units import TimeUnit
from .value import customer_lifetime_value

FORMAT = "clv-forecast-model"
FORMAT_VERSION = 1


def _versions() -> dict:
    import scipy

    from . import __version__

    return {"clv_forecast": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "pandas": pd.__version__, "python": platform.python_version()}


def json_safe(value):
    """Standard JSON: NaN and infinities (e.g. standard errors of an unidentified fit) become null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _compress_for_fit(data) -> pd.DataFrame:
    """Unique (frequency, recency, T) rows with counts: all the BG/NBD likelihood needs."""
    from .rfm import compress

    return compress(data[["frequency", "recency", "T"]])


class ClvModel:
    """BG/NBD + Gamma-Gamma, fitted together on one RFM table.

    Parameters
    ----------
    penalizer, spend_penalizer : float
        L2 penalties of the purchase and spend models.
    strict_spend : bool
        Raise instead of warning when repeat buyers have a non-positive mean spend.
    """

    def __init__(self, penalizer: float = 0.0, spend_penalizer: float = 0.0, strict_spend: bool = False) -> None:
        self.penalizer = penalizer
        self.spend_penalizer = spend_penalizer
        self.strict_spend = strict_spend

    def fit(self, rfm: pd.DataFrame, *, time_unit=None) -> "ClvModel":
        """Fit both models on an RFM table (frequency, recency, T, monetary_value)."""
        unit = time_unit_of(rfm, time_unit)
        if unit is None:
            raise ClvInputError("RFM table: time unit unknown; build it with summarize() or pass time_unit='W'")
        rfm_arrays(rfm)  # validate once, with row numbers of the user's table
        # fit into locals: a failure leaves the model as it was, never half-refitted
        purchases = BetaGeoModel(penalizer=self.penalizer).fit(_compress_for_fit(rfm), time_unit=unit)
        spend = None
        if "monetary_value" in rfm.columns:
            spend = GammaGammaModel(penalizer=self.spend_penalizer, strict=self.strict_spend).fit(rfm, time_unit=unit)
        training = {k: (v if isinstance(v, (int, float, str, type(None))) else str(v))
                    for k, v in dict(getattr(rfm, "attrs", {}) or {}).items()}
        training.setdefault("n_customers", int(len(rfm)))
        self.purchases_, self.spend_, self.time_unit_, self.training_ = purchases, spend, unit, training
        return self

    def _check(self) -> None:
        if not hasattr(self, "purchases_"):
            raise NotFittedError("This ClvModel is not fitted yet: call fit() or ClvModel.load(path) first.")

    def _check_spend(self) -> None:
        self._check()
        if self.spend_ is None:
            raise ClvInputError("this model has no spend model: fit it on an RFM table with a monetary_value column")

    # -- predictions -----------------------------------------------------------------------
    def predict(self, rfm: pd.DataFrame, horizon="39W") -> pd.DataFrame:
        """Per customer: expected purchases in the horizon, P(alive) and expected spend per purchase."""
        self._check()
        out = self.purchases_.predict(rfm, horizon)
        if self.spend_ is not None and "monetary_value" in rfm.columns:
            out["expected_spend"] = self.spend_.conditional_expected_spend(rfm)
        return out

    def clv(self, rfm: pd.DataFrame, *, horizon="12M", discount_rate="0%/Y", step="1M", margin=1.0,
            interval: float | None = None, n_draws: int = 200, seed=0) -> pd.DataFrame:
        """Discounted CLV per customer, optionally with a parameter-uncertainty interval
        (see :func:`clv_forecast.value.customer_lifetime_value`)."""
        self._check_spend()
        return customer_lifetime_value(self.purchases_, self.spend_, rfm, horizon=horizon,
                                       discount_rate=discount_rate, step=step, margin=margin,
                                       interval=interval, n_draws=n_draws, seed=seed)

    @property
    def params_(self) -> dict:
        self._check()
        out = {"bgnbd": dict(self.purchases_.params_)}
        if self.spend_ is not None:
            out["gamma_gamma"] = dict(self.spend_.params_)
        return out

    def summary(self) -> str:
        self._check()
        parts = [self.purchases_.summary()]
        if self.spend_ is not None:
            parts.append(self.spend_.summary())
        return "\n\n".join(parts)

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "time_unit": self.time_unit_,
            "versions": _versions(),
            "settings": {"penalizer": self.penalizer, "spend_penalizer": self.spend_penalizer,
                         "strict_spend": self.strict_spend},
            "training_data": self.training_,
            "bgnbd": self.purchases_.to_dict(),
            "gamma_gamma": None if self.spend_ is None else self.spend_.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "model") -> "ClvModel":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ClvInputError(f"{source}: not a clv-forecast model file (no 'format': '{FORMAT}')")
        try:
            version = int(data.get("format_version", 0))
        except (TypeError, ValueError):
            raise ClvInputError(f"{source}: format_version {data.get('format_version')!r} is not a number") from None
        if version > FORMAT_VERSION:
            raise ClvInputError(f"{source}: model format version {version} is newer than this "
                                f"clv-forecast understands ({FORMAT_VERSION}); upgrade clv-forecast")
        try:
            model = cls(**{k: v for k, v in dict(data.get("settings", {})).items()
                           if k in ("penalizer", "spend_penalizer", "strict_spend")})
            model.purchases_ = BetaGeoModel.from_dict(data["bgnbd"])
            model.spend_ = None if data.get("gamma_gamma") is None else GammaGammaModel.from_dict(data["gamma_gamma"])
            model.time_unit_ = str(TimeUnit.parse(data["time_unit"]))
            model.training_ = dict(data.get("training_data") or {})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ClvInputError(f"{source}: model file is incomplete or corrupt ({type(exc).__name__}: {exc})") from None
        return model

    def save(self, path) -> Path:
        """Write the model as indented JSON, atomically (temporary file + rename)."""
        text = json.dumps(json_safe(self.to_dict()), indent=2, allow_nan=False) + "\n"
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path) -> "ClvModel":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClvInputError(f"{path}: model file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ClvInputError(f"{path}: cannot read model file ({exc})") from None
        return cls.from_dict(data, source=str(path))

    def __repr__(self) -> str:
        if hasattr(self, "purchases_"):
            return f"<ClvModel {self.purchases_!r} {self.spend_!r} time unit {self.time_unit_}>"
        return f"ClvModel(penalizer={self.penalizer}, spend_penalizer={self.spend_penalizer})"
