"""One self-contained HTML report of a run: no network request, images embedded as PNG data URIs.

:func:`render` turns a list of :class:`Section` objects (paragraphs, tables, figures) into one HTML
document with inline CSS and no script; :func:`run_report` builds the sections of a pipeline run
(parameters with standard errors, row accounting, holdout check, backtest table, plots, segment table,
top customers and the customers on whom the methods disagree most) from the run's results view, and
:func:`write` saves it atomically. Everything shown comes from the same objects the CLI prints.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Section", "Figure", "render", "run_report", "write", "accounting_lines", "periods_line", "holdout_line",
           "coverage_line"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2933;
       margin: 0; background: #f5f7fa; line-height: 1.45; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
header { border-bottom: 3px solid #3e7cb1; margin-bottom: 16px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; color: #243b53; border-bottom: 1px solid #d9e2ec; padding-bottom: 4px; }
p.sub { color: #52606d; margin: 0 0 12px; }
p.note { border-left: 4px solid #d9822b; background: #fff8ec; padding: 6px 12px; }
p, li { font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e7eb; }
th { background: #f0f4f8; text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e7eb; }
figcaption { font-size: 13px; color: #52606d; margin-top: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 8px 24px; }
.note { font-size: 13px; color: #52606d; }
.scroll { overflow-x: auto; }
.warn { color: #9b2c2c; }
"""


# --------------------------------------------------------------------------------------------
# the lines a run is described by (the CLI prints them, the report shows them)
# --------------------------------------------------------------------------------------------


def _n(attrs: dict, key: str) -> int:
    return int(attrs.get(key) or 0)


def accounting_lines(attrs: dict, n_customers: int) -> list[str]:
    """Where every input row went, from the summary's accounting (``attrs``): the rows read and summarised, the
    rows left out (with why), and the rows kept that a policy could have left out (exact duplicates kept)."""
    rows = _n(attrs, "n_transactions")
    late_rows = _n(attrs, "n_transactions_first_purchase_after_calibration")
    after = _n(attrs, "n_transactions_after_observation_end")
    missing = _n(attrs, "n_rows_missing_customer")
    dup_dropped = _n(attrs, "n_duplicate_rows_dropped")
    returns = _n(attrs, "n_return_rows")
    netted = _n(attrs, "n_returns_netted")
    fully_returned = _n(attrs, "n_purchases_fully_returned")
    used = attrs.get("n_transactions_summarised")
    if used is None:  # a summary without the detailed accounting
        used = rows - late_rows - after - missing - dup_dropped - returns - fully_returned
    lines = [f"{rows:,} rows read: {int(used):,} summarised for {n_customers:,} customers"]
    left_out, kept = [], []
    if late_rows or _n(attrs, "n_customers_first_purchase_after_calibration"):
        late = _n(attrs, "n_customers_first_purchase_after_calibration")
        left_out.append(f"{_count(late_rows, 'row')} of {_count(late, 'customer')} first seen after the "
                        "calibration end")
    if after:
        left_out.append(f"{after:,} after the observation end")
    if missing:
        left_out.append(f"{missing:,} without a customer id (dropped)")
    if _n(attrs, "n_duplicate_rows"):  # counted either way: under "left out" when dropped, else under "kept"
        duplicates = _count(_n(attrs, "n_duplicate_rows"), "exact duplicate row")
        if dup_dropped:
            left_out.append(f"{duplicates} (dropped)")
        else:
            kept.append(f"{duplicates}, each counted as a row of its own: --duplicates drop "
                        "(duplicates='drop') leaves them out")
    if returns:
        how = attrs.get("returns", "drop")
        text = (f"{returns:,} returns (negative amounts, total {float(attrs.get('return_value') or 0):,.2f}) "
                f"not counted as purchases")
        if how == "net":
            text += (f": {netted:,} netted against earlier purchases, {_n(attrs, 'n_returns_unmatched'):,} "
                     f"without an earlier purchase, {_n(attrs, 'n_returns_across_calibration_end'):,} of a purchase "
                     f"before the calibration end (not netted across it), "
                     f"{_n(attrs, 'n_returns_after_observation_end'):,} after the last purchase; "
                     f"{fully_returned:,} purchases fully returned")
        elif _n(attrs, "n_returns_matching"):
            # what "drop" keeps: returns of earlier purchases, and the purchases they cancel counted in full
            text += (f"; {_n(attrs, 'n_returns_matching'):,} of them (total "
                     f"{float(attrs.get('return_value_matching') or 0):,.2f}) match an earlier purchase of the same "
                     f"customer")
            if _n(attrs, "n_purchases_cancelled"):
                text += (f" and fully cancel {_n(attrs, 'n_purchases_cancelled'):,} purchase rows (value "
                         f"{float(attrs.get('return_cancelled_purchase_value') or 0):,.2f}) that are still counted "
                         "as purchases")
            text += ": --returns net (returns='net') nets them"
        left_out.append(text)
    if _n(attrs, "n_customers_returns_only"):
        left_out.append(f"{_n(attrs, 'n_customers_returns_only'):,} customers with only returns (not in the summary)")
    if left_out:
        lines.append("left out: " + "; ".join(left_out))
    if kept:
        lines.append("kept: " + "; ".join(kept))
    return lines


