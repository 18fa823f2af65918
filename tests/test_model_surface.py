"""Every model through every door (issue 18): for each discovered (purchase kind, spend kind) and for a test-only
twin pair registered here, the same path: fit (the pipeline) -> report names the models -> CLV with interval ->
save/load -> score_file -> the MLflow pyfunc -> Spark scoring equals local CLV.

The twins are subclasses defined in this file with their own ``kind`` and ``name`` and nothing else: they pass
unchanged, so no consumer knows a model by its name (CONTRIBUTING.md describes what a new model writes).
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from clv_forecast import estimators, experiment
from clv_forecast.errors import DataWarning
from clv_forecast.estimators.purchases.bgnbd import BetaGeoModel
from clv_forecast.estimators.spend.gamma_gamma import GammaGammaModel
from clv_forecast.model import ClvModel


class TwinBG(BetaGeoModel):
    """BG/NBD under another kind and name: a model no consumer has heard of."""

    kind = "twin"
    name = "Twin BG"


class TwinGG(GammaGammaModel):
    kind = "twin_spend"
    name = "Twin GG"


PAIRS = [(p, s) for p in estimators.available("purchases") for s in estimators.available("spend")]
PAIRS += [("twin", "twin_spend")]


@pytest.fixture(scope="module", autouse=True)
def twins():
    """Register the twins for this module (and let Spark's closures carry them to the executors by value)."""
    try:
        from pyspark import cloudpickle
    except ImportError:  # no pyspark: the Spark test is skipped (tests/external_tools.py), the others run
        cloudpickle = None

    estimators.register(TwinBG)
    estimators.register(TwinGG)
    if cloudpickle is not None:
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    if cloudpickle is not None:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    estimators.unregister("twin", "purchases")
    estimators.unregister("twin_spend", "spend")


@pytest.fixture(scope="module")
def runs():
    """One pipeline run per pair (fit, holdout check, CLV with a 90 % interval), shared by the checks."""
    out = {}
    for purchases, spend in PAIRS:
        spec = experiment.cdnow_spec()
        spec["model"].update(purchases=purchases, spend=spend)
        if estimators.get(purchases, "purchases").whole_periods:  # a discrete-time model: one period a week
            spec["summary"].update(merge="W")
        spec["output"].update(model=None, report=None, predictions=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            out[purchases, spend] = experiment.run(spec, save=False, analyse=False)
    return out


def _table(result, n=300):
    rfm = result.summary.head(n)
    return rfm[["frequency", "recency", "T", "monetary_value"]].copy()


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_fit_report_and_clv_with_interval(pair, runs):
    result = runs[pair]
    model = result.model
    assert [sub.kind for _, sub in model.parts()] == list(pair)
    assert model.problems_ == []
    table = result.predictions
    from clv_forecast.uncertainty import QUANTITIES

    for q in QUANTITIES:  # every forecast carries its interval
        cols = [q, f"{q}_lower", f"{q}_upper"]
        assert set(cols) <= set(table.columns), q
        assert np.all(np.isfinite(table[cols].to_numpy())), q
        assert np.all(table[f"{q}_lower"] <= table[q]) and np.all(table[q] <= table[f"{q}_upper"]), q
        if not (q == "p_alive" and model.purchases_.kind == "nbd"):  # (the NBD: nobody leaves, P(alive) = 1)
            assert (table[f"{q}_upper"] > table[f"{q}_lower"]).any(), q  # the parameters' uncertainty shows
    # and the band of the totals, in the run's metrics
    metrics = result.metrics
    assert metrics["band_level"] == 0.9
    assert metrics["clv_total_lower"] < metrics["clv_total"] < metrics["clv_total_upper"]
    assert (metrics["expected_purchases_total_lower"] < metrics["expected_purchases_total"]
            < metrics["expected_purchases_total_upper"])
    # P(alive) at a future date: today's at t = 0, never more later
    purchases = model.purchases_
    rfm = result.summary.head(300)
    later = purchases.p_alive_at(["0W", "52W"], rfm)
    now = purchases.p_alive(rfm)
    np.testing.assert_allclose(np.asarray(later)[:, 0], np.asarray(now), rtol=1e-9)
    assert np.all(np.asarray(later)[:, 1] <= np.asarray(later)[:, 0] + 1e-12)
    html = experiment._report_document(result)
    for _, sub in model.parts():
        assert sub.name in html
    if pair == ("twin", "twin_spend"):  # the twins are the built-in models under other names: same numbers
        builtin = runs["bgnbd", "gamma_gamma"]
        pd.testing.assert_frame_equal(table, builtin.predictions, check_exact=True)
        assert "BG/NBD" not in html and "Gamma-Gamma" not in html


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_save_load_score_file_and_pyfunc(pair, runs, tmp_path):
    import mlflow.pyfunc

    from clv_forecast import tracking
    from clv_forecast.scoring import score_file

    model = runs[pair].model
    path = model.save(tmp_path / "m.json")
    doc = json.loads(path.read_text())
    assert (doc["purchases"]["kind"], doc["spend"]["kind"]) == pair
    loaded = ClvModel.load(path)
    table = _table(runs[pair])
    expected = model.clv(table, horizon="12M")
    pd.testing.assert_frame_equal(loaded.clv(table, horizon="12M"), expected, check_exact=True)

    # score_file: the file scorer, batch by batch
    source = tmp_path / "rfm.csv"
    table.rename_axis("customer_id").reset_index().to_csv(source, index=False)
    score_file(path, source, tmp_path / "scores.parquet", horizon="12M", batch_rows=100)
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    np.testing.assert_allclose(scores["clv"].to_numpy(), expected["clv"].to_numpy(), rtol=1e-12)

    # the MLflow pyfunc, with the signature the run would log (the union of the parts' inputs)
    defaults = {"horizon": "12M", "discount_rate": "10%/Y", "step": "1M", "margin": 1.0, "interval": 0.0,
                "interval_method": "delta"}
    signature = tracking._signature(loaded, defaults)
    assert [c.name for c in signature.inputs.inputs] == ["frequency", "recency", "T", "monetary_value", "customer_id"]
    # the requirements given, as a run logs them (else MLflow infers them by loading the model in a subprocess:
    # seconds of CPU per model that this check does not need)
    mlflow.pyfunc.save_model(tmp_path / "pyfunc", python_model=tracking.ClvPyfunc(),
                             artifacts={"model_file": str(path)}, signature=signature,
                             pip_requirements=tracking._requirements())
    pyfunc = tracking.load_model(str(tmp_path / "pyfunc"))  # (int64 frequency as the signature's double)
    predicted = pyfunc.predict(table.reset_index(drop=True))
    np.testing.assert_allclose(predicted["clv"].to_numpy(), expected["clv"].to_numpy(), rtol=1e-12)
    # with an interval asked per call: every bound, as ClvModel.clv gives it
    from clv_forecast.uncertainty import INTERVAL_COLUMNS

    bounded = pyfunc.predict(table.reset_index(drop=True), params={"interval": 0.9})
    want = model.clv(table, horizon="12M", interval=0.9)
    for column in INTERVAL_COLUMNS:
        np.testing.assert_allclose(bounded[column].to_numpy(), want[column].to_numpy(), rtol=1e-12, err_msg=column)


@pytest.mark.parametrize("pair", PAIRS, ids="+".join)
def test_spark_scoring_equals_local_clv(pair, runs, spark):
    from clv_forecast.spark import score_spark

    model = runs[pair].model
    table = _table(runs[pair], n=200)
    expected = model.clv(table, horizon="12M", interval=0.9, n_draws=50)
    frame = table.rename_axis("customer_id").reset_index()
    got = score_spark(model, spark.createDataFrame(frame).repartition(2), horizon="12M", interval=0.9).toPandas()
    got = got.set_index("customer_id").loc[table.index]
    assert got["reject_reason"].isna().all()
    from clv_forecast.uncertainty import INTERVAL_COLUMNS

    np.testing.assert_allclose(got["clv"].to_numpy(), expected["clv"].to_numpy(), rtol=1e-12)
    # the bounds come from forward differences at a step of 1e-6: a rounding difference of 1e-16 in a forecast
    # between two batchings (Spark's partitions, SIMD alignment) is 1e-10 in a bound
    for column in INTERVAL_COLUMNS:
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-8, err_msg=column)
