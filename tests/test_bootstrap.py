"""The bootstrap over customers (ClvModel.bootstrap, interval_method="bootstrap"): reproducible with a seed, its
spread close to the fit's asymptotic standard errors on CDNOW, the refits' accounting, the intervals from the refitted
vectors, the model file round trip, the one-line errors and the CLI path."""

import json

import numpy as np
import pandas as pd
import pytest

from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError
from clv_forecast.model import ClvModel

ARGS = dict(horizon="12M", discount_rate="10%/Y", interval=0.9)


@pytest.fixture(scope="module")
def model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm).bootstrap(cdnow_rfm, n_boot=200, seed=3)


def test_the_same_seed_gives_the_same_vectors_and_another_seed_others(model, cdnow_rfm):
    """The same seed gives the same refits, the first 50 of 200 as 50 alone (the k-th refit does not depend on how
    many are asked for); another seed others."""
    again = ClvModel().fit(cdnow_rfm).bootstrap(cdnow_rfm, n_boot=50, seed=3)
    for role in ("purchases", "spend"):
        np.testing.assert_array_equal(again.bootstrap_[role], model.bootstrap_[role][:50])
    other = ClvModel().fit(cdnow_rfm).bootstrap(cdnow_rfm, n_boot=20, seed=4)
    assert not np.allclose(other.bootstrap_["purchases"][:20], model.bootstrap_["purchases"][:20])


def test_the_spread_of_the_refits_is_close_to_the_asymptotic_standard_errors(model):
    """On CDNOW (2,357 customers) the fit is regular: the standard deviation of the 200 refits' log-parameters is
    within 30 % of the asymptotic log-scale standard error of every parameter of both models (the Monte-Carlo error
    of a standard deviation from 200 values is about 5 %), and their mean within 0.5 asymptotic standard errors of
    the estimate (no refit ran away)."""
    boot = model.bootstrap_
    assert boot.n_used == boot.n_boot == 200
    assert boot.failed == {"purchases": 0, "spend": 0} and boot.on_boundary == {"purchases": 0, "spend": 0}
    for role, sub in model.parts():
        phi = sub.params_.to_numpy()
        log_se = sub.result_.bse.to_numpy() / phi
        logs = np.log(boot[role])
        ratio = logs.std(axis=0, ddof=1) / log_se
        assert np.all((ratio > 0.7) & (ratio < 1.3)), (role, ratio)
        shift = (logs.mean(axis=0) - np.log(phi)) / log_se
        assert np.all(np.abs(shift) < 0.5), (role, shift)


def test_the_intervals_are_the_order_statistics_of_the_forecasts_under_the_refitted_vectors(cdnow_rfm):
    """With 9 vectors an 80 % interval is [min, max] of the 9 forecasts (order statistics 'lower'/'higher'): the
    same numbers as the forecasts of models built from each vector by hand."""
    fitted = ClvModel().fit(cdnow_rfm).bootstrap(cdnow_rfm, n_boot=9, seed=1)
    rows = cdnow_rfm.iloc[:50]
    out = fitted.clv(rows, horizon="12M", discount_rate="10%/Y", interval=0.8, interval_method="bootstrap")
    each = [ClvModel.from_params(purchases=p, spend=s, time_unit="W").clv(rows, horizon="12M",
                                                                          discount_rate="10%/Y")
            for p, s in zip(fitted.bootstrap_["purchases"], fitted.bootstrap_["spend"])]
    for q in ("expected_purchases", "p_alive", "expected_spend", "clv"):
        values = np.column_stack([e[q].to_numpy() for e in each])
        np.testing.assert_allclose(out[f"{q}_lower"], values.min(axis=1), rtol=1e-12)
        np.testing.assert_allclose(out[f"{q}_upper"], values.max(axis=1), rtol=1e-12)
    band = out.attrs["portfolio"]
    assert band["method"] == "bootstrap"
    totals = [e["clv"].sum() for e in each]
    assert band["clv"]["lower"] == pytest.approx(min(min(totals), band["clv"]["total"]), rel=1e-12)
    assert band["clv"]["upper"] == pytest.approx(max(max(totals), band["clv"]["total"]), rel=1e-12)


