"""Diagnostic plots of a fitted model: each function returns a matplotlib ``Figure``.

The figures are built with matplotlib's object-oriented API on the Agg canvas (no pyplot, no
global backend switch, no display needed), in one style, sized for 800 x 500 px at ``dpi=100``.
:func:`to_png` renders a figure to PNG bytes, :func:`save_png` writes one atomically.

This module is the only one that imports matplotlib; ``import clv_forecast`` never loads it.

Plots
-----
* :func:`frequency_histogram` - calibration repeat-purchase counts, actual vs BG/NBD.
* :func:`calibration_vs_holdout` - mean holdout purchases by calibration frequency, actual vs
  predicted (Fader, Hardie & Lee 2005, figure 4).
* :func:`tracking_plot` - repeat transactions per period (cumulative or not) over the calibration
  and holdout periods, actual vs model, from the raw transaction log.
* :func:`p_alive_heatmap`, :func:`expected_purchases_heatmap` - P(alive) and expected purchases over
  frequency x recency for customers of a given age T.
* :func:`p_alive_history` - one customer's P(alive) day by day, with the purchases marked.
* :func:`expected_purchases_curve` - E[X(t)] of a new customer (optionally against the data).
* :func:`heterogeneity` - the fitted Gamma (purchase rates) and Beta (dropout) distributions.
* :func:`clv_scatter` - two CLV columns of a per-customer table against each other.
* :func:`gains_chart` - cumulative share of actual revenue captured by the customers each score
  ranks first.
* :func:`retention_curve` - a contractual retention model (sBG): actual vs projected share of a cohort
  still customers, and actual vs projected retention rate, by period.

Units: ``model`` is a fitted :class:`~clv_forecast.model.ClvModel` (or its ``BetaGeoModel``,
``model.purchases_``); recency, T and horizons are read in the model's time unit, and an RFM table
from :func:`~clv_forecast.rfm.summarize` in another unit is converted to it.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import matplotlib
import numpy as np
import pandas as pd
import polars as pl
from matplotlib import dates as mdates
from matplotlib import ticker as mticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ._io import atomic_write
from .estimators._data import convert_times, rfm_arrays, time_unit_of
from .errors import ClvInputError
from .units import TimeUnit

__all__ = [
    "frequency_histogram", "calibration_vs_holdout", "tracking_plot", "p_alive_heatmap",
    "expected_purchases_heatmap", "p_alive_history", "expected_purchases_curve", "heterogeneity", "clv_scatter",
    "gains_chart", "retention_curve", "value_curve", "to_png", "save_png",
]

#: the one style of every figure (applied while a figure is built)
STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "lines.linewidth": 2.0,
    "image.cmap": "viridis",
}
#: colours: what happened vs what the model says, and a cycle for several methods
ACTUAL = "#33475b"
MODEL = "#e8730c"
REFERENCE = "#9aa5b1"
CYCLE = ("#1f77b4", "#e8730c", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FIGSIZE = (8.0, 5.0)

_NS_PER_DAY = 86_400 * 10**9


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


class _Figure(Figure):
    """A matplotlib ``Figure`` that a notebook shows inline as a PNG (``_repr_png_``) without pyplot or its inline
    backend: the figures here are built on the Agg canvas, outside pyplot, so IPython would otherwise print only
    their text form."""

    def _repr_png_(self) -> bytes:
        return to_png(self)


def _figure(figsize=None) -> Figure:
    fig = _Figure(figsize=figsize or FIGSIZE, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (``dpi=100``: a default 8 x 5 in figure is 800 x 500 px).

    At the figure's own resolution it is drawn once, by its canvas (the constrained layout, then the pixels),
    and those pixels are written: ``savefig`` would first lay the figure out in a draw of its own and then draw
    it again (the same pixels, a third more time). zlib's fastest level: a report's dozen figures in 2.4 CPU-s
    instead of 3.2, their bytes 6 % larger."""
    buffer = io.BytesIO()
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    if dpi != fig.dpi:  # (another resolution: matplotlib's own path)
        fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
        return buffer.getvalue()
    from matplotlib import image

    fig.canvas.draw()
    image.imsave(buffer, fig.canvas.buffer_rgba(), format="png", origin="upper", dpi=dpi,
                 pil_kwargs={"compress_level": 1})
    return buffer.getvalue()


def save_png(fig: Figure, path, dpi: int = 100):
    """Write the figure as a PNG file atomically (never a half-written file); returns the path."""
    data = to_png(fig, dpi=dpi)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _purchase_model(model):
    """The fitted purchase model of a ClvModel (or the purchase model given)."""
    purchases = getattr(model, "purchases_", None)
    if purchases is None and hasattr(model, "expected_purchases") and hasattr(model, "p_alive"):
        purchases = model
    if purchases is None:
        raise ClvInputError("not a fitted model: give a fitted ClvModel (or its purchase model, model.purchases_)",
                            argument="model", value=type(model).__name__)
    purchases.check_fitted()
    return purchases


def _model_unit(purchases) -> str | None:
    return getattr(purchases, "time_unit_", None)


def _period_name(unit) -> str:
    """``"week"`` for W, ``"2W period"`` for 2W: how one period of a time unit reads."""
    names = {"D": "day", "W": "week", "M": "month", "Y": "year", "h": "hour"}
    text = str(TimeUnit.parse(unit))
    return names.get(text, f"{text} period")


def _unit_days(purchases) -> float:
    """Length of the model's time unit in days (needed to place dated purchases on its time scale)."""
    unit = _model_unit(purchases)
    if unit is None:
        raise ClvInputError("the model's time unit is unknown: fit it with time_unit=... (or on a table from "
                            "summarize) to compare it with dated transactions", argument="model", value="no time unit")
    return TimeUnit.parse(unit).days


def _span(value: float, unit, given=None) -> str:
    """A length of ``value`` model time units as a title reads it: ``52.2 weeks (365 days)``, or the duration
    ``given`` with its own unit (``"12M"``: ``12 months (365 days)``; :func:`clv_forecast.units.readable_duration`);
    ``value model time units`` without a unit."""
    from .units import Duration, readable_duration

    if isinstance(given, (str, Duration)):
        return readable_duration(given)
    return f"{value:.3g} {_unit_text(unit)}" if unit is None else readable_duration(value, unit)


