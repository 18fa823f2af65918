"""Tests for clv_forecast.rfm: the CDNOW reference summary, holdout columns, merge modes, units,
compress, attrs accounting and option errors."""

from __future__ import annotations

import datetime as dt
import importlib.util
import warnings
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clv_forecast.datasets import (
    CDNOW_CALIBRATION_END,
    CDNOW_OBSERVATION_END,
    cdnow_sample_path,
    load_cdnow_sample,
)
from clv_forecast.errors import ClvInputError
from clv_forecast.rfm import compress, summarize
from clv_forecast.transactions import read_transactions

_LIFETIMES = importlib.util.find_spec("lifetimes")
REFERENCE = (
    Path(_LIFETIMES.submodule_search_locations[0]) / "datasets" / "cdnow_customers_summary_with_transactions.csv"
    if _LIFETIMES is not None
    else None
)


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow_sample()


@pytest.fixture(scope="module")
def cdnow_rfm(cdnow) -> pd.DataFrame:
    return summarize(
        cdnow,
        amount_col="amount",
        calibration_end=CDNOW_CALIBRATION_END,
        observation_end=CDNOW_OBSERVATION_END,
    )


# ----------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------


def test_load_cdnow_sample(cdnow):
    assert cdnow_sample_path().is_file()
    assert list(cdnow.columns) == ["master_id", "customer_id", "date", "cds", "amount"]
    assert len(cdnow) == 6919 and cdnow["customer_id"].nunique() == 2357
    assert pd.api.types.is_datetime64_dtype(cdnow["date"])
    assert cdnow["cds"].dtype == np.int64 and cdnow["amount"].dtype == np.float64
    first = cdnow.iloc[0]
    assert (first.master_id, first.customer_id, first.date, first.cds, first.amount) == (
        4, 1, pd.Timestamp("1997-01-01"), 2, 29.33
    )
    assert cdnow["date"].min() == pd.Timestamp("1997-01-01") and cdnow["date"].max() == pd.Timestamp("1998-06-30")


# ----------------------------------------------------------------------------------------------
# (a) the published CDNOW summary, all 2357 customers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    if REFERENCE is None or not REFERENCE.exists():
        pytest.skip("lifetimes' CDNOW reference summary is not installed")
    return pd.read_csv(REFERENCE).set_index("ID")


def test_cdnow_reference_frequency_recency_T(cdnow_rfm, reference):
    assert len(cdnow_rfm) == len(reference) == 2357
    assert (cdnow_rfm.index == reference.index).all()
    assert (cdnow_rfm["frequency"] == reference["x"]).all()
    assert (np.round(cdnow_rfm["recency"], 2) == reference["t_x"]).all()
    assert (np.round(cdnow_rfm["T"], 2) == reference["T"]).all()
    # customer 1 of the brief: purchases 1997-01-01, 01-18, 08-02
    row = cdnow_rfm.loc[1]
    assert row["frequency"] == 2 and row["recency"] == 213 / 7.0 and row["T"] == 272 / 7.0


def test_cdnow_reference_monetary_value(cdnow, cdnow_rfm, reference):
    ours = cdnow_rfm["monetary_value"]
    assert ours.loc[1] == pytest.approx((29.73 + 14.96) / 2, abs=1e-12)
    # exact decimal mean of the merged (same-day summed) repeat purchases, computed independently
    cal = cdnow[cdnow["date"] <= CDNOW_CALIBRATION_END]
    exact = {}
    for cid, group in cal.groupby("customer_id"):
        days = {}
        for date, amount in zip(group["date"], group["amount"]):
            days[date] = days.get(date, Decimal(0)) + Decimal(repr(amount))
        values = [days[d] for d in sorted(days)][1:]
        exact[cid] = sum(values, Decimal(0)) / len(values) if values else Decimal(0)
    exact = pd.Series(exact).sort_index()
    assert np.allclose(ours.to_numpy(), exact.astype(float).to_numpy(), rtol=0, atol=1e-9)
    # the reference rounds the exact mean half-up: that reproduces zbar for every customer
    half_up = exact.map(lambda v: float(v.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)))
    assert (half_up.to_numpy() == reference["zbar"].to_numpy()).all()
    # np.round agrees everywhere except on exact half-cent means (binary 22.345 is 22.34499..)
    differs = np.round(ours, 2) != reference["zbar"]
    is_half = exact.map(lambda v: (v * 1000) % 10 == 5 and (v * 1000) == int(v * 1000)).to_numpy()
    assert differs.sum() > 0
    assert not (differs.to_numpy() & ~is_half).any()
    assert (np.abs(ours[differs] - reference["zbar"][differs]) < 0.0051).all()


def test_cdnow_from_standard_frame_and_from_raw_file(cdnow, cdnow_rfm, tmp_path):
    standard = read_transactions(cdnow, date_col="date", amount_col="amount")
    again = summarize(standard, calibration_end=CDNOW_CALIBRATION_END, observation_end=CDNOW_OBSERVATION_END)
    pd.testing.assert_frame_equal(again, cdnow_rfm)
    # CSV with YYYYMMDD integers, as in the raw file
    path = tmp_path / "cdnow.csv"
    cdnow.assign(date=cdnow["date"].dt.strftime("%Y%m%d").astype(int)).to_csv(path, index=False)
    from_csv = summarize(
        path, amount_col="amount", calibration_end="19970930", observation_end=CDNOW_OBSERVATION_END
    )
    pd.testing.assert_frame_equal(from_csv, cdnow_rfm, check_like=False)


