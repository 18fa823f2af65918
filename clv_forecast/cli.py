"""The ``clv-forecast`` command.

``run``      run an experiment file (default: the CDNOW experiment on the bundled data) and its report;
``fit``      fit a purchase and a spend model on a transaction log; optionally score every customer;
``compare``  backtest the historical CLV formulas and the model on a calibration/holdout split;
``report``   write an experiment's self-contained HTML report;
``score``    score an RFM table or a transaction log with a saved model;
``retention`` contractual retention (sBG) from a cohort table or a log.
Each command's one-line summary in ``clv-forecast --help`` is its ``short_help`` (whole, never cut).

``run``, ``fit``, ``compare`` and ``report`` drive the one pipeline (:func:`clv_forecast.experiment.run`; ``fit``
and ``compare`` build a spec from their options), showing its steps with their timings on a terminal (:func:`_steps`);
each run is logged in MLflow unless ``--no-tracking``. User errors (bad file, column, value or option) print one
line on stderr and exit with code 2, a fit that is not reliable exits with code 3; no traceback. Ctrl-C exits with
130; the console script turns SIGTERM and SIGHUP into the same unwinding (temporary files removed) and exits with
143 / 129.
Every command checks its files together before any work (:func:`clv_forecast._paths.check_paths`).
An error about one argument is rendered with this command's own name for it (``--time-unit``, or
``spec.toml: [summary] key``).

Only click is imported at start-up: ``clv-forecast --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import warnings
from pathlib import Path

import click

from . import engines  # (the engine names: --engine's choices)
from .errors import ClvInputError, IdentificationError, UnreliableFitError, render_text
from .report import accounting_lines, band_line, coverage_line, holdout_line, periods_line, window_lines
from .units import VALUE_DEFAULTS, value_settings_of, value_settings_text

USER_ERRORS = (ClvInputError,)
EXIT_USER_ERROR = 2
EXIT_UNRELIABLE_FIT = 3


@click.group(help="Probabilistic customer-lifetime-value forecasting: a family of purchase models (BG/NBD, Pareto/NBD, "
                  "MBG/NBD, BG/BB, NBD, ...) with a spend model (Gamma-Gamma), and contractual retention (sBG). "
                  "Each command's options: its -h (fit -h).",
             context_settings={"help_option_names": ["-h", "--help"]})  # (-h too, inherited by every command)
@click.version_option(package_name="clv-forecast")
def app() -> None:
    pass


# --------------------------------------------------------------------------------------------
# errors named with this command's own names
# --------------------------------------------------------------------------------------------


def _option_names() -> dict[str, str]:
    """Python argument name -> the current command's option (``time_unit`` -> ``--time-unit``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    names = {p.name: p.opts[0] for p in ctx.command.params if isinstance(p, click.Option) and p.name}
    if "strict_spend" in names:
        names["strict"] = names["strict_spend"]  # GammaGammaModel(strict=...) is ClvModel(strict_spend=...)
    if "transactions" in names:
        names["source"] = names["transactions"]  # the spec's [data] source is the --transactions option
    return names


def _spec_names() -> dict[str, str]:
    """Python argument name -> its key in an experiment file (``[summary] time_unit``)."""
    from .experiment import SCHEMA

    return {key: f"[{section}] {key}" for section, keys in SCHEMA.items() for key in keys}


def _given(argument: str) -> bool:
    """The current command's option for ``argument`` was given on the command line (not its default): an
    error about a value the experiment file set names the file's key, not the option."""
    ctx = click.get_current_context(silent=True)
    option = _option_names().get(argument)
    for param in (ctx.command.params if ctx is not None else ()):
        if param.name and option in param.opts:
            return ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE
    return True


def _unreliable_text(exc, spec_style: bool) -> str:
    """A refused fit's message with this command's names for the settings it mentions: its options, or for a
    command running an experiment file (``spec_style``) the file's keys."""
    template = getattr(exc, "template", None)
    if template is None:  # an IdentificationError: no setting mentioned
        return " ".join(str(exc).split())
    options = _option_names()
    names = {**options, **_spec_names()} if spec_style else options
    return render_text(template, names, "spec" if spec_style else "option")


def _names_errors(spec_file_of=None):
    """Render errors raised inside a command with the command's own names: its options
    (``--time-unit X: ...; give --date-format``) or, for an experiment file, the file, section and key."""

    def rendered(exc: ClvInputError | UnreliableFitError, spec_file: str | None):
        options = _option_names()
        if isinstance(exc, UnreliableFitError):
            return UnreliableFitError(_unreliable_text(exc, spec_style=spec_file_of is not None))
        if spec_file_of is None or (exc.argument in options and _given(exc.argument)):
            return ClvInputError(exc.render(style="option", names=options))
        keys = _spec_names()
        main = keys.get(exc.argument or "")
        if main is not None:
            main = f"{spec_file}: {main}" if spec_file else f"experiment {main}"
        return ClvInputError(exc.render(main, style="spec", names={**options, **keys}))

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except (ClvInputError, UnreliableFitError) as exc:
                if isinstance(exc, ClvInputError) and not exc.mentions:
                    raise
                raise rendered(exc, None if spec_file_of is None else spec_file_of(kwargs)) from None

        return wrapper

    return decorate


# --------------------------------------------------------------------------------------------
# presentation
# --------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _se(value: float) -> str:
    import math

    return f"se {_fmt(value)}" if math.isfinite(value) else "no se"


def _print_model(model, out) -> None:
    frame, stats = model.summary_frame(), model.fit_stats()
    for key, rows in frame.groupby(level="model", sort=False):
        params = "  ".join(f"{name} = {_fmt(row['estimate'])} ({_se(row['std_err'])})"
                           for (_, name), row in rows.iterrows())
        fit = stats[key]
        out(f"{fit['model']:12s} {params}")
        out(f"{'':12s} log-likelihood = {fit['log_likelihood']:.4f}  customers = {fit['customers']:,.0f}  "
            f"converged = {fit['converged']}" + ("" if fit["converged"] and not fit["problems"]
                                                 else f" ({fit['iterations']} iterations)"))
        if "spend_frequency_correlation" in fit:
            out(f"{'':12s} correlation(frequency, spend) = {fit['spend_frequency_correlation']:.3f} "
                f"(the {fit['model']} model assumes 0)")


def _boundary_line(model, out) -> None:
    """The one line saying that the purchase part is the nested model of a boundary (nothing otherwise)."""
    line = model.boundary_line() if hasattr(model, "boundary_line") else None
    if line:
        out(line)


def _spend_skipped_line(model) -> str | None:
    """The one line saying that the spend model asked for was not fitted because the data have no amounts
    (None when it was fitted, or when none was asked for), with this command's names for the fix."""
    if model is None or model.spend_ is not None or model.spend is None:
        return None
    spend = model.spend
    if isinstance(spend, str):
        from .estimators import get

        spend = get(spend, "spend")
    text = (f"spend model ({spend.name}) skipped: the data have no amounts (give {{{{amount_col}}}}, or "
            "{{quantity_col}} and {{price_col}}); expected purchases and P(alive) only, no spend and no CLV")
    return render_text(text, {**_spec_names(), **_option_names()}, "option")


def _boundary_json(model) -> dict | None:
    """``--json``'s ``boundary`` object: the model asked for, the boundary, the reason and the model fitted."""
    b = getattr(model, "boundary_", None)
    if not b:
        return None
    return {"requested": b["kind"], "requested_name": b["name"], "boundary": b["boundary"], "reason": b["reason"],
            "fitted": model.purchases_.kind, "fitted_name": model.purchases_.name, "line": model.boundary_line()}


def _selection_json(model) -> dict | None:
    """``--json``'s ``selection`` object (``--purchase-model auto``): the ranking and why the winner won."""
    selection = getattr(model, "selection_", None)
    return None if selection is None else selection.to_dict()


def _selection_table(model, console) -> None:
    """The ranking of ``--purchase-model auto`` as a table, then the line that says why the winner won."""
    from rich.table import Table

    selection = getattr(model, "selection_", None) if model is not None else None
    if selection is None:
        return
    from .estimators.selection import CRITERIA
    from .units import readable_duration

    t = selection.table
    holdout = selection.holdout_duration is not None and "holdout_rmse" in t and t["holdout_rmse"].notna().any()
    table = Table(title=f"purchase models ranked by {CRITERIA[selection.criterion][1]}"
                        + (f", holdout of {readable_duration(selection.holdout_duration, model.time_unit_)}"
                           if holdout else ""))
    columns = [("rank", "rank"), ("model", "model"), ("k", "params"), ("log_likelihood", "log-lik"), ("bic", "BIC")]
    if holdout:
        columns += [("holdout_mae", "holdout MAE"), ("holdout_rmse", "holdout RMSE"),
                    ("holdout_total_error_pct", "total err %"), ("by_frequency_error", "by-freq err")]
    for _, label in columns:
        table.add_column(label, justify="left" if label == "model" else "right", no_wrap=label != "model")
    for kind, row in t.iterrows():
        cells = []
        for key, _ in columns:
            value = row.get(key)
            if key == "rank":
                cells.append("-" if value != value or value is None else f"{value:.0f}")
            elif key == "model":
                cells.append(str(row["model"]) if row["fitted"] == row["model"] else f"{row['model']} -> {row['fitted']}")
            elif key == "k":
                cells.append(f"{value:.0f}")
            elif value is None or value != value:
                cells.append("-")
            else:
                cells.append(f"{value:,.1f}" if key in ("log_likelihood", "aic", "bic") else f"{value:,.4f}"
                             if key != "holdout_total_error_pct" else f"{value:+.1f}")
        table.add_row(*cells)
    console.print(table)
    for kind, row in t.iterrows():
        if row.get("note"):
            console.print(f"  {row['model']}: {row['note']}", markup=False)
    console.print(f"chosen: {selection.reason}", markup=False)


