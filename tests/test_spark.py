"""Scoring on Spark (clv_forecast.spark) with a real local Spark session.

pyspark and a Java runtime are test requirements (the ``dev`` extra installs pyspark, CI installs
Java): when either is missing the Spark tests are skipped with what to install, and fail with CI=true
(tests/external_tools.py).
"""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from clv_forecast.btyd._data import rfm_verdict, verdict_reasons
from clv_forecast.errors import ClvInputError
from clv_forecast.model import ClvModel
from clv_forecast.uncertainty import INTERVAL_COLUMNS
from helpers import (SPARK_LOG_LINE, free_port, kill_when_writing, silent_port,  # noqa: E402
                     simulated_rfm_table, user_environment)

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
    got = score_spark(model, spark.createDataFrame(frame)).toPandas()  # the id window reorders the rows
    reasons = dict(zip(got["customer_id"].fillna("<null>"),
                       got["reject_reason"].astype(object).where(got["reject_reason"].notna(), None)))
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
    assert list(got.columns) == ["customer_id", *SCORES, *INTERVAL_COLUMNS, "reject_reason"]
    assert (got["clv_lower"] < got["clv_upper"]).all()
    assert (got["expected_purchases_lower"] <= got["expected_purchases"]).all()
    assert (got["p_alive_upper"] >= got["p_alive"]).all()
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
    assert list(scores.columns) == ["customer_id", *SCORES, *INTERVAL_COLUMNS]
    rejects = pd.read_parquet(tmp_path / "scores.rejects")
    assert list(rejects.columns) == ["file", "row", "customer_id", "reason"]
    assert rejects["file"].str.endswith("/a.parquet").all()
    assert dict(zip(rejects["row"], rejects["reason"])) == {
        1: "duplicate id", 2: "missing id", 3: "duplicate id", 4: "recency negative", 5: "recency greater than T",
        7: "T missing or non-finite value", 8: "monetary_value negative",
        9: "frequency not a non-negative whole number", 10: "T negative",
        11: "recency non-zero for a customer with frequency 0", 12: "monetary_value missing or non-finite value"}
    assert rejects.loc[rejects["row"] == 1, "customer_id"].tolist() == [str(bad.loc[0, "customer_id"])]
    # an id column of another name heads the rejects' id column too, as in the local rejects file
    bad.iloc[:20].rename(columns={"customer_id": "cust"}).to_parquet(tmp_path / "cust.parquet", index=False)
    score_spark_to_parquet(model, tmp_path / "cust.parquet", tmp_path / "cust_scores", spark=spark, id_col="cust",
                           max_reject_share=1.0)
    assert list(pd.read_parquet(tmp_path / "cust_scores.rejects").columns) == ["file", "row", "cust", "reason"]
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


@pytest.mark.spark  # Spark in a subprocess, without the fixture
def test_killed_run_leaves_no_output(model, tmp_path):
    """``clv-forecast score --engine spark`` as a user runs it (a whole process, local[2], the environment of
    :func:`user_environment`), SIGKILLed while Spark writes the scores (driver, JVM and Python workers: the whole
    process group): its temporary directory is left and nothing under the final names. Reaching the writing
    means the session started and the Python workers scored; until then it printed none of Spark's log lines and
    no traceback. (A whole run on a cluster, its exit code and printed lines: tests/test_spark_cluster.py.)

    100,000 rows suffice: the scores are persisted before anything is written, so the time from the first
    temporary (the rejects') to the publishing is the writing jobs' own, 1.5-2.2 s measured at 50,000-200,000 rows
    on a busy 2-core machine, against the 10 ms poll of kill_when_writing (1,000,000 rows cost twice the CPU)."""
    import re
    import signal

    model_file = model.save(tmp_path / "model.json")
    simulated_rfm_table(100_000, seed=3).to_parquet(tmp_path / "big.parquet")
    out = tmp_path / "out"
    with open(tmp_path / "stderr.txt", "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "clv_forecast.cli", "score", "--engine", "spark",
                                    "--spark-master", "local[2]", "--spark-conf", "spark.driver.memory=1g",
                                    "--spark-conf", "spark.sql.files.maxPartitionBytes=2m", "--model",
                                    str(model_file), "--input", str(tmp_path / "big.parquet"), "--output", str(out)],
                                   start_new_session=True, stdout=subprocess.DEVNULL, stderr=err,
                                   env=user_environment())
        kill_when_writing(process, tmp_path, ".out.", timeout=300, group=True)
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    assert any(p.name.startswith(".out.") and p.name.endswith(".tmp") for p in tmp_path.iterdir())
    printed = (tmp_path / "stderr.txt").read_text(errors="replace")
    assert not re.search(SPARK_LOG_LINE, printed, re.M), printed
    assert "Traceback" not in printed, printed


