"""Value by period and window (clv_forecast/periods.py): the weight matrix against the step-by-step sums, the periods
adding up to the CLV for every purchase model, windows as sums of periods, batch invariance, the delta method's
bounds of a period against parameter draws, the one-line errors, and the scorer's streamed wide table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from clv_forecast import estimators, experiment, uncertainty
from clv_forecast.errors import ClvInputError, DataWarning
from clv_forecast.model import ClvModel
from clv_forecast.periods import output_columns, plan_periods, span_weights, value_by_period
from clv_forecast.value import customer_lifetime_value

WINDOWS = "0-1Y,1-3Y,3-5Y"


@pytest.fixture(scope="module")
def model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm)


@pytest.fixture(scope="module")
def monthly(model, cdnow_rfm):
    return model.value_by_period(cdnow_rfm, horizon="5Y", period="M", windows=WINDOWS)


def _labels(table, prefix, kind="value"):
    return [c for c in table.columns if c.startswith(f"{kind}_{prefix}") and not c.endswith(("_lower", "_upper"))]


# -- the weights ---------------------------------------------------------------------------------------------------


def test_span_weights_equal_the_step_by_step_sums():
    rng = np.random.default_rng(3)
    factors = 1 / 1.013 ** np.arange(1, 25)
    spans = [(0, 24), (0, 1), (5, 6), (3, 17), (23, 24), (0, 12), (12, 24)]
    w = span_weights(factors, spans)
    for _ in range(5):
        e = np.cumsum(rng.gamma(1.0, 1.0, size=24))  # cumulative expectations E_1..E_K
        prev = np.concatenate([[0.0], e])
        for s, (a, b) in enumerate(spans):
            purchases = prev[b] - prev[a]
            discounted = sum(factors[k - 1] * (prev[k] - prev[k - 1]) for k in range(a + 1, b + 1))
            assert e @ w[:, s] == pytest.approx(purchases, rel=1e-12)
            assert e @ w[:, len(spans) + s] == pytest.approx(discounted, rel=1e-12)


def test_plan_labels_steps_and_default_step():
    plan = plan_periods("W", horizon="5Y", period="M", windows=WINDOWS)
    assert plan.step == "1M" and len(plan.times) == 60
    assert plan.period_labels[0] == "M01" and plan.period_labels[-1] == "M60"
    assert plan.window_labels == ("0-1Y", "1-3Y", "3-5Y")
    assert plan.spans[60:] == ((0, 12), (12, 36), (36, 60), (0, 60))
    assert plan_periods("W", horizon="5Y", period="Q").period_labels[:2] == ("Q01", "Q02")
    assert plan_periods("W", horizon="5Y", period="Y").period_labels == ("Y1", "Y2", "Y3", "Y4", "Y5")
    weekly = plan_periods("W", horizon="8W", period="W")  # not whole months: the period is the step
    assert weekly.step == "1W" and weekly.period_labels == tuple(f"W{i}" for i in range(1, 9))
    listed = plan_periods("W", horizon="2Y", period=None, windows=[("0Y", "6M"), ("6M", "2Y")])
    assert listed.window_labels == ("0Y-6M", "6M-2Y") and listed.period_labels == ()


# -- the forecasts -------------------------------------------------------------------------------------------------


def test_monthly_periods_add_up_to_the_clv_and_windows_to_their_periods(model, cdnow_rfm, monthly):
    clv = customer_lifetime_value(model.purchases_, model.spend_, cdnow_rfm, horizon="5Y", step="1M")
    months = monthly[_labels(monthly, "M")].to_numpy()
    assert months.shape[1] == 60
    np.testing.assert_allclose(months.sum(axis=1), clv["clv"], rtol=1e-10)
    np.testing.assert_allclose(monthly["clv"], clv["clv"], rtol=1e-12)
    np.testing.assert_allclose(monthly[_labels(monthly, "M", "purchases")].sum(axis=1), clv["expected_purchases"],
                               rtol=1e-10)
    for kind in ("purchases", "value"):
        cols = monthly[_labels(monthly, "M", kind)].to_numpy()
        for window, (a, b) in (("0-1Y", (0, 12)), ("1-3Y", (12, 36)), ("3-5Y", (36, 60))):
            np.testing.assert_allclose(monthly[f"{kind}_{window}"], cols[:, a:b].sum(axis=1), rtol=1e-10)
    # the first period is next month's purchases, as the model predicts them directly
    direct = model.purchases_.conditional_expected_purchases("1M", cdnow_rfm)
    np.testing.assert_allclose(monthly["next_period_purchases"], direct, rtol=1e-10)
    np.testing.assert_allclose(monthly["purchases_M01"], direct, rtol=1e-10)
    assert monthly["p_alive"].equals(clv["p_alive"])


def test_years_are_sums_of_months(model, cdnow_rfm, monthly):
    years = model.value_by_period(cdnow_rfm, horizon="5Y", period="Y", step="1M")
    months = monthly[_labels(monthly, "M")].to_numpy()
    for y in range(5):
        np.testing.assert_allclose(years[f"value_Y{y + 1}"], months[:, 12 * y:12 * (y + 1)].sum(axis=1), rtol=1e-10)
    # discounting: later years are worth less per purchase than earlier ones
    per_purchase = years["value_Y5"].sum() / years["purchases_Y5"].sum() / (
        years["value_Y1"].sum() / years["purchases_Y1"].sum())
    assert per_purchase < 1


def _fitted_runs():
    out = {}
    for kind in estimators.available("purchases"):
        spec = experiment.cdnow_spec()
        spec["model"].update(purchases=kind)
        if estimators.get(kind, "purchases").whole_periods:
            spec["summary"].update(merge="W")
        spec["output"].update(model=None, report=None, predictions=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            out[kind] = experiment.run(spec, save=False, analyse=False)
    return out


@pytest.fixture(scope="module")
def runs():
    return _fitted_runs()


@pytest.mark.parametrize("kind", estimators.available("purchases"))
def test_every_model_periods_add_up_to_its_clv(kind, runs):
    result = runs[kind]
    table = result.summary[["frequency", "recency", "T", "monetary_value"]].head(400)
    fitted = result.model
    clv = fitted.clv(table, horizon="2Y", step="1M")
    got = fitted.value_by_period(table, horizon="2Y", period="M", windows="0-1Y,1-2Y")
    months = got[_labels(got, "M")].to_numpy()
    np.testing.assert_allclose(months.sum(axis=1), clv["clv"], rtol=1e-10)
    np.testing.assert_allclose(got["value_0-1Y"] + got["value_1-2Y"], clv["clv"], rtol=1e-10)
    np.testing.assert_allclose(got["expected_purchases"], clv["expected_purchases"], rtol=1e-12)
    assert np.isfinite(got.to_numpy()).all()


def test_batches_give_the_same_table_and_totals(model, cdnow_rfm):
    whole = model.value_by_period(cdnow_rfm, horizon="3Y", period="Q", windows="0-1Y,1-3Y", interval=0.9)
    totals = uncertainty.ColumnTotals()
    portfolio = uncertainty.Portfolio()
    parts = [model.value_by_period(chunk, horizon="3Y", period="Q", windows="0-1Y,1-3Y", interval=0.9,
                                   column_totals=totals, portfolio=portfolio)
             for chunk in (cdnow_rfm.iloc[a:b] for a, b in ((0, 700), (700, 701), (701, 1800), (1800, None)))]
    pd.testing.assert_frame_equal(pd.concat(parts), whole, check_exact=False, rtol=1e-12)
    a, b = whole.attrs["totals"], parts[-1].attrs["totals"]
    assert a.keys() == b.keys()
    for name in a:
        assert b[name]["total"] == pytest.approx(a[name]["total"], rel=1e-12), name
        for key in ("lower", "upper"):  # (forward differences of sums added in another order: ~1e-16 / 1e-6)
            assert b[name][key] == pytest.approx(a[name][key], rel=1e-8), (name, key)
    assert totals.customers == len(cdnow_rfm)


def test_totals_are_the_columns_sums_and_the_clv_band_is_the_portfolios(model, cdnow_rfm):
    out = model.value_by_period(cdnow_rfm, horizon="5Y", period="Y", windows=WINDOWS, interval=0.9)
    totals = out.attrs["totals"]
    for name in ("clv", "expected_purchases", "value_Y3", "purchases_1-3Y", "value_3-5Y"):
        assert totals[name]["total"] == pytest.approx(out[name].sum(), rel=1e-12)
        assert totals[name]["lower"] < totals[name]["total"] < totals[name]["upper"]
        # the band of a total is narrower, relatively, than the sum of the customers' intervals
        assert totals[name]["upper"] - totals[name]["lower"] < (out[f"{name}_upper"] - out[f"{name}_lower"]).sum()
    band = out.attrs["portfolio"]["clv"]
    for key in ("lower", "upper"):
        assert totals["clv"][key] == pytest.approx(band[key], rel=1e-8)


def test_horizon_intervals_are_the_clvs(model, cdnow_rfm):
    args = dict(horizon="2Y", step="1M", interval=0.9)
    clv = model.clv(cdnow_rfm, **args)
    out = model.value_by_period(cdnow_rfm, period="Y", **args)
    for q in uncertainty.QUANTITIES:
        for side in ("lower", "upper"):
            np.testing.assert_allclose(out[f"{q}_{side}"], clv[f"{q}_{side}"], rtol=1e-7)
    for column in output_columns(plan_periods(model.time_unit_, horizon="2Y", period="Y")):
        lo, est, hi = (out[c].to_numpy() for c in (f"{column}_lower", column, f"{column}_upper"))
        assert (lo <= est).all() and (est <= hi).all(), column
    assert (out["value_Y2_upper"] > out["value_Y2_lower"]).all()


def test_delta_bounds_of_a_period_agree_with_parameter_draws(model, cdnow_rfm):
    """The delta method's 90 % bounds of the second year's value and purchases against the quantiles of the same
    forecast under 600 parameter vectors drawn from the fit's distribution (the method the CLV's "draws" uses): for
    the median customer within 5 % of the interval's width (measured: 0.5 to 1.3 %; a variance 1.6 times too large
    gives 10 %)."""
    table = cdnow_rfm.iloc[::6]
    args = dict(horizon="2Y", period="Y")
    delta = model.value_by_period(table, interval=0.9, **args)
    n_draws = 600
    draws_p = model.purchases_.result_.draws(n_draws, 11, bounds=model.purchases_.param_bounds)
    draws_s = model.spend_.result_.draws(n_draws, 12, bounds=model.spend_.param_bounds)
    p_cls, s_cls = type(model.purchases_), type(model.spend_)
    samples = {"value_Y2": [], "purchases_Y2": []}
    for i in range(n_draws):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = p_cls.from_params(draws_p[i], time_unit=model.time_unit_)
            s = s_cls.from_params(draws_s[i], time_unit=model.time_unit_)
            out = value_by_period(p, s, table, **args)
        for name in samples:
            samples[name].append(out[name].to_numpy())
    for name, values in samples.items():
        values = np.array(values)
        width = (delta[f"{name}_upper"] - delta[f"{name}_lower"]).to_numpy()
        for side, q in (("lower", 0.05), ("upper", 0.95)):
            gap = np.abs(np.quantile(values, q, axis=0) - delta[f"{name}_{side}"].to_numpy())
            assert np.median(gap / width) < 0.05, (name, side, np.median(gap / width))


def test_known_spend_and_windows_only(model, cdnow_rfm):
    out = model.value_by_period(cdnow_rfm, horizon="2Y", period=None, windows="0-6M,6M-2Y",
                                future_spend=np.full(len(cdnow_rfm), 20.0), interval=0.9)
    assert "next_period_purchases" not in out.columns
    np.testing.assert_allclose(out["value_0-6M"] + out["value_6M-2Y"], out["clv"], rtol=1e-10)
    assert (out["expected_spend"] == 20.0).all() and (out["expected_spend_lower"] == 20.0).all()
    # a known spend: no spend uncertainty, so a window's value has the relative interval of its discounted purchases,
    # which (one window of months at a nearly flat rate) is close to that of its purchases, and wider than none
    moves = out["value_0-6M"] > 0
    rel_v = (out["value_0-6M_upper"] / out["value_0-6M"])[moves].to_numpy()
    rel_p = (out["purchases_0-6M_upper"] / out["purchases_0-6M"])[moves].to_numpy()
    np.testing.assert_allclose(rel_v, rel_p, rtol=1e-3)
    assert (rel_v > 1).all()
    with_spend = model.value_by_period(cdnow_rfm, horizon="2Y", period=None, windows="0-6M,6M-2Y", interval=0.9)
    rel_s = (with_spend["value_0-6M_upper"] / with_spend["value_0-6M"])[moves].to_numpy()
    assert np.median(rel_s - rel_v) > 0  # the spend model's uncertainty widens the value's interval


# -- the one-line errors ---------------------------------------------------------------------------------------------


def test_residual_beyond_the_horizon_continues_the_periods(model, cdnow_rfm):
    """The value beyond a 2-year horizon plus the second year's value is the value beyond one year: the periods and
    the tail are one discounting; the residual columns are value_tail's."""
    rfm = cdnow_rfm.head(400)
    two = model.value_by_period(rfm, horizon="2Y", period="Y", residual=True, interval=0.9)
    one = model.value_by_period(rfm, horizon="1Y", period="Y", residual=True)
    np.testing.assert_allclose(two["residual_value"] + two["value_Y2"], one["residual_value"], rtol=1e-7)
    np.testing.assert_allclose(two["residual_purchases"] + two["value_Y2"] / two["expected_spend"],
                               one["residual_purchases"], rtol=1e-7)
    direct = model.residual_value(rfm, horizon="2Y", step="1M", interval=0.9)
    for column in ("residual_purchases", "residual_value", "residual_value_lower", "residual_value_upper"):
        np.testing.assert_array_equal(two[column].to_numpy(), direct[column].to_numpy())
    assert two.attrs["residual_total"] == pytest.approx(float(direct["residual_value"].sum()), rel=1e-12)
    assert np.all(two["residual_value_lower"] < two["residual_value"])