def test_output_structure(cdnow_rfm):
    assert list(cdnow_rfm.columns) == [
        "frequency", "recency", "T", "monetary_value",
        "frequency_holdout", "monetary_value_holdout", "duration_holdout",
    ]
    assert cdnow_rfm.index.name == "customer_id"
    assert cdnow_rfm.index.is_monotonic_increasing and cdnow_rfm.index.is_unique
    assert cdnow_rfm["frequency"].dtype == np.int64 and cdnow_rfm["frequency_holdout"].dtype == np.int64
    for column in ("recency", "T", "monetary_value", "monetary_value_holdout", "duration_holdout"):
        assert cdnow_rfm[column].dtype == np.float64
    assert cdnow_rfm.attrs["time_unit"] == "W" and cdnow_rfm.attrs["merge"] == "D"
    assert cdnow_rfm.attrs["calibration_end"] == "1997-09-30"
    assert cdnow_rfm.attrs["observation_end"] == "1998-06-30"


def test_no_calibration_columns_without_split(cdnow):
    rfm = summarize(cdnow)
    assert list(rfm.columns) == ["frequency", "recency", "T"]
    assert rfm.attrs["calibration_end"] is None
    assert rfm.attrs["observation_end"] == "1998-06-30T00:00:00"
    # T runs to the last transaction (1998-06-30) = 545 days after 1997-01-01
    assert rfm.loc[1, "T"] == 545 / 7.0


# ----------------------------------------------------------------------------------------------
# (b) holdout columns against lifetimes
# ----------------------------------------------------------------------------------------------


def test_cdnow_holdout_against_lifetimes(cdnow, cdnow_rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifetimes' import and code warn under pandas 3
        utils = pytest.importorskip("lifetimes.utils")
        theirs = utils.calibration_and_holdout_data(
            cdnow, "customer_id", "date", CDNOW_CALIBRATION_END, CDNOW_OBSERVATION_END,
            freq="D", monetary_value_col="amount",
        )
    ours = cdnow_rfm
    assert (ours.index == theirs.index).all()
    # days / 7.0 exactly: integer buckets, one final division
    assert (ours["frequency"] == theirs["frequency_cal"]).all()
    assert (ours["recency"] == theirs["recency_cal"] / 7.0).all()
    assert (ours["T"] == theirs["T_cal"] / 7.0).all()
    np.testing.assert_allclose(ours["monetary_value"], theirs["monetary_value_cal"], rtol=1e-13, atol=1e-12)
    assert (ours["frequency_holdout"] == theirs["frequency_holdout"]).all()
    assert (ours["duration_holdout"] == theirs["duration_holdout"] / 7.0).all()
    assert (ours["duration_holdout"] == 39.0).all()  # 1997-09-30 -> 1998-06-30 = 273 days

    # monetary_value_holdout: ours is the mean of the MERGED (same-day summed) holdout purchases,
    # consistent with frequency_holdout and with the calibration monetary_value; lifetimes
    # averages the raw holdout rows. They agree wherever no customer bought twice on one day.
    holdout = cdnow[(cdnow["date"] > CDNOW_CALIBRATION_END) & (cdnow["date"] <= CDNOW_OBSERVATION_END)]
    same_day = holdout[holdout.duplicated(["customer_id", "date"], keep=False)]["customer_id"].unique()
    assert len(same_day) > 0
    clean = ~ours.index.isin(same_day)
    np.testing.assert_allclose(
        ours.loc[clean, "monetary_value_holdout"], theirs.loc[clean, "monetary_value_holdout"], rtol=1e-13, atol=1e-12
    )
    merged = holdout.groupby(["customer_id", "date"])["amount"].sum().groupby("customer_id").mean()
    np.testing.assert_allclose(ours.loc[merged.index, "monetary_value_holdout"], merged, rtol=1e-13, atol=1e-12)
    raw = holdout.groupby("customer_id")["amount"].mean()
    np.testing.assert_allclose(theirs.loc[same_day, "monetary_value_holdout"], raw.loc[same_day], rtol=1e-13)
    assert (ours.loc[~ours.index.isin(holdout["customer_id"]), "monetary_value_holdout"] == 0.0).all()


def test_random_data_against_naive_reference():
    """Merged-by-day weekly summary with holdout vs a straightforward pandas computation."""
    rng = np.random.default_rng(7)
    n = 3000
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 400, n),
            "date": pd.Timestamp("2020-01-01")
            + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s"),
            "amount": np.round(rng.gamma(2.0, 10.0, n), 2),
        }
    )
    cal_end, obs_end = pd.Timestamp("2020-06-30"), pd.Timestamp("2020-09-30")
    ours = summarize(frame, amount_col="amount", calibration_end="2020-06-30", observation_end="2020-09-30")
    frame["day"] = (frame["date"] - pd.Timestamp("1970-01-01")).dt.days
    cal = frame[frame["date"] < cal_end + pd.Timedelta(days=1)]
    hold = frame[(frame["date"] >= cal_end + pd.Timedelta(days=1)) & (frame["date"] < obs_end + pd.Timedelta(days=1))]
    daily = cal.groupby(["customer_id", "day"])["amount"].sum().reset_index()
    expected = {}
    cal_day = (cal_end - pd.Timestamp("1970-01-01")).days
    for cid, group in daily.groupby("customer_id"):
        days, amounts = group["day"].to_numpy(), group["amount"].to_numpy()
        h = hold[hold["customer_id"] == cid].groupby("day")["amount"].sum()
        expected[cid] = {
            "frequency": len(days) - 1,
            "recency": (days[-1] - days[0]) / 7.0,
            "T": (cal_day - days[0]) / 7.0,
            "monetary_value": amounts[1:].mean() if len(days) > 1 else 0.0,
            "frequency_holdout": len(h),
            "monetary_value_holdout": h.mean() if len(h) else 0.0,
            "duration_holdout": 92 / 7.0,
        }
    expected = pd.DataFrame.from_dict(expected, orient="index").sort_index()
    assert (ours.index == expected.index).all()
    for column in ("frequency", "recency", "T", "frequency_holdout", "duration_holdout"):
        assert (ours[column].to_numpy() == expected[column].to_numpy()).all(), column
    for column in ("monetary_value", "monetary_value_holdout"):
        np.testing.assert_allclose(ours[column], expected[column], rtol=1e-12, atol=1e-12)
    late = set(hold["customer_id"]) - set(cal["customer_id"])
    assert ours.attrs["n_customers_first_purchase_after_calibration"] == len(late)


