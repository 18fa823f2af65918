"""Experiment specs and the one pipeline every command drives.

A spec is a TOML-shaped dict (sections ``data``, ``summary``, ``model``, ``value``, ``output`` and
a ``name``). :func:`run` executes one: summary -> fit -> reliability check -> holdout check ->
per-customer predictions and CLV -> saved model and prediction table. ``clv-forecast run`` reads a
spec from a file; ``clv-forecast fit`` builds one from its options (:func:`spec_from_options`), so
tracking, reports and scoring wire into one place.

An experiment file written by a user inherits nothing from the CDNOW example: keys it leaves out
take the neutral defaults of :data:`SCHEMA` (no calibration split, no saved files), its name is the
file name, and relative paths in it are read from the spec file's folder. :func:`cdnow_spec` is the
built-in default experiment (the same as ``experiments/cdnow.toml``).
"""

from __future__ import annotations

import datetime as _dt
import math
import time
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the per-customer table's columns, written once for every engine (importable from here as before)
from .engines.tables import SCORE_COLUMNS, clv_table, table_metadata, value_coverage  # noqa: F401
from .errors import ClvInputError, IdentificationError, UnreliableFitError
from .units import VALUE_DEFAULTS

__all__ = ["SCHEMA", "cdnow_spec", "load_spec", "spec_from_options", "check_spec_paths", "run", "RunResult",
           "spec_error"]

_DATE = (str, _dt.date)  # TOML's native dates and datetimes are datetime.date / datetime.datetime

#: Every key of a spec: section -> key -> (accepted types, default, one-line description).
#: ``None`` as a default means "not set". The README's table of keys is this table.
SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any, str]]] = {
    "data": {
        "source": ((str,), None, "transaction log: a CSV or Parquet path (relative to the spec file), "
                                 "or 'cdnow_sample' for the bundled CDNOW sample"),
        "customer_col": ((str,), "customer_id", "customer id column"),
        "date_col": ((str,), "date", "timestamp column"),
        "amount_col": ((str,), None, "amount column (without it and without quantity/price: no spend model)"),
        "quantity_col": ((str,), None, "quantity column: amount = quantity x unit price"),
        "price_col": ((str,), None, "unit price column: amount = quantity x unit price"),
        "date_format": ((str,), None, "strftime format of the dates, used for the data and the period ends"),
        "encoding": ((str,), "utf-8", "text encoding of a CSV file (latin-1, cp1252, ...)"),
        "decimal_comma": ((bool,), False, "amounts are written with a decimal comma (1.234,56)"),
        "missing_customer": ((str,), "error", "rows without a customer id: 'error' or 'drop' (counted)"),
        "duplicates": ((str,), "keep", "exact duplicate rows: 'keep' or 'drop' (counted either way)"),
        "returns": ((str,), None, "negative amounts: 'drop' (not purchases, reported), 'net' (subtracted from the "
                                  "customer's purchase) or 'error'; not set: 'net' with quantity_col x price_col, "
                                  "'drop' with amount_col"),
        "engine": ((str,), "local", "'local' (one machine) or 'spark' (summary on Spark executors, fit on the "
                                    "driver; Parquet input, predictions written as a Parquet directory); the "
                                    "engines are clv_forecast.engines.available()"),
        "spark_master": ((str,), None, "Spark master URL for the 'spark' engine (default: the active session, "
                                       "else local[*])"),
        "currency": ((str,), None, "currency of the amounts, a code or a symbol (EUR, €): the report labels money "
                                   "with it; not set: 'money units'"),
        "spark_remote": ((str,), None, "Spark Connect server for the 'spark' engine, sc://host:port (instead of "
                                       "spark_master)"),
    },
    "summary": {
        "time_unit": ((str,), "W", "the model's time unit: D, W, M, Y or a multiple such as 2W"),
        "merge": ((str,), "D", "purchases within this resolution are one purchase (D, h, W...) or 'exact'"),
        "week_start": ((str, int), "MON", "first day of a week when merging by weeks (MON..SUN)"),
        "calibration_end": (_DATE, None, "last day of the calibration period; without it, no holdout split"),
        "observation_end": (_DATE, None, "last day of the data to use (default: the last transaction)"),
        "include_first_transaction": ((bool,), False, "monetary value includes the first purchase"),
    },
    "model": {
        "purchases": ((str, dict), "bgnbd", "purchase model: a kind (clv_forecast.estimators.available"
                                            "('purchases')), 'auto' (every model fitted, the best kept), or a [model.purchases] table: kind and the model's "
                                            "own settings (penalizer, maxiter, ...)"),
        "spend": ((str, dict), "gamma_gamma", "spend model: a kind, a [model.spend] table (kind and settings), "
                                              "or 'none' (no spend model)"),
        "on_boundary": ((str,), "nested", "when the purchase model's maximum is on a boundary that is a known "
                                          "simpler model (BG/NBD: a -> 0 is the NBD): 'nested' fits that model "
                                          "and labels it, 'refuse' keeps the requested one, unreliable (exit 3)"),
        "penalizer": ((int, float), 0.0, "L2 penalty of the purchase model's fit (= [model.purchases] penalizer)"),
        "spend_penalizer": ((int, float), 0.0, "L2 penalty of the spend model's fit (= [model.spend] penalizer)"),
        "strict_spend": ((bool,), False, "repeat buyers with a non-positive mean spend are an error, "
                                          "not left out of the spend fit with a warning (= [model.spend] strict)"),
        "bootstrap": ((int,), 0, "refit both models on this many resamples of the customers after the fit "
                                 "(ClvModel.bootstrap), saved with the model, for interval_method 'bootstrap' "
                                 "(which uses 200 when this is 0); 0: none"),
    },
    "value": {
        "horizon": ((str,), VALUE_DEFAULTS["horizon"], "CLV and expected-purchases horizon, with its unit"),
        "step": ((str,), VALUE_DEFAULTS["step"], "discounting step, with its unit"),
        "discount_rate": ((str,), VALUE_DEFAULTS["discount_rate"], "discount rate with its period, e.g. '10%/Y'"),
        "margin": ((int, float), VALUE_DEFAULTS["margin"], "share of revenue kept as profit"),
        "interval": ((int, float), None, "interval level of every forecast (and the band of the totals) from the "
                                         "parameters' sampling distribution, e.g. 0.9"),
        "interval_method": ((str,), "delta", "how: 'delta' (the delta method, fast), 'draws' (parameter draws) or "
                                             "'bootstrap' (refits on resamples of the customers, [model] bootstrap)"),
        "periods": ((str,), None, "value by period: expected purchases and value of every period up to the horizon "
                                  "(M, Q, Y or a duration; clv_forecast.periods); the windows' totals printed"),
        "windows": ((str,), None, "value by window, e.g. '0-1Y,1-3Y,3-5Y': each window's total expected purchases "
                                  "and value (with its band under an interval), printed and in the report"),
        "top": ((int,), 10, "customers shown in the top-CLV table"),
    },
    "output": {
        "model": ((str,), None, "where to save the fitted model (JSON); relative to the spec file"),
        "predictions": ((str,), None, "per-customer table (.csv or .parquet); relative to the spec file"),
        "report": ((str,), None, "self-contained HTML report (parameters, backtest, plots, segments, top "
                                 "customers); relative to the spec file"),
        "predictions_as_of": ((str,), "calibration_end",
                              "'calibration_end' (the customers of the fit) or 'observation_end' (every "
                              "customer, histories to the end of the data)"),
        "save_unreliable": ((bool,), False, "save a model whose fit did not converge or is not identified"),
        "verbatim_csv": ((bool,), False, "write CSV text cells starting with = + - @ as they are (default: with a "
                                         "leading ', the spreadsheet formula guard; Parquet is never altered)"),
    },
}

