"""Inputs that once gave wrong numbers, NaN or tracebacks (found in review): each now has a defined answer."""

import json
import warnings

import numpy as np
import pytest

from clv_forecast import ClvModel, simulate, summarize
from clv_forecast.btyd import BetaGeoModel, GammaGammaModel
from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError, DataWarning, IdentificationError, UnreliableFitError
from clv_forecast.experiment import load_spec


def test_returns_only_customer_gets_nan_spend_not_a_negative_clv(cdnow_rfm):
    rfm = cdnow_rfm.copy()
    rfm.loc[1, "monetary_value"] = -12.0  # customer 1's repeat purchases were returns
    with pytest.warns(DataWarning):
        model = ClvModel().fit(rfm)
    with pytest.warns(DataWarning, match=r"1 customer\(s\).*NaN: 1"):
        clv = model.clv(rfm, horizon="12M")
    assert np.isnan(clv.loc[1, "expected_spend"]) and np.isnan(clv.loc[1, "clv"])
    others = clv.drop(index=1)
    assert np.all(others["clv"] >= 0) and np.all(np.isfinite(others["clv"]))


def test_interval_bounds_are_never_nan_even_with_infinite_spend_draws():
    tx = simulate(300, r=0.5, alpha=5, a=0.8, b=2.5, p=2, q=1.2, v=10, seed=3, end="2020-12-31")
    rfm = summarize(tx, date_col="timestamp", amount_col="amount")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = ClvModel().fit(rfm)
        out = model.clv(rfm, horizon="12M", interval=0.99, n_draws=100)
    assert not out[["clv_lower", "clv_upper"]].isna().any().any()
    assert np.all(out["clv_lower"] <= out["clv_upper"])


def test_time_unit_contradicting_the_table_is_an_error(cdnow_rfm):
    with pytest.raises(ClvInputError, match="contradicts"):
        ClvModel().fit(cdnow_rfm, time_unit="D")
    with pytest.raises(ClvInputError, match="contradicts"):
        BetaGeoModel().fit(cdnow_rfm, time_unit="M")
    assert ClvModel().fit(cdnow_rfm, time_unit="7D").time_unit_ == "7D"  # the same length is no contradiction


def test_failed_refit_leaves_the_model_unchanged(cdnow_rfm):
    model = ClvModel().fit(cdnow_rfm)
    before = model.params_
    bad = cdnow_rfm.copy()
    bad["monetary_value"] = np.where(bad["frequency"] > 0, 10.0, 0.0)
    bad["frequency"] = np.where(bad["frequency"] > 0, 1, 0)
    with pytest.raises(IdentificationError), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the degenerate purchase data also warn about convergence
        model.fit(bad)
    assert model.params_ == before and model.spend_ is not None


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda d: d.pop("time_unit"), "incomplete or corrupt"),
        (lambda d: d.__setitem__("settings", "nope"), r'settings = "nope": must be an object'),
        (lambda d: d.__setitem__("format_version", "x"), "format_version"),
        (lambda d: d["bgnbd"].pop("params"), "incomplete or corrupt"),
    ],
)
def test_corrupt_model_files_are_one_line_errors(cdnow_rfm, tmp_path, edit, fragment):
    path = ClvModel().fit(cdnow_rfm).save(tmp_path / "m.json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ClvInputError, match=fragment):
        ClvModel.load(path)


def test_saved_model_is_standard_json_even_without_standard_errors(cdnow_rfm, tmp_path):
    model = ClvModel().fit(cdnow_rfm)
    model.purchases_.result_.cov[:] = np.nan  # as after an unidentified fit
    with pytest.raises(UnreliableFitError, match="not identified"):
        model.save(tmp_path / "m.json")
    text = model.save(tmp_path / "m.json", allow_unreliable=True).read_text()
    assert "NaN" not in text and "null" in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    loaded = ClvModel.load(tmp_path / "m.json")
    assert np.isnan(loaded.purchases_.result_.bse["r"])
    assert loaded.problems_ == model.problems_ and json.loads(text)["reliable"] is False


@pytest.mark.parametrize(
    "toml, fragment",
    [
        ('[value]\nmargin = "abc"\n', "margin = 'abc': must be a number"),
        ('[model]\nstrict_spend = "no"\n', "strict_spend = 'no': must be true or false"),
        ('[model]\npenalizer = "a"\n', "penalizer = 'a': must be a number"),
        ("[summary]\ncalibration_end = 1997\n", "calibration_end = 1997: must be text"),
    ],
)
def test_experiment_spec_values_are_type_checked(tmp_path, capsys, toml, fragment):
    path = tmp_path / "spec.toml"
    path.write_text(toml)
    with pytest.raises(ClvInputError, match="spec.toml"):
        load_spec(path)
    assert main(["run", "--experiment", str(path), "--no-save"]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_penalizer_of_the_wrong_type(cdnow_rfm):
    with pytest.raises(ClvInputError, match="penalizer"):
        GammaGammaModel(penalizer="a").fit(cdnow_rfm)