# ----------------------------------------------------------------------------------------------
# (c) merge modes and time units on hand-computed cases
# ----------------------------------------------------------------------------------------------


@pytest.fixture()
def small() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "A", "B", "B"],
            "date": pd.to_datetime(
                [
                    "2020-01-01 10:00", "2020-01-01 10:00", "2020-01-01 22:00", "2020-01-03 04:00",
                    "2020-01-02 00:00", "2020-01-10 12:00",
                ]
            ),
            "amount": [10.0, 5.0, 7.0, 3.0, 1.0, 2.0],
        }
    )


def test_exact_merge_without_split(small):
    rfm = summarize(small, amount_col="amount", merge="exact", time_unit="D")
    assert rfm.index.tolist() == ["A", "B"]
    a, b = rfm.loc["A"], rfm.loc["B"]
    # A: 10:00 twice (one purchase of 15), 22:00, 01-03 04:00 -> 2 repeats of 7 and 3
    assert a["frequency"] == 2 and a["monetary_value"] == 5.0
    assert a["recency"] == 42 / 24 and a["T"] == (9 * 24 + 2) / 24  # to the last transaction
    assert b["frequency"] == 1 and b["recency"] == 8.5 and b["T"] == 8.5 and b["monetary_value"] == 2.0
    assert rfm.attrs["merge"] == "exact" and rfm.attrs["time_unit"] == "D"


def test_exact_merge_with_split(small):
    rfm = summarize(
        small, amount_col="amount", merge="exact", time_unit="D",
        calibration_end="2020-01-05", observation_end="2020-01-10",
    )
    a, b = rfm.loc["A"], rfm.loc["B"]
    # a date is inclusive: the calibration boundary is 2020-01-06 00:00, the observation one 01-11
    assert a["T"] == 4 + 14 / 24 and a["frequency_holdout"] == 0 and a["monetary_value_holdout"] == 0.0
    assert b["frequency"] == 0 and b["recency"] == 0.0 and b["T"] == 4.0 and b["monetary_value"] == 0.0
    assert b["frequency_holdout"] == 1 and b["monetary_value_holdout"] == 2.0
    assert (rfm["duration_holdout"] == 5.0).all()
    assert rfm.attrs["calibration_end"] == "2020-01-05" and rfm.attrs["observation_end"] == "2020-01-10"


def test_calibration_end_with_a_time_is_an_instant(small):
    rfm = summarize(small, amount_col="amount", merge="exact", time_unit="h", calibration_end="2020-01-03 03:00")
    a = rfm.loc["A"]
    assert a["frequency"] == 1 and a["recency"] == 12.0 and a["T"] == 41.0
    assert a["frequency_holdout"] == 1 and a["monetary_value_holdout"] == 3.0
    assert a["duration_holdout"] == (7 * 24 + 9)  # 01-03 03:00 -> last transaction 01-10 12:00
    assert rfm.attrs["calibration_end"] == "2020-01-03T03:00:00"


def test_day_merge(small):
    rfm = summarize(small, amount_col="amount", time_unit="D", calibration_end="2020-01-05")
    a = rfm.loc["A"]
    # 01-01 (10 + 5 + 7 merged) and 01-03 (3)
    assert a["frequency"] == 1 and a["recency"] == 2.0 and a["T"] == 4.0 and a["monetary_value"] == 3.0
    assert rfm.loc["B", "T"] == 3.0
    assert (rfm["duration_holdout"] == 5.0).all()  # bucket of 01-10 minus bucket of 01-05


def test_hour_merge(small):
    rfm = summarize(small, amount_col="amount", time_unit="D", merge="h")
    a = rfm.loc["A"]
    assert a["frequency"] == 2 and a["recency"] == 42 / 24 and a["monetary_value"] == 5.0
    assert a["T"] == (9 * 24 + 2) / 24  # hour bucket of 01-10 12:00 minus that of 01-01 10:00


