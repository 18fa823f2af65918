"""Issue 18: a BG/NBD fit whose maximum is on a boundary gives the nested model there, fitted with standard
errors and honestly labelled, at every door (exit 0, one clear line, ``--json``'s ``boundary`` object, the
model file, the report, MLflow); ``on_boundary = "refuse"`` keeps today's exit 3, and data that identify nothing
still exit 3.

The transaction logs are simulated with the package's own :func:`clv_forecast.simulate.simulate`:
- ``no_dropout``: BG/NBD with ``a = 1e-6, b = 1e3`` (a dropout probability of 1e-9: nobody drops out), whose
  fit runs to ``a -> 0``, the NBD;
- ``constant_dropout``: ``a = 1.5e4, b = 8.5e4`` (every customer drops out with probability 0.15 after a
  purchase, no heterogeneity), whose fit runs to ``a, b -> infinity``, the NBD with constant dropout.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from clv_forecast import ClvModel, summarize
from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError

CAL = "2021-03-31"
FIT = ("fit", "--amount-col", "amount", "--calibration-end", CAL, "--no-tracking")


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    from clv_forecast.simulate import simulate

    folder = tmp_path_factory.mktemp("boundary_logs")
    paths = {}
    for name, a, b, seed in (("no_dropout", 1e-6, 1e3, 1), ("constant_dropout", 1.5e4, 8.5e4, 3)):
        log = simulate(2000, r=0.8, alpha=5.0, a=a, b=b, p=6, q=4, v=15, seed=seed, end="2021-06-30")
        paths[name] = folder / f"{name}.csv"
        log.rename(columns={"timestamp": "date"}).to_csv(paths[name], index=False)
    rng = np.random.default_rng(0)  # 40 customers buying on the same four days: nothing to identify
    days = ("2021-01-04", "2021-02-01", "2021-03-01", "2021-05-03")
    paths["identical"] = folder / "identical.csv"
    pd.DataFrame([(c, d, round(float(rng.gamma(4, 5)), 2)) for c in range(40) for d in days],
                 columns=["customer_id", "date", "amount"]).to_csv(paths["identical"], index=False)
    paths["one_time"] = folder / "one_time.csv"
    pd.DataFrame({"customer_id": range(40), "date": ["2021-01-01"] * 40, "amount": [10.0] * 40}).to_csv(
        paths["one_time"], index=False)
    return paths


def _rfm(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return summarize(str(path), customer_col="customer_id", date_col="date", amount_col="amount",
                         time_unit="W", calibration_end=CAL)


@pytest.fixture(scope="module")
def fitted(logs):
    """The API's fits (the reference for every door): (rfm, model) per log."""
    out = {}
    for name in ("no_dropout", "constant_dropout"):
        rfm = _rfm(logs[name])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[name] = rfm, ClvModel().fit(rfm)
    return out


EXPECTED = {"no_dropout": ("nbd", "NBD", "a -> 0: the data show no dropout"),
            "constant_dropout": ("constant_dropout", "NBD with constant dropout",
                                 "a, b -> infinity: one dropout probability for every customer")}


# ------------------------------------------------------------------------------------------------ the API


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_composite_fits_the_nested_model_with_standard_errors(name, fitted):
    rfm, model = fitted[name]
    kind, display, boundary = EXPECTED[name]
    assert model.purchases_.kind == kind and model.purchases_.name == display
    assert model.problems_ == [] and model.check_reliable() is model
    assert np.all(np.isfinite(model.purchases_.result_.bse)) and model.purchases_.result_.converged
    assert model.boundary_["kind"] == "bgnbd" and model.boundary_["name"] == "BG/NBD"
    assert model.boundary_["boundary"] == boundary and model.boundary_["reason"].startswith(boundary.split(":")[0])
    params = ", ".join(f"{k} = {v:.4g}" for k, v in model.purchases_.params_.items())
    assert model.boundary_line() == f"BG/NBD maximum on a boundary ({boundary}); fitted the {display} instead: {params}"
    # the nested model is what BG/NBD's own fit found on the same statistics (nothing fitted twice)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        requested = ClvModel(on_boundary="refuse").fit(rfm).purchases_
    assert requested.kind == "bgnbd" and any("maximum on a boundary" in p for p in requested.problems_)
    np.testing.assert_allclose(model.purchases_.params_, requested.boundary_result_.params, rtol=1e-12)
    assert model.purchases_.log_likelihood_ >= requested.log_likelihood_ - 1e-6 * len(rfm)
    clv = model.clv(rfm, interval=0.9)
    assert np.all(np.isfinite(clv[["clv", "clv_lower", "clv_upper"]].to_numpy()))


def test_the_setting_is_checked_and_nested(fitted):
    rfm, _ = fitted["no_dropout"]
    assert ClvModel().get_params()["on_boundary"] == "nested"
    with pytest.raises(ClvInputError, match="on_boundary='sometimes': must be one of nested, refuse"):
        ClvModel(on_boundary="sometimes").fit(rfm)
    assert ClvModel().set_params(on_boundary="refuse").on_boundary == "refuse"