def test_bootstrap_intervals_hold_the_estimate_and_are_near_the_delta_method_on_cdnow(model, cdnow_rfm):
    boot = model.clv(cdnow_rfm, **ARGS, interval_method="bootstrap")
    delta = model.clv(cdnow_rfm, **ARGS)
    repeat = cdnow_rfm["frequency"].to_numpy() > 0  # (P(alive) = 1 without a repeat purchase: no width)
    for q in ("expected_purchases", "p_alive", "expected_spend", "clv"):
        assert (boot[f"{q}_lower"] <= boot[q] * (1 + 1e-12)).all() and (boot[q] <= boot[f"{q}_upper"] * (1 + 1e-12)).all()
        width_b = np.median(((boot[f"{q}_upper"] - boot[f"{q}_lower"]) / boot[q])[repeat])
        width_d = np.median(((delta[f"{q}_upper"] - delta[f"{q}_lower"]) / delta[q])[repeat])
        assert 0.7 < width_b / width_d < 1.5, (q, width_b, width_d)


def test_a_refit_that_fails_or_runs_off_is_counted_not_dropped_silently():
    """Twelve customers, two of them with repeat purchases: many resamples hold no repeat buyer (BG/NBD then has
    nothing to identify) or too few to hold the estimate: every resample is accounted for as used or failed, and the
    problems say why."""
    rfm = pd.DataFrame({"frequency": [0.0] * 10 + [2.0, 5.0], "recency": [0.0] * 10 + [10.0, 30.0],
                        "T": [40.0] * 10 + [38.0, 39.0], "monetary_value": [0.0] * 10 + [20.0, 30.0]})
    rfm.attrs["time_unit"] = "W"
    model = ClvModel.from_params(purchases={"r": 0.3, "alpha": 5.0, "a": 0.8, "b": 2.5}, time_unit="W")
    model.bootstrap(rfm, n_boot=40, seed=0)
    boot = model.bootstrap_
    assert boot["spend"] is None
    assert boot.n_used + boot.failed["purchases"] == 40
    assert boot.failed["purchases"] + boot.on_boundary["purchases"] > 0
    assert boot.problems["purchases"] and all(isinstance(p, str) and p for p in boot.problems["purchases"])
    assert "of 40 resamples" in boot.line()
    assert np.all(np.isfinite(boot["purchases"])) and np.all(boot["purchases"] > 0)


def test_the_vectors_survive_the_model_file_and_an_older_file_still_loads(model, cdnow_rfm, tmp_path):
    path = model.save(tmp_path / "m.json")
    loaded = ClvModel.load(path)
    for role in ("purchases", "spend"):
        np.testing.assert_array_equal(loaded.bootstrap_[role], model.bootstrap_[role])
    assert (loaded.bootstrap_.n_boot, loaded.bootstrap_.seed) == (200, 3)
    a = model.clv(cdnow_rfm.iloc[:100], **ARGS, interval_method="bootstrap")
    b = loaded.clv(cdnow_rfm.iloc[:100], **ARGS, interval_method="bootstrap")
    pd.testing.assert_frame_equal(a, b)
    data = json.loads(path.read_text())
    del data["bootstrap"]
    older = ClvModel.from_dict(data)
    assert older.bootstrap_ is None
    assert older.clv(cdnow_rfm.iloc[:10], **ARGS)["clv_upper"].notna().all()


