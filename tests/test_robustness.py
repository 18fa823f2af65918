"""Inputs that once gave wrong numbers, NaN or tracebacks (found in review): each now has a defined answer."""

import json
import warnings

import numpy as np
import pandas as pd
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
        (lambda d: d["purchases"].pop("params"), "incomplete or corrupt"),
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


# --------------------------------------------------------------------------------------------
# every field of a model file is checked on load
# --------------------------------------------------------------------------------------------

DATA = __import__("pathlib").Path(__file__).parent / "data"


def _set(path: str, value):
    """An edit that sets a dotted field (list items by number) of the model document."""
    def edit(doc):
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


def _drop(path: str):
    def edit(doc):
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        del node[last]
    return edit


@pytest.fixture(scope="module")
def saved_doc(cdnow_rfm) -> dict:
    return ClvModel().fit(cdnow_rfm).to_dict()


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("purchases.params.r", -0.24), "purchases.params.r = -0.24: must be a positive finite number"),
        (_set("purchases.params.r", None), "purchases.params.r = null: must be a positive finite number"),
        (_set("purchases.params.alpha", "4.4"), 'purchases.params.alpha = "4.4": must be a positive finite number'),
        (_set("spend.params.q", 0), "spend.params.q = 0: must be a positive finite number"),
        (_set("spend.params.p", True), "spend.params.p = true: must be a positive finite number"),
        (_drop("purchases.params.b"), "purchases.params.b is missing"),
        (_set("purchases.params.z", 1.0), "purchases.params.z = 1.0: unknown parameter"),
        (_drop("purchases.cov"), "purchases.cov is missing"),
        (_set("purchases.cov", [[1.0, 0.0], [0.0, 1.0]]), "purchases.cov = [[1.0, 0.0], [0.0, 1.0]]: must be a 4 x 4 matrix"),
        (_set("purchases.cov.0.1", 123.0), "purchases.cov[0][1] = 123.0: not symmetric"),
        (_set("purchases.cov.1.2", "x"), 'purchases.cov[1][2] = "x": must be a finite number or null'),
        (_set("spend.cov.2", [1.0, 2.0]), "spend.cov = "),
        (_set("purchases.bse.r", 1.0), "purchases.bse.r = 1.0: inconsistent with the covariance"),
        (_set("purchases.time_unit", "D"), "purchases.time_unit = \"D\": disagrees with the model's time_unit 'W'"),
        (_set("time_unit", "fortnight"), 'time_unit = "fortnight": time unit'),
        (_set("time_unit", 7), "time_unit = 7: must be a time unit"),
        (_drop("time_unit"), "time_unit is missing"),
        (_set("format_version", 0), "format_version = 0: must be a whole number from 1 to"),
        (_set("format_version", 1.5), "format_version = 1.5: must be a whole number from 1 to"),
        (_set("format_version", True), "format_version = true: must be a whole number"),
        (_set("format_version", 4), "newer than this clv-forecast understands (3); upgrade clv-forecast"),
        (_set("purchases.settings.penalizer", -1), "purchases.settings.penalizer = -1: must be a non-negative finite"),
        (_set("spend.settings.strict", "no"), 'spend.settings.strict = "no": must be true or false'),
        (_set("settings.maxiter", 5), "settings.maxiter = 5: unknown setting"),
        (_set("settings.purchases", "gamma_gamma"), "settings.purchases = \"gamma_gamma\": disagrees with purchases.kind"),
        (_set("purchases.kind", "no_such_model"),
         'purchases.kind = "no_such_model": unknown model (this clv-forecast knows bgbb, bgnbd, constant_dropout, mbgnbd, nbd, pareto_nbd); upgrade clv-forecast'),
        (_drop("spend.kind"), "spend.kind is missing"),
        (_set("purchases.settings.maxiter", 0), "purchases.settings.maxiter = 0: must be a whole number >= 1"),
        (_set("purchases.settings.initial_params", {"r": -1}), "purchases.settings.initial_params.r = -1: must be a positive"),
        (_set("purchases.converged", "yes"), 'purchases.converged = "yes": must be true or false'),
        (_set("purchases.n_rows", -1), "purchases.n_rows = -1: must be a whole number >= 0"),
        (_set("purchases.log_likelihood", "high"), 'purchases.log_likelihood = "high": must be a finite number or null'),
        (_set("spend.model", "BG/NBD"), "spend.model = \"BG/NBD\": expected 'Gamma-Gamma'"),
        (_set("spend.source", "guess"), "spend.source = \"guess\": must be 'fit' or 'params'"),
        (_set("training_data", 5), "training_data = 5: must be an object or null"),
        (_set("purchases", None), "purchases = null: must be an object"),
    ],
)
def test_each_corrupt_field_is_named(saved_doc, tmp_path, edit, message):
    doc = json.loads(json.dumps(saved_doc))
    edit(doc)
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ClvInputError) as info:
        ClvModel.load(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert "\n" not in text


def test_null_covariance_entries_mean_unavailable(saved_doc, tmp_path, cdnow_rfm):
    doc = json.loads(json.dumps(saved_doc))
    doc["purchases"]["cov"] = [[None] * 4 for _ in range(4)]
    doc["purchases"]["bse"] = {k: None for k in doc["purchases"]["bse"]}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    model = ClvModel.load(path)
    assert model.purchases_.result_.bse.isna().all()
    assert any("not identified" in p for p in model.problems_)
    assert np.all(np.isfinite(model.clv(cdnow_rfm, horizon="12M")["clv"]))


def test_version_1_files_still_load(cdnow_rfm):
    """A file written by the version-1 code (kept in tests/data) loads and predicts as it did."""
    path = DATA / "cdnow_model_v1.json"
    assert json.loads(path.read_text())["format_version"] == 1
    model = ClvModel.load(path)
    assert model.problems_ == [] and model.time_unit_ == "W"
    assert model.get_params(deep=False) == {"purchases": "bgnbd", "spend": "gamma_gamma", "on_boundary": "nested"}
    expected = pd.read_csv(DATA / "cdnow_model_v1_clv_head20.csv", index_col=0)
    out = model.clv(cdnow_rfm.head(20), horizon="12M", discount_rate="10%/Y")
    np.testing.assert_allclose(out.to_numpy(), expected.to_numpy(), rtol=1e-12)
    # and it is rewritten as the current version
    assert model.to_dict()["format_version"] == 3


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_model_file_gets_the_users_umask_not_0600(cdnow_rfm, tmp_path, umask):
    import os
    import stat

    from clv_forecast.model import ClvModel

    model = ClvModel().fit(cdnow_rfm)
    old = os.umask(umask)
    try:
        path = model.save(tmp_path / "m.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary file left behind
