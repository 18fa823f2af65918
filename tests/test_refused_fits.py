"""What a user gets when a fit is refused (issue 18, "a refused fit still reports"), on every door.

A fit that did not converge or does not identify its parameters exits with code 3 and saves nothing, but
it still reports: the row accounting, the values the fit reached (parameters, standard errors where finite,
log-likelihood, iterations), the problems, and the options that may help (named as the door names them:
``--save-unreliable`` on the command line, ``save_unreliable=True`` in Python); ``--json`` prints the object
of a fit with ``"reliable": false``; MLflow gets a run with status FAILED and no model. ``compare`` and
``report`` take ``--save-unreliable`` and the model options, and label a model kept that way.

The logs are small and built here:
- ``identical``: 40 customers who all buy on the same four days (amounts differ): no heterogeneity in the
  purchases, so the BG/NBD likelihood has no interior maximum (and the spend model runs off too); its fit
  runs to a boundary whose nested model (``on_boundary = "nested"``, the default) runs off in turn: the
  refusal carries that model's values, whatever its kind;
- ``flat_price``: a simulated BG/NBD population that always pays the same price: the purchases are fine,
  the Gamma-Gamma fit has no interior maximum (its values stay inside what a model file may hold);
- ``no_dropout``: a simulated population that never drops out (a -> 0): a boundary fit. Whether such a fit
  is refused or given as a nested model is the fit's business; the doors must agree with the fit's problems
  whatever their wording.
- ``one_time``: only one-time buyers: the data identify nothing, there is no model at all.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from clv_forecast import ClvModel, summarize
from clv_forecast.cli import main
from clv_forecast.errors import IdentificationError, UnreliableFitError

CAL = "2020-03-31"


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _api_model(path, calibration_end=CAL, **settings):
    """The fit the command line makes, made through the Python API (its problems are the reference)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rfm = summarize(str(path), customer_col="customer_id", date_col="date", amount_col="amount",
                        time_unit=settings.pop("time_unit", "W"), calibration_end=calibration_end)
        return ClvModel(**settings).fit(rfm)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    from clv_forecast.simulate import simulate

    folder = tmp_path_factory.mktemp("refused")
    rng = np.random.default_rng(0)
    days = ("2020-01-06", "2020-02-03", "2020-03-02", "2020-05-04")
    identical = pd.DataFrame([(c, d, round(float(rng.gamma(4, 5)), 2)) for c in range(40) for d in days],
                             columns=["customer_id", "date", "amount"])
    flat = simulate(300, r=0.8, alpha=5.0, a=0.8, b=2.5, seed=0, end="2021-06-30").rename(
        columns={"timestamp": "date"})
    flat["amount"] = 10.0
    no_dropout = simulate(300, r=2.0, alpha=10.0, a=1e-6, b=1e3, p=6, q=4, v=15, seed=1, end="2021-06-30").rename(
        columns={"timestamp": "date"})
    one_time = pd.DataFrame({"customer_id": range(40), "date": ["2020-01-01"] * 40, "amount": [10.0] * 40})
    paths = {}
    for name, frame in (("identical", identical), ("flat_price", flat), ("no_dropout", no_dropout),
                        ("one_time", one_time)):
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


@pytest.fixture(scope="module")
def identical(logs):
    model = _api_model(logs["identical"])
    assert model.purchases_.result_.problems, "the test log must give a BG/NBD fit that is refused today"
    return logs["identical"], model


@pytest.fixture(scope="module")
def flat_price(logs):
    model = _api_model(logs["flat_price"], calibration_end="2021-03-31")
    assert model.spend_.result_.problems and not model.purchases_.result_.problems
    return logs["flat_price"], model


FIT = ("fit", "--amount-col", "amount", "--no-tracking")


# ------------------------------------------------------------------------------------------ fit