def _model_json(result) -> dict:
    """The JSON object of a run (``--json``), the same keys for a refused fit: ``reliable``, ``problems``,
    the accounting and the values the fit reached (a standard error that is not finite is null)."""
    model, attrs = result.model, dict(result.summary.attrs)
    frame, stats = (model.summary_frame(), model.fit_stats()) if model is not None else (None, {})
    out = {}
    for key, fit in stats.items():
        rows = frame.loc[key]
        out[key] = {**{name: float(v) for name, v in rows["estimate"].items()},
                    "log_likelihood": fit["log_likelihood"], "bse": {n: float(v) for n, v in rows["std_err"].items()},
                    "converged": fit["converged"], "aic": fit["aic"], "bic": fit["bic"],
                    "iterations": fit["iterations"], "problems": fit["problems"]}
        if "spend_frequency_correlation" in fit:
            out[key]["spend_frequency_correlation"] = fit["spend_frequency_correlation"]
    out["n_customers"] = int(len(result.summary))
    out["time_unit"] = model.time_unit_ if model is not None else attrs.get("time_unit")
    out["calibration_end"] = attrs.get("calibration_end")
    out["observation_end"] = attrs.get("observation_end")
    out["accounting"] = {k: v for k, v in attrs.items() if k.startswith(("n_", "return_"))}
    problems = _run_problems(result)
    out["reliable"] = not problems
    out["problems"] = problems
    out["boundary"] = _boundary_json(model)
    out["selection"] = _selection_json(model)
    boot = getattr(model, "bootstrap_", None)
    out["bootstrap"] = None if boot is None else {
        "n_boot": boot.n_boot, "used": boot.n_used, "seed": boot.seed, "failed": dict(boot.failed),
        "on_boundary": dict(boot.on_boundary), "seconds": boot.seconds}
    out["metrics"] = dict(result.metrics)
    if result.spec.get("value") is not None:  # the settings every CLV number of the run depends on
        out["value_settings"] = _run_value_settings(result.spec)
    out["model_path"] = None if result.model_path is None else str(result.model_path)
    out["predictions_path"] = None if result.predictions_path is None else str(result.predictions_path)
    return out


def _run_problems(result) -> list[str]:
    """Why the run's model cannot be trusted (its problems; without a model, why the fit was refused)."""
    if result.model is None:
        return [result.refused] if getattr(result, "refused", None) else []
    return list(getattr(result.model, "problems_", []) or [])


def _run_value_settings(spec: dict) -> dict:
    return value_settings_of(spec.get("value"))


def _check_output(path: Path, what: str = "the model", example: str = "model.json") -> None:
    """Refuse an output path that cannot be written before any work is done (one-line error)."""
    from ._paths import check_writable

    check_writable(path, what, example)


def _check_outputs(spec: dict, save: bool) -> None:
    from .experiment import check_spec_paths

    check_spec_paths(spec, save=save)  # no output may replace an input (or another output): first
    out = spec["output"]
    if save and out.get("model"):
        _check_output(Path(out["model"]))
    if save and out.get("report"):
        report = Path(out["report"])
        if not report.name.lower().endswith((".html", ".htm")):
            raise ClvInputError(f"{report}: the report is an HTML file; give a path ending in .html", argument="report")
        _check_output(report, "the report", "report.html")
    if save and out.get("predictions"):
        engines.get(spec["data"].get("engine", "local")).check_predictions_path(Path(out["predictions"]))


def _report(result, console_print, plain_print) -> None:
    """The text report of a run: accounting, periods, model, holdout, CLV total, files, warnings."""
    rfm, m, model = result.summary, result.metrics, result.model
    spec = result.spec
    plain_print(f"{spec['data']['source'] if spec['data']['source'] != 'cdnow_sample' else 'CDNOW sample (bundled)'}")
    for line in accounting_lines(dict(rfm.attrs), len(rfm)):
        plain_print("  " + line)
    plain_print("  " + periods_line(rfm.attrs, model.time_unit_ if model is not None else rfm.attrs.get("time_unit")))
    if model is not None:
        _boundary_line(model, plain_print)
        _print_model(model, plain_print)
        skipped = _spend_skipped_line(model)
        if skipped:
            plain_print(skipped)
        if getattr(model, "bootstrap_", None) is not None:  # the refits: used, failed, on a boundary
            plain_print(model.bootstrap_.line())
    for problem in _run_problems(result):
        plain_print(f"warning: unreliable fit: {problem}")
    if result.holdout is not None:
        plain_print(holdout_line(m, model.time_unit_))


def _top_table(result, console) -> None:
    from rich.table import Table

    v = result.spec["value"]
    table_in = result.predictions
    if table_in is None or "clv" not in table_in:
        return
    top = table_in.sort_values("clv", ascending=False, na_position="last").head(int(v.get("top") or 10))
    title = f"top {len(top)} customers by CLV ({value_settings_text(_run_value_settings(result.spec))})"
    table = Table(title=title)
    band = "clv_lower" in top.columns
    columns = ["customer", "frequency", "recency", "T", "P(alive)", "E(purchases)", "E(spend)", "CLV"]
    if band:
        columns.append(f"{v['interval']:.0%} interval")
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    for cid, row in top.iterrows():
        cells = [str(cid), f"{row['frequency']:.0f}", f"{row['recency']:.2f}", f"{row['T']:.2f}",
                 f"{row['p_alive']:.3f}", f"{row['expected_purchases']:.2f}", f"{row['expected_spend']:.2f}",
                 f"{row['clv']:.2f}"]
        if band:
            cells.append(f"{row['clv_lower']:.2f} - {row['clv_upper']:.2f}")
        table.add_row(*cells)
    console.print(table)


def _backtest_table(result, console) -> None:
    """The backtest of every method (historical formulas and the model) as one table."""
    from rich.table import Table

    if result.backtest is None:
        return
    metrics = result.backtest.metrics
    from .units import readable_duration

    table = Table(title=f"backtest: each method from the calibration period, scored on the holdout of "
                        f"{readable_duration(result.backtest.horizon)}")
    table.add_column("method")
    for column in metrics.columns:
        table.add_column(column, justify="right")
    from .report import method_label

    for method, row in metrics.iterrows():
        table.add_row(method_label(str(method), result.model), *(f"{v:,.3f}" for v in row))
    console.print(table)


def _guard_line(count: int, echo) -> None:
    """Say how many CSV text cells were written with a leading ' (clv_forecast.csv_guard), if any."""
    if count:
        from .csv_guard import guard_message

        echo(render_text(guard_message(count), _option_names(), "option"))


def _finish(result, console_print, plain_print) -> None:
    m, spec = result.metrics, result.spec
    if "clv_total" in m:
        plain_print(coverage_line(m, spec["value"]))
    if getattr(result, "period_values", None) is not None:  # [value] periods / windows: the windows' totals
        for line in window_lines(result.period_values.attrs["totals"], spec["value"].get("interval")):
            plain_print(line)
    names = _option_names()
    for warning in result.warnings:
        plain_print("warning: " + render_text(getattr(warning, "template", str(warning)), names, "option"))
    if result.predictions_path is not None:
        as_of = spec["output"].get("predictions_as_of")
        n = len(result.predictions) if result.predictions is not None else m.get("n_predictions", 0)
        plain_print(f"per-customer table ({n:,} customers, histories to the "
                    f"{'observation' if as_of == 'observation_end' else 'calibration'} end) written to "
                    f"{result.predictions_path}")
        _guard_line(result.guarded_cells, plain_print)
    if result.model_path is not None:
        plain_print(f"model saved to {result.model_path}")
    if result.report_path is not None:
        plain_print(f"report written to {result.report_path}")


class _Tracking:
    """The MLflow side of a command: off with ``--no-tracking`` (or ``CLV_FORECAST_TRACKING=off``); else the
    server is checked before any work, and the run is logged after it. MLflow is imported only when on."""

    def __init__(self, command: str, tracking_uri: str | None, no_tracking: bool, register_as: str | None) -> None:
        self.command = command
        self.enabled = not no_tracking and os.environ.get("CLV_FORECAST_TRACKING", "").lower() not in ("off", "0", "no")
        self.tracking_uri, self.register_as = tracking_uri, register_as
        if register_as and not self.enabled:
            raise ClvInputError("registering a model needs tracking: drop {{no_tracking}}", argument="register_as",
                                value=register_as)
        if self.enabled:
            from . import tracking

            # MLflow's usage telemetry sends requests off the machine and costs ~0.13 s a run: off unless asked for
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            self.tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
            tracking.check_reachable(self.tracking_uri)  # fails fast, before any work

    def log(self, result, data_path=None):
        """Log a pipeline run (``fit``, ``run``, ``compare``); None when tracking is off."""
        from . import tracking

        return self._guarded(lambda: tracking.log_run(result, command=self.command, tracking_uri=self.tracking_uri,
                                                      register_as=self.register_as, data_path=data_path))

    def log_score(self, report, params: dict, input_path, failed: bool = False):
        """Log a ``score`` run (:func:`clv_forecast.tracking.log_score_run`); None when tracking is off."""
        from . import tracking

        return self._guarded(lambda: tracking.log_score_run(report, params=params, input_path=input_path,
                                                            tracking_uri=self.tracking_uri, failed=failed))

    def _guarded(self, log):
        """Call ``log()`` with MLflow's loggers quieted; MLflow's own failures become one line."""
        global _TRACKED
        if not self.enabled:
            return None
        import logging

        import mlflow  # noqa: F401 - configures its loggers on import; then quiet them

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not ours to print
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("mlflow."):
                logging.getLogger(name).setLevel(logging.WARNING)
        try:
            tracked = log()
        except ClvInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow's own failures (server gone, bad name): one line
            if type(exc).__module__.split(".")[0] != "mlflow":
                raise
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise ClvInputError(f"MLflow ({self.tracking_uri or 'local store'}): {text[:300]}; the run's files are "
                                "written; {{no_tracking}} skips tracking") from None
        _TRACKED = True
        return tracked


_TRACKED = False  # a run was logged: the console script freezes the heap before exiting (see console_main)


def _mlflow_json(tracked) -> dict:
    """Where a run was logged, for ``--json``: the same keys for a refused fit (status FAILED, no model)."""
    return {"run_id": tracked.run_id, "experiment": tracked.experiment_name, "model_uri": tracked.model_uri,
            "registered_version": tracked.registered_version, "status": tracked.status}


def _tracked_line(tracked) -> str:
    text = f"tracked in MLflow: experiment {tracked.experiment_name!r}, run {tracked.run_id} " + (
        f"(model {tracked.model_uri})" if tracked.model_uri else "(no model logged: no model file may hold it)")
    if tracked.registered_version is not None:
        text += f"; registered as version {tracked.registered_version}"
    return text


def _is_terminal() -> bool:
    """The one test of whether a person watches: standard output is a terminal (not a pipe, a file or a test
    runner's capture). Progress (``score``'s bar, the steps of ``run``/``fit``/``compare``) is shown only then."""
    return sys.stdout.isatty()


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=None if _is_terminal() else 120)


def _no_step(name: str) -> None:
    """The step callback when no progress is shown."""