def _unit_text(unit) -> str:
    if unit is None:
        return "model time units"
    names = {"D": "days", "W": "weeks", "M": "months", "Y": "years", "h": "hours"}
    text = str(unit)
    return names.get(text, f"units of {text}")


def _frequency_bins(frequency: np.ndarray, max_frequency: int) -> tuple[np.ndarray, list[str]]:
    if int(max_frequency) != max_frequency or max_frequency < 1:
        raise ClvInputError("must be a whole number >= 1", argument="max_frequency", value=max_frequency)
    max_frequency = int(max_frequency)
    bins = np.minimum(frequency, max_frequency).astype(np.int64)
    labels = [str(k) for k in range(max_frequency)] + [f"{max_frequency}+"]
    return bins, labels


# --------------------------------------------------------------------------------------------
# 1. frequency histogram
# --------------------------------------------------------------------------------------------


def frequency_histogram(model, rfm: pd.DataFrame, max_frequency: int = 7, *, figsize=None) -> Figure:
    """Customers by number of repeat purchases in the calibration period: actual vs model.

    ``rfm``: the calibration RFM table the model was fitted on (``frequency``, ``recency``, ``T``;
    optional ``count`` weights of a compressed table). The model's bar for ``n`` is
    ``sum_i P(X(T_i) = n)`` (each customer at their own age T); the last bar gathers
    ``max_frequency`` and more.
    """
    with matplotlib.rc_context(STYLE):
        purchases = _purchase_model(model)
        data = rfm_arrays(rfm, model_unit=_model_unit(purchases), with_weights=True)
        bins, labels = _frequency_bins(data.frequency, max_frequency)
        k = len(labels)
        actual = np.bincount(bins, weights=data.weights, minlength=k)[:k]
        ages, where = np.unique(data.T, return_inverse=True)
        per_age = np.bincount(where, weights=data.weights)  # customers at each distinct T
        n = np.arange(k - 1, dtype=np.float64)
        prob = purchases.prob_purchases(n[:, None], ages[None, :])  # (n, distinct T)
        expected = prob @ per_age
        expected = np.append(expected, per_age.sum() - expected.sum())

        fig = _figure(figsize)
        ax = fig.add_subplot()
        x = np.arange(k)
        width = 0.4
        ax.bar(x - width / 2, actual, width, color=ACTUAL, label="actual", gid="actual")
        ax.bar(x + width / 2, expected, width, color=MODEL, label=f"model ({purchases.name})", gid="model")
        ax.set_xticks(x, labels)
        ax.set_xlabel("repeat purchases in the calibration period")
        ax.set_ylabel("customers")
        ax.set_title(f"Repeat purchases per customer: actual vs model ({data.weights.sum():,.0f} customers)")
        ax.legend()
        ax.grid(axis="x", visible=False)
    return fig


# --------------------------------------------------------------------------------------------
# 2. calibration vs holdout
# --------------------------------------------------------------------------------------------


def calibration_vs_holdout(model, rfm_split: pd.DataFrame, max_frequency: int = 7, *, figsize=None,
                           others=()) -> Figure:
    """Mean holdout purchases by calibration frequency: actual vs predicted (FHL 2005, fig. 4).

    ``rfm_split``: a table from ``summarize(..., calibration_end=...)`` with ``frequency``,
    ``recency``, ``T``, ``frequency_holdout`` and ``duration_holdout``. The prediction for each
    customer is E[purchases in (T, T + duration_holdout]], averaged within each frequency group.
    ``others``: more fitted models (the backtest's tournament), each drawn as a thinner line labelled with
    its purchase model's name.
    """
    with matplotlib.rc_context(STYLE):
        purchases = _purchase_model(model)
        for name in ("frequency_holdout", "duration_holdout"):
            if name not in rfm_split.columns:
                raise ClvInputError(f"RFM table: no {name!r} column; build it with summarize(..., calibration_end=...)")
        unit = _model_unit(purchases)
        data = rfm_arrays(rfm_split, model_unit=unit, with_weights=False)
        table_unit = time_unit_of(rfm_split, None)
        duration = convert_times(np.asarray(rfm_split["duration_holdout"], dtype=np.float64), table_unit, unit)
        holdout = np.asarray(rfm_split["frequency_holdout"], dtype=np.float64)
        bins, labels = _frequency_bins(data.frequency, max_frequency)
        k = len(labels)
        counts = np.bincount(bins, minlength=k)[:k]

        def mean_predicted(pm) -> np.ndarray:
            predicted = np.empty(len(data))
            for d in np.unique(duration):  # one evaluation per distinct holdout length
                rows = duration == d
                predicted[rows] = pm.conditional_expected_purchases(
                    float(d), frequency=data.frequency[rows], recency=data.recency[rows], T=data.T[rows])
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.bincount(bins, weights=predicted, minlength=k)[:k] / counts

        with np.errstate(invalid="ignore", divide="ignore"):
            actual_mean = np.bincount(bins, weights=holdout, minlength=k)[:k] / counts
        predicted_mean = mean_predicted(purchases)

        fig = _figure(figsize)
        ax = fig.add_subplot()
        x = np.arange(k)
        ax.plot(x, actual_mean, "o-", color=ACTUAL, label="actual", gid="actual")
        ax.plot(x, predicted_mean, "s--", color=MODEL, label=f"model ({purchases.name})", gid="model")
        for i, other in enumerate(others):
            pm = _purchase_model(other)
            ax.plot(x, mean_predicted(pm), ":", marker="^v<>dp"[i % 6], color=REFERENCE, linewidth=1.2,
                    label=f"model ({pm.name})", gid=f"model:{pm.kind}")
        ax.set_xticks(x, [f"{lab}\nn={c:,}" for lab, c in zip(labels, counts)])
        ax.set_xlabel("repeat purchases in the calibration period (n = customers)")
        lengths = np.unique(duration)
        span = (_span(float(lengths[0]), unit) if len(lengths) == 1
                else f"{lengths.min():g}-{lengths.max():g} {_unit_text(unit)}")
        ax.set_ylabel("mean purchases in the holdout period")
        ax.set_title(f"Holdout purchases by calibration frequency (holdout {span})")
        ax.set_ylim(bottom=0)
        ax.legend()
    return fig


