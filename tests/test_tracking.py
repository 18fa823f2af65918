"""MLflow tracking (clv_forecast.tracking) against a real MLflow: an embedded sqlite store and a real
``mlflow server`` on 127.0.0.1.

MLflow's sqlite migration takes seconds, so one migrated database is made per session and copied
where a fresh store is needed (the servers start on such copies too). The pipeline run is a session
fixture; the servers and the run logged over HTTP are module fixtures, stopped when this module is done.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow")

from clv_forecast import tracking  # noqa: E402
from clv_forecast.errors import ClvInputError  # noqa: E402
sys.path.insert(0, str(Path(__file__).parent))
from helpers import free_port, wait_until_up  # noqa: E402 (tests folder)

MODEL_NAME = "cdnow_tracking_test"


@pytest.fixture(scope="module")
def server(tmp_path_factory, migrated_db, request):
    """A real ``mlflow server`` (sqlite backend, proxied artifacts in tmp) on a free local port, for this module
    only (stopped when its last test is done, not at the end of the session).

    Two settings keep its CPU cost down without changing what the tests talk to: the store is a copy of the
    already-migrated template (no migration at start), and MLflow's job execution (a background runner for
    GenAI scorers and trace roll-ups that these tests never use) is off: with it on, the idle server burns
    about half a core for as long as it lives. While the server starts, this process runs the pipeline."""
    root = tmp_path_factory.mktemp("mlflow_server")
    db = root / "mlflow.db"
    shutil.copyfile(migrated_db, db)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(root / "artifacts"),
               "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env)
    try:
        request.getfixturevalue("cdnow_result")
        wait_until_up(uri + "/health", process, root / "server.log", timeout=90, what="mlflow server")
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def cdnow_result(tmp_path_factory):
    from clv_forecast.experiment import cdnow_spec, run

    tmp = tmp_path_factory.mktemp("tracking_run")
    spec = cdnow_spec()
    spec["output"].update(model=None, report=str(tmp / "r.html"))
    return run(spec, save=True)


@pytest.fixture(scope="module")
def http_run(server, cdnow_result):
    with pytest.MonkeyPatch.context() as patch:  # the fail-fast settings log_run sets stay in this fixture
        for key in tracking._FAST_FAIL_ENV:
            patch.delenv(key, raising=False)
        tracked = tracking.log_run(cdnow_result, command="run", tracking_uri=server, register_as=MODEL_NAME)
    return tracked


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _rel_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300)))


# ---- the model over HTTP, loaded back in a fresh process ------------------------------------------

LOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import pandas as pd
    from clv_forecast.tracking import load_model
    uris, data, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    rfm = pd.read_parquet(data)
    results = {}
    for key, uri in uris.items():
        model = load_model(uri)
        results[key] = model.predict(rfm)
    results["horizon_6M"] = model.predict(rfm, params={"horizon": "6M"})
    results["no_spend_39W"] = model.predict(rfm[["frequency", "recency", "T"]], params={"horizon": "39W"})
    for key, frame in results.items():
        frame.to_parquet(f"{out}/{key}.parquet")
    print(json.dumps(sorted(results)))
""")