SCHEMA_DEFAULTS = {section: {key: default for key, (_, default, _) in keys.items()} for section, keys in SCHEMA.items()}

_CHOICES = {
    ("data", "missing_customer"): ("error", "drop"),
    ("data", "duplicates"): ("keep", "drop"),
    ("data", "returns"): ("drop", "net", "error"),
    ("output", "predictions_as_of"): ("calibration_end", "observation_end"),
    ("value", "interval_method"): ("delta", "draws", "bootstrap"),  # (clv_forecast.uncertainty.INTERVAL_METHODS)
}
_PATHS = (("data", "source"), ("output", "model"), ("output", "predictions"), ("output", "report"))

_CDNOW_SOURCE = "cdnow_sample"


def _neutral(name: str | None = None) -> dict:
    return {"name": name, **{section: dict(defaults) for section, defaults in SCHEMA_DEFAULTS.items()}}


def cdnow_spec() -> dict:
    """The default experiment (``clv-forecast run``): the bundled CDNOW sample as in Fader, Hardie & Lee
    (2005), 39 calibration weeks, 12-month CLV at 10 %/year with a 90 % interval. Equal to
    ``experiments/cdnow.toml`` (tested)."""
    spec = _neutral("cdnow")
    spec["data"].update(source=_CDNOW_SOURCE, amount_col="amount")
    spec["summary"].update(calibration_end=_dt.date(1997, 9, 30))
    spec["value"].update(interval=0.9)
    spec["output"].update(model="models/cdnow.json", report="reports/cdnow.html")
    return spec


def spec_error(where: str, section: str | None, key: str, value, reason: str) -> ClvInputError:
    """The one layout of a spec error: ``spec.toml: [summary] calibration_end = 1997: reason``."""
    place = f"{where}: [{section}] {key}" if section else f"{where}: {key}"
    return ClvInputError(f"{place} = {value!r}: {reason}")


def _shown(text: str) -> str:
    """A text value as echoed in a spec error (its repr shows a NUL as \\x00): at most 80 characters."""
    return text if len(text) <= 80 else text[:77] + "..."