@contextlib.contextmanager
def _steps(quiet: bool = False):
    """The steps of a long command with their timings, on a terminal: yields ``step(name)``, which starts a step
    and ends the one before; the running step has a spinner, each finished one is printed with its seconds.
    On a pipe or when ``quiet`` (``--json``: standard output stays pure JSON) ``step`` does nothing."""
    if quiet or not _is_terminal():
        yield _no_step
        return
    import time

    from rich.live import Live
    from rich.spinner import Spinner

    console = _console()
    spinner = Spinner("dots", text="starting ...", style="status.spinner")
    current: dict = {}  # the running step: its name and start

    def finish() -> None:
        if current:
            seconds = time.perf_counter() - current.pop("start")
            console.print(f"  {current.pop('name')}: {seconds:.1f} s", style="dim", markup=False, highlight=False)

    def step(name: str) -> None:
        finish()
        current.update(name=name, start=time.perf_counter())
        spinner.update(text=f"{name} ...")

    # (standard error is not redirected into the display: warnings and errors stay on their stream)
    with Live(spinner, console=console, transient=True, refresh_per_second=12.5, redirect_stderr=False):
        try:
            yield step
        except BaseException:
            current.clear()  # a failed step is not printed as done: its error follows on stderr
            raise
        finish()


def _report_refused(exc, *, as_json: bool, tracker: "_Tracking | None", data_path, spec_style: bool) -> None:
    """What a refused fit still gives (``exc.result``, see :func:`clv_forecast.experiment.run`): the row
    accounting, the values the fit reached and its problems on stdout (or ``--json``: the object of a fit,
    ``"reliable": false``), and an MLflow run with status FAILED. The caller then re-raises ``exc``: its one
    line, naming the options that may help, goes to stderr and the exit code is 3."""
    result = getattr(exc, "result", None)
    if result is None:
        return
    tracked = None if tracker is None else tracker.log(result, data_path)
    if as_json:
        from .model import json_safe

        data = _model_json(result)
        data["error"] = _unreliable_text(exc, spec_style)
        if tracked is not None:
            data["mlflow"] = _mlflow_json(tracked)
        click.echo(json.dumps(json_safe(data), allow_nan=False))
        return
    console = _console()

    def plain(text: str) -> None:
        console.print(text, markup=False)

    _report(result, console.print, plain)
    _finish(result, console.print, plain)
    if tracked is not None:
        plain(f"tracked in MLflow ({tracked.status}): experiment {tracked.experiment_name!r}, run {tracked.run_id}")


def _execute(spec: dict, *, save: bool, as_json: bool, top_table: bool, tracker: "_Tracking | None" = None,
             spec_style: bool = False) -> None:
    from .experiment import run as run_pipeline

    _check_outputs(spec, save)
    refused = tracked = None
    with _steps(quiet=as_json) as step:
        try:
            result = run_pipeline(spec, save=save, on_step=step)
        except IdentificationError as exc:  # a refused fit: reported (after the steps), then exit 3
            refused = exc
        else:
            tracked = _log_run(tracker, result, _data_path(spec), step)
    if refused is not None:
        _report_refused(refused, as_json=as_json, tracker=tracker, data_path=_data_path(spec), spec_style=spec_style)
        raise refused
    if as_json:
        from .model import json_safe

        data = _model_json(result)
        if tracked is not None:
            data["mlflow"] = _mlflow_json(tracked)
        click.echo(json.dumps(json_safe(data), allow_nan=False))
        return
    console = _console()

    def plain(text: str) -> None:
        console.print(text, markup=False)

    _report(result, console.print, plain)
    _selection_table(result.model, console)
    _backtest_table(result, console)
    if top_table:
        _top_table(result, console)
    _finish(result, console.print, plain)
    if tracked is not None:
        plain(_tracked_line(tracked))


def _log_run(tracker: "_Tracking | None", result, data_path, step=_no_step):
    """The run logged in MLflow (None when tracking is off), as a step of the progress display."""
    if tracker is None or not tracker.enabled:
        return None
    step("logging the run in MLflow")
    return tracker.log(result, data_path)


def _data_path(spec: dict) -> str | None:
    source = spec["data"]["source"]
    return None if source == "cdnow_sample" else str(source)


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------


def _with(options):
    """Apply a list of click options to a command, in the listed order."""

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


# how a transaction log is read (fit, compare, and score --transactions)
_READ_OPTIONS = [
    click.option("--customer-col", "customer_col", default="customer_id", show_default=True,
                 help="Customer id column."),
    click.option("--date-col", "date_col", default="date", show_default=True, help="Timestamp column."),
    click.option("--amount-col", "amount_col", default=None,
                 help="Amount column (omit, and give no quantity/price: no spend model)."),
    click.option("--quantity-col", "quantity_col", default=None,
                 help="Quantity column: amount = quantity x unit price (with --price-col)."),
    click.option("--price-col", "price_col", default=None, help="Unit price column (with --quantity-col)."),
    click.option("--date-format", "date_format", default=None,
                 help="strftime format of the dates, for the data and the period ends, e.g. '%d/%m/%Y %H:%M'."),
    click.option("--encoding", default="utf-8", show_default=True,
                 help="Text encoding of a CSV file (latin-1, cp1252, ...)."),
    click.option("--decimal-comma", "decimal_comma", is_flag=True, help="Amounts use a decimal comma (1.234,56)."),
    click.option("--missing-customer", "missing_customer", type=click.Choice(["error", "drop"]),
                 default="error", show_default=True, help="Rows without a customer id: error, or drop and count."),
    click.option("--duplicates", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
                 help="Exact duplicate rows: keep or drop (counted either way)."),
    click.option("--returns", type=click.Choice(["drop", "net", "error"]), default=None,
                 help="Negative amounts: drop (not purchases; reported), net against the customer's "
                      "latest earlier purchase, or error [net with --quantity-col/--price-col, else drop]."),
]

_OBSERVATION_END_OPTION = click.option(
    "--observation-end", "observation_end", default=None,
    help="Last day of the data to use (default: the last transaction).")

# how a log is summarised for a fit
_TIME_UNIT_OPTION = click.option("--time-unit", "--freq", "time_unit", default="W", show_default=True,
                                 help="Time unit of the model: D, W, M, Y or a multiple (2W).")

_SUMMARY_OPTIONS = [
    _TIME_UNIT_OPTION,
    click.option("--merge", default="D", show_default=True,
                 help="Purchases within this resolution are one (D, h, W...), or 'exact'."),
    click.option("--week-start", "week_start", default="MON", show_default=True,
                 help="First day of a week when merging by weeks (MON..SUN)."),
    click.option("--calibration-end", "calibration_end", default=None,
                 help="Last day of the calibration period (ISO, or in --date-format); later data is the holdout."),
    _OBSERVATION_END_OPTION,
    click.option("--include-first-transaction", "include_first_transaction", is_flag=True,
                 help="Monetary value includes the first purchase."),
]

_DATA_OPTIONS = [
    click.option("--transactions", "-t", required=True, type=click.Path(path_type=Path),
                 help="Transaction log: CSV (.csv, .txt, .csv.gz) or Parquet."),
    *_READ_OPTIONS,
    *_SUMMARY_OPTIONS,
]

_ENGINE_OPTIONS = [
    click.option("--engine", type=click.Choice(engines.available()), default="local", show_default=True,
                 help="local: one machine; spark: summary on Spark executors (Parquet file or directory), fit on "
                      "the driver, --predictions written as a Parquet directory."),
    click.option("--spark-master", "spark_master", default=None,
                 help="Spark master URL for --engine spark [the active session, else local[*]]."),
    click.option("--spark-remote", "spark_remote", default=None, metavar="sc://HOST:PORT",
                 help="Spark Connect server for --engine spark, instead of --spark-master."),
]

_SAVE_UNRELIABLE_OPTION = click.option(
    "--save-unreliable", "save_unreliable", is_flag=True,
    help="Keep the model even if the fit did not converge or is not identified (saved, used and labelled "
         "unreliable; default: refused, exit 3).")

_OUTPUT_OPTIONS = [
    click.option("--predictions", default=None, type=click.Path(path_type=Path),
                 help="Write the per-customer table (expected purchases, P(alive), expected spend, CLV, "
                      "interval) to this .csv or .parquet file."),
    _SAVE_UNRELIABLE_OPTION,
    click.option("--as-of", "predictions_as_of", type=click.Choice(["calibration-end", "observation-end"]),
                 default=None, help="Score the customers of the fit with histories to the calibration end "
                                    "(default), or every customer with histories to the observation end."),
]

_VERBATIM_OPTION = click.option(
    "--verbatim-csv", "verbatim_csv", is_flag=True,
    help="Write CSV text cells starting with = + - @ (tab, CR) as they are; default: with a leading ' "
         "(spreadsheet formula guard). Parquet is never altered.")

# the currency of the amounts, for the report's money labels (run, report, compare --output)
_CURRENCY_OPTION = click.option(
    "--currency", default=None, metavar="CODE",
    help="Currency of the amounts, a code or a symbol (EUR, €): the report labels money with it [money units].")


def _check_currency(value) -> None:
    from .report import check_currency

    check_currency(value)


_RUN_TRACKING_OPTIONS = [
    click.option("--tracking-uri", "tracking_uri", default=None,
                 help="MLflow tracking server or store [$MLFLOW_TRACKING_URI, else ./mlflow.db]."),
    click.option("--no-tracking", "no_tracking", is_flag=True, help="Do not log this run in MLflow."),
]

_TRACKING_OPTIONS = [
    *_RUN_TRACKING_OPTIONS,
    click.option("--register-as", "register_as", default=None,
                 help="Register the logged model under this name (models:/NAME/1)."),
]

def _model_help(role: str) -> str:
    from .estimators import available  # lists the estimators/<role>/ modules; imports none

    return ", ".join(available(role))


# the model's settings (fit, compare, report)
_MODEL_OPTIONS = [
    click.option("--purchase-model", "purchases", default="bgnbd", show_default=True,
                 help=f"Purchase model: {_model_help('purchases')}; or auto: fit every one and keep the best "
                      "(holdout RMSE with a calibration end, else BIC; the ranking is printed)."),
    click.option("--spend-model", "spend", default="gamma_gamma", show_default=True,
                 help=f"Spend model: {_model_help('spend')}, or none."),
    click.option("--model-setting", "model_settings", multiple=True, metavar="ROLE__NAME=VALUE",
                 help="A setting of the purchase or spend model, e.g. purchases__maxiter=300 or "
                      "spend__strict=true (repeatable; VALUE read as a TOML value, else as text)."),
    click.option("--on-boundary", "on_boundary", default="nested", show_default=True,
                 type=click.Choice(["nested", "refuse"]),
                 help="When the purchase model's maximum is on a boundary that is a simpler model (BG/NBD: a -> 0 "
                      "is the NBD without dropout): nested fits and labels that model, refuse exits 3."),
    click.option("--penalizer", default=0.0, type=float, show_default=True,
                 help="L2 penalty of the purchase model's fit (on unit-free quantities)."),
    click.option("--spend-penalizer", "spend_penalizer", default=0.0, type=float, show_default=True,
                 help="L2 penalty of the spend model's fit (on unit-free quantities)."),
    click.option("--strict-spend", "strict_spend", is_flag=True,
                 help="Error (not warning) on repeat buyers with a non-positive mean spend."),
]