# -- the logged MLflow model through mlflow.pyfunc.spark_udf ----------------------------------------


RESULT_TYPE = "expected_purchases double, p_alive double, expected_spend double, clv double"


def test_logged_model_through_mlflow_spark_udf(spark, local_store, monkeypatch):
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    from clv_forecast import tracking
    from clv_forecast.experiment import cdnow_spec, run

    spec = cdnow_spec()
    spec["output"].update(model=None, report=None)
    result = run(spec, save=False)
    tracked = tracking.log_run(result, command="run", tracking_uri=local_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", local_store)
    table = result.summary.reset_index()[COLUMNS]
    sdf = spark.createDataFrame(table.astype({"frequency": "float64"})).repartition(3)  # Spark's doubles
    assert dict(sdf.dtypes)["frequency"] == "double"
    udf = mlflow.pyfunc.spark_udf(spark, tracked.model_uri, result_type=RESULT_TYPE, env_manager="local")
    got = (sdf.withColumn("p", udf("frequency", "recency", "T", "monetary_value"))
           .select("customer_id", "p.*").toPandas().sort_values("customer_id").reset_index(drop=True))
    value = spec["value"]
    expected = result.model.clv(table.set_index("customer_id"), horizon=value["horizon"],
                                discount_rate=value["discount_rate"], step=value["step"],
                                margin=value["margin"]).sort_index()
    assert got["customer_id"].tolist() == expected.index.tolist()
    for name in SCORES:
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-12, atol=1e-12)
    # the signature's column names, other params, and a long frequency (as summarize_spark writes it) cast to
    # the signature's double work too
    six = mlflow.pyfunc.spark_udf(spark, tracked.model_uri, result_type="clv double", env_manager="local",
                                  params={"horizon": "6M"})
    longs = sdf.withColumn("frequency", F.col("frequency").cast("long"))
    short = longs.withColumn("p", six(F.struct(F.col("frequency").cast("double").alias("frequency"), "recency", "T",
                                               "monetary_value")))  # struct<clv>
    got6 = short.select("customer_id", "p.clv").toPandas().sort_values("customer_id")["clv"].to_numpy()
    expected6 = result.model.clv(table.set_index("customer_id"), horizon="6M", discount_rate=value["discount_rate"],
                                 step=value["step"], margin=value["margin"]).sort_index()["clv"].to_numpy()
    np.testing.assert_allclose(got6, expected6, rtol=1e-12, atol=1e-12)
    # pandas users keep the int64 frequency summarize() writes
    pandas_out = tracking.load_model(tracked.model_uri).predict(table[COLUMNS[1:]])
    np.testing.assert_allclose(pandas_out["clv"].to_numpy(),
                               result.model.clv(table, horizon=value["horizon"], discount_rate=value["discount_rate"],
                                                step=value["step"], margin=value["margin"])["clv"].to_numpy(),
                               rtol=1e-12)


# -- the same table scored by score_file and on Spark ------------------------------------------------