def test_refused_fit_prints_accounting_values_problems_and_cli_options(identical, tmp_path, capsys):
    path, model = identical
    out_file = tmp_path / "m.json"
    rc, out, err = run(capsys, *FIT, "-t", path, "--calibration-end", CAL, "--output", out_file)
    assert rc == 3 and not out_file.exists()
    # the accounting block of a successful fit
    assert "160 rows read: 160 summarised for 40 customers" in out
    assert f"calibration to {CAL}, holdout to 2020-05-04; time unit W, merge D" in out
    # the values reached: every parameter, no standard error where none is finite, LL, iterations
    fit = model.purchases_.result_  # (the requested BG/NBD, or the nested model of its boundary, itself runaway)
    for name in fit.param_names:
        se = fit.bse[name]
        assert f"{name} = {fit.params[name]:.6g} ({f'se {se:.6g}' if np.isfinite(se) else 'no se'})" in out
    assert f"log-likelihood = {fit.log_likelihood:.4f}" in out and f"({fit.n_iter} iterations)" in out
    spend = model.spend_.result_
    assert f"q = {spend.params['q']:.6g} (se {spend.bse['q']:.6g})" in out
    for problem in model.problems_:
        assert f"warning: unreliable fit: {problem}" in out
    # the reason and what may help, one line, CLI options only
    assert err.count("\n") == 1 and err.startswith("clv-forecast: error: the fit is not reliable: ")
    assert all(problem in err for problem in model.problems_)
    assert "--save-unreliable keeps it anyway" in err and "--penalizer" in err and "--spend-penalizer" in err
    assert "save_unreliable" not in err and "penalizer=" not in err and "Traceback" not in err


def test_refused_fit_json_has_the_schema_of_a_fit_with_reliable_false(identical, cdnow_csv, capsys):
    path, model = identical
    rc, out, err = run(capsys, *FIT, "-t", path, "--calibration-end", CAL, "--json")
    assert rc == 3 and err.count("\n") == 1
    refused = json.loads(out)  # stdout is the JSON object alone
    assert refused["reliable"] is False and refused["problems"] == model.problems_
    assert refused["accounting"]["n_transactions"] == 160 and refused["n_customers"] == 40
    fit, kind = model.purchases_.result_, model.purchases_.kind
    part = refused[kind]
    assert part["r"] == pytest.approx(fit.params["r"], rel=1e-12)
    assert part["log_likelihood"] == pytest.approx(fit.log_likelihood, rel=1e-12)
    assert part["iterations"] == fit.n_iter and part["problems"] == fit.problems
    assert set(part["bse"]) == set(fit.param_names)
    for name, se in part["bse"].items():  # not finite: null, valid JSON
        assert se is None if not np.isfinite(fit.bse[name]) else se == pytest.approx(fit.bse[name], rel=1e-12)
    assert "--save-unreliable" in refused["error"] and refused["model_path"] is None
    # the same keys as a reliable fit's object: a script reads both
    rc, out, _ = run(capsys, *FIT, "-t", cdnow_csv, "--calibration-end", "1997-09-30", "--json")
    reliable = json.loads(out)
    assert rc == 0 and reliable["reliable"] is True and reliable["problems"] == []
    assert set(reliable) - {"bgnbd"} <= set(refused) and set(refused) - set(reliable) == {"error", kind} - {"bgnbd"}
    assert set(reliable["bgnbd"]) - {"r", "alpha", "a", "b"} == set(refused[kind]) - set(fit.param_names)
    assert set(reliable["gamma_gamma"]) == set(refused["gamma_gamma"])


def test_data_that_identify_nothing_still_give_the_accounting(logs, capsys):
    rc, out, err = run(capsys, *FIT, "-t", logs["one_time"])
    assert rc == 3 and err.count("\n") == 1 and "no customer has a repeat purchase" in err
    assert "40 rows read: 40 summarised for 40 customers" in out and "warning: unreliable fit: BG/NBD: no " in out
    rc, out, err = run(capsys, *FIT, "-t", logs["one_time"], "--json")
    data = json.loads(out)
    assert rc == 3 and data["reliable"] is False and data["accounting"]["n_transactions"] == 40
    assert "bgnbd" not in data and len(data["problems"]) == 1 and "repeat purchase" in data["problems"][0]
    assert data["time_unit"] == "W"


