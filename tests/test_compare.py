"""Historical vs predictive CLV: side by side and the holdout backtest, on six customers computed by hand
and on CDNOW."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from clv_forecast.compare import Backtest, Comparison, backtest, rfm_segments, side_by_side, spearman, top_share
from clv_forecast.errors import ClvInputError
from clv_forecast.model import ClvModel

PARAMS = dict(purchases={"r": 0.243, "alpha": 4.41, "a": 0.793, "b": 2.43},
              spend={"p": 6.25, "q": 3.74, "v": 15.44}, time_unit="W")

# six customers, weekly; the holdout window is 10 weeks
SMALL = pd.DataFrame(
    {"frequency": [0, 1, 2, 4, 0, 3], "recency": [0.0, 10, 16, 18, 0, 5], "T": [20.0, 20, 20, 20, 10, 30],
     "monetary_value": [0.0, 30, 10, 25, 0, 20], "frequency_holdout": [0, 1, 0, 3, 1, 0],
     "monetary_value_holdout": [0.0, 40, 0, 20, 50, 0], "duration_holdout": 10.0},
    index=pd.Index(list("abcdef"), name="customer_id"),
)
SMALL.attrs["time_unit"] = "W"

# by hand (module docstring of compare): own APV (one-time buyers: aggregate APV 210 / 10 = 21), own rate
# x / T, own lifespan = recency; aggregate rate 10 / 120 weeks, average lifespan 49 / 6 weeks (< 10)
LIFE = 49 / 6
HAND = {
    "simple": [0, 30 * 0.05 * 10, 10 * 0.1 * 10, 25 * 0.2 * 10, 0, 20 * 0.1 * 5],
    "run_rate": [0, 15, 10, 50, 0, 20 * 0.1 * 10],
    "ltv_profit": [0, 1.5 * LIFE, 1.0 * LIFE, 5.0 * LIFE, 0, 2.0 * LIFE],
    "average": [21 * (10 / 120) * LIFE] * 6,
}
HAND_PURCHASES = {"simple": [0, 0.5, 1.0, 2.0, 0, 0.5], "average": [(10 / 120) * LIFE] * 6}
ACTUAL = np.array([0, 40, 0, 60, 50, 0.0])


@pytest.fixture(scope="module")
def model():
    return ClvModel.from_params(**PARAMS)


@pytest.fixture(scope="module")
def small_backtest(model):
    return backtest(model, SMALL)


def test_default_segments_by_hand():
    # repeat buyers b, c, d, f: frequency 1, 2, 4, 3 -> terciles F1, F2, F3, F3; weeks since the last
    # purchase 10, 4, 2, 25 -> R2, R3, R3, R1 (R3 = most recent)
    assert rfm_segments(SMALL).tolist() == ["one-time", "R2F1", "R3F2", "R3F3", "one-time", "R1F3"]


def test_backtest_historical_predictions_by_hand(small_backtest):
    scores = small_backtest.scores
    np.testing.assert_allclose(scores["actual"], ACTUAL)
    for method, values in HAND.items():
        np.testing.assert_allclose(scores[method], values, err_msg=method)
    # default segments are singletons or the one-time buyers (rate 0): the same as the per-customer formula
    np.testing.assert_allclose(scores["segment_average"], HAND["simple"])


def test_backtest_predictive_is_the_models_clv_over_the_window(model, small_backtest):
    # the backtest is undiscounted (scored on the holdout's spend); ClvModel.clv defaults to 10 %/Y since issue 17
    expected = model.clv(SMALL, horizon="10W", step="1W", discount_rate="0%/Y")["clv"]
    np.testing.assert_allclose(small_backtest.scores["predictive"], expected)


def _hand_metrics(pred, actual):
    err = np.asarray(pred) - actual
    return {"mae": np.abs(err).mean(), "rmse": math.sqrt((err ** 2).mean()),
            "total_error_pct": 100 * (np.sum(pred) - actual.sum()) / actual.sum()}


def test_backtest_metrics_by_hand(small_backtest):
    m = small_backtest.metrics
    assert list(m.columns) == ["mae", "rmse", "total_error_pct", "spearman", "top10_share", "top20_share", "gini"]
    assert list(m.index) == ["predictive", "simple", "run_rate", "ltv_profit", "average", "segment_average"]
    # simple: errors 0, -25, 10, -10, -50, 10
    assert m.loc["simple", "mae"] == pytest.approx(105 / 6)
    assert m.loc["simple", "rmse"] == pytest.approx(math.sqrt(3425 / 6))
    assert m.loc["simple", "total_error_pct"] == pytest.approx(100 * (85 - 150) / 150)
    # top 10 % of 6 customers = 1 customer (d, actual 60); top 20 % = 2 customers (d and b: 60 + 40)
    assert m.loc["simple", "top10_share"] == pytest.approx(60 / 150)
    assert m.loc["simple", "top20_share"] == pytest.approx(100 / 150)
    # run_rate ranks f (actual 0) second
    assert m.loc["run_rate", "top20_share"] == pytest.approx(60 / 150)
    # average: every customer tied, each counted for 1/6 (top 10 %) or 2/6 (top 20 %) of the total
    assert m.loc["average", "top10_share"] == pytest.approx(1 / 6)
    assert m.loc["average", "top20_share"] == pytest.approx(2 / 6)
    assert math.isnan(m.loc["average", "spearman"])
    scores = small_backtest.scores
    for method in ("predictive", "simple", "run_rate", "ltv_profit", "segment_average"):
        hand = _hand_metrics(scores[method].to_numpy(), ACTUAL)
        for name, value in hand.items():
            assert m.loc[method, name] == pytest.approx(value), (method, name)
        assert m.loc[method, "spearman"] == pytest.approx(spearmanr(scores[method], ACTUAL)[0])
        assert m.loc[method, "gini"] == pytest.approx(_hand_gini(scores[method].to_numpy(), ACTUAL)), method
    # simple ranks d (60), b (40), e (50) and the rest: by hand the gains curve's area gives 0.9 of the perfect one
    assert m.loc["average", "gini"] == pytest.approx(0.0)  # every customer tied: the diagonal


def _hand_gini(pred, actual):
    """The Gini of the gains chart, customer by customer: walk down the ranking, each tie group spreading its
    value evenly over its customers, add up the area as trapezoids; relative to ranking by the actual value."""
    def area(score):
        n, total, acc, out = len(score), actual.sum(), 0.0, 0.0
        for value in sorted(set(score), reverse=True):
            group = [a for s, a in zip(score, actual) if s == value]
            for _ in group:
                step = np.mean(group) / total
                out += (acc + acc + step) / 2 / n
                acc += step
        return out
    return (2 * area(list(pred)) - 1) / (2 * area(list(actual)) - 1)


def test_backtest_purchases_by_frequency(model, small_backtest):
    table = small_backtest.purchases.set_index("frequency")
    assert table.index.tolist() == ["0", "1", "2", "3", "4", "total"]
    assert table["customers"].tolist() == [2, 1, 1, 1, 1, 6]
    np.testing.assert_allclose(table["actual_mean"], [0.5, 1, 0, 0, 3, 5 / 6])
    expected = model.predict(SMALL, horizon="10W")["expected_purchases"].to_numpy()
    np.testing.assert_allclose(table.loc["0", "predicted_mean"], expected[[0, 4]].mean())
    np.testing.assert_allclose(table.loc["4", "predicted_mean"], expected[3])
    assert table.loc["total", "predicted_total"] == pytest.approx(expected.sum())
    assert table.loc["total", "actual_total"] == 5
    np.testing.assert_allclose(table.loc[["0", "1", "2", "3", "4"], "simple_mean"], [0, 0.5, 1.0, 0.5, 2.0])
    assert table.loc["total", "average_mean"] == pytest.approx(HAND_PURCHASES["average"][0])


def test_backtest_margin_and_discount(model, small_backtest):
    half = backtest(model, SMALL, margin=0.5)
    np.testing.assert_allclose(half.metrics[["mae", "rmse"]], small_backtest.metrics[["mae", "rmse"]] * 0.5)
    np.testing.assert_allclose(half.metrics["total_error_pct"], small_backtest.metrics["total_error_pct"])
    disc = backtest(model, SMALL, discount_rate="10%/W")
    weeks = sum(1 / 1.1 ** k for k in range(1, 11))  # 10 weeks, each counted at its end
    assert disc.scores.loc["d", "simple"] == pytest.approx(25 * 0.2 * weeks)
    five = sum(1 / 1.1 ** k for k in range(1, 6))
    assert disc.scores.loc["f", "simple"] == pytest.approx(20 * 0.1 * five)
    np.testing.assert_allclose(disc.scores["predictive"],
                               model.clv(SMALL, horizon="10W", step="1W", discount_rate="10%/W")["clv"])
    np.testing.assert_allclose(disc.scores["actual"], ACTUAL)  # what was spent is not discounted


def test_backtest_to_dict_is_json(small_backtest):
    data = json.loads(json.dumps(small_backtest.to_dict(), allow_nan=False))
    assert set(data["methods"]) == {"predictive", "simple", "run_rate", "ltv_profit", "average", "segment_average"}
    assert data["methods"]["simple"]["mae"] == pytest.approx(105 / 6)
    assert data["methods"]["average"]["spearman"] is None
    assert data["horizon"] == "10W" and data["actual_total"] == 150


def test_side_by_side_by_hand(model):
    # undiscounted, as the hand values (side_by_side, like ClvModel.clv, defaults to 10 %/Y since issue 17)
    comp = side_by_side(model, SMALL, horizon="10W", discount_rate="0%/Y", segments=["x", "x", "x", "y", "y", "y"],
                        top=3)
    assert isinstance(comp, Comparison)
    c = comp.customers
    for method, values in HAND.items():
        np.testing.assert_allclose(c[f"clv_{method}"], values, err_msg=method)
    # segment x (a, b, c): APV 50 / 3, 3 purchases over 60 weeks, lifespan 26 / 3 weeks;
    # segment y (d, e, f): APV 160 / 7, 7 over 60 weeks, lifespan 23 / 3 weeks
    x_value, y_value = 50 / 3 * 3 / 60 * 26 / 3, 160 / 7 * 7 / 60 * 23 / 3
    np.testing.assert_allclose(c["clv_segment_average"], [x_value] * 3 + [y_value] * 3)
    pred = model.clv(SMALL, horizon="10W", step="1W", discount_rate="0%/Y")
    np.testing.assert_allclose(c["clv_predictive"], pred["clv"])
    np.testing.assert_allclose(c["p_alive"], pred["p_alive"])
    np.testing.assert_allclose(c["expected_purchases"], pred["expected_purchases"])
    assert comp.spearman["simple"] == pytest.approx(spearmanr(HAND["simple"], pred["clv"])[0])
    assert math.isnan(comp.spearman["average"])
    seg = comp.segments
    assert seg.loc["x", "customers"] == 3
    assert seg.loc["y", "clv_simple"] == pytest.approx(np.mean(HAND["simple"][3:]))
    assert seg.loc["x", "clv_predictive"] == pytest.approx(pred["clv"].iloc[:3].mean())
    # disagreements: largest |historical - predictive| over the methods, in money
    gaps = c[[f"clv_{m}" for m in ("simple", "run_rate", "ltv_profit", "average", "segment_average")]].sub(
        c["clv_predictive"], axis=0).abs().max(axis=1)
    assert comp.disagreements.index.tolist() == gaps.sort_values(ascending=False).index[:3].tolist()
    np.testing.assert_allclose(comp.disagreements["abs_gap"], gaps.sort_values(ascending=False)[:3])
    json.dumps(comp.to_dict(), allow_nan=False)


def test_spearman_and_top_share_helpers():
    assert spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(spearmanr([1, 2, 3, 4], [10, 20, 40, 30])[0])
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    # top 20 % of 10 = 2 customers; the second place is tied between two customers: each counts half
    assert top_share([9, 5, 5, 1, 1, 1, 1, 1, 1, 1], [10, 6, 2, 1, 1, 0, 0, 0, 0, 0], 0.2) == pytest.approx(
        (10 + 0.5 * 8) / 20)


def test_bad_inputs(model):
    with pytest.raises(ClvInputError, match="holdout"):
        backtest(model, SMALL.drop(columns=["frequency_holdout"]))
    uneven = SMALL.assign(duration_holdout=[10.0, 10, 10, 10, 10, 9])
    uneven.attrs["time_unit"] = "W"
    with pytest.raises(ClvInputError, match="duration_holdout"):
        backtest(model, uneven)
    with pytest.raises(ClvInputError) as info:
        backtest(model, SMALL, margin=-1)
    assert info.value.argument == "margin"
    with pytest.raises(ClvInputError) as info:
        side_by_side(model, SMALL, segments=["x", "y"])
    assert info.value.argument == "segments"
    with pytest.raises(ClvInputError) as info:
        side_by_side(model, SMALL, segments="no_such_column")
    assert info.value.argument == "segments"


# --------------------------------------------------------------------------------------------
# CDNOW
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm)


def test_cdnow_backtest(cdnow_model, cdnow_rfm):
    bt = backtest(cdnow_model, cdnow_rfm)
    assert isinstance(bt, Backtest) and bt.horizon == "39W"
    assert len(bt.scores) == 2357
    total = bt.purchases.set_index("frequency").loc["total"]
    assert total["actual_total"] == 1882
    assert total["predicted_total"] == pytest.approx(1653, abs=1)  # Fader, Hardie & Lee (2005)
    assert bt.purchases["frequency"].tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+", "total"]
    assert bt.scores["actual"].sum() == pytest.approx(
        (cdnow_rfm["frequency_holdout"] * cdnow_rfm["monetary_value_holdout"]).sum())
    m = bt.metrics
    finite = m.drop(index="average")
    assert np.isfinite(finite.to_numpy()).all()
    assert (m[["top10_share", "top20_share"]] <= 1).all().all()
    assert (m["top20_share"] >= m["top10_share"]).all()
    # the predictive model ranks customers far better than chance and beats the constant average on RMSE
    assert m.loc["predictive", "spearman"] > 0.3
    assert m.loc["predictive", "rmse"] < m.loc["average", "rmse"]
    # a formula that keeps every customer buying at his past rate for the whole window overshoots
    assert m.loc["run_rate", "total_error_pct"] > 0
    json.dumps(bt.to_dict(), allow_nan=False)


def test_cdnow_side_by_side(cdnow_model, cdnow_rfm):
    comp = side_by_side(cdnow_model, cdnow_rfm, horizon="12M", discount_rate="10%/Y", margin=0.3, top=10)
    c = comp.customers
    assert len(c) == 2357 and len(comp.disagreements) == 10
    assert {"clv_simple", "clv_average", "clv_predictive", "p_alive", "expected_purchases"} <= set(c.columns)
    assert comp.segments["customers"].sum() == 2357
    assert "one-time" in comp.segments.index
    # one-time buyers: no own rate, but the aggregate formula values them like everyone else
    one = c[c["frequency"] == 0]
    assert (one["clv_simple"] == 0).all() and (one["clv_average"] > 0).all()
    assert (one["clv_predictive"] > 0).all()
    assert comp.spearman.drop("average").between(0, 1).all()