def _nest_model_settings(options: dict, model_settings) -> None:
    """``--model-setting purchases__maxiter=300`` into the spec's ``[model.purchases]`` table (in ``options``)."""
    import tomllib

    tables: dict[str, dict] = {}
    for item in model_settings:
        key, sep, text = item.partition("=")
        role, sep2, name = key.strip().partition("__")
        if not sep or not sep2 or role not in ("purchases", "spend") or not name:
            raise ClvInputError("must be purchases__NAME=VALUE or spend__NAME=VALUE", argument="model_settings",
                                value=item)
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        tables.setdefault(role, {})[name] = value
    for role, table in tables.items():
        current = options.get(role)
        options[role] = ({**current, **table} if isinstance(current, dict) else
                         {"kind": current or ("bgnbd" if role == "purchases" else "gamma_gamma"), **table})


_VALUE_OPTIONS = [
    click.option("--horizon", default=None, help=f"CLV horizon with its unit [{VALUE_DEFAULTS['horizon']}]."),
    click.option("--step", default=None, help=f"Discounting step [{VALUE_DEFAULTS['step']}]."),
    click.option("--discount-rate", "discount_rate", default=None,
                 help=f"Discount rate with its period [{VALUE_DEFAULTS['discount_rate']}]."),
    click.option("--margin", default=None, type=float,
                 help=f"Share of revenue kept as profit [{VALUE_DEFAULTS['margin']}]."),
    click.option("--interval", default=None, type=float,
                 help="Interval level of every forecast and band of the totals, e.g. 0.9 [none]."),
    click.option("--interval-method", "interval_method", default=None,
                 type=click.Choice(["delta", "draws", "bootstrap"]),
                 help="How the intervals are computed: delta (the delta method, fast), draws (200 parameter "
                      "draws) or bootstrap (refits on resamples of the customers: --bootstrap N, default 200) "
                      "[delta]."),
]

_PERIOD_OPTIONS = [
    click.option("--periods", default=None,
                 help="Value by period (M, Q, Y or a duration) up to --horizon, computed for the customers of the "
                      "fit [none]."),
    click.option("--windows", default=None,
                 help="Value by window, e.g. 0-1Y,1-3Y,3-5Y: each window's total expected purchases and value "
                      "(with its band under --interval) [none]."),
]


def _as_of(value):
    return None if value is None else value.replace("-", "_")


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


@app.command(short_help="Fit a purchase and a spend model on a transaction log.")
@_with(_DATA_OPTIONS + _ENGINE_OPTIONS + _MODEL_OPTIONS)
@_with(_OUTPUT_OPTIONS + _VALUE_OPTIONS + _PERIOD_OPTIONS + _TRACKING_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--output", "model", default=None, type=click.Path(path_type=Path),
              help="Save the fitted model (JSON) here.")
@click.option("--bootstrap", "bootstrap", default=None, type=int, metavar="N",
              help="Refit both models on N resamples of the customers and save the refitted parameters with the "
                   "model, for --interval-method bootstrap (here and in score) [none].")
@_VERBATIM_OPTION
@_names_errors()
def fit(transactions, as_json, model, predictions, predictions_as_of, horizon, step, discount_rate, margin,
        interval, save_unreliable, tracking_uri, no_tracking, register_as, model_settings=(), **options) -> None:
    """Fit a purchase model and a spend model (default BG/NBD and Gamma-Gamma) on a transaction log; print
    parameters, standard errors, log-likelihoods, where every input row went, and optionally the per-customer
    table."""
    from .experiment import spec_from_options

    _nest_model_settings(options, model_settings)
    spec = spec_from_options(
        transactions=transactions, model=None if model is None else str(model),
        predictions=None if predictions is None else str(predictions),
        predictions_as_of=_as_of(predictions_as_of), save_unreliable=save_unreliable or None,
        horizon=horizon, step=step, discount_rate=discount_rate, margin=margin, interval=interval, **options,
    )
    if predictions is None and options.get("periods") is None and options.get("windows") is None:
        spec["value"] = None  # no per-customer table nor periods asked for: fit only
    tracker = _Tracking("fit", tracking_uri, no_tracking, register_as)
    _execute(spec, save=True, as_json=as_json, top_table=False, tracker=tracker)


@app.command(short_help="Run an experiment file (default: the CDNOW sample).")
@click.option("--experiment", default=None, type=click.Path(path_type=Path),
              help="Experiment file (TOML); default: the CDNOW experiment on the bundled sample.")
@click.option("--output", "model", default=None, type=click.Path(path_type=Path),
              help="Where to save the fitted model (overrides the experiment's [output] model).")
@click.option("--no-save", is_flag=True, help="Write no files.")
@_with(_OUTPUT_OPTIONS + _TRACKING_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_VERBATIM_OPTION
@_CURRENCY_OPTION
@_names_errors(spec_file_of=lambda kwargs: None if kwargs.get("experiment") is None else str(kwargs["experiment"]))
def run(experiment, model, no_save, predictions, predictions_as_of, save_unreliable, tracking_uri, no_tracking,
        register_as, as_json, verbatim_csv=False, currency=None) -> None:
    """Run an experiment (default: BG/NBD + Gamma-Gamma on the bundled CDNOW sample) and print a summary."""
    from .experiment import load_spec

    _check_currency(currency)
    spec = load_spec(experiment)
    if currency is not None:
        spec["data"]["currency"] = currency
    out = spec["output"]
    if model is not None:
        out["model"] = str(model)
    if predictions is not None:
        out["predictions"] = str(predictions)
    if predictions_as_of is not None:
        out["predictions_as_of"] = _as_of(predictions_as_of)
    if save_unreliable:
        out["save_unreliable"] = True
    if verbatim_csv:
        out["verbatim_csv"] = True
    tracker = _Tracking("run", tracking_uri, no_tracking, register_as)
    if not as_json:
        click.echo(f"experiment {spec['name']}")
    _execute(spec, save=not no_save, as_json=as_json, top_table=True, tracker=tracker, spec_style=True)


@app.command(short_help="Write an experiment's self-contained HTML report.")
@click.option("--experiment", default=None, type=click.Path(path_type=Path),
              help="Experiment file (TOML); default: the CDNOW experiment on the bundled sample.")
@click.option("--output", "report", default=None, type=click.Path(path_type=Path),
              help="The HTML file to write (default: the experiment's [output] report, else reports/NAME.html).")
@_with([_TIME_UNIT_OPTION, *_MODEL_OPTIONS, _SAVE_UNRELIABLE_OPTION, _CURRENCY_OPTION])
@_names_errors(spec_file_of=lambda kwargs: None if kwargs.get("experiment") is None else str(kwargs["experiment"]))
def report(experiment, report, model_settings=(), **overrides) -> None:
    """Run an experiment and write its self-contained HTML report (parameters, backtest, plots, segments,
    top customers); nothing else is saved. The model options given here override the experiment's."""
    from .experiment import load_spec, run as run_pipeline

    _check_currency(overrides.get("currency"))
    spec = load_spec(experiment)
    target = Path(report) if report is not None else Path(spec["output"].get("report")
                                                           or f"reports/{spec['name'] or 'report'}.html")
    spec["output"].update(report=str(target), model=None, predictions=None)
    _override_spec(spec, overrides)
    _nest_model_settings(spec["model"], model_settings)
    _check_outputs(spec, True)
    refused = None
    with _steps() as step:
        try:
            result = run_pipeline(spec, save=True, on_step=step)
        except IdentificationError as exc:  # a refused fit: reported (after the steps), then exit 3
            refused = exc
    if refused is not None:
        _report_refused(refused, as_json=False, tracker=None, data_path=None, spec_style=True)
        raise refused
    _boundary_line(result.model, click.echo)
    for text in result.model.problems_:
        click.echo(f"warning: unreliable fit: {text}")
    click.echo(f"report written to {result.report_path}")


def _override_spec(spec: dict, options: dict) -> None:
    """Put the options given on the command line (not their defaults) into the spec's sections."""
    from .experiment import SCHEMA

    ctx = click.get_current_context()
    owners = {key: section for section, keys in SCHEMA.items() for key in keys}
    for key, value in options.items():
        if ctx.get_parameter_source(key) == click.core.ParameterSource.COMMANDLINE:
            spec[owners[key]][key] = value


@app.command(short_help="Backtest the historical formulas and the models.")
@_with(_DATA_OPTIONS + _MODEL_OPTIONS + [_SAVE_UNRELIABLE_OPTION])
@_with(_VALUE_OPTIONS + _TRACKING_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: the metrics of every method.")
@click.option("--output", "output_dir", default=None, type=click.Path(path_type=Path),
              help="Write the tables (CSV and Parquet), the plots (PNG) and the report (HTML) into this new folder.")
@_VERBATIM_OPTION
@_CURRENCY_OPTION
@_names_errors()
def compare(transactions, as_json, output_dir, horizon, step, discount_rate, margin, interval, tracking_uri,
            no_tracking, register_as, save_unreliable, **options) -> None:
    """Backtest the historical CLV formulas and the predictive model: every method computed on the calibration
    period, scored against what each customer really spent in the holdout (needs --calibration-end)."""
    from .experiment import analyse_run, check_spec_paths, run as run_pipeline, spec_from_options, write_analysis

    _nest_model_settings(options, options.pop("model_settings", ()))
    _check_currency(options.get("currency"))
    if options.get("calibration_end") is None:
        raise ClvInputError("the backtest needs a holdout: give {{calibration_end}} (e.g. 1997-09-30)")
    if options.get("amount_col") is None and options.get("quantity_col") is None:
        raise ClvInputError("the comparison is about money: give {{amount_col}} (or {{quantity_col}} and "
                            "{{price_col}})")
    spec = spec_from_options(transactions=transactions, horizon=horizon, step=step, discount_rate=discount_rate,
                             margin=margin, interval=interval, save_unreliable=save_unreliable or None, **options)
    check_spec_paths(spec, save=False, output_dir=output_dir)
    if output_dir is not None and output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise ClvInputError(f"{output_dir}: exists and is not an empty folder; give a new folder for the results")
    tracker = _Tracking("compare", tracking_uri, no_tracking, register_as)
    refused = None
    with _steps(quiet=as_json) as step:
        try:
            result = analyse_run(run_pipeline(spec, save=False, on_step=step), transactions, on_step=step)
        except IdentificationError as exc:  # a refused fit: reported (after the steps), then exit 3
            refused = exc
        else:
            if result.backtest is None:
                raise ClvInputError("no backtest: the summary has no holdout spend (give {{amount_col}})")
            if output_dir is not None:
                step("writing the tables, plots and report")
                write_analysis(result, output_dir)
            tracked = _log_run(tracker, result, str(transactions), step)
    if refused is not None:
        _report_refused(refused, as_json=as_json, tracker=tracker, data_path=str(transactions), spec_style=False)
        raise refused
    if as_json:
        data = result.backtest.to_dict()
        data["reliable"], data["problems"] = not _run_problems(result), _run_problems(result)
        data["boundary"] = _boundary_json(result.model)
        data["selection"] = _selection_json(result.model)
        data["warnings"] = [render_text(getattr(w, "template", str(w)), _option_names(), "option") for w in result.warnings]
        data["value_settings"] = _run_value_settings(result.spec)
        if "clv_total" in result.metrics:
            data["clv_total"] = result.metrics["clv_total"]
        if tracked is not None:
            data["mlflow"] = {"run_id": tracked.run_id, "experiment": tracked.experiment_name}
        from .model import json_safe

        click.echo(json.dumps(json_safe(data), allow_nan=False))
        return
    console = _console()
    rfm = result.summary
    for line in accounting_lines(dict(rfm.attrs), len(rfm)):
        console.print(line, markup=False)
    console.print(periods_line(rfm.attrs, result.model.time_unit_), markup=False)
    _boundary_line(result.model, lambda text: console.print(text, markup=False))
    for problem in _run_problems(result):  # a model kept with --save-unreliable: its numbers are labelled
        console.print(f"warning: unreliable fit: {problem}", markup=False)
    _selection_table(result.model, console)
    _backtest_table(result, console)
    if "clv_total" in result.metrics:
        console.print(coverage_line(result.metrics, result.spec["value"]), markup=False)
    for warning in result.warnings:
        console.print("warning: " + render_text(getattr(warning, "template", str(warning)), _option_names(), "option"),
                      markup=False)
    if output_dir is not None:
        console.print(f"tables, plots and report written to {output_dir}", markup=False)
        _guard_line(result.guarded_cells, lambda text: console.print(text, markup=False))
    if tracked is not None:
        console.print(_tracked_line(tracked), markup=False)


# --------------------------------------------------------------------------------------------
# score: streaming batch scoring of an RFM table or a transaction log (clv_forecast.scoring)
# --------------------------------------------------------------------------------------------

EXIT_TOO_MANY_REJECTS = 4


@app.command(short_help="Score customers with a saved model, batch by batch.")
@click.option("--model", "model", required=True,
              help="Model JSON file, or an MLflow URI (runs:/<run>/model, models:/NAME@champion).")
@click.option("--input", "input_path", default=None, type=click.Path(path_type=Path),
              help="RFM table, .csv or .parquet: id, frequency, recency, T, monetary_value (or --transactions); "
                   "for a retention model: id, renewals and optionally churned.")
@click.option("--transactions", "-t", "transactions", default=None, type=click.Path(path_type=Path),
              help="A transaction log instead of --input: summarised with the model's settings, then scored.")
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path),
              help="Scores, .csv or .parquet (written to a temporary file renamed at the end).")