def test_a_new_fit_drops_the_vectors_of_the_old_one(cdnow_rfm):
    model = ClvModel().fit(cdnow_rfm).bootstrap(cdnow_rfm, n_boot=5, seed=0)
    assert model.bootstrap_ is not None
    model.fit(cdnow_rfm.iloc[:1500])
    assert model.bootstrap_ is None
    with pytest.raises(ClvInputError, match=r"call model.bootstrap\(rfm\) first"):
        model.clv(cdnow_rfm, **ARGS, interval_method="bootstrap")


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["bootstrap"]["purchases"].update(params=[[1.0, 2.0]]), "bootstrap.purchases.params"),
    (lambda d: d["bootstrap"]["purchases"].update(params=[[0.2, -1.0, 0.5, 2.0]]), "bootstrap.purchases.params"),
    (lambda d: d["bootstrap"].update(n_boot="many"), "bootstrap.n_boot"),
    (lambda d: d["bootstrap"].update(spend=None), "bootstrap.spend"),
])
def test_a_bad_bootstrap_field_in_a_model_file_is_one_line(model, change, fragment):
    data = json.loads(model.to_json())
    change(data)
    with pytest.raises(ClvInputError) as info:
        ClvModel.from_dict(data, source="m.json")
    text = str(info.value)
    assert "\n" not in text and "m.json" in text and fragment in text


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(n_boot=1), "n_boot"), (dict(n_boot=2.5), "n_boot"), (dict(n_boot=True), "n_boot"),
    (dict(n_boot=10, seed="x"), "seed"),
])
def test_bad_arguments_are_one_line(cdnow_rfm, kwargs, fragment):
    model = ClvModel().fit(cdnow_rfm)
    with pytest.raises(ClvInputError) as info:
        model.bootstrap(cdnow_rfm, **kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_compressed_statistics_are_refused_in_one_line(cdnow_rfm):
    from clv_forecast.rfm import compress

    model = ClvModel(spend=None).fit(cdnow_rfm)
    with pytest.raises(ClvInputError, match="one row per customer"):
        model.bootstrap(compress(cdnow_rfm), n_boot=5)


def test_the_method_is_accepted_by_the_experiment_file():
    from clv_forecast.experiment import _CHOICES, SCHEMA
    from clv_forecast.uncertainty import INTERVAL_METHODS

    assert "bootstrap" in INTERVAL_METHODS
    assert _CHOICES[("value", "interval_method")] == INTERVAL_METHODS
    assert "bootstrap" in SCHEMA["model"]


def test_cli_fit_with_bootstrap_then_score_with_the_bootstrap_intervals(cdnow_csv, tmp_path, capsys):
    model_path = tmp_path / "m.json"
    rc = main(["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--calibration-end",
               "1997-09-30", "--bootstrap", "30", "--output", str(model_path), "--no-tracking"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "bootstrap: 30 of 30 resamples of customers used" in text
    saved = ClvModel.load(model_path)
    assert saved.bootstrap_["purchases"].shape == (30, 4) and saved.bootstrap_["spend"].shape == (30, 3)
    rfm = tmp_path / "rfm.csv"  # the table scored: the calibration summary of the same log
    from clv_forecast.rfm import summarize

    table = summarize(pd.read_csv(cdnow_csv, parse_dates=["date"]), amount_col="amount", time_unit="W",
                      calibration_end="1997-09-30")
    table[["frequency", "recency", "T", "monetary_value"]].reset_index().to_csv(rfm, index=False)
    out = tmp_path / "scores.csv"
    rc = main(["score", "--model", str(model_path), "--input", str(rfm), "--output", str(out), "--interval", "0.9",
               "--interval-method", "bootstrap", "--no-tracking"])
    capsys.readouterr()
    assert rc == 0
    scores = pd.read_csv(out)
    expected = saved.clv(table, horizon="12M", discount_rate="10%/Y", interval=0.9, interval_method="bootstrap")
    np.testing.assert_allclose(scores["clv_upper"].to_numpy(), expected["clv_upper"].to_numpy(), rtol=1e-9)
    assert (scores["clv_lower"] <= scores["clv"] + 1e-9).all()


def test_cli_score_with_bootstrap_needs_a_model_with_vectors(cdnow_rfm, tmp_path, capsys):
    model_path = ClvModel().fit(cdnow_rfm).save(tmp_path / "plain.json")
    rfm = tmp_path / "rfm.csv"
    cdnow_rfm[["frequency", "recency", "T", "monetary_value"]].reset_index().to_csv(rfm, index=False)
    out = tmp_path / "scores.csv"
    rc = main(["score", "--model", str(model_path), "--input", str(rfm), "--output", str(out), "--interval", "0.9",
               "--interval-method", "bootstrap", "--no-tracking"])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert "bootstrap" in err and "--bootstrap N" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()