def test_week_merge_weeks_run_monday_to_sunday_by_default(small):
    # 2019-12-30 (Mon) .. 2020-01-05 (Sun) is one week: 01-01 (Wed) and 01-03 (Fri) are one purchase
    rfm = summarize(small, amount_col="amount", merge="W")
    a, b = rfm.loc["A"], rfm.loc["B"]
    assert a["frequency"] == 0 and a["recency"] == 0.0 and a["monetary_value"] == 0.0
    assert a["T"] == 1.0  # 01-10 lies in the week starting Monday 01-06
    assert b["frequency"] == 1 and b["recency"] == 1.0 and b["T"] == 1.0
    assert rfm.attrs["merge"] == "W" and rfm.attrs["week_start"] == "MON"


@pytest.mark.parametrize("week_start", ["THU", "thursday", 3])
def test_week_start_thursday_gives_the_epoch_aligned_buckets(small, week_start):
    # weeks from Thursdays (1970-01-01 was one): 2020-01-01 (Wed) and 01-03 (Fri) differ
    rfm = summarize(small, amount_col="amount", merge="W", week_start=week_start)
    a, b = rfm.loc["A"], rfm.loc["B"]
    assert a["frequency"] == 1 and a["recency"] == 1.0 and a["monetary_value"] == 3.0
    assert a["T"] == 2.0  # 01-10 lies in the week starting Thursday 01-09
    assert b["frequency"] == 1 and b["recency"] == 1.0 and b["T"] == 1.0
    assert rfm.attrs["week_start"] == "THU"


def test_week_start_applies_to_multiples_of_weeks_only(small):
    two = summarize(small, amount_col="amount", merge="2W", time_unit="W", week_start="SUN")
    assert two.attrs["week_start"] == "SUN"
    days = summarize(small, amount_col="amount", merge="D", time_unit="D", week_start="SUN")
    assert (days.to_numpy() == summarize(small, amount_col="amount", merge="D", time_unit="D").to_numpy()).all()


@pytest.mark.parametrize("value", ["Funday", 7, -1, True, 1.5])
def test_bad_week_start(small, value):
    with pytest.raises(ClvInputError) as info:
        summarize(small, merge="W", week_start=value)
    assert info.value.argument == "week_start" and "MON" in str(info.value)


def test_two_day_merge():
    frame = pd.DataFrame(
        {"customer_id": [1, 1, 1], "date": pd.to_datetime(["1970-01-01", "1970-01-02", "1970-01-03"])}
    )
    rfm = summarize(frame, merge="2D", time_unit="D")
    assert rfm.loc[1, "frequency"] == 1 and rfm.loc[1, "recency"] == 2.0 and rfm.loc[1, "T"] == 2.0
    assert rfm.attrs["merge"] == "2D"


@pytest.mark.parametrize("unit, days", [("D", 1.0), ("W", 7.0), ("2W", 14.0), ("M", 30.4375), ("Y", 365.25)])
def test_time_units_divide_integer_days_once(cdnow, unit, days):
    rfm = summarize(cdnow, time_unit=unit, calibration_end=CDNOW_CALIBRATION_END, observation_end=CDNOW_OBSERVATION_END)
    in_days = summarize(cdnow, time_unit="D", calibration_end=CDNOW_CALIBRATION_END, observation_end=CDNOW_OBSERVATION_END)
    assert (in_days["recency"] == np.round(in_days["recency"])).all()
    for column in ("recency", "T", "duration_holdout"):
        assert (rfm[column].to_numpy() == in_days[column].to_numpy() / days).all(), column
    assert rfm.attrs["time_unit"] == unit


def test_timestamps_with_time_zone_use_wall_clock():
    frame = pl.DataFrame(
        {"customer_id": [1, 1], "date": ["2020-01-01 23:30", "2020-01-02 00:30"]}
    ).with_columns(pl.col("date").str.to_datetime().dt.replace_time_zone("America/New_York"))
    rfm = summarize(frame, time_unit="D")
    assert rfm.loc[1, "frequency"] == 1 and rfm.loc[1, "recency"] == 1.0


def test_integer_ids_of_other_types_and_string_ids_sorted():
    frame = pl.DataFrame(
        {"customer_id": pl.Series([30, 10, 20, 10], dtype=pl.Int32), "date": ["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"]}
    )
    rfm = summarize(frame, time_unit="D")
    assert rfm.index.tolist() == [10, 20, 30] and rfm.loc[10, "recency"] == 2.0
    strings = summarize(frame.with_columns(pl.col("customer_id").cast(pl.String)), time_unit="D")
    assert strings.index.tolist() == ["10", "20", "30"]
    pd.testing.assert_frame_equal(strings.reset_index(drop=True), rfm.reset_index(drop=True))


