"""MLflow tracking of ``clv-forecast score`` runs, against a real local sqlite store (as tests/test_tracking.py)."""

from __future__ import annotations


import pandas as pd
import pytest

pytest.importorskip("mlflow")

from clv_forecast.cli import main  # noqa: E402
from clv_forecast.model import ClvModel  # noqa: E402

COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value"]


@pytest.fixture
def store(local_store, monkeypatch) -> str:
    """The conftest's fresh sqlite store, with tracking switched on (the conftest switches it off)."""
    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    return local_store


@pytest.fixture(scope="module")
def model_file(cdnow_rfm, tmp_path_factory):
    return ClvModel().fit(cdnow_rfm).save(tmp_path_factory.mktemp("model") / "model.json")


def _runs(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(experiments)


def test_a_score_run_is_one_mlflow_run_with_params_metrics_and_rejects(store, model_file, cdnow_rfm, tmp_path,
                                                                      capsys):
    table = cdnow_rfm.reset_index()[COLUMNS]
    table.loc[3, "recency"] = -1.0
    table.loc[4, "recency"] = 1000.0
    source = tmp_path / "customers.parquet"
    table.to_parquet(source)
    out = tmp_path / "scores.parquet"
    assert main(["score", "--model", str(model_file), "--input", str(source), "--output", str(out),
                 "--horizon", "6M", "--discount-rate", "10%/Y", "--margin", "0.3", "--interval", "0.8",
                 "--batch-rows", "1000", "--tracking-uri", store]) == 0
    printed = capsys.readouterr().out
    client, runs = _runs(store)
    assert len(runs) == 1
    run = runs[0]
    assert f"run {run.info.run_id}" in printed and run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model"] == str(model_file) and params["input"] == str(source)
    assert (params["horizon"], params["discount_rate"], params["step"]) == ("6M", "10%/Y", "1M")
    assert (params["margin"], params["interval"], params["batch_rows"]) == ("0.3", "0.8", "1000")
    assert params["max_reject_share"] == "0.01" and params["time_unit"] == "W"
    import hashlib

    assert params["model_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert tags["command"] == "score"
    scores = pd.read_parquet(out)
    assert metrics["rows_read"] == len(table) and metrics["rows_scored"] == len(scores) == len(table) - 2
    assert metrics["rows_rejected"] == 2 and metrics["reject_share"] == pytest.approx(2 / len(table), rel=1e-12)
    assert metrics["rejects.recency_negative"] == 1 and metrics["rejects.recency_greater_than_t"] == 1
    assert metrics["clv_total"] == pytest.approx(scores["clv"].sum(), rel=1e-12)
    assert metrics["seconds"] > 0 and metrics["rows_per_second"] == pytest.approx(
        metrics["rows_read"] / metrics["seconds"], rel=1e-9)
    artifacts = [f.path for f in client.list_artifacts(run.info.run_id, "rejects")]
    assert artifacts == ["rejects/scores.parquet.rejects.csv"]
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["rejects"]  # not the scores file
    # the input file as the run's scoring dataset (digest: its SHA-256) and a readable run name
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "customers.parquet"
    assert hashlib.sha256(source.read_bytes()).hexdigest().startswith(dataset_input.dataset.digest)
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "scoring"
    assert run.info.run_name.startswith("score customers ") and run.info.run_name.endswith(" UTC")


def test_too_many_rejects_is_a_failed_run_and_a_log_is_logged_with_its_accounting(store, model_file, cdnow_rfm,
                                                                                 cdnow_csv, tmp_path, capsys):
    table = cdnow_rfm.reset_index()[COLUMNS]
    table.loc[:99, "T"] = -1.0
    source = tmp_path / "bad.csv"
    table.to_csv(source, index=False)
    rc = main(["score", "--model", str(model_file), "--input", str(source), "--output", str(tmp_path / "x.csv"),
               "--tracking-uri", store])
    assert rc == 4 and "FAILED" in capsys.readouterr().out
    assert main(["score", "--model", str(model_file), "--transactions", str(cdnow_csv), "--amount-col", "amount",
                 "--output", str(tmp_path / "y.csv"), "--tracking-uri", store]) == 0
    client, runs = _runs(store)
    by_input = {r.data.params["input"]: r for r in runs}
    failed, logged = by_input[str(source)], by_input[str(cdnow_csv)]
    assert failed.info.status == "FAILED" and failed.data.metrics["rejects.t_negative"] == 100
    assert [f.path for f in client.list_artifacts(failed.info.run_id, "rejects")] == ["rejects/x.csv.rejects.csv"]
    assert logged.info.status == "FINISHED" and logged.data.params["input_kind"] == "transaction log"
    assert logged.data.params["rows.n_transactions"] == "6919" and logged.data.params["amount_col"] == "amount"
    assert logged.data.params["summary.merge"] == "D" and logged.data.metrics["rows_read"] == 2357
    assert client.list_artifacts(logged.info.run_id) == []  # no rejects: no artifact


def test_no_tracking_and_the_environment_switch_log_nothing(store, model_file, cdnow_rfm, tmp_path, monkeypatch):
    source = tmp_path / "in.parquet"
    cdnow_rfm.reset_index()[COLUMNS].to_parquet(source)
    base = ["score", "--model", str(model_file), "--input", str(source), "--tracking-uri", store]
    assert main([*base, "--output", str(tmp_path / "a.csv"), "--no-tracking"]) == 0
    monkeypatch.setenv("CLV_FORECAST_TRACKING", "off")
    assert main([*base, "--output", str(tmp_path / "b.csv")]) == 0
    assert _runs(store)[1] == []



def test_a_model_uri_is_downloaded_from_the_tracking_uri_given_tracked_or_not(store, model_file, cdnow_rfm,
                                                                              tmp_path, monkeypatch):
    """``--tracking-uri`` names the server a ``runs:/`` model comes from, with ``--no-tracking`` too; before,
    the download went to the store of the environment (here none: the empty default store) and failed."""
    import os
    import shutil

    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset-below")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # (recorded: restored after the test)
    client = MlflowClient(store)
    run = client.create_run(client.create_experiment("models"))
    staged = tmp_path / "staged" / "clv_model.json"
    staged.parent.mkdir()
    shutil.copyfile(model_file, staged)
    client.log_artifact(run.info.run_id, str(staged), artifact_path="model/artifacts")
    client.set_terminated(run.info.run_id)
    source = tmp_path / "customers.parquet"
    cdnow_rfm.reset_index()[COLUMNS].to_parquet(source)
    direct, by_uri = tmp_path / "direct.parquet", tmp_path / "by_uri.parquet"
    assert main(["score", "--model", str(model_file), "--input", str(source), "--output", str(direct),
                 "--no-tracking"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow's default store (./mlflow.db) is not the one holding the run
    assert main(["score", "--model", f"runs:/{run.info.run_id}/model", "--input", str(source), "--output",
                 str(by_uri), "--tracking-uri", store, "--no-tracking"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(by_uri), pd.read_parquet(direct))
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the command's setting does not outlive it