@pytest.mark.parametrize("name", ["identical", "flat_price", "no_dropout"])
def test_every_door_shows_the_problems_the_fit_carries(name, logs, capsys):
    """Whatever the fit says (a refusal, a boundary diagnosis, nothing), fit --json and the API agree."""
    model = _api_model(logs[name], calibration_end=None)
    rc, out, _ = run(capsys, *FIT, "-t", logs[name], "--json")
    data = json.loads(out)
    assert data["problems"] == model.problems_ and data["reliable"] is (not model.problems_)
    assert rc == (3 if model.problems_ else 0)


def test_save_unreliable_fit_is_kept_and_labelled(flat_price, tmp_path, capsys):
    path, model = flat_price
    out_file = tmp_path / "m.json"
    rc, out, err = run(capsys, *FIT, "-t", path, "--calibration-end", "2021-03-31", "--output", out_file)
    assert rc == 3 and not out_file.exists()
    # only the spend model has problems: the hint names its penalty, not the purchase model's
    assert "--spend-penalizer" in err and "--penalizer" not in err.replace("--spend-penalizer", "")
    rc, out, err = run(capsys, *FIT, "-t", path, "--calibration-end", "2021-03-31", "--output", out_file,
                       "--save-unreliable")
    assert rc == 0 and out_file.exists() and all(f"warning: unreliable fit: {p}" in out for p in model.problems_)
    saved = json.loads(out_file.read_text())
    assert saved["reliable"] is False and saved["problems"] == model.problems_


# ------------------------------------------------------------------------------------------ run and the API


def _spec_file(tmp_path, log, calibration_end=CAL, **output):
    split = f'calibration_end = "{calibration_end}"' if calibration_end else ""
    lines = [f'[data]\nsource = "{log}"\namount_col = "amount"\n[summary]\n{split}\n[output]']
    lines += [f'{key} = "{value}"' for key, value in output.items()]
    path = tmp_path / "exp.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_experiment_reports_and_names_the_files_keys(identical, tmp_path, capsys):
    path, model = identical
    spec = _spec_file(tmp_path, path, model="m.json", report="r.html")
    rc, out, err = run(capsys, "run", "--experiment", spec, "--no-tracking")
    assert rc == 3 and "160 rows read: 160 summarised for 40 customers" in out
    assert all(f"warning: unreliable fit: {p}" in out for p in model.problems_)
    assert "[output] save_unreliable = true keeps it anyway" in err and "[model] penalizer" in err
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "r.html").exists()
    rc, out, _ = run(capsys, "run", "--experiment", spec, "--no-tracking", "--json")
    assert rc == 3 and json.loads(out)["problems"] == model.problems_


def test_experiment_run_api_carries_the_run_so_far(identical, tmp_path):
    from clv_forecast.experiment import load_spec, run as run_pipeline

    path, model = identical
    with pytest.raises(UnreliableFitError) as caught:
        run_pipeline(load_spec(_spec_file(tmp_path, path, model="m.json")))
    exc = caught.value
    assert "save_unreliable=True keeps it anyway" in str(exc) and "penalizer (e.g. 0.001)" in str(exc)
    assert "--" not in str(exc)
    result = exc.result
    assert result.refused and result.summary.attrs["n_transactions"] == 160 and len(result.summary) == 40
    assert result.model.problems_ == model.problems_ and result.model_path is None
    assert not (tmp_path / "m.json").exists()


def test_experiment_run_api_without_a_model(logs, tmp_path):
    from clv_forecast.experiment import load_spec, run as run_pipeline

    with pytest.raises(IdentificationError) as caught:
        run_pipeline(load_spec(_spec_file(tmp_path, logs["one_time"], calibration_end=None)))
    result = caught.value.result
    assert result.model is None and result.summary.attrs["n_transactions"] == 40 and result.refused