@pytest.mark.parametrize("args, argument, words", [
    (dict(windows="0-1Y,1-7Y"), "windows", "ends after the horizon"),
    (dict(windows="2-1Y"), "windows", "end must be after its start"),
    (dict(windows="0-1.3W"), "windows", "whole numbers of steps"),
    (dict(windows="1Y"), "windows", "not understood"),
    (dict(windows="0-1Y,0-1Y"), "windows", "given twice"),
    (dict(windows=[("0Y", 3)]), "windows", "bare number"),
    (dict(period="7W", step="1M"), "period", "whole number of steps"),
    (dict(period="fortnight"), "period", "unknown unit"),
    (dict(period="Y", horizon="18M"), "horizon", "not a whole number of periods"),
    (dict(period=None), "period", "give the periods"),
    (dict(interval=0.9, interval_method="draws"), "interval_method", "delta-method intervals only"),
    (dict(residual=True, discount_rate="0%/Y"), "discount_rate", "must be positive"),
])
def test_bad_settings_are_one_line(model, cdnow_rfm, args, argument, words):
    with pytest.raises(ClvInputError) as info:
        model.value_by_period(cdnow_rfm.head(20), **{"horizon": "5Y", **args})
    assert info.value.argument == argument
    assert words in str(info.value) and "\n" not in str(info.value)