def test_model_logged_over_http_predicts_the_same_in_a_fresh_process(http_run, server, cdnow_result, tmp_path):
    assert http_run.registered_version == 1 and http_run.alias == "champion"
    rfm = cdnow_result.summary[["frequency", "recency", "T", "monetary_value"]].reset_index(drop=True)
    rfm.to_parquet(tmp_path / "rfm.parquet")
    uris = {"run": http_run.model_uri, "version": f"models:/{MODEL_NAME}/1",
            "alias": f"models:/{MODEL_NAME}@champion"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = server
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, json.dumps(uris), str(tmp_path / "rfm.parquet"),
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    model, value = cdnow_result.model, cdnow_result.spec["value"]
    money = dict(discount_rate=value["discount_rate"], step=value["step"], margin=value["margin"])
    expected = model.clv(rfm, horizon=value["horizon"], **money).reset_index(drop=True)
    for key in uris:
        got = pd.read_parquet(tmp_path / f"{key}.parquet")
        assert list(got.columns) == ["expected_purchases", "p_alive", "expected_spend", "clv"]
        assert len(got) == len(rfm)
        for column in got.columns:
            assert _rel_diff(got[column], expected[column]) <= 1e-12, (key, column)
    # predict params override the run's horizon
    expected_6 = model.clv(rfm, horizon="6M", **money).reset_index(drop=True)
    got = pd.read_parquet(tmp_path / "horizon_6M.parquet")
    for column in got.columns:
        assert _rel_diff(got[column], expected_6[column]) <= 1e-12, column
    assert not np.allclose(got["clv"], pd.read_parquet(tmp_path / "run.parquet")["clv"])
    # without monetary_value: purchases and P(alive), no spend or CLV
    got = pd.read_parquet(tmp_path / "no_spend_39W.parquet")
    pred = model.predict(rfm[["frequency", "recency", "T"]], horizon="39W").reset_index(drop=True)
    assert _rel_diff(got["expected_purchases"], pred["expected_purchases"]) <= 1e-12
    assert got["expected_spend"].isna().all() and got["clv"].isna().all()


def test_logged_model_carries_the_json_model_file_and_a_signature_with_params(http_run, server):
    from mlflow.models import get_model_info

    import mlflow

    client = _client(server)
    artifacts = [a.path for a in client.list_artifacts(http_run.run_id)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", server)
        info = get_model_info(http_run.logged_model_uri)
        folder = mlflow.artifacts.download_artifacts(http_run.logged_model_uri)
    signature = info.signature
    # concrete types (MLflow's scoring server reads CSV with them), every column optional (the model names a
    # missing one), the optional id passed through
    assert [(c.name, c.type.name, c.required) for c in signature.inputs.inputs] == [
        ("frequency", "double", False), ("recency", "double", False), ("T", "double", False),
        ("monetary_value", "double", False), ("customer_id", "string", False)]
    assert [c.name for c in signature.outputs.inputs] == ["customer_id", "expected_purchases", "p_alive",
                                                          "expected_spend", "clv"]
    params = {p.name: p.default for p in signature.params.params}
    assert params == {"horizon": "12M", "discount_rate": "10%/Y", "step": "1M", "margin": 1.0, "interval": 0.0,
                      "interval_method": "delta"}
    files = {p.name for p in Path(folder).rglob("*")}
    assert "clv_model.json" in files
    # logged as code (models-from-code): the code file, no pickled wrapper
    assert "clv.py" in files and "python_model.pkl" not in files
    assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    data = json.loads(next(Path(folder).rglob("clv_model.json")).read_text())
    assert data["format"] == "clv-forecast-model" and data["purchases"]["params"]["r"] > 0
    assert {"plots", "tables", "experiment", "report"} <= set(artifacts)


# ---- params, metrics, artifacts, tags ----------------------------------------------------------


def test_params_metrics_artifacts_and_tags_of_a_run(http_run, server, cdnow_result):
    client = _client(server)
    run = client.get_run(http_run.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert client.get_experiment(run.info.experiment_id).name == "cdnow" == http_run.experiment_name
    # the spec, flattened; dates as ISO text
    assert params["data.source"] == "cdnow_sample" and params["summary.time_unit"] == "W"
    assert params["summary.calibration_end"] == "1997-09-30" and params["value.horizon"] == "12M"
    assert params["summary.observation_end"] == "null" and params["name"] == "cdnow"
    assert "horizon" not in params  # no unprefixed copies of the [value] settings
    # settings from the estimators' own signatures
    for key, value in cdnow_result.model.get_params().items():
        assert params[f"estimator.{key}"] == tracking._text(value)
    assert params["command"] == "run"
    for name in tracking.VERSIONED:
        assert params[f"version.{name}"]
    from clv_forecast.datasets import cdnow_sample_path
    import hashlib

    assert params["data_sha256"] == hashlib.sha256(cdnow_sample_path().read_bytes()).hexdigest()
    assert params["rows.n_transactions"] == "6919" and params["rows.n_customers"] == "2357"
    # metrics
    stats = cdnow_result.model.fit_stats()
    assert metrics["bgnbd.log_likelihood"] == pytest.approx(stats["bgnbd"]["log_likelihood"], rel=1e-12)
    assert metrics["gamma_gamma.aic"] == pytest.approx(stats["gamma_gamma"]["aic"], rel=1e-12)
    assert metrics["bgnbd.bic"] == pytest.approx(stats["bgnbd"]["bic"], rel=1e-12)
    frame = cdnow_result.model.summary_frame()
    for (part, param), row in frame.iterrows():
        assert metrics[f"{part}.{param}"] == pytest.approx(row["estimate"], rel=1e-12)
        assert metrics[f"{part}.{param}.se"] == pytest.approx(row["std_err"], rel=1e-12)
    for key in ("holdout_mae", "holdout_rmse", "clv_total", "clv_customers", "clv_missing"):
        assert metrics[key] == pytest.approx(cdnow_result.metrics[key], rel=1e-12)
    for method, row in cdnow_result.backtest.metrics.iterrows():
        for metric, value in row.items():
            if math.isfinite(value):
                # a tournament row predictive:<kind> is logged as backtest.predictive.<kind>.<metric>
                assert metrics[f"backtest.{method.replace(':', '.')}.{metric}"] == pytest.approx(value, rel=1e-12)
    for key in ("fit", "summary", "predictions"):
        assert metrics[f"seconds.{key}"] == pytest.approx(cdnow_result.timings[key])
    assert all(math.isfinite(v) for v in metrics.values())
    # tags
    assert tags["dataset"] == "CDNOW sample (bundled)" and tags["model_kinds"] == "BG/NBD+Gamma-Gamma"
    assert tags["time_unit"] == "W" and tags["reliable"] == "true"
    # artifacts
    paths = {a.path for folder in ("plots", "tables", "experiment", "report")
             for a in client.list_artifacts(http_run.run_id, folder)}
    assert len([p for p in paths if p.startswith("plots/") and p.endswith(".png")]) == len(cdnow_result.figures)
    assert {"tables/comparison_customers.csv", "tables/comparison_segments.csv", "tables/backtest_metrics.csv",
            "tables/backtest_purchases.csv", "experiment/spec.json", "report/r.html"} <= paths


# ---- the embedded store ---------------------------------------------------------------------------


def test_local_store_runs_share_the_experiment_and_non_finite_metrics_are_tags(local_store, cdnow_result, tmp_path):
    spec_file = tmp_path / "shop.toml"
    spec_file.write_text('name = "cdnow"\n[data]\nsource = "cdnow_sample"\n', encoding="utf-8")
    data = tmp_path / "data.csv"
    data.write_text("customer_id,date,amount\n1,1997-01-01,10\n", encoding="utf-8")
    value = {**cdnow_result.spec["value"], "horizon": "6M", "margin": 0.5}
    result = dataclasses.replace(cdnow_result, spec={**cdnow_result.spec, "spec_file": str(spec_file), "value": value},
                                 metrics={**cdnow_result.metrics, "bad_metric": float("nan")})
    first = tracking.log_run(result, command="fit", tracking_uri=local_store, data_path=str(data))
    second = tracking.log_run(cdnow_result, command="run", tracking_uri=local_store)
    assert first.experiment_id == second.experiment_id and first.run_id != second.run_id
    assert first.registered_version is None
    client = _client(local_store)
    run = client.get_run(first.run_id)
    assert "bad_metric" not in run.data.metrics and "bad_metric=nan" in run.data.tags["skipped_metrics"]
    assert run.data.params["spec_file"] == str(spec_file) and run.data.params["command"] == "fit"
    import hashlib

    assert run.data.params["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert [a.path for a in client.list_artifacts(first.run_id, "experiment")] == ["experiment/shop.toml"]
    # the model loads in this process too, from the local store
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", local_store)
        model = tracking.load_model(first.model_uri)
    rfm = cdnow_result.summary[["frequency", "recency", "T", "monetary_value"]].head(50)
    # the run's [value] settings are the defaults of predict's params; params given override them
    got = model.predict(rfm)
    want = cdnow_result.model.clv(rfm, horizon="6M", discount_rate="10%/Y", step="1M", margin=0.5)
    assert _rel_diff(got["clv"], want["clv"].to_numpy()) <= 1e-12
    got = model.predict(rfm, params={"horizon": "24M", "margin": 0.3})
    want = cdnow_result.model.clv(rfm, horizon="24M", discount_rate="10%/Y", step="1M", margin=0.3)
    assert _rel_diff(got["clv"], want["clv"].to_numpy()) <= 1e-12


def test_run_name_input_dataset_and_experiment_kind(local_store, cdnow_result):
    """A readable run name, the input file as the run's training dataset (digest: its SHA-256), and a new
    experiment tagged to open on its runs in MLflow's UI."""
    from clv_forecast.datasets import cdnow_sample_path

    tracked = tracking.log_run(cdnow_result, command="run", tracking_uri=local_store)
    client = _client(local_store)
    run = client.get_run(tracked.run_id)
    assert client.get_experiment(tracked.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert re.fullmatch(r"run bgnbd\+gamma_gamma cdnow \d{4}-\d\d-\d\d \d\d:\d\d UTC", run.info.run_name)
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "CDNOW sample (bundled)"
    digest = dataset_input.dataset.digest
    assert len(digest) == 36 and run.data.params["data_sha256"].startswith(digest)
    assert json.loads(dataset_input.dataset.source) == {"uri": str(cdnow_sample_path().resolve())}
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"


def test_pyfunc_interval_param_gives_every_bound(local_store, cdnow_result):
    """``params={"interval": 0.9}`` adds the bounds of every forecast, equal to ``ClvModel.clv``'s; without spend
    columns the purchase forecasts keep their bounds and the money columns are NaN; a bad level is one line."""
    from clv_forecast.uncertainty import INTERVAL_COLUMNS

    tracked = tracking.log_run(cdnow_result, command="fit", tracking_uri=local_store)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", local_store)
        model = tracking.load_model(tracked.model_uri)
    value = cdnow_result.spec["value"]
    money = dict(horizon=value["horizon"], discount_rate=value["discount_rate"], step=value["step"],
                 margin=value["margin"])
    rfm = cdnow_result.summary[["frequency", "recency", "T", "monetary_value"]].head(200)
    plain = model.predict(rfm, params={"interval": 0.0})  # 0: no interval
    assert list(plain.columns) == list(tracking.OUTPUT_COLUMNS)
    assert value.get("interval")  # the run had an interval; the pyfunc gives one only when asked
    assert list(model.predict(rfm).columns) == list(tracking.OUTPUT_COLUMNS)
    got = model.predict(rfm, params={"interval": 0.9})
    want = cdnow_result.model.clv(rfm, interval=0.9, **money)
    assert list(got.columns) == list(tracking.OUTPUT_COLUMNS) + list(INTERVAL_COLUMNS)
    for column in got.columns:
        assert _rel_diff(got[column], want[column].to_numpy()) <= 1e-12, column
    assert (got["clv_lower"] < got["clv"]).sum() > 100 and (got["clv_upper"] > got["clv"]).sum() > 100
    drawn = model.predict(rfm, params={"interval": 0.8, "interval_method": "draws"})
    want = cdnow_result.model.clv(rfm, interval=0.8, interval_method="draws", **money)
    assert _rel_diff(drawn["p_alive_upper"], want["p_alive_upper"].to_numpy()) <= 1e-12
    bare = model.predict(rfm[["frequency", "recency", "T"]], params={"interval": 0.9})
    ref = cdnow_result.model.clv(rfm, interval=0.9, **money)
    for column in ("expected_purchases", "expected_purchases_lower", "p_alive_lower", "p_alive_upper"):
        assert _rel_diff(bare[column], ref[column].to_numpy()) <= 1e-12, column
    assert bare[["expected_spend", "clv", "clv_lower", "expected_spend_upper"]].isna().all().all()
    with pytest.raises(Exception, match="must be a probability between 0 and 1"):
        model.predict(rfm, params={"interval": 1.5})


def test_registration_in_the_local_store_sets_the_alias(local_store, cdnow_result, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")  # the user's setting, left as it was
    tracked = tracking.log_run(cdnow_result, command="run", tracking_uri=local_store, register_as="m", alias="prod")
    again = tracking.log_run(cdnow_result, command="run", tracking_uri=local_store, register_as="m", alias="prod")
    assert (tracked.registered_version, again.registered_version) == (1, 2)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db" == mlflow.get_tracking_uri()
    assert str(_client(local_store).get_model_version_by_alias("m", "prod").version) == "2"


def test_a_model_without_spend_and_a_deleted_experiment(local_store, tmp_path):
    from clv_forecast.experiment import cdnow_spec, run

    spec = cdnow_spec()
    spec["name"] = "no_spend"
    spec["data"]["amount_col"] = None
    spec["output"].update(model=None, report=None)
    result = run(spec, save=False)
    tracked = tracking.log_run(result, command="fit", tracking_uri=local_store)
    client = _client(local_store)
    data = client.get_run(tracked.run_id).data
    assert data.tags["model_kinds"] == "BG/NBD" and "bgnbd.r" in data.metrics
    assert not any(key.startswith("gamma_gamma.") for key in data.metrics)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", local_store)
        model = tracking.load_model(tracked.model_uri)
    rfm = result.summary[["frequency", "recency", "T"]].head(20)
    got = model.predict(rfm, params={"horizon": "39W"})
    want = result.model.predict(rfm, horizon="39W")
    assert _rel_diff(got["p_alive"], want["p_alive"].to_numpy()) <= 1e-12
    assert got["clv"].isna().all()
    client.delete_experiment(tracked.experiment_id)
    with pytest.raises(ClvInputError, match="was deleted") as caught:
        tracking.log_run(result, command="fit", tracking_uri=local_store)
    assert "\n" not in str(caught.value)


def test_bad_alias_or_data_path_is_refused_before_any_run(local_store, cdnow_result, tmp_path):
    for alias in ("latest", "v3", "two words"):
        with pytest.raises(ClvInputError, match="alias="):
            tracking.log_run(cdnow_result, command="run", tracking_uri=local_store, register_as="m", alias=alias)
    with pytest.raises(ClvInputError, match="cannot read the data file"):
        tracking.log_run(cdnow_result, command="run", tracking_uri=local_store, data_path=str(tmp_path / "nope.csv"))
    assert _client(local_store).search_runs([e.experiment_id for e in _client(local_store).search_experiments()]) == []


# ---- where: URIs and reachability ---------------------------------------------------------------


def test_resolve_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri() is None
    assert tracking.resolve_tracking_uri("http://x:1") == "http://x:1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///a.db")
    assert tracking.resolve_tracking_uri() == "sqlite:///a.db"
    assert tracking.resolve_tracking_uri("http://x:1") == "http://x:1"


def test_check_reachable_fails_fast_with_one_line(monkeypatch):
    for key in tracking._FAST_FAIL_ENV:
        monkeypatch.delenv(key, raising=False)
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ClvInputError) as caught:
        tracking.check_reachable(uri)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert "\n" not in message and uri in message and "not reachable" in message
    assert caught.value.argument == "tracking_uri" and "no_tracking" in caught.value.mentions
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == tracking._FAST_FAIL_ENV["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


def test_check_reachable_keeps_the_users_settings_and_ignores_local_stores(monkeypatch, server):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    tracking.check_reachable(server)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.check_reachable(None)
    tracking.check_reachable("sqlite:///nowhere/mlflow.db")


def test_importing_tracking_does_not_import_mlflow():
    code = ("import sys\nimport clv_forecast.tracking\nfrom clv_forecast.tracking import log_run, TrackedRun\n"
            "print('mlflow' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cli_fit_is_tracked_and_registered(local_store, cdnow_csv, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from clv_forecast.cli import main

    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    args = ["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--calibration-end", "1997-09-30",
            "--tracking-uri", local_store, "--register-as", "cdnow-cli", "--json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    run = MlflowClient(local_store).get_run(data["mlflow"]["run_id"])
    assert run.data.params["command"] == "fit" and run.data.params["summary.time_unit"] == "W"
    assert run.data.metrics["bgnbd.r"] == pytest.approx(data["bgnbd"]["r"], rel=1e-12)
    assert data["mlflow"]["registered_version"] == 1


def test_cli_refuses_an_unreachable_server_before_any_work(cdnow_csv, tmp_path, monkeypatch, capsys):
    import time

    from clv_forecast.cli import main

    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    model = tmp_path / "m.json"
    start = time.perf_counter()
    rc = main(["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--output", str(model),
               "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--tracking-uri http://127.0.0.1:" in err and "--no-tracking" in err
    assert elapsed < 10 and not model.exists()  # nothing written


# ---- the model behind MLflow's scoring server (mlflow models serve) -----------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory, migrated_db, cdnow_result):
    """The logged model behind a real ``mlflow models serve --env-manager local`` on a free local port: one
    server for every check of this module, killed at the end. Yields the URL, the tracked run and the
    model loaded in this process."""
    root = tmp_path_factory.mktemp("served")
    store = root / "mlflow.db"
    shutil.copyfile(migrated_db, store)
    uri = f"sqlite:///{store}"
    cwd = os.getcwd()
    os.chdir(root)  # the sqlite store's artifacts go to ./mlruns
    try:
        tracked = tracking.log_run(cdnow_result, command="fit", tracking_uri=uri)
    finally:
        os.chdir(cwd)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    # the server runs `uvicorn` from PATH: this interpreter's scripts, as in an activated virtual environment
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    log = open(root / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", tracked.model_uri,
                                "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/ping", process, root / "serve.log", timeout=120, what="mlflow models serve", pause=0.3)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", uri)
            loaded = tracking.load_model(tracked.model_uri)
        yield url, tracked, loaded
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)  # the server and its uvicorn worker
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=15)
        log.close()


def _post(url: str, body: str, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/invocations", data=body.encode("utf-8"),
                                     headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _split(frame: pd.DataFrame) -> dict:
    """``frame`` in MLflow's ``dataframe_split`` form, numbers exactly (``DataFrame.to_json`` rounds to 10 digits)."""
    return {"columns": list(frame.columns), "data": frame.astype(object).values.tolist()}


def _served_rfm(cdnow_result, n: int = 40) -> pd.DataFrame:
    """CDNOW customers as a client sends them: text ids with leading zeros, frequency a whole number."""
    rfm = cdnow_result.summary.reset_index()[["customer_id", "frequency", "recency", "T", "monetary_value"]].head(n)
    return rfm.assign(customer_id=[f"c{int(i):05d}" for i in rfm["customer_id"]])


def _expected(cdnow_result, rfm, **change) -> pd.DataFrame:
    value = {**cdnow_result.spec["value"], **change}
    return cdnow_result.model.clv(rfm.drop(columns="customer_id"), horizon=value["horizon"],
                                  discount_rate=value["discount_rate"], step=value["step"], margin=value["margin"])


def test_served_model_scores_csv_and_json_and_returns_the_ids(served, cdnow_result):
    url, tracked, loaded = served
    rfm = _served_rfm(cdnow_result)
    text = rfm.to_csv(index=False)
    # pandas' CSV parser (the server's) may read a decimal 1 ulp away from the number written: the expected
    # scores are those of the numbers as that parser reads them
    as_read = pd.read_csv(io.StringIO(text), dtype={"customer_id": str})
    expected = _expected(cdnow_result, as_read).reset_index(drop=True)
    status, body = _post(url, text, "text/csv")
    assert status == 200, body
    from_csv = pd.DataFrame(body["predictions"])
    split = _split(rfm)
    status, body = _post(url, json.dumps({"dataframe_split": split, "params": {"horizon": "6M"}}),
                         "application/json")
    assert status == 200, body
    from_json = pd.DataFrame(body["predictions"])
    six = _expected(cdnow_result, rfm, horizon="6M").reset_index(drop=True)
    for got, want in ((from_csv, expected), (from_json, six)):
        assert list(got.columns) == ["customer_id", *tracking.OUTPUT_COLUMNS]
        assert got["customer_id"].tolist() == rfm["customer_id"].tolist()  # text ids, leading zeros kept
        for column in tracking.OUTPUT_COLUMNS:
            assert _rel_diff(got[column], want[column]) <= 1e-12, column
    assert not np.allclose(from_json["clv"], from_csv["clv"])  # the params reached the model
    # the same model loaded in this process (mlflow.pyfunc's own load_model, doubles given) predicts the same
    local = loaded.pyfunc.predict(as_read.astype({"frequency": "float64"}))
    assert local["customer_id"].tolist() == from_csv["customer_id"].tolist()
    for column in tracking.OUTPUT_COLUMNS:
        assert _rel_diff(local[column], from_csv[column]) <= 1e-12, column


@pytest.mark.parametrize("case", ["negative frequency", "fractional frequency", "recency > T", "missing column"])
def test_served_model_answers_bad_input_with_one_line(served, cdnow_result, case):
    url, _, loaded = served
    rfm = _served_rfm(cdnow_result, n=5)
    if case == "negative frequency":
        rfm.loc[2, "frequency"] = -1
    elif case == "fractional frequency":
        rfm["frequency"] = rfm["frequency"].astype(float)
        rfm.loc[2, "frequency"] = 2.5
    elif case == "recency > T":
        rfm.loc[2, "recency"] = rfm.loc[2, "T"] + 1
    else:
        rfm = rfm.drop(columns="T")
    want = {"negative frequency": "column 'frequency', row 3", "fractional frequency": "column 'frequency', row 3",
            "recency > T": "row 3", "missing column": "missing columns ['T']"}[case]
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as local:  # the model's own line, in this process
        loaded.predict(rfm)
    assert local.value.error_code == "INVALID_PARAMETER_VALUE"
    line = local.value.message
    assert "\n" not in line and want in line
    for body, content_type in ((rfm.to_csv(index=False), "text/csv"),
                               (json.dumps({"dataframe_split": _split(rfm)}), "application/json")):
        status, answer = _post(url, body, content_type)
        assert status == 400, answer
        assert answer["error_code"] == "INVALID_PARAMETER_VALUE"
        # MLflow's server puts the input it received before the model's message: the last line is ours
        assert answer["message"].splitlines()[-1] == f"Error: {line}"
        assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer)


def test_a_model_logged_with_a_pickled_wrapper_still_loads(local_store, cdnow_result, tmp_path):
    """Models logged before models-from-code carry a pickled ClvPyfunc, found by its name at load: they load
    and predict as before (no signature: the package's CLV settings)."""
    import mlflow

    from clv_forecast.units import VALUE_DEFAULTS

    model_file = cdnow_result.model.save(tmp_path / "clv_model.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", local_store)
        with mlflow.start_run():
            # the requirements given, as the package logged them then (else MLflow infers them by loading the
            # model in a subprocess, seconds of CPU that this check does not need)
            info = mlflow.pyfunc.log_model(name="model", python_model=tracking.ClvPyfunc(),
                                           artifacts={"model_file": str(model_file)},
                                           pip_requirements=tracking._requirements())
        folder = Path(mlflow.artifacts.download_artifacts(info.model_uri))
        model = tracking.load_model(info.model_uri)
    assert (folder / "python_model.pkl").is_file()
    rfm = cdnow_result.summary[["frequency", "recency", "T", "monetary_value"]].head(30)
    got = model.predict(rfm)
    want = cdnow_result.model.clv(rfm, **{k: VALUE_DEFAULTS[k] for k in ("horizon", "discount_rate", "step")},
                                  margin=float(VALUE_DEFAULTS["margin"]))
    assert _rel_diff(got["clv"], want["clv"].to_numpy()) <= 1e-12


def test_load_model_takes_the_tables_summarize_writes(local_store, cdnow_result):
    """MLflow refuses int64 for a double column and a number for a text one; ``tracking.load_model`` gives it the
    whole numbers as doubles and returns the ids as they were, where ``mlflow.pyfunc.load_model`` refuses."""
    from mlflow.exceptions import MlflowException

    tracked = tracking.log_run(cdnow_result, command="fit", tracking_uri=local_store)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", local_store)
        model = tracking.load_model(tracked.model_uri)
    rfm = cdnow_result.summary.reset_index()[["customer_id", "frequency", "recency", "T", "monetary_value"]].head(30)
    assert rfm["frequency"].dtype == "int64" and rfm["customer_id"].dtype == "int64"
    got = model.predict(rfm)
    assert got["customer_id"].tolist() == rfm["customer_id"].tolist() and got["customer_id"].dtype == "int64"
    want = model.pyfunc.predict(rfm.astype({"frequency": "float64", "customer_id": str}))
    for column in tracking.OUTPUT_COLUMNS:
        assert _rel_diff(got[column], want[column]) <= 1e-12, column
    with pytest.raises(MlflowException, match="frequency"):
        model.pyfunc.predict(rfm.drop(columns="customer_id"))


def test_input_digest_of_a_file_and_of_a_folder(tmp_path):
    """A file's digest is its SHA-256 (36 digits, what MLflow's stores keep); a folder's (a Parquet dataset)
    follows its files' names and sizes without reading them."""
    import hashlib

    data = tmp_path / "part-0.parquet"
    data.write_bytes(b"abc")
    digest, of = tracking._input_digest(data)
    assert digest == hashlib.sha256(b"abc").hexdigest()[:36] and "contents" in of
    before, of = tracking._input_digest(tmp_path)
    assert len(before) == 36 and "names" in of
    data.write_bytes(b"abcd")
    assert tracking._input_digest(tmp_path)[0] != before
