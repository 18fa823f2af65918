"""MLflow tracking of pipeline runs, and the fitted model as an MLflow pyfunc model.

:func:`log_run` records one :class:`~clv_forecast.experiment.RunResult` as one MLflow run: the spec
and settings as params, fit statistics, parameters, holdout/backtest metrics and timings as metrics,
plots, report and tables as artifacts, the input file as an MLflow dataset, and the fitted
:class:`~clv_forecast.model.ClvModel` as a pyfunc model logged as code (MLflow's models-from-code: the
file :mod:`clv_forecast.pyfunc_code.clv` builds the stateless :class:`ClvPyfunc`, which reads the JSON model
file artifact in ``load_context``; nothing is pickled).

Importing this module is cheap: mlflow is imported inside the functions that need it, and
``ClvPyfunc`` (a ``mlflow.pyfunc.PythonModel``) is built on first access.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ClvInputError, UnreliableFitError

__all__ = ["TrackedRun", "TrackedScore", "resolve_tracking_uri", "check_tracking_scheme", "check_reachable",
           "server_problem", "log_run", "log_score_run", "log_retention_run", "TrackedRetention",
           "load_model", "ClvPyfunc", "RetentionPyfunc", "OUTPUT_COLUMNS", "INPUT_COLUMNS"]

#: Columns the pyfunc model reads (``monetary_value`` optional) and returns, in this order.
INPUT_COLUMNS = ("frequency", "recency", "T", "monetary_value")
OUTPUT_COLUMNS = ("expected_purchases", "p_alive", "expected_spend", "clv")
#: The optional id column of the pyfunc's input, returned unchanged as the first output column.
ID_COLUMN = "customer_id"
#: The experiment tag MLflow's UI reads to choose an experiment's first page; the project's experiments open on
#: the runs (MLflow 3 opens an experiment without it on its GenAI traces page).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
_CODE = Path(__file__).parent / "pyfunc_code"  # the models-from-code files
#: Versions recorded with every run (``version.<name>`` params).
VERSIONED = ("clv_forecast", "numpy", "scipy", "pandas", "polars", "pyarrow", "mlflow")
#: Alias set on a registered version by default (``models:/NAME@champion``); MLflow reserves "latest".
DEFAULT_ALIAS = "champion"

# MLflow's HTTP client retries for minutes by default (7 retries with back-off, 120 s timeout): a server
# that accepts and then never answers would hold a run for 4 minutes. Ours: one retry, 5 s without a byte.
_FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}

# the schemes MLflow can track to (mlflow.tracking._tracking_service.utils); a database scheme may carry
# its driver (postgresql+psycopg2); plugins add theirs through the "mlflow.tracking_store" entry points
_TRACKING_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                     "databricks-uc", "uc")


@dataclass(frozen=True)
class TrackedRun:
    """Where :func:`log_run` recorded a run. ``model_uri`` is ``runs:/<run_id>/model``;
    ``registered_version`` is set when the model was registered (``models:/NAME/<version>``)."""

    run_id: str
    experiment_id: str
    experiment_name: str
    model_uri: str | None  # None: no model logged (a refused fit, or one no model file may hold)
    registered_version: int | None = None
    registered_name: str | None = None
    alias: str | None = None
    logged_model_uri: str | None = None  # MLflow 3's own URI of the logged model (models:/m-...)
    status: str = "FINISHED"  # "FAILED" for a refused fit (no model logged: ``model_uri`` is None)


# -- where ------------------------------------------------------------------------------------------


def resolve_tracking_uri(tracking_uri: str | None = None) -> str | None:
    """The tracking URI to use: the argument, else ``$MLFLOW_TRACKING_URI``, else None (MLflow's own
    default: the sqlite store ``mlflow.db`` in the working directory). A URI whose scheme MLflow cannot
    track to (``ftp://...``) is refused here, before any work (:func:`check_tracking_scheme`)."""
    if tracking_uri is not None and str(tracking_uri).strip():
        uri = str(tracking_uri).strip()
        check_tracking_scheme(uri, argument="tracking_uri")
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        check_tracking_scheme(env, argument=None)
    return env or None


def check_tracking_scheme(uri: str, argument: str | None = "tracking_uri") -> None:
    """Refuse a tracking URI MLflow has no store for (its scheme is not a path, ``file:``, a database,
    ``http(s):``, ``databricks`` or a plugin's): one line naming the option (``argument``) or, without
    one, ``$MLFLOW_TRACKING_URI``."""
    import urllib.parse

    from ._paths import shown_path

    if "\x00" in uri:
        reason = "contains a NUL byte"
    else:
        try:
            scheme = urllib.parse.urlparse(uri).scheme.lower()
        except ValueError as exc:
            scheme, reason = None, f"not a URI ({exc})"
        if scheme is not None:
            if len(scheme) <= 1 or scheme.split("+")[0] in _TRACKING_SCHEMES or scheme in _plugin_schemes():
                return  # "" and "c" (a drive letter): a local path
            reason = (f"MLflow cannot track to {scheme!r} URIs; give a folder, file:, sqlite:, postgresql:, mysql:, "
                      "mssql:, http(s): or databricks URI")
    if argument is None:
        raise ClvInputError(f"$MLFLOW_TRACKING_URI={shown_path(uri)}: {reason}")
    raise ClvInputError(reason, argument=argument, value=shown_path(uri))


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    try:
        return {ep.name.lower() for ep in entry_points(group="mlflow.tracking_store")}
    except Exception:  # noqa: BLE001 - broken package metadata: no plugins
        return set()


def _fail_fast_env() -> None:
    """Make MLflow's HTTP client give up in seconds, unless the user has set its knobs."""
    for key, value in _FAST_FAIL_ENV.items():
        os.environ.setdefault(key, value)


def check_reachable(tracking_uri: str | None, timeout: float = 3.0) -> None:
    """For an http(s) tracking URI, one quick ``GET {uri}/health``; an unreachable server is a one-line
    :class:`ClvInputError`. Other URIs (local stores, None) are not checked. Also makes MLflow's own
    HTTP client fail fast (see :data:`_FAST_FAIL_ENV`) unless the user configured it."""
    uri = resolve_tracking_uri(tracking_uri)
    reason = server_problem(uri, timeout)
    if reason is not None:
        raise ClvInputError(f"tracking server is not reachable ({reason}); start it (mlflow server --host 127.0.0.1 "
                            "--port PORT) or give {{no_tracking=True}}", argument="tracking_uri", value=uri)


def server_problem(uri: str | None, timeout: float = 3.0) -> str | None:
    """Why an http(s) MLflow server at ``uri`` cannot be used (one quick ``GET {uri}/health``: refused,
    timed out, HTTP 5xx), or None when it answers or ``uri`` is not a server. Sets MLflow's own HTTP
    retries and timeout for the calls that follow (:data:`_FAST_FAIL_ENV`, unless the user set them)."""
    _fail_fast_env()
    if uri is None or not uri.lower().startswith(("http://", "https://")):
        return None
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked above
            response.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code < 500:  # a server answered (e.g. /health behind a proxy or auth): it is reachable
            return None
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return " ".join(str(reason).split()) or type(exc).__name__
    return None


# -- what -------------------------------------------------------------------------------------------


def _text(value) -> str:
    """A param value as text: dates in ISO, None as 'null', booleans as 'true'/'false'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return str(value)


def _flatten(spec: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = _text(value)
    return out


def _json_default(value):
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    return str(value)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    # the distributions that may provide each module, first found wins: mlflow's module comes from the full
    # mlflow (the [server] extra) or from mlflow-skinny alone (the plain install), at the same version
    names = {"clv_forecast": ("clv-forecast",), "mlflow": ("mlflow", "mlflow-skinny")}
    out = {}
    for name in VERSIONED:
        out[name] = "not installed"
        for dist in names.get(name, (name,)):
            try:
                out[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    import platform

    out["python"] = platform.python_version()
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_file(result, data_path) -> Path | None:
    """The file whose hash identifies the input: ``data_path``, the bundled CDNOW file, or the spec's source."""
    if data_path is not None:
        return Path(data_path)
    source = (result.spec.get("data") or {}).get("source")
    if source == "cdnow_sample":
        from .datasets import cdnow_sample_path

        return cdnow_sample_path()
    if isinstance(source, (str, os.PathLike)) and (Path(source).is_file() or Path(source).is_dir()):
        return Path(source)
    return None


def _params(result, command: str, data_path) -> dict[str, str]:
    spec = {k: v for k, v in result.spec.items() if k != "spec_file"}
    params = _flatten(spec)
    if result.spec.get("spec_file"):
        params["spec_file"] = str(result.spec["spec_file"])
    model = result.model  # None when the data identified nothing (a refused run)
    if model is not None:
        params.update({f"estimator.{k}": _text(v) for k, v in model.get_params().items()})
        for _, sub in model.parts():
            params.update({f"estimator.{sub.kind}.{k}": _text(v) for k, v in sub.get_params().items()})
        params["estimator.time_unit"] = str(model.time_unit_)
        boundary = getattr(model, "boundary_", None)
        params["estimator.boundary"] = "none" if not boundary else f"{boundary['kind']} -> {model.purchases_.kind}"
    # the CLV settings of the run and of the logged pyfunc's defaults (the package's defaults where unset)
    for key, value in _value_defaults(result).items():
        if params.get(f"value.{key}") in (None, "null"):
            params[f"value.{key}"] = _text(value)
    params["command"] = command
    params.update({f"version.{k}": v for k, v in _versions().items()})
    path = _data_file(result, data_path)
    if path is not None and path.is_dir():
        # a directory of files (Spark's Parquet datasets): named, not hashed (it can be any size)
        params["data_file"] = str(path)
        params["data_sha256"] = "not computed: a directory"
    elif path is not None:
        try:
            params["data_sha256"] = _sha256(path)
            params["data_file"] = str(path)
        except OSError as exc:
            raise ClvInputError(f"{path}: cannot read the data file to hash it ({exc.strerror or exc})",
                                argument="data_path", value=str(path)) from None
    for key, value in dict(getattr(result.summary, "attrs", {}) or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            params[f"rows.{key}"] = _text(value)
    return params


def _log_candidates(mlflow, result, experiment_id: str, name: str) -> None:
    """One child run per candidate of ``purchases = "auto"`` under the open parent run: its kind and the model
    fitted (params), its fit and holdout scores and rank (metrics), whether it won and its note (tags)."""
    selection = getattr(result.model, "selection_", None) if result.model is not None else None
    if selection is None:
        return
    for kind, row in selection.table.iterrows():
        tags = {"selection.winner": str(kind == selection.winner).lower(), "reliable": str(bool(row["reliable"])).lower()}
        if row.get("note"):
            tags["note"] = str(row["note"])[:5000]
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}: {row['model']}", nested=True, tags=tags):
            mlflow.log_params({"purchases.kind": kind, "purchases.fitted": str(row["fitted"]),
                               "selection.criterion": selection.criterion})
            numbers = {key: row.get(key) for key in ("log_likelihood", "aic", "bic", "holdout_mae", "holdout_rmse",
                                                     "holdout_total_error_pct", "by_frequency_error", "rank", "k")}
            kept, _ = _finite(numbers)
            mlflow.log_metrics(kept)


def _metrics(result) -> dict[str, Any]:
    """Every metric of the run by name (values may be non-finite: the caller skips those)."""
    model = result.model
    out: dict[str, Any] = {}
    for part, stats in (model.fit_stats() if model is not None else {}).items():
        for key, value in stats.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "penalizer":
                out[f"{part}.{key}"] = value
            elif isinstance(value, bool):
                out[f"{part}.{key}"] = float(value)
    for (part, param), row in (model.summary_frame().iterrows() if model is not None else ()):
        out[f"{part}.{param}"] = row["estimate"]
        out[f"{part}.{param}.se"] = row["std_err"]
    for key, value in (result.metrics or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    backtest = getattr(result, "backtest", None)
    if backtest is not None and getattr(backtest, "metrics", None) is not None:
        for method, row in backtest.metrics.iterrows():
            for metric, value in row.items():
                out[f"backtest.{str(method).replace(':', '.')}.{metric}"] = value
    for key, value in (result.timings or {}).items():
        out[f"seconds.{key}"] = value
    return out


def _finite(metrics: dict) -> tuple[dict[str, float], dict[str, str]]:
    kept, skipped = {}, {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            skipped[key] = "not a number"
            continue
        if math.isfinite(number):
            kept[key] = number
        else:
            skipped[key] = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    return kept, skipped


def _problems(result) -> list[str]:
    """The run's problems: the model's, or (the data identified nothing, no model) why the fit was refused."""
    if result.model is None:
        return [result.refused] if getattr(result, "refused", None) else []
    return list(result.model.problems_)


def _tags(result, command: str) -> dict[str, str]:
    model = result.model
    problems = _problems(result)
    source = (result.spec.get("data") or {}).get("source")
    dataset = "CDNOW sample (bundled)" if source == "cdnow_sample" else Path(str(source)).name
    unit = model.time_unit_ if model is not None else dict(getattr(result.summary, "attrs", {}) or {}).get(
        "time_unit", (result.spec.get("summary") or {}).get("time_unit"))
    tags = {
        "dataset": dataset,
        "time_unit": str(unit),
        "reliable": "false" if problems or getattr(result, "refused", None) else "true",
        "command": command,
        "clv_forecast.experiment": str(result.spec.get("name")),
    }
    if model is not None:
        tags["model_kinds"] = "+".join(sub.name for _, sub in model.parts())
        tags.update({f"model.{role}": sub.kind for role, sub in model.parts()})
    boundary = getattr(model, "boundary_", None) if model is not None else None
    if boundary:  # the purchase part is a boundary's nested model, not the one asked for
        tags["boundary"] = model.boundary_line()[:5000]
        tags["boundary.requested"] = boundary["kind"]
    selection = getattr(model, "selection_", None) if model is not None else None
    if selection is not None:  # the purchase model was chosen: which, by what, and why (one child run per model)
        tags.update({"selection.winner": selection.winner, "selection.criterion": selection.criterion,
                     "selection.reason": selection.reason[:5000]})
    if problems:
        tags["problems"] = "; ".join(problems)[:5000]
    if getattr(result, "refused", None):
        tags["failure"] = "fit refused (not reliable); nothing saved, no model logged"
    return tags


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")[:60] or "figure"


def _write_artifacts(result, folder: Path) -> None:
    """The run's files under ``folder``: plots/, report/, tables/, experiment/."""
    for caption, png in (result.figures or {}).items():
        plots = folder / "plots"
        plots.mkdir(exist_ok=True)
        (plots / f"{_slug(caption)}.png").write_bytes(png)
    if result.report_path is not None and Path(result.report_path).is_file():
        (folder / "report").mkdir(exist_ok=True)
        (folder / "report" / Path(result.report_path).name).write_bytes(Path(result.report_path).read_bytes())
    tables = {}
    if result.comparison is not None:
        tables["comparison_customers"] = getattr(result.comparison, "customers", None)
        tables["comparison_segments"] = getattr(result.comparison, "segments", None)
    selection = getattr(result.model, "selection_", None) if result.model is not None else None
    if selection is not None:
        tables["model_selection"] = selection.table
    if result.backtest is not None:
        tables["backtest_metrics"] = getattr(result.backtest, "metrics", None)
        tables["backtest_purchases"] = getattr(result.backtest, "purchases", None)
    from .csv_guard import guard_frame

    verbatim = bool((result.spec.get("output") or {}).get("verbatim_csv"))
    for name, table in tables.items():
        if table is not None:
            (folder / "tables").mkdir(exist_ok=True)
            guard_frame(table.reset_index(), verbatim)[0].to_csv(folder / "tables" / f"{name}.csv", index=False)
    (folder / "experiment").mkdir()
    spec_file = result.spec.get("spec_file")
    if spec_file and Path(spec_file).is_file():
        (folder / "experiment" / Path(spec_file).name).write_bytes(Path(spec_file).read_bytes())
    else:
        text = json.dumps(result.spec, indent=2, default=_json_default, sort_keys=False) + "\n"
        (folder / "experiment" / "spec.json").write_text(text, encoding="utf-8")


# -- the model as a pyfunc --------------------------------------------------------------------------


def _value_defaults(result) -> dict[str, Any]:
    """The pyfunc's params and their defaults: the CLV settings (the run's values), ``interval`` (0: none; asked
    per call, so the default output keeps its four columns whatever the run used) and ``interval_method`` (the
    run's, else delta)."""
    from .units import VALUE_DEFAULTS

    value = result.spec.get("value") or {}
    out = {key: (float if key == "margin" else str)(VALUE_DEFAULTS[key] if value.get(key) is None else value[key])
           for key in VALUE_DEFAULTS}
    out["interval"] = 0.0
    out["interval_method"] = str(value.get("interval_method") or "delta")
    return out


def _interval_of(params: dict):
    """The pyfunc's ``interval`` param as a level, or None for none (absent, None or 0)."""
    level = params.get("interval")
    if level in (None, "", 0, 0.0, "0", "none"):
        return None
    from .uncertainty import check_level

    try:
        return check_level(float(level))
    except (TypeError, ValueError):
        return check_level(level)


def model_inputs(model) -> tuple[list[str], list[str]]:
    """The columns a model reads: the purchase model's ``inputs`` (required) and the spend model's others
    (optional: without them no CLV), the union of the parts' ``inputs``."""
    required = list(model.purchases_.inputs)
    optional = [] if model.spend_ is None else [c for c in model.spend_.inputs if c not in required]
    return required, optional


def _predict_frame(model, frame, params: dict):
    """The pyfunc prediction: one row per input row, same order, the columns of :data:`OUTPUT_COLUMNS`, after
    the input's :data:`ID_COLUMN` (unchanged) when it has one."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(frame)
    required, optional = model_inputs(model)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ClvInputError(f"model input: missing columns {missing}; give {', '.join(required)} (in the model's "
                            f"time unit {model.time_unit_!r})"
                            + (f" and optionally {', '.join(optional)}" if optional else ""))
    with_spend = model.spend_ is not None and all(c in frame.columns for c in optional)
    rfm = frame[list(required + optional if with_spend else required)].reset_index(drop=True)
    unit = model.time_unit_
    interval = _interval_of(params)
    money = dict(horizon=params["horizon"], discount_rate=params["discount_rate"], step=params["step"],
                 margin=float(params["margin"]), time_unit=unit)
    if interval is not None:
        from .uncertainty import INTERVAL_COLUMNS

        method = params.get("interval_method") or "delta"
        if with_spend:
            out = model.clv(rfm, interval=interval, interval_method=method, **money)
        else:  # expected purchases and P(alive) with their intervals; a unit spend stands in, then is blanked
            # (and the horizon is one step: no discounting is reported, so the step need not divide it)
            money["step"] = params["horizon"]
            out = model.clv(rfm, interval=interval, interval_method=method, future_spend=np.ones(len(rfm)), **money)
            out.loc[:, [c for c in out.columns if c.startswith(("expected_spend", "clv"))]] = np.nan
        columns = list(OUTPUT_COLUMNS) + list(INTERVAL_COLUMNS)
    else:
        if with_spend:
            out = model.clv(rfm, **money)
        else:
            out = model.predict(rfm, horizon=params["horizon"], time_unit=unit)
        columns = list(OUTPUT_COLUMNS)
    for column in columns:
        if column not in out:
            out[column] = np.nan
    return _pass_ids(frame, out[columns].astype("float64"))


def _pass_ids(frame, out):
    """``out`` (one row per row of ``frame``) after ``frame``'s :data:`ID_COLUMN`, unchanged, when it has one."""
    out = out.reset_index(drop=True)
    if ID_COLUMN in getattr(frame, "columns", ()):
        out.insert(0, ID_COLUMN, frame[ID_COLUMN].reset_index(drop=True))
    return out


@contextlib.contextmanager
def _one_line_errors():
    """Bad input to a pyfunc's ``predict`` raises MLflow's INVALID_PARAMETER_VALUE with the project's one-line
    message (the :class:`ClvInputError`'s): MLflow's scoring server answers 400 with that line, no stack trace."""
    try:
        yield
    except ClvInputError as exc:
        from mlflow.exceptions import MlflowException

        raise MlflowException.invalid_parameter_value(str(exc)) from None


def _warn_once_if_unreliable(pyfunc) -> None:
    """A loaded pyfunc whose model is unreliable (saved with --save-unreliable) warns at its first prediction."""
    problems = pyfunc._model.problems_
    if problems and not getattr(pyfunc, "_warned", False):
        pyfunc._warned = True
        warnings.warn("clv-forecast: this model is not reliable (" + "; ".join(problems)[:300]
                      + "): its predictions cannot be trusted", UserWarning, stacklevel=3)


def _build_pyfunc_class():
    import mlflow.pyfunc

    return _define_pyfunc_class(mlflow.pyfunc.PythonModel)


def _define_pyfunc_class(base):
    class ClvPyfunc(base):
        """Stateless wrapper: ``load_context`` reads the JSON model file artifact with ``ClvModel.load``.

        ``predict(model_input, params)``: ``model_input`` has frequency, recency, T (in the model's time
        unit) and optionally monetary_value and ``customer_id``; returns expected_purchases, p_alive,
        expected_spend and clv per row (NaN spend and CLV without monetary_value), after ``customer_id``
        (unchanged) when given. Bad input raises MLflow's INVALID_PARAMETER_VALUE with one line.
        ``params``: horizon, discount_rate, step,
        margin (defaults: the logged run's values), ``interval`` (e.g. 0.9: adds ``<forecast>_lower/_upper`` for
        each forecast, :data:`clv_forecast.uncertainty.INTERVAL_COLUMNS`; 0: none) and ``interval_method``."""

        # The input is checked against the logged signature (MLflow's schema enforcement at predict); MLflow's
        # other, type-hint based validation of predict does not apply (predict has no type hints) and its
        # "add type hints" warning would only be noise.
        _skip_type_hint_validation = True

        def load_context(self, context):
            from .model import ClvModel

            # an unreliable model (saved with --save-unreliable) loads; its first prediction warns, once
            self._model = ClvModel.load(context.artifacts["model_file"])
            self._warned = False

        def predict(self, context, model_input, params=None):
            _warn_once_if_unreliable(self)
            # through MLflow, params always holds all four: the signature's defaults (the run's values) fill in
            # what the caller leaves out; the fallbacks below serve only a direct call of this method
            from .units import VALUE_DEFAULTS

            settings = {**VALUE_DEFAULTS, **{k: v for k, v in (params or {}).items() if v is not None}}
            with _one_line_errors():
                return _predict_frame(self._model, model_input, settings)

    ClvPyfunc.__module__ = __name__
    ClvPyfunc.__qualname__ = "ClvPyfunc"
    return ClvPyfunc


def __getattr__(name: str):
    # ClvPyfunc subclasses mlflow's PythonModel: built on first access so that importing this module does
    # not import mlflow; cached as a module attribute, so pickling and unpickling find the same class by name
    if name == "ClvPyfunc":
        cls = _build_pyfunc_class()
        globals()["ClvPyfunc"] = cls
        return cls
    if name == "RetentionPyfunc":  # (the same for a retention model's wrapper)
        import mlflow.pyfunc

        cls = _define_retention_pyfunc_class(mlflow.pyfunc.PythonModel)
        globals()["RetentionPyfunc"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _signature(model, defaults: dict):
    """The logged signature, written out (no inference from an example: nothing to compute per run). Its types
    are concrete, so that MLflow's scoring server reads CSV (it gives each column its declared dtype) as well as
    JSON: every input column a double (frequency too: CSV, JSON and Spark give whole numbers as doubles, and the
    model takes a double that is a whole number), then the optional id column as text; the outputs, after the
    optional id, the forecasts; the params, the run's CLV settings. Every input column is declared optional: a
    missing one reaches the model, whose one-line message names it (MLflow's own check would put the whole input
    in its message)."""
    required, optional = model_inputs(model)
    return _typed_signature(required + optional, OUTPUT_COLUMNS, defaults)


def _typed_signature(inputs, outputs, defaults: dict):
    """A signature of optional double ``inputs`` and then the optional text :data:`ID_COLUMN`, double ``outputs``
    after the optional id, and ``defaults`` as params (text or double, by the default's type)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    text_id = ColSpec("string", ID_COLUMN, required=False)
    return ModelSignature(
        inputs=Schema([ColSpec("double", name, required=False) for name in inputs] + [text_id]),
        outputs=Schema([text_id] + [ColSpec("double", name) for name in outputs]),
        params=ParamSchema([ParamSpec(key, "double" if isinstance(value, float) else "string", value)
                            for key, value in defaults.items()]))


def _model_example(frame, columns):
    """Five rows of ``columns`` as the logged input example, as doubles (the signature's type)."""
    return frame.head(5)[columns].reset_index(drop=True).astype("float64")  # (a SparkSummary too)


def _requirements() -> list[str]:
    # given, not inferred: MLflow's inference loads the model in a subprocess (seconds per run)
    versions = _versions()
    out = []
    for name in VERSIONED:
        if versions[name] != "not installed":
            out.append(f"{'clv-forecast' if name == 'clv_forecast' else name}=={versions[name]}")
    return out


@contextlib.contextmanager
def _no_requirement_check():
    """Skip MLflow's check that the running environment satisfies the model's requirements while the model
    is saved and its input example validated (which loads it): the requirements are the installed versions,
    read just before (:func:`_requirements`), so the check cannot find a mismatch, and it costs ~0.3 s (it
    maps every installed distribution's files to modules). Where MLflow has moved it, nothing is skipped."""
    import importlib

    patched = []
    for name in ("mlflow.utils.environment", "mlflow.pyfunc"):
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover
            continue
        original = getattr(module, "warn_dependency_requirement_mismatches", None)
        if callable(original):
            module.warn_dependency_requirement_mismatches = lambda requirements: None
            patched.append((module, original))
    try:
        yield
    finally:
        for module, original in patched:
            module.warn_dependency_requirement_mismatches = original


class _DropRecords:
    """A logging filter dropping MLflow's 'validating input example' progress line while a model is logged."""

    _NOTES = ("Validating input example",)

    def filter(self, record) -> bool:
        message = str(record.msg)
        return not any(note in message for note in self._NOTES)


@contextlib.contextmanager
def _quiet_pyfunc_log():
    import logging

    logger, note_filter = logging.getLogger("mlflow.pyfunc"), _DropRecords()
    logger.addFilter(note_filter)
    try:
        yield
    finally:
        logger.removeFilter(note_filter)


def _log_model(result, folder: Path):
    import mlflow.pyfunc

    model = result.model
    model_file = folder / "clv_model.json"
    model.save(model_file, allow_unreliable=True)  # a run that produced a result has accepted its reliability
    required, optional = model_inputs(model)
    example = _model_example(result.summary, [c for c in required + optional if c in result.summary.columns])
    defaults = _value_defaults(result)
    with _no_requirement_check(), _quiet_pyfunc_log():
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(_CODE / "clv.py"), artifacts={"model_file": str(model_file)},
            signature=_signature(model, defaults), input_example=example,
            pip_requirements=_requirements())


# -- the run ----------------------------------------------------------------------------------------


def _use_tracking_uri(mlflow, uri: str | None):
    """Point MLflow's fluent API at ``uri`` for one call; return the function that puts back what was
    there: the explicitly set URI (or none) and ``$MLFLOW_TRACKING_URI``, which ``set_tracking_uri`` also
    writes. Without ``uri`` nothing changes."""
    if uri is None:
        return lambda: None
    try:
        from mlflow.tracking._tracking_service import utils as _state

        explicit = _state._tracking_uri  # None unless set_tracking_uri was called
    except (ImportError, AttributeError):  # pragma: no cover - a future MLflow layout
        explicit = mlflow.get_tracking_uri()
    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)

    def restore() -> None:
        mlflow.set_tracking_uri(explicit)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env

    return restore



def _experiment_id(client, name: str, where: str) -> str:
    """The id of the experiment called ``name``, created when missing (tagged :data:`EXPERIMENT_KIND`, so that
    MLflow's UI opens it on its runs); a deleted one is a one-line error."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise ClvInputError(f"experiment {name!r} was deleted in the tracking store {where}; "
                            f"restore it (mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                            "or give the experiment another name", argument="name", value=name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, tags=EXPERIMENT_KIND)


def _run_name(command: str, *words) -> str:
    """A run's name as the runs table shows it: the command, what was fitted or scored, the data, the start
    time in UTC (``fit bgnbd+gamma_gamma cdnow 2026-12-03 14:05 UTC``); empty words are left out."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return " ".join(str(w) for w in (command, *words, now) if w)[:250]


def _input_digest(path: Path, sha256: str | None = None) -> tuple[str, str]:
    """``(digest, what it is of)`` of an input: a file's SHA-256 (its first 36 hex digits, the most MLflow's
    stores keep; the whole hash is the run's ``*_sha256`` param: ``sha256`` when the run has computed it
    already), or for a folder (a Parquet dataset) the SHA-256 of its files' names, sizes and modification times
    (not their bytes: it can be any size)."""
    if not path.is_dir():
        return (sha256 or _sha256(path))[:36], "file contents (SHA-256)"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:36], "file names, sizes and modification times (SHA-256)"


def _log_input(client, run_id: str, path, name: str, context: str, sha256: str | None = None) -> None:
    """Record the input file (or folder) ``path`` as the run's MLflow dataset (source: the local path, digest:
    :func:`_input_digest`, given the file's ``sha256`` when known) used for ``context`` (``"training"``,
    ``"scoring"``): the run's Datasets column and its inputs in the UI."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    path = Path(path)
    value, of = _input_digest(path, sha256)
    dataset = Dataset(name=name, digest=value, source_type="local",
                      source=json.dumps({"uri": str(path.resolve())}), profile=json.dumps({"digest_of": of}))
    client.log_inputs(run_id, [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])


def log_run(result, *, command: str, tracking_uri: str | None = None, register_as: str | None = None,
            data_path: str | None = None, alias: str | None = DEFAULT_ALIAS) -> TrackedRun:
    """Record a pipeline :class:`~clv_forecast.experiment.RunResult` as one MLflow run.

    A refused fit (``result.refused``: the run stopped at the reliability check) is logged too, with
    status FAILED: its params, the row accounting, the fit statistics and parameters the fit reached,
    the problems as the ``problems`` tag and the text artifact ``problems.txt``; no model is logged or
    registered (``register_as`` is ignored). A model kept with ``save_unreliable`` is logged as usual
    (FINISHED) with the tag ``reliable = false`` and its problems.

    The experiment is the spec's name. ``register_as`` registers the logged model under that name and
    points ``alias`` (default ``champion``; None: no alias) at the new version. ``data_path``: the input
    file to hash (default: the spec's source file, or the bundled CDNOW file).
    """
    if register_as is not None and not str(register_as).strip():
        raise ClvInputError("must be a non-empty model name", argument="register_as", value=register_as)
    if alias is not None and (alias.lower() == "latest" or not re.fullmatch(r"[A-Za-z_][\w-]*", alias)
                              or re.fullmatch(r"[vV]\d+", alias)):
        raise ClvInputError("must be a name such as 'champion' ('latest' and v1, v2... are MLflow's own)",
                            argument="alias", value=alias)
    uri = resolve_tracking_uri(tracking_uri)
    if uri is not None and uri.lower().startswith(("http://", "https://")):
        _fail_fast_env()
    params = _params(result, command, data_path)  # before the run: a bad data_path leaves no failed run behind
    refused = bool(getattr(result, "refused", None))
    import mlflow
    from mlflow.tracking import MlflowClient

    name = str(result.spec.get("name") or "clv-forecast")
    restore = _use_tracking_uri(mlflow, uri)
    try:
        client = MlflowClient()
        experiment_id = _experiment_id(client, name, mlflow.get_tracking_uri())
        metrics, skipped = _finite(_metrics(result))
        tags = _tags(result, command)
        if skipped:
            tags["skipped_metrics"] = "; ".join(f"{k}={v}" for k, v in skipped.items())[:5000]
        kinds = "+".join(sub.kind for _, sub in result.model.parts()) if result.model is not None else None
        with tempfile.TemporaryDirectory(prefix="clv-tracking-") as tmp, \
                mlflow.start_run(experiment_id=experiment_id, run_name=_run_name(command, kinds, name),
                                 tags=tags) as active:
            run_id = active.info.run_id
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            if "data_file" in params:
                _log_input(client, run_id, params["data_file"], tags["dataset"], "training", params["data_sha256"])
            files = Path(tmp) / "files"
            files.mkdir()
            _write_artifacts(result, files)
            problems = _problems(result)
            if problems:
                (files / "problems.txt").write_text("\n".join(problems) + "\n", encoding="utf-8")
            mlflow.log_artifacts(str(files))
            _log_candidates(mlflow, result, experiment_id, name)
            info = None
            if refused:
                mlflow.end_run(status="FAILED")
            else:
                try:
                    info = _log_model(result, Path(tmp))
                except UnreliableFitError as exc:  # kept with save_unreliable, but no model file may hold it
                    mlflow.set_tag("model_not_logged", " ".join(str(exc).split())[:5000])
        version = None
        if register_as and info is not None:
            registered = mlflow.register_model(info.model_uri, register_as)
            version = int(registered.version)
            if alias:
                client.set_registered_model_alias(register_as, alias, str(version))
    finally:
        restore()
    return TrackedRun(run_id=run_id, experiment_id=str(experiment_id), experiment_name=name,
                      model_uri=None if info is None else f"runs:/{run_id}/model", registered_version=version,
                      registered_name=register_as if version is not None else None,
                      alias=alias if version is not None else None,
                      logged_model_uri=None if info is None else info.model_uri,
                      status="FAILED" if refused else "FINISHED")


def load_model(model_uri: str) -> "LoadedModel":
    """The logged model (``runs:/<id>/model``, ``models:/NAME/1``, ``models:/NAME@champion``) as MLflow's pyfunc
    model in a :class:`LoadedModel`: ``.predict(rfm_frame, params={"horizon": "39W"})`` returns the columns of
    :data:`OUTPUT_COLUMNS` (after ``customer_id`` when the frame has one) for the tables ``summarize`` writes."""
    import mlflow.pyfunc

    return LoadedModel(mlflow.pyfunc.load_model(model_uri))


class LoadedModel:
    """MLflow's pyfunc model (``.pyfunc``; its other attributes are reached as they are) whose ``predict`` first
    does what MLflow's signature check refuses to do although it is exact: whole-number columns (``frequency``
    as ``summarize`` writes it, int64) become doubles, and the id column, whatever its type (MLflow takes text
    ids only), is set aside and returned unchanged. Through ``mlflow.pyfunc.load_model`` itself, give doubles
    and text ids."""

    def __init__(self, pyfunc) -> None:
        self.pyfunc = pyfunc

    def __getattr__(self, name: str):
        return getattr(self.pyfunc, name)

    def predict(self, data, params: dict | None = None):
        import pandas as pd

        if not isinstance(data, pd.DataFrame):
            return self.pyfunc.predict(data, params=params)
        frame = data.drop(columns=[ID_COLUMN], errors="ignore")
        whole = {c: "float64" for c in frame.columns if pd.api.types.is_integer_dtype(frame[c].dtype)}
        return _pass_ids(data, self.pyfunc.predict(frame.astype(whole) if whole else frame, params=params))


# -- score runs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackedScore:
    """Where :func:`log_score_run` recorded a ``score`` run, and its MLflow status."""

    run_id: str
    experiment_id: str
    experiment_name: str
    status: str


def _score_metrics(report) -> dict[str, float]:
    seconds = float(report.seconds)
    out = {"rows_read": report.read, "rows_scored": report.scored, "rows_rejected": report.rejected,
           "reject_share": report.reject_share, "seconds": seconds,
           "rows_per_second": report.read / seconds if seconds > 0 else float("nan")}
    # a retention model's report has its own totals (residual value, DERL); a purchase model's the CLV total
    out.update(getattr(report, "totals", None) or {"clv_total": report.clv_total})
    band = getattr(report, "portfolio", None)
    if band:  # the band of the totals (clv_forecast.uncertainty.Portfolio.band)
        out.update({"clv_total_lower": band["clv"]["lower"], "clv_total_upper": band["clv"]["upper"],
                    "expected_purchases_total": band["expected_purchases"]["total"],
                    "expected_purchases_total_lower": band["expected_purchases"]["lower"],
                    "expected_purchases_total_upper": band["expected_purchases"]["upper"],
                    "band_level": band["level"]})
    columns = getattr(report, "column_totals", None)
    if columns:  # value by period and window: each window's totals (and band), as fit/run log them
        from .report import window_metrics

        out.update(window_metrics(columns))
    for reason, count in report.reasons.items():
        out[f"rejects.{_slug(reason)}"] = count
    return out


def log_score_run(report, *, params: dict, input_path, tracking_uri: str | None = None,
                  failed: bool = False) -> TrackedScore:
    """Record one batch-scoring run (a :class:`clv_forecast.scoring.ScoreReport`) as one MLflow run.

    ``params``: the run's settings (model, input, horizon, rates...), logged as given, plus the model's
    time unit, the SHA-256 of the local model file and, for a transaction log, the summary's row
    accounting (``rows.<key>``, as ``fit`` logs it). Metrics: rows read, scored and rejected, the reject
    share, ``rejects.<reason>``, the total CLV of the scored rows, seconds and rows per second. The
    rejects file is an artifact (``rejects/``) when there are rejects; the scores file is not logged
    (it may be as large as the input). ``failed``: the run ends with status FAILED (too many rejects).
    The experiment is named after the input file (as ``fit`` names it after its data file).
    """
    uri = resolve_tracking_uri(tracking_uri)
    if uri is not None and uri.lower().startswith(("http://", "https://")):
        _fail_fast_env()
    values = {key: _text(value) for key, value in params.items()}
    values["command"] = "score"
    values["time_unit"] = _text(report.time_unit)
    for key, value in (getattr(report, "settings", None) or {}).items():  # with the defaults filled in
        values.setdefault(key, _text(value))
    problems = list(getattr(report, "model_problems", None) or [])
    values["model_reliable"] = "false" if problems else "true"
    if report.model_file is not None and Path(report.model_file).is_file():
        values["model_sha256"] = _sha256(Path(report.model_file))
    for key, value in (report.summary or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[f"rows.{key}"] = _text(value)
        elif key in ("observation_end", "merge", "week_start", "include_first_transaction"):
            values[f"summary.{key}"] = _text(value)
    values.update({f"version.{k}": v for k, v in _versions().items()})
    metrics, skipped = _finite(_score_metrics(report))
    name = Path(str(input_path)).stem or "clv-forecast"
    tags = {"command": "score", "time_unit": _text(report.time_unit), "dataset": Path(str(input_path)).name,
            "reliable": "false" if problems else "true"}
    if problems:
        tags["problems"] = "; ".join(problems)[:5000]
    if failed:
        tags["failure"] = "too many rejects (max_reject_share); scores not written"
    if skipped:
        tags["skipped_metrics"] = "; ".join(f"{k}={v}" for k, v in skipped.items())[:5000]
    import time

    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, name, uri or "(default store)")
    run = client.create_run(experiment_id, run_name=_run_name("score", name), tags=tags)
    run_id = run.info.run_id
    status = "FAILED" if failed else "FINISHED"
    try:
        if Path(str(input_path)).exists():
            _log_input(client, run_id, input_path, Path(str(input_path)).name, "scoring")
        now = int(time.time() * 1000)
        items = sorted(values.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=[Param(k, v) for k, v in items[start:start + 100]])
        client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
        if report.rejected and report.rejects is not None and Path(report.rejects).is_file():
            client.log_artifact(run_id, str(report.rejects), artifact_path="rejects")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, status)
    return TrackedScore(run_id=run_id, experiment_id=str(experiment_id), experiment_name=name, status=status)


# -- retention runs ---------------------------------------------------------------------------------


def _define_retention_pyfunc_class(base):
    class RetentionPyfunc(base):
        """Stateless wrapper of a retention model (sBG): ``load_context`` reads the JSON model file artifact
        with ``RetentionModel.load``.

        ``predict(model_input, params)``: ``model_input`` has ``renewals`` (whole numbers >= 0) and optionally
        ``churned`` (0 or 1) and ``customer_id`` (returned unchanged, first); returns p_renew,
        expected_remaining_lifetime, derl and residual_value per row, the
        scores of ``clv-forecast score`` (``clv_forecast.estimators.retention._scoring``). ``params``:
        discount_rate (per period, ``"0.1"``, or with its period, ``"10%/Y"``) and margin (money per period);
        defaults: the logged run's values."""

        _skip_type_hint_validation = True  # (as ClvPyfunc: the logged signature checks the input)

        def load_context(self, context):
            from .estimators.retention._base import RetentionModel

            self._model = RetentionModel.load(context.artifacts["model_file"])
            self._warned = False

        def predict(self, context, model_input, params=None):
            from .estimators.retention._scoring import predict_frame
            from .units import DEFAULT_DISCOUNT_RATE

            _warn_once_if_unreliable(self)
            settings = {"discount_rate": DEFAULT_DISCOUNT_RATE, "margin": 1.0,
                        **{k: v for k, v in (params or {}).items() if v is not None}}
            with _one_line_errors():
                out = predict_frame(self._model, model_input, settings["discount_rate"], float(settings["margin"]))
            return _pass_ids(model_input, out)

    RetentionPyfunc.__module__ = __name__
    RetentionPyfunc.__qualname__ = "RetentionPyfunc"
    return RetentionPyfunc


@dataclass(frozen=True)
class TrackedRetention:
    """Where :func:`log_retention_run` recorded a ``retention`` run: the run, and the pyfunc model of each fit by
    its label (``runs:/<run>/model``; with ``by_cohort`` each cohort's in its own child run); ``status`` FAILED
    for a refused fit (no model logged)."""

    run_id: str
    experiment_id: str
    experiment_name: str
    model_uris: dict
    status: str = "FINISHED"


def _log_retention_model(mlflow, model, folder: Path, discount_rate: str, margin: float):
    """The retention model as a pyfunc carrying its model file (named as a purchase model's, so that
    ``clv-forecast score --model runs:/<run>/model`` finds it); its signature: ``renewals`` (and optional
    ``churned``) in, the scores out, the params ``discount_rate`` and ``margin`` (the run's values)."""
    import numpy as np
    import pandas as pd
    from .estimators.retention._scoring import predict_frame

    folder.mkdir(parents=True, exist_ok=True)
    model_file = model.save(folder / "clv_model.json")
    example = pd.DataFrame({"renewals": np.arange(5, dtype=np.float64)})
    defaults = {"discount_rate": str(discount_rate), "margin": float(margin)}
    # doubles that are whole numbers, optional so that the model's one line names a missing one (see _signature)
    outputs = predict_frame(model, example, discount_rate, margin).columns
    signature = _typed_signature(["renewals", "churned"], outputs, defaults)
    with _no_requirement_check(), _quiet_pyfunc_log():
        return mlflow.pyfunc.log_model(name="model", python_model=str(_CODE / "retention.py"),
                                       artifacts={"model_file": str(model_file)}, signature=signature,
                                       input_example=example, pip_requirements=_requirements())


def _retention_fit_numbers(model, gap: float) -> tuple[dict, dict]:
    """A retention fit's params (its parameters and settings) and metrics (log-likelihood, AIC, BIC, customers,
    the parameters and their standard errors, the mean gap between projected and actual share alive)."""
    res = model.result_
    params = {f"param.{k}": _text(float(v)) for k, v in model.params_.items()}
    params.update({f"estimator.{k}": _text(v) for k, v in model.get_params().items()})
    metrics = {"log_likelihood": res.log_likelihood, "aic": res.aic, "bic": res.bic, "customers": res.n_obs,
               "converged": float(res.converged), "iterations": res.n_iter, "share_alive_mean_abs_gap": gap}
    for k, v in model.params_.items():
        metrics[k], metrics[f"{k}.se"] = float(v), float(res.bse[k])
    metrics.update({k: v for k, v in res.extra.items() if k in ("cohorts", "periods", "starts")})
    return params, metrics


def log_retention_run(fits, *, source, input_kind: str, time_unit, discount_rate, discount_rate_per_period: float,
                      margin: float, projection, plot_png: bytes | None = None, by_cohort: bool = False,
                      settings: dict | None = None, tracking_uri: str | None = None, refused: bool = False,
                      verbatim_csv: bool = False) -> TrackedRetention:
    """Record a ``clv-forecast retention`` run as one MLflow run (experiment: the input file's name).

    ``fits``: one dict per fit, ``label`` (``"pooled"`` or the cohort), ``model`` (fitted), ``gap`` (the mean
    absolute gap between projected and actual share alive, :func:`~clv_forecast.estimators.retention._base.
    share_alive_gap`) and ``kept`` (written: reliable, or kept with ``--save-unreliable``). Params: the model, its
    parameters and settings, the time unit, the discount rate (as given and per period), the margin, the input and
    its SHA-256, ``settings`` (the command's other settings); metrics: :func:`_retention_fit_numbers`; artifacts:
    the projection table (``tables/projection.csv``), the plot (``plots/retention_curve.png``), the model file
    (``retention_model.json``) and the model as a pyfunc (``model``), whose ``predict`` gives the scores of
    ``clv-forecast score``. With ``by_cohort`` the run holds the input, settings, projection and plot, and each
    fitted cohort is a child run with its parameters, metrics, model file and pyfunc. ``refused``: the run ends
    FAILED with what the fits reached and their problems; no model is logged."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from .csv_guard import guard_frame

    uri = resolve_tracking_uri(tracking_uri)
    if uri is not None and uri.lower().startswith(("http://", "https://")):
        _fail_fast_env()
    path = Path(str(source))
    params = {"command": "retention", "model": fits[0]["model"].name, "model.kind": fits[0]["model"].kind,
              "input": str(source), "input_kind": input_kind, "time_unit": _text(time_unit),
              "discount_rate": _text(discount_rate), "discount_rate_per_period": _text(discount_rate_per_period),
              "margin": _text(margin), "by_cohort": _text(by_cohort)}
    params.update({k: _text(v) for k, v in (settings or {}).items()})
    params["input_sha256"] = "not computed: a directory" if path.is_dir() else _sha256(path)
    params.update({f"version.{k}": v for k, v in _versions().items()})
    problems = [f"{f['label']}: {p}" if by_cohort else p for f in fits for p in f["model"].problems_]
    tags = {"command": "retention", "dataset": path.name, "time_unit": _text(time_unit),
            "model_kinds": fits[0]["model"].name, "reliable": "false" if problems else "true"}
    if problems:
        tags["problems"] = "; ".join(problems)[:5000]
    if refused:
        tags["failure"] = "fit refused (not reliable); nothing saved, no model logged"
    name = path.stem or "clv-forecast"
    run_name = _run_name("retention", fits[0]["model"].kind, name)
    restore = _use_tracking_uri(mlflow, uri)
    uris = {}
    try:
        client = MlflowClient()
        experiment_id = _experiment_id(client, name, mlflow.get_tracking_uri())
        with tempfile.TemporaryDirectory(prefix="clv-tracking-") as tmp, \
                mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as active:
            run_id = active.info.run_id
            _log_input(client, run_id, path, path.name, "training", params["input_sha256"])
            files = Path(tmp) / "files"
            (files / "tables").mkdir(parents=True)
            guard_frame(projection.reset_index(drop=True), verbatim_csv)[0].to_csv(
                files / "tables" / "projection.csv", index=False)
            if plot_png is not None:
                (files / "plots").mkdir()
                (files / "plots" / "retention_curve.png").write_bytes(plot_png)
            if problems:
                (files / "problems.txt").write_text("\n".join(problems) + "\n", encoding="utf-8")
            metrics = {}
            if not by_cohort:
                fit_params, metrics = _retention_fit_numbers(fits[0]["model"], fits[0]["gap"])
                params.update(fit_params)
            else:
                metrics = {"cohorts_fitted": len(fits), "cohorts_kept": sum(bool(f["kept"]) for f in fits)}
            mlflow.log_params(params)
            kept_metrics, skipped = _finite(metrics)
            mlflow.log_metrics(kept_metrics)
            if skipped:
                mlflow.set_tag("skipped_metrics", "; ".join(f"{k}={v}" for k, v in skipped.items())[:5000])
            if not by_cohort and fits[0]["kept"] and not refused:
                fits[0]["model"].save(files / "retention_model.json")
            mlflow.log_artifacts(str(files))
            if refused:
                mlflow.end_run(status="FAILED")
            elif not by_cohort:
                if fits[0]["kept"]:
                    _log_retention_model(mlflow, fits[0]["model"], Path(tmp) / "model", discount_rate, margin)
                    uris[fits[0]["label"]] = f"runs:/{run_id}/model"
            else:
                for i, fit in enumerate(fits):  # one child run per cohort: its numbers, model file and pyfunc
                    model = fit["model"]
                    child_tags = {"cohort": str(fit["label"]), "reliable": "false" if model.problems_ else "true",
                                  "command": "retention"}
                    if model.problems_:
                        child_tags["problems"] = "; ".join(model.problems_)[:5000]
                    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{name}: cohort {fit['label']}",
                                          nested=True, tags=child_tags) as child:
                        fit_params, fit_metrics = _retention_fit_numbers(model, fit["gap"])
                        mlflow.log_params({"cohort": str(fit["label"]), **fit_params})
                        mlflow.log_metrics(_finite(fit_metrics)[0])
                        if fit["kept"]:
                            folder = Path(tmp) / f"cohort-{i}"
                            folder.mkdir()
                            mlflow.log_artifact(str(model.save(folder / "retention_model.json")))
                            _log_retention_model(mlflow, model, folder / "model", discount_rate, margin)
                            uris[fit["label"]] = f"runs:/{child.info.run_id}/model"
    finally:
        restore()
    return TrackedRetention(run_id=run_id, experiment_id=str(experiment_id), experiment_name=name, model_uris=uris,
                            status="FAILED" if refused else "FINISHED")