def _check(where: str, section: str, key: str, value) -> None:
    types, _, _ = SCHEMA[section][key]
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        want = {(str,): "text", (bool,): "true or false", (int, float): "a number", (int,): "a whole number",
                _DATE: "text or a date (e.g. 1997-09-30)", (str, int): "text or a number"}.get(types, "text")
        raise spec_error(where, section, key, value, f"must be {want}")
    if isinstance(value, float) and not math.isfinite(value):
        raise spec_error(where, section, key, value, "must be a finite number")
    if isinstance(value, str) and "\x00" in value:
        raise spec_error(where, section, key, _shown(value), "must not contain a NUL byte")
    if (section, key) == ("data", "currency"):
        from .report import check_currency

        try:
            check_currency(value)
        except ClvInputError as exc:
            raise spec_error(where, section, key, _shown(value), exc.reason) from None
    choices = _CHOICES.get((section, key))
    if (section, key) == ("data", "engine"):
        from . import engines

        choices = tuple(engines.available())
    if choices and value not in choices:
        raise spec_error(where, section, key, value, f"must be one of {', '.join(map(repr, choices))}")


def load_spec(path=None) -> dict:
    """Read an experiment file; ``None`` gives :func:`cdnow_spec`.

    Keys left out take the neutral defaults of :data:`SCHEMA`; the name defaults to the file name;
    relative paths are resolved against the file's folder. Unknown sections or keys and values of
    the wrong type are one-line errors naming the file, the section and the key.
    """
    if path is None:
        return cdnow_spec()
    if "\x00" in str(path):
        from ._paths import shown_path

        raise ClvInputError(f"{shown_path(path)}: the experiment file's path contains a NUL byte")
    path = Path(path)
    where = str(path)
    try:
        user = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClvInputError(f"{where}: experiment file not found") from None
    except IsADirectoryError:
        raise ClvInputError(f"{where}: is a directory, not an experiment file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClvInputError(f"{where}: cannot read the experiment file ({' '.join(str(exc).split())})") from None
    spec = _neutral(path.stem)
    for key, value in user.items():
        if key == "name":
            if not isinstance(value, str) or not value.strip():
                raise spec_error(where, None, "name", value, "must be non-empty text")
            if "\x00" in value:
                raise spec_error(where, None, "name", _shown(value), "must not contain a NUL byte")
            spec["name"] = value
            continue
        if key not in SCHEMA:
            raise ClvInputError(f"{where}: unknown section [{key}]; sections are: "
                                + ", ".join(["name", *SCHEMA]))
        if not isinstance(value, dict):
            raise spec_error(where, None, key, value, "must be a table ([" + key + "])")
        unknown = sorted(set(value) - set(SCHEMA[key]))
        if unknown:
            raise ClvInputError(f"{where}: [{key}] has unknown keys {unknown}; known: {sorted(SCHEMA[key])}")
        for name, item in value.items():
            _check(where, key, name, item)
        if key == "model":
            check_model_section(where, value)
        spec[key].update(value)
    base = path.resolve().parent
    for section, key in _PATHS:
        value = spec[section][key]
        if value is not None and not (section == "data" and value == _CDNOW_SOURCE):
            spec[section][key] = str(base / Path(value).expanduser()) if not Path(value).is_absolute() else value
    if spec["data"]["source"] is None:
        raise ClvInputError(f"{where}: [data] source is missing; give the transaction log, e.g. "
                            "source = \"transactions.csv\" (relative to the experiment file)")
    spec["spec_file"] = str(path)
    return spec


def _model_tables(section: dict) -> dict:
    """``role -> (kind, settings)`` of a spec's [model] section (a kind, or a table with ``kind`` and settings);
    ``spend = 'none'`` is (None, {})."""
    out = {}
    for role in ("purchases", "spend"):
        value = section.get(role, SCHEMA["model"][role][1])
        if isinstance(value, dict):
            settings = {k: v for k, v in value.items() if k != "kind"}
            out[role] = (value.get("kind", SCHEMA["model"][role][1]), settings)
        else:
            out[role] = (value, {})
        if out[role][0] == "none" and role == "spend":
            out[role] = (None, {})
    return out


def check_model_section(where: str, section: dict) -> None:
    """The models of a [model] section exist and their settings are theirs, of the type of their defaults
    (one line naming the file, the table and the key)."""
    from . import estimators
    from .estimators._mle import Fields

    from .model import ON_BOUNDARY

    on_boundary = section.get("on_boundary", SCHEMA["model"]["on_boundary"][1])
    if on_boundary not in ON_BOUNDARY:
        raise spec_error(where, "model", "on_boundary", on_boundary, f"must be one of {', '.join(ON_BOUNDARY)}")
    for role, (kind, settings) in _model_tables(section).items():
        table = f"model.{role}" if isinstance(section.get(role), dict) else "model"
        if kind is None:
            continue
        known = estimators.available(role) + (["auto"] if role == "purchases" else [])
        if kind not in known:
            key = "kind" if table != "model" else role
            raise spec_error(where, table, key, kind, f"unknown {role} model (known: {', '.join(known)}"
                             + (", none" if role == "spend" else "") + ")")
        if kind == "auto":
            _check_auto(where, table, settings)
            continue
        cls = estimators.get(kind, role)
        defaults = cls._defaults()
        for key, value in settings.items():
            if key not in defaults:
                raise spec_error(where, table, key, value, f"unknown setting of {cls.name} (settings are "
                                 f"{', '.join(defaults)})")
            try:
                Fields("spec").setting(key, value, defaults[key], cls.param_names)
            except ClvInputError as exc:
                raise spec_error(where, table, key, value, exc.template.rsplit(": ", 1)[-1]) from None


def _check_auto(where: str, table: str, settings: dict) -> None:
    """The settings of ``purchases = "auto"`` (:class:`~clv_forecast.estimators.selection.AutoPurchases`)."""
    from . import estimators
    from .estimators._mle import Fields
    from .estimators.selection import AutoPurchases

    defaults = AutoPurchases._defaults()
    for key, value in settings.items():
        if key not in defaults:
            raise spec_error(where, table, key, value, f"unknown setting of the automatic choice (settings are "
                             f"{', '.join(defaults)})")
        if key == "candidates":
            known = estimators.available("purchases")
            names = [value] if isinstance(value, str) else value if isinstance(value, list) else [None]
            if not names or any(k not in known for k in names):
                raise spec_error(where, table, key, value, f"must name purchase models (known: {', '.join(known)})")
        try:
            if key in ("penalizer", "maxiter"):
                Fields("spec").setting(key, value, 0.0 if key == "penalizer" else 200, ())
            elif key == "criterion":
                AutoPurchases(criterion=value)._criterion(True)
        except ClvInputError as exc:
            raise spec_error(where, table, key, value, exc.template.rsplit(": ", 1)[-1]) from None


def model_of(section: dict):
    """The unfitted :class:`~clv_forecast.model.ClvModel` of a spec's [model] section: the kinds, their
    settings (``[model.purchases]`` tables) and the flat keys of earlier specs (``penalizer``,
    ``spend_penalizer``, ``strict_spend``, applied when they differ from their defaults)."""
    from .model import ClvModel

    tables = _model_tables(section)
    model = ClvModel(purchases=tables["purchases"][0], spend=tables["spend"][0],
                     on_boundary=section.get("on_boundary", SCHEMA["model"]["on_boundary"][1]))
    for role, (kind, settings) in tables.items():
        if kind is not None and settings:
            model.set_params(**{f"{role}__{k}": v for k, v in settings.items()})
    for key in ("penalizer", "spend_penalizer", "strict_spend"):
        value = section.get(key, SCHEMA["model"][key][1])
        if value != SCHEMA["model"][key][1] and not (key != "penalizer" and model.spend is None):
            model.set_params(**{key: value})
    return model


def spec_from_options(*, transactions, name: str | None = None, **options) -> dict:
    """A spec from flat options named like the spec keys (the CLI's ``fit``): each option goes to the
    section that defines it; unknown names are a programming error."""
    spec = _neutral(name or Path(str(transactions)).stem)
    spec["data"]["source"] = str(transactions)
    owners = {key: section for section, keys in SCHEMA.items() for key in keys}
    for key, value in options.items():
        if key not in owners:
            raise TypeError(f"spec_from_options: unknown option {key!r}")
        if value is not None:
            spec[owners[key]][key] = value
    return spec


def check_spec_paths(spec: dict, *, save: bool = True, output_dir=None) -> None:
    """The one check of a run's files (:func:`clv_forecast._paths.check_paths`), before any work: the
    transaction log and the experiment file are inputs; the model, the per-customer table and the report
    (when ``save``) and ``output_dir`` (``compare --output``) are outputs. No output may be the same file
    as another file of the run, hold one, or lie inside the (Spark) input directory."""
    from ._paths import check_paths

    data, out = spec["data"], spec["output"]
    inputs = {"{{source}}": None if data["source"] == _CDNOW_SOURCE else data["source"],
              "the experiment file": spec.get("spec_file")}
    outputs = {f"{{{{{key}}}}}": out.get(key) if save else None for key in ("model", "predictions", "report")}
    outputs["{{output_dir}}"] = output_dir
    check_paths(inputs, outputs, where=spec.get("spec_file"))


@dataclass
class RunResult:
    """What a run produced: the calibration summary, the model, the holdout check, the per-customer
    table (predictions and CLV), metrics, warnings and the files written."""

    spec: dict
    summary: Any
    model: Any
    holdout: Any = None
    predictions: Any = None
    metrics: dict = field(default_factory=dict)
    warnings: list[Warning] = field(default_factory=list)  # str(w) reads as Python; w.template for front ends
    model_path: Path | None = None
    predictions_path: Path | None = None
    report_path: Path | None = None
    comparison: Any = None  # clv_forecast.compare.Comparison
    backtest: Any = None  # clv_forecast.compare.Backtest
    figures: Mapping = field(default_factory=dict)  # caption -> PNG bytes (a _Pngs: rendered when first read)
    timings: dict = field(default_factory=dict)
    guarded_cells: int = 0  # CSV text cells written with a leading ' (clv_forecast.csv_guard)
    refused: str | None = None  # why the fit was refused (the run stopped there; nothing written), else None
    #: with ``[value] periods`` or ``windows``: the per-customer value by period and window
    #: (:func:`clv_forecast.periods.value_by_period`; ``attrs["totals"]`` the columns' totals and bands)
    period_values: Any = None

    @property
    def clv(self):  # the per-customer table, under the name the first version used
        return self.predictions


def _source(data: dict):
    if data["source"] == _CDNOW_SOURCE:
        from .datasets import load_cdnow_sample

        return load_cdnow_sample(), "CDNOW sample (bundled)"
    return data["source"], str(data["source"])


_READ_KEYS = ("customer_col", "date_col", "amount_col", "quantity_col", "price_col", "date_format", "encoding",
              "decimal_comma", "missing_customer", "duplicates", "returns")
_SUMMARY_KEYS = ("time_unit", "merge", "week_start", "observation_end", "include_first_transaction")


def summary_options(spec: dict) -> dict:
    """The keyword arguments of :func:`clv_forecast.rfm.summarize` that a spec sets (defaults left out,
    so a spec only passes what it changes)."""
    out = {}
    for section, keys in (("data", _READ_KEYS), ("summary", _SUMMARY_KEYS)):
        for key in keys:
            value = spec[section][key]
            if value != SCHEMA[section][key][1] or key in ("customer_col", "date_col", "time_unit", "merge"):
                out[key] = value
    return out


def _check_reliable(model, out: dict, partial) -> None:
    """Refuse an unreliable fit unless ``[output] save_unreliable``: :class:`UnreliableFitError` naming the
    problems and the settings that may help, carrying the run so far (``partial()``, see :func:`_refused`)."""
    problems = list(getattr(model, "problems_", []) or [])
    if problems and not out.get("save_unreliable"):
        raise _refused(UnreliableFitError(
            "the fit is not reliable: " + "; ".join(problems) + "; nothing was saved ("
            + model.remedies("{{save_unreliable=True}} keeps it anyway, marked unreliable") + ")"), partial())


def _refused(exc: IdentificationError, result: RunResult) -> IdentificationError:
    """``exc`` carrying the run so far (``exc.result``: the summary with its accounting, the model with the
    values the fit reached or None, the warnings and timings), marked refused; the front ends report it
    (accounting, values, ``--json``, an MLflow run with status FAILED) before they exit with code 3."""
    result.refused = " ".join(str(exc).split())
    exc.result = result
    return exc


def holdout_metrics(predicted, actual, weights, duration: float) -> dict:
    """Expected against actual holdout purchases: totals, MAE and RMSE over customers (``weights``:
    how many customers each row stands for, 1 for a per-customer table)."""
    import numpy as np

    predicted, actual = np.asarray(predicted, dtype=float), np.asarray(actual, dtype=float)
    w = np.asarray(weights, dtype=float)
    err = predicted - actual
    n = w.sum()
    return {
        "holdout_duration": duration,
        "holdout_purchases_predicted": float(np.dot(w, predicted)),
        "holdout_purchases_actual": float(np.dot(w, actual)),
        "holdout_mae": float(np.dot(w, np.abs(err)) / n),
        "holdout_rmse": float(np.sqrt(np.dot(w, err**2) / n)),
    }


#: the resamples of customers when ``[value] interval_method = "bootstrap"`` and ``[model] bootstrap`` is 0
DEFAULT_BOOTSTRAP = 200


def bootstrap_count(spec: dict) -> int:
    """The resamples of customers a spec asks for: ``[model] bootstrap``, else :data:`DEFAULT_BOOTSTRAP` when its
    intervals are by the bootstrap, else 0."""
    from .bootstrap import MAX_BOOT

    n_boot = spec["model"].get("bootstrap") or 0
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot == 1 or not 0 <= n_boot <= MAX_BOOT:
        raise ClvInputError(f"must be 0 (none) or a whole number from 2 to {MAX_BOOT:,} (resamples of customers)",
                            argument="bootstrap", value=n_boot)
    value = spec.get("value") or {}
    if not n_boot and value.get("interval") is not None and value.get("interval_method") == "bootstrap":
        n_boot = DEFAULT_BOOTSTRAP
    return n_boot


def _no_step(name: str) -> None:
    """The step callback of a run nobody watches."""


def run(spec: dict, engine=None, *, save: bool = True, analyse: bool | None = None, on_step=None) -> RunResult:
    """Execute a spec: summary -> fit -> reliability check -> holdout check -> predictions ->
    comparison with the historical formulas and backtest -> files.

    ``engine``: an :class:`~clv_forecast.engines.Engine` or an engine's name (default: the spec's
    ``[data] engine``, :func:`clv_forecast.engines.available`); the pipeline is this one function for
    every engine, which supplies the summary, the fit's statistics, the holdout check's rows, the
    per-customer table and its writing (:mod:`clv_forecast.engines.base`).

    ``analyse`` (default: when a report is written) runs the comparison, the backtest (with a
    calibration split) and the plots (:func:`analyse_run`).

    A fit that did not converge or does not identify its parameters raises
    :class:`~clv_forecast.errors.UnreliableFitError` before anything is written, unless
    ``[output] save_unreliable`` is true; data that identify nothing raise
    :class:`~clv_forecast.errors.IdentificationError`. Either carries the run so far in ``.result``
    (the summary and its accounting, the model with the values reached, ``refused`` the reason).
    Its files are checked first (:func:`check_spec_paths`): no output may replace an input or another
    output.

    ``on_step``: called with a step's name (``"reading and summarising the data"``, ``"holdout check"``,
    ...) as the step starts (and the one before ends), for a front end's progress display; the pipeline
    itself prints nothing.
    """
    from . import engines

    on_step = on_step or _no_step

    engine = engines.get(spec["data"].get("engine", "local") if engine is None else engine)
    check_spec_paths(spec, save=save)
    value = spec.get("value")  # (None: fit only, no values computed)
    if value and (spec["data"].get("amount_col") or spec["data"].get("quantity_col")):
        # the CLV settings too, before any work (a horizon of 100000Y in 1s steps is refused now, not after the fit)
        from .scoring import check_value_settings

        check_value_settings(spec["summary"]["time_unit"], value["horizon"], value["step"], value["discount_rate"])
        _check_periods(spec, engine)
    engine.check(spec, save=save, analyse=analyse)
    if bootstrap_count(spec) and not engine.in_memory:  # (checked before any work)
        raise ClvInputError("the bootstrap resamples every customer's row on one machine: use the local engine, "
                            "then score with the saved model on any engine", argument="bootstrap",
                            value=bootstrap_count(spec))
    timings: dict = {}
    on_step("reading and summarising the data")
    source = engine.open(_source(spec["data"])[0], spec["data"], timings)
    options = summary_options(spec)
    calibration_end = spec["summary"]["calibration_end"]
    out = spec["output"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        summary = engine.summarize(source, options, calibration_end=calibration_end)
        timings["summary"] = time.perf_counter() - start
        start = time.perf_counter()

        def partial(model=None):
            return RunResult(spec=spec, summary=summary, model=model, warnings=[w.message for w in caught],
                             timings=dict(timings))

        on_step("fitting the purchase model" + (" and the spend model" if _has_spend(spec) else ""))
        try:
            model = engine.fit(model_of(spec["model"]), summary)
        except IdentificationError as exc:  # the data identify nothing: no model, the accounting still reported
            raise _refused(exc, partial()) from None
        timings["fit"] = time.perf_counter() - start
        _check_reliable(model, out, lambda: partial(model))
        n_boot = bootstrap_count(spec)
        if n_boot:  # the refits on resamples of the customers (interval_method "bootstrap"), saved with the model
            on_step(f"bootstrap: {n_boot:,} refits on resamples of the customers")
            start = time.perf_counter()
            model.bootstrap(summary, n_boot=n_boot, seed=0)
            timings["bootstrap"] = time.perf_counter() - start
        metrics: dict = {}
        if calibration_end is not None:
            on_step("holdout check")
        holdout = engine.holdout(model, summary)
        if holdout is not None:
            metrics.update(holdout_metrics(holdout.table["predicted"], holdout.table["actual"], holdout.weights,
                                           holdout.duration))
            holdout = holdout.table
        predictions = period_values = None
        # an engine whose tables are not in memory computes the per-customer table only to write it
        if value is not None and (engine.in_memory or (save and out.get("predictions"))):
            start = time.perf_counter()
            scored = summary
            if out.get("predictions_as_of") == "observation_end" and calibration_end is not None:
                # every customer, histories to the end of the data, scored by the calibration fit
                on_step("summarising every customer to the observation end")
                scored = engine.summarize(source, options, calibration_end=None)
            on_step("CLV of every customer")
            predictions = engine.predict(model, scored, value)
            metrics.update(engine.value_coverage(predictions))
            timings["predictions"] = time.perf_counter() - start
            if _wants_periods(value) and model.spend_ is not None:
                on_step("value by period and window")
            period_values = _period_values(model, scored, value, metrics, timings)
    result = RunResult(spec=spec, summary=summary, model=model, holdout=holdout,
                       predictions=predictions if engine.in_memory else None,
                       metrics=metrics, warnings=[w.message for w in caught], timings=timings)
    result.period_values = period_values
    if save and out.get("model"):
        on_step("saving the model")
        try:
            result.model_path = model.save(out["model"], allow_unreliable=bool(out.get("save_unreliable")))
        except UnreliableFitError as exc:  # parameters a model file may not hold (a runaway fit): nothing written
            raise _refused(exc, result) from None
    if save and out.get("predictions") and predictions is not None:
        on_step("writing the per-customer table")
        start = time.perf_counter()
        result.predictions_path, result.guarded_cells = engine.write_predictions(predictions, out["predictions"],
                                                                                  spec, model)
        if not engine.in_memory:  # (the table is computed while it is written)
            result.timings["predictions"] = result.timings.get("predictions", 0.0) + time.perf_counter() - start
    if analyse is None:
        analyse = bool(save and out.get("report"))
    if analyse:
        start = time.perf_counter()
        analyse_run(result, source, on_step=on_step)
        result.timings["analysis"] = time.perf_counter() - start
    if save and out.get("report"):
        on_step("writing the report")
        result.report_path = write_report(result, out["report"])
    return result


def _has_spend(spec: dict) -> bool:
    """The spec's run fits a spend model: it has amounts and its spend model is not ``"none"``."""
    data = spec["data"]
    amounts = bool(data.get("amount_col") or data.get("quantity_col"))
    return amounts and _model_tables(spec["model"])["spend"][0] is not None


def _wants_periods(value) -> bool:
    return bool(value) and (value.get("periods") is not None or value.get("windows") is not None)


def _check_periods(spec: dict, engine) -> None:
    """``[value] periods`` / ``windows`` checked before any work (one line naming the key): their plan
    (:func:`clv_forecast.periods.plan_periods`), the local engine, delta-method intervals."""
    value = spec.get("value")
    if not _wants_periods(value):
        return
    from .scoring import check_periods

    argument = "periods" if value.get("periods") is not None else "windows"
    if not engine.in_memory:
        raise ClvInputError(f"value by period and window needs the local engine (the {engine.name} engine keeps no "
                            "table in memory); score it with clv-forecast score --periods/--windows",
                            argument=argument, value=value[argument])
    try:
        check_periods(spec["summary"]["time_unit"], value["horizon"], value["step"], value["discount_rate"],
                      value.get("periods"), value.get("windows"), value.get("interval"),
                      value.get("interval_method") or "delta")
    except ClvInputError as exc:
        if exc.argument == "period":  # the spec's key is [value] periods
            raise ClvInputError(exc.reason, argument="periods", value=exc.value) from None
        raise


def _period_values(model, scored, value: dict, metrics: dict, timings: dict):
    """With ``[value] periods`` or ``windows`` (and a spend model): the value by period and window of the scored
    customers, and each window's (and the horizon's) totals, with their bands, into the run's metrics
    (``window_<label>_value``, ``_value_lower``, ``_value_upper``, ``window_<label>_purchases``)."""
    if not _wants_periods(value) or model.spend_ is None:
        return None
    from .report import window_metrics

    start = time.perf_counter()
    table = model.value_by_period(scored, horizon=value["horizon"], period=value.get("periods"),
                                  windows=value.get("windows"), discount_rate=value["discount_rate"],
                                  step=value["step"], margin=float(value["margin"]),
                                  interval=value.get("interval") or None)
    metrics.update(window_metrics(table.attrs["totals"]))
    timings["periods"] = time.perf_counter() - start
    return table


def analyse_run(result: RunResult, source, on_step=None) -> RunResult:
    """Historical formulas beside the predictive CLV (:func:`clv_forecast.compare.side_by_side`), the
    holdout backtest of every method when the summary has a holdout (:func:`clv_forecast.compare.backtest`)
    and the diagnostic plots (:mod:`clv_forecast.plots`); stored on the result. ``on_step``: as :func:`run`'s."""
    from . import compare, plots
    from .units import readable_duration

    on_step = on_step or _no_step

    value = result.spec.get("value") or SCHEMA_DEFAULTS["value"]
    money = dict(discount_rate=value["discount_rate"], margin=float(value["margin"]))
    model, rfm = result.model, result.summary
    has_spend = model.spend_ is not None and "monetary_value" in rfm
    name = model.purchases_.name
    figures: dict = {}
    if has_spend:
        on_step("historical formulas beside the model")
        result.comparison = compare.side_by_side(model, rfm, horizon=value["horizon"], **money)
    has_backtest = has_spend and "frequency_holdout" in rfm and "monetary_value_holdout" in rfm
    others = {}
    if has_backtest:
        # scored against the undiscounted holdout spend: no discounting inside the holdout window
        # a tournament: every purchase model with a reliable fit (with the run's spend model) beside the formulas
        on_step("backtest: every purchase model and formula on the holdout")
        others = compare.tournament(model, rfm)
        result.backtest = compare.backtest(model, rfm, margin=money["margin"], others=others)
    on_step("plots")
    try:
        figures["Repeat purchases per customer in the calibration period: actual vs " + name] = \
            plots.frequency_histogram(model, rfm)
    except ClvInputError as exc:  # a model without P(X(t) = n): the figure is left out, and said
        if "is not available for" not in str(exc):
            raise
        from .errors import DataWarning

        result.warnings.append(DataWarning(f"the repeat-purchase histogram is not drawn: {exc}"))
    calibration_end = result.spec["summary"]["calibration_end"]
    if "frequency_holdout" in rfm:
        figures["Holdout purchases by calibration frequency: actual vs predicted by each purchase model"] = \
            plots.calibration_vs_holdout(model, rfm, others=list(others.values()) if has_backtest else ())
        tracking = dict(calibration_end=calibration_end, time_unit=model.time_unit_,
                        **{k: v for k, v in summary_options(result.spec).items() if k not in ("time_unit", "merge")})
        compared = list(others.values()) if has_backtest else []
        figures["Cumulative repeat transactions: actual vs " + name + (" and the other purchase models" if compared else "")] = \
            plots.tracking_plot(model, source, cumulative=True, others=compared, **tracking)
        figures["Repeat transactions per period: actual vs " + name] = \
            plots.tracking_plot(model, source, cumulative=False, **tracking)
    figures[f"P(alive) by frequency and recency: {name}"] = plots.p_alive_heatmap(model, rfm=rfm)
    for other in (list(others.values()) if has_backtest else []):  # each purchase model's own map
        figures[f"P(alive) by frequency and recency: {other.purchases_.name}"] = plots.p_alive_heatmap(other, rfm=rfm)
    figures[f"Expected purchases in the next {readable_duration(value['horizon'])} by frequency and recency"] = \
        plots.expected_purchases_heatmap(model, value["horizon"], rfm=rfm)
    if result.period_values is not None and result.period_values.attrs.get("cumulative"):
        figures[f"Expected value of the customers by period over {readable_duration(value['horizon'])} (sum over the "
                "customers), "
                "cumulative below"] = plots.value_curve(result.period_values)
    if result.comparison is not None:
        figures["Historical (simple) vs predictive CLV per customer"] = plots.clv_scatter(result.comparison.customers)
    if result.backtest is not None:
        figures["Gains: share of holdout revenue captured by the top customers of each method"] = \
            plots.gains_chart(result.backtest.scores.drop(columns=["actual", "actual_purchases"]), result.backtest.scores["actual"])
    result.figures = _Pngs(figures)
    return result


class _Pngs(Mapping):
    """Caption -> PNG bytes of a run's figures, each rendered when it is first read, then kept (the figure itself
    is dropped). Rendering is most of the plots' cost (about 0.2 CPU-s a figure, a dozen a run): a command that
    neither writes nor logs its plots (``compare`` without ``--output``, untracked) does not pay for it."""

    def __init__(self, figures: dict) -> None:
        self._items = dict(figures)  # caption -> matplotlib Figure until rendered, then its PNG bytes

    def __getitem__(self, caption: str) -> bytes:
        item = self._items[caption]
        if not isinstance(item, bytes):
            from . import plots

            item = self._items[caption] = plots.to_png(item)
        return item

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._items)!r})"


