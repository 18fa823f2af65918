"""Scoring on Spark (clv_forecast.spark) with a real local Spark session.

pyspark and a Java runtime are test requirements (the ``dev`` extra installs pyspark, CI installs
Java): when either is missing the Spark tests fail and say so, they are not skipped.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from clv_forecast.btyd._data import rfm_verdict, verdict_reasons
from clv_forecast.errors import ClvInputError
from clv_forecast.model import ClvModel

# pyspark 4 on pandas 3: its own conversion code warns about the pandas version (driver side, not ours)
pytestmark = [pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value"]
SCORES = ["expected_purchases", "p_alive", "expected_spend", "clv"]


@pytest.fixture(scope="module")
def model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm)


@pytest.fixture(scope="module")
def table(cdnow_rfm):
    return cdnow_rfm.reset_index()[COLUMNS]


def _collect(sdf) -> pd.DataFrame:
    return sdf.toPandas().sort_values("customer_id").reset_index(drop=True)


def test_importing_the_module_does_not_import_pyspark():
    code = "import sys, clv_forecast.spark; assert 'pyspark' not in sys.modules, 'pyspark imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scores_equal_clv_model_on_cdnow(spark, model, table):
    from clv_forecast.spark import score_spark

    args = dict(horizon="12M", discount_rate="10%/Y", step="1M", margin=0.3)
    got = _collect(score_spark(model, spark.createDataFrame(table).repartition(3), **args))
    assert list(got.columns) == ["customer_id", *SCORES, "reject_reason"]
    assert len(got) == len(table)
    assert got["reject_reason"].isna().all()
    expected = model.clv(table.set_index("customer_id"), **args).sort_index()
    assert got["customer_id"].tolist() == expected.index.tolist()
    for name in SCORES:
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-9, atol=0)


def test_invalid_rows_get_the_verdict_reasons_and_null_numbers(spark, model, table):
    from clv_forecast.spark import score_spark

    rows = table.head(8).copy()
    rows["customer_id"] = np.arange(1, 9)
    bad = pd.DataFrame({"customer_id": np.arange(101, 109),
                        "frequency": [np.nan, 1.5, 2, 2, 2, 0, 1, 1],
                        "recency": [1, 1, -1, 1, 5, 1, 1, 1],
                        "T": [2, 2, 2, -1, 4, 2, 2, 2],
                        "monetary_value": [5, 5, 5, 5, 5, 5, -1, np.nan]})
    frame = pd.concat([rows, bad], ignore_index=True).astype({c: float for c in COLUMNS[1:]})
    got = _collect(score_spark(model, spark.createDataFrame(frame)))
    codes = rfm_verdict(frame["frequency"], frame["recency"], frame["T"], frame["monetary_value"])
    expected = pd.Series(np.where(codes > 0, verdict_reasons(codes), None), index=frame["customer_id"])
    assert got["reject_reason"].tolist() == expected.sort_index().tolist()
    assert got["reject_reason"].iloc[8:].notna().all() and got["reject_reason"].iloc[:8].isna().all()
    assert got.loc[got["reject_reason"].notna(), SCORES].isna().all().all()
    scored = model.clv(rows.set_index("customer_id"))
    np.testing.assert_allclose(got["clv"].iloc[:8].to_numpy(), scored["clv"].to_numpy(), rtol=1e-9)


def test_text_columns_missing_ids_and_non_numbers(spark, model):
    from clv_forecast.spark import score_spark

    frame = pd.DataFrame({"customer_id": ["a", None, " ", "d"], "frequency": ["2", "1", "1", "x"],
                          "recency": ["10", "5", "5", "5"], "T": ["30", "30", "30", "30"],
                          "monetary_value": ["20.5", "3", "3", "3"]})
    got = score_spark(model, spark.createDataFrame(frame)).toPandas().set_index("customer_id", drop=False)
    assert got["reject_reason"].isna().tolist() == [True, False, False, False]
    assert got["reject_reason"].iloc[1:].tolist() == ["missing id", "missing id", "frequency not numeric"]
    expected = model.clv(pd.DataFrame({"frequency": [2.0], "recency": [10.0], "T": [30.0],
                                       "monetary_value": [20.5]}))
    np.testing.assert_allclose(got["clv"].iloc[0], expected["clv"].iloc[0], rtol=1e-9)


def test_several_partitions_give_the_same_result_as_one(spark, model, table):
    from clv_forecast.spark import score_spark

    one = _collect(score_spark(model, spark.createDataFrame(table).coalesce(1)))
    many = spark.createDataFrame(table).repartition(7)
    assert many.rdd.getNumPartitions() == 7
    pd.testing.assert_frame_equal(_collect(score_spark(model, many)), one)


def test_model_given_as_a_json_path_and_driver_side_errors(spark, model, table, tmp_path):
    from clv_forecast.spark import score_spark

    path = model.save(tmp_path / "model.json")
    sdf = spark.createDataFrame(table.head(50))
    pd.testing.assert_frame_equal(_collect(score_spark(str(path), sdf)), _collect(score_spark(model, sdf)))
    with pytest.raises(ClvInputError, match="model file not found"):
        score_spark(tmp_path / "nope.json", sdf)
    with pytest.raises(ClvInputError, match="'monetary_value' not found"):
        score_spark(model, sdf.drop("monetary_value"))
    with pytest.raises(ClvInputError, match="time_unit"):
        score_spark(model, sdf, time_unit="fortnight-ish")


def test_time_unit_converts_like_the_local_path(spark, model, table):
    from clv_forecast.spark import score_spark

    days = table.head(200).assign(recency=lambda d: d["recency"] * 7, T=lambda d: d["T"] * 7)
    days.attrs = {}  # a plain table in days, as Spark hands it over (no unit attached)
    got = _collect(score_spark(model, spark.createDataFrame(days), time_unit="D"))
    expected = model.clv(days.set_index("customer_id"), time_unit="D").sort_index()
    np.testing.assert_allclose(got["clv"].to_numpy(), expected["clv"].to_numpy(), rtol=1e-9)


def test_a_null_integer_id_is_a_missing_id(spark, model):
    from clv_forecast.spark import score_spark

    frame = pd.DataFrame({"customer_id": [1.0, None], "frequency": [1.0, 1.0], "recency": [1.0, 1.0],
                          "T": [2.0, 2.0], "monetary_value": [3.0, 3.0]})
    sdf = spark.createDataFrame(frame).selectExpr("cast(customer_id as bigint) customer_id", *COLUMNS[1:])
    rows = score_spark(model, sdf).collect()
    assert sdf.schema["customer_id"].dataType.typeName() == "long"
    assert [r["customer_id"] for r in rows] == [1, None]
    assert [r["reject_reason"] for r in rows] == [None, "missing id"]
    assert rows[0]["clv"] > 0 and rows[1]["clv"] is None
