"""The historical formulas of docs/historical-formulas.md: each worked example, the per-customer forms on a
tiny log computed by hand, and the cohort / N-day / rolling retention on a hand-built log."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest

from clv_forecast import historical as h
from clv_forecast.errors import ClvInputError
from clv_forecast.rfm import summarize

# --------------------------------------------------------------------------------------------
# worked examples of the document (one test each)
# --------------------------------------------------------------------------------------------


def test_apv_example_003():
    assert h.apv(10_000, 50) == 200


def test_apfr_example_003():
    assert h.apfr(50, 20) == 2.5


def test_customer_value_example_003():
    assert h.customer_value(200, 2.5) == 500


def test_lifespan_from_churn_example_002():
    assert h.lifespan_from_churn(0.2) == pytest.approx(5.0)


def test_clv_simple_example_002_books():
    # 1,000 rubles every two months (6 purchases a year) for five years
    assert h.clv_simple(1_000, 6, 5) == 30_000


def test_ltv_profit_example_000():
    assert h.ltv_profit(5, 40) == 200


def test_clv_net_example_002():
    assert h.clv_net(200_000, service_cost=100_000) == 100_000
    assert h.clv_net(200_000, acquisition_cost=60_000, service_cost=40_000) == 100_000


def test_cac_ceiling_example_002():
    out = h.cac_ceiling(30_000, 40_000)
    assert out["ceiling"] == 30_000
    assert out["surplus"] == -10_000  # a loss of 10,000
    assert out["ltv_cac"] == pytest.approx(0.75)
    assert h.ltv_cac(30_000, 40_000) == pytest.approx(0.75)
    assert h.cac_ceiling(30_000)["surplus"] is None


def test_crr_coffee_shop_example():
    assert h.crr(1_000, 800, 200) == pytest.approx(0.60)


def test_retention_simple_example_001():
    assert h.retention_simple(1_000, 800) == pytest.approx(0.80)


def test_churn_example():
    assert h.churn(0.6) == pytest.approx(0.4)
    assert h.churn(h.crr(1_000, 800, 200)) == pytest.approx(0.4)


def test_repeat_purchase_rate_example_004():
    assert h.repeat_purchase_rate(30, 120) == pytest.approx(0.25)


# --------------------------------------------------------------------------------------------
# margin, discounting, vectorisation, errors
# --------------------------------------------------------------------------------------------


def test_margin_and_discount_rate():
    assert h.clv_simple(1_000, 6, 5, margin=0.3) == pytest.approx(9_000)
    # 2.5 years at 10 %/year: two full years and half of the third, each counted at its year's end
    expected = 1 / 1.1 + 1 / 1.1**2 + 0.5 / 1.1**3
    assert h.discounted_duration(2.5, "10%/Y") == pytest.approx(expected)
    assert h.clv_simple(100, 1, 2.5, discount_rate="10%/Y") == pytest.approx(100 * expected)
    # the rate converts to the formula's period: 12 months at 10 %/Y
    monthly = 1.1 ** (1 / 12) - 1
    assert h.discounted_duration(12, "10%/Y", period="1M") == pytest.approx(
        sum(1 / (1 + monthly) ** k for k in range(1, 13)))
    assert h.ltv_profit(5, 40, discount_rate="0%/Y") == 200


def test_formulas_broadcast_per_customer():
    np.testing.assert_allclose(h.apv([100, 30], [4, 1]), [25, 30])
    np.testing.assert_allclose(h.clv_simple([10, 20], [2, 1], [3, 0]), [60, 0])
    np.testing.assert_allclose(h.crr([10, 20], [9, 20], [1, 5]), [0.8, 0.75])


@pytest.mark.parametrize("call, argument", [
    (lambda: h.apv(100, 0), "purchases"),
    (lambda: h.apv(-1, 5), "revenue"),
    (lambda: h.apfr(5, -2), "customers"),
    (lambda: h.crr(0, 800, 200), "start"),
    (lambda: h.crr(1_000, 800, 900), "new"),
    (lambda: h.crr(1_000, -800, 0), "end"),
    (lambda: h.churn(1.2), "retention"),
    (lambda: h.lifespan_from_churn(0), "churn_rate"),
    (lambda: h.repeat_purchase_rate(130, 120), "repeaters"),
    (lambda: h.clv_simple(1_000, 6, 5, margin=-0.1), "margin"),
    (lambda: h.clv_simple(1_000, 6, 5, discount_rate=0.1), "discount_rate"),
    (lambda: h.clv_simple(1_000, 6, 5, discount_rate="10%/Q"), "discount_rate"),
    (lambda: h.discounted_duration(2, "10%/Y", period="2X"), "period"),
    (lambda: h.ltv_cac(30_000, 0), "cac"),
])
def test_bad_inputs_are_one_line_errors(call, argument):
    with pytest.raises(ClvInputError) as info:
        call()
    assert info.value.argument == argument
    assert "\n" not in str(info.value)


def test_lifespan_observed_from_dates():
    first = pd.to_datetime(["2020-01-01", "2020-01-01"])
    last = pd.to_datetime(["2021-01-01", "2020-01-01"])  # 366 days and 0 days
    assert h.lifespan(first, last, period="1D") == pytest.approx(183)
    assert h.lifespan(first, last, period="1Y") == pytest.approx(183 / 365.25)
    with pytest.raises(ClvInputError):
        h.lifespan(last, first)


# --------------------------------------------------------------------------------------------
# per-customer and aggregate forms on a tiny log
# --------------------------------------------------------------------------------------------

TINY = pd.DataFrame({
    "customer_id": ["A", "A", "A", "B", "C", "C"],
    "date": pd.to_datetime(["2020-01-01", "2020-01-11", "2020-01-21", "2020-01-16", "2020-01-01", "2020-01-31"]),
    "amount": [10.0, 20.0, 40.0, 50.0, 5.0, 15.0],
})
KW = dict(customer_col="customer_id", date_col="date", amount_col="amount", time_unit="D", merge="D",
          observation_end="2020-01-31")


@pytest.fixture(scope="module")
def tiny_rfm():
    return summarize(TINY, **KW)


def test_tiny_rfm_is_what_the_hand_computation_assumes(tiny_rfm):
    # A: 2 repeat purchases (20, 40), last 20 days after the first, observed 30 days; B: one purchase,
    # 15 days before the end; C: one repeat purchase (15) 30 days after the first
    assert tiny_rfm.loc[["A", "B", "C"], "frequency"].tolist() == [2, 0, 1]
    assert tiny_rfm.loc[["A", "B", "C"], "recency"].tolist() == [20, 0, 30]
    assert tiny_rfm.loc[["A", "B", "C"], "T"].tolist() == [30, 15, 30]
    assert tiny_rfm.loc[["A", "B", "C"], "monetary_value"].tolist() == [30, 0, 15]


def test_customer_summary_by_hand(tiny_rfm):
    out = h.customer_summary(tiny_rfm, period="1D").loc[["A", "B", "C"]]
    # B has no repeat purchase: his APV is the aggregate (60 + 15) / 3 = 25
    np.testing.assert_allclose(out["apv"], [30, 25, 15])
    np.testing.assert_allclose(out["apfr"], [2 / 30, 0, 1 / 30])
    np.testing.assert_allclose(out["customer_value"], [2, 0, 0.5])
    np.testing.assert_allclose(out["lifespan"], [20, 0, 30])
    np.testing.assert_allclose(out["clv_simple"], [30 * 2 / 30 * 20, 0, 15 * 1 / 30 * 30])  # 40, 0, 15
    assert out["repeat_buyer"].tolist() == [True, False, True]


def test_customer_summary_does_not_depend_on_the_period(tiny_rfm):
    daily = h.customer_summary(tiny_rfm, period="1D")
    weekly = h.customer_summary(tiny_rfm, period="1W")
    np.testing.assert_allclose(weekly["clv_simple"], daily["clv_simple"])
    np.testing.assert_allclose(weekly["apfr"], daily["apfr"] * 7)
    np.testing.assert_allclose(weekly["lifespan"], daily["lifespan"] / 7)


def test_customer_summary_with_a_given_lifespan_margin_and_a_log(tiny_rfm):
    out = h.customer_summary(TINY, period="1D", lifespan_periods=10, margin=0.5, summarize_kwargs=KW)
    np.testing.assert_allclose(out.loc[["A", "B", "C"], "clv_simple"], [0.5 * 2 * 10, 0, 0.5 * 0.5 * 10])


def test_customer_summary_with_the_first_purchase(tiny_rfm):
    rfm = summarize(TINY, include_first_transaction=True, **KW)
    out = h.customer_summary(rfm, period="1D").loc[["A", "B", "C"]]
    np.testing.assert_allclose(out["apv"], [70 / 3, 50, 10])
    np.testing.assert_allclose(out["apfr"], [3 / 30, 1 / 15, 2 / 30])


def test_aggregate_summary_by_hand(tiny_rfm):
    agg = h.aggregate_summary(tiny_rfm, period="1D")
    assert agg["customers"] == 3
    assert agg["apv"] == pytest.approx(75 / 3)  # revenue of the counted purchases / their number
    assert agg["apfr"] == pytest.approx(3 / 75)  # purchases per customer-day: 3 over 30 + 15 + 30 days
    assert agg["customer_value"] == pytest.approx(1.0)
    assert agg["lifespan"] == pytest.approx(50 / 3)
    assert agg["clv_simple"] == pytest.approx(50 / 3)
    assert agg["repeat_purchase_rate"] == pytest.approx(2 / 3)
    churned = h.aggregate_summary(tiny_rfm, period="1D", churn_rate=0.05, margin=0.3)
    assert churned["lifespan"] == pytest.approx(20)
    assert churned["clv_simple"] == pytest.approx(0.3 * 1.0 * 20)


def test_rfm_without_time_unit_or_money_is_refused(tiny_rfm):
    bare = pd.DataFrame(tiny_rfm)
    bare.attrs = {}
    with pytest.raises(ClvInputError, match="time unit"):
        h.customer_summary(bare)
    with pytest.raises(ClvInputError, match="monetary_value"):
        h.aggregate_summary(tiny_rfm.drop(columns="monetary_value"))


# --------------------------------------------------------------------------------------------
# cohorts, N-day and rolling retention on a hand-built log
# --------------------------------------------------------------------------------------------

LOG = pd.DataFrame(
    [
        (7, "2021-02-10 09:00"), (7, "2021-04-01 10:00"),
        (1, "2021-03-01 12:00"), (1, "2021-03-02 08:00"), (1, "2021-03-02 18:00"), (1, "2021-03-03 09:00"),
        (1, "2021-03-04 09:00"),
        (2, "2021-03-01 10:00"), (2, "2021-03-03 10:00"), (2, "2021-04-15 10:00"),
        (3, "2021-03-10 10:00"),
        (4, "2021-03-05 10:00"), (4, "2021-03-20 10:00"),
        (5, "2021-04-02 10:00"), (5, "2021-04-03 10:00"), (5, "2021-04-04 10:00"), (5, "2021-04-05 10:00"),
        (6, "2021-04-28 10:00"),
    ],
    columns=["customer_id", "timestamp"],
).assign(timestamp=lambda d: pd.to_datetime(d["timestamp"]), amount=1.0)


def test_cohort_retention_table():
    table = h.cohort_retention(LOG, period="1M")
    expected = pd.DataFrame(
        [[1.0, 0.0, 1.0], [1.0, 0.25, np.nan], [1.0, np.nan, np.nan]],
        index=pd.PeriodIndex(["2021-02", "2021-03", "2021-04"], freq="M"), columns=[0, 1, 2],
    )
    np.testing.assert_array_equal(table.index.astype(str), expected.index.astype(str))
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy())
    counts = h.cohort_retention(LOG, period="1M", counts=True)
    np.testing.assert_allclose(counts.to_numpy(), [[1, 1, 0, 1], [4, 4, 1, np.nan], [2, 2, np.nan, np.nan]])


def test_cohort_retention_from_the_standard_polars_frame():
    table = h.cohort_retention(pl.from_pandas(LOG[["customer_id", "timestamp"]]), period="1M")
    np.testing.assert_allclose(table.to_numpy(), h.cohort_retention(LOG).to_numpy())


def test_n_day_retention_strict():
    out = h.n_day_retention(LOG, 3, cohort="1M")
    # customer 6 (first day 04-28, the log's last day) cannot be seen on day 3: not counted
    assert out.index.astype(str).tolist() == ["2021-02", "2021-03", "2021-04"]
    assert out["customers"].tolist() == [1, 4, 1]
    assert out["retained"].tolist() == [0, 1, 1]  # customers 1 and 5 bought on each of days 1, 2, 3
    np.testing.assert_allclose(out["retention"], [0, 0.25, 1.0])


def test_rolling_retention():
    out = h.rolling_retention(LOG, 3, cohort="1M")
    assert out["customers"].tolist() == [1, 4, 1]
    assert out["retained"].tolist() == [0, 2, 1]  # customer 2 came back on day 2 as well
    np.testing.assert_allclose(out["retention"], [0, 0.5, 1.0])
    later = h.rolling_retention(LOG, 3, cohort="1M", observation_end="2021-05-31")
    assert later["customers"].tolist() == [1, 4, 2]  # customer 6's day 3 is now observed


def test_period_counts_feed_the_formulas():
    counts = h.period_counts(LOG, "2021-03-01", "2021-03-31", revenue_col="amount")
    assert counts == {"start": 1, "end": 5, "new": 4, "purchases": 10, "customers": 4, "revenue": 10.0}
    assert h.apfr(counts["purchases"], counts["customers"]) == 2.5
    assert h.crr(counts["start"], counts["end"], counts["new"]) == 1.0  # nobody lapses without a rule


def test_period_counts_with_an_activity_window():
    # a customer counts when he bought in the last 30 days: at the start of March only customer 7
    # (2021-02-10); at its end customers 1, 2, 3, 4 (7 has lapsed), all four new in March
    counts = h.period_counts(LOG, "2021-03-01", "2021-03-31", active_within="30D")
    assert (counts["start"], counts["end"], counts["new"]) == (1, 4, 4)
    assert h.crr(counts["start"], counts["end"], counts["new"]) == 0.0
    assert h.churn(h.crr(counts["start"], counts["end"], counts["new"])) == 1.0
    april = h.period_counts(LOG, "2021-04-01", "2021-04-30", active_within="30D")
    # start of April: 1, 2, 3, 4 (March); end: 2 (04-15), 5, 6, 7 (04-01 is within 30 days of 04-30);
    # new: 5 and 6; retained (E - N) / S = (4 - 2) / 4
    assert (april["start"], april["end"], april["new"]) == (4, 4, 2)
    assert h.crr(april["start"], april["end"], april["new"]) == pytest.approx(0.5)
    with pytest.raises(ClvInputError) as info:
        h.period_counts(LOG, "2021-04-01", "2021-04-30", active_within="soon")
    assert info.value.argument == "active_within"


@pytest.mark.parametrize("call, argument", [
    (lambda: h.n_day_retention(LOG, 0), "n_days"),
    (lambda: h.rolling_retention(LOG, 2.5), "n_days"),
    (lambda: h.cohort_retention(LOG, period="2M"), "period"),
    (lambda: h.cohort_retention(LOG, period="month!"), "period"),
    (lambda: h.cohort_retention(LOG, date_col="when"), "date_col"),
])
def test_log_errors(call, argument):
    with pytest.raises(ClvInputError) as info:
        call()
    assert info.value.argument == argument


def test_cdnow_aggregate_is_consistent(cdnow_rfm):
    agg = h.aggregate_summary(cdnow_rfm, period="1W")
    per = h.customer_summary(cdnow_rfm, period="1W")
    assert agg["customers"] == len(cdnow_rfm) == 2357
    assert agg["repeat_purchase_rate"] == pytest.approx((cdnow_rfm["frequency"] > 0).mean())
    assert agg["lifespan"] == pytest.approx(per["lifespan"].mean())
    assert math.isfinite(agg["clv_simple"]) and agg["clv_simple"] > 0


def test_a_customer_first_seen_on_the_last_day_has_a_rate_of_zero():
    """T = 0 (first purchase on the calibration end; any non-cohort export has some): no counted purchase,
    so the own purchase rate, customer value and simple CLV are 0, as for every one-time buyer; a
    customer with counted purchases and T = 0 cannot be (and is still refused in one line)."""
    rfm = pd.DataFrame({"frequency": [2.0, 0.0, 0.0], "recency": [10.0, 0.0, 0.0], "T": [20.0, 5.0, 0.0],
                        "monetary_value": [30.0, 0.0, 0.0]}, index=pd.Index([1, 2, 3], name="customer_id"))
    rfm.attrs["time_unit"] = "W"
    out = h.customer_summary(rfm, period="1W")
    assert out.loc[3, ["apfr", "customer_value", "clv_simple"]].tolist() == [0.0, 0.0, 0.0]
    assert out.loc[2, "apfr"] == 0.0 and out.loc[1, "apfr"] == pytest.approx(2 / 20)
    assert np.isfinite(out.select_dtypes("number").to_numpy()).all()
    bad = rfm.assign(T=[0.0, 5.0, 0.0], recency=[0.0, 0.0, 0.0])
    with pytest.raises(ClvInputError, match="counted purchases and T = 0"):
        h.customer_summary(bad, period="1W")


def test_compare_takes_a_log_with_customers_first_seen_on_the_calibration_end(cdnow_csv, tmp_path, capsys):
    from clv_forecast.cli import main

    log = pd.read_csv(cdnow_csv)
    late = pd.DataFrame({"customer_id": [99998, 99999, 99999], "date": ["1997-09-30", "1997-09-30", "1998-01-10"],
                         "amount": [5.0, 10.0, 12.0]})
    path = tmp_path / "t0.csv"
    pd.concat([log, late]).to_csv(path, index=False)
    assert main(["compare", "-t", str(path), "--amount-col", "amount", "--calibration-end", "1997-09-30",
                 "--json"]) == 0
    import json

    metrics = json.loads(capsys.readouterr().out)
    assert "simple" in json.dumps(metrics) and "predictive" in json.dumps(metrics)
