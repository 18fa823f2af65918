"""MLflow tracking of ``clv-forecast retention`` (and of ``score`` with a retention model) against a real local
sqlite store, as tests/test_tracking.py: params, metrics, artifacts, the model file and the model as a pyfunc that
``mlflow.pyfunc.load_model`` loads and that predicts what ``clv-forecast score`` writes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow")

from clv_forecast.cli import main  # noqa: E402
from clv_forecast.estimators.retention._base import RetentionModel  # noqa: E402
from clv_forecast.estimators.retention.sbg import ShiftedBetaGeometricModel  # noqa: E402

REGULAR = [1000, 631, 468, 382, 326, 289, 262, 241]  # FH 2007, Table 1, years 0-7 of cohorts of 1,000
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]


@pytest.fixture
def store(local_store, monkeypatch) -> str:
    """The conftest's fresh sqlite store, with tracking switched on (the conftest switches it off)."""
    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    return local_store


@pytest.fixture
def segments(tmp_path):
    path = tmp_path / "segments.csv"
    rows = [(name, t, v) for name, alive in (("regular", REGULAR), ("high end", HIGH_END)) for t, v in enumerate(alive)]
    pd.DataFrame(rows, columns=["cohort", "period", "alive"]).to_csv(path, index=False)
    return path


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(uri):
    client = _client(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _artifacts(client, run_id, path=None):
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(out)


def _load_pyfunc(uri, store, monkeypatch):
    """The logged pyfunc as ``clv_forecast.tracking.load_model`` gives it (whole-number int64 columns as the
    signature's doubles)."""
    from clv_forecast.tracking import load_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return load_model(uri)


def _gap(curve) -> float:
    """The mean |projected - actual| share alive over the observed periods 1.., from the printed curve."""
    rows = [r for r in curve if r["period"] >= 1 and r["cohorts"] > 0]
    return float(np.mean([abs(r["projected_share"] - r["share_alive"]) for r in rows]))


def test_a_retention_run_is_logged_with_its_model_as_a_pyfunc(store, segments, tmp_path, capsys, monkeypatch):
    model_file = tmp_path / "sbg.json"
    assert main(["retention", "--cohorts", str(segments), "--period", "Y", "--discount-rate", "10%/Y", "--margin",
                 "30", "--save-model", str(model_file), "--tracking-uri", store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    fit = out["fits"][0]
    (run,) = _runs(store)
    assert out["mlflow"]["run_id"] == run.info.run_id and run.info.status == "FINISHED"
    assert out["mlflow"]["model_uris"] == {"pooled": f"runs:/{run.info.run_id}/model"}
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert (params["model"], params["model.kind"], params["time_unit"]) == ("sBG", "sbg", "Y")
    assert float(params["param.alpha"]) == fit["alpha"] and float(params["param.beta"]) == fit["beta"]
    assert (params["discount_rate"], float(params["discount_rate_per_period"]), params["margin"]) == ("10%/Y", 0.1,
                                                                                                      "30.0")
    assert params["input"] == str(segments) and params["input_kind"] == "cohort table"
    assert params["input_sha256"] == hashlib.sha256(segments.read_bytes()).hexdigest()
    assert metrics["log_likelihood"] == fit["log_likelihood"] and metrics["customers"] == 2000
    assert (metrics["aic"], metrics["bic"]) == (fit["aic"], fit["bic"])
    assert metrics["alpha.se"] == fit["bse"]["alpha"]
    assert metrics["share_alive_mean_abs_gap"] == pytest.approx(_gap(fit["curve"]), rel=1e-12)
    assert 0 < metrics["share_alive_mean_abs_gap"] < 0.02  # the pooled fit is within 2 points of the table
    assert tags["command"] == "retention" and tags["reliable"] == "true" and tags["dataset"] == "segments.csv"
    client = _client(store)
    assert _artifacts(client, run.info.run_id) == ["plots/retention_curve.png", "retention_model.json",
                                                   "tables/projection.csv"]
    local = client.download_artifacts(run.info.run_id, "")
    projection = pd.read_csv(f"{local}/tables/projection.csv")
    assert len(projection) == 2 * 13 and set(projection["fit"]) == {"pooled"}
    assert open(f"{local}/plots/retention_curve.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    logged = RetentionModel.load(f"{local}/retention_model.json")
    pd.testing.assert_series_equal(logged.params_, RetentionModel.load(model_file).params_, check_exact=True)

    # the pyfunc predicts what `score` writes, with the run's settings by default and with params given
    customers = pd.DataFrame({"customer_id": np.arange(40), "renewals": np.arange(40) % 13,
                              "churned": (np.arange(40) % 7 == 0).astype(int)})
    source = tmp_path / "customers.csv"
    customers.to_csv(source, index=False)
    pyfunc = _load_pyfunc(out["mlflow"]["model_uris"]["pooled"], store, monkeypatch)
    for extra, params_given in (([], None), (["--discount-rate", "0.25", "--margin", "7"],
                                             {"discount_rate": "0.25", "margin": 7.0})):
        scores_file = tmp_path / f"scores{len(extra)}.csv"
        assert main(["score", "--model", str(model_file), "--input", str(source), "--output", str(scores_file),
                     "--no-tracking", *(extra or ["--margin", "30"])]) == 0
        scored = pd.read_csv(scores_file).drop(columns="customer_id")
        predicted = pyfunc.predict(customers[["renewals", "churned"]], params=params_given)
        pd.testing.assert_frame_equal(predicted.reset_index(drop=True), scored, check_exact=False, rtol=1e-15)
    # renewals as doubles (Spark's, a CSV's): the signature's type, through MLflow's own pyfunc; the ids come back
    given = customers[["customer_id", "renewals"]].astype({"renewals": float, "customer_id": str})
    again = pyfunc.pyfunc.predict(given)
    np.testing.assert_allclose(again["derl"], logged.derl(0.1, customers["renewals"]), rtol=1e-15)
    assert again["customer_id"].tolist() == customers["customer_id"].astype(str).tolist()
    # a bad row: MLflow's INVALID_PARAMETER_VALUE with the model's one line
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as caught:
        pyfunc.predict(pd.DataFrame({"renewals": [1.0, -2.0]}))
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE" and "\n" not in caught.value.message
    assert "renewals" in caught.value.message


def test_score_reads_a_retention_model_from_its_run(store, segments, tmp_path, capsys):
    assert main(["retention", "--cohorts", str(segments), "--period", "Y", "--tracking-uri", store, "--json"]) == 0
    uri = json.loads(capsys.readouterr().out)["mlflow"]["model_uris"]["pooled"]
    source, out = tmp_path / "c.csv", tmp_path / "s.csv"
    pd.DataFrame({"customer_id": [7, 8], "renewals": [0, 5], "churned": [0, 0]}).to_csv(source, index=False)
    assert main(["score", "--model", uri, "--input", str(source), "--output", str(out), "--tracking-uri", store,
                 "--margin", "12"]) == 0
    text = capsys.readouterr().out
    scores = pd.read_csv(out)
    model = ShiftedBetaGeometricModel().fit(pd.read_csv(segments, dtype={"cohort": str}), time_unit="Y")
    np.testing.assert_allclose(scores["residual_value"], 12 * model.derl("10%/Y", [0, 5]), rtol=1e-12)
    score_run = next(r for r in _runs(store) if r.data.params.get("command") == "score")
    assert f"run {score_run.info.run_id}" in text
    metrics = score_run.data.metrics
    assert metrics["residual_value_total"] == pytest.approx(scores["residual_value"].sum(), rel=1e-12)
    assert metrics["derl_total"] == pytest.approx(scores["derl"].sum(), rel=1e-12)
    assert metrics["rows_read"] == 2 and metrics["rows_scored"] == 2 and "clv_total" not in metrics
    assert score_run.data.params["model"] == uri and score_run.data.params["model_kind"] == "sbg"


def test_by_cohort_logs_a_child_run_per_cohort(store, segments, tmp_path, capsys, monkeypatch):
    assert main(["retention", "--cohorts", str(segments), "--period", "Y", "--by-cohort", "--tracking-uri", store,
                 "--json", "--discount-rate", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    runs = {r.info.run_id: r for r in _runs(store)}
    parent = runs[out["mlflow"]["run_id"]]
    children = {r.data.params["cohort"]: r for r in runs.values()
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["high end", "regular"] and len(runs) == 3
    assert parent.data.params["by_cohort"] == "true" and parent.data.metrics["cohorts_fitted"] == 2
    client = _client(store)
    assert _artifacts(client, parent.info.run_id) == ["plots/retention_curve.png", "tables/projection.csv"]
    for fit in out["fits"]:
        child = children[fit["cohort"]]
        assert float(child.data.params["param.alpha"]) == fit["alpha"]
        assert child.data.metrics["log_likelihood"] == fit["log_likelihood"]
        assert _artifacts(client, child.info.run_id) == ["retention_model.json"]
        uri = out["mlflow"]["model_uris"][fit["cohort"]]
        assert uri == f"runs:/{child.info.run_id}/model"
        own = ShiftedBetaGeometricModel.from_params({"alpha": fit["alpha"], "beta": fit["beta"]}, time_unit="Y")
        predicted = _load_pyfunc(uri, store, monkeypatch).predict(pd.DataFrame({"renewals": [0, 3, 9]}))
        np.testing.assert_allclose(predicted["derl"], own.derl(0.1, [0, 3, 9]), rtol=1e-14)


def test_a_refused_fit_is_a_failed_run_without_a_model(store, tmp_path, capsys):
    flat = tmp_path / "flat.csv"
    pd.DataFrame({"cohort": "c", "period": range(8), "alive": np.round(1e6 * 0.8 ** np.arange(8))}).to_csv(
        flat, index=False)
    assert main(["retention", "--cohorts", str(flat), "--period", "Y", "--save-model", str(tmp_path / "m.json"),
                 "--tracking-uri", store]) == 3
    captured = capsys.readouterr()
    assert "tracked in MLflow (FAILED)" in captured.out and "(no model logged)" in captured.out
    (run,) = _runs(store)
    assert run.info.status == "FAILED" and run.data.tags["reliable"] == "false"
    assert "geometric model" in run.data.tags["problems"] and "fit refused" in run.data.tags["failure"]
    assert "log_likelihood" in run.data.metrics
    assert _artifacts(_client(store), run.info.run_id) == ["plots/retention_curve.png", "problems.txt",
                                                           "tables/projection.csv"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".db" and p.name != "mlruns") == ["flat.csv"]


def test_no_tracking_logs_nothing(store, segments, tmp_path, capsys, monkeypatch):
    assert main(["retention", "--cohorts", str(segments), "--period", "Y", "--tracking-uri", store,
                 "--no-tracking"]) == 0
    monkeypatch.setenv("CLV_FORECAST_TRACKING", "off")
    assert main(["retention", "--cohorts", str(segments), "--period", "Y", "--tracking-uri", store]) == 0
    assert "tracked in MLflow" not in capsys.readouterr().out
    assert _runs(store) == []


def test_an_unreachable_server_is_refused_before_any_work(segments, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    model = tmp_path / "m.json"
    assert main(["retention", "--cohorts", str(segments), "--period", "Y", "--save-model", str(model),
                 "--tracking-uri", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--tracking-uri http://127.0.0.1:9" in err and "--no-tracking" in err
    assert not model.exists()
