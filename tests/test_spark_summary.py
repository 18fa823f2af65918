"""The Spark engine of the summary and the fit: equal to the single-machine path (a local[2] session).

The summary is the shared plan -> kernel -> assemble of :mod:`clv_forecast.rfm`, with Spark's kernel:
these tests hold it to the polars kernel on the bundled CDNOW log, on a simulated 100k-customer log
and on a small messy log (missing ids, duplicates, returns, rows after the observation end,
customers first seen in the holdout), frames and row accounting alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from clv_forecast.datasets import load_cdnow_sample
from clv_forecast.errors import ClvInputError
from clv_forecast.model import ClvModel
from clv_forecast.rfm import summarize
from clv_forecast.simulate import simulate
from clv_forecast.spark import fit_spark, read_parquet, summarize_spark

RTOL = 1e-9


def _assert_same(local: pd.DataFrame, spark_frame: pd.DataFrame, rtol=1e-12) -> None:
    assert list(spark_frame.columns) == list(local.columns)
    assert len(spark_frame) == len(local)
    assert (spark_frame.index.to_numpy() == local.index.to_numpy()).all()
    for column in local.columns:
        a, b = local[column].to_numpy(), spark_frame[column].to_numpy()
        if column.startswith("frequency"):
            assert (a == b).all(), column
        else:
            np.testing.assert_allclose(b, a, rtol=rtol, atol=0, err_msg=column)
    assert spark_frame.attrs == local.attrs


@pytest.fixture(scope="module")
def cdnow():
    return load_cdnow_sample()


@pytest.fixture(scope="module")
def cdnow_sdf(spark, cdnow):
    return spark.createDataFrame(cdnow).repartition(3)


@pytest.mark.parametrize("options", [
    dict(calibration_end="1997-09-30"),
    dict(),
    dict(merge="exact", time_unit="D", calibration_end="1997-09-30"),
    dict(merge="W", include_first_transaction=True, calibration_end="1997-09-30", week_start="SUN"),
    dict(time_unit="M", calibration_end="1997-09-30", observation_end="1998-03-31"),
])
def test_cdnow_summary_equals_the_local_one(cdnow, cdnow_sdf, options):
    local = summarize(cdnow, amount_col="amount", **options)
    remote = summarize_spark(cdnow_sdf, amount_col="amount", **options)
    _assert_same(local, remote.to_pandas())
    assert len(remote) == len(local)


def test_cdnow_fit_on_compressed_statistics_equals_the_local_fit(cdnow, cdnow_sdf):
    local = ClvModel().fit(summarize(cdnow, amount_col="amount", calibration_end="1997-09-30"))
    remote = fit_spark(summarize_spark(cdnow_sdf, amount_col="amount", calibration_end="1997-09-30"))
    for part in ("purchases_", "spend_"):
        a, b = getattr(local, part), getattr(remote, part)
        np.testing.assert_allclose(b.params_.to_numpy(), a.params_.to_numpy(), rtol=RTOL)
        assert b.log_likelihood_ == pytest.approx(a.log_likelihood_, rel=1e-12)
    assert remote.training_["n_customers"] == 2357
    assert remote.time_unit_ == local.time_unit_


@pytest.fixture(scope="module")
def simulated():
    tx = simulate(100_000, r=0.24, alpha=4.4, a=0.79, b=2.4, p=6.25, q=3.74, v=15.44, time_unit="W",
                  start="2020-01-01", cohort_length="12W", end="2021-06-30", seed=11)
    return tx.rename(columns={"timestamp": "date"})


def test_simulated_100k_log_summary_and_fit_equal_the_local_path(spark, simulated):
    options = dict(amount_col="amount", calibration_end="2021-01-31")
    local = summarize(simulated, **options)
    remote = summarize_spark(spark.createDataFrame(simulated), **options)
    _assert_same(local, remote.to_pandas(), rtol=RTOL)
    assert len(local) > 90_000
    a, b = ClvModel().fit(local), fit_spark(remote)
    np.testing.assert_allclose(b.purchases_.params_.to_numpy(), a.purchases_.params_.to_numpy(), rtol=RTOL)
    np.testing.assert_allclose(b.spend_.params_.to_numpy(), a.spend_.params_.to_numpy(), rtol=RTOL)
    # the statistics are compressed: far fewer rows than customers reach the driver
    stats = remote.statistics()
    assert int(stats["purchases"]["count"].sum()) == len(local)
    assert len(stats["purchases"]) < len(local) / 2


@pytest.fixture(scope="module")
def messy():
    """Missing ids, exact duplicates, returns (one customer has only returns), a purchase after the
    observation end, a customer first seen in the holdout, two purchases on one day, text ids."""
    rows = [
        ("a", "2021-01-04 10:00", 10.0, "x"), ("a", "2021-01-04 18:00", 5.0, "y"), ("a", "2021-02-01", 7.5, "z"),
        ("a", "2021-02-01", 7.5, "z"),  # exact duplicate
        ("a", "2021-02-03", -7.5, "r"),  # a return
        ("b", "2021-01-10", 20.0, "x"), ("b", "2021-03-15", 30.0, "x"), ("b", "2021-07-20", 1.0, "x"),
        (None, "2021-01-12", 3.0, "x"), ("  ", "2021-01-13", 3.0, "x"),  # no id (null, blank)
        ("c", "2021-01-20", 5.0, "x"), ("c", "2021-05-02", 8.0, "x"), ("c", "2021-05-02", 8.0, "w"),
        ("d", "2021-04-01", -3.0, "x"),  # returns only
        ("e", "2021-04-10", 12.0, "x"), ("e", "2021-05-10", 13.0, "x"),  # first seen in the holdout
        ("f", "2021-02-28", 0.0, "x"),  # a zero amount is a purchase
    ]
    frame = pd.DataFrame(rows, columns=["customer", "when", "value", "note"])
    frame["when"] = pd.to_datetime(frame["when"], format="ISO8601").astype("datetime64[us]")
    return frame


@pytest.mark.parametrize("duplicates", ["keep", "drop"])
def test_messy_log_accounting_equals_the_local_one(spark, messy, duplicates):
    options = dict(customer_col="customer", date_col="when", amount_col="value", missing_customer="drop",
                   duplicates=duplicates, calibration_end="2021-03-31", observation_end="2021-06-30")
    local = summarize(messy, **options)
    remote = summarize_spark(spark.createDataFrame(messy), **options)
    _assert_same(local, remote.to_pandas())
    attrs = remote.attrs
    assert attrs["n_rows_missing_customer"] == 2
    assert attrs["n_duplicate_rows"] == 1
    assert attrs["n_return_rows"] == 2 and attrs["n_customers_returns_only"] == 1
    assert attrs["n_transactions_after_observation_end"] == 1
    assert attrs["n_customers_first_purchase_after_calibration"] == 1
    left_out = sum(attrs[k] for k in ("n_rows_missing_customer", "n_duplicate_rows_dropped", "n_return_rows",
                                      "n_purchases_fully_returned", "n_transactions_after_observation_end",
                                      "n_transactions_first_purchase_after_calibration"))
    assert attrs["n_transactions_summarised"] + left_out == attrs["n_transactions"] == len(messy)


def test_timestamp_text_and_date_columns(spark, cdnow):
    local = summarize(cdnow, amount_col="amount", calibration_end="1997-09-30")
    as_text = cdnow.assign(date=cdnow["date"].dt.strftime("%Y-%m-%d"))
    remote = summarize_spark(spark.createDataFrame(as_text), amount_col="amount", calibration_end="1997-09-30")
    _assert_same(local, remote.to_pandas())
    as_date = spark.createDataFrame(as_text).selectExpr("customer_id", "to_date(date) AS date", "amount")
    remote = summarize_spark(as_date, amount_col="amount", calibration_end="1997-09-30")
    _assert_same(local, remote.to_pandas())


def test_nanosecond_parquet_is_read(spark, cdnow, tmp_path):
    path = tmp_path / "ns.parquet"
    cdnow.astype({"date": "datetime64[ns]"}).to_parquet(path)  # pandas' default unit, which Spark cannot read
    sdf = read_parquet(spark, path)
    remote = summarize_spark(sdf, amount_col="amount", calibration_end="1997-09-30")
    _assert_same(summarize(cdnow, amount_col="amount", calibration_end="1997-09-30"), remote.to_pandas())


def test_errors_are_one_line(spark, messy, cdnow_sdf, tmp_path):
    sdf = spark.createDataFrame(messy)
    base = dict(customer_col="customer", date_col="when", amount_col="value")
    with pytest.raises(ClvInputError, match=r"2 row\(s\) without a customer id"):
        summarize_spark(sdf, **base)
    with pytest.raises(ClvInputError, match="not available with the Spark engine") as info:
        summarize_spark(sdf, **base, missing_customer="drop", returns="net")
    assert info.value.argument == "returns"
    with pytest.raises(ClvInputError, match=r"2 row\(s\) with a negative amount"):
        summarize_spark(sdf, **base, missing_customer="drop", returns="error")
    with pytest.raises(ClvInputError, match="'nope' not found"):
        summarize_spark(sdf, **{**base, "amount_col": "nope"})
    bad_dates = spark.createDataFrame(pd.DataFrame({"customer_id": [1, 2], "date": ["2020-01-01", "01/02/2020"]}))
    with pytest.raises(ClvInputError, match=r"1 row\(s\) without a readable timestamp, e.g. '01/02/2020' of customer 2"):
        summarize_spark(bad_dates)
    with pytest.raises(ClvInputError, match="after the last transaction"):
        summarize_spark(cdnow_sdf, calibration_end="1999-01-01")
    csv = tmp_path / "t.csv"
    csv.write_text("customer_id,date\n1,2020-01-01\n")
    with pytest.raises(ClvInputError, match="reads Parquet"):
        read_parquet(spark, csv)


# --------------------------------------------------------------------------------------------
# the pipeline and the CLI: clv-forecast fit --engine spark
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_parquet_dir(cdnow, tmp_path_factory):
    """CDNOW as a directory of three Parquet files (microsecond timestamps), as Spark jobs write them."""
    folder = tmp_path_factory.mktemp("cdnow_parts") / "cdnow"
    folder.mkdir()
    data = cdnow.astype({"date": "datetime64[us]"})
    for i, part in enumerate(np.array_split(np.arange(len(data)), 3)):
        data.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def test_pipeline_with_the_spark_engine_equals_the_local_pipeline(spark, cdnow_parquet_dir, tmp_path):
    from clv_forecast.experiment import run, spec_from_options

    common = dict(amount_col="amount", calibration_end="1997-09-30", discount_rate="10%/Y", interval=None)
    local_pred = tmp_path / "local.parquet"
    spark_pred = tmp_path / "spark_predictions"
    a = run(spec_from_options(transactions=str(cdnow_parquet_dir / "part-0.parquet"), predictions=str(local_pred),
                              **common))
    b = run(spec_from_options(transactions=str(cdnow_parquet_dir / "part-0.parquet"), predictions=str(spark_pred),
                              engine="spark", **common))
    for key in ("holdout_purchases_predicted", "holdout_purchases_actual", "holdout_mae", "holdout_rmse",
                "clv_total", "clv_customers", "clv_missing"):
        assert b.metrics[key] == pytest.approx(a.metrics[key], rel=RTOL), key
    expected = pd.read_parquet(local_pred).set_index("customer_id").sort_index()
    got = pd.read_parquet(spark_pred).set_index("customer_id").sort_index()
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=RTOL,
                                   err_msg=column)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary directory was left"


def _cli(*args, cwd):
    env = {**os.environ, "CLV_FORECAST_TRACKING": "off"}
    return subprocess.run([sys.executable, "-m", "clv_forecast.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=600)


def test_cli_fit_engine_spark_on_a_parquet_directory(spark, cdnow, cdnow_parquet_dir, tmp_path, monkeypatch, capsys):
    """The command in this process, on the tests' session (a JVM start less: the command as a user runs it, in a
    process of its own, is run by test_spark.py's and test_spark_cluster.py's CLI tests)."""
    from clv_forecast.cli import main

    monkeypatch.chdir(tmp_path)  # (the relative output paths)
    rc = main(["fit", "-t", str(cdnow_parquet_dir), "--amount-col", "amount", "--calibration-end", "1997-09-30",
               "--engine", "spark", "--spark-master", "local[2]", "--predictions", "preds", "--output",
               "model.json", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    data = json.loads(out.out)
    local = ClvModel().fit(summarize(cdnow, amount_col="amount", calibration_end="1997-09-30"))
    for name, value in local.purchases_.params_.items():
        assert data["bgnbd"][name] == pytest.approx(value, rel=RTOL)
    assert data["n_customers"] == 2357 and data["accounting"]["n_transactions"] == len(cdnow)
    assert (tmp_path / "preds").is_dir() and ClvModel.load(tmp_path / "model.json").time_unit_ == "W"
    assert len(pd.read_parquet(tmp_path / "preds")) == 2357


def test_cli_engine_spark_refuses_csv_in_one_line(cdnow_csv, tmp_path):
    out = _cli("fit", "-t", str(cdnow_csv), "--amount-col", "amount", "--engine", "spark", "--spark-master",
               "local[1]", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("clv-forecast: error: --transactions")
    assert "Traceback" not in out.stderr


def test_a_spark_run_is_tracked_and_its_model_loads(spark, cdnow_parquet_dir, local_store, tmp_path):
    from clv_forecast import tracking
    from clv_forecast.experiment import run, spec_from_options

    result = run(spec_from_options(transactions=str(cdnow_parquet_dir), amount_col="amount",
                                   calibration_end="1997-09-30", engine="spark", predictions=str(tmp_path / "p")))
    tracked = tracking.log_run(result, command="fit", tracking_uri=local_store)
    from mlflow.tracking import MlflowClient

    run_data = MlflowClient(local_store).get_run(tracked.run_id).data
    assert run_data.params["data.engine"] == "spark"
    assert run_data.params["data_file"] == str(cdnow_parquet_dir)
    assert run_data.metrics["holdout_purchases_actual"] == 1882
    loaded = tracking.load_model(tracked.model_uri)
    rfm = summarize(load_cdnow_sample(), amount_col="amount", calibration_end="1997-09-30")
    columns = ["frequency", "recency", "T", "monetary_value"]
    got = loaded.predict(rfm[columns].reset_index(drop=True), params={"discount_rate": "0%/Y"})
    np.testing.assert_allclose(got["clv"], result.model.clv(rfm, discount_rate="0%/Y")["clv"], rtol=1e-12)


def test_score_a_parquet_log_on_spark_equals_scoring_it_locally(spark, cdnow, cdnow_parquet_dir, tmp_path):
    """``clv-forecast score --engine spark --transactions``: summarised on Spark with the model's settings."""
    from clv_forecast.scoring import score_transactions
    from clv_forecast.spark.scoring import score_command

    model = ClvModel().fit(summarize(cdnow, amount_col="amount", calibration_end="1997-09-30", merge="W",
                                     week_start="SUN"))
    model_file = model.save(tmp_path / "m.json")
    args = dict(horizon="12M", discount_rate="10%/Y", step="1M", margin=1.0, interval=None, rejects_path=None,
                max_reject_share=0.0)
    local = score_transactions(model_file, cdnow_parquet_dir / "part-0.parquet", tmp_path / "local.parquet",
                               amount_col="amount", observation_end="1998-03-31", **args)
    remote = score_command(model_file, None, tmp_path / "spark_scores", spark_master="local[2]",
                           transactions=cdnow_parquet_dir / "part-0.parquet",
                           read={"amount_col": "amount", "observation_end": "1998-03-31"}, **args)
    assert remote.summary == local.summary  # the same accounting of every log row (merge W, weeks from Sunday)
    assert (remote.read, remote.scored, remote.rejected) == (local.read, local.scored, 0)
    a = pd.read_parquet(tmp_path / "local.parquet").set_index("customer_id").sort_index()
    b = pd.read_parquet(tmp_path / "spark_scores").set_index("customer_id").sort_index()
    assert list(b.columns) == list(a.columns) and len(a) == len(b)
    for column in a.columns:
        np.testing.assert_allclose(b[column].to_numpy(float), a[column].to_numpy(float), rtol=RTOL, err_msg=column)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary directory was left"
    with pytest.raises(ClvInputError, match="not available with the Spark engine"):
        score_command(model_file, None, tmp_path / "x", spark_master="local[2]",
                      transactions=cdnow_parquet_dir / "part-0.parquet",
                      read={"amount_col": "amount", "date_format": "%d/%m/%Y"}, **args)
