"""clv_forecast.plots: every figure on CDNOW, checked on the data it plots (read back from the artists)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from clv_forecast import plots  # noqa: E402
from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample  # noqa: E402
from clv_forecast.errors import ClvInputError  # noqa: E402
from clv_forecast.model import ClvModel  # noqa: E402
from clv_forecast.rfm import compress, summarize  # noqa: E402

SMALL = (4.0, 2.5)  # small figures keep the tests fast


@pytest.fixture(scope="module")
def model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm)


@pytest.fixture(scope="module")
def log():
    return load_cdnow_sample()


def _bars(fig: Figure, gid: str) -> np.ndarray:
    ax = fig.axes[0]
    return np.array([p.get_height() for p in ax.patches if p.get_gid() == gid])


def _line(fig: Figure, gid: str):
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == gid]
    return line.get_xdata(), np.asarray(line.get_ydata(), dtype=float)


def _clipped(frequency, top=7):
    return np.minimum(np.asarray(frequency), top)


# ---- 1. frequency histogram ---------------------------------------------------------------


def test_frequency_histogram_actual_bars_count_the_customers(model, cdnow_rfm):
    fig = plots.frequency_histogram(model, cdnow_rfm, figsize=SMALL)
    actual = _bars(fig, "actual")
    expected = pd.Series(_clipped(cdnow_rfm["frequency"])).value_counts().reindex(range(8), fill_value=0)
    assert actual.tolist() == expected.tolist()
    assert actual.sum() == 2357
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["0", "1", "2", "3", "4", "5", "6", "7+"]


def test_frequency_histogram_model_bars(model, cdnow_rfm):
    fig = plots.frequency_histogram(model, cdnow_rfm, figsize=SMALL)
    bars = _bars(fig, "model")
    assert len(bars) == 8 and (bars > 0).all()
    assert bars.sum() == pytest.approx(2357, rel=1e-9)
    # bar n: P(X(T_i) = n) summed customer by customer (no grouping by T)
    T = cdnow_rfm["T"].to_numpy()
    for n in (0, 1, 3, 6):
        assert bars[n] == pytest.approx(model.purchases_.prob_purchases(n, T).sum(), rel=1e-9)
    # the model fits CDNOW well: within 15% of the actual count for 0, 1 and 2 repeat purchases (2: 192 vs 214)
    actual = _bars(fig, "actual")
    assert np.allclose(bars[:3], actual[:3], rtol=0.15)
    # the last bar gathers 7 and more: P(X >= 7) summed, as 1 - P(X < 7)
    # (customer by customer, as one array: 7 calls instead of 7 per customer)
    tail = float(np.sum(1 - sum(model.purchases_.prob_purchases(n, T) for n in range(7))))
    assert bars[7] == pytest.approx(tail, rel=1e-6)


def test_frequency_histogram_of_a_compressed_table_is_the_same(model, cdnow_rfm):
    full = plots.frequency_histogram(model, cdnow_rfm, max_frequency=4, figsize=SMALL)
    rows = compress(cdnow_rfm[["frequency", "recency", "T"]])
    rows.attrs["time_unit"] = "W"
    small = plots.frequency_histogram(model, rows, max_frequency=4, figsize=SMALL)
    assert len(rows) < len(cdnow_rfm)
    assert np.allclose(_bars(full, "actual"), _bars(small, "actual"))
    assert np.allclose(_bars(full, "model"), _bars(small, "model"))
    assert len(_bars(small, "model")) == 5


def test_frequency_histogram_of_a_daily_table_is_the_same(model, log):
    daily = summarize(log, customer_col="customer_id", date_col="date", amount_col="amount", time_unit="D",
                      merge="D", calibration_end=CDNOW_CALIBRATION_END)
    weekly = summarize(log, customer_col="customer_id", date_col="date", amount_col="amount", time_unit="W",
                       merge="D", calibration_end=CDNOW_CALIBRATION_END)
    a = plots.frequency_histogram(model, daily, figsize=SMALL)
    b = plots.frequency_histogram(model, weekly, figsize=SMALL)
    assert np.allclose(_bars(a, "model"), _bars(b, "model"), rtol=1e-10)


# ---- 2. calibration vs holdout ------------------------------------------------------------


def test_calibration_vs_holdout(model, cdnow_rfm):
    fig = plots.calibration_vs_holdout(model, cdnow_rfm, figsize=SMALL)
    group = _clipped(cdnow_rfm["frequency"])
    _, actual = _line(fig, "actual")
    _, predicted = _line(fig, "model")
    want_actual = cdnow_rfm["frequency_holdout"].groupby(group).mean().to_numpy()
    want_pred = model.predict(cdnow_rfm, horizon="39W")["expected_purchases"].groupby(group).mean().to_numpy()
    assert np.allclose(actual, want_actual)
    assert np.allclose(predicted, want_pred, rtol=1e-8)
    # heavier calibration buyers buy more in the holdout, in the data and in the model
    assert np.all(np.diff(predicted) > 0) and actual[-1] > actual[0]
    counts = pd.Series(group).value_counts().sort_index().to_numpy()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels[0] == f"0\nn={counts[0]:,}" and labels[-1] == f"7+\nn={counts[-1]:,}"
    assert "39 weeks" in fig.axes[0].get_title()


def test_calibration_vs_holdout_needs_the_holdout_columns(model, cdnow_rfm):
    with pytest.raises(ClvInputError, match="frequency_holdout"):
        plots.calibration_vs_holdout(model, cdnow_rfm[["frequency", "recency", "T"]])


# ---- 3. tracking plots --------------------------------------------------------------------


def _repeat_purchases(log: pd.DataFrame) -> int:
    days = log.assign(day=log["date"].dt.normalize()).drop_duplicates(["customer_id", "day"])
    return len(days) - days["customer_id"].nunique()


def test_tracking_plot_cumulative(model, log, cdnow_rfm):
    fig = plots.tracking_plot(model, log, calibration_end=CDNOW_CALIBRATION_END, figsize=SMALL)
    dates, actual = _line(fig, "actual")
    _, expected = _line(fig, "model")
    dates = pd.to_datetime(np.asarray(dates))
    assert len(dates) == 78  # 39 + 39 weeks from 1997-01-01 to 1998-06-30
    assert dates[0] == pd.Timestamp("1997-01-07") and dates[-1] == pd.Timestamp("1998-06-30")
    assert actual[-1] == _repeat_purchases(log)
    assert np.all(np.diff(actual) >= 0) and np.all(np.diff(expected) >= 0)
    # at the calibration end: the calibration repeat purchases, and the model's sum of E[X(T_i)]
    cal = list(dates).index(pd.Timestamp("1997-09-30"))
    assert cal == 38
    assert actual[cal] == cdnow_rfm["frequency"].sum()
    assert actual[-1] - actual[cal] == cdnow_rfm["frequency_holdout"].sum()
    assert expected[cal] == pytest.approx(model.purchases_.expected_purchases(cdnow_rfm["T"].to_numpy()).sum(),
                                          rel=1e-9)
    # the model tracks the holdout within 10% (FHL 2005 report the same on CDNOW)
    assert expected[-1] == pytest.approx(actual[-1], rel=0.1)
    (vline,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "calibration_end"]
    assert pd.Timestamp(np.asarray(vline.get_xdata())[0]) == pd.Timestamp("1997-10-01")


def test_tracking_plot_weekly_sums_to_the_cumulative(model, log):
    cum = plots.tracking_plot(model, log, calibration_end=CDNOW_CALIBRATION_END, figsize=SMALL)
    weekly = plots.tracking_plot(model, log, calibration_end=CDNOW_CALIBRATION_END, cumulative=False,
                                 figsize=SMALL)
    _, a_cum = _line(cum, "actual")
    _, m_cum = _line(cum, "model")
    _, a_week = _line(weekly, "actual")
    _, m_week = _line(weekly, "model")
    assert (a_week >= 0).all() and (m_week >= 0).all()
    assert np.allclose(np.cumsum(a_week), a_cum) and np.allclose(np.cumsum(m_week), m_cum)
    # week 1 of CDNOW: the repeat purchases dated 1997-01-01..07 after each customer's first day
    days = log.assign(day=log["date"].dt.normalize()).drop_duplicates(["customer_id", "day"])
    first = days.groupby("customer_id")["day"].transform("min")
    in_week1 = (days["day"] > first) & (days["day"] <= "1997-01-07")
    assert a_week[0] == in_week1.sum()


def test_tracking_plot_takes_the_standard_frame_and_a_path(model, log, cdnow_csv):
    from clv_forecast.transactions import read_transactions

    frame = read_transactions(log)
    a = plots.tracking_plot(model, frame, calibration_end=CDNOW_CALIBRATION_END, figsize=SMALL)
    b = plots.tracking_plot(model, cdnow_csv, calibration_end="19970930", time_unit="2W", figsize=SMALL,
                            amount_col="amount")
    _, ya = _line(a, "actual")
    _, yb = _line(b, "actual")
    assert ya[-1] == yb[-1] == _repeat_purchases(log)
    # 39 weeks either side of the calibration end are 19.5 fortnights: the periods at both ends are clipped
    dates = pd.to_datetime(np.asarray(b.axes[0].get_lines()[0].get_xdata()))
    assert len(yb) == 40 and dates[0] == pd.Timestamp("1997-01-07") and dates[-1] == pd.Timestamp("1998-06-30")
    assert np.all(np.diff(dates[1:-1]) == pd.Timedelta(days=14))
    assert b.axes[0].get_xlabel() == "2W period ending"


def test_tracking_plot_refuses_an_end_before_the_calibration_end(model, log):
    with pytest.raises(ClvInputError):
        plots.tracking_plot(model, log, calibration_end=CDNOW_CALIBRATION_END, observation_end="1997-06-30")


# ---- 4. heat maps -------------------------------------------------------------------------


def _matrix(fig: Figure) -> np.ma.MaskedArray:
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    return mesh.get_array()


def test_p_alive_heatmap(model, cdnow_rfm):
    fig = plots.p_alive_heatmap(model, rfm=cdnow_rfm, figsize=SMALL)
    values = _matrix(fig)
    assert values.shape[0] == cdnow_rfm["frequency"].max() + 1
    shown = values.compressed()
    assert shown.size > 0 and (shown >= 0).all() and (shown <= 1).all()
    # no repeat purchase: only recency 0 can occur, and such a customer is alive (BG/NBD)
    assert values[0, 0] == 1.0 and values.mask[0, 1:].all()
    # with repeat purchases, a later last purchase means more likely alive
    assert np.all(np.diff(values[1:, :], axis=1) >= -1e-12)
    # the corner: an old customer's P(alive) at the model's own function
    T = cdnow_rfm["T"].max()
    want = model.purchases_.p_alive(frequency=[5.0], recency=[T], T=[T])[0]
    assert values[5, -1] == pytest.approx(want)


def test_expected_purchases_heatmap(model):
    fig = plots.expected_purchases_heatmap(model, "39W", max_frequency=10, max_recency=30, T=39, figsize=SMALL)
    values = _matrix(fig)
    assert values.shape == (11, 31)
    assert (values.compressed() >= 0).all()
    want = model.purchases_.conditional_expected_purchases(39.0, frequency=[3.0], recency=[30.0], T=[39.0])[0]
    assert values[3, 30] == pytest.approx(want)
    assert "39 weeks" in fig.axes[0].get_title()


def test_heatmap_needs_an_age(model):
    with pytest.raises(ClvInputError) as info:
        plots.p_alive_heatmap(model)
    assert info.value.argument == "T"


# ---- 5. P(alive) history ------------------------------------------------------------------


def test_p_alive_history_ends_at_the_summary_p_alive(model, log):
    fig = plots.p_alive_history(model, log, 1, calibration_end=CDNOW_CALIBRATION_END, figsize=SMALL)
    dates, alive = _line(fig, "p_alive")
    assert ((alive >= 0) & (alive <= 1)).all()
    assert pd.Timestamp(np.asarray(dates)[-1]) == log["date"].max()
    whole = summarize(log, customer_col="customer_id", date_col="date", time_unit="W", merge="D")
    assert alive[-1] == pytest.approx(model.purchases_.p_alive(whole.loc[[1]])[0])
    assert alive[0] == 1.0  # before any repeat purchase


def test_p_alive_history_unknown_customer(model, log):
    with pytest.raises(ClvInputError):
        plots.p_alive_history(model, log, 999_999)


# ---- 6. CLV scatter -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def clv_table(model, cdnow_rfm):
    clv = model.clv(cdnow_rfm, horizon="39W", step="1W")["clv"]
    simple = cdnow_rfm["frequency"] * cdnow_rfm["monetary_value"]
    return pd.DataFrame({"clv_predictive": clv, "clv_simple": simple})


def test_clv_scatter(clv_table):
    from scipy.stats import spearmanr

    fig = plots.clv_scatter(clv_table, figsize=SMALL)
    ax = fig.axes[0]
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    xy = points.get_offsets()
    assert len(xy) == len(clv_table)
    assert np.allclose(xy[:, 0], clv_table["clv_predictive"]) and np.allclose(xy[:, 1], clv_table["clv_simple"])
    assert ax.get_xscale() == ax.get_yscale() == "symlog"
    rho = spearmanr(clv_table["clv_predictive"], clv_table["clv_simple"]).statistic
    assert f"{rho:.3f}" in ax.get_title()
    dx, dy = _line(fig, "diagonal")
    assert np.allclose(dx, dy)


def test_clv_scatter_log_scale_leaves_out_non_positive(clv_table):
    fig = plots.clv_scatter(clv_table, scale="log", figsize=SMALL)
    (points,) = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    n_zero = int((clv_table["clv_simple"] <= 0).sum())
    assert n_zero > 0 and len(points.get_offsets()) == len(clv_table) - n_zero
    assert f"{n_zero:,} not positive" in fig.axes[0].get_title()
    with pytest.raises(ClvInputError):
        plots.clv_scatter(clv_table, x="no_such_column")


# ---- 7. gains chart -----------------------------------------------------------------------


def test_gains_chart(clv_table, cdnow_rfm):
    actual = cdnow_rfm["frequency_holdout"] * cdnow_rfm["monetary_value_holdout"]
    scores = clv_table.assign(frequency=cdnow_rfm["frequency"])
    fig = plots.gains_chart(scores, actual, figsize=SMALL)
    px, py = _line(fig, "perfect")
    for name in scores.columns:
        x, y = _line(fig, f"method:{name}")
        assert (x[0], y[0]) == (0.0, 0.0) and x[-1] == pytest.approx(1.0) and y[-1] == pytest.approx(1.0)
        assert np.all(np.diff(x) > 0) and np.all(np.diff(y) >= -1e-12)
        # no ranking beats the perfect one, and these all beat random
        assert np.all(y <= np.interp(x, px, py) + 1e-12)
        assert np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) > 0.6
    # the top 10% by predictive CLV hold the revenue the chart says (ties in the score are not at 10%)
    order = scores["clv_predictive"].sort_values(ascending=False, kind="stable").index
    top = order[: len(order) // 10]
    x, y = _line(fig, "method:clv_predictive")
    assert np.interp(len(top) / len(order), x, y) == pytest.approx(actual[top].sum() / actual.sum(), abs=1e-3)
    rx, ry = _line(fig, "random")
    assert list(rx) == [0, 1] and list(ry) == [0, 1]


def test_gains_chart_ties_do_not_depend_on_row_order(cdnow_rfm):
    actual = cdnow_rfm["frequency_holdout"] * cdnow_rfm["monetary_value_holdout"]
    scores = pd.DataFrame({"frequency": cdnow_rfm["frequency"], "constant": 1.0})
    shuffled = scores.sample(frac=1.0, random_state=0)
    a = plots.gains_chart(scores, actual, figsize=SMALL)
    b = plots.gains_chart(shuffled, actual, figsize=SMALL)
    assert np.allclose(_line(a, "method:frequency")[1], _line(b, "method:frequency")[1])
    x, y = _line(a, "method:constant")  # one tie: a random ranking
    assert list(x) == [0.0, 1.0] and list(y) == [0.0, 1.0]


def test_gains_chart_refuses_missing_actuals(cdnow_rfm):
    with pytest.raises(ClvInputError):
        plots.gains_chart(cdnow_rfm[["frequency"]], cdnow_rfm["frequency_holdout"].iloc[:10])


# ---- PNG output and imports ---------------------------------------------------------------


def test_to_png_decodes_at_800_by_500(model, cdnow_rfm, tmp_path):
    from matplotlib.image import imread

    fig = plots.frequency_histogram(model, cdnow_rfm)
    data = plots.to_png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (800, 500)
    path = plots.save_png(fig, tmp_path / "sub" / "hist.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["hist.png"]  # no temporary file left
    image = imread(path)
    assert image.shape[:2] == (500, 800)
    assert image[..., :3].std() > 0.05  # not a blank image
    small = plots.to_png(fig, dpi=50)
    assert struct.unpack(">II", small[16:24]) == (400, 250)


def test_to_png_has_the_pixels_of_savefig(model, cdnow_rfm):
    """One draw by the canvas, then its pixels: the same image as matplotlib's savefig (which lays the figure out
    in a draw of its own first), for a figure with a legend and one with a colour bar (constrained layout)."""
    import io

    from matplotlib.image import imread

    for make in (lambda: plots.frequency_histogram(model, cdnow_rfm), lambda: plots.p_alive_heatmap(model, rfm=cdnow_rfm)):
        buffer = io.BytesIO()
        make().savefig(buffer, format="png", dpi=100)
        expected = imread(io.BytesIO(buffer.getvalue()))
        got = imread(io.BytesIO(plots.to_png(make())))
        assert got.shape == expected.shape == (500, 800, 4)
        np.testing.assert_array_equal(got, expected)


def test_importing_the_package_does_not_import_matplotlib():
    code = ("import clv_forecast, sys\n"
            "from clv_forecast import ClvModel, summarize, read_transactions\n"
            "import clv_forecast.model, clv_forecast.rfm, clv_forecast.cli, clv_forecast.experiment\n"
            "print(json.dumps('matplotlib' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


def test_plots_use_no_pyplot():
    code = ("import json, sys\nfrom clv_forecast import plots\n"
            "plots.to_png(plots.gains_chart(__import__('pandas').DataFrame({'s': [3.0, 2.0, 1.0]}), [1.0, 0.0, 2.0]))\n"
            "print(json.dumps(['matplotlib.pyplot' in sys.modules, __import__('matplotlib').get_backend()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pyplot_loaded, _ = json.loads(out.stdout.strip().splitlines()[-1])
    assert pyplot_loaded is False


# ---- the model alone: E[X(t)] and heterogeneity -------------------------------------------


def test_expected_purchases_curve(model, cdnow_rfm):
    fig = plots.expected_purchases_curve(model, "78W", rfm=cdnow_rfm, figsize=SMALL)
    t, y = _line(fig, "model")
    assert t[0] == 0 and t[-1] == pytest.approx(78) and y[0] == 0 and np.all(np.diff(y) > 0)
    # E[X(t)] by its definition: sum over n of n P(X(t) = n)
    n = np.arange(400)
    assert y[-1] == pytest.approx(float((n * model.purchases_.prob_purchases(n, 78.0)).sum()), rel=1e-6)
    (points,) = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    xy = points.get_offsets()
    age = np.floor(cdnow_rfm["T"])
    assert len(xy) == age.nunique()
    oldest = cdnow_rfm[age == age.max()]
    assert xy[np.argmax(xy[:, 0]), 1] == pytest.approx(oldest["frequency"].mean())


def test_heterogeneity(model):
    from scipy import stats

    fig = plots.heterogeneity(model, figsize=(6, 3))
    r, alpha, a, b = (model.purchases_.params_[k] for k in ("r", "alpha", "a", "b"))
    (rate,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "purchase_rate"]
    u, density = np.asarray(rate.get_xdata()), np.asarray(rate.get_ydata())
    lam = 10.0 ** u
    want = stats.gamma.pdf(lam, r, scale=1 / alpha) * lam * np.log(10)
    assert np.allclose(density, want, rtol=1e-8)
    # the curve covers the rates from the 1% to the 99.99% quantile: ~98.99% of the mass
    assert np.sum(np.diff(u) * (density[1:] + density[:-1]) / 2) == pytest.approx(0.9899, abs=2e-3)
    (drop,) = [ln for ln in fig.axes[1].get_lines() if ln.get_gid() == "dropout"]
    p = np.asarray(drop.get_xdata())
    assert np.allclose(drop.get_ydata(), stats.beta.pdf(p, a, b), rtol=1e-8)
    means = [ln.get_xdata()[0] for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert means == pytest.approx([np.log10(r / alpha), a / (a + b)])


def test_incremental_tracking_marks_the_clipped_periods(model, log):
    fig = plots.tracking_plot(model, log, calibration_end=CDNOW_CALIBRATION_END, time_unit="2W", cumulative=False,
                              figsize=SMALL)
    dates, _ = _line(fig, "partial")
    assert list(pd.to_datetime(np.asarray(dates))) == [pd.Timestamp("1997-01-07"), pd.Timestamp("1998-06-30")]
    weekly = plots.tracking_plot(model, log, calibration_end=CDNOW_CALIBRATION_END, cumulative=False, figsize=SMALL)
    assert not [ln for ln in weekly.axes[0].get_lines() if ln.get_gid() == "partial"]


def test_dated_plots_need_the_models_time_unit(cdnow_rfm, log):
    from clv_forecast import BetaGeoModel

    bare = BetaGeoModel().fit(frequency=cdnow_rfm["frequency"].to_numpy(), recency=cdnow_rfm["recency"].to_numpy(),
                              T=cdnow_rfm["T"].to_numpy())
    assert bare.time_unit_ is None
    with pytest.raises(ClvInputError, match="time unit is unknown"):
        plots.tracking_plot(bare, log, calibration_end=CDNOW_CALIBRATION_END)
    with pytest.raises(ClvInputError, match="not a fitted model"):
        plots.frequency_histogram(ClvModel(), cdnow_rfm)


def test_large_inputs_are_thinned_for_drawing_only(clv_table, cdnow_rfm):
    from scipy.stats import spearmanr

    fig = plots.clv_scatter(clv_table, max_points=500, figsize=SMALL)
    (points,) = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert len(points.get_offsets()) == 500
    rho = spearmanr(clv_table["clv_predictive"], clv_table["clv_simple"]).statistic  # over all 2,357
    assert "500 of 2,357 customers shown" in fig.axes[0].get_title() and f"{rho:.3f}" in fig.axes[0].get_title()
    # a gains curve of many customers is drawn at 2,001 points of the same curve
    rng = np.random.default_rng(1)
    n = 50_000
    actual = pd.Series(rng.gamma(0.5, 20.0, n))
    score = pd.DataFrame({"noisy": actual + rng.normal(0, 20.0, n)})
    x, y = _line(plots.gains_chart(score, actual, figsize=SMALL), "method:noisy")
    assert len(x) == 2001 and (x[0], y[0]) == (0.0, 0.0) and y[-1] == pytest.approx(1.0)
    top = score["noisy"].sort_values(ascending=False).index[: n // 4]
    assert y[500] == pytest.approx(actual[top].sum() / actual.sum(), abs=1e-12)
