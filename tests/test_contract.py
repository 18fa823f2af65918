"""The estimator contract, checked for every estimator alike (as scikit-learn's estimator_checks does).

Every discovered model (``clv_forecast.estimators.available``) gets a ``Spec`` built from its role (how to
build it with non-default settings, fit it, predict with it and break a refit), and so does the composite;
every check runs on all of them, so a new model module is tested the day it exists.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from clv_forecast import estimators
from clv_forecast.estimators.base import Estimator
from clv_forecast.errors import IdentificationError, NotFittedError
from clv_forecast.model import ClvModel


@dataclass
class Spec:
    cls: type
    settings: dict  # non-default constructor arguments
    fit: Callable  # (estimator, table) -> estimator
    predict: Callable  # (estimator, table) -> DataFrame
    from_params: Callable  # fitted estimator -> a new estimator built from its parameters
    from_dict: Callable  # document -> estimator
    breaking: Callable  # table -> data on which fit raises


def _no_repeat_buyers(rfm):
    return rfm.assign(frequency=0, recency=0.0)


def _constant_spend(rfm):
    return rfm.assign(frequency=np.where(rfm["frequency"] > 0, 1, 0),
                      monetary_value=np.where(rfm["frequency"] > 0, 10.0, 0.0))


def _contract_rows(rfm):
    """The retention role's data from an RFM table: each customer a subscriber in quarters (13 weeks) through his
    last purchase, who left when a whole quarter passed without one (renewals, churned)."""
    churned = rfm["T"] - rfm["recency"] >= 13
    renewals = np.floor(np.where(churned, rfm["recency"], rfm["T"]) / 13)
    out = pd.DataFrame({"renewals": renewals, "churned": churned.astype(int)}, index=rfm.index)
    out.attrs["time_unit"] = "13W"
    return out


def _non_default(cls) -> dict:
    """Every setting, changed from its default where that is harmless: fewer iterations, the other flag."""
    out = dict(cls._defaults())
    for name, default in cls._defaults().items():
        if isinstance(default, bool):
            out[name] = not default
        elif isinstance(default, int) and default > 100:
            out[name] = default - 50
    return out


def _model_spec(kind: str, role: str) -> Spec:
    cls = estimators.get(kind, role)
    purchases = role == "purchases"
    if role == "retention":  # its own data: renewals and churn (read from the same customers)
        return Spec(cls, _non_default(cls), lambda m, d: m.fit(_contract_rows(d)),
                    lambda m, d: m.predict(_contract_rows(d), "10%/Y"),
                    lambda m: type(m).from_params(dict(m.params_), m.result_.cov_params(), time_unit=m.time_unit_),
                    cls.from_dict, lambda d: d.assign(recency=d["T"]))  # nobody left
    return Spec(
        cls,
        _non_default(cls),
        lambda m, d: m.fit(d),
        (lambda m, d: m.predict(d, "39W")) if purchases else (lambda m, d: m.predict(d)),
        lambda m: type(m).from_params(dict(m.params_), m.result_.cov_params(), time_unit=m.time_unit_),
        cls.from_dict,
        _no_repeat_buyers if purchases else _constant_spend,
    )


SPECS = {estimators.get(kind, role).__name__: _model_spec(kind, role)
         for role in estimators.ROLES for kind in estimators.available(role)}
_P, _S = SPECS["BetaGeoModel"].cls, SPECS["GammaGammaModel"].cls
SPECS["ClvModel"] = Spec(
    ClvModel,
    {"purchases": _P(penalizer=0.001, maxiter=150), "spend": _S(strict=True),  # estimators as settings
     "on_boundary": "refuse"},
    lambda m, d: m.fit(d),
    lambda m, d: m.clv(d, horizon="12M", discount_rate="10%/Y"),
    lambda m: ClvModel.from_params(purchases=dict(m.purchases_.params_), spend=dict(m.spend_.params_),
                                   time_unit=m.time_unit_, purchases_cov=m.purchases_.result_.cov,
                                   spend_cov=m.spend_.result_.cov, purchase_model=m.purchases_.kind,
                                   spend_model=m.spend_.kind),
    ClvModel.from_dict,
    _constant_spend,
)


def _plain(params: dict) -> dict:
    """Settings comparable across copies: an estimator-valued setting as its class and own settings."""
    return {k: (type(v), v.get_params(deep=False)) if isinstance(v, Estimator) else v for k, v in params.items()}


pytestmark = pytest.mark.parametrize("name", list(SPECS))


@pytest.fixture(scope="module")
def cdnow_rfm():
    """CDNOW in whole weeks (purchases merged by week): data every model reads, those of whole-period data
    (``whole_periods``: BG/BB, one transaction opportunity a week) too."""
    from clv_forecast.datasets import CDNOW_CALIBRATION_END, load_cdnow_sample
    from clv_forecast.rfm import summarize

    return summarize(load_cdnow_sample(), amount_col="amount", time_unit="W", merge="W",
                     calibration_end=CDNOW_CALIBRATION_END)


@pytest.fixture(scope="module")
def fitted(cdnow_rfm):
    """One fitted estimator per spec (fitting is the slow part), shared by the checks."""
    return {name: spec.fit(spec.cls(**spec.settings), cdnow_rfm) for name, spec in SPECS.items()}


def test_constructor_stores_settings_only(name):
    spec = SPECS[name]
    est = spec.cls(**spec.settings)
    assert vars(est) == spec.settings  # nothing computed, nothing renamed
    for key, value in spec.settings.items():
        assert getattr(est, key) is value  # stored as given, not copied or validated
    assert not [k for k in vars(est) if k.endswith("_")]
    assert set(spec.cls()._get_param_names()) == set(spec.settings)


def test_fit_returns_self_and_keeps_settings(name, cdnow_rfm):
    spec = SPECS[name]
    est = spec.cls(**spec.settings)
    assert spec.fit(est, cdnow_rfm) is est
    assert est.get_params(deep=False) == spec.settings


def test_not_fitted_error_before_fit(name, cdnow_rfm):
    spec = SPECS[name]
    est = spec.cls(**spec.settings)
    for call in (lambda: spec.predict(est, cdnow_rfm), est.to_dict, est.summary, lambda: est.problems_,
                 est.check_reliable):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_learned_attributes_end_in_underscore(name, fitted):
    est = fitted[name]
    learned = set(vars(est)) - set(est.get_params(deep=False))
    assert learned and all(k.endswith("_") for k in learned), learned


def test_get_params_round_trip(name):
    spec = SPECS[name]
    est = spec.cls(**spec.settings)
    clone = spec.cls(**est.get_params(deep=False))
    assert clone.get_params(deep=False) == est.get_params(deep=False) == spec.settings
    assert spec.cls().set_params(**spec.settings).get_params(deep=False) == spec.settings
    assert _plain(clone.get_params(deep=True)) == _plain(est.get_params(deep=True))


def test_to_dict_from_dict_round_trip_predicts_identically(name, fitted, cdnow_rfm):
    spec = SPECS[name]
    est = fitted[name]
    document = json.loads(json.dumps(est.to_dict(), default=float))  # through JSON text, as in a file
    again = spec.from_dict(document)
    assert type(again) is spec.cls and _plain(again.get_params()) == _plain(est.get_params())
    pd.testing.assert_frame_equal(spec.predict(again, cdnow_rfm), spec.predict(est, cdnow_rfm), check_exact=True)


def test_from_params_round_trip_predicts_identically(name, fitted, cdnow_rfm):
    spec = SPECS[name]
    est = fitted[name]
    given = spec.from_params(est)
    pd.testing.assert_frame_equal(spec.predict(given, cdnow_rfm), spec.predict(est, cdnow_rfm), check_exact=True)
    assert given.problems_ == []


def test_repr_fitted_and_unfitted(name, fitted):
    spec = SPECS[name]
    text = repr(spec.cls(**spec.settings))
    assert text.startswith(f"{spec.cls.__name__}(") and all(f"{k}=" in text for k in spec.settings)
    fitted_text = repr(fitted[name])
    assert spec.cls.__name__ in fitted_text and "W" in fitted_text


def test_predict_output_indexed_like_the_input(name, fitted, cdnow_rfm):
    spec = SPECS[name]
    table = cdnow_rfm.sample(frac=0.2, random_state=1)
    table.index = [f"c{i}" for i in table.index]
    out = spec.predict(fitted[name], table)
    assert isinstance(out, pd.DataFrame) and out.index.equals(table.index)
    by_label = spec.predict(fitted[name], table.sort_index())
    # the rows' order does not matter (up to BLAS summation order in the discounting product)
    pd.testing.assert_frame_equal(out.sort_index(), by_label, rtol=1e-13)


def test_no_nan_or_inf_on_valid_input(name, fitted, cdnow_rfm):
    out = SPECS[name].predict(fitted[name], cdnow_rfm)
    assert len(out) == len(cdnow_rfm)
    assert np.all(np.isfinite(out.to_numpy(dtype=float)))


def test_failed_refit_leaves_the_old_fit_intact(name, cdnow_rfm):
    spec = SPECS[name]
    est = spec.fit(spec.cls(**spec.settings), cdnow_rfm)
    before_doc = est.to_dict()  # one call: "created" is the clock's second, and may change between two calls
    before_doc = json.dumps(before_doc, default=float, sort_keys=True).replace(before_doc.get("created") or "\0", "")
    before = spec.predict(est, cdnow_rfm)
    with pytest.raises(IdentificationError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.fit(est, spec.breaking(cdnow_rfm))
    after_doc = est.to_dict()
    after_doc = json.dumps(after_doc, default=float, sort_keys=True).replace(after_doc.get("created") or "\0", "")
    assert after_doc == before_doc
    pd.testing.assert_frame_equal(spec.predict(est, cdnow_rfm), before, check_exact=True)


def test_analytic_derivatives_equal_finite_differences(name, fitted, cdnow_rfm):
    """A model's analytic ``_loglik_derivatives`` agrees with the base's numerical fallback (central differences
    of ``_loglik``), and the fallback alone is a usable score and Hessian."""
    est = fitted[name]
    subs = [sub for _, sub in est.parts()] if isinstance(est, ClvModel) else [est]
    for sub in subs:
        cls = type(sub)
        table = cdnow_rfm[cdnow_rfm["frequency"] > 0] if sub.role == "spend" else cdnow_rfm
        table = _contract_rows(cdnow_rfm) if sub.role == "retention" else table
        columns = [table[c].to_numpy(dtype=float) for c in cls.inputs]
        weights = np.linspace(0.5, 1.5, len(table))
        params = np.array(sub.check_fitted()) * 1.05  # off the optimum: the score is not zero
        ll, score, hess = cls._loglik_derivatives(params, *columns, weights=weights)
        nll, nscore, nhess = Estimator._loglik_derivatives.__func__(cls, params, *columns, weights=weights)
        assert ll == pytest.approx(nll, rel=1e-12)
        np.testing.assert_allclose(score, nscore, rtol=1e-5, atol=1e-6 * np.abs(score).max())
        np.testing.assert_allclose(hess, nhess, rtol=1e-4, atol=1e-5 * np.abs(hess).max())
