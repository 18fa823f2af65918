"""Issue 19: ``purchases = "auto"`` fits every purchase model on the same statistics, ranks them (holdout
RMSE with a holdout, BIC without) and says why the winner won, at every door; the backtest is a tournament
of every purchase model beside the historical formulas, with the Gini of the gains chart.

Every number of the ranking is checked against an independent path: each model fitted on its own on the
per-customer table, its holdout predictions customer by customer, BIC from its log-likelihood.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from clv_forecast import ClvModel, estimators, summarize
from clv_forecast.cli import main
from clv_forecast.compare import backtest, tournament
from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample
from clv_forecast.errors import ClvInputError


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def split():
    return summarize(load_cdnow_sample(), amount_col="amount", calibration_end=CDNOW_CALIBRATION_END)


@pytest.fixture(scope="module")
def auto(split):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ClvModel(purchases="auto").fit(split)


def _alone(kind, rfm):
    """The model fitted on its own (the independent path)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ClvModel(purchases=kind).fit(rfm)


def test_auto_ranks_by_holdout_rmse_computed_customer_by_customer(auto, split):
    sel = auto.selection_
    assert sel.criterion == "holdout_rmse" and set(sel.table.index) == set(estimators.available("purchases"))
    duration = float(split["duration_holdout"].iloc[0])
    rmse = {}
    applicable = [k for k in sel.table.index if not str(sel.table.loc[k, "note"]).startswith("not applicable")]
    for kind in sel.table.index.difference(applicable):  # a discrete-time model on continuous times: said why
        with pytest.raises(ClvInputError):
            _alone(kind, split)
    for kind in applicable:
        alone = _alone(kind, split)
        row = sel.table.loc[kind]
        assert row["log_likelihood"] == pytest.approx(alone.purchases_.log_likelihood_, rel=1e-9)
        predicted = alone.purchases_.conditional_expected_purchases(duration, split)
        err = predicted - split["frequency_holdout"].to_numpy()
        rmse[kind] = math.sqrt(np.mean(err ** 2))
        assert row["holdout_rmse"] == pytest.approx(rmse[kind], rel=1e-9)
        assert row["holdout_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-9)
        assert row["holdout_total_error_pct"] == pytest.approx(
            100 * (predicted.sum() - split["frequency_holdout"].sum()) / split["frequency_holdout"].sum(), rel=1e-9)
    reliable = [k for k in sel.table.index if sel.table.loc[k, "reliable"]]
    best = min(reliable, key=rmse.get)
    assert sel.winner == best == sel.table.index[0] and sel.table.loc[best, "rank"] == 1
    assert auto.purchases_.kind == best and auto.purchases_.log_likelihood_ == pytest.approx(
        sel.table.loc[best, "log_likelihood"])
    second = sorted(reliable, key=rmse.get)[1]
    assert f"lowest holdout RMSE per customer ({rmse[best]:.4f}" in sel.reason
    assert sel.table.loc[second, "fitted"] in sel.reason and "\n" not in sel.reason


def test_without_a_holdout_the_rank_is_by_bic(split):
    rfm = summarize(load_cdnow_sample(), amount_col="amount")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel(purchases="auto").fit(rfm)
    sel = model.selection_
    assert sel.criterion == "bic" and sel.table["holdout_rmse"].isna().all()
    bic = {}
    for kind in [k for k in sel.table.index if not str(sel.table.loc[k, "note"]).startswith("not applicable")]:
        alone = _alone(kind, rfm).purchases_
        bic[kind] = len(alone.param_names) * math.log(len(rfm)) - 2 * alone.log_likelihood_
        assert sel.table.loc[kind, "bic"] == pytest.approx(bic[kind], rel=1e-9)
    assert sel.winner == min(bic, key=bic.get) and "lowest BIC" in sel.reason and "Kass & Raftery" in sel.reason


def test_candidates_and_criterion_are_settings(split):
    model = ClvModel(purchases="auto").set_params(purchases__candidates=["nbd", "bgnbd"],
                                                  purchases__criterion="bic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(split)
    assert list(model.selection_.table.index) == ["bgnbd", "nbd"] and model.selection_.criterion == "bic"
    assert model.get_params()["purchases__candidates"] == ["nbd", "bgnbd"]
    rfm = summarize(load_cdnow_sample(), amount_col="amount")
    with pytest.raises(ClvInputError, match="needs a holdout") as info:
        ClvModel(purchases="auto").set_params(purchases__criterion="holdout_rmse").fit(rfm)
    assert "\n" not in str(info.value)
    with pytest.raises(ClvInputError, match="unknown purchase model"):
        ClvModel(purchases="auto").set_params(purchases__candidates=["bgnbd", "nope"]).fit(split)


def test_a_boundary_fit_is_listed_once_and_the_nested_model_wins(tmp_path):
    from clv_forecast.simulate import simulate

    log = simulate(2000, r=0.8, alpha=5.0, a=1e-6, b=1e3, p=6, q=4, v=15, seed=1, end="2021-06-30")
    rfm = summarize(log, date_col="timestamp", amount_col="amount", calibration_end="2021-03-31")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel(purchases="auto").fit(rfm)
    t = model.selection_.table
    assert model.selection_.winner == "nbd" and model.purchases_.kind == "nbd" and model.boundary_ is None
    assert t.loc["bgnbd", "fitted"] == "NBD" and math.isnan(t.loc["bgnbd", "rank"])
    assert "the same fit as the NBD row" in t.loc["bgnbd", "note"]


def test_the_model_file_keeps_the_choice(auto, tmp_path):
    path = auto.save(tmp_path / "auto.json")
    data = json.loads(path.read_text())
    assert data["settings"]["purchases"] == "auto" and data["selection"]["winner"] == auto.selection_.winner
    loaded = ClvModel.load(path)
    assert loaded.purchases == "auto" and loaded.selection_.winner == auto.selection_.winner
    assert loaded.selection_.reason == auto.selection_.reason
    assert list(loaded.selection_.table.index) == list(auto.selection_.table.index)
    data["selection"]["winner"] = "nbd" if auto.selection_.winner != "nbd" else "bgnbd"
    path.write_text(json.dumps(data))
    with pytest.raises(ClvInputError, match="selection.winner") as info:
        ClvModel.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_cli_fit_auto_prints_the_ranking_and_json_has_it(capsys, cdnow_csv, tmp_path):
    base = ("fit", "-t", cdnow_csv, "--amount-col", "amount", "--calibration-end", CDNOW_CALIBRATION_END,
            "--purchase-model", "auto", "--no-tracking")
    rc, out, err = run(capsys, *base, "--output", tmp_path / "m.json")
    assert rc == 0, err
    assert "purchase models ranked by holdout RMSE per customer" in out and "chosen: the " in out
    rc, out, err = run(capsys, *base, "--json")
    data = json.loads(out)
    sel = data["selection"]
    assert rc == 0 and sel["criterion"] == "holdout_rmse" and sel["ranking"][0]["kind"] == sel["winner"]
    assert sel["ranking"][0]["rank"] == 1 and {r["kind"] for r in sel["ranking"]} == set(estimators.available("purchases"))
    assert sel["winner"] in data  # the fitted model's block is keyed by its kind
    rc, out, err = run(capsys, "fit", "-t", cdnow_csv, "--amount-col", "amount", "--no-tracking", "--json")
    assert json.loads(out)["selection"] is None


def test_spec_auto_with_settings(tmp_path, cdnow_csv):
    from clv_forecast.experiment import load_spec, run as run_pipeline

    spec_path = tmp_path / "auto.toml"
    spec_path.write_text(f'[data]\nsource = "{cdnow_csv}"\namount_col = "amount"\n'
                         f'[summary]\ncalibration_end = "{CDNOW_CALIBRATION_END}"\n'
                         '[model.purchases]\nkind = "auto"\ncandidates = ["bgnbd", "nbd"]\ncriterion = "bic"\n')
    result = run_pipeline(load_spec(spec_path), save=False)
    assert list(result.model.selection_.table.index) == ["bgnbd", "nbd"]
    assert result.model.selection_.criterion == "bic" and result.model.purchases_.kind == "bgnbd"
    for body, fragment in (('candidates = ["bgnbd", "nope"]\n', "candidates = ['bgnbd', 'nope']: must name"),
                           ('criterion = "best"\n', "criterion = 'best': must be auto or one of"),
                           ("tries = 3\n", "tries = 3: unknown setting of the automatic choice")):
        spec_path.write_text('[data]\nsource = "x.csv"\n[model.purchases]\nkind = "auto"\n' + body)
        with pytest.raises(ClvInputError) as info:
            load_spec(spec_path)
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_backtest_is_a_tournament(split):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel().fit(split)
        others = tournament(model, split)
        bt = backtest(model, split, others=others)
    kinds = {k.split(":", 1)[1] for k in others}
    fitted = {k for k in estimators.available("purchases") if not estimators.get(k, "purchases").whole_periods}
    assert kinds == fitted - {"bgnbd"}  # every other continuous-time model fits CDNOW cleanly
    assert set(bt.metrics.index) >= {"predictive", *others, "simple", "run_rate", "ltv_profit"}
    for label in others:  # each row equals that model's own backtest as the run's model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alone = backtest(ClvModel(purchases=label.split(":", 1)[1]).fit(split), split)
        pd.testing.assert_series_equal(bt.metrics.loc[label], alone.metrics.loc["predictive"], check_names=False,
                                       rtol=1e-7)
        assert f"{label}_mean" in bt.purchases.columns
    assert bt.metrics["gini"].between(-1, 1).all() and bt.metrics.loc["average", "gini"] == pytest.approx(0)


@pytest.mark.slow
def test_compare_report_show_the_tournament_and_the_choice(capsys, cdnow_csv, tmp_path):
    rc, out, err = run(capsys, "compare", "-t", cdnow_csv, "--amount-col", "amount", "--calibration-end",
                       CDNOW_CALIBRATION_END, "--purchase-model", "auto", "--no-tracking", "--json")
    data = json.loads(out)
    assert rc == 0 and data["selection"]["winner"]
    assert any(m.startswith("predictive:") for m in data["methods"]) and all("gini" in v for v in data["methods"].values())
    spec = tmp_path / "exp.toml"
    spec.write_text(f'[data]\nsource = "{cdnow_csv}"\namount_col = "amount"\n'
                    f'[summary]\ncalibration_end = "{CDNOW_CALIBRATION_END}"\n[model]\npurchases = "auto"\n')
    rc, out, err = run(capsys, "report", "--experiment", spec, "--output", tmp_path / "r.html")
    assert rc == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "Model selection" in html and "Chosen: the " in html and "holdout RMSE" in html
    assert "predictive: NBD" in html and "gini" in html


def test_mlflow_has_one_child_run_per_candidate(capsys, cdnow_csv, local_store, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("CLV_FORECAST_TRACKING", raising=False)
    rc, out, err = run(capsys, "fit", "-t", cdnow_csv, "--amount-col", "amount", "--calibration-end",
                       CDNOW_CALIBRATION_END, "--purchase-model", "auto", "--tracking-uri", local_store, "--json")
    assert rc == 0, err
    data = json.loads(out)
    client = MlflowClient(tracking_uri=local_store)
    parent = client.get_run(data["mlflow"]["run_id"])
    assert parent.data.tags["selection.winner"] == data["selection"]["winner"]
    assert parent.data.tags["selection.reason"] == data["selection"]["reason"]
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_kind = {c.data.params["purchases.kind"]: c for c in children}
    assert set(by_kind) == set(estimators.available("purchases"))
    for row in data["selection"]["ranking"]:
        child = by_kind[row["kind"]]
        if row["bic"] is None:  # a model the data do not fit (whole periods on continuous times): no numbers
            assert "bic" not in child.data.metrics and child.data.tags["note"].startswith("not applicable")
        else:
            assert child.data.metrics["bic"] == pytest.approx(row["bic"])
        assert child.data.tags["selection.winner"] == str(row["kind"] == data["selection"]["winner"]).lower()
    assert "model_selection.csv" in {f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(parent.info.run_id, "tables")}


def test_information_criteria_compare_only_likelihoods_of_the_same_data():
    """BG/BB's likelihood is of whole periods, BG/NBD's a density in continuous time: by BIC only one family
    is ranked (the other listed, with why); on a holdout every model competes."""
    weeks = summarize(load_cdnow_sample(), amount_col="amount", merge="W")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel(purchases="auto", spend=None).fit(weeks)
        split = summarize(load_cdnow_sample(), amount_col="amount", merge="W", calibration_end=CDNOW_CALIBRATION_END)
        on_holdout = ClvModel(purchases="auto", spend=None).fit(split)
    t = model.selection_.table
    discrete = [k for k in t.index if estimators.get(k, "purchases").whole_periods]
    assert discrete and all(math.isnan(t.loc[k, "rank"]) and "does not compare" in t.loc[k, "note"] for k in discrete)
    assert all(t.loc[k, "rank"] >= 1 for k in t.index if k not in discrete)
    assert all(on_holdout.selection_.table.loc[k, "rank"] >= 1 for k in discrete)


def test_the_plots_draw_every_model_of_the_tournament(split):
    from clv_forecast import plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel().fit(split)
    others = list(tournament(model, split).values())
    log = load_cdnow_sample()
    for draw in (lambda m, o: plots.calibration_vs_holdout(m, split, others=o),
                 lambda m, o: plots.tracking_plot(m, log, calibration_end=CDNOW_CALIBRATION_END, others=o)):
        lines = {line.get_gid(): line for line in draw(model, others).axes[0].lines}
        for other in others:  # each model's line is the one it draws as the run's model
            alone = {line.get_gid(): line for line in draw(other, ()).axes[0].lines}["model"]
            mine = lines[f"model:{other.purchases_.kind}"]
            np.testing.assert_allclose(np.asarray(mine.get_ydata(), float), np.asarray(alone.get_ydata(), float))
            assert other.purchases_.name in mine.get_label()