@click.option("--horizon", default=VALUE_DEFAULTS["horizon"], show_default=True, help="CLV horizon with its unit.")
@click.option("--discount-rate", "discount_rate", default=VALUE_DEFAULTS["discount_rate"], show_default=True,
              help="Discount rate with its period, e.g. 10%/Y (a retention model: or a number per period).")
@click.option("--step", default=VALUE_DEFAULTS["step"], show_default=True, help="Discounting step.")
@click.option("--margin", default=VALUE_DEFAULTS["margin"], type=float, show_default=True,
              help="Share of revenue kept as profit (a retention model: money a customer leaves per period).")
@click.option("--interval", default=None, type=float,
              help="Interval level of every forecast and band of the totals, e.g. 0.9 [none].")
@click.option("--interval-method", "interval_method", default="delta",
              type=click.Choice(["delta", "draws", "bootstrap"]), show_default=True,
              help="How the intervals are computed: delta (the delta method), draws (200 parameter draws) or "
                   "bootstrap (the refits saved in the model file by fit --bootstrap N).")
@click.option("--periods", "period", default=None,
              help="Value by period: the expected purchases and value of every period (M, Q, Y or a duration) up to "
                   "--horizon, one column each (a wide table) [none].")
@click.option("--windows", default=None,
              help="Value by window, e.g. 0-1Y,1-3Y,3-5Y: the expected purchases and value of each span of the "
                   "horizon, one column each [none].")
@click.option("--residual", is_flag=True,
              help="With --periods or --windows: also the value beyond --horizon, to infinity, with the same steps "
                   "and discount rate (columns residual_purchases, residual_value).")
@click.option("--id-col", "id_col", default="customer_id", show_default=True,
              help="Customer id column of the --input table.")
@click.option("--spend-col", "spend_col", default=None,
              help="Column of the --input table with each customer's known spend per future purchase: the CLV "
                   "uses it instead of the spend model, so monetary_value (and a spend model) is not needed [none].")
@click.option("--rejects", "rejects_path", default=None, type=click.Path(path_type=Path),
              help="Rejected rows with their reason [OUTPUT.rejects.csv].")
@click.option("--max-reject-share", "max_reject_share", default=0.01, type=float, show_default=True,
              help="Fail (output not written, exit 4) when more rows than this share are rejected.")
@click.option("--allow-unreliable", "allow_unreliable", is_flag=True,
              help="Score with a model whose fit is not reliable (\"reliable\": false in its file); refused "
                   "otherwise.")
@click.option("--batch-rows", "batch_rows", default=1_000_000, type=click.IntRange(min=1), show_default=True,
              help="Rows read and scored at a time (bounds the memory).")
@click.option("--time-unit", "time_unit", default=None,
              help="Unit of recency and T in the --input table when not the model's (converted) [the model's].")
@click.option("--engine", type=click.Choice(engines.available()), default="local", show_default=True,
              help="spark: Parquet file or directory in, Parquet directories out (scores, OUTPUT.rejects).")
@click.option("--spark-master", "spark_master", default=None,
              help="Spark master URL (--engine spark) [local[*]].")
@click.option("--spark-remote", "spark_remote", default=None, metavar="sc://HOST:PORT",
              help="Spark Connect server (--engine spark), instead of --spark-master.")
@click.option("--spark-conf", "spark_conf", multiple=True, metavar="KEY=VALUE",
              help="Spark setting, repeatable (--engine spark), e.g. spark.driver.memory=2g.")
@_with([_OBSERVATION_END_OPTION, *_READ_OPTIONS, *_RUN_TRACKING_OPTIONS])
@_VERBATIM_OPTION
@_names_errors()
def score(model, input_path, transactions, output_path, horizon, discount_rate, step, margin, interval,
          interval_method, period, windows, residual, id_col, spend_col,
          rejects_path, max_reject_share, allow_unreliable, batch_rows, time_unit, engine, spark_master, spark_conf,
          spark_remote, tracking_uri, no_tracking, verbatim_csv=False, **read):
    """Score an RFM table (--input) or a transaction log (--transactions) with a saved model, batch by
    batch, into a CSV or Parquet file; the run is logged in MLflow unless --no-tracking.

    Rows that break the RFM rules, lack an id or repeat one are written to the rejects file with
    their row number and reason. A log is summarised first (the model's time unit, merge resolution,
    week start and first-purchase setting; up to --observation-end, default its last transaction) and
    where every log row went is printed. A retention model (clv-forecast retention --save-model) scores a
    table of customers and their renewals: p_renew, expected_remaining_lifetime, derl, residual_value."""
    from .scoring import TooManyRejectsError

    if (input_path is None) == (transactions is None):
        raise ClvInputError("give either {{input_path}} (an RFM table) or {{transactions}} (a transaction log)"
                            + (", not both" if input_path is not None else ""))
    _refuse_unused(tuple(read) if input_path is not None else ("time_unit", "id_col", "spend_col"),
                   "{{input_path}}" if input_path is not None else "{{transactions}}")
    server = None
    if tracking_uri is not None and str(model).startswith(("runs:/", "models:/")):
        from . import tracking

        server = tracking.resolve_tracking_uri(tracking_uri)  # the model comes from there, tracked or not
    with _model_server(server):
        retention_model = _retention_model_of(model)
    if retention_model is not None:  # a contractual model (sBG): its own table and scores
        return _score_retention(retention_model, model=model, input_path=input_path, transactions=transactions,
                                output_path=output_path, discount_rate=discount_rate, margin=margin, id_col=id_col,
                                rejects_path=rejects_path, max_reject_share=max_reject_share,
                                allow_unreliable=allow_unreliable, engine=engine,
                                specific=dict(batch_rows=batch_rows, verbatim_csv=verbatim_csv,
                                              spark_master=spark_master, spark_conf=spark_conf,
                                              spark_remote=spark_remote),
                                tracking_uri=tracking_uri, no_tracking=no_tracking)
    tracker = _Tracking("score", tracking_uri, no_tracking, None)
    scorer = engines.get(engine)
    specific = dict(batch_rows=batch_rows, verbatim_csv=verbatim_csv, spark_master=spark_master, spark_conf=spark_conf,
                    spend_col=spend_col, spark_remote=spark_remote)
    _refuse_unused(tuple(k for k in specific if k not in scorer.score_options), f"--engine {scorer.name}")
    args = dict(horizon=horizon, discount_rate=discount_rate, step=step, margin=margin, rejects_path=rejects_path,
                max_reject_share=max_reject_share, interval=interval, allow_unreliable=allow_unreliable,
                **({"interval_method": interval_method} if interval is not None else {}),
                **({"period": period, "windows": windows} if period is not None or windows is not None else {}),
                **({"residual": True} if residual else {}))
    if input_path is not None:
        source, kind, inputs = input_path, "rfm table", dict(id_col=id_col, time_unit=time_unit)
    else:
        source, kind, inputs = transactions, "transaction log", dict(transactions=transactions, read=read)
    run = functools.partial(scorer.score, model, input_path, output_path, **inputs, **args,
                            **{k: specific[k] for k in scorer.score_options})
    params = dict(model=model, input=source, input_kind=kind, output=output_path, **args,
                  **({"batch_rows": batch_rows} if "batch_rows" in scorer.score_options else {}),
                  **({"id_col": id_col, "input_time_unit": time_unit} if input_path is not None else read),
                  **({"spend_col": spend_col} if spend_col is not None else {}))
    failed = None
    try:
        with _model_server(server):
            report = _with_progress(run) if scorer.score_progress else run()
    except TooManyRejectsError as exc:
        failed, report = exc, exc.report
    if report.summary is not None:
        for line in accounting_lines(report.summary, int(report.summary.get("n_customers") or 0)):
            click.echo(line)
        click.echo(periods_line(report.summary, report.time_unit))
    _score_lines(report)
    return _score_end(tracker, report, params, source, failed)