def test_negative_amounts_are_returns():
    frame = pd.DataFrame(
        {"customer_id": [1, 1, 1], "date": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-02"]), "amount": [5.0, 4.0, -1.0]}
    )
    rfm = summarize(frame, amount_col="amount", time_unit="D")  # returns="drop": the -1 is not spend
    assert rfm.loc[1, "frequency"] == 1 and rfm.loc[1, "monetary_value"] == 4.0
    assert rfm.attrs["n_return_rows"] == 1 and rfm.attrs["return_value"] == -1.0
    netted = summarize(frame, amount_col="amount", time_unit="D", returns="net")  # 4 - 1 on 01-02
    assert netted.loc[1, "frequency"] == 1 and netted.loc[1, "monetary_value"] == 3.0
    assert netted.attrs["n_returns_netted"] == 1
    with pytest.raises(ClvInputError, match="row 3 .*negative amount"):
        summarize(frame, amount_col="amount", returns="error")


# ----------------------------------------------------------------------------------------------
# (d) compress
# ----------------------------------------------------------------------------------------------


def test_compress_round_trip(cdnow_rfm):
    columns = ["frequency", "recency", "T"]
    unique, inverse = compress(cdnow_rfm, return_inverse=True)
    assert list(unique.columns) == columns + ["count"]
    assert unique["count"].dtype == np.int64 and unique["count"].sum() == len(cdnow_rfm)
    assert len(unique) < len(cdnow_rfm)
    assert not unique.duplicated(columns).any()
    assert unique.equals(unique.sort_values(columns, ignore_index=True))
    assert inverse.shape == (len(cdnow_rfm),) and inverse.dtype == np.int64
    rebuilt = unique[columns].to_numpy()[inverse]
    assert (rebuilt == cdnow_rfm[columns].to_numpy()).all()
    assert (np.bincount(inverse, minlength=len(unique)) == unique["count"].to_numpy()).all()
    assert unique["frequency"].dtype == np.int64
    assert unique.attrs == cdnow_rfm.attrs


def test_compress_sums_existing_counts(cdnow_rfm):
    unique = compress(cdnow_rfm)
    pd.testing.assert_frame_equal(compress(unique), unique)
    by_frequency = compress(unique, columns=["frequency"])
    expected = cdnow_rfm["frequency"].value_counts().sort_index()
    assert (by_frequency["frequency"].to_numpy() == expected.index.to_numpy()).all()
    assert (by_frequency["count"].to_numpy() == expected.to_numpy()).all()


def test_compress_other_columns_and_errors(cdnow_rfm):
    unique = compress(cdnow_rfm, columns=("frequency", "recency", "T", "monetary_value"))
    assert unique["count"].sum() == len(cdnow_rfm)
    with pytest.raises(ClvInputError, match="column 'nope' not found"):
        compress(cdnow_rfm, columns=("frequency", "nope"))


def test_compress_merges_signed_zeros():
    frame = pd.DataFrame({"frequency": [0, 0], "recency": [0.0, -0.0], "T": [1.0, 1.0]})
    unique, inverse = compress(frame, return_inverse=True)
    assert len(unique) == 1 and unique["count"].tolist() == [2] and inverse.tolist() == [0, 0]


# ----------------------------------------------------------------------------------------------
# (e) every input row is accounted for
# ----------------------------------------------------------------------------------------------


def test_attrs_account_for_every_row():
    frame = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 2, 3, 3, 4, 1],
            "date": pd.to_datetime(
                [
                    "2020-01-01", "2020-01-01", "2020-02-10",  # 1: same-day pair, then holdout
                    "2020-01-15", "2020-01-20",  # 2: calibration only
                    "2020-02-05", "2020-02-06",  # 3: first purchase after calibration
                    "2020-04-01",  # 4: only after the observation end
                    "2020-03-31",  # 1: after the observation end
                ]
            ),
        }
    )
    rfm = summarize(frame, calibration_end="2020-01-31", observation_end="2020-03-15", time_unit="D")
    attrs = rfm.attrs
    assert rfm.index.tolist() == [1, 2]
    assert attrs["n_transactions"] == 9
    assert attrs["n_customers"] == 2
    assert attrs["n_transactions_after_observation_end"] == 2
    assert attrs["n_customers_first_purchase_after_calibration"] == 1
    assert attrs["n_transactions_first_purchase_after_calibration"] == 2
    used = 9 - attrs["n_transactions_after_observation_end"] - attrs["n_transactions_first_purchase_after_calibration"]
    assert used == 5  # rows of customers 1 and 2 inside the observation window
    assert rfm.loc[1, "frequency"] == 0 and rfm.loc[1, "frequency_holdout"] == 1
    assert rfm.loc[1, "duration_holdout"] == 44.0  # 2020-01-31 -> 2020-03-15


def test_cdnow_attrs_accounting(cdnow):
    rfm = summarize(cdnow, calibration_end=CDNOW_CALIBRATION_END, observation_end="1998-03-31")
    after = int((cdnow["date"] > "1998-03-31").sum())
    attrs = rfm.attrs
    assert attrs["n_transactions"] == len(cdnow) == 6919
    assert attrs["n_transactions_after_observation_end"] == after > 0
    assert attrs["n_customers"] == len(rfm) == 2357
    assert attrs["n_customers_first_purchase_after_calibration"] == 0
    holdout = cdnow[(cdnow["date"] > CDNOW_CALIBRATION_END) & (cdnow["date"] <= "1998-03-31")]
    assert rfm["frequency_holdout"].sum() == len(holdout.drop_duplicates(["customer_id", "date"]))
    calibration = cdnow[cdnow["date"] <= CDNOW_CALIBRATION_END]
    assert (rfm["frequency"] + 1).sum() == len(calibration.drop_duplicates(["customer_id", "date"]))


