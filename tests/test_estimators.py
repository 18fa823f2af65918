"""The model layer (issue 18): discovery, the composite's nested settings and deprecated aliases, the model
file format 3 and the loading of versions 1 and 2, unknown kinds."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv_forecast import estimators
from clv_forecast.errors import ClvInputError, DataWarning
from clv_forecast.estimators.base import PurchaseModel, SpendModel
from clv_forecast.estimators.purchases.bgnbd import BetaGeoModel
from clv_forecast.estimators.spend.gamma_gamma import GammaGammaModel
from clv_forecast.model import ClvModel

DATA = Path(__file__).parent / "data"


# ---- discovery ------------------------------------------------------------------------------------------


def test_available_lists_the_modules_and_get_returns_their_classes():
    assert estimators.available("purchases") == ["bgbb", "bgnbd", "constant_dropout", "mbgnbd", "nbd", "pareto_nbd"]
    assert estimators.available("spend") == ["gamma_gamma"]
    assert estimators.get("bgnbd", "purchases") is BetaGeoModel
    assert estimators.get("gamma_gamma", "spend") is GammaGammaModel
    for cls, role in ((BetaGeoModel, "purchases"), (GammaGammaModel, "spend")):
        assert cls.role == role and cls.kind in estimators.available(role)
        assert cls.name and cls.param_names and cls.inputs and set(cls.param_bounds) == set(cls.param_names)


def test_available_imports_no_model():
    code = ("import sys\nfrom clv_forecast import estimators\n"
            "assert estimators.available('purchases') == ['bgbb', 'bgnbd', 'constant_dropout', 'mbgnbd', 'nbd', 'pareto_nbd']\n"
            "print(sorted(m for m in sys.modules if m.startswith('clv_forecast.estimators.') or m in ('numpy', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind, role, fragment", [
    ("no_such_model", "purchases", "purchases='no_such_model': unknown purchases model (known: bgbb, bgnbd, constant_dropout, mbgnbd, nbd, pareto_nbd)"),
    ("bgnbd", "spend", "spend='bgnbd': unknown spend model (known: gamma_gamma)"),
    ("_data", "purchases", "unknown purchases model"),
])
def test_an_unknown_kind_is_one_line_naming_the_known_ones(kind, role, fragment):
    with pytest.raises(ClvInputError) as info:
        estimators.get(kind, role)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_register_adds_a_class_and_refuses_a_builtin_kind():
    class Twin(BetaGeoModel):
        kind = "twin_for_registry"
        name = "Twin"

    try:
        assert estimators.register(Twin) is Twin
        assert "twin_for_registry" in estimators.available("purchases")
        assert estimators.get("twin_for_registry", "purchases") is Twin
    finally:
        estimators.unregister("twin_for_registry", "purchases")
    assert "twin_for_registry" not in estimators.available("purchases")

    class Clash(BetaGeoModel):
        kind = "bgnbd"

    with pytest.raises(ValueError, match="built-in"):
        estimators.register(Clash)


def test_a_missing_optional_kernel_is_one_line():
    class Minimal(PurchaseModel):
        kind, name, param_names = "minimal", "Minimal", ("r",)

        def __init__(self, penalizer: float = 0.0) -> None:
            self.penalizer = penalizer

    model = Minimal.from_params({"r": 1.0}, time_unit="W")
    for call in (lambda: model.prob_purchases(1, 10.0), model.population):
        with pytest.raises(ClvInputError, match="not available for Minimal") as info:
            call()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", estimators.available("purchases"))
def test_every_purchase_model_refuses_data_where_nothing_was_observed(kind):
    """The checks are the base's (written once): no repeat purchase, or T = 0 for every customer, identifies
    no purchase model."""
    from clv_forecast.estimators._mle import IdentificationError

    model = estimators.get(kind, "purchases")()
    with pytest.raises(IdentificationError, match="no customer has a repeat purchase"):
        model.fit(frequency=np.zeros(5), recency=np.zeros(5), T=np.full(5, 3.0), time_unit="W")
    # (in whole periods a repeat transaction needs recency >= 1 > T: such data are invalid before anything else)
    expected = ("column .frequency.*greater than recency" if model.whole_periods else
                "every customer has T = 0; nothing was observed")
    with pytest.raises(ClvInputError if model.whole_periods else IdentificationError, match=expected):
        model.fit(frequency=np.ones(5), recency=np.zeros(5), T=np.zeros(5), time_unit="W")
    assert not hasattr(model, "params_")


def test_numerical_derivatives_fallback_matches_the_analytic_ones():
    x = np.array([0.0, 1.0, 2.0, 7.0]); t_x = np.array([0.0, 3.0, 10.0, 30.0]); T = np.full(4, 38.0)  # noqa: E702
    params = np.array([0.243, 4.41, 0.793, 2.43])

    class Numeric(BetaGeoModel):
        _loglik_derivatives = classmethod(PurchaseModel._loglik_derivatives.__func__)

    ll, score, hess = BetaGeoModel._loglik_derivatives(params, x, t_x, T)
    nll, nscore, nhess = Numeric._loglik_derivatives(params, x, t_x, T)
    assert nll == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(nscore, score, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(nhess, hess, rtol=1e-4, atol=1e-6)


# ---- the composite: nested settings, deprecated aliases -------------------------------------------------


def test_nested_settings_reach_every_sub_model_setting():
    model = ClvModel()
    deep = model.get_params(deep=True)
    assert deep["purchases"] == "bgnbd" and deep["spend"] == "gamma_gamma"
    assert {f"purchases__{k}" for k in BetaGeoModel._defaults()} <= set(deep)
    assert {f"spend__{k}" for k in GammaGammaModel._defaults()} <= set(deep)
    assert model.get_params(deep=False) == {"purchases": "bgnbd", "spend": "gamma_gamma", "on_boundary": "nested"}
    model.set_params(purchases__maxiter=300, spend__strict=True)
    assert isinstance(model.purchases, BetaGeoModel) and model.purchases.maxiter == 300
    assert model.get_params()["spend__strict"] is True
    with pytest.raises(ClvInputError, match="no setting 'nope'"):
        model.set_params(purchases__nope=1)
    with pytest.raises(ClvInputError, match="has no spend model"):
        ClvModel(spend=None).set_params(spend__strict=True)


def test_the_settings_estimator_is_copied_not_fitted(cdnow_rfm):
    template = BetaGeoModel(maxiter=150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = ClvModel(purchases=template, spend=None).fit(cdnow_rfm)
    assert not hasattr(template, "params_") and model.purchases_ is not template
    assert model.purchases_.maxiter == 150 and model.spend_ is None
    assert [role for role, _ in model.parts()] == ["purchases"]


@pytest.mark.parametrize("alias, key, value", [
    ("penalizer", "purchases__penalizer", 0.01),
    ("spend_penalizer", "spend__penalizer", 0.02),
    ("strict_spend", "spend__strict", True),
])
def test_deprecated_aliases_warn_and_set_the_sub_model(alias, key, value):
    with pytest.warns(DeprecationWarning, match=alias):
        model = ClvModel(**{alias: value})
    assert model.get_params()[key] == value
    assert ClvModel().set_params(**{alias: value}).get_params()[key] == value


def test_summary_frame_is_indexed_by_kind_and_param(cdnow_rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model = ClvModel().fit(cdnow_rfm)
    frame = model.summary_frame()
    assert list(frame.index.get_level_values(0).unique()) == ["bgnbd", "gamma_gamma"]
    assert list(frame.loc["bgnbd"].index) == list(BetaGeoModel.param_names)
    assert [sub.name for _, sub in model.parts()] == ["BG/NBD", "Gamma-Gamma"]


# ---- model files: version 3, versions 1 and 2, unknown kinds --------------------------------------------


@pytest.fixture(scope="module")
def fitted(cdnow_rfm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return ClvModel(purchases=BetaGeoModel(maxiter=150)).fit(cdnow_rfm)


def test_version_3_is_keyed_by_role_with_each_kind(fitted, tmp_path, cdnow_rfm):
    doc = json.loads(Path(fitted.save(tmp_path / "m.json")).read_text())
    assert doc["format_version"] == 3
    assert doc["settings"] == {"purchases": "bgnbd", "spend": "gamma_gamma", "on_boundary": "nested"}
    assert doc["purchases"]["kind"] == "bgnbd" and doc["purchases"]["model"] == "BG/NBD"
    assert doc["spend"]["kind"] == "gamma_gamma" and doc["purchases"]["settings"]["maxiter"] == 150
    assert "bgnbd" not in doc and "gamma_gamma" not in doc
    loaded = ClvModel.load(tmp_path / "m.json")
    assert loaded.purchases.maxiter == 150 and loaded.spend == "gamma_gamma"
    pd.testing.assert_frame_equal(loaded.clv(cdnow_rfm, horizon="12M"), fitted.clv(cdnow_rfm, horizon="12M"),
                                  check_exact=True)


@pytest.mark.parametrize("version", [1, 2])
def test_versions_1_and_2_still_load_and_predict_as_they_did(version, cdnow_rfm):
    path = DATA / f"cdnow_model_v{version}.json"
    assert json.loads(path.read_text())["format_version"] == version
    model = ClvModel.load(path)
    assert model.problems_ == [] and model.time_unit_ == "W"
    assert [sub.kind for _, sub in model.parts()] == ["bgnbd", "gamma_gamma"]
    expected = pd.read_csv(DATA / f"cdnow_model_v{version}_clv_head20.csv", index_col=0)
    out = model.clv(cdnow_rfm.head(20), horizon="12M", discount_rate="10%/Y")
    np.testing.assert_allclose(out.to_numpy(), expected.to_numpy(), rtol=1e-12)
    if version == 2:  # written with strict_spend=True: now the spend model's own setting
        assert model.get_params()["spend__strict"] is True
    assert model.to_dict()["format_version"] == 3


def test_an_unknown_kind_in_a_model_file_is_one_line(fitted, tmp_path, capsys):
    from clv_forecast.cli import main

    doc = json.loads(fitted.to_json())
    doc["purchases"]["kind"] = "no_such_model"
    doc["settings"]["purchases"] = "no_such_model"
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ClvInputError) as info:
        ClvModel.load(path)
    assert str(info.value) == (f'{path}: purchases.kind = "no_such_model": unknown model (this clv-forecast knows '
                               "bgbb, bgnbd, constant_dropout, mbgnbd, nbd, pareto_nbd); upgrade clv-forecast")
    rfm = tmp_path / "rfm.csv"
    pd.DataFrame({"frequency": [1], "recency": [2.0], "T": [5.0]}).to_csv(rfm, index=False)
    assert main(["score", "--model", str(path), "--input", str(rfm), "--output", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "unknown model (this clv-forecast knows bgbb, bgnbd, constant_dropout, mbgnbd, nbd, pareto_nbd)" in err and err.count("\n") == 1


# ---- the experiment file and the command line -----------------------------------------------------------


def test_spec_model_tables_are_typed_by_the_estimators_settings(tmp_path):
    from clv_forecast.experiment import load_spec, model_of

    path = tmp_path / "spec.toml"
    path.write_text('[data]\nsource = "x.csv"\n[model]\nspend = "none"\n[model.purchases]\nkind = "bgnbd"\n'
                    "maxiter = 300\npenalizer = 0.01\n")
    model = model_of(load_spec(path)["model"])
    assert model.spend is None and model.purchases.maxiter == 300 and model.purchases.penalizer == 0.01
    for body, fragment in (
            ('[model.purchases]\nmaxiter = "many"\n', "[model.purchases] maxiter = 'many': must be a whole number"),
            ("[model.purchases]\nnope = 1\n", "[model.purchases] nope = 1: unknown setting of BG/NBD"),
            ('[model]\npurchases = "no_such_model"\n', "[model] purchases = 'no_such_model': unknown purchases "
             f"model (known: {', '.join(estimators.available('purchases'))}, auto)")):
        path.write_text('[data]\nsource = "x.csv"\n' + body)
        with pytest.raises(ClvInputError) as info:
            load_spec(path)
        assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)
    # the flat keys of earlier specs still work, on the sub-models
    path.write_text('[data]\nsource = "x.csv"\n[model]\npenalizer = 0.01\nstrict_spend = true\n')
    params = model_of(load_spec(path)["model"]).get_params()
    assert params["purchases__penalizer"] == 0.01 and params["spend__strict"] is True


def test_cli_model_options(cdnow_csv, tmp_path, capsys):
    from clv_forecast.cli import main

    base = ["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--calibration-end", "1997-09-30",
            "--no-tracking"]
    assert main([*base, "--purchase-model", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert "--purchase-model no_such_model: unknown purchases model (known: bgbb, bgnbd, constant_dropout, mbgnbd, nbd, pareto_nbd)" in err and err.count("\n") == 1
    out = tmp_path / "m.json"
    assert main([*base, "--spend-model", "none", "--model-setting", "purchases__maxiter=300",
                 "--output", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "bgnbd" in data and "gamma_gamma" not in data
    saved = json.loads(out.read_text())
    assert saved["spend"] is None and saved["purchases"]["settings"]["maxiter"] == 300


def test_the_btyd_shim_is_the_moved_modules():
    from clv_forecast.btyd import bgnbd as old
    from clv_forecast.estimators.purchases import bgnbd as new

    assert old is new
    import clv_forecast.btyd.gamma_gamma as old_gg
    from clv_forecast.estimators.spend import gamma_gamma as new_gg

    assert old_gg is new_gg and issubclass(new_gg.GammaGammaModel, SpendModel)


@pytest.mark.parametrize("kind", estimators.available("spend"))
def test_spend_models_fit_on_repeat_buyers_only(kind):
    """Both engines hand a spend model the statistics of the repeat buyers only
    (:func:`clv_forecast.engines.base.compressed_statistics`): a spend model whose likelihood used a customer
    without a repeat purchase would silently lose that row there."""
    cls = estimators.get(kind, "spend")
    x = np.array([0, 0, 1, 3])
    m = np.array([5.0, 0.0, 5.0, 7.5])
    rows = cls._fit_rows(x, m)
    assert not rows[x == 0].any() and rows[x > 0].all()