def _report_document(result: RunResult) -> str:
    """The run's report (:func:`clv_forecast.report.run_report`) with the lines the CLI prints."""
    from . import report

    rfm = result.summary
    return report.run_report(
        result, accounting=report.accounting_lines(dict(rfm.attrs), len(rfm)),
        periods=report.periods_line(rfm.attrs, result.model.time_unit_), comparison=result.comparison,
        backtest=result.backtest, figures=result.figures)


def write_report(result: RunResult, path) -> Path:
    """The run's self-contained HTML report (see :mod:`clv_forecast.report`), written atomically."""
    from . import report

    return report.write(path, _report_document(result))


def write_table(table, path, metadata: dict | None = None, *, verbatim_csv: bool = False) -> Path:
    """Write a per-customer table (index as the first column) to CSV or Parquet, atomically; a Parquet
    file also carries ``metadata`` (key-value, e.g. :func:`table_metadata`; CSV has no place for it). In a
    CSV, text cells starting like a formula get a leading ``'`` unless ``verbatim_csv``
    (:mod:`clv_forecast.csv_guard`)."""
    return _write_table(table, path, metadata, verbatim_csv=verbatim_csv)[0]


def _write_table(table, path, metadata: dict | None = None, *, verbatim_csv: bool = False) -> tuple[Path, int]:
    """:func:`write_table`, and how many CSV cells the formula guard changed (the local engine's writer)."""
    from .engines.local import write_table as write

    return write(table, path, metadata, verbatim_csv=verbatim_csv)