def _score_end(tracker, report, params: dict, source, failed) -> int:
    """The end of a ``score`` run (either kind of model): tracked in MLflow, the output or the error line, the
    exit code."""
    tracked = tracker.log_score(report, params, source, failed=failed is not None)
    if failed is not None:
        if tracked is not None:
            click.echo(f"tracked in MLflow (FAILED): experiment {tracked.experiment_name!r}, run {tracked.run_id}")
        print(f"clv-forecast: error: {failed}", file=sys.stderr)
        return EXIT_TOO_MANY_REJECTS
    rejects = f"; rejected rows in {report.rejects}" if report.rejected else ""
    click.echo(f"scores written to {report.output}{rejects}")
    _guard_line(getattr(report, "guarded_cells", 0), click.echo)
    if tracked is not None:
        click.echo(f"tracked in MLflow: experiment {tracked.experiment_name!r}, run {tracked.run_id}")
    return 0


def _retention_model_of(model):
    """``(RetentionModel, its local file)`` when ``--model`` is a retention model file (or an MLflow model URI
    whose model file is one), else None: a purchase model, or a file the purchase models' path then reports."""
    from ._io import read_model_json
    from .estimators.retention._base import FORMAT, RetentionModel
    from .scoring import _model_file

    path = _model_file(model)
    try:
        doc = read_model_json(path)
    except ClvInputError:
        return None
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT):
        return None
    return RetentionModel.load(path), path


