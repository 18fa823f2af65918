"""The ``clv-forecast`` command.

``run``   the default experiment on the bundled CDNOW data (or ``--experiment spec.toml``);
``fit``   fit BG/NBD + Gamma-Gamma on a transaction log and print or save the model.

User errors (bad file, column, value or option) print one line on stderr and exit with code 2;
no traceback. The commands only compose library functions.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import click

from .errors import ClvInputError, IdentificationError


@click.group(help="Probabilistic customer-lifetime-value forecasting (BG/NBD + Gamma-Gamma).")
@click.version_option(package_name="clv-forecast")
def app() -> None:
    pass


USER_ERRORS = (ClvInputError, IdentificationError)


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _print_model(model, out) -> None:
    for name, sub in (("BG/NBD", model.purchases_), ("Gamma-Gamma", model.spend_)):
        if sub is None:
            continue
        res = sub.result_
        params = "  ".join(f"{k} = {_fmt(v)} (se {_fmt(res.bse[k])})" for k, v in res.params.items())
        out(f"{name:12s} {params}")
        out(f"{'':12s} log-likelihood = {res.log_likelihood:.4f}  customers = {res.n_obs:,.0f}  converged = {res.converged}")
    if model.spend_ is not None:
        corr = model.spend_.spend_frequency_correlation_
        out(f"{'':12s} correlation(frequency, spend) = {corr:.3f} (the Gamma-Gamma model assumes 0)")


_OPTION_NAMES = {"time_unit=": "--freq ", "merge=": "--merge ", "calibration_end=": "--calibration-end ",
                 "observation_end=": "--observation-end "}


def _check_output(path: Path) -> None:
    """Refuse an output path that cannot be written before any work is done (one-line error)."""
    if path.is_dir():
        raise ClvInputError(f"{path}: is a directory; give a file path for the model, e.g. {path / 'model.json'}")
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ClvInputError(f"{path}: cannot write the model: {existing} is a file, not a directory")
    if existing is not None and not os.access(existing, os.W_OK):
        raise ClvInputError(f"{path}: cannot write the model: {existing} is not writable")


def _accounting(rfm) -> str:
    """Where every input row went (the summary's attrs account for all of them)."""
    a = rfm.attrs
    late_rows = a.get("n_transactions_first_purchase_after_calibration", 0)
    after = a.get("n_transactions_after_observation_end", 0)
    used = a.get("n_transactions", 0) - late_rows - after
    return (f"{a.get('n_transactions', 0):,} transactions: {used:,} summarised for {len(rfm):,} customers, "
            f"{late_rows:,} of {a.get('n_customers_first_purchase_after_calibration', 0):,} customers first seen "
            f"after the calibration end, {after:,} after the observation end")


def _model_json(model, n_customers: int) -> dict:
    out = {"bgnbd": {**{k: float(v) for k, v in model.purchases_.params_.items()},
                     "log_likelihood": model.purchases_.log_likelihood_,
                     "bse": {k: float(v) for k, v in model.purchases_.result_.bse.items()}}}
    if model.spend_ is not None:
        out["gamma_gamma"] = {**{k: float(v) for k, v in model.spend_.params_.items()},
                              "log_likelihood": model.spend_.log_likelihood_,
                              "bse": {k: float(v) for k, v in model.spend_.result_.bse.items()},
                              "spend_frequency_correlation": model.spend_.spend_frequency_correlation_}
    out["n_customers"] = n_customers
    out["time_unit"] = model.time_unit_
    return out


@app.command()
@click.option("--transactions", "-t", required=True, type=click.Path(path_type=Path), help="CSV or Parquet transaction log.")
@click.option("--customer-col", default="customer_id", show_default=True, help="Customer id column.")
@click.option("--date-col", default="date", show_default=True, help="Timestamp column.")
@click.option("--amount-col", default=None, help="Amount column (omit: no spend model).")
@click.option("--date-format", default=None, help="strftime format of the dates, e.g. %Y%m%d.")
@click.option("--freq", default="W", show_default=True, help="Time unit of the model: D, W, M or a multiple (2W).")
@click.option("--merge", default="D", show_default=True, help="Merge purchases within this resolution (D, h, W...) or 'exact'.")
@click.option("--calibration-end", default=None, help="Last day of the calibration period.")
@click.option("--observation-end", default=None, help="Last day of the data to use.")
@click.option("--penalizer", default=0.0, type=float, show_default=True, help="L2 penalty of the BG/NBD fit.")
@click.option("--strict-spend", is_flag=True, help="Error (not warning) on non-positive mean spend.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--output", default=None, type=click.Path(path_type=Path), help="Save the fitted model (JSON) here.")
def fit(transactions, customer_col, date_col, amount_col, date_format, freq, merge, calibration_end,
        observation_end, penalizer, strict_spend, as_json, output) -> None:
    """Fit BG/NBD and Gamma-Gamma on a transaction log; print parameters, standard errors, log-likelihoods."""
    from .model import ClvModel, json_safe
    from .rfm import summarize

    if output is not None:
        _check_output(output)
    try:
        rfm = summarize(transactions, customer_col=customer_col, date_col=date_col, amount_col=amount_col,
                        date_format=date_format, time_unit=freq, merge=merge, calibration_end=calibration_end,
                        observation_end=observation_end)
    except ClvInputError as exc:  # name the command-line options, not the Python arguments
        message = str(exc)
        for argument, option in _OPTION_NAMES.items():
            message = message.replace(argument, option)
        raise ClvInputError(message) from None
    model = ClvModel(penalizer=penalizer, strict_spend=strict_spend).fit(rfm)
    if output is not None:
        model.save(output)
    if as_json:
        click.echo(json.dumps(json_safe(_model_json(model, len(rfm))), allow_nan=False))
        return
    click.echo(f"{transactions}: {_accounting(rfm)} (time unit {model.time_unit_}, merge {merge})")
    _print_model(model, click.echo)
    if output is not None:
        click.echo(f"model saved to {output}")


@app.command()
@click.option("--experiment", default=None, type=click.Path(path_type=Path), help="Experiment spec (TOML); default: the CDNOW experiment.")
@click.option("--output", default=None, type=click.Path(path_type=Path), help="Where to save the fitted model (overrides the spec).")
@click.option("--no-save", is_flag=True, help="Do not save the fitted model.")
def run(experiment, output, no_save) -> None:
    """Run an experiment (default: BG/NBD + Gamma-Gamma on the bundled CDNOW sample) and print a summary."""
    from rich.console import Console
    from rich.table import Table

    from .experiment import load_spec, run as run_experiment

    spec = load_spec(experiment)
    if output is not None:
        spec["output"]["model"] = str(output)
    if not no_save and spec["output"].get("model"):
        _check_output(Path(spec["output"]["model"]))
    result = run_experiment(spec, save=not no_save)
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
    rfm, m = result.summary, result.metrics
    console.print(f"[bold]experiment {spec['name']}[/bold]: {len(rfm):,} customers, "
                  f"{rfm.attrs.get('n_transactions', 0):,} transactions, time unit {result.model.time_unit_}, "
                  f"calibration to {str(rfm.attrs.get('calibration_end'))[:10]}, "
                  f"data to {str(rfm.attrs.get('observation_end'))[:10]}")
    console.print(_accounting(rfm), markup=False)
    _print_model(result.model, lambda text: console.print(text, markup=False))
    if result.holdout is not None:
        console.print(
            f"holdout ({m['holdout_duration']:.2f} {result.model.time_unit_}): purchases predicted "
            f"{m['holdout_purchases_predicted']:,.1f} vs actual {m['holdout_purchases_actual']:,.0f}  "
            f"(per customer MAE {m['holdout_mae']:.3f}, RMSE {m['holdout_rmse']:.3f})"
        )
    if len(result.clv):
        v = spec["value"]
        top = result.clv.sort_values("clv", ascending=False).head(int(v.get("top", 10)))
        table = Table(title=f"top {len(top)} customers by CLV ({v['horizon']}, {v['discount_rate']}, margin {v['margin']})")
        band = "clv_lower" in top.columns
        columns = ["customer", "frequency", "recency", "T", "P(alive)", "E(purchases)", "E(spend)", "CLV"]
        if band:
            columns.append(f"{v['interval']:.0%} interval")
        for col in columns:
            table.add_column(col, justify="right", no_wrap=True)
        for cid, row in top.iterrows():
            s = rfm.loc[cid]
            cells = [str(cid), f"{s['frequency']:.0f}", f"{s['recency']:.2f}", f"{s['T']:.2f}",
                     f"{row['p_alive']:.3f}", f"{row['expected_purchases']:.2f}", f"{row['expected_spend']:.2f}",
                     f"{row['clv']:.2f}"]
            if band:
                cells.append(f"{row['clv_lower']:.2f} - {row['clv_upper']:.2f}")
            table.add_row(*cells)
        console.print(table)
        console.print(f"total CLV of the {len(result.clv):,} customers: {m['clv_total']:,.2f}")
    for text in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {text}")
    if result.model_path is not None:
        console.print(f"model saved to {result.model_path}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"clv-forecast: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2."""
    warnings.showwarning = _one_line_warning
    try:
        rc = app.main(args=argv, prog_name="clv-forecast", standalone_mode=False)
        if isinstance(rc, int) and rc:
            return rc
    except USER_ERRORS as exc:
        print(f"clv-forecast: error: {exc}", file=sys.stderr)
        return 2
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # click >= 8.2: bare `clv-forecast`
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        return 0
    except click.UsageError as exc:
        print(f"clv-forecast: error: {' '.join(exc.format_message().split())} (see clv-forecast --help)",
              file=sys.stderr)
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        print("clv-forecast: aborted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"clv-forecast: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def console_main() -> None:  # pragma: no cover - the console script
    sys.exit(main())