def _table_with_every_reject(n: int = 100_000, seed: int = 11) -> tuple[pd.DataFrame, list[int]]:
    """A simulated RFM table of ``n`` rows as text columns (so that non-numbers can occur, as in a typed
    Parquet export of a text table), with rows breaking every rule, duplicate ids among them.
    Returns the table and the duplicated ids."""
    rng = np.random.default_rng(seed)
    big_t = rng.integers(182, 547, n) / 7.0
    x = np.minimum(rng.poisson(1.2, n), 40).astype(float)
    recency = np.where(x > 0, np.floor(big_t * 7 * rng.uniform(0, 1, n)) / 7.0, 0.0)
    spend = np.where(x > 0, np.round(rng.gamma(3, 12, n), 2), 0.0)
    ids = pd.array(rng.permutation(n) + 10_000, dtype="Int64")
    text = {name: np.array([repr(float(v)) for v in values], dtype=object)
            for name, values in (("frequency", x), ("recency", recency), ("T", big_t), ("monetary_value", spend))}
    rows = iter(rng.choice(n, 200, replace=False))
    spoils = [("frequency", None), ("frequency", "abc"), ("frequency", "1.5"), ("frequency", "-1.0"),
              ("recency", "nan"), ("recency", "1,5"), ("recency", "-2.0"), ("recency", "1000.0"),
              ("T", " "), ("T", None), ("T", "x"), ("T", "-3.0"), ("monetary_value", "inf"), ("monetary_value", "-4.0"),
              ("monetary_value", "n/a"), ("monetary_value", None)]
    for column, value in spoils * 4:
        text[column][next(rows)] = value
    for _ in range(4):  # a customer with frequency 0 and recency > 0
        row = next(rows)
        text["frequency"][row], text["recency"][row], text["T"][row] = "0.0", "3.0", "30.0"
    for _ in range(5):
        ids[next(rows)] = pd.NA
    duplicated = []
    for k in range(6):  # pairs and one triple; a few copies also break a rule
        first = next(rows)
        copies = [next(rows) for _ in range(2 if k == 0 else 1)]
        for row in copies:
            ids[row] = ids[first]
        if k < 2:
            text["recency"][copies[0]] = "-1.0"
        duplicated.append(int(ids[first]))
    frame = pd.DataFrame({"customer_id": ids, **{k: pd.array(v, dtype="string") for k, v in text.items()}})
    return frame, duplicated


def test_spark_equals_score_file_on_100k_rows_with_every_reject(spark, model, tmp_path):
    from clv_forecast.scoring import score_file
    from clv_forecast.spark import score_spark_to_parquet

    frame, duplicated = _table_with_every_reject()
    source = tmp_path / "rfm.parquet"
    frame.to_parquet(source, index=False, row_group_size=30_000)
    args = dict(horizon="12M", discount_rate="10%/Y", margin=0.3, interval=0.9, max_reject_share=1.0)
    local = score_file(model, source, tmp_path / "local.parquet", batch_rows=25_000, **args)
    remote = score_spark_to_parquet(model, source, tmp_path / "spark", spark=spark, **args)
    assert local.read == remote.read == len(frame)
    # the band of the totals over the scored rows; Spark scores the first row of a duplicated id too (rejected
    # locally only from the second on), so the totals differ by those rows: the band computed for them agrees
    assert remote.portfolio["customers"] == remote.scored and local.portfolio["customers"] == local.scored

    rejects_local = pd.read_csv(tmp_path / "local.parquet.rejects.csv").set_index("row")["reason"]
    rejects_spark = pd.read_parquet(tmp_path / "spark.rejects")
    assert rejects_spark["file"].str.endswith("/rfm.parquet").all()
    rejects_spark = rejects_spark.set_index("row")["reason"]
    expected_reasons = {"missing id", "duplicate id", "frequency not numeric", "recency not numeric",
                        "T not numeric", "monetary_value not numeric"} | {
        f"{name} {what}" for name, what, _ in __import__("clv_forecast.btyd._data", fromlist=["RFM_RULES"]).RFM_RULES}
    assert set(rejects_local) == expected_reasons  # every reason occurs
    # rows of a duplicated id: all rejected on Spark; the later occurrences on one machine
    dup_rows = set(np.flatnonzero(frame["customer_id"].isin(duplicated).fillna(False).to_numpy()) + 1)
    assert len(dup_rows) == 13
    assert all(rejects_spark[r] == "duplicate id" for r in dup_rows)
    assert sum(rejects_local.get(r) == "duplicate id" for r in dup_rows) == 7
    # every other row: the same verdict, row by row
    others_local = rejects_local[~rejects_local.index.isin(dup_rows)]
    others_spark = rejects_spark[~rejects_spark.index.isin(dup_rows)]
    pd.testing.assert_series_equal(others_local.sort_index(), others_spark.sort_index())

    scores_local = pd.read_parquet(tmp_path / "local.parquet").set_index("customer_id")
    scores_spark = pd.read_parquet(tmp_path / "spark").set_index("customer_id")
    first_of_dup = scores_local.index.isin(duplicated)
    # the earliest row of a duplicated id is scored on one machine unless it breaks a rule (here 5 of 6)
    assert first_of_dup.sum() == 6 - sum(rejects_local.get(r, "") == "recency negative" for r in dup_rows)
    assert sorted(scores_spark.index) == sorted(scores_local.index[~first_of_dup])
    assert len(scores_spark) == remote.scored > 99_000
    joined = scores_local.loc[scores_spark.index]
    for name in [*SCORES, "clv_lower", "clv_upper"]:
        np.testing.assert_allclose(scores_spark[name].to_numpy(), joined[name].to_numpy(), rtol=1e-9, atol=0)
    from clv_forecast.uncertainty import Portfolio  # the band of the rows Spark scored, from one accumulator
    inputs = frame.set_index("customer_id").loc[scores_spark.index, ["frequency", "recency", "T", "monetary_value"]]
    alone = Portfolio()
    model.clv(inputs.astype(float), horizon="12M", discount_rate="10%/Y", margin=0.3, interval=0.9, portfolio=alone)
    band = alone.band(0.9)
    for q in ("expected_purchases", "clv"):
        for side in ("total", "lower", "upper"):
            assert remote.portfolio[q][side] == pytest.approx(band[q][side], rel=1e-9), (q, side)


