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


@pytest.fixture(scope="session")
def spark():
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        pytest.fail("pyspark is not installed: the Spark tests need it (pip install -e '.[dev]')", pytrace=False)
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.fail("no Java runtime (java not on PATH, JAVA_HOME unset): the Spark tests need one "
                    "(apt-get install default-jre-headless)", pytrace=False)
    session = (SparkSession.builder.master("local[2]").appName("clv-forecast-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.session.timeZone", "UTC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


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
    got = score_spark(model, spark.createDataFrame(frame)).toPandas()  # the id window reorders the rows
    reasons = dict(zip(got["customer_id"].fillna("<null>"), got["reject_reason"].astype(object).where(got["reject_reason"].notna(), None)))
    assert reasons == {"a": None, "<null>": "missing id", " ": "missing id", "d": "frequency not numeric"}
    expected = model.clv(pd.DataFrame({"frequency": [2.0], "recency": [10.0], "T": [30.0],
                                       "monetary_value": [20.5]}))
    np.testing.assert_allclose(got.loc[got["customer_id"] == "a", "clv"].iloc[0], expected["clv"].iloc[0],
                               rtol=1e-9)


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
    rows = sorted(score_spark(model, sdf).collect(), key=lambda r: r["customer_id"] is None)
    assert sdf.schema["customer_id"].dataType.typeName() == "long"
    assert [r["customer_id"] for r in rows] == [1, None]
    assert [r["reject_reason"] for r in rows] == [None, "missing id"]
    assert rows[0]["clv"] > 0 and rows[1]["clv"] is None


# -- duplicate ids, intervals ------------------------------------------------------------------


def test_every_row_of_a_duplicate_id_is_rejected(spark, model, table):
    from clv_forecast.spark import score_spark

    rows = table.head(8).copy()
    rows["customer_id"] = [1, 1, 2, 3, 3, 3, 4, None]
    rows.loc[0, "recency"] = -1.0  # a duplicate's own RFM reason gives way to "duplicate id", as in score_file
    got = score_spark(model, spark.createDataFrame(rows.astype({"customer_id": "Int64"}))
                      .repartition(3)).toPandas()
    reasons = sorted(zip(got["customer_id"].astype("Int64").fillna(-1), got["reject_reason"].fillna("")))
    assert reasons == [(-1, "missing id"), (1, "duplicate id"), (1, "duplicate id"), (2, ""), (3, "duplicate id"),
                       (3, "duplicate id"), (3, "duplicate id"), (4, "")]
    assert got.loc[got["reject_reason"].notna(), SCORES].isna().all().all()
    text = pd.DataFrame({"customer_id": ["a", " a", "b", " ", None, " "], "frequency": 1.0, "recency": 1.0,
                         "T": 2.0, "monetary_value": 3.0})
    got = score_spark(model, spark.createDataFrame(text)).toPandas()
    reasons = sorted(zip(got["customer_id"].fillna("<null>"), got["reject_reason"].fillna("")))
    assert reasons == [(" ", "missing id"), (" ", "missing id"), (" a", "duplicate id"), ("<null>", "missing id"),
                       ("a", "duplicate id"), ("b", "")]
    unchecked = score_spark(model, spark.createDataFrame(text), reject_duplicates=False).toPandas()
    assert unchecked["reject_reason"].isna().sum() == 3


def test_intervals_equal_score_file(spark, model, table, tmp_path):
    from clv_forecast.scoring import score_file
    from clv_forecast.spark import score_spark

    source = tmp_path / "in.parquet"
    table.to_parquet(source, index=False)
    args = dict(horizon="12M", discount_rate="10%/Y", margin=0.3, interval=0.9)
    score_file(model, source, tmp_path / "local.parquet", batch_rows=500, **args)
    local = pd.read_parquet(tmp_path / "local.parquet").sort_values("customer_id").reset_index(drop=True)
    got = _collect(score_spark(model, spark.read.parquet(str(source)).repartition(3), **args))
    assert list(got.columns) == ["customer_id", *SCORES, "clv_lower", "clv_upper", "reject_reason"]
    assert (got["clv_lower"] < got["clv_upper"]).all()
    pd.testing.assert_frame_equal(got.drop(columns="reject_reason"), local, check_exact=False, rtol=1e-12, atol=0)
    with pytest.raises(ClvInputError, match="interval"):
        score_spark(model, spark.read.parquet(str(source)), interval=1.5)


# -- Parquet in, Parquet out (score_spark_to_parquet) ----------------------------------------------


def _bad_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table with rows breaking every rule (ids stay integers; Parquet columns keep their types)."""
    bad = table.astype({"customer_id": "Int64", **{c: "float64" for c in COLUMNS[1:]}})
    bad.loc[1, "customer_id"] = pd.NA
    bad.loc[2, "customer_id"] = bad.loc[0, "customer_id"]
    bad.loc[3, "recency"] = -1.0
    bad.loc[4, "recency"] = 1000.0
    bad.loc[6, "T"] = np.nan
    bad.loc[7, "monetary_value"] = -3.0
    bad.loc[8, "frequency"] = 1.5
    bad.loc[9, "T"] = -2.0
    bad.loc[10, "frequency"] = 0.0
    bad.loc[11, "monetary_value"] = np.inf
    return bad


def test_parquet_directory_in_counts_rejects_and_publishes(spark, model, table, tmp_path):
    from clv_forecast.spark import score_spark_to_parquet

    bad = _bad_table(table)
    folder = tmp_path / "in"
    folder.mkdir()
    bad.iloc[:1000].to_parquet(folder / "a.parquet", index=False)
    bad.iloc[1000:].to_parquet(folder / "b.parquet", index=False)
    out = tmp_path / "scores"
    report = score_spark_to_parquet(model, folder, out, spark=spark, max_reject_share=0.01, interval=0.9)
    # the duplicate id: both rows (0 and 2) rejected on Spark
    assert (report.read, report.scored, report.rejected) == (len(bad), len(bad) - 11, 11)
    assert report.reasons["duplicate id"] == 2 and sum(report.reasons.values()) == 11
    assert report.output == out and report.rejects == tmp_path / "scores.rejects"
    scores = pd.read_parquet(out)
    assert len(scores) == report.scored and scores["customer_id"].is_unique
    assert list(scores.columns) == ["customer_id", *SCORES, "clv_lower", "clv_upper"]
    rejects = pd.read_parquet(tmp_path / "scores.rejects")
    assert list(rejects.columns) == ["file", "row", "customer_id", "reason"]
    assert rejects["file"].str.endswith("/a.parquet").all()
    assert dict(zip(rejects["row"], rejects["reason"])) == {
        1: "duplicate id", 2: "missing id", 3: "duplicate id", 4: "recency negative", 5: "recency greater than T",
        7: "T missing or non-finite value", 8: "monetary_value negative",
        9: "frequency not a non-negative whole number", 10: "T negative",
        11: "recency non-zero for a customer with frequency 0", 12: "monetary_value missing or non-finite value"}
    assert rejects.loc[rejects["row"] == 1, "customer_id"].tolist() == [str(bad.loc[0, "customer_id"])]
    expected = model.clv(bad.iloc[12:].set_index("customer_id"), interval=0.9)
    got = scores.set_index("customer_id").loc[expected.index]
    np.testing.assert_allclose(got["clv"], expected["clv"], rtol=1e-12)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # run again over the finished output: replaced
    score_spark_to_parquet(model, folder, out, spark=spark, max_reject_share=0.01)
    assert "clv_lower" not in pd.read_parquet(out).columns
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_too_many_rejects_publishes_no_scores(spark, model, table, tmp_path):
    from clv_forecast.scoring import TooManyRejectsError
    from clv_forecast.spark import score_spark_to_parquet

    bad = table.copy()
    bad.loc[:9, "recency"] = -1.0  # 10 of 2357 rows: 0.42%
    source = tmp_path / "in.parquet"
    bad.to_parquet(source, index=False)
    with pytest.raises(TooManyRejectsError, match=r"10 of 2357 rows rejected .*more than max_reject_share") as info:
        score_spark_to_parquet(model, source, tmp_path / "no", spark=spark, max_reject_share=0.004)
    assert (info.value.report.read, info.value.report.rejected) == (2357, 10)
    assert info.value.report.reasons == {"recency negative": 10}
    assert not (tmp_path / "no").exists()
    assert len(pd.read_parquet(tmp_path / "no.rejects")) == 10  # the rejects say why
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    report = score_spark_to_parquet(model, source, tmp_path / "ok", spark=spark, max_reject_share=0.005)
    assert report.scored == 2347 and (tmp_path / "ok" / "_SUCCESS").exists()


def test_parquet_user_errors(spark, model, table, tmp_path):
    from clv_forecast.spark import score_spark_to_parquet

    source = tmp_path / "in.parquet"
    table.to_parquet(source, index=False)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(ClvInputError, match="is a folder that is not an earlier Spark output"):
        score_spark_to_parquet(model, source, tmp_path / "notes", spark=spark)
    assert (tmp_path / "notes" / "keep.txt").exists()
    with pytest.raises(ClvInputError, match="input not found"):
        score_spark_to_parquet(model, tmp_path / "nope.parquet", tmp_path / "o", spark=spark)
    table.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(ClvInputError, match="reads Parquet"):
        score_spark_to_parquet(model, tmp_path / "in.csv", tmp_path / "o", spark=spark)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClvInputError, match="cannot read Parquet"):
        score_spark_to_parquet(model, tmp_path / "empty", tmp_path / "o", spark=spark)
    with pytest.raises(ClvInputError, match="'T' not found"):
        table.drop(columns="T").to_parquet(tmp_path / "noT.parquet")
        score_spark_to_parquet(model, tmp_path / "noT.parquet", tmp_path / "o", spark=spark)
    assert not (tmp_path / "o").exists()


def test_killed_run_leaves_no_output(model, tmp_path):
    """A run SIGKILLed while Spark writes the scores (driver, JVM and Python workers: the whole process
    group) leaves its temporary directory and nothing under the final names."""
    import signal
    import time

    model_file = model.save(tmp_path / "model.json")
    rng = np.random.default_rng(3)
    n = 1_000_000
    big_t = rng.uniform(20, 78, n)
    x = rng.poisson(1.5, n).astype(float)
    pd.DataFrame({"customer_id": np.arange(n), "frequency": x,
                  "recency": np.where(x > 0, rng.uniform(0, 1, n) * big_t, 0.0), "T": big_t,
                  "monetary_value": np.where(x > 0, rng.gamma(3, 10, n), 0.0)}).to_parquet(tmp_path / "big.parquet")
    out = tmp_path / "out"
    code = ("import sys; from clv_forecast.spark import spark_session, score_spark_to_parquet; "
            "s = spark_session('local[2]', ['spark.driver.memory=1g', 'spark.sql.files.maxPartitionBytes=2m']); "
            "score_spark_to_parquet(sys.argv[1], sys.argv[2], sys.argv[3], spark=s)")
    process = subprocess.Popen([sys.executable, "-c", code, str(model_file), str(tmp_path / "big.parquet"), str(out)],
                               start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    assert any(p.name.startswith(".out.") and p.name.endswith(".tmp") for p in tmp_path.iterdir())