def _count(n: int, noun: str) -> str:
    """``n`` with its noun, plural unless 1: ``41,823 rows``, ``1 customer``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _when(label) -> str | None:
    """An end as a person reads it: the date alone at midnight, else date and time."""
    if not label:
        return None
    text = str(label).replace("T", " ")
    return text[:10] if text.endswith(" 00:00:00") else text


def periods_line(attrs: dict, time_unit) -> str:
    cal = _when(attrs.get("calibration_end"))
    obs = _when(attrs.get("observation_end"))
    split = f"calibration to {cal}, holdout to {obs}" if cal else f"data to {obs} (no holdout split)"
    return f"{split}; time unit {time_unit}, merge {attrs.get('merge')}"


def holdout_line(metrics: dict, time_unit) -> str:
    """The holdout check in one line: predicted vs actual purchases, per-customer errors."""
    return (f"holdout ({metrics['holdout_duration']:.2f} {time_unit}): purchases predicted "
            f"{metrics['holdout_purchases_predicted']:,.1f} vs actual {metrics['holdout_purchases_actual']:,.0f}  "
            f"(per customer MAE {metrics['holdout_mae']:.3f}, RMSE {metrics['holdout_rmse']:.3f})")


def value_text(value: dict | None) -> str:
    """The CLV settings of a run's ``[value]`` (defaults filled in) in one phrase: ``12M, 10%/Y, step 1M,
    margin 1``; printed wherever a CLV total is."""
    from .units import value_settings_of, value_settings_text

    return value_settings_text(value_settings_of(value))


def band_line(band: dict) -> str:
    """One line: the band of the totals (:meth:`clv_forecast.uncertainty.Portfolio.band`) in words."""
    clv, purchases = band["clv"], band["expected_purchases"]
    return (f"{band['level']:.0%} band of the totals from the parameters' uncertainty ({band.get('method', 'delta')} "
            f"method, {band['customers']:,} customers): CLV {clv['lower']:,.2f} to {clv['upper']:,.2f} (estimate "
            f"{clv['total']:,.2f}); expected purchases {purchases['lower']:,.1f} to {purchases['upper']:,.1f} "
            f"(estimate {purchases['total']:,.1f})")


def window_rows(totals: dict) -> list[dict]:
    """The windows of a value-by-period table's totals (:meth:`clv_forecast.uncertainty.ColumnTotals.band`, keyed
    ``purchases_<label>`` / ``value_<label>``; a window's label has a dash, ``0-1Y``, a period's none), then the
    whole horizon: ``[{"window", "purchases", "value", "lower", "upper"}]`` (bounds None without a band)."""
    labels = [k[len("value_"):] for k in totals if k.startswith("value_") and "-" in k]
    rows = []
    for label, p_key, v_key in [(lb, f"purchases_{lb}", f"value_{lb}") for lb in labels] + [
            ("horizon", "expected_purchases", "clv")]:
        if v_key not in totals:
            continue
        value = totals[v_key]
        rows.append({"window": label, "purchases": totals[p_key]["total"], "value": value["total"],
                     "lower": value.get("lower"), "upper": value.get("upper")})
    return rows


def window_metrics(totals: dict) -> dict:
    """Each window's totals as run metrics (``fit``/``run`` and ``score`` log the same keys):
    ``window_<label>_purchases``, ``window_<label>_value`` and, with a band, ``_value_lower``/``_value_upper``."""
    out = {}
    for row in window_rows(totals):
        if row["window"] == "horizon":  # (the horizon's totals are the CLV's own metrics)
            continue
        key = f"window_{row['window']}"
        out[f"{key}_purchases"], out[f"{key}_value"] = row["purchases"], row["value"]
        if row["lower"] is not None:
            out[f"{key}_value_lower"], out[f"{key}_value_upper"] = row["lower"], row["upper"]
    return out


def windows_section(result):
    """The report's "Value by window" section of a run with ``[value] periods`` or ``windows``: each window's (and
    the horizon's) total expected purchases and value over the customers, with the value's band; None otherwise."""
    import pandas as pd

    table = getattr(result, "period_values", None)
    if table is None:
        return None
    value = result.spec["value"]
    rows = window_rows(table.attrs["totals"])
    level = value.get("interval")
    frame = pd.DataFrame({"window": [("whole horizon" if r["window"] == "horizon" else r["window"]) for r in rows],
                          "expected purchases": [r["purchases"] for r in rows],
                          "value": [r["value"] for r in rows]})
    if level and rows and rows[0]["lower"] is not None:
        frame[f"{float(level):.0%} band: lower"] = [r["lower"] for r in rows]
        frame["upper"] = [r["upper"] for r in rows]
    text = (f"The customers' total expected purchases and discounted value in each window of the horizon "
            f"({value_text(value)}; {len(table):,} customers)"
            + (", with the band of each total from the parameters' uncertainty (the delta method; not a sum of the "
               "customers' intervals)" if level else "") + ".")
    return Section("Value by window", [text, frame.set_index("window")])


def window_lines(totals: dict, interval=None) -> list[str]:
    """One line per window (and the whole horizon): the customers' total expected purchases and value, with the
    band of the value when there is one."""
    out = []
    level = None if interval in (None, "none") else float(interval)
    for row in window_rows(totals):
        band = (f" ({level:.0%} band {row['lower']:,.2f} to {row['upper']:,.2f})"
                if level is not None and row["lower"] is not None else "")
        name = "whole horizon" if row["window"] == "horizon" else f"window {row['window']}"
        out.append(f"{name}: expected purchases {row['purchases']:,.1f}, value {row['value']:,.2f}{band}")
    return out


def band_of_metrics(metrics: dict) -> dict | None:
    """The band of the totals from a run's metrics (:func:`clv_forecast.engines.tables.value_coverage`), or None."""
    if "clv_total_lower" not in metrics:
        return None
    return {"level": metrics["band_level"], "method": metrics.get("band_method", "delta"),
            "customers": metrics["clv_customers"],
            "clv": {"total": metrics["clv_total"], "lower": metrics["clv_total_lower"],
                    "upper": metrics["clv_total_upper"]},
            "expected_purchases": {"total": metrics["expected_purchases_total"],
                                   "lower": metrics["expected_purchases_total_lower"],
                                   "upper": metrics["expected_purchases_total_upper"]}}


def summary_section(metrics: dict, value: dict) -> "Section | None":
    """The report's first section: the totals over the customers (with the band of the totals when the run asked
    for an interval) and the settings they were computed with; None without a CLV total."""
    import pandas as pd

    if "clv_total" not in metrics:
        return None
    band = band_of_metrics(metrics)
    rows = {"customers with a CLV": {"estimate": float(metrics["clv_customers"])},
            "total CLV": {"estimate": metrics["clv_total"]}}
    if "expected_purchases_total" in metrics:
        rows["total expected purchases"] = {"estimate": metrics["expected_purchases_total"]}
    level = ""
    if band is not None:
        level = f"{band['level']:.0%}"
        for key, q in (("total CLV", "clv"), ("total expected purchases", "expected_purchases")):
            rows[key].update({f"{level} lower": band[q]["lower"], f"{level} upper": band[q]["upper"]})
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "over the horizon"
    blocks = [f"Settings: {value_text(value)} (horizon, discount rate, discounting step, margin).", frame]
    if band is not None:
        blocks.append(f"The {level} band is the range of the totals that the uncertainty of the fitted parameters "
                      f"allows ({band.get('method', 'delta')} method); the customers share the parameters, so it is "
                      "not the sum of the per-customer intervals. It does not include the randomness of what each "
                      "customer will do.")
    return Section("Summary", blocks)


def interval_columns(table, level) -> "pd.DataFrame":
    """``table``'s forecasts with their intervals as one text column each (``<forecast> <level> interval``:
    ``lower - upper``, unbroken), placed after the forecast; the bound columns themselves dropped."""
    from .uncertainty import QUANTITIES

    out = table.copy()
    for q in QUANTITIES:
        lo, hi = f"{q}_lower", f"{q}_upper"
        if q in out and lo in out and hi in out:
            text = [("" if (a != a or b != b) else f"{_number(float(a))}\u00a0\u2013\u00a0{_number(float(b))}")
                    for a, b in zip(out[lo], out[hi])]
            position = list(out.columns).index(q) + 1
            out = out.drop(columns=[lo, hi])
            out.insert(min(position, len(out.columns)), f"{q} {level} interval", text)
    return out


def coverage_line(metrics: dict, value: dict) -> str:
    missing = metrics["clv_missing"]
    text = (f"total CLV ({value_text(value)}): "
            f"{metrics['clv_total']:,.2f} over {metrics['clv_customers']:,} customers")
    if missing:
        why = []
        if metrics.get("clv_missing_nonpositive_spend"):
            why.append(f"{metrics['clv_missing_nonpositive_spend']:,} repeat buyers with a non-positive mean "
                       "spend, outside the spend model")
        if metrics.get("clv_missing_infinite_spend"):
            why.append(f"{metrics['clv_missing_infinite_spend']:,} with an unbounded expected spend (p x + q <= 1)")
        if metrics.get("clv_missing_other"):
            why.append(f"{metrics['clv_missing_other']:,} whose CLV is not a finite number")
        text += f"; {missing:,} customers have no CLV ({'; '.join(why) or 'no finite value'})"
    if metrics.get("scores_nonfinite"):
        text += (f"; {metrics['scores_nonfinite']:,} customers with a CLV have another prediction that is not "
                 "finite (NaN or inf in the per-customer table)")
    band = band_of_metrics(metrics)
    if band is not None:
        text += "\n" + band_line(band)
    return text



@dataclass
class Figure:
    """A PNG image with its caption."""

    png: bytes
    caption: str = ""


@dataclass
class Note:
    """A paragraph that must be seen (a highlighted box), e.g. that the fitted model is not the one asked for."""

    text: str


@dataclass
class Section:
    """A titled part of the report; ``blocks`` are text (a paragraph), DataFrames (tables), :class:`Figure`
    objects, or lists of figures (shown side by side)."""

    title: str
    blocks: list = field(default_factory=list)


def _number(value: float) -> str:
    """Four significant digits, but never an exponent for ordinary sizes (-9,582.4, not -9.582e+03)."""
    if abs(value) >= 1000 and abs(value) < 1e15:
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    return f"{value:.4g}"


def _table(frame) -> str:
    import numpy as np
    import pandas as pd

    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    named_index = any(name is not None for name in frame.index.names)
    head = [html.escape(" / ".join(str(n) for n in frame.index.names if n is not None))] if named_index else []
    cells = ["<tr>" + "".join(f"<th>{h}</th>" for h in head)]
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
        cells.append(f"<th class=\"{'num' if numeric else ''}\">{html.escape(str(column))}</th>")
    cells.append("</tr>")
    for index, row in frame.iterrows():
        cells.append("<tr>")
        if named_index:
            label = " / ".join(map(str, index)) if isinstance(index, tuple) else str(index)
            cells.append(f"<td>{html.escape(label)}</td>")
        for value in row:
            if isinstance(value, (float, np.floating)):
                text = "" if np.isnan(value) else _number(float(value))
                cells.append(f"<td class=\"num\">{text}</td>")
            elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                cells.append(f"<td class=\"num\">{int(value):,}</td>")
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        cells.append("</tr>")
    return "<div class=\"scroll\"><table>" + "".join(cells) + "</table></div>"


def _figure(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    caption = html.escape(fig.caption)
    return (f"<figure><img alt=\"{caption}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{caption}</figcaption></figure>")


def _block(block) -> str:
    if block is None:
        return ""
    if isinstance(block, str):
        return f"<p>{html.escape(block)}</p>"
    if isinstance(block, Note):
        return f"<p class=\"note\">{html.escape(block.text)}</p>"
    if isinstance(block, Figure):
        return _figure(block)
    if isinstance(block, list):
        return "<div class=\"grid\">" + "".join(_block(b) for b in block) + "</div>"
    return _table(block)


def render(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole HTML document: inline CSS, no script, no external resource."""
    body = [f"<header><h1>{html.escape(title)}</h1><p class=\"sub\">{html.escape(subtitle)}</p></header>"]
    for section in sections:
        body.append(f"<section><h2>{html.escape(section.title)}</h2>")
        body.extend(_block(b) for b in section.blocks)
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


def write(path, document: str) -> Path:
    """Write the report atomically (temporary file + rename)."""
    from ._io import atomic_write_text

    return atomic_write_text(path, document)


def _parameters(model):
    frame = model.summary_frame().reset_index()
    names = {sub.kind: sub.name for _, sub in model.parts()}  # the display name of each kind
    frame["model"] = frame["model"].map(names)
    return frame.rename(columns={"std_err": "std err", "lower": "95% lower", "upper": "95% upper"}).set_index(
        ["model", "param"])


def _fit_stats(model):
    import pandas as pd

    rows = {}
    for key, stats in model.fit_stats().items():
        rows[stats["model"]] = {
            "customers": int(stats["customers"]), "unique rows": stats["unique_rows"],
            "log-likelihood": stats["log_likelihood"], "AIC": stats["aic"], "BIC": stats["bic"],
            "converged": str(stats["converged"]), "iterations": stats["iterations"]}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "model"
    return frame


def method_label(method: str, model) -> str:
    """A backtest method's display label: ``predictive`` is the run's model (``predictive: BG/NBD``), a
    tournament row ``predictive:<kind>`` that model's name (``predictive: NBD``); the formulas keep theirs."""
    if method == "predictive":
        return f"predictive: {model.purchases_.name}"
    if method.startswith("predictive:"):
        from . import estimators

        kind = method.split(":", 1)[1]
        try:
            return f"predictive: {estimators.get(kind, 'purchases').name}"
        except Exception:  # a kind this version does not know (a table read back): its key
            return method
    return method


def selection_section(model) -> "Section | None":
    """The ranking of ``purchases = "auto"``: what was compared, on what, the table, and why the winner won."""
    import pandas as pd

    from .estimators.selection import CRITERIA

    selection = getattr(model, "selection_", None)
    if selection is None:
        return None
    t = selection.table
    holdout = selection.holdout_duration is not None and "holdout_rmse" in t and t["holdout_rmse"].notna().any()
    frame = pd.DataFrame({
        "rank": [("" if r != r else f"{r:.0f}") for r in t["rank"]],
        "model": [m if f == m else f"{m} -> {f}" for m, f in zip(t["model"], t["fitted"])],
        "parameters": t["k"].astype("Int64"), "log-likelihood": t["log_likelihood"], "AIC": t["aic"], "BIC": t["bic"]},
        index=pd.Index(t.index, name="kind"))
    if holdout:
        frame["holdout MAE"] = t["holdout_mae"]
        frame["holdout RMSE"] = t["holdout_rmse"]
        frame["holdout total error %"] = t["holdout_total_error_pct"]
        frame["by-frequency error"] = t["by_frequency_error"]
    frame["note"] = t["note"].fillna("")
    how = (f"Every purchase model was fitted on the same calibration statistics and ranked by its "
           f"{CRITERIA[selection.criterion][1]}"
           + (f" over the {selection.holdout_duration:.4g} {model.time_unit_} holdout (the expected purchases of "
              "each customer against what he bought; MAE, the total error and the error of the purchases-by-"
              "frequency chart beside it)" if holdout else
              " (k ln n - 2 log-likelihood: a richer model must gain more likelihood than its extra parameters "
              "cost); AIC beside it")
           + ". Unreliable fits cannot win; a fit on a boundary is the simpler model it reaches.")
    return Section("Model selection", [how, frame, Note(f"Chosen: {selection.reason}.")])


def run_report(result, *, accounting: list[str], periods: str, comparison=None, backtest=None,
               figures: dict[str, Any] | None = None) -> str:
    """The report of a pipeline run (:class:`clv_forecast.experiment.RunResult`).

    ``accounting`` and ``periods`` are the lines the CLI prints (one wording for both); ``comparison`` and
    ``backtest`` come from :mod:`clv_forecast.compare`; ``figures`` maps captions to PNG bytes.
    """
    import pandas as pd

    spec, model, metrics = result.spec, result.model, result.metrics
    source = spec["data"]["source"]
    source = "CDNOW sample (bundled)" if source == "cdnow_sample" else Path(str(source)).name
    sections = [Section("Data", [*accounting, periods])]
    if spec.get("value") is not None:
        interval = spec["value"].get("interval")
        sections[0].blocks.append(f"CLV settings: {value_text(spec['value'])}"
                                  + (f", interval {float(interval):g}" if interval else ""))
    params = Section("Model: parameters and fit", [_parameters(model), _fit_stats(model)])
    line = model.boundary_line() if hasattr(model, "boundary_line") else None
    if line:  # the purchase part is not the model asked for: said next to its parameters
        params.blocks[:0] = [Note(f"{line}. Diagnosis: {model.boundary_['reason']}.")]
    for problem in getattr(model, "problems_", []) or []:
        params.blocks.append(f"Unreliable fit: {problem}")
    sections.append(params)
    chosen = selection_section(model)
    if chosen is not None:
        sections.append(chosen)
    if result.holdout is not None:
        sections.append(Section("Holdout check", [holdout_line(metrics, model.time_unit_)]))
    windows = windows_section(result)
    if windows is not None:
        sections.append(windows)
    if backtest is not None:
        labelled = backtest.metrics.rename(index=lambda m: method_label(m, model))
        blocks = ["Every method computed on the calibration period only, scored against what each customer "
                  "really spent in the holdout period (nothing is tuned on the holdout). Every purchase model with "
                  "a reliable fit is scored with the same spend model; gini is the Gini coefficient of the gains "
                  "chart relative to a perfect ranking (1: ranked exactly as they turned out, 0: random).", labelled]
        purchases = getattr(backtest, "purchases", None)
        if purchases is not None:  # the means; the totals are in the CSV / Parquet tables
            keep = [c for c in purchases.columns if c in ("frequency", "customers") or c.endswith("_mean")]
            names = {c: ("actual" if c == "actual_mean" else method_label("predictive", model) if c == "predicted_mean"
                         else method_label(c[:-len("_mean")], model)) for c in keep if c.endswith("_mean")}
            blocks += ["Mean holdout purchases per customer by calibration frequency, actual and as each method "
                       "expects them:", purchases[keep].set_index("frequency").rename(columns=names)]
        sections.append(Section("Backtest: historical formulas vs the predictive model", blocks))
    if figures:
        sections.append(Section("Plots", [[Figure(png, caption) for caption, png in figures.items()]]))
    if comparison is not None:
        sections.append(Section("Historical vs predictive CLV by segment", [comparison.segments]))
        spearman = getattr(comparison, "spearman", None)
        if spearman is not None:
            frame = pd.DataFrame({"spearman": pd.Series(spearman)})
            frame.index.name = "historical method"
            sections.append(Section("Rank agreement with the predictive CLV (Spearman)", [frame]))
        sections.append(Section("Customers on whom the methods disagree most", [comparison.disagreements]))
    table = result.predictions
    if table is not None and "clv" in table:
        value = spec["value"]
        top = table.sort_values("clv", ascending=False, na_position="last").head(int(value.get("top") or 10))
        from .uncertainty import INTERVAL_COLUMNS

        columns = [c for c in ("frequency", "recency", "T", "monetary_value", "p_alive", "expected_purchases",
                               "expected_spend", "clv", *INTERVAL_COLUMNS) if c in top]
        level = f"{float(value['interval']):.0%}" if value.get("interval") else ""
        sections.append(Section(
            f"Top {len(top)} customers by CLV ({value_text(value)})",
            [interval_columns(top[columns], level)]))
        if "clv_total" in metrics:
            sections[-1].blocks.extend(coverage_line(metrics, value).split("\n"))
    summary = summary_section(metrics, spec.get("value") or {})
    if summary is not None:  # first: what an analyst looks for
        sections.insert(0, summary)
    warned = list(dict.fromkeys(" ".join(str(getattr(w, "template", w)).replace("{{", "").replace("}}", "").split())
                                for w in (getattr(result, "warnings", None) or [])))
    if warned:  # what the run warned about (data outside a model, a figure a model cannot draw), as the CLI prints it
        sections.append(Section("Warnings", warned))
    problems = list(getattr(model, "problems_", []) or [])
    if problems:  # a model kept with --save-unreliable ([output] save_unreliable): said first, before its numbers
        sections.insert(0, Section("Unreliable model: its estimates and forecasts cannot be trusted",
                                   [*problems, "It was kept because the run asked for it (--save-unreliable, "
                                               "[output] save_unreliable = true)."]))
    title = f"clv-forecast: experiment {spec.get('name') or ''}".strip()
    return render(title, f"{source}; time unit {model.time_unit_}", sections)