def test_python_api_names_arguments(identical):
    _, model = identical
    assert model.problems_ and "UNRELIABLE" in model.summary()
    with pytest.raises(UnreliableFitError) as caught:
        model.check_reliable()
    text = str(caught.value)
    assert "allow_unreliable=True" in text and "penalizer (e.g. 0.001)" in text and "spend_penalizer" in text
    assert "--" not in text


# ------------------------------------------------------------------------------------------ compare and report


COMPARE = ("compare", "--amount-col", "amount", "--calibration-end", CAL, "--no-tracking")


def test_compare_refused_reports_and_names_cli_options(identical, capsys):
    path, model = identical
    rc, out, err = run(capsys, *COMPARE, "-t", path)
    assert rc == 3 and "160 rows read: 160 summarised for 40 customers" in out
    assert all(f"warning: unreliable fit: {p}" in out for p in model.problems_)
    assert err.count("\n") == 1 and "--save-unreliable keeps it anyway" in err and "--penalizer" in err
    assert "save_unreliable" not in err and "penalizer=" not in err
    rc, out, _ = run(capsys, *COMPARE, "-t", path, "--json")
    assert rc == 3 and json.loads(out)["reliable"] is False


def test_compare_save_unreliable_with_penalizer_is_reachable_and_labelled(identical, tmp_path, capsys):
    path, _ = identical
    penalised = _api_model(path, penalizer=0.001)  # the model compare must use: the option reaches the fit
    assert penalised.problems_ != _api_model(path).problems_
    rc, out, err = run(capsys, *COMPARE, "-t", path, "--save-unreliable", "--penalizer", "0.001", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["reliable"] is False and data["problems"] == penalised.problems_
    rc, out, _ = run(capsys, *COMPARE, "-t", path, "--save-unreliable", "--penalizer", "0.001",
                     "--output", tmp_path / "cmp")
    assert rc == 0 and all(f"warning: unreliable fit: {p}" in out for p in penalised.problems_)
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "Unreliable model" in html and penalised.problems_[0].split(":")[0] in html


def test_report_refused_then_kept_with_options(identical, tmp_path, capsys):
    import html as html_lib

    path, model = identical
    spec = _spec_file(tmp_path, path, report="r.html")
    rc, out, err = run(capsys, "report", "--experiment", spec)
    assert rc == 3 and not (tmp_path / "r.html").exists()
    assert "160 rows read: 160 summarised for 40 customers" in out and err.count("\n") == 1
    penalised = _api_model(path, penalizer=0.001, time_unit="D")
    rc, out, err = run(capsys, "report", "--experiment", spec, "--save-unreliable", "--penalizer", "0.001",
                       "--time-unit", "D")
    assert rc == 0, err
    assert all(f"warning: unreliable fit: {p}" in out for p in penalised.problems_)
    text = html_lib.unescape((tmp_path / "r.html").read_text())
    assert "Unreliable model: its estimates and forecasts cannot be trusted" in text
    assert all(p in text for p in penalised.problems_) and "time unit D" in text
    # options not given keep the experiment's values (the fit's default penalizer is not forced on it)
    rc, _, _ = run(capsys, "report", "--experiment", spec, "--save-unreliable")
    assert rc == 0 and all(p in html_lib.unescape((tmp_path / "r.html").read_text()) for p in model.problems_)


# ------------------------------------------------------------------------------------------ MLflow


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _only_run(uri, experiment):
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_refused_fit_logs_a_failed_run_without_a_model(identical, local_store, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    path, model = identical
    rc, out, err = run(capsys, "fit", "-t", path, "--amount-col", "amount", "--calibration-end", CAL,
                       "--tracking-uri", local_store, "--register-as", "never", "--json")
    assert rc == 3 and err.count("\n") == 1
    data = json.loads(out)
    assert data["mlflow"]["status"] == "FAILED" and data["mlflow"]["model_uri"] is None
    client, logged = _only_run(local_store, path.stem)
    assert logged.info.run_id == data["mlflow"]["run_id"] and logged.info.status == "FAILED"
    tags, metrics, params = logged.data.tags, logged.data.metrics, logged.data.params
    assert tags["reliable"] == "false" and tags["problems"] == "; ".join(model.problems_)
    assert "refused" in tags["failure"]
    fit, kind = model.purchases_.result_, model.purchases_.kind
    assert metrics[f"{kind}.r"] == pytest.approx(fit.params["r"], rel=1e-9)
    assert metrics[f"{kind}.log_likelihood"] == pytest.approx(fit.log_likelihood, rel=1e-9)
    assert metrics[f"{kind}.iterations"] == fit.n_iter
    assert (f"{kind}.r.se" in metrics) == bool(np.isfinite(fit.bse["r"]))  # not finite: skipped
    assert params["model.penalizer"] == "0.0" and params["rows.n_transactions"] == "160"
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert "problems.txt" in artifacts and "model" not in artifacts
    text = open(client.download_artifacts(logged.info.run_id, "problems.txt")).read()
    assert text.splitlines() == model.problems_
    assert client.search_registered_models() == []


def test_save_unreliable_fit_logs_a_finished_run_tagged_unreliable(flat_price, local_store, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    path, model = flat_price
    rc, out, err = run(capsys, "fit", "-t", path, "--amount-col", "amount", "--calibration-end", "2021-03-31",
                       "--tracking-uri", local_store, "--save-unreliable")
    assert rc == 0, err
    assert "tracked in MLflow: experiment" in out and "/model)" in out
    client, logged = _only_run(local_store, path.stem)
    assert logged.info.status == "FINISHED" and logged.data.tags["reliable"] == "false"
    assert logged.data.tags["problems"] == "; ".join(model.problems_)
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert "problems.txt" in artifacts


def test_compare_refused_logs_a_failed_run(identical, local_store, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    path, _ = identical
    rc, out, _ = run(capsys, "compare", "-t", path, "--amount-col", "amount", "--calibration-end", CAL,
                     "--tracking-uri", local_store)
    assert rc == 3 and "tracked in MLflow (FAILED)" in out
    _, logged = _only_run(local_store, path.stem)
    assert logged.info.status == "FAILED" and logged.data.params["command"] == "compare"


# ------------------------------------------------------------------------------------------ Spark engine


def test_refused_fit_on_the_spark_engine_reports_the_same(spark, identical, tmp_path, capsys):
    path, model = identical
    parquet = tmp_path / "identical.parquet"
    pd.read_csv(path, parse_dates=["date"]).astype({"date": "datetime64[us]"}).to_parquet(parquet, index=False)
    rc, out, err = run(capsys, *FIT, "-t", parquet, "--calibration-end", CAL, "--engine", "spark",
                       "--spark-master", "local[2]", "--output", tmp_path / "m.json", "--json")
    assert rc == 3 and err.count("\n") == 1 and "--save-unreliable" in err
    data = json.loads(out)
    assert data["reliable"] is False and len(data["problems"]) == len(model.problems_)
    assert data["accounting"]["n_transactions"] == 160 and data["n_customers"] == 40
    assert data[model.purchases_.kind]["log_likelihood"] == pytest.approx(model.purchases_.result_.log_likelihood,
                                                                          rel=1e-6)
    assert not (tmp_path / "m.json").exists()


def test_experiment_commands_name_the_files_key_unless_the_option_was_given(identical, tmp_path, capsys):
    """report (and run) now have options named like spec keys: a bad value from the file is named by its key."""
    path, _ = identical
    spec = _spec_file(tmp_path, path, report="r.txt")
    rc, _, err = run(capsys, "report", "--experiment", spec)
    assert rc == 2 and "exp.toml: [output] report" in err and "--output" not in err
    rc, _, err = run(capsys, "report", "--experiment", _spec_file(tmp_path, path), "--output", tmp_path / "r.txt")
    assert rc == 2 and err.startswith("clv-forecast: error: --output") and "[output]" not in err
    spec = _spec_file(tmp_path, path, predictions="x.xlsx")
    rc, _, err = run(capsys, "run", "--experiment", spec, "--no-tracking")
    assert rc == 2 and "exp.toml: [output] predictions" in err and "--predictions" not in err