def _score_retention(loaded, *, model, input_path, transactions, output_path, discount_rate, margin, id_col,
                     rejects_path, max_reject_share, allow_unreliable, engine, specific: dict, tracking_uri,
                     no_tracking) -> int:
    """``score`` with a retention model: a table of customers (the id, ``renewals``, optionally ``churned``) scored
    through the engine (:meth:`Engine.score_retention`) with p_renew, expected_remaining_lifetime, derl and
    residual_value; bad rows rejected with their reason as for a purchase model; the run logged in MLflow."""
    from .scoring import TooManyRejectsError

    retention_model, model_file = loaded
    if transactions is not None:
        raise ClvInputError(f"a retention model ({retention_model.name}) scores a table of customers and their "
                            "renewals: give {{input_path}} (the id, renewals and optionally churned), not "
                            "{{transactions}}")
    _refuse_unused(("horizon", "step", "interval", "time_unit", "period", "windows", "residual", "spend_col"),
                   f"a retention model ({retention_model.name})")
    tracker = _Tracking("score", tracking_uri, no_tracking, None)
    scorer = engines.get(engine)
    _refuse_unused(tuple(k for k in specific if k not in scorer.score_options), f"--engine {scorer.name}")
    args = dict(discount_rate=discount_rate, margin=margin, id_col=id_col, rejects_path=rejects_path,
                max_reject_share=max_reject_share, allow_unreliable=allow_unreliable)
    run = functools.partial(scorer.score_retention, retention_model, input_path, output_path, model_file=model_file,
                            **args, **{k: specific[k] for k in scorer.score_options if k in specific})
    params = dict(model=model, model_kind=retention_model.kind, input=input_path, input_kind="customer table",
                  output=output_path, **args, **{k: specific[k] for k in scorer.score_options if k == "batch_rows"})
    failed = None
    try:
        report = _with_progress(run) if scorer.score_progress else run()
    except TooManyRejectsError as exc:
        failed, report = exc, exc.report
    _score_lines(report)
    d = report.discount_rate_per_period
    rate = f"{d:g} per period" if _is_number(report.discount_rate) else f"{report.discount_rate} = {d:.6g} per period"
    click.echo(f"total residual value (DERL at {rate} x margin {report.margin:g}): {report.residual_value_total:,.2f} "
               f"over {report.scored:,} scored rows" + ("" if report.output is not None else " (not published)"))
    if report.infinite_lifetimes:
        click.echo(f"expected remaining lifetime infinite for {report.infinite_lifetimes:,} scored rows (the model's "
                   "survival curve falls too slowly for a finite mean: sBG alpha <= 1); DERL and the residual value "
                   "are finite")
    return _score_end(tracker, report, params, input_path, failed)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def _model_server(uri: str | None):
    """MLflow reads the server of a ``runs:/`` or ``models:/`` URI from ``MLFLOW_TRACKING_URI``: set to
    ``uri`` for the block (``--tracking-uri``), then restored; nothing when ``uri`` is None."""
    if uri is None:
        yield
        return
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def _refuse_unused(names, mode: str) -> None:
    """Options given on the command line that do not apply to this mode are an error, not ignored."""
    ctx = click.get_current_context()
    given = [n for n in names if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
    if given:
        raise ClvInputError(f"{', '.join('{{' + n + '}}' for n in given)}: not used with {mode}")


def _with_progress(run):
    """``run(progress=...)`` with a progress bar (rate, ETA) on a terminal; ``run()`` otherwise."""
    if not _is_terminal():
        return run()
    import time

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("score", total=None, rate="-")
        started = time.perf_counter()

        def progress(done, total):
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

        return run(progress=progress)


def _score_lines(report) -> None:
    click.echo(f"read {report.read}, scored {report.scored}, rejected {report.rejected} "
               f"({report.reject_share:.2%}) in {report.seconds:.1f} s")
    for reason, count in report.reasons.items():
        click.echo(f"  {reason}: {count}")
    if report.settings is not None:
        click.echo(f"total CLV ({value_settings_text(report.settings)}): {report.clv_total:,.2f} over "
                   f"{report.scored:,} scored rows" + ("" if report.output is not None else " (not published)"))
    band = getattr(report, "portfolio", None)
    if band:
        click.echo(band_line(band))
    totals = getattr(report, "column_totals", None)
    if totals:
        for line in window_lines(totals, (report.settings or {}).get("interval")):
            click.echo(line)


# --------------------------------------------------------------------------------------------
# retention: contractual churn (sBG) from a cohort table or a transaction log
# --------------------------------------------------------------------------------------------


def _read_cohort_file(path: Path):
    """A cohort table file (.csv, .csv.gz, .txt or .parquet) as a DataFrame, the cohort labels as text."""
    import pandas as pd

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            if "cohort" in frame.columns:
                frame["cohort"] = frame["cohort"].astype(str).where(frame["cohort"].notna())
            return frame
        if name.endswith((".csv", ".txt", ".csv.gz")):
            return pd.read_csv(path, dtype={"cohort": str}, sep=None, engine="python")
    except FileNotFoundError:
        raise ClvInputError(f"{path}: file not found") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
        raise ClvInputError(f"{path}: cannot read the cohort table ({' '.join(str(exc).split())[:160]})") from None
    raise ClvInputError(f"{path}: unknown file type; use .csv, .csv.gz or .parquet", argument="cohorts_path")


def _cohorts_from_transactions(transactions: Path, period: str, observation_end, read: dict):
    """A transaction log's contractual cohorts (``retention.cohorts_from_log``) and a line saying what was read."""
    from .estimators.retention._data import cohorts_from_log
    from .transactions import read_transactions

    frame, acc = read_transactions(transactions, with_accounting=True, **read)
    if "amount" in frame.columns:  # a refund is not a payment
        frame = frame.filter(frame["amount"] >= 0)
    table = cohorts_from_log(frame, period=period, observation_end=observation_end)
    a = table.attrs
    line = (f"{acc.n_transactions:,} rows read: {a['customers']:,} customers in {len(table):,} cohorts by the "
            f"{_period_word(period)} of their first transaction, observed through {a['last_period']} (the last whole "
            f"period to {a['observation_end']})")
    if a["excluded_customers"]:
        line += f"; {a['excluded_customers']:,} customers first seen after it left out"
    return table, line


def _period_word(period: str) -> str:
    from .units import TimeUnit

    return {"D": "day", "W": "week", "M": "month", "Y": "year"}.get(TimeUnit.parse(period).base, str(period))


def _retention_fit(model_cls, table, time_unit, label: str) -> dict:
    """One fit (pooled, or one cohort's); its optimiser's warnings are its ``problems_``, printed with it."""
    model = model_cls()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(table, time_unit=time_unit)
    return {"label": label, "model": model}


def _pooled_curve(curve):
    """The curve over cohorts: per period, the cohorts observed there, their share alive and retention rate."""
    from .estimators.retention._base import pooled_curve

    return pooled_curve(curve)


def _lifetime_rows(model, renewals, d: float, margin: float) -> list[dict]:
    import numpy as np

    n = np.asarray(renewals, dtype=float)
    p = model.retention_rate(n + 1.0)
    life = model.expected_remaining_lifetime(n)
    derl = model.derl(d, n)
    return [{"renewals": int(k), "p_renew": float(pk), "expected_remaining_lifetime": float(lk),
             "derl": float(dk), "residual_value": float(margin * dk)} for k, pk, lk, dk in zip(n, p, life, derl)]


_COHORT_FIELD = "{cohort}"  # --save-model's place for the cohort with --by-cohort


def _cohort_file_name(label) -> str:
    """A cohort's label as part of a file name: letters, digits, '.', '-' and '_' kept, any other run of
    characters one '_'."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(label)).strip("._") or "cohort"


def _retention_model_paths(save_model: Path | None, by_cohort: bool, labels) -> dict[str, Path]:
    """The model file of each fit: ``--save-model`` itself for the pooled fit; with ``--by-cohort`` one file per
    cohort, ``{cohort}`` replaced by its label (two cohorts on one name are refused)."""
    if save_model is None:
        return {}
    if not by_cohort:
        return {"pooled": save_model}
    paths, owners = {}, {}
    for label in labels:
        name = _cohort_file_name(label)
        if name in owners:
            raise ClvInputError(f"cohorts {owners[name]!r} and {str(label)!r} would both be saved as "
                                f"{str(save_model).replace(_COHORT_FIELD, name)}; rename one of them",
                                argument="save_model", value=str(save_model))
        owners[name] = str(label)
        paths[str(label)] = Path(str(save_model).replace(_COHORT_FIELD, name))
    return paths


@app.command(short_help="Contractual retention (sBG) from cohorts or a log.")
@click.option("--cohorts", "cohorts_path", default=None, type=click.Path(path_type=Path),
              help="Cohort table, .csv or .parquet: columns cohort, period (0, 1, ...) and alive (customers at the "
                   "start of the period), or share and size instead of alive.")
@click.option("--transactions", "-t", "transactions", default=None, type=click.Path(path_type=Path),
              help="A transaction log instead (a payment each period while a customer): cohorts by the period of the "
                   "first transaction, a customer counted through the period of his last one.")
@_with([*_READ_OPTIONS, _OBSERVATION_END_OPTION])
@click.option("--period", default=None,
              help="Length of a period: D, W, M or Y (a log's calendar periods [M]; for --cohorts, the unit of its "
                   "periods, which a discount rate with its own period needs).")
@click.option("--by-cohort", "by_cohort", is_flag=True, help="Fit each cohort alone (default: one pooled fit).")
@click.option("--discount-rate", "discount_rate", default=None,
              help=f"DERL's discount rate: with its period (10%/Y) or a number per period (0.1) "
                   f"[{VALUE_DEFAULTS['discount_rate']}].")
@click.option("--margin", default=1.0, type=float, show_default=True,
              help="Money a customer leaves per period: residual value = DERL x margin.")
@click.option("--renewals", multiple=True, type=click.IntRange(min=0),
              help="Show the lifetime of a customer who renewed N times (repeatable) [0 to the last observed period, "
                   "at most 24].")
@click.option("--periods", default=None, type=click.IntRange(min=1),
              help="Periods of the projection [the last observed period + 5].")
@click.option("--output", "output_path", default=None, type=click.Path(path_type=Path),
              help="Write the projection (cohort, period, size, alive, projected, survival, retention, "
                   "projected_retention, fit) to this .csv or .parquet file.")
@click.option("--save-model", "save_model", default=None, type=click.Path(path_type=Path),
              help="Save the fitted model (JSON; `clv-forecast score --model` reads it). With --by-cohort one file "
                   "per cohort: put {cohort} in the path (models/sbg-{cohort}.json).")
@_SAVE_UNRELIABLE_OPTION
@click.option("--plot", "plot_path", default=None, type=click.Path(path_type=Path),
              help="Draw the retention curve (actual vs projected share alive and retention rate) to this .png file.")
@_with(_RUN_TRACKING_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_VERBATIM_OPTION
@_names_errors()
def retention(cohorts_path, transactions, period, by_cohort, discount_rate, margin, renewals, periods, output_path,
              save_model, save_unreliable, plot_path, tracking_uri, no_tracking, as_json, verbatim_csv=False,
              observation_end=None, **read) -> None:
    """Contractual retention (sBG, Fader & Hardie 2007): fit the shifted-beta-geometric model to the customers
    of each cohort still customers at the start of each period; print the parameters with standard errors, the
    retention curve (projected vs actual), each customer's expected remaining lifetime and DERL (Fader & Hardie
    2010); optionally write the projection, the model file and the plot. The run is logged in MLflow unless
    --no-tracking. A fit that is not reliable writes nothing and exits with 3 (with --by-cohort: its cohort is
    not written, and the exit is 3 when no cohort's fit is reliable) unless --save-unreliable."""
    import math

    import numpy as np
    import pandas as pd

    from ._paths import check_paths
    from .errors import UnreliableFitError
    from .estimators import get
    from .units import DEFAULT_DISCOUNT_RATE

    if (cohorts_path is None) == (transactions is None):
        raise ClvInputError("give either {{cohorts_path}} (a cohort table) or {{transactions}} (a transaction log)"
                            + (", not both" if cohorts_path is not None else ""))
    if cohorts_path is not None:
        _refuse_unused(tuple(read) + ("observation_end",), "{{cohorts_path}}")
    template = save_model is not None and _COHORT_FIELD in str(save_model)
    if save_model is not None and by_cohort and not template:
        raise ClvInputError(f"with {{{{by_cohort}}}} each cohort's model is its own file: put {_COHORT_FIELD} in the "
                            f"path (e.g. models/sbg-{_COHORT_FIELD}.json)", argument="save_model",
                            value=str(save_model))
    if template and not by_cohort:
        raise ClvInputError(f"{_COHORT_FIELD} names one file per cohort: it needs {{{{by_cohort}}}}",
                            argument="save_model", value=str(save_model))
    inputs = {"{{cohorts_path}}": cohorts_path, "{{transactions}}": transactions}
    outputs = {"{{output_path}}": output_path, "{{plot_path}}": plot_path}
    check_paths(inputs, {**outputs, "{{save_model}}": None if template else save_model})
    if output_path is not None:
        if not output_path.name.lower().endswith((".csv", ".txt", ".csv.gz", ".parquet", ".pq")):
            raise ClvInputError(f"{output_path}: unknown output type; use .csv, .csv.gz or .parquet")
        _check_output(output_path, "the projection table", "projection.csv")
    if save_model is not None:
        _check_output(Path(str(save_model).replace(_COHORT_FIELD, "cohort")), "the model", "model.json")
    if plot_path is not None:
        if not plot_path.name.lower().endswith(".png"):
            raise ClvInputError(f"{plot_path}: the plot is a PNG image; give a path ending in .png",
                                argument="plot_path")
        _check_output(plot_path, "the plot", "retention.png")
    if not math.isfinite(margin):
        raise ClvInputError("must be a finite number", argument="margin", value=margin)
    tracker = _Tracking("retention", tracking_uri, no_tracking, None)  # the server checked before any work
    if transactions is not None:
        table, read_line = _cohorts_from_transactions(transactions, period or "M", observation_end, read)
        source, time_unit = str(transactions), None
    else:
        table = _read_cohort_file(cohorts_path)
        source, read_line, time_unit = str(cohorts_path), None, period
    from .estimators.retention._data import read as read_cohorts

    _, cohorts = read_cohorts(table, time_unit=time_unit, source=source)
    if cohorts is None:
        raise ClvInputError(f"{source}: a cohort table has the columns cohort, period and alive (or share and size)")
    model_paths = _retention_model_paths(save_model, by_cohort, cohorts.labels)
    if template:  # each cohort's file against the inputs and the other outputs, before any fit
        check_paths(inputs, {**outputs, **{f"the model file of cohort {label}": path
                                           for label, path in model_paths.items()}})
    unit = cohorts.time_unit
    rate_text = discount_rate if discount_rate is not None else DEFAULT_DISCOUNT_RATE
    try:
        rate = float(rate_text)
    except ValueError:
        rate = rate_text
    if unit is None and not isinstance(rate, float):
        raise ClvInputError(f"{{{{discount_rate}}}} {rate_text} needs the length of a period: give "
                            "{{period}} (e.g. Y or M) or the rate per period as a number (0.1)")
    model_cls = get("sbg", "retention")
    fits, skipped = [], []
    if by_cohort:
        for i, label in enumerate(cohorts.labels):  # one fit per cohort
            part = cohorts.select(i)
            frame = pd.DataFrame([part.alive[0]], index=[label])
            try:
                fits.append(_retention_fit(model_cls, frame, unit, str(label)))
            except IdentificationError as exc:
                skipped.append({"cohort": str(label), "reason": " ".join(str(exc).split())})
    else:
        fits.append(_retention_fit(model_cls, table, unit, "pooled"))
    if not fits:
        raise IdentificationError("no cohort could be fitted: " + "; ".join(f"{s['cohort']}: {s['reason']}"
                                                                           for s in skipped[:3]))
    d = fits[0]["model"]._discount(rate)  # checked once: the same rate for every fit
    last = int(cohorts.lengths.max())
    horizon = periods if periods is not None else last + 5
    shown = sorted(set(renewals)) if renewals else list(range(min(last, 24) + 1))
    curves, reports = [], []
    for fit in fits:
        model = fit["model"]
        if by_cohort:
            i = [str(v) for v in cohorts.labels].index(fit["label"])
            curve = model.curve(pd.DataFrame([cohorts.alive[i]], index=[cohorts.labels[i]]), horizon,
                                time_unit=unit)
        else:
            curve = model.curve(None, horizon)
        curves.append(curve.assign(fit=fit["label"]))
        pooled = _pooled_curve(curve)
        fit["gap"] = _share_gap(pooled)
        fit["kept"] = save_unreliable or not model.problems_
        reports.append({"fit": fit, "curve": pooled, "lifetime": _lifetime_rows(model, shown, d, margin)})
    reliable = [r for r in reports if not r["fit"]["model"].problems_]
    kept = [r for r in reports if r["fit"]["kept"]]  # written: reliable, or kept with --save-unreliable
    projection = None
    if kept:
        projection = pd.concat([c for c, r in zip(curves, reports) if r in kept], ignore_index=True)
        projection["cohort"] = projection["cohort"].astype(str)
    written = model_written = plot_written = None
    guarded = 0
    if output_path is not None and kept:
        from .engines.local import write_table

        written, guarded = write_table(projection.set_index("cohort"), output_path, verbatim_csv=verbatim_csv)
    if model_paths and kept:
        model_written = {r["fit"]["label"]: r["fit"]["model"].save(model_paths[r["fit"]["label"]]) for r in kept}
    png = None
    if (plot_path is not None or tracker.enabled) and (kept or tracker.enabled):
        from . import plots

        drawn = kept or reports  # (a refused run's plot goes to MLflow only)
        models = {r["fit"]["label"]: r["fit"]["model"] for r in drawn}
        png = plots.to_png(plots.retention_curve(models if by_cohort else models["pooled"], periods=horizon))
        if plot_path is not None and kept:
            from ._io import atomic_write

            plot_written = atomic_write(plot_path, lambda tmp: tmp.write_bytes(png))
    tracked = None
    if tracker.enabled:
        from . import tracking

        if projection is None:  # a refused run: what the fits reached
            projection = pd.concat(curves, ignore_index=True).astype({"cohort": str})
        tracked = tracker._guarded(lambda: tracking.log_retention_run(
            [r["fit"] for r in reports], source=source,
            input_kind="transaction log" if transactions is not None else "cohort table", time_unit=unit,
            discount_rate=rate_text, discount_rate_per_period=d, margin=margin, projection=projection,
            plot_png=png, by_cohort=by_cohort, settings={"periods": horizon, "cohorts": len(cohorts.labels),
                                                         "save_unreliable": save_unreliable},
            tracking_uri=tracker.tracking_uri, refused=not kept, verbatim_csv=verbatim_csv))
    rate_shown = f"{rate_text} ({d:.6g} per period)" if not isinstance(rate, float) else f"{d:g} per period"
    if as_json:
        from .model import json_safe

        data = {"source": source, "input": "transaction log" if transactions is not None else "cohort table",
                "time_unit": unit, "by_cohort": by_cohort,
                "cohorts": [{"cohort": str(label), "size": float(a[0]), "periods": len(a) - 1}
                            for label, a in zip(cohorts.labels, cohorts.alive)],
                "discount_rate": str(rate_text), "discount_rate_per_period": d, "margin": margin, "fits": [],
                "skipped": skipped, "output": None if written is None else str(written),
                "model_paths": None if model_written is None else {k: str(v) for k, v in model_written.items()},
                "plot": None if plot_written is None else str(plot_written)}
        for r in reports:
            model = r["fit"]["model"]
            res = model.result_
            data["fits"].append({
                "cohort": r["fit"]["label"], "model": model.name, **{k: float(v) for k, v in model.params_.items()},
                "bse": {k: float(v) for k, v in res.bse.items()}, "log_likelihood": res.log_likelihood,
                "customers": res.n_obs, "converged": res.converged, "iterations": res.n_iter, "aic": res.aic,
                "bic": res.bic, "share_alive_mean_abs_gap": r["fit"]["gap"], "problems": model.problems_,
                "reliable": not model.problems_,
                "curve": [{"period": int(p), "cohorts": int(row["cohorts"]), "alive": float(row["alive"]),
                           "size": float(row["size"]), "share_alive": float(row["share"]),
                           "projected_share": float(row["survival"]), "retention": float(row["retention"]),
                           "projected_retention": float(row["projected_retention"])}
                          for p, row in r["curve"].iterrows()],
                "lifetime": r["lifetime"]})
        data["reliable"] = len(reliable) == len(reports)
        if tracked is not None:
            data["mlflow"] = {"run_id": tracked.run_id, "experiment": tracked.experiment_name,
                              "model_uris": tracked.model_uris, "status": tracked.status}
        click.echo(json.dumps(json_safe(data), allow_nan=False))
    else:
        console = _console()

        def plain(text: str) -> None:
            console.print(text, markup=False)

        from rich.table import Table

        sizes = cohorts.sizes
        plain(f"{source}" + (f"\n  {read_line}" if read_line else ""))
        plain(f"  {len(cohorts.labels):,} cohort{'s' if len(sizes) > 1 else ''}, {sizes.sum():,.0f} customers, "
              f"periods 0 to {last}" + (f" (a period: {unit})" if unit else " (no time unit: give --period)"))
        for s in skipped:
            plain(f"cohort {s['cohort']} not fitted: {s['reason']}")
        for r in reports:
            model, fit = r["fit"]["model"], r["fit"]
            res = model.result_
            params = "  ".join(f"{k} = {_fmt(v)} ({_se(res.bse[k])})" for k, v in model.params_.items())
            what = (f"cohort {fit['label'] if by_cohort else cohorts.labels[0]}" if by_cohort or len(sizes) == 1
                    else f"pooled over {len(sizes)} cohorts")
            plain(f"{model.name} ({what})  {params}")
            plain(f"     log-likelihood = {res.log_likelihood:.4f}  customers = {res.n_obs:,.0f}  "
                  f"converged = {res.converged}")
            for problem in model.problems_:
                plain(f"warning: unreliable fit: {problem}")
            curve = Table(title="retention curve, projected vs actual" + (" (actual: the cohorts observed at each "
                                                                          "period)" if len(sizes) > 1 and not
                                                                          by_cohort else ""))
            for col in ("period", "cohorts", "actual % alive", "projected % alive", "actual retention",
                        "projected retention"):
                curve.add_column(col, justify="right", no_wrap=True)
            for p, row in r["curve"].iterrows():
                def pct(v):
                    return "-" if not np.isfinite(v) else f"{100 * v:.1f}"
                curve.add_row(str(p), f"{row['cohorts']:.0f}", pct(row["share"]), pct(row["survival"]),
                              pct(row["retention"]), pct(row["projected_retention"]))
            console.print(curve)
            life = Table(title=f"a customer who renewed n times: DERL at {rate_shown}, residual value = DERL x margin "
                               f"{margin:g}")
            for col in ("renewals n", "P(renews next)", "expected remaining lifetime", "DERL", "residual value"):
                life.add_column(col, justify="right", no_wrap=True)
            for row in r["lifetime"]:
                rest = row["expected_remaining_lifetime"]
                life.add_row(str(row["renewals"]), f"{row['p_renew']:.4f}",
                             f"{rest:.4g}" if math.isfinite(rest) else "infinite (alpha <= 1)",
                             f"{row['derl']:.4f}", f"{row['residual_value']:,.2f}")
            console.print(life)
        if kept and (output_path or model_paths or plot_path):
            for r in reports:
                if not r["fit"]["kept"]:
                    plain(f"cohort {r['fit']['label']}: not written (unreliable fit; --save-unreliable writes it)")
        if written is not None:
            plain(f"projection ({len(projection):,} rows) written to {written}")
            _guard_line(guarded, plain)
        for label, path in (model_written or {}).items():
            plain(f"model{f' of cohort {label}' if by_cohort else ''} saved to {path}")
        if plot_written is not None:
            plain(f"plot written to {plot_written}")
        if tracked is not None:
            plain(_tracked_retention_line(tracked, by_cohort))
    if not kept:
        problems = "; ".join(p for r in reports for p in r["fit"]["model"].problems_)
        unwritten = [what for what, given in (("the projection", output_path), ("the model", save_model),
                                              ("the plot", plot_path)) if given is not None]
        raise UnreliableFitError(f"the sBG fit is not reliable: {problems}" + (
            f"; {', '.join(unwritten[:-1]) + ' and ' if len(unwritten) > 1 else ''}{unwritten[-1]} "
            f"{'was' if len(unwritten) == 1 else 'were'} not written ({{{{save_unreliable}}}} writes "
            f"{'it' if len(unwritten) == 1 else 'them'}, labelled unreliable)" if unwritten else ""))


def _share_gap(pooled) -> float:
    from .estimators.retention._base import share_alive_gap

    return share_alive_gap(pooled)


def _tracked_retention_line(tracked, by_cohort: bool) -> str:
    text = "tracked in MLflow" + (f" ({tracked.status})" if tracked.status != "FINISHED" else "") + (
        f": experiment {tracked.experiment_name!r}, run {tracked.run_id}")
    if not tracked.model_uris:
        return text + " (no model logged)"
    if not by_cohort:
        return text + f" (model {next(iter(tracked.model_uris.values()))})"
    return text + " (cohort models: " + ", ".join(f"{k} {v}" for k, v in tracked.model_uris.items()) + ")"


# --------------------------------------------------------------------------------------------
# sample: the bundled CDNOW sample as a transaction log file (the README's examples read it)
# --------------------------------------------------------------------------------------------


@app.command(short_help="Write the bundled CDNOW sample as a CSV log.")
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path),
              help="The CSV file to write (columns customer_id, date, amount), e.g. cdnow.csv.")