# -- clv-forecast score --engine spark ---------------------------------------------------------------


def test_cli_engine_spark_exit_codes(spark, model, table, tmp_path, capsys):
    from clv_forecast.cli import main

    model_file = model.save(tmp_path / "model.json")
    bad = table.copy()
    bad.loc[:29, "recency"] = -1.0
    bad.to_parquet(tmp_path / "in.parquet", index=False)
    base = ["score", "--engine", "spark", "--model", str(model_file)]
    assert main([*base, "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o")]) == 4
    captured = capsys.readouterr()
    assert f"read {len(table)}, scored {len(table) - 30}, rejected 30" in captured.out
    assert captured.err.count("\n") == 1 and "max_reject_share" in captured.err
    assert not (tmp_path / "o").exists() and (tmp_path / "o.rejects").exists()
    assert spark.range(1).count() == 1  # the caller's session is left running
    table.to_csv(tmp_path / "in.csv", index=False)
    for args, message in [(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o")],
                           "--input " + str(tmp_path / "in.csv") + ": the Spark engine reads Parquet"),
                          (["--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o.csv")],
                           "--output " + str(tmp_path / "o.csv") + ": the Spark engine writes a directory"),
                          (["--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o"),
                            "--spark-conf", "nonsense"], "--spark-conf nonsense: must be KEY=VALUE")]:
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_an_unreachable_connect_server_is_one_line_naming_the_url(spark, model, table, tmp_path, capsys):
    """A port nobody listens on: refused at once; a server that accepts and never answers: the timeout, not a
    wait of minutes. No Connect session is opened in this process (its classic ``spark`` session stays usable).
    (Here rather than in test_spark_cluster.py: this module's session is the one that must stay usable.)"""
    import re
    import time

    from clv_forecast.cli import main
    from clv_forecast.spark.session import spark_session

    model_file = model.save(tmp_path / "model.json")
    table.to_parquet(tmp_path / "rfm.parquet", index=False)
    url = f"sc://127.0.0.1:{free_port()}"  # nobody listens there
    started = time.monotonic()
    rc = main(["score", "--engine", "spark", "--spark-remote", url, "--model", str(model_file),
               "--input", str(tmp_path / "rfm.parquet"), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"clv-forecast: error: --spark-remote {url}: cannot reach the Spark Connect server"), err
    assert time.monotonic() - started < 15
    with silent_port() as port:  # accepts connections (the backlog), never speaks
        url = f"sc://127.0.0.1:{port}"
        with pytest.raises(ClvInputError, match=re.escape(f"spark_remote='{url}': cannot reach the Spark Connect "
                                                          "server: no answer within 2 s")):
            spark_session(remote=url, connect_timeout=2)
    with pytest.raises(ClvInputError, match="starts with sc://"):
        spark_session(remote="http://127.0.0.1:15002")
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ and spark.range(3).count() == 3