def test_the_label_round_trips_through_the_model_file(fitted, tmp_path):
    rfm, model = fitted["constant_dropout"]
    path = model.save(tmp_path / "m.json")
    doc = json.loads(path.read_text())
    assert doc["settings"] == {"purchases": "bgnbd", "spend": "gamma_gamma", "on_boundary": "nested"}
    assert doc["purchases"]["kind"] == "constant_dropout" and doc["purchases"]["model"] == "NBD with constant dropout"
    requested = doc["purchases"]["requested"]
    assert requested["kind"] == "bgnbd" and requested["boundary"] == EXPECTED["constant_dropout"][2]
    assert requested["settings"] == {"penalizer": 0.0, "initial_params": None, "maxiter": 200}
    loaded = ClvModel.load(path)
    assert loaded.boundary_ == model.boundary_ and loaded.boundary_line() == model.boundary_line()
    assert loaded.purchases == "bgnbd" and loaded.on_boundary == "nested"  # a refit asks for BG/NBD again
    pd.testing.assert_frame_equal(loaded.clv(rfm), model.clv(rfm))
    # a label that names no boundary of the requested model is refused on load, one line
    doc["purchases"]["kind"], doc["settings"]["purchases"] = "constant_dropout", "bgnbd"
    doc["purchases"]["requested"]["kind"] = "nbd"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ClvInputError, match=r"purchases.kind = \"constant_dropout\": is not a boundary of NBD"):
        ClvModel.load(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------------ the CLI


def test_fit_json_gives_the_boundary_object_and_a_usable_model_file(logs, fitted, tmp_path, capsys):
    out_file = tmp_path / "m.json"
    rc, out, err = run(capsys, *FIT, "-t", logs["no_dropout"], "--output", out_file, "--json")
    assert rc == 0, err
    data = json.loads(out)
    _, model = fitted["no_dropout"]
    assert data["reliable"] is True and data["problems"] == []
    assert data["boundary"] == {"requested": "bgnbd", "requested_name": "BG/NBD",
                                "boundary": "a -> 0: the data show no dropout", "reason": model.boundary_["reason"],
                                "fitted": "nbd", "fitted_name": "NBD", "line": model.boundary_line()}
    assert "bgnbd" not in data and data["nbd"]["r"] == pytest.approx(model.purchases_.params_["r"], rel=1e-9)
    assert data["nbd"]["bse"]["r"] > 0 and data["nbd"]["problems"] == []
    saved = json.loads(out_file.read_text())
    assert saved["purchases"]["kind"] == "nbd" and saved["purchases"]["requested"]["kind"] == "bgnbd"
    # the saved model scores (the label is carried, the nested model's kernels predict)
    rfm_file = tmp_path / "rfm.csv"
    _rfm(logs["no_dropout"]).reset_index().to_csv(rfm_file, index=False)
    rc, out, err = run(capsys, "score", "--model", out_file, "--input", rfm_file, "--output", tmp_path / "s.csv",
                       "--no-tracking")
    assert rc == 0, err
    scores = pd.read_csv(tmp_path / "s.csv")
    assert len(scores) == 2000 and np.all(np.isfinite(scores["clv"])) and np.all(scores["p_alive"] == 1.0)


def test_fit_prints_one_clear_line(logs, fitted, capsys):
    rc, out, err = run(capsys, *FIT, "-t", logs["constant_dropout"])
    assert rc == 0, err
    _, model = fitted["constant_dropout"]
    line = model.boundary_line()
    assert line.startswith("BG/NBD maximum on a boundary (a, b -> infinity: one dropout probability for every "
                           "customer); fitted the NBD with constant dropout instead: r = ")
    assert out.count(line) == 1 and "unreliable" not in out
    assert "NBD with constant dropout" in out.split(line)[1]  # its parameters follow, under its own name
    assert "information matrix is singular" not in out + err  # BG/NBD's runaway warnings are not the model's


def test_compare_runs_the_backtest_with_the_nested_model(logs, fitted, capsys):
    rc, out, err = run(capsys, "compare", "-t", logs["no_dropout"], "--amount-col", "amount", "--calibration-end",
                       CAL, "--no-tracking")
    assert rc == 0, err
    assert fitted["no_dropout"][1].boundary_line() in out and "predictive" in out
    rc, out, err = run(capsys, "compare", "-t", logs["no_dropout"], "--amount-col", "amount", "--calibration-end",
                       CAL, "--no-tracking", "--json")
    data = json.loads(out)
    assert rc == 0 and data["reliable"] is True and data["boundary"]["fitted"] == "nbd"
    assert data["customers"] == 2000 and np.isfinite(data["methods"]["predictive"]["mae"])


def test_report_shows_the_note_next_to_the_parameters(logs, fitted, tmp_path, capsys):
    spec = tmp_path / "exp.toml"
    spec.write_text(f'[data]\nsource = "{logs["no_dropout"]}"\namount_col = "amount"\n'
                    f'[summary]\ncalibration_end = "{CAL}"\n')
    rc, out, err = run(capsys, "report", "--experiment", spec, "--output", tmp_path / "r.html")
    assert rc == 0, err
    line = fitted["no_dropout"][1].boundary_line()
    assert line in out
    html = (tmp_path / "r.html").read_text()
    section = html.split("<h2>Model: parameters and fit</h2>")[1].split("</section>")[0]
    assert section.startswith('<p class="note">' + line.replace("->", "-&gt;"))
    assert "Unreliable" not in html


def test_mlflow_run_carries_the_label(logs, fitted, local_store, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    rc, out, err = run(capsys, "fit", "-t", logs["no_dropout"], "--amount-col", "amount", "--calibration-end", CAL,
                       "--tracking-uri", local_store, "--register-as", "never")
    assert rc == 0, err
    client = MlflowClient(tracking_uri=local_store, registry_uri=local_store)
    runs = client.search_runs([client.get_experiment_by_name("no_dropout").experiment_id])
    assert len(runs) == 1
    tags, params, metrics = runs[0].data.tags, runs[0].data.params, runs[0].data.metrics
    assert runs[0].info.status == "FINISHED" and tags["reliable"] == "true"
    assert tags["boundary"] == fitted["no_dropout"][1].boundary_line() and tags["boundary.requested"] == "bgnbd"
    assert tags["model.purchases"] == "nbd" and params["estimator.boundary"] == "bgnbd -> nbd"
    assert params["estimator.on_boundary"] == "nested" and "nbd.r.se" in metrics


def test_refuse_keeps_exit_3_and_names_the_option(logs, tmp_path, capsys):
    out_file = tmp_path / "m.json"
    rc, out, err = run(capsys, *FIT, "-t", logs["no_dropout"], "--on-boundary", "refuse", "--output", out_file)
    assert rc == 3 and not out_file.exists() and err.count("\n") == 1
    assert "BG/NBD maximum on a boundary: a -> 0: the data show no dropout" in err
    assert "--on-boundary nested gives the simpler model the data support" in err
    assert "fitted the NBD instead" not in out
    spec = tmp_path / "exp.toml"
    spec.write_text(f'[data]\nsource = "{logs["no_dropout"]}"\namount_col = "amount"\n'
                    f'[summary]\ncalibration_end = "{CAL}"\n[model]\non_boundary = "refuse"\n')
    rc, out, err = run(capsys, "run", "--experiment", spec, "--no-tracking", "--no-save")
    assert rc == 3 and "[model] on_boundary = 'nested'" in err
    spec.write_text(spec.read_text().replace('"refuse"', '"never"'))
    rc, out, err = run(capsys, "run", "--experiment", spec, "--no-tracking", "--no-save")
    assert rc == 2 and "[model] on_boundary = 'never': must be one of nested, refuse" in err and err.count("\n") == 1


def test_data_that_identify_nothing_still_exit_3(logs, capsys):
    rc, out, err = run(capsys, "fit", "--amount-col", "amount", "--no-tracking", "-t", logs["one_time"], "--json")
    assert rc == 3 and "no customer has a repeat purchase" in err and json.loads(out)["boundary"] is None
    # identical customers: BG/NBD runs to a boundary, and the nested model there has no heterogeneity to fit
    # either: it is given, labelled, with problems of its own (exit 3)
    rc, out, err = run(capsys, *FIT, "-t", logs["identical"], "--json")
    data = json.loads(out)
    # which boundary the optimiser runs to on data without heterogeneity depends on rounding (numpy/scipy
    # versions): r -> infinity (no heterogeneity in the rate) with BG/NBD kept, or a -> 0 with the nested model
    # given; either way the fit is unreliable, exit 3, with its problems named
    assert rc == 3 and data["reliable"] is False and data["problems"]
    assert data["boundary"] is None or data["boundary"]["fitted"] in ("nbd", "constant_dropout")
    name = "BG/NBD" if data["boundary"] is None else data["boundary"]["fitted_name"]
    assert data["problems"] and all(p.startswith(name) or p.startswith("Gamma-Gamma") for p in data["problems"])
    assert any(p.startswith(f"{name} parameters") for p in data["problems"]) and "--penalizer" in err


def test_spark_fit_gives_the_same_label(spark, logs, fitted, tmp_path, capsys):
    parquet = tmp_path / "no_dropout.parquet"
    pd.read_csv(logs["no_dropout"], parse_dates=["date"]).astype({"date": "datetime64[us]"}).to_parquet(
        parquet, index=False)
    rc, out, err = run(capsys, *FIT, "-t", parquet, "--engine", "spark", "--spark-master", "local[2]", "--json")
    assert rc == 0, err
    data = json.loads(out)
    model = fitted["no_dropout"][1]
    assert data["boundary"]["fitted"] == "nbd" and data["boundary"]["reason"] == model.boundary_["reason"]
    assert data["nbd"]["r"] == pytest.approx(model.purchases_.params_["r"], rel=1e-9)