# --------------------------------------------------------------------------------------------
# 3. tracking plot (from the raw log)
# --------------------------------------------------------------------------------------------


def _purchase_days(transactions, read_options: dict) -> pl.DataFrame:
    """One row per (customer, day with a purchase): ``customer_id``, ``day`` (days since 1970-01-01)."""
    from .transactions import _is_standard, read_transactions

    frame = transactions if _is_standard(transactions) else read_transactions(transactions, **read_options)
    if "amount" in frame.columns:  # returns="net" keeps the returns in the frame: they are no purchases
        frame = frame.filter(pl.col("amount") >= 0)
    stamp = pl.col("timestamp")
    if getattr(frame.schema["timestamp"], "time_zone", None) is not None:
        stamp = stamp.dt.replace_time_zone(None)  # wall-clock time in its zone, as summarize reads it
    return frame.select(pl.col("customer_id"), stamp.dt.date().cast(pl.Int32).alias("day")).unique()


def _end_day(value, option: str, date_format: str | None) -> int:
    """The last included day (days since 1970-01-01) of an end given as summarize takes it."""
    from .rfm import _parse_point

    return int(_parse_point(value, option, date_format, None).last_ns // _NS_PER_DAY)


def _days_to_dates(days) -> np.ndarray:
    return np.asarray(days, dtype="int64").astype("datetime64[D]")


def _tracking_data(models, transactions, calibration_end, time_unit, observation_end, read_options):
    """Period ends, actual cumulative repeat transactions, each model's expected cumulative curve (one per
    model of ``models``), the calibration end (exclusive day) and the first day."""
    days = _purchase_days(transactions, read_options)
    date_format = read_options.get("date_format")
    cal_last = _end_day(calibration_end, "calibration_end", date_format)
    obs_last = (int(days.get_column("day").max()) if observation_end is None
                else _end_day(observation_end, "observation_end", date_format))
    if obs_last <= cal_last:
        raise ClvInputError("must be after the calibration end", argument="observation_end", value=observation_end)
    days = days.filter(pl.col("day") <= obs_last)
    first = days.group_by("customer_id").agg(pl.col("day").min().alias("first"))
    first_day = first.get_column("first").to_numpy()
    if first_day.size == 0 or first_day.min() > cal_last:
        raise ClvInputError("no customer made a purchase by the calibration end", argument="calibration_end",
                            value=calibration_end)
    repeats = (days.join(first, on="customer_id").filter(pl.col("day") > pl.col("first"))
               .get_column("day").to_numpy())
    period = TimeUnit.parse(time_unit).days
    start, cal_excl, obs_excl = int(first_day.min()), cal_last + 1, obs_last + 1
    # periods anchored at the calibration end (CDNOW: weeks from 1997-01-01), clipped to the data
    k_lo = -math.ceil((cal_excl - start) / period - 1e-9)
    k_hi = math.ceil((obs_excl - cal_excl) / period - 1e-9)
    ends = np.unique(np.clip([cal_excl + round(k * period) for k in range(k_lo + 1, k_hi + 1)], start + 1, obs_excl))
    actual = np.searchsorted(np.sort(repeats), ends, side="left").astype(np.float64)  # repeats on days < end
    # model: a customer first seen on day d0 has, by the end e, an age of e - 1 - d0 days (summarize's T)
    cohort_days, cohort_size = np.unique(first_day, return_counts=True)
    curves = []
    for model in models:
        purchases = _purchase_model(model)
        age = (ends[None, :] - 1 - cohort_days[:, None]) / _unit_days(purchases)
        expected = purchases.expected_purchases(np.maximum(age, 0.0)) * (age >= 0)
        curves.append(cohort_size @ expected)
    return ends, actual, curves, cal_excl, start


def tracking_plot(model, transactions, *, calibration_end, time_unit="W", cumulative: bool = True,
                  observation_end=None, figsize=None, others=(), **read_options) -> Figure:
    """Repeat transactions per period over the calibration and holdout periods: actual vs model.

    ``transactions``: what :func:`~clv_forecast.transactions.read_transactions` accepts (a path, a
    pandas or polars frame; ``read_options`` such as ``customer_col``, ``date_col``,
    ``date_format``, ``amount_col`` are passed to it) or its standard frame. Purchases of a customer
    on one day are one purchase (as ``summarize(merge="D")``); a customer's first purchase is not a
    repeat transaction. ``calibration_end`` (and ``observation_end``, default the last purchase day)
    are read as ``summarize`` reads them; the vertical line marks the calibration end.

    Periods of ``time_unit`` are counted back and forth from the calibration end (CDNOW: weeks
    from 1997-01-01) and clipped to the data. The model's cumulative curve at the end of a period
    is ``sum_i E[X(age_i)]`` over the customers acquired by then, ``age_i`` the time since their
    first purchase (E[X(t)] of a newly acquired customer). ``cumulative=False``: repeat
    transactions in each period (the weekly tracking plot). ``others``: more fitted models (the backtest's
    tournament), each a thinner line labelled with its purchase model's name.
    """
    with matplotlib.rc_context(STYLE):
        ends, actual, curves, cal_excl, start = _tracking_data([model, *others], transactions, calibration_end,
                                                               time_unit, observation_end, read_options)
        model_cum = curves[0]
        period = _period_name(time_unit)
        fig = _figure(figsize)
        ax = fig.add_subplot()
        dates = _days_to_dates(ends - 1)  # the last day of each period
        if cumulative:
            y_actual, y_model = actual, model_cum
            ylabel, what = "cumulative repeat transactions", "Cumulative repeat transactions"
        else:
            y_actual, y_model = np.diff(actual, prepend=0.0), np.diff(model_cum, prepend=0.0)
            ylabel, what = f"repeat transactions per {period}", f"Repeat transactions per {period}"
        ax.plot(dates, y_actual, color=ACTUAL, label="actual", gid="actual")
        ax.plot(dates, y_model, color=MODEL, linestyle="--", label=f"model ({_purchase_model(model).name})", gid="model")
        for other, curve in zip(others, curves[1:]):
            pm = _purchase_model(other)
            y = curve if cumulative else np.diff(curve, prepend=0.0)
            ax.plot(dates, y, color=REFERENCE, linestyle=":", linewidth=1.2, label=f"model ({pm.name})",
                    gid=f"model:{pm.kind}")
        lengths = np.diff(ends, prepend=start)
        partial = lengths < math.floor(TimeUnit.parse(time_unit).days)  # clipped at the data's start or end
        if not cumulative and partial.any():
            ax.plot(dates[partial], y_actual[partial], "o", markerfacecolor="white", markeredgecolor=ACTUAL,
                    linestyle="none", label="shorter period (clipped at the data's start or end)", gid="partial")
        cal_date = _days_to_dates([cal_excl - 1])[0]
        ax.axvline(_days_to_dates([cal_excl])[0], color=REFERENCE, linestyle=":", linewidth=1.5,
                   label=f"calibration end ({cal_date})", gid="calibration_end")
        ax.set_xlabel(f"{period} ending")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{what}: actual vs model")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left" if cumulative else "upper right")
        locator = mdates.AutoDateLocator(maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return fig


# --------------------------------------------------------------------------------------------
# 4. frequency x recency heat maps
# --------------------------------------------------------------------------------------------


def _grid(purchases, rfm, max_frequency, max_recency, T):
    """Frequencies, recencies and T (model units) of a frequency x recency matrix."""
    data = None if rfm is None else rfm_arrays(rfm, model_unit=_model_unit(purchases), with_weights=False)
    if T is None:
        if data is None:
            raise ClvInputError("give the customers' age T (in the model's time unit), or rfm= to take the "
                                "oldest customers' T", argument="T", value=None)
        T = float(data.T.max())
    T = float(T)
    if not (math.isfinite(T) and T > 0):
        raise ClvInputError("must be positive", argument="T", value=T)
    if max_frequency is None:
        max_frequency = int(data.frequency.max()) if data is not None else max(10, math.ceil(T))
    if max_recency is None:
        max_recency = T
    max_recency = min(float(max_recency), T)
    if max_frequency < 1:
        raise ClvInputError("must be >= 1", argument="max_frequency", value=max_frequency)
    frequency = np.arange(int(max_frequency) + 1, dtype=np.float64)
    cells = min(int(math.floor(max_recency)) + 1, 80)
    recency = np.linspace(0.0, max_recency, cells)
    return frequency, recency, T


def _heatmap(values, frequency, recency, *, title, cbar_label, unit, figsize, vmin=None, vmax=None) -> Figure:
    fig = _figure(figsize)
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(values)

    def edges(centres):
        if len(centres) == 1:
            return np.array([centres[0] - 0.5, centres[0] + 0.5])
        mid = (centres[1:] + centres[:-1]) / 2
        return np.concatenate([[centres[0] - (mid[0] - centres[0])], mid, [centres[-1] + (centres[-1] - mid[-1])]])

    mesh = ax.pcolormesh(edges(recency), edges(frequency), masked, vmin=vmin, vmax=vmax, shading="flat")
    mesh.set_gid("matrix")
    cbar = fig.colorbar(mesh, ax=ax)
    cbar.set_label(cbar_label)
    ax.set_xlabel(f"recency: time of the last purchase after the first ({_unit_text(unit)})")
    ax.set_ylabel("frequency: repeat purchases")
    ax.set_title(title)
    ax.grid(False)
    ax.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    if len(recency) > 2 and np.ma.getmaskarray(masked)[0, 1:].all():
        ax.text(float(recency[len(recency) // 2]), float(frequency[0]), "no repeat purchase: recency is 0",
                ha="center", va="center", fontsize=8, color="#555555")
    return fig


def p_alive_heatmap(model, max_frequency=None, max_recency=None, T=None, *, rfm=None, figsize=None) -> Figure:
    """P(alive) of a customer of age ``T`` over frequency (rows) x recency (columns).

    ``T``, ``max_recency`` in the model's time unit; with ``rfm=`` (an RFM table) the defaults are
    the oldest customer's T and the largest frequency. Cells that cannot occur (no repeat purchase
    but a positive recency) are left blank.
    """
    with matplotlib.rc_context(STYLE):
        purchases = _purchase_model(model)
        frequency, recency, T = _grid(purchases, rfm, max_frequency, max_recency, T)
        x, t_x = np.meshgrid(frequency, recency, indexing="ij")
        impossible = (x == 0) & (t_x > 0)  # no repeat purchase: recency is 0
        t_x = np.where(x == 0, 0.0, t_x)
        values = purchases.p_alive(frequency=x.ravel(), recency=t_x.ravel(), T=np.full(x.size, T)).reshape(x.shape)
        values = np.where(impossible, np.nan, values)
        unit = _model_unit(purchases)
        return _heatmap(values, frequency, recency, vmin=0.0, vmax=1.0, unit=unit, figsize=figsize,
                        title=f"P(alive) by {purchases.name}, customers of age T = {T:.3g} {_unit_text(unit)}",
                        cbar_label="P(alive)")


def expected_purchases_heatmap(model, horizon, max_frequency=None, max_recency=None, T=None, *, rfm=None,
                               figsize=None) -> Figure:
    """Expected purchases in the next ``horizon`` (``"39W"`` or a number in model units) of a
    customer of age ``T`` over frequency (rows) x recency (columns); other arguments as
    :func:`p_alive_heatmap`."""
    with matplotlib.rc_context(STYLE):
        purchases = _purchase_model(model)
        frequency, recency, T = _grid(purchases, rfm, max_frequency, max_recency, T)
        x, t_x = np.meshgrid(frequency, recency, indexing="ij")
        h = float(purchases.horizon(horizon))
        impossible = (x == 0) & (t_x > 0)
        t_x = np.where(x == 0, 0.0, t_x)
        values = purchases.conditional_expected_purchases(
            h, frequency=x.ravel(), recency=t_x.ravel(), T=np.full(x.size, T)).reshape(x.shape)
        values = np.where(impossible, np.nan, values)
        unit = _model_unit(purchases)
        return _heatmap(values, frequency, recency, vmin=0.0, unit=unit, figsize=figsize,
                        title=f"Expected purchases in the next {_span(h, unit, horizon)}\n"
                              f"(customers of age T = {T:.3g} {_unit_text(unit)})",
                        cbar_label="expected purchases")


# --------------------------------------------------------------------------------------------
# 5. P(alive) history of one customer
# --------------------------------------------------------------------------------------------


def p_alive_history(model, transactions, customer_id, *, end=None, calibration_end=None, figsize=None,
                    **read_options) -> Figure:
    """P(alive) of one customer each day from the first purchase to ``end`` (default the last
    purchase day in the log), from the purchases seen up to that day; purchases (merged by day)
    are marked. ``transactions`` and ``read_options`` as for :func:`tracking_plot`; an optional
    ``calibration_end`` is marked with a vertical line."""
    with matplotlib.rc_context(STYLE):
        purchases = _purchase_model(model)
        days = _purchase_days(transactions, read_options)
        date_format = read_options.get("date_format")
        last = int(days.get_column("day").max()) if end is None else _end_day(end, "end", date_format)
        own = np.sort(days.filter(pl.col("customer_id") == customer_id).get_column("day").to_numpy())
        if own.size == 0:
            raise ClvInputError("no purchase of this customer in the transactions", argument="customer_id",
                                value=customer_id)
        own = own[own <= last]
        if own.size == 0:
            raise ClvInputError("the customer's first purchase is after the end", argument="end", value=end)
        grid = np.arange(own[0], last + 1)
        seen = np.searchsorted(own, grid, side="right")  # purchases on days <= each day
        frequency = seen - 1.0
        unit_days = _unit_days(purchases)
        recency = (own[seen - 1] - own[0]) / unit_days
        age = (grid - own[0]) / unit_days
        alive = purchases.p_alive(frequency=frequency, recency=recency, T=age)

        fig = _figure(figsize)
        ax = fig.add_subplot()
        dates = _days_to_dates(grid)
        ax.plot(dates, alive, color=MODEL, label="P(alive)", gid="p_alive")
        for i, day in enumerate(own):
            ax.axvline(_days_to_dates([day])[0], color=ACTUAL, linewidth=1.0, alpha=0.7,
                       label="purchase" if i == 0 else None)
        if calibration_end is not None:
            cal = _end_day(calibration_end, "calibration_end", date_format)
            ax.axvline(_days_to_dates([cal + 1])[0], color=REFERENCE, linestyle=":", linewidth=1.5,
                       label=f"calibration end ({_days_to_dates([cal])[0]})")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("P(alive)")
        ax.set_xlabel("date")
        ax.set_title(f"P(alive) history of customer {customer_id} ({own.size} purchase days)")
        ax.legend(loc="lower left")
        locator = mdates.AutoDateLocator(maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return fig


# --------------------------------------------------------------------------------------------
# the model alone: E[X(t)] of a new customer, heterogeneity of purchase and dropout rates
# --------------------------------------------------------------------------------------------


def expected_purchases_curve(model, horizon="78W", *, rfm=None, figsize=None) -> Figure:
    """E[X(t)], the expected repeat purchases of a newly acquired customer by age ``t``, for ``t``
    from 0 to ``horizon`` (``"78W"`` or a number in model units). With ``rfm=`` (a calibration
    table) the customers' mean repeat purchases by their age T are overlaid: the mean frequency of
    customers grouped by T (bins of one model time unit), beside the model's E[X(T)]."""
    with matplotlib.rc_context(STYLE):
        purchases = _purchase_model(model)
        unit = _model_unit(purchases)
        h = float(purchases.horizon(horizon))
        if not h > 0:
            raise ClvInputError("must be positive", argument="horizon", value=horizon)
        t = np.linspace(0.0, h, 200)
        fig = _figure(figsize)
        ax = fig.add_subplot()
        ax.plot(t, purchases.expected_purchases(t), color=MODEL, label="model: E[X(t)], a new customer",
                gid="model")
        if rfm is not None:
            data = rfm_arrays(rfm, model_unit=unit, with_weights=True)
            age = np.floor(data.T).astype(np.int64)
            n = np.bincount(age, weights=data.weights)
            seen = n > 0
            mean = np.bincount(age, weights=data.weights * data.frequency)[seen] / n[seen]
            centre = (np.bincount(age, weights=data.weights * data.T)[seen] / n[seen])
            ax.scatter(centre, mean, s=np.clip(n[seen] / n[seen].max() * 60, 8, 60), color=ACTUAL, alpha=0.8,
                       label="actual: mean repeat purchases by age T (size: customers)", gid="actual", zorder=3)
        ax.set_xlim(0, h)
        ax.set_ylim(bottom=0)
        ax.set_xlabel(f"time since the first purchase ({_unit_text(unit)})")
        ax.set_ylabel("expected repeat purchases")
        ax.set_title("Expected repeat purchases of a new customer")
        ax.legend(loc="upper left")
    return fig


def heterogeneity(model, *, figsize=None) -> Figure:
    """The purchase model's mixing distributions side by side (its ``population()``: for BG/NBD the purchase
    rates ``lambda ~ Gamma(r, alpha)`` per model time unit and the dropout probabilities after a purchase
    ``p ~ Beta(a, b)``), with their means. A distribution on (0, 1) is drawn as it is (a density that
    diverges at 0 or 1 cut at its 99th percentile); one on the positive numbers as the density of its
    log10 from the 1 % to the 99.99 % quantile (``r < 1`` piles the rates up at 0)."""
    with matplotlib.rc_context(STYLE):
        purchases = _purchase_model(model)
        population = purchases.population()
        unit = _model_unit(purchases)
        per = _period_name(unit) if unit else "time unit"
        fig = _figure(figsize)
        axes = np.atleast_1d(fig.subplots(1, len(population)))
        for i, (ax, (key, dist)) in enumerate(zip(axes, population.items())):
            label = key.replace("_", " ")
            low, high = dist.support()
            args = ", ".join(f"{v:.3g}" for v in dist.args)
            if low >= 0 and high <= 1:
                p = np.linspace(0.0, 1.0, 402)[1:-1]
                density = dist.pdf(p)
                ax.plot(p, density, color=CYCLE[2 * i % len(CYCLE)], gid=key)
                ax.axvline(dist.mean(), color=REFERENCE, linestyle="--", linewidth=1.2, label=f"mean {dist.mean():.3g}")
                ax.set_xlim(0, 1)
                ax.set_ylim(0, float(np.quantile(density, 0.99)) * 1.1)
                ax.set_xlabel(label)
                ax.set_ylabel("density")
                ax.legend(loc="upper right")
            else:
                lo, hi = dist.ppf(0.01), dist.ppf(0.9999)
                values = np.geomspace(max(lo, 1e-300), hi, 300)
                # the density of u = log10(value) is f(value) * value * ln 10
                ax.plot(np.log10(values), dist.pdf(values) * values * np.log(10.0), color=CYCLE[2 * i % len(CYCLE)],
                        gid=key)
                rate = key.endswith("rate")
                ax.axvline(np.log10(dist.mean()), color=REFERENCE, linestyle="--", linewidth=1.2,
                           label=f"mean {dist.mean():.3g}" + (f" per {per}" if rate else ""))
                ax.set_xlabel(f"{label}, log10" + (f" (per {per})" if rate else ""))
                ax.set_ylabel(f"density of log10 {label}")
                ax.set_ylim(bottom=0)
                ax.legend(loc="upper left")
            kwds = ", ".join(f"{k}={v:.3g}" for k, v in dist.kwds.items())
            ax.set_title(f"{label}: {dist.dist.name}({', '.join(t for t in (args, kwds) if t)})", fontsize=11)
        fig.suptitle(f"Heterogeneity across customers ({purchases.name})", fontsize=12)
    return fig


# --------------------------------------------------------------------------------------------
# 6. CLV scatter
# --------------------------------------------------------------------------------------------


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    ra = pd.Series(a).rank(method="average").to_numpy()
    rb = pd.Series(b).rank(method="average").to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _label(name: str) -> str:
    return name.replace("_", " ")


def clv_scatter(table: pd.DataFrame, x: str = "clv_predictive", y: str = "clv_simple", *, scale: str = "symlog",
                title: str | None = None, max_points: int = 20_000, figsize=None) -> Figure:
    """One point per customer: ``table[x]`` against ``table[y]`` (e.g. predictive vs historical CLV),
    with the diagonal y = x and Spearman's rank correlation in the title.

    ``scale``: ``"symlog"`` (default: logarithmic, with a linear stretch around 0 so that zero
    and negative values show), ``"log"`` (non-positive values are left out, and counted in the
    title) or ``"linear"``. Rows with a missing value in either column are left out. Above
    ``max_points`` customers a random sample of that many (fixed seed) is drawn, and the title says
    so; the correlation is always over every customer.
    """
    if scale not in ("symlog", "log", "linear"):
        raise ClvInputError("use 'symlog', 'log' or 'linear'", argument="scale", value=scale)
    for name, option in ((x, "x"), (y, "y")):
        if name not in table.columns:
            raise ClvInputError(f"no column {name!r} in the table (columns: {', '.join(map(str, table.columns))})",
                                argument=option, value=name)
    with matplotlib.rc_context(STYLE):
        xs = pd.to_numeric(table[x], errors="coerce").to_numpy(dtype=np.float64)
        ys = pd.to_numeric(table[y], errors="coerce").to_numpy(dtype=np.float64)
        keep = np.isfinite(xs) & np.isfinite(ys)
        left_out = []
        if (~keep).any():
            left_out.append(f"{int((~keep).sum()):,} missing")
        if scale == "log":
            positive = keep & (xs > 0) & (ys > 0)
            if (keep & ~positive).any():
                left_out.append(f"{int((keep & ~positive).sum()):,} not positive")
            keep = positive
        xs, ys = xs[keep], ys[keep]
        rho = _spearman(xs, ys) if len(xs) > 1 else float("nan")
        n_all = len(xs)
        if n_all > max_points:
            pick = np.sort(np.random.default_rng(0).choice(n_all, size=int(max_points), replace=False))
            xs_shown, ys_shown = xs[pick], ys[pick]
        else:
            xs_shown, ys_shown = xs, ys

        fig = _figure(figsize)
        ax = fig.add_subplot()
        alpha = 0.6 if len(xs) < 500 else 0.35
        ax.scatter(xs_shown, ys_shown, s=10, alpha=alpha, color=CYCLE[0], edgecolors="none", label="customers", gid="customers")
        if len(xs):
            lo, hi = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
            if scale == "log":
                diag = np.geomspace(lo, hi, 100)
            else:
                diag = np.linspace(lo, hi, 200)
            ax.plot(diag, diag, color=REFERENCE, linestyle="--", linewidth=1.2, label="y = x", gid="diagonal")
        if scale == "symlog":
            both = np.abs(np.concatenate([xs, ys]))
            positive = both[both > 0]
            linthresh = float(np.quantile(positive, 0.05)) if positive.size else 1.0
            linthresh = 10 ** math.floor(math.log10(linthresh)) if linthresh > 0 else 1.0
            ax.set_xscale("symlog", linthresh=linthresh)
            ax.set_yscale("symlog", linthresh=linthresh)
        elif scale == "log":
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(_label(x))
        ax.set_ylabel(_label(y))
        detail = [f"{n_all:,} customers" if len(xs_shown) == n_all else f"{len(xs_shown):,} of {n_all:,} customers shown"]
        if math.isfinite(rho):
            detail.append(f"Spearman \u03c1 = {rho:.3f}")
        detail += [f"left out: {t}" for t in left_out]
        if title is None:
            title = ("Historical vs predictive CLV per customer" if (x, y) == ("clv_predictive", "clv_simple")
                     else f"{_label(y)} vs {_label(x)}")
        ax.set_title(title + "\n" + ", ".join(detail))
        ax.legend(loc="best")
    return fig


# --------------------------------------------------------------------------------------------
# 7. gains chart
# --------------------------------------------------------------------------------------------


_GAINS_POINTS = 2001


def _gains(score: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of ``actual`` over customers ranked by ``score`` (highest first).

    Customers with equal scores have no order among them: within a tie the curve is the expected
    one over their random orderings (a straight line from the tie's start to its end), so the
    result does not depend on the rows' order. Points at 0 and at each tie's end."""
    order = np.argsort(-score, kind="stable")
    s, a = score[order], actual[order]
    cum = np.cumsum(a)
    last_of_tie = np.append(s[1:] != s[:-1], True)
    n = len(s)
    x = np.concatenate([[0.0], (np.flatnonzero(last_of_tie) + 1) / n])
    y = np.concatenate([[0.0], cum[last_of_tie] / cum[-1]])
    if len(x) > _GAINS_POINTS:  # a million customers: the same piecewise-linear curve at 2,001 points
        grid = np.linspace(0.0, 1.0, _GAINS_POINTS)
        x, y = grid, np.interp(grid, x, y)
    return x, y


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def gains_chart(scores, actual, *, title: str | None = None, figsize=None) -> Figure:
    """Cumulative share of actual revenue captured by the top customers of each ranking.

    ``scores``: a DataFrame, one column per method (a Series is one method), one row per customer;
    ``actual``: each customer's actual (holdout) revenue, a Series aligned on ``scores``' index
    (or an array in its row order). The x axis is the share of customers, ranked by the score
    (highest first); the dashed lines are a random ranking (the diagonal) and the perfect one
    (ranked by the actual revenue itself). The legend gives each method's accuracy ratio: its
    area above the diagonal over the perfect ranking's (1 = perfect, 0 = random).
    """
    if isinstance(scores, pd.Series):
        scores = scores.to_frame(scores.name or "score")
    if not isinstance(scores, pd.DataFrame) or scores.shape[1] == 0:
        raise ClvInputError("give a DataFrame with one column of scores per method", argument="scores",
                            value=type(scores).__name__)
    if isinstance(actual, pd.Series):
        missing = ~scores.index.isin(actual.index)
        if missing.any():
            raise ClvInputError(f"no actual value for {int(missing.sum())} customers of scores "
                                f"(e.g. {scores.index[missing][0]!r})", argument="actual", value="Series")
        actual_values = actual.reindex(scores.index).to_numpy(dtype=np.float64)
    else:
        actual_values = np.asarray(actual, dtype=np.float64)
        if actual_values.shape != (len(scores),):
            raise ClvInputError(f"has {actual_values.size} values for {len(scores)} customers", argument="actual",
                                value="array")
    if not np.isfinite(actual_values).all() or (actual_values < 0).any():
        raise ClvInputError("actual revenue must be finite and non-negative", argument="actual", value="array")
    if actual_values.sum() <= 0:
        raise ClvInputError("total actual revenue is 0: nothing to capture", argument="actual", value="array")
    with matplotlib.rc_context(STYLE):
        fig = _figure(figsize)
        ax = fig.add_subplot()
        px, py = _gains(actual_values, actual_values)
        perfect_area = _area(px, py) - 0.5
        for i, name in enumerate(scores.columns):
            values = pd.to_numeric(scores[name], errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(values).all():
                raise ClvInputError("scores must be finite numbers", argument="scores", value=str(name))
            gx, gy = _gains(values, actual_values)
            ratio = (_area(gx, gy) - 0.5) / perfect_area if perfect_area > 0 else float("nan")
            ax.plot(gx, gy, color=CYCLE[i % len(CYCLE)], label=f"{_label(str(name))} (accuracy ratio {ratio:.2f})",
                    gid=f"method:{name}")
        ax.plot(px, py, color=ACTUAL, linestyle="--", linewidth=1.2, label="perfect (ranked by actual)", gid="perfect")
        ax.plot([0, 1], [0, 1], color=REFERENCE, linestyle=":", linewidth=1.2, label="random", gid="random")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
        ax.set_xlabel("share of customers, ranked by score (highest first)")
        ax.set_ylabel("share of actual revenue")
        ax.set_title(title or f"Gains: actual revenue captured by the top customers ({len(scores):,} customers)")
        ax.legend(loc="lower right")
    return fig


# --------------------------------------------------------------------------------------------
# 9. contractual retention
# --------------------------------------------------------------------------------------------


def retention_curve(model, *, data=None, periods: int | None = None, figsize=None) -> Figure:
    """A retention model's curve against its cohorts: on the left the share of a cohort still customers at the
    start of each period, actual (points) vs projected ``S(t)`` (line); on the right the retention rate of each
    period, actual ``alive[t] / alive[t - 1]`` vs projected ``r(t)``, in %.

    ``model``: a fitted :class:`~clv_forecast.estimators.retention._base.RetentionModel`, or a mapping of labels
    to models (one per cohort, each fitted on its own: ``clv-forecast retention --by-cohort``), drawn in one
    colour each. ``data``: the cohort table to compare with (default: each model's own; a loaded model needs
    it); ``periods``: the last period drawn (default: the last observed + 5). Several cohorts of one model are
    pooled as the ``retention`` command prints them (the actual values of the cohorts observed at each period).
    The title names the model (its ``name``) and says when a fit is not reliable."""
    from .estimators.retention._base import RetentionModel, pooled_curve

    models = dict(model) if isinstance(model, dict) else {None: model}
    if not models or not all(isinstance(m, RetentionModel) for m in models.values()):
        raise ClvInputError("give a fitted retention model (or a mapping of labels to them)", argument="model",
                            value=type(model).__name__)
    curves, observed, pooled_over = {}, 0, {}
    for label, m in models.items():
        own = m.curve(data)  # the observed periods (the model's own cohorts, or data's)
        last = int(own.loc[own["alive"].notna(), "period"].max())
        observed = max(observed, last)
        pooled_over[label] = own["cohort"].nunique()
        curves[label] = pooled_curve(m.curve(data, last + 5 if periods is None else periods))
    first = next(iter(models.values()))
    name, unit = first.name, first.time_unit_
    unreliable = any(m.problems_ for m in models.values())
    with matplotlib.rc_context(STYLE):
        fig = _figure(figsize or (10.0, 4.6))
        share_ax, rate_ax = fig.subplots(1, 2)
        for i, (label, pooled) in enumerate(curves.items()):
            colour = CYCLE[i % len(CYCLE)] if label is not None else MODEL
            actual_colour = colour if label is not None else ACTUAL
            tag = "" if label is None else f"{label}: "
            t = pooled.index.to_numpy()
            seen = pooled["cohorts"].to_numpy() > 0
            share_ax.plot(t, 100 * pooled["survival"], color=colour, label=f"{tag}{name} projected",
                          gid=f"projected share {label or ''}".strip())
            actual = f"{tag}actual" + (f" ({pooled_over[label]} cohorts)" if pooled_over[label] > 1 else "")
            share_ax.scatter(t[seen], 100 * pooled["share"].to_numpy()[seen], color=actual_colour, s=22, zorder=3,
                             label=actual, gid=f"actual share {label or ''}".strip())
            rate = pooled.iloc[1:]
            rate_seen = rate["retention"].notna().to_numpy()
            rate_ax.plot(rate.index, 100 * rate["projected_retention"], color=colour, label=f"{tag}{name} projected",
                         gid=f"projected retention {label or ''}".strip())
            rate_ax.scatter(rate.index.to_numpy()[rate_seen], 100 * rate["retention"].to_numpy()[rate_seen],
                            color=actual_colour, s=22, zorder=3, label=actual,
                            gid=f"actual retention {label or ''}".strip())
        if observed < max(int(c.index.max()) for c in curves.values()):
            for ax in (share_ax, rate_ax):
                ax.axvline(observed, color=REFERENCE, linestyle=":", linewidth=1.2, gid="last observed period")
            share_ax.annotate("last observed period", (observed, 2), xytext=(-3, 0), textcoords="offset points",
                              fontsize=8, color=REFERENCE, va="bottom", ha="right", rotation=90)
        period = _period_name(unit) if unit else "period"
        for ax, title, ylabel in ((share_ax, "Share of the cohort still customers", "% alive at the start of the "
                                   "period"), (rate_ax, "Retention rate by period", "% of the previous period's "
                                   "customers who renewed")):
            ax.set_xlabel(f"{period}s since acquisition" if unit else "periods since acquisition")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=11)
            ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
            ax.legend(loc="upper right" if ax is share_ax else "lower right")
        share_ax.set_ylim(0, 102)
        rates = np.concatenate([100 * np.r_[c["projected_retention"].iloc[1:], c["retention"].iloc[1:]]
                                for c in curves.values()])
        rates = rates[np.isfinite(rates)]
        if rates.size:  # at least 5 points of %: a flat retention rate is drawn flat, not as rounding noise
            lo, hi = float(rates.min()), float(rates.max())
            pad = max(5.0 - (hi - lo), 0.0) / 2 + 0.05 * (hi - lo)
            rate_ax.set_ylim(max(lo - pad, 0.0), min(hi + pad, 100.5))
        rate_ax.ticklabel_format(axis="y", useOffset=False)
        share_ax.set_xlim(left=0)
        fig.suptitle(f"{name} retention curve: actual vs projected" + (" (unreliable fit)" if unreliable else ""),
                     fontsize=12)
    return fig


def value_curve(values, *, title: str | None = None, figsize=None) -> Figure:
    """The expected value of the whole customer base per period (the sum over the customers of each period's
    discounted value, :func:`clv_forecast.periods.value_by_period`) with its band from the parameters'
    uncertainty, and below it the cumulative value up to each period's end with its own band (the band of a
    running total, not a sum of the periods' bands: :meth:`clv_forecast.uncertainty.ColumnTotals.running_band`).

    ``values``: a table of :func:`~clv_forecast.periods.value_by_period` (its ``attrs["totals"]`` and
    ``attrs["cumulative"]``), computed with periods. Without an interval the curves have no band."""
    attrs = getattr(values, "attrs", {}) or {}
    totals, cumulative = attrs.get("totals"), attrs.get("cumulative")
    if not totals or not cumulative:
        raise ClvInputError("needs a value-by-period table with periods (value_by_period(..., period='M'))",
                            argument="values", value=type(values).__name__)
    labels = list(cumulative)
    per = [totals[f"value_{label}"] for label in labels]
    cum = [cumulative[label] for label in labels]
    x = np.arange(1, len(labels) + 1)
    banded = "lower" in per[0]
    with matplotlib.rc_context(STYLE):
        fig = _figure(figsize or (8.0, 6.5))
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1))
        est = np.array([p["total"] for p in per])
        top.bar(x, est, color=MODEL, alpha=0.85, width=0.8, label="expected value per period", gid="per_period")
        if banded:
            lo, hi = np.array([p["lower"] for p in per]), np.array([p["upper"] for p in per])
            top.errorbar(x, est, yerr=[est - lo, hi - est], fmt="none", ecolor=ACTUAL, elinewidth=1, capsize=2,
                         label="band (parameters' uncertainty)", gid="per_period_band")
        top.set_ylabel("value per period")
        top.set_ylim(bottom=0)
        top.legend(loc="upper right")
        c_est = np.array([c["total"] for c in cum])
        bottom.plot(x, c_est, color=MODEL, label="cumulative expected value", gid="cumulative")
        if banded:
            bottom.fill_between(x, [c["lower"] for c in cum], [c["upper"] for c in cum], color=MODEL, alpha=0.2,
                                label="band of the cumulative value", gid="cumulative_band")
        bottom.set_ylabel("cumulative value")
        bottom.set_ylim(bottom=0)
        bottom.legend(loc="lower right")
        step = max(1, len(labels) // 12)
        bottom.set_xticks(x[::step], [labels[i] for i in range(0, len(labels), step)])
        bottom.set_xlabel("period")
        for ax in (top, bottom):
            ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        fig.suptitle(title or "Expected value of the customer base by period")
    return fig
