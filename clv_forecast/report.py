"""One self-contained HTML report of a run: no network request, images embedded as PNG data URIs.

:func:`render` turns a list of :class:`Section` objects (paragraphs, tables, figures) into one HTML
document with inline CSS and no script; :func:`run_report` builds the sections of a pipeline run
(parameters with standard errors, row accounting, holdout check, backtest table, plots, segment table,
top customers and the customers on whom the methods disagree most) from the run's results view, and
:func:`write` saves it atomically. Everything shown comes from the same objects the CLI prints.

The report is written for a reader who has not seen the README: a summary first (customers, total CLV with its
band, expected purchases, who won the backtest and by how much), every table as a :class:`Table` with labelled
columns, units, one number format per kind of quantity (:data:`FORMATS`) and its definitions beside it, money in
the run's currency (``[data] currency``, ``--currency``; else "money units"), durations in words. :func:`fragment`
renders the same blocks without the document: the notebooks' ``_repr_html_`` of models, estimators, the backtest,
the comparison and the model selection.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Section", "Figure", "Table", "Note", "Facts", "render", "fragment", "run_report", "write", "accounting_lines",
           "periods_line", "holdout_line", "money_label", "check_currency",
           "coverage_line"]

_CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2933;
       margin: 0; background: #f5f7fa; line-height: 1.45; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; overflow-wrap: anywhere; }
header { border-bottom: 3px solid #3e7cb1; margin-bottom: 16px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 19px; margin: 28px 0 8px; color: #243b53; border-bottom: 1px solid #d9e2ec; padding-bottom: 4px; }
p.sub { color: #52606d; margin: 0 0 12px; }
p.note { border-left: 4px solid #d9822b; background: #fff8ec; padding: 6px 12px; }
p, li { font-size: 14px; }
ul.facts { padding-left: 20px; }
ul.facts li { margin: 4px 0; font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e4e7eb; }
th { background: #f0f4f8; text-align: left; font-weight: 600; overflow-wrap: normal; }
td { overflow-wrap: normal; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 12px 0 20px; min-width: 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e4e7eb; }
figcaption { font-size: 13px; color: #52606d; margin-top: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(480px, 100%), 1fr)); gap: 8px 24px; }
.grid > * { min-width: 0; }
.note { font-size: 13px; color: #52606d; }
.scroll { overflow-x: auto; max-width: 100%; }
dl.defs { font-size: 12.5px; color: #3e4c59; margin: 4px 0 16px; display: grid;
          grid-template-columns: minmax(0, max-content) minmax(0, 1fr); gap: 2px 12px; }
dl.defs dt { font-weight: 600; }
dl.defs dd { margin: 0; }
p.foot { font-size: 12.5px; color: #3e4c59; margin: 2px 0 12px; }
.warn { color: #9b2c2c; }
@media (max-width: 640px) {
  main { padding: 12px 12px 32px; }
  h1 { font-size: 21px; }
  dl.defs { grid-template-columns: minmax(0, 1fr); }
  dl.defs dd { margin: 0 0 6px; }
}
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
    from .units import readable_duration

    return (f"holdout of {readable_duration(metrics['holdout_duration'], time_unit)}: purchases predicted "
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


def coverage_line(metrics: dict, value: dict) -> str:
    """The CLV total with its settings and the customers without a CLV (and why), then the band of the totals
    (the CLI prints it, the report shows it under the top customers)."""
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



# --------------------------------------------------------------------------------------------
# the blocks of a report, and their HTML
# --------------------------------------------------------------------------------------------


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
class Facts:
    """A few plain sentences shown as a list (the summary's key facts)."""

    items: list


@dataclass
class Table:
    """A table with what a reader needs beside it: ``frame`` (columns already labelled), ``kinds`` (column label
    -> kind of quantity, a key of :data:`FORMATS`: one number format per kind), ``definitions`` (term -> meaning,
    shown under the table) and ``notes`` (footnotes)."""

    frame: Any
    kinds: dict = field(default_factory=dict)
    definitions: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


@dataclass
class Section:
    """A titled part of the report; ``blocks`` are text (a paragraph), DataFrames or :class:`Table` objects
    (tables), :class:`Figure` objects, lists of figures (shown side by side), :class:`Note` and :class:`Facts`."""

    title: str
    blocks: list = field(default_factory=list)


#: one number format per kind of quantity (a :class:`Table`'s ``kinds``)
FORMATS = {
    "money": lambda v: f"{v:,.2f}",
    "count": lambda v: f"{v:,.0f}",
    "purchases": lambda v: f"{v:,.2f}",
    "probability": lambda v: f"{v:.3f}",
    "share": lambda v: f"{100 * v:.1f}\u00a0%",
    "percent": lambda v: f"{v:,.1f}\u00a0%",
    "score": lambda v: f"{v:.3f}",
    "time": lambda v: f"{v:,.1f}",
    "fit": lambda v: f"{v:,.1f}",
}
#: the kind of a text column that holds ranges of numbers (``lower - upper``): kept on one line, right-aligned
INTERVAL = "interval"

#: the neutral label of money when the report was not told the currency
NEUTRAL_MONEY = "money units"


def check_currency(value) -> str | None:
    """The currency of a run's amounts as given (``--currency``, ``[data] currency``): a code or a symbol of 1 to
    12 printable characters (``EUR``, ``€``, ``US$``); None when not given. Anything else is one line."""
    if value is None:
        return None
    from .errors import ClvInputError

    text = str(value).strip()
    if not (0 < len(text) <= 12) or not text.isprintable():
        raise ClvInputError("must be a currency code or symbol of 1 to 12 printable characters, e.g. EUR or €",
                            argument="currency", value=value)
    return text


def money_label(currency=None) -> str:
    """How money is labelled: the currency given, else the neutral ``money units`` (the amounts' own unit, which
    the report was not told)."""
    return check_currency(currency) or NEUTRAL_MONEY


def _number(value: float) -> str:
    """Four significant digits, but never an exponent for ordinary sizes (-9,582.4, not -9.582e+03)."""
    if abs(value) >= 1000 and abs(value) < 1e15:
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    return f"{value:.4g}"


def _cell(value, kind: str | None) -> tuple[str, bool]:
    """A cell's text and whether it is a number (right-aligned): ``kind``'s format, else four significant
    digits; a missing number is empty (without a kind) or ``n/a``."""
    import numpy as np

    if isinstance(value, (float, np.floating, int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        number = float(value)
        if number != number:
            return ("n/a" if kind else ""), True
        if kind in FORMATS:
            return FORMATS[kind](number), True
        if isinstance(value, (int, np.integer)):
            return f"{int(value):,}", True
        return _number(number), True
    return str(value), kind == INTERVAL


def _table(frame, kinds: dict | None = None) -> str:
    import pandas as pd

    frame = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    kinds = kinds or {}
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
        for column, value in zip(frame.columns, row):
            text, numeric = _cell(value, kinds.get(column))
            cells.append(f"<td class=\"num\">{html.escape(text)}</td>" if numeric else f"<td>{html.escape(text)}</td>")
        cells.append("</tr>")
    return "<div class=\"scroll\"><table>" + "".join(cells) + "</table></div>"


def _definitions(definitions: dict) -> str:
    if not definitions:
        return ""
    items = "".join(f"<dt>{html.escape(str(term))}</dt><dd>{html.escape(str(text))}</dd>"
                    for term, text in definitions.items())
    return f"<dl class=\"defs\">{items}</dl>"


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
    if isinstance(block, Facts):
        return "<ul class=\"facts\">" + "".join(f"<li>{html.escape(str(t))}</li>" for t in block.items) + "</ul>"
    if isinstance(block, Figure):
        return _figure(block)
    if isinstance(block, Table):
        notes = "".join(f"<p class=\"foot\">{html.escape(str(n))}</p>" for n in block.notes)
        return _table(block.frame, block.kinds) + notes + _definitions(block.definitions)
    if isinstance(block, list):
        return "<div class=\"grid\">" + "".join(_block(b) for b in block) + "</div>"
    return _table(block)


def _sections(sections: list[Section], heading: str = "h2") -> str:
    out = []
    for section in sections:
        out.append(f"<section><{heading}>{html.escape(section.title)}</{heading}>")
        out.extend(_block(b) for b in section.blocks)
        out.append("</section>")
    return "".join(out)


def render(title: str, subtitle: str, sections: list[Section]) -> str:
    """The whole HTML document: inline CSS, no script, no external resource."""
    header = f"<header><h1>{html.escape(title)}</h1><p class=\"sub\">{html.escape(subtitle)}</p></header>"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body><main>{header}{_sections(sections)}</main></body></html>\n")


def fragment(sections: list[Section]) -> str:
    """The sections as an HTML fragment (a notebook's rich display, ``_repr_html_``): the report's own blocks and
    tables, headings as ``h4``, no document, style or script around them."""
    return f"<div class=\"clv-forecast\">{_sections(sections, 'h4')}</div>"


def write(path, document: str) -> Path:
    """Write the report atomically (temporary file + rename)."""
    from ._io import atomic_write_text

    return atomic_write_text(path, document)


# --------------------------------------------------------------------------------------------
# words: units, settings, columns
# --------------------------------------------------------------------------------------------


def _units_word(time_unit) -> str:
    """``weeks`` for W, ``2W periods`` for 2W: what a number of the model's time units is called."""
    from .units import _UNIT_WORDS, TimeUnit

    if time_unit is None:
        return "time units"
    unit = TimeUnit.parse(time_unit)
    return f"{_UNIT_WORDS[unit.base]}s" if unit.n == 1 else f"{unit} periods"


def settings_text(value: dict | None) -> str:
    """The CLV settings in words: ``horizon 12 months (365 days), discounted at 10 % per year in steps of 1 month
    (30.4 days), margin 1``."""
    from .units import Rate, readable_duration, value_settings_of

    s = value_settings_of(value)
    return (f"horizon {readable_duration(s['horizon'])}, discounted at {Rate.parse(s['discount_rate']).readable()} "
            f"in steps of {readable_duration(s['step'])}, margin {s['margin']}")


_MARGIN = "margin: the share of revenue counted as value (1: the value is the revenue)"


def customer_columns(money: str, time_unit, horizon: str) -> dict:
    """The per-customer columns: raw name -> (label, kind, definition)."""
    units = _units_word(time_unit)
    return {
        "frequency": ("repeat purchases", "count", "purchases after the customer's first one, in the calibration "
                                                   "period (purchases merged at the run's resolution count once)"),
        "recency": (f"recency ({units})", "time", "time from the customer's first purchase to his last one"),
        "T": (f"age T ({units})", "time", "time from the customer's first purchase to the end of his history"),
        "monetary_value": (f"mean purchase ({money})", "money", "mean value of the customer's repeat purchases"),
        "p_alive": ("P(alive)", "probability", "probability, under the purchase model, that the customer has not "
                                               "dropped out by the end of his history"),
        "expected_purchases": ("expected purchases", "purchases", f"expected number of purchases over the horizon "
                                                                  f"({horizon})"),
        "expected_spend": (f"expected spend per purchase ({money})", "money",
                           "the spend model's expected value of one future purchase of the customer"),
        "clv": (f"CLV ({money})", "money", f"customer lifetime value over the horizon ({horizon}): margin x expected "
                                           "spend per purchase x the expected purchases of each step, each step "
                                           "discounted to the end of the history"),
    }


def backtest_columns(money: str) -> dict:
    """The backtest's metrics: raw name -> (label, kind, definition)."""
    return {
        "mae": (f"MAE ({money})", "money", "mean absolute error per customer: the average of |predicted holdout "
                                           "value - actual holdout value| [mae]"),
        "rmse": (f"RMSE ({money})", "money", "root mean squared error per customer: like MAE, but large misses weigh "
                                             "more [rmse]"),
        "total_error_pct": ("total error", "percent", "(predicted total - actual total) / actual total, in %: "
                                                      "negative is a forecast below what was spent [total_error_pct]"),
        "spearman": ("rank correlation", "score", "Spearman correlation of the predicted and actual values per "
                                                  "customer: 1 is the same order; n/a for a method that gives "
                                                  "everybody the same value [spearman]"),
        "top10_share": ("revenue of top 10 %", "share", "share of the actual holdout revenue bought by the 10 % of "
                                                        "customers the method ranks highest [top10_share]"),
        "top20_share": ("revenue of top 20 %", "share", "the same for the top 20 % [top20_share]"),
        "gini": ("Gini", "score", "Gini coefficient of the gains chart relative to a perfect ranking: 1 ranks the "
                                  "customers exactly as they turned out, 0 is no better than random [gini]"),
    }


def _label(frame, columns: dict, *, level: str = ""):
    """``frame`` with the known columns labelled, the kinds of the labelled columns and their definitions
    (interval columns ``<q> <level> interval`` labelled after their forecast)."""
    names, kinds, definitions = {}, {}, {}
    for column in frame.columns:
        raw = str(column)
        suffix = f" {level} interval" if level and raw.endswith(f" {level} interval") else ""
        base = raw[:-len(suffix)] if suffix else raw
        if base in columns:
            label, kind, text = columns[base]
            names[column] = label + suffix
            if suffix:
                kinds[label + suffix] = INTERVAL
            else:
                kinds[label] = kind
                definitions[label] = text
    if any(str(c).endswith(" interval") for c in frame.columns) and level:
        definitions[f"... {level} interval"] = (f"the forecast's {level} interval from the uncertainty of the "
                                                "fitted parameters (not of what the customer will do)")
    return frame.rename(columns=names), kinds, definitions


def _method_name(method: str, purchases_name: str) -> str:
    """A backtest method's display label: ``predictive`` is the run's model (``predictive: <its name>``), a
    tournament row ``predictive:<kind>`` that model's name; the formulas keep theirs."""
    if method == "predictive":
        return f"predictive: {purchases_name}" if purchases_name else method
    if method.startswith("predictive:"):
        from . import estimators

        kind = method.split(":", 1)[1]
        try:
            return f"predictive: {estimators.get(kind, 'purchases').name}"
        except Exception:  # a kind this version does not know (a table read back): its key
            return method
    return method


def method_label(method: str, model) -> str:
    """A backtest method's display label (:func:`_method_name` with ``model``'s purchase model)."""
    return _method_name(method, model.purchases_.name)


def _method_definitions(methods, purchases_name: str) -> dict:
    """The methods of a table in words: the predictive rows and each historical formula shown."""
    from .compare import METHOD_DESCRIPTIONS

    out = {}
    if any(str(m).startswith("predictive") for m in methods):
        out["predictive: <model>"] = ("the purchase model's expected purchases x the spend model's expected spend "
                                      "per purchase, from the calibration period" + (
                                          f"; predictive: {purchases_name} is this run's model, the other "
                                          "predictive rows the other purchase models fitted to the same data"
                                          if purchases_name else ""))
    for method in methods:
        if method in METHOD_DESCRIPTIONS:
            out[str(method)] = METHOD_DESCRIPTIONS[method]
    return out


def _p_alive_note(model, rows) -> str | None:
    """The footnote of a table that shows P(alive) = 1 for customers without a repeat purchase: why, in the
    purchase model's own words (:attr:`~clv_forecast.estimators.base.PurchaseModel.p_alive_without_repeat`).
    ``rows``: the P(alive) of those customers in the table (empty: no footnote)."""
    import numpy as np

    values = np.asarray(list(rows), dtype=float)
    if model is None or values.size == 0 or not np.any(values >= 1 - 1e-9):
        return None
    purchases = getattr(model, "purchases_", model)
    why = getattr(purchases, "p_alive_without_repeat", "") or "that is what the model gives them"
    return f"* P(alive) = 1 for the customers without a repeat purchase (repeat purchases 0). {purchases.name}: {why}."


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def parameters_blocks(parts) -> list:
    """The parameters table (estimates, standard errors, 95 % intervals) and the fit statistics of fitted
    models ``parts`` (``[(role, estimator)]``: :meth:`ClvModel.parts`, or one estimator): the report's "Model"
    tables and the notebooks' display of a model."""
    import pandas as pd

    frames = {sub.name: sub.result_.summary_frame() for _, sub in parts}
    params = pd.concat(frames, names=["model", "param"]).rename(
        columns={"std_err": "std err", "lower": "95% lower", "upper": "95% upper"})
    stats = {}
    for _, sub in parts:
        s = sub.result_.fit_stats()
        stats[sub.name] = {"customers": float(s["customers"]), "unique rows": s["unique_rows"],
                           "log-likelihood": s["log_likelihood"], "AIC": s["aic"], "BIC": s["bic"],
                           "converged": str(s["converged"]), "iterations": s["iterations"]}
    fit = pd.DataFrame.from_dict(stats, orient="index")
    fit.index.name = "model"
    return [Table(params, definitions={
                "estimate": "the maximum-likelihood estimate of the parameter",
                "std err": "its standard error (from the curvature of the log-likelihood at the maximum)",
                "95% lower / upper": "the 95 % interval, computed on the log scale (so always positive)"}),
            Table(fit, kinds={"customers": "count", "unique rows": "count", "log-likelihood": "fit", "AIC": "fit",
                              "BIC": "fit", "iterations": "count"},
                  definitions={"unique rows": "the distinct rows of the data the likelihood was evaluated on "
                                              "(customers with the same history share one)",
                               "AIC, BIC": "2k - 2 log-likelihood and k ln(customers) - 2 log-likelihood (k "
                                           "parameters): lower is better when models are compared on the same "
                                           "data"})]


def boundary_note(model) -> Note | None:
    """The note of a fit whose maximum is on a boundary (:meth:`ClvModel.boundary_line`), said once: what was
    asked for, where its maximum is, what was fitted instead (with its parameters), and the values the requested
    fit reached on its way there."""
    import re

    line = model.boundary_line() if hasattr(model, "boundary_line") else None
    if not line:
        return None
    b = model.boundary_
    reached = re.search(r"reached ((?:[A-Za-z_]+ = [-+0-9.eE]+(?:, )?)+)", str(b.get("reason", "")))
    text = f"{line}."
    if reached:
        text += f" On its way there the {b['name']} fit reached {reached.group(1).rstrip(', ')}."
    fitted = model.purchases_.name
    text += (f" At that boundary the {b['name']} model is the {fitted}, so the {fitted} is the model of this report: "
             "its parameters, with standard errors, are in the table below.")
    return Note(text)


def model_section(model) -> Section:
    """The report's "Model: parameters and fit" section."""
    blocks = parameters_blocks(model.parts())
    note = boundary_note(model)
    if note is not None:  # the purchase part is not the model asked for: said next to its parameters
        blocks.insert(0, note)
    for problem in getattr(model, "problems_", []) or []:
        blocks.append(f"Unreliable fit: {problem}")
    return Section("Model: parameters and fit", blocks)


def model_html(model) -> str | None:
    """A fitted model's parameters and fit statistics as an HTML fragment (``_repr_html_`` of
    :class:`~clv_forecast.model.ClvModel` and of every estimator); None before ``fit`` (the notebook then shows
    the text ``repr``)."""
    if hasattr(model, "parts"):
        if getattr(model, "purchases_", None) is None:
            return None
        return fragment([model_section(model)])
    if getattr(model, "result_", None) is None:
        return None
    blocks = parameters_blocks([(getattr(model, "role", ""), model)])
    blocks += [f"Unreliable fit: {p}" for p in model.result_.problems]
    return fragment([Section(f"{model.name}: parameters and fit", blocks)])


def selection_blocks(selection, time_unit=None) -> list:
    """The ranking of ``purchases = "auto"`` (:class:`~clv_forecast.estimators.selection.Selection`): what was
    compared, on what, the table, and why the winner won."""
    import pandas as pd

    from .estimators.selection import CRITERIA
    from .units import readable_duration

    t = selection.table
    holdout = selection.holdout_duration is not None and "holdout_rmse" in t and t["holdout_rmse"].notna().any()
    frame = pd.DataFrame({
        "rank": [("" if r != r else f"{r:.0f}") for r in t["rank"]],
        "model": [m if f == m else f"{m} -> {f}" for m, f in zip(t["model"], t["fitted"])],
        "parameters": t["k"].astype("Int64"), "log-likelihood": t["log_likelihood"], "AIC": t["aic"], "BIC": t["bic"]},
        index=pd.Index(t.index, name="kind"))
    kinds = {"log-likelihood": "fit", "AIC": "fit", "BIC": "fit"}
    if holdout:
        frame["holdout MAE (purchases)"] = t["holdout_mae"]
        frame["holdout RMSE (purchases)"] = t["holdout_rmse"]
        frame["holdout total error"] = t["holdout_total_error_pct"]
        frame["by-frequency error (purchases)"] = t["by_frequency_error"]
        kinds.update({"holdout MAE (purchases)": "purchases", "holdout RMSE (purchases)": "purchases",
                      "holdout total error": "percent", "by-frequency error (purchases)": "purchases"})
    frame["note"] = t["note"].fillna("")
    unit = time_unit or getattr(selection, "time_unit", None)
    window = (readable_duration(selection.holdout_duration, unit) if holdout and unit else
              f"{selection.holdout_duration:.4g} time units" if holdout else "")
    how = (f"Every purchase model was fitted on the same calibration statistics and ranked by its "
           f"{CRITERIA[selection.criterion][1]}"
           + (f" over the {window} holdout (the expected purchases of each customer against what he bought; MAE, "
              "the total error and the error of the purchases-by-frequency chart beside it)" if holdout else
              " (k ln n - 2 log-likelihood: a richer model must gain more likelihood than its extra parameters "
              "cost); AIC beside it")
           + ". Unreliable fits cannot win; a fit on a boundary is the simpler model it reaches.")
    definitions = {"parameters": "the number of parameters k"}
    if holdout:
        definitions["by-frequency error"] = ("the customer-weighted mean gap between predicted and actual mean "
                                             "holdout purchases over the calibration-frequency groups 0-6, 7+")
    return [how, Table(frame, kinds=kinds, definitions=definitions), Note(f"Chosen: {selection.reason}.")]


def selection_section(model) -> "Section | None":
    """The report's "Model selection" section of a model whose purchase model was chosen; None otherwise."""
    selection = getattr(model, "selection_", None)
    if selection is None:
        return None
    return Section("Model selection", selection_blocks(selection, model.time_unit_))


def selection_html(selection) -> str:
    """``_repr_html_`` of a :class:`~clv_forecast.estimators.selection.Selection`."""
    return fragment([Section("Model selection", selection_blocks(selection))])


def _best(metrics, rows, column: str, *, absolute: bool = False):
    values = metrics.loc[[r for r in metrics.index if r in rows], column].dropna()
    if values.empty:
        return None
    return (values.abs() if absolute else values).idxmin()


def backtest_facts(backtest, money: str = NEUTRAL_MONEY) -> list[str]:
    """The backtest in two sentences: which method had the smallest per-customer error and by how much it beat
    the best of the other kind (purchase models vs historical formulas), and how far the run's model and the
    best historical formula were from the actual total."""
    from .compare import HISTORICAL_METHODS
    from .units import readable_duration

    m = backtest.metrics
    name = getattr(backtest, "model_name", "")
    formulas = [r for r in m.index if r in HISTORICAL_METHODS]
    models = [r for r in m.index if r not in HISTORICAL_METHODS]
    window = readable_duration(backtest.horizon)
    best_model, best_formula = _best(m, models, "rmse"), _best(m, formulas, "rmse")
    out = []
    if best_model is not None and best_formula is not None:
        a, b = float(m.loc[best_model, "rmse"]), float(m.loc[best_formula, "rmse"])
        winner, loser = ((best_model, best_formula) if a <= b else (best_formula, best_model))
        w, lo = min(a, b), max(a, b)
        kind = "historical formula" if loser in HISTORICAL_METHODS else "purchase model"
        out.append(f"Backtest on the holdout period, {window}: the smallest error per customer (RMSE) was "
                   f"{_method_name(winner, name)}'s, {FORMATS['money'](w)} {money}; the best {kind}, "
                   f"{_method_name(loser, name)}, was {100 * (lo - w) / w:.1f} % higher ({FORMATS['money'](lo)}).")
    formula_total = _best(m, formulas, "total_error_pct", absolute=True)
    if "predictive" in m.index and formula_total is not None:
        def off(method):
            e = float(m.loc[method, "total_error_pct"])
            return f"{abs(e):.1f} % {'below' if e < 0 else 'above'}"
        out.append(f"On the holdout's total revenue: this run's model ({_method_name('predictive', name)}) was "
                   f"{off('predictive')} the actual; the historical formula closest on the total, {formula_total}, "
                   f"was {off(formula_total)}.")
    return out


def backtest_blocks(backtest, money: str = NEUTRAL_MONEY, purchases_name: str | None = None) -> list:
    """The backtest's tables with their definitions: every method's scores, then the mean holdout purchases by
    calibration frequency."""
    from .units import readable_duration

    name = getattr(backtest, "model_name", "") if purchases_name is None else purchases_name
    window = readable_duration(backtest.horizon)
    metrics = backtest.metrics.rename(index=lambda m: _method_name(str(m), name))
    frame, kinds, definitions = _label(metrics, backtest_columns(money))
    frame.index.name = "method"
    definitions.update(_method_definitions(backtest.metrics.index, name))
    blocks = [f"Every method computed on the calibration period only, then scored against what each customer "
              f"really spent in the holdout period ({window}; nothing is tuned on the holdout). A row is a method; "
              f"values are undiscounted holdout revenue in {money}, margin {backtest.settings.get('margin', 1):g}. "
              "Every purchase model with a reliable fit is scored with the same spend model.",
              Table(frame, kinds, definitions)]
    purchases = getattr(backtest, "purchases", None)
    if purchases is not None:  # the means; the totals are in the CSV / Parquet tables
        keep = [c for c in purchases.columns if c in ("frequency", "customers") or c.endswith("_mean")]
        names = {c: ("actual" if c == "actual_mean" else _method_name("predictive", name) if c == "predicted_mean"
                     else _method_name(c[:-len("_mean")], name)) for c in keep if c.endswith("_mean")}
        table = purchases[keep].set_index("frequency").rename(columns=names)
        table.index.name = "repeat purchases in calibration"
        blocks += [f"Mean holdout purchases per customer over the {window} holdout, by the number of repeat "
                   "purchases in the calibration period (a row: the customers with that many; 7+ together; total: "
                   "all customers), actual and as each method expects them:",
                   Table(table, kinds={c: ("count" if c == "customers" else "purchases") for c in table.columns})]
    return blocks


def backtest_html(backtest) -> str:
    """``_repr_html_`` of a :class:`~clv_forecast.compare.Backtest`: its summary sentences and tables."""
    return fragment([Section("Backtest: historical formulas vs the predictive model",
                             [Facts(backtest_facts(backtest)), *backtest_blocks(backtest)])])


def segments_blocks(comparison, money: str = NEUTRAL_MONEY, model=None) -> list:
    """The comparison by segment: mean CLV per customer of every method, P(alive), expected purchases."""
    from .compare import SEGMENT_CODES
    from .units import readable_duration

    name = getattr(comparison, "model_name", "")
    seg = comparison.segments
    columns = {"customers": ("customers", "count", "customers in the segment"),
               "p_alive": ("mean P(alive)", "probability", "mean probability, under the purchase model, that the "
                                                            "segment's customers have not dropped out"),
               "expected_purchases": ("mean expected purchases", "purchases", "mean expected purchases over the "
                                                                               "horizon")}
    for column in seg.columns:
        if str(column).startswith("clv_"):
            method = str(column)[4:]
            columns[column] = (f"{_method_name(method, name)} ({money})", "money", "")
    frame, kinds, definitions = _label(seg, columns)
    definitions = {k: v for k, v in definitions.items() if v}
    definitions.update(_method_definitions([str(c)[4:] for c in seg.columns if str(c).startswith("clv_")], name))
    definitions["segment"] = SEGMENT_CODES
    notes = []
    if "p_alive" in seg and "one-time" in seg.index:
        note = _p_alive_note(model, [seg.loc["one-time", "p_alive"]])
        notes += [note] if note else []
    horizon = readable_duration(comparison.horizon) if comparison.horizon else "the horizon"
    return [f"A row is a segment of customers; the money columns are the mean CLV per customer over {horizon} by "
            "each method.", Table(frame, kinds, definitions, notes)]


def comparison_html(comparison) -> str:
    """``_repr_html_`` of a :class:`~clv_forecast.compare.Comparison`: the segments and the rank agreement."""
    return fragment([Section("Historical vs predictive CLV by segment", segments_blocks(comparison)),
                     _spearman_section(comparison)])


def _spearman_section(comparison) -> Section:
    import pandas as pd

    frame = pd.DataFrame({"rank correlation with the predictive CLV": pd.Series(comparison.spearman)})
    frame.index.name = "historical method"
    return Section("Rank agreement with the predictive CLV (Spearman)", [Table(
        frame, kinds={"rank correlation with the predictive CLV": "score"},
        definitions={"rank correlation": "Spearman correlation of each method's CLV with the predictive CLV over the "
                                         "customers: 1 is the same order; n/a for a method that gives everybody the "
                                         "same value", **_method_definitions(list(frame.index), "")})])


def disagreements_blocks(comparison, money: str, model=None, time_unit=None) -> list:
    """The customers on whom a historical method and the predictive CLV disagree most."""
    from .compare import SEGMENT_CODES
    from .units import readable_duration

    dis = comparison.disagreements.drop(columns=["abs_gap"], errors="ignore")
    name = getattr(comparison, "model_name", "")
    horizon = readable_duration(comparison.horizon) if comparison.horizon else "the horizon"
    columns = {**customer_columns(money, time_unit, horizon),
               "clv_predictive": (f"predictive CLV ({money})", "money", "the CLV of this run's model"),
               "segment": ("segment", None, SEGMENT_CODES),
               "method": ("method", None, "the historical method farthest from the predictive CLV for the customer"),
               "gap": (f"gap ({money})", "money", "that method's CLV minus the predictive CLV")}
    frame, kinds, definitions = _label(dis, columns)
    kinds = {k: v for k, v in kinds.items() if v}
    frame.index.name = "customer"
    notes = []
    if "p_alive" in dis and "frequency" in dis:
        note = _p_alive_note(model, dis.loc[dis["frequency"] == 0, "p_alive"])
        notes += [note] if note else []
    definitions.update(_method_definitions(sorted(set(dis.get("method", []))), name))
    return ["A row is a customer (by id); the money columns are over the same horizon as the segments table.",
            Table(frame, kinds, definitions, notes)]


def windows_section(result, money: str = NEUTRAL_MONEY):
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
                          f"value ({money})": [r["value"] for r in rows]})
    kinds = {"expected purchases": "purchases", f"value ({money})": "money"}
    if level and rows and rows[0]["lower"] is not None:
        frame[f"{float(level):.0%} band: lower"] = [r["lower"] for r in rows]
        frame["upper"] = [r["upper"] for r in rows]
        kinds.update({f"{float(level):.0%} band: lower": "money", "upper": "money"})
    text = (f"The customers' total expected purchases and discounted value in each window of the horizon "
            f"({settings_text(value)}; {len(table):,} customers)"
            + (", with the band of each total from the parameters' uncertainty (the delta method; not a sum of the "
               "customers' intervals)" if level else "") + ".")
    return Section("Value by window", [text, Table(frame.set_index("window"), kinds, {
        "window": "a span of the horizon counted from the end of the history, e.g. 1-3Y: from 1 to 3 years"})])


def interval_columns(table, level, formats: dict | None = None) -> "pd.DataFrame":
    """``table``'s forecasts with their intervals as one text column each (``<forecast> <level> interval``:
    ``lower - upper``, unbroken), placed after the forecast; the bound columns themselves dropped. ``formats``:
    the kind of each forecast (:data:`FORMATS`; default four significant digits)."""
    from .uncertainty import QUANTITIES

    out = table.copy()
    for q in QUANTITIES:
        lo, hi = f"{q}_lower", f"{q}_upper"
        if q in out and lo in out and hi in out:
            fmt = FORMATS.get((formats or {}).get(q), _number)
            text = [("" if (a != a or b != b) else f"{fmt(float(a))}\u00a0\u2013\u00a0{fmt(float(b))}")
                    for a, b in zip(out[lo], out[hi])]
            position = list(out.columns).index(q) + 1
            out = out.drop(columns=[lo, hi])
            out.insert(min(position, len(out.columns)), f"{q} {level} interval", text)
    return out


def top_section(result, money: str) -> "Section | None":
    """The report's top customers by CLV, with every forecast's interval and the CLV total's line."""
    from .uncertainty import INTERVAL_COLUMNS
    from .units import readable_duration

    table = result.predictions
    if table is None or "clv" not in table:
        return None
    value, model, metrics = result.spec["value"], result.model, result.metrics
    top = table.sort_values("clv", ascending=False, na_position="last").head(int(value.get("top") or 10))
    columns = [c for c in ("frequency", "recency", "T", "monetary_value", "p_alive", "expected_purchases",
                           "expected_spend", "clv", *INTERVAL_COLUMNS) if c in top]
    level = f"{float(value['interval']):.0%}" if value.get("interval") else ""
    glossary = customer_columns(money, model.time_unit_, readable_duration(value["horizon"]))
    shown = interval_columns(top[columns], level, {q: kind for q, (_, kind, _) in glossary.items()})
    frame, kinds, definitions = _label(shown, glossary, level=level)
    frame.index.name = "customer"
    notes = []
    if "p_alive" in top and "frequency" in top:
        note = _p_alive_note(model, top.loc[top["frequency"] == 0, "p_alive"])
        notes += [note] if note else []
    blocks = [f"A row is a customer (by id), the {len(top)} with the highest CLV; {settings_text(value)}.",
              Table(frame, kinds, {**definitions, "margin": _MARGIN.split(": ", 1)[1]}, notes)]
    if "clv_total" in metrics:
        blocks.extend(coverage_line(metrics, value).split("\n"))
    return Section(f"Top {len(top)} customers by CLV", blocks)


def summary_section(metrics: dict, value: dict, *, backtest=None, money: str = NEUTRAL_MONEY) -> "Section | None":
    """The report's first section: the customers, the total CLV with its band when the run asked for an interval,
    the total expected purchases, the settings in words and, with a backtest, which method won and by how much;
    None without a CLV total."""
    from .units import readable_duration, value_settings_of

    if "clv_total" not in metrics:
        return None
    band = band_of_metrics(metrics)
    horizon = readable_duration(value_settings_of(value)["horizon"])
    clv = f"{FORMATS['money'](metrics['clv_total'])} {money}"
    purchases = metrics.get("expected_purchases_total")
    bought = None if purchases is None else FORMATS["purchases"](purchases)
    if band is not None:
        level = f"{band['level']:.0%}"
        clv += (f" ({level} band {FORMATS['money'](band['clv']['lower'])} to "
                f"{FORMATS['money'](band['clv']['upper'])})")
        if bought is not None:
            bought += (f" ({level} band {FORMATS['purchases'](band['expected_purchases']['lower'])} to "
                       f"{FORMATS['purchases'](band['expected_purchases']['upper'])})")
    facts = [f"Customers: {int(metrics['clv_customers']):,} with a CLV"
             + (f" ({int(metrics['clv_missing']):,} without one: see the top customers' section)"
                if metrics.get("clv_missing") else "") + ".",
             f"Total CLV over the next {horizon}: {clv}.",
             *([f"Total expected purchases over the next {horizon}: {bought}."] if bought is not None else []),
             *(backtest_facts(backtest, money) if backtest is not None else [])]
    blocks = [Facts(facts), f"Settings: {settings_text(value)}. CLV is the expected future value of each customer "
                            f"over the horizon, in {money}; {_MARGIN}."]
    if band is not None:
        blocks.append(f"The {level} band is the range of the totals that the uncertainty of the fitted parameters "
                      f"allows ({band.get('method', 'delta')} method); the customers share the parameters, so it is "
                      "not the sum of the per-customer intervals. It does not include the randomness of what each "
                      "customer will do.")
    return Section("Summary", blocks)


def run_report(result, *, accounting: list[str], periods: str, comparison=None, backtest=None,
               figures: dict[str, Any] | None = None) -> str:
    """The report of a pipeline run (:class:`clv_forecast.experiment.RunResult`).

    ``accounting`` and ``periods`` are the lines the CLI prints (one wording for both); ``comparison`` and
    ``backtest`` come from :mod:`clv_forecast.compare`; ``figures`` maps captions to PNG bytes. Money is labelled
    with the spec's ``[data] currency`` (``--currency``), else as ``money units``.
    """
    spec, model, metrics = result.spec, result.model, result.metrics
    money = money_label(spec["data"].get("currency"))
    source = spec["data"]["source"]
    source = "CDNOW sample (bundled)" if source == "cdnow_sample" else Path(str(source)).name
    data = Section("Data", [*accounting, periods, f"Money: amounts are in {money}" + (
        "" if money != NEUTRAL_MONEY else " (the data's own currency, which the report was not told: give "
                                          "--currency or [data] currency)") + "."])
    if spec.get("value") is not None:
        interval = spec["value"].get("interval")
        data.blocks.append(f"CLV settings: {value_text(spec['value'])}, that is {settings_text(spec['value'])}"
                           + (f"; interval {float(interval):.0%}" if interval else "") + ".")
    sections = [data, model_section(model)]
    chosen = selection_section(model)
    if chosen is not None:
        sections.append(chosen)
    if result.holdout is not None:
        sections.append(Section("Holdout check", [holdout_line(metrics, model.time_unit_),
                                                  "MAE and RMSE: the mean absolute and the root mean squared "
                                                  "difference per customer between predicted and actual holdout "
                                                  "purchases."]))
    windows = windows_section(result, money)
    if windows is not None:
        sections.append(windows)
    if backtest is not None:
        sections.append(Section("Backtest: historical formulas vs the predictive model",
                                backtest_blocks(backtest, money, model.purchases_.name)))
    if figures:
        sections.append(Section("Plots", [[Figure(png, caption) for caption, png in figures.items()]]))
    if comparison is not None:
        sections.append(Section("Historical vs predictive CLV by segment", segments_blocks(comparison, money, model)))
        if getattr(comparison, "spearman", None) is not None:
            sections.append(_spearman_section(comparison))
        sections.append(Section("Customers on whom the methods disagree most",
                                disagreements_blocks(comparison, money, model, model.time_unit_)))
    top = top_section(result, money)
    if top is not None:
        sections.append(top)
    summary = summary_section(metrics, spec.get("value") or {}, backtest=backtest, money=money)
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
    return render(title, f"{source}; time unit {model.time_unit_} ({_units_word(model.time_unit_)})", sections)