# ----------------------------------------------------------------------------------------------
# (f) option errors
# ----------------------------------------------------------------------------------------------


def error_of(frame, **kw) -> str:
    with pytest.raises(ClvInputError) as info:
        summarize(frame, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_calibration_end_before_first_transaction(cdnow):
    message = error_of(cdnow, calibration_end="1996-12-31")
    assert "calibration_end='1996-12-31'" in message and "before the first transaction" in message
    assert "1997-01-01T00:00:00 to 1998-06-30T00:00:00" in message


def test_calibration_end_after_last_transaction(cdnow):
    message = error_of(cdnow, calibration_end="1998-07-01")
    assert "calibration_end='1998-07-01'" in message and "after the last transaction" in message
    assert "1997-01-01T00:00:00 to 1998-06-30T00:00:00" in message


def test_calibration_end_on_the_last_day_is_allowed(cdnow):
    rfm = summarize(cdnow, calibration_end="1998-06-30")
    assert (rfm["frequency_holdout"] == 0).all() and (rfm["duration_holdout"] == 0.0).all()


def test_observation_end_before_calibration_end(cdnow):
    message = error_of(cdnow, calibration_end="1997-09-30", observation_end="1997-06-30")
    assert message.startswith("observation_end='1997-06-30': ") and "before the calibration end 1997-09-30" in message


def test_observation_end_before_first_transaction(cdnow):
    message = error_of(cdnow, observation_end="1990-01-01")
    assert "observation_end='1990-01-01'" in message and "before the first transaction" in message


def test_unparseable_calibration_end(cdnow):
    message = error_of(cdnow, calibration_end="soon")
    assert "calibration_end='soon'" in message and "not a date" in message


@pytest.mark.parametrize("option, value", [("time_unit", "fortnight"), ("time_unit", "-2W"), ("merge", "X"), ("merge", "0D")])
def test_bad_time_unit_and_merge(cdnow, option, value):
    message = error_of(cdnow, **{option: value})
    assert f"{option}={value!r}" in message


def test_hand_built_standard_frame_is_still_checked():
    frame = pl.DataFrame(
        {"customer_id": [1, 2], "timestamp": [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02")], "amount": [1.0, float("nan")]}
    )
    with pytest.raises(ClvInputError, match="column 'amount', row 2 .*not finite"):
        summarize(frame, date_col="timestamp", amount_col="amount")
    assert list(summarize(frame.head(1), date_col="timestamp").columns) == ["frequency", "recency", "T", "monetary_value"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([0.0, -0.0, 1 / 7, 2 / 7, 10.5]), st.sampled_from([1.0, 2.0, 1 / 3])),
        min_size=1,
        max_size=40,
    )
)
def test_compress_property(rows):
    frame = pd.DataFrame(rows, columns=["frequency", "recency", "T"])
    unique, inverse = compress(frame, return_inverse=True)
    assert unique["count"].sum() == len(frame)
    assert (unique[["frequency", "recency", "T"]].to_numpy()[inverse] == frame.to_numpy()).all()
    assert len(unique) == len({(f, r + 0.0, t) for f, r, t in rows})


def test_exact_merge_on_whole_days_equals_day_merge_without_split(cdnow):
    exact = summarize(cdnow, amount_col="amount", merge="exact")
    daily = summarize(cdnow, amount_col="amount")
    assert exact.attrs["merge"] == "exact"
    for column in daily.columns:
        assert (exact[column].to_numpy() == daily[column].to_numpy()).all(), column
    # with a split, exact T runs to the boundary (next midnight): one day more than merged
    split = summarize(cdnow, merge="exact", time_unit="D", calibration_end=CDNOW_CALIBRATION_END)
    assert split.loc[1, "T"] == 273.0


def test_exact_merge_with_nanosecond_timestamps():
    base = pd.Timestamp("2020-01-01").value
    stamps = np.array([base + 1, base + 2, base + 2, base + 86_400 * 10**9 + 1], dtype="datetime64[ns]")
    frame = pd.DataFrame({"customer_id": [5, 5, 5, 6], "date": stamps, "amount": [1.0, 2.0, 3.0, 4.0]})
    rfm = summarize(frame, amount_col="amount", merge="exact", time_unit="D")
    assert rfm.loc[5, "frequency"] == 1 and rfm.loc[5, "monetary_value"] == 5.0
    assert rfm.loc[5, "recency"] == 1 / (86_400 * 10**9)
    assert rfm.loc[5, "T"] == 1.0  # to the last transaction, base + 1 day + 1 ns
    assert rfm.loc[6, "T"] == 0.0


@pytest.mark.parametrize("offset", [-(10**6), 2**62 + 1])
def test_wide_integer_ids_take_the_general_path_with_the_same_result(cdnow, cdnow_rfm, offset):
    shifted = summarize(
        cdnow.assign(customer_id=cdnow["customer_id"] + offset), amount_col="amount",
        calibration_end=CDNOW_CALIBRATION_END, observation_end=CDNOW_OBSERVATION_END,
    )
    assert (shifted.index.to_numpy() - offset == cdnow_rfm.index.to_numpy()).all()
    assert np.array_equal(shifted.to_numpy(), cdnow_rfm.to_numpy())


def test_amounts_summing_beyond_the_float_range_are_an_error(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text("cust,date,amount\n1,2020-01-01,1e308\n1,2020-01-01,1e308\n1,2020-01-05,1\n2,2020-01-01,3\n")
    with pytest.raises(ClvInputError, match=r"tx.csv: column 'amount': the purchases of customer 1 sum beyond"):
        summarize(path, customer_col="cust", amount_col="amount")


def test_merge_by_minutes_and_seconds():
    tx = pd.DataFrame({"customer_id": [1, 1, 1], "date": pd.to_datetime(
        ["2020-01-01 10:00:05", "2020-01-01 10:00:50", "2020-01-01 10:20:00"])})
    by_minute = summarize(tx, merge="min", time_unit="min")
    assert by_minute.loc[1, "frequency"] == 1 and by_minute.loc[1, "recency"] == 20.0
    by_second = summarize(tx, merge="s", time_unit="s")
    assert by_second.loc[1, "frequency"] == 2 and by_second.loc[1, "recency"] == 1195.0


# ----------------------------------------------------------------------------------------------
# (g) weeks, first transaction, ends, row accounting
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(_LIFETIMES is None, reason="lifetimes is not installed")
@pytest.mark.parametrize("include_first", [False, True])
def test_week_merge_equals_lifetimes_weekly_summary(cdnow, include_first):
    from lifetimes.utils import summary_data_from_transaction_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = summary_data_from_transaction_data(
            cdnow, "customer_id", "date", monetary_value_col="amount", observation_period_end="1998-06-30",
            freq="W", include_first_transaction=include_first,
        )
    ours = summarize(cdnow, amount_col="amount", merge="W", time_unit="W", observation_end="1998-06-30",
                     include_first_transaction=include_first)
    assert (ours.index == theirs.index).all()
    # lifetimes counts the first purchase in frequency when it includes it in the mean
    assert (ours["frequency"].to_numpy() == theirs["frequency"].to_numpy() - int(include_first)).all()
    assert (ours["recency"].to_numpy() == theirs["recency"].to_numpy()).all()
    assert (ours["T"].to_numpy() == theirs["T"].to_numpy()).all()
    assert np.allclose(ours["monetary_value"].to_numpy(), theirs["monetary_value"].to_numpy(), rtol=1e-12, atol=1e-12)
    assert ours.attrs["include_first_transaction"] is include_first
    thursday = summarize(cdnow, merge="W", time_unit="W", observation_end="1998-06-30", week_start="THU")
    assert (thursday["recency"].to_numpy() != theirs["recency"].to_numpy()).any()


def test_include_first_transaction_mean_of_all_calibration_purchases(small):
    rfm = summarize(small, amount_col="amount", time_unit="D", calibration_end="2020-01-05",
                    include_first_transaction=True)
    assert rfm.loc["A", "monetary_value"] == (22.0 + 3.0) / 2  # 01-01 (10 + 5 + 7) and 01-03
    assert rfm.loc["B", "monetary_value"] == 1.0  # one calibration purchase: its value
    assert rfm.loc["B", "monetary_value_holdout"] == 2.0


@pytest.mark.parametrize(
    "value",
    ["1997-09-30", "19970930", 19970930, dt.date(1997, 9, 30), dt.datetime(1997, 9, 30), pd.Timestamp("1997-09-30"),
     np.datetime64("1997-09-30"), pd.Period("1997-09", "M"), pd.Period("1997-09-30", "D")],
)
def test_end_types_are_equivalent(cdnow, cdnow_rfm, value):
    rfm = summarize(cdnow, amount_col="amount", calibration_end=value, observation_end=CDNOW_OBSERVATION_END)
    pd.testing.assert_frame_equal(rfm, cdnow_rfm)
    assert rfm.attrs["calibration_end"] == "1997-09-30"


def test_period_end_includes_the_whole_period(cdnow):
    by_quarter = summarize(cdnow, calibration_end=pd.Period("1997Q3", "Q"), observation_end=pd.Period("1998-06", "M"))
    by_day = summarize(cdnow, calibration_end="1997-09-30", observation_end="1998-06-30")
    pd.testing.assert_frame_equal(by_quarter, by_day)
    assert by_quarter.attrs["observation_end"] == "1998-06-30"


def test_ends_with_a_date_format_are_never_guessed():
    frame = pd.DataFrame({"customer_id": [1, 1, 1, 1],
                          "date": ["01/08/2011 10:00", "20/08/2011 09:30", "08/09/2011 23:59", "12/09/2011 08:00"]})
    fmt = "%d/%m/%Y %H:%M"
    rfm = summarize(frame, date_format=fmt, time_unit="D", calibration_end="08/09/2011")
    assert rfm.attrs["calibration_end"] == "2011-09-08"  # the 8th of September, whole day
    assert rfm.loc[1, "frequency"] == 2 and rfm.loc[1, "frequency_holdout"] == 1
    assert summarize(frame, date_format=fmt, calibration_end="12/09/2011").attrs["calibration_end"] == "2011-09-12"
    full = summarize(frame, date_format=fmt, time_unit="D", calibration_end="08/09/2011 12:00")
    assert full.attrs["calibration_end"] == "2011-09-08T12:00:00" and full.loc[1, "frequency"] == 1
    with pytest.raises(ClvInputError) as info:
        summarize(frame, date_format=fmt, calibration_end="2011/09/08")
    assert info.value.argument == "calibration_end" and info.value.value == "2011/09/08"
    assert "'%d/%m/%Y'" in info.value.reason
    with pytest.raises(ClvInputError) as info:  # without a format only ISO: 08/09/2011 is not guessed
        summarize(frame.assign(date=["2011-08-01", "2011-08-20", "2011-09-08", "2011-09-12"]), calibration_end="08/09/2011")
    assert info.value.argument == "calibration_end" and "date_format" in info.value.reason


@pytest.mark.parametrize("value", [1997.5, True, [1997, 9, 30], "soon"])
def test_ends_of_other_types_are_refused(cdnow, value):
    with pytest.raises(ClvInputError) as info:
        summarize(cdnow, calibration_end=value)
    assert info.value.argument == "calibration_end" and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kw, argument",
    [({"time_unit": "fortnight"}, "time_unit"), ({"merge": "X"}, "merge"), ({"returns": "keep"}, "returns"),
     ({"duplicates": "maybe"}, "duplicates"), ({"missing_customer": "skip"}, "missing_customer"),
     ({"encoding": "klingon"}, "encoding"), ({"date_format": "dd/mm/yyyy"}, "date_format"),
     ({"week_start": "Funday"}, "week_start"), ({"calibration_end": "1990-01-01"}, "calibration_end"),
     ({"calibration_end": "1999-01-01"}, "calibration_end"), ({"observation_end": "1990-01-01"}, "observation_end")],
)
def test_option_errors_carry_their_argument(cdnow, kw, argument):
    with pytest.raises(ClvInputError) as info:
        summarize(cdnow, **kw)
    error = info.value
    assert error.argument == argument and error.value == kw[argument]
    assert f"{argument}=" not in error.reason  # the front end names the option
    assert error.render("--x", style="option").startswith(f"--x {kw[argument]}: ")


def test_accounting_identity_on_cdnow(cdnow):
    from clv_forecast.rfm import LEFT_OUT_ROWS

    for kw in ({}, {"calibration_end": "1997-09-30", "observation_end": "1998-03-31"},
               {"calibration_end": "1998-01-31", "observation_end": "1998-03-31", "returns": "net"}):
        attrs = summarize(cdnow, amount_col="amount", **kw).attrs
        assert attrs["n_transactions"] == 6919
        assert attrs["n_transactions"] == attrs["n_transactions_summarised"] + sum(attrs[k] for k in LEFT_OUT_ROWS)
        assert attrs["n_return_rows"] == 0 and attrs["return_value"] == 0.0


def test_net_returns_rules():
    frame = pd.DataFrame({
        "customer_id": [1, 1, 1, 1, 2, 2, 2, 3, 1],
        "date": pd.to_datetime(["2020-01-01", "2020-01-05", "2020-01-06", "2020-02-10",  # 1
                                "2020-01-03", "2020-01-02", "2020-03-01",  # 2: a return before any purchase
                                "2020-01-04",  # 3: only a return
                                "2020-03-30"]),  # 1: return after the observation end
        "amount": [10.0, 4.0, -4.0, -3.0, 5.0, -1.0, 5.0, -2.0, -1.0],
    })
    rfm = summarize(frame, amount_col="amount", time_unit="D", calibration_end="2020-01-31",
                    observation_end="2020-03-15", returns="net")
    a = rfm.attrs
    # customer 1: the 01-06 return (-4) nets the 01-05 purchase (4) to 0: no longer a purchase;
    # the holdout return of 02-10 has no holdout purchase: not netted back across the calibration end
    assert rfm.loc[1, "frequency"] == 0 and rfm.loc[1, "monetary_value"] == 0.0 and rfm.loc[1, "recency"] == 0.0
    assert a["n_purchases_fully_returned"] == 1 and a["n_returns_netted"] == 1
    assert a["n_returns_across_calibration_end"] == 1
    assert a["n_returns_unmatched"] == 2  # customer 2's early return, customer 3's return
    assert a["n_returns_after_observation_end"] == 1
    assert a["n_return_rows"] == 5 and a["return_value"] == -11.0
    assert a["n_customers_returns_only"] == 1 and 3 not in rfm.index
    assert a["n_transactions"] == a["n_transactions_summarised"] + a["n_return_rows"] + a["n_purchases_fully_returned"]
    dropped = summarize(frame, amount_col="amount", time_unit="D", calibration_end="2020-01-31",
                        observation_end="2020-03-15")
    assert dropped.loc[1, "frequency"] == 1 and dropped.loc[1, "monetary_value"] == 4.0
    assert dropped.attrs["n_customers_returns_only"] == 1


def test_zero_amounts_stay_purchases():
    frame = pd.DataFrame({"customer_id": [1, 1], "date": pd.to_datetime(["2020-01-01", "2020-01-08"]), "amount": [5.0, 0.0]})
    rfm = summarize(frame, amount_col="amount", time_unit="D", returns="net")
    assert rfm.loc[1, "frequency"] == 1 and rfm.attrs["n_return_rows"] == 0
