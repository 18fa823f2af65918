"""Experiment specs (TOML files in ``experiments/``) and the run that executes one.

A run reads the transaction log, builds the calibration/holdout summary once, fits the
BG/NBD + Gamma-Gamma model, scores the holdout period and the discounted CLV, and saves the
model. Its result is a plain object that the CLI prints and later tracking code can log.
"""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ClvInputError
from .model import ClvModel

DEFAULT_SPEC: dict = {
    "name": "cdnow",
    "data": {"source": "cdnow_sample", "customer_col": "customer_id", "date_col": "date", "amount_col": "amount",
             "date_format": None},
    "summary": {"time_unit": "W", "merge": "D", "calibration_end": "1997-09-30", "observation_end": None},
    "model": {"penalizer": 0.0, "spend_penalizer": 0.0, "strict_spend": False},
    "value": {"horizon": "12M", "step": "1M", "discount_rate": "10%/Y", "margin": 1.0, "interval": 0.9, "top": 10},
    "output": {"model": "models/cdnow.json"},
}


def load_spec(path=None) -> dict:
    """The default spec, updated section by section from a TOML file when one is given."""
    spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_SPEC.items()}
    if path is None:
        return spec
    path = Path(path)
    try:
        user = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ClvInputError(f"{path}: experiment file not found") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClvInputError(f"{path}: cannot read experiment spec ({exc})") from None
    for key, value in user.items():
        if key not in spec:
            raise ClvInputError(f"{path}: unknown section {key!r}; sections are: {', '.join(spec)}")
        if isinstance(spec[key], dict):
            if not isinstance(value, dict):
                raise ClvInputError(f"{path}: {key!r} must be a table")
            unknown = set(value) - set(spec[key])
            if unknown:
                raise ClvInputError(f"{path}: [{key}] has unknown keys {sorted(unknown)}; known: {sorted(spec[key])}")
            for name, item in value.items():
                _check_type(path, key, name, item, DEFAULT_SPEC[key][name])
            spec[key].update(value)
        else:
            _check_type(path, None, key, value, DEFAULT_SPEC[key])
            spec[key] = value
    return spec


_OPTIONAL_TEXT = {("data", "amount_col"), ("data", "date_format"), ("summary", "calibration_end"),
                  ("summary", "observation_end"), ("output", "model")}


def _check_type(path, section, name, value, default) -> None:
    """A spec value has the type of its default (numbers for numbers, text for text, true/false for flags)."""
    where = f"{path}: [{section}] {name}" if section else f"{path}: {name}"
    if (section, name) in _OPTIONAL_TEXT:
        ok, want = isinstance(value, str), "text"
    elif isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        ok, want = isinstance(value, str), "text"
    if not ok:
        raise ClvInputError(f"{where} = {value!r}: must be {want}")


@dataclass
class RunResult:
    spec: dict
    summary: pd.DataFrame
    model: ClvModel
    holdout: pd.DataFrame | None
    clv: pd.DataFrame
    metrics: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model_path: Path | None = None


def _source(data: dict):
    if data["source"] == "cdnow_sample":
        from .datasets import load_cdnow_sample

        return load_cdnow_sample(), "CDNOW sample (bundled)"
    return data["source"], str(data["source"])


def run(spec: dict, *, save: bool = True) -> RunResult:
    """Execute an experiment spec: summary -> fit -> holdout check -> CLV -> saved model."""
    from .rfm import summarize

    source, _ = _source(spec["data"])
    s = spec["summary"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rfm = summarize(
            source,
            customer_col=spec["data"]["customer_col"], date_col=spec["data"]["date_col"],
            amount_col=spec["data"].get("amount_col"), date_format=spec["data"].get("date_format"),
            time_unit=s["time_unit"], merge=s["merge"], calibration_end=s.get("calibration_end"),
            observation_end=s.get("observation_end"),
        )
        model = ClvModel(**spec["model"]).fit(rfm)
        v = spec["value"]
        holdout = None
        metrics: dict = {}
        if "frequency_holdout" in rfm.columns:
            horizon = float(rfm["duration_holdout"].iloc[0])
            pred = model.purchases_.conditional_expected_purchases(horizon, rfm)
            holdout = pd.DataFrame({"predicted": pred, "actual": rfm["frequency_holdout"].to_numpy()}, index=rfm.index)
            err = holdout["predicted"] - holdout["actual"]
            metrics.update({
                "holdout_duration": horizon,
                "holdout_purchases_predicted": float(holdout["predicted"].sum()),
                "holdout_purchases_actual": float(holdout["actual"].sum()),
                "holdout_mae": float(np.abs(err).mean()),
                "holdout_rmse": float(np.sqrt((err**2).mean())),
            })
        clv = model.clv(rfm, horizon=v["horizon"], discount_rate=v["discount_rate"], step=v["step"],
                        margin=float(v["margin"]), interval=v.get("interval") or None) if model.spend_ is not None else pd.DataFrame()
        if len(clv):
            metrics["clv_total"] = float(clv["clv"].sum())
    result = RunResult(spec=spec, summary=rfm, model=model, holdout=holdout, clv=clv, metrics=metrics,
                       warnings=[str(w.message) for w in caught])
    if save and spec["output"].get("model"):
        result.model_path = model.save(spec["output"]["model"])
    return result