# -- the scorer --------------------------------------------------------------------------------------------------------


def _rfm_file(cdnow_rfm, path):
    table = cdnow_rfm[["frequency", "recency", "T", "monetary_value"]].rename_axis("customer_id").reset_index()
    table = table.astype({"frequency": object, "T": object})
    table.loc[4, "frequency"] = -2  # an RFM rule
    table.loc[9, "T"] = "soon"  # not a number
    table.to_csv(path, index=False)
    return table


def test_score_streams_the_wide_table_with_rejects(model, cdnow_rfm, tmp_path, monkeypatch, capsys):
    from clv_forecast import scoring
    from clv_forecast.cli import main

    model_path = model.save(tmp_path / "m.json")
    _rfm_file(cdnow_rfm, tmp_path / "rfm.csv")
    # at most 64 rows x ~180 columns at a time: the batches are cut to the values bound
    monkeypatch.setattr(scoring, "PERIOD_VALUES_PER_BATCH", 64 * 180)
    rc = main(["score", "--model", str(model_path), "--input", str(tmp_path / "rfm.csv"), "--output",
               str(tmp_path / "wide.parquet"), "--periods", "Q", "--windows", WINDOWS, "--horizon", "5Y",
               "--interval", "0.9", "--no-tracking"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "window 1-3Y: expected purchases" in text and "90% band" in text
    wide = pd.read_parquet(tmp_path / "wide.parquet").set_index("customer_id")
    rejects = pd.read_csv(tmp_path / "wide.parquet.rejects.csv")
    assert rejects["row"].tolist() == [5, 10]
    assert len(wide) == len(cdnow_rfm) - 2
    expected = model.value_by_period(cdnow_rfm.drop(cdnow_rfm.index[[4, 9]]), horizon="5Y", period="Q",
                                     windows=WINDOWS, step="1M", interval=0.9)
    assert list(wide.columns) == list(expected.columns)
    np.testing.assert_allclose(wide.to_numpy(), expected.to_numpy(), rtol=1e-10)
    line = [ln for ln in text.splitlines() if ln.startswith("window 0-1Y")][0]
    assert f"{expected['value_0-1Y'].sum():,.2f}" in line


def test_score_writes_the_residual_value_in_batches(model, cdnow_rfm, tmp_path, capsys):
    from clv_forecast.cli import main

    model_path = model.save(tmp_path / "m.json")
    _rfm_file(cdnow_rfm, tmp_path / "rfm.csv")
    base = ["score", "--model", str(model_path), "--input", str(tmp_path / "rfm.csv"), "--no-tracking"]
    rc = main(base + ["--output", str(tmp_path / "wide.parquet"), "--windows", "0-1Y,1-2Y", "--horizon", "2Y",
                      "--residual", "--interval", "0.9", "--batch-rows", "500"])
    assert rc == 0, capsys.readouterr().err
    wide = pd.read_parquet(tmp_path / "wide.parquet").set_index("customer_id")
    expected = model.value_by_period(cdnow_rfm.drop(cdnow_rfm.index[[4, 9]]), horizon="2Y", period=None,
                                     windows="0-1Y,1-2Y", step="1M", interval=0.9, residual=True)
    assert list(wide.columns) == list(expected.columns) and list(wide.columns)[-4:] == [
        "residual_purchases", "residual_value", "residual_value_lower", "residual_value_upper"]
    np.testing.assert_allclose(wide.to_numpy(), expected.to_numpy(), rtol=1e-9)
    capsys.readouterr()
    for extra, words in ((["--residual"], "--residual: the value beyond the horizon is a column"),
                         (["--residual", "--windows", "0-1Y", "--discount-rate", "0%/Y"], "must be positive")):
        assert main(base + ["--output", str(tmp_path / "w2.parquet"), *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    assert not (tmp_path / "w2.parquet").exists()


def test_score_file_csv_and_refusals(model, cdnow_rfm, tmp_path):
    from clv_forecast import engines
    from clv_forecast.scoring import score_file

    model_path = model.save(tmp_path / "m.json")
    _rfm_file(cdnow_rfm, tmp_path / "rfm.csv")
    report = score_file(model_path, tmp_path / "rfm.csv", tmp_path / "wide.csv", horizon="2Y", period="M",
                        batch_rows=300)
    wide = pd.read_csv(tmp_path / "wide.csv")
    assert report.scored == len(wide) == len(cdnow_rfm) - 2
    assert report.column_totals["value_M24"]["total"] == pytest.approx(wide["value_M24"].sum(), rel=1e-9)
    with pytest.raises(ClvInputError, match="needs the local engine"):
        engines.get("spark").score(model_path, tmp_path / "rfm.parquet", tmp_path / "out", period="M")
    with pytest.raises(ClvInputError, match="ends after the horizon"):  # before anything is read or written
        score_file(model_path, tmp_path / "rfm.csv", tmp_path / "w2.csv", horizon="2Y", windows="0-3Y")
    assert not (tmp_path / "w2.csv").exists()


# -- experiments, fit, the plot and the report ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def period_run(tmp_path_factory):
    spec = experiment.cdnow_spec()
    spec["value"].update(horizon="5Y", periods="Q", windows=WINDOWS, interval=0.9)
    spec["output"].update(model=None, predictions=None, report=str(tmp_path_factory.mktemp("run") / "report.html"))
    return experiment.run(spec)


def test_experiment_keys_give_the_windows_totals_metrics_and_report(period_run):
    table = period_run.period_values
    assert table is not None and table.attrs["plan"]["periods"][0] == "Q01"
    m = period_run.metrics
    for window in ("0-1Y", "1-3Y", "3-5Y"):
        assert m[f"window_{window}_value"] == pytest.approx(table[f"value_{window}"].sum(), rel=1e-12)
        assert m[f"window_{window}_value_lower"] < m[f"window_{window}_value"] < m[f"window_{window}_value_upper"]
    # the first year's window is the 12-month CLV of the run's own customers
    twelve = period_run.model.clv(period_run.summary, horizon="12M")
    assert m["window_0-1Y_value"] == pytest.approx(twelve["clv"].sum(), rel=1e-10)
    html = period_run.report_path.read_text()
    assert "Value by window" in html and "Expected value of the customers by period" in html
    assert "3-5Y" in html


def test_experiment_file_keys_and_their_errors(tmp_path, capsys):
    from clv_forecast.cli import main

    spec = tmp_path / "p.toml"
    spec.write_text('[data]\nsource = "cdnow_sample"\namount_col = "amount"\n[summary]\ncalibration_end = 1997-09-30\n'
                    '[value]\nhorizon = "3Y"\nwindows = "0-1Y,1-3Y"\n')
    assert main(["run", "--experiment", str(spec), "--no-save", "--no-tracking"]) == 0
    out = capsys.readouterr().out
    assert "window 1-3Y: expected purchases" in out and "whole horizon" in out
    spec.write_text(spec.read_text().replace("1-3Y", "1-4Y"))
    assert main(["run", "--experiment", str(spec), "--no-save", "--no-tracking"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("[value] windows = '0-1Y,1-4Y': window 1-4Y ends after the horizon 3Y") and "\n" not in err
    spec.write_text(spec.read_text().replace('windows = "0-1Y,1-4Y"', 'periods = "5W"'))
    assert main(["run", "--experiment", str(spec), "--no-save", "--no-tracking"]) == 2
    assert "[value] periods = '5W': must be a whole number of steps of 1M" in capsys.readouterr().err


def test_fit_prints_the_windows(cdnow_csv, capsys):
    from clv_forecast.cli import main

    rc = main(["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--horizon", "2Y", "--windows",
               "0-1Y,1-2Y", "--interval", "0.9", "--no-tracking"])
    assert rc == 0
    out = capsys.readouterr().out
    line = [ln for ln in out.splitlines() if ln.startswith("window 1-2Y")][0]
    assert "90% band" in line
    assert main(["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--periods", "fortnight",
                 "--no-tracking"]) == 2
    assert "--periods fortnight:" in capsys.readouterr().err


def test_value_curve_draws_the_periods_and_the_running_band(period_run, tmp_path):
    from clv_forecast import plots

    table = period_run.period_values
    fig = plots.value_curve(table)
    top, bottom = fig.axes
    heights = [bar.get_height() for bar in top.patches]
    np.testing.assert_allclose(heights, [table[f"value_Q{q:02d}"].sum() for q in range(1, 21)], rtol=1e-12)
    (line,) = [ln for ln in bottom.get_lines() if ln.get_gid() == "cumulative"]
    np.testing.assert_allclose(line.get_ydata()[-1], table["clv"].sum(), rtol=1e-10)
    # the running total's band at the horizon is the CLV's portfolio band
    last = table.attrs["cumulative"]["Q20"]
    assert last["lower"] == pytest.approx(table.attrs["portfolio"]["clv"]["lower"], rel=1e-8)
    path = plots.save_png(fig, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ClvInputError, match="needs a value-by-period table with periods"):
        plots.value_curve(period_run.predictions)


def test_score_metrics_carry_the_windows(model, cdnow_rfm, tmp_path):
    from clv_forecast import tracking
    from clv_forecast.scoring import score_file

    model_path = model.save(tmp_path / "m.json")
    _rfm_file(cdnow_rfm, tmp_path / "rfm.csv")
    report = score_file(model_path, tmp_path / "rfm.csv", tmp_path / "w.parquet", horizon="2Y", windows="0-1Y,1-2Y",
                        interval=0.9)
    metrics = tracking._score_metrics(report)
    wide = pd.read_parquet(tmp_path / "w.parquet")
    assert metrics["window_1-2Y_value"] == pytest.approx(wide["value_1-2Y"].sum(), rel=1e-9)
    assert metrics["window_1-2Y_value_lower"] < metrics["window_1-2Y_value"] < metrics["window_1-2Y_value_upper"]