@_names_errors()
def sample(output_path) -> None:
    """Write the bundled CDNOW sample (2,357 customers, 6,919 transactions from 1997-01-01 to 1998-06-30) as a
    CSV transaction log with the columns customer_id, date (ISO) and amount: the cdnow.csv the README's
    examples read (clv-forecast compare --transactions cdnow.csv --amount-col amount ...)."""
    from ._io import atomic_write
    from .datasets import load_cdnow_sample

    if not output_path.name.lower().endswith(".csv"):
        raise ClvInputError(f"{output_path}: the sample is written as CSV; give a path ending in .csv")
    _check_output(output_path, "the sample", "cdnow.csv")
    log = load_cdnow_sample()[["customer_id", "date", "amount"]]
    log = log.assign(date=log["date"].dt.strftime("%Y-%m-%d"))
    written = atomic_write(output_path, lambda tmp: log.to_csv(tmp, index=False))
    click.echo(f"CDNOW sample ({len(log):,} transactions of {log['customer_id'].nunique():,} customers) "
               f"written to {written}")


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"clv-forecast: warning: {message}", file=sys.stderr)


EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); SIGTERM exits with 143, SIGHUP with 129


class Terminated(BaseException):
    """SIGTERM or SIGHUP (what schedulers, containers and ``timeout`` send) arrived: raised in the main
    thread by the console script's handler, it unwinds the run as Ctrl-C does (``finally`` blocks run,
    atomic writes remove their temporary files, Spark temporary directories are removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame) -> None:
    import signal

    for name in ("SIGTERM", "SIGHUP"):  # once: a second signal does not cut the cleanup short
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Terminated(signum)


def _unwind_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` (the main thread only; the console script)."""
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)


def _nul_argument(argv) -> str | None:
    """An argument with a NUL byte (possible in a program's call, never on a command line) named with
    its option: no path, name or value may carry one."""
    from ._paths import shown_path

    args = list(argv or [])
    for i, arg in enumerate(args):
        if "\x00" in str(arg):
            arg = str(arg)
            if arg.startswith("--") and "=" in arg:
                name = arg.split("=", 1)[0]
            else:
                name = args[i - 1] if i and str(args[i - 1]).startswith("-") else f"argument {i + 1}"
            return f"{name}: the value contains a NUL byte: {shown_path(arg)}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2; a fit that is not reliable (did
    not converge, or the data do not identify the parameters: :class:`IdentificationError` and its
    :class:`UnreliableFitError`) exit code 3; Ctrl-C exits with 130, SIGTERM/SIGHUP (:class:`Terminated`)
    with 128 + the signal's number."""
    warnings.showwarning = _one_line_warning
    nul = _nul_argument(argv)
    if nul is not None:
        print(f"clv-forecast: error: {nul}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        rc = app.main(args=argv, prog_name="clv-forecast", standalone_mode=False)
        if isinstance(rc, int) and rc:
            return rc
    except IdentificationError as exc:  # UnreliableFitError too
        print(f"clv-forecast: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_UNRELIABLE_FIT
    except USER_ERRORS as exc:
        print(f"clv-forecast: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # click >= 8.2: bare `clv-forecast`
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        return 0
    except click.UsageError as exc:
        print(f"clv-forecast: error: {' '.join(exc.format_message().split())} (see clv-forecast --help)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, EOFError):  # click turns EOFError into Abort: exit 130 is for interrupts only
            text = " ".join(str(cause).split()) or "end of file"
            print(f"clv-forecast: error: an input ended unexpectedly ({text[:200]})", file=sys.stderr)
            return EXIT_USER_ERROR
        print("clv-forecast: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("clv-forecast: aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated as exc:
        print("clv-forecast: terminated", file=sys.stderr)
        return 128 + exc.signum
    except OSError as exc:
        print(f"clv-forecast: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def console_main() -> None:  # pragma: no cover - the console script
    from . import _warmup

    _warmup.limit_blas_threads()  # before numpy is imported; see clv_forecast/_warmup.py
    _unwind_on_termination()
    rc = main()
    if _TRACKED:
        # the interpreter's last garbage collection walks MLflow's many objects (~0.6 s): skip it at exit
        import gc

        gc.freeze()
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    console_main()