def _slug(caption: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "_", caption.lower()).strip("_")[:60]


def write_analysis(result: RunResult, directory) -> Path:
    """The comparison's tables (CSV and Parquet), the plots (PNG) and the report, written into
    ``directory`` as one step: everything goes to a temporary folder beside it that is renamed at
    the end, so a failure leaves no half-written folder. ``directory`` must not exist or be empty.
    The CSV tables get the spreadsheet formula guard unless the spec's ``[output] verbatim_csv``; the cells
    it changed are added to ``result.guarded_cells``."""
    import os
    import shutil

    from ._io import _umask, remove_leftovers, temporary_path, write_error
    from .csv_guard import guard_frame

    directory = Path(directory)
    verbatim = bool(result.spec.get("output", {}).get("verbatim_csv"))
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ClvInputError(f"{directory}: exists and is not an empty folder; give a new folder for the results",
                            argument="output")
    tmp = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(directory)
        tmp = temporary_path(directory)
        tmp.mkdir(mode=0o700)
        tables = {}
        if result.backtest is not None:
            tables["backtest"] = result.backtest.metrics
            tables["purchases_by_frequency"] = result.backtest.purchases
            tables["backtest_customers"] = result.backtest.scores
        if result.comparison is not None:
            tables["customers"] = result.comparison.customers
            tables["segments"] = result.comparison.segments
            tables["disagreements"] = result.comparison.disagreements
        for name, table in tables.items():
            frame = table.reset_index() if any(n is not None for n in table.index.names) else table
            guarded, count = guard_frame(frame, verbatim)
            guarded.to_csv(tmp / f"{name}.csv", index=False)
            result.guarded_cells += count
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "plots").mkdir()
        for caption, png in result.figures.items():
            (tmp / "plots" / f"{_slug(caption)}.png").write_bytes(png)
        (tmp / "report.html").write_text(_report_document(result), encoding="utf-8")
        mode = 0o777 & ~_umask()
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, mode if path.is_dir() else mode & 0o666)
        if directory.exists():
            directory.rmdir()
        os.replace(tmp, directory)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        error = write_error(directory, exc, "folder") if isinstance(exc, OSError) else None
        if error is not None:
            raise error from None
        raise
    return directory
