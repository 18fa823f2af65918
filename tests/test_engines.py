"""The engine interface (clv_forecast.engines): one pipeline and one scorer over a local and a Spark engine.

Both engines give the same summary statistics, fitted parameters and per-customer scores on a small
log; a third engine, a thin test-only subclass registered in a fixture, runs the one pipeline unchanged
(a third engine is one module); the shared batch rules of scoring are one function.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clv_forecast import engines
from clv_forecast.engines.base import Engine
from clv_forecast.engines.local import LocalEngine
from clv_forecast.errors import ClvInputError
from clv_forecast.experiment import run, spec_from_options
from clv_forecast.simulate import simulate

RTOL = 1e-9
COMMON = dict(amount_col="amount", calibration_end="2020-12-31", discount_rate="10%/Y", interval=None)


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    """A small simulated log (1,500 customers) as one Parquet file, read by both engines."""
    tx = simulate(1_500, r=0.24, alpha=4.4, a=0.79, b=2.4, p=6.25, q=3.74, v=15.44, time_unit="W",
                  start="2020-01-01", cohort_length="12W", end="2021-06-30", seed=3)
    tx = tx.rename(columns={"timestamp": "date"}).astype({"date": "datetime64[us]"})
    path = tmp_path_factory.mktemp("engines") / "log.parquet"
    tx.to_parquet(path, index=False)
    return path


# -- discovery -------------------------------------------------------------------------------------


def test_the_engines_are_discovered_and_an_unknown_one_is_one_line(tmp_path):
    assert engines.available() == ["local", "spark"]
    assert engines.get("local").name == "local" and engines.get("spark").name == "spark"
    assert isinstance(engines.get(LocalEngine()), LocalEngine)  # an instance passes through
    with pytest.raises(ClvInputError, match=r"unknown engine \(engines: local, spark\)"):
        engines.get("dask")
    with pytest.raises(TypeError):
        engines.register(object)
    spec = tmp_path / "x.toml"
    spec.write_text('[data]\nsource = "log.csv"\nengine = "dask"\n')
    from clv_forecast.experiment import load_spec

    with pytest.raises(ClvInputError, match=r"\[data\] engine = 'dask': must be one of 'local', 'spark'"):
        load_spec(spec)


def test_the_cli_engine_choices_come_from_the_engines_package():
    from clv_forecast import cli

    for name in ("fit", "score"):
        option = next(p for p in cli.app.commands[name].params if p.name == "engine")
        assert list(option.type.choices) == engines.available()


# -- a third engine is one module -------------------------------------------------------------------


class _Thin(LocalEngine):
    """A test-only engine: the local one, counting the pipeline's calls."""

    name = "thin"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def summarize(self, source, options, *, calibration_end):
        self.calls.append("summarize")
        return super().summarize(source, options, calibration_end=calibration_end)

    def fit(self, model, summary):
        self.calls.append("fit")
        return super().fit(model, summary)

    def predict(self, model, summary, value):
        self.calls.append("predict")
        return super().predict(model, summary, value)

    def write_predictions(self, table, path, spec, model):
        self.calls.append("write_predictions")
        return super().write_predictions(table, path, spec, model)


class _Compressed(LocalEngine):
    """A test-only engine fitting on the compressed statistics (the interface's default fit and holdout)."""

    name = "compressed"
    fit = Engine.fit
    holdout = Engine.holdout


@pytest.fixture
def third_engines():
    engines.register(_Thin)
    engines.register(_Compressed)
    yield
    engines.unregister("thin")
    engines.unregister("compressed")


def test_a_third_engine_runs_the_pipeline_unchanged(third_engines, log_path, tmp_path):
    assert engines.available() == ["local", "spark", "compressed", "thin"]
    local = run(spec_from_options(transactions=str(log_path), predictions=str(tmp_path / "a.parquet"), **COMMON))
    thin = _Thin()
    b = run(spec_from_options(transactions=str(log_path), predictions=str(tmp_path / "b.parquet"), **COMMON), thin)
    assert thin.calls == ["summarize", "fit", "predict", "write_predictions"]
    # by name, through the spec's [data] engine, as a user would choose it
    c = run(spec_from_options(transactions=str(log_path), predictions=str(tmp_path / "c.parquet"), engine="thin",
                              **COMMON))
    for other in (b, c):
        assert other.metrics == local.metrics
        pd.testing.assert_frame_equal(pd.read_parquet(other.predictions_path), pd.read_parquet(local.predictions_path))
    # an engine fitting on the statistics (the interface's default) fits the same model
    d = run(spec_from_options(transactions=str(log_path), engine="compressed", **COMMON), save=False)
    for role in ("purchases_", "spend_"):
        np.testing.assert_allclose(getattr(d.model, role).params_.to_numpy(),
                                   getattr(local.model, role).params_.to_numpy(), rtol=1e-6)
    for key, expected in local.metrics.items():
        assert d.metrics[key] == pytest.approx(expected, rel=1e-6), key
    assert list(d.holdout.columns) == ["predicted", "actual", "count"]
    assert int(d.holdout["count"].sum()) == len(local.holdout)


def test_the_score_command_runs_through_the_engine_interface(monkeypatch, log_path, tmp_path, capsys):
    """`clv-forecast score` asks the chosen engine to score (no engine named in the command) and passes it
    only the options it takes; another engine's option given on the command line is one line, exit 2."""
    from clv_forecast import cli
    from clv_forecast.model import ClvModel
    from clv_forecast.rfm import summarize

    rfm = summarize(log_path, amount_col="amount", time_unit="W")
    model_path = ClvModel().fit(rfm).save(tmp_path / "m.json")
    rfm.reset_index().to_csv(tmp_path / "rfm.csv", index=False)
    calls = []
    original = LocalEngine.score

    def spy(self, model, input_path, output_path, **options):
        calls.append(sorted(options))
        return original(self, model, input_path, output_path, **options)

    monkeypatch.setattr(LocalEngine, "score", spy)
    base = ["score", "--model", str(model_path), "--input", str(tmp_path / "rfm.csv"), "--no-tracking"]
    assert cli.main(base + ["--output", str(tmp_path / "s.csv"), "--batch-rows", "500"]) == 0
    assert len(calls) == 1 and {"batch_rows", "verbatim_csv"} <= set(calls[0])
    assert "spark_master" not in calls[0]
    assert len(pd.read_csv(tmp_path / "s.csv")) == len(rfm)
    capsys.readouterr()
    rc = cli.main(base + ["--output", str(tmp_path / "t.csv"), "--spark-master", "local[2]"])
    err = capsys.readouterr().err
    assert rc == 2 and "--spark-master" in err and "not used with --engine local" in err
    assert err.count("\n") == 1 and len(calls) == 1 and not (tmp_path / "t.csv").exists()
    rc = cli.main(base + ["--output", str(tmp_path / "u.parquet"), "--engine", "spark", "--batch-rows", "10"])
    err = capsys.readouterr().err
    assert rc == 2 and "--batch-rows" in err and "not used with --engine spark" in err and err.count("\n") == 1


def test_the_local_statistics_compress_the_summary(log_path):
    engine = engines.get("local")
    summary = engine.summarize(engine.open(str(log_path), {}, {}), {"amount_col": "amount"},
                               calibration_end="2020-12-31")
    stats = engine.statistics(summary, {"purchases": ("frequency", "recency", "T")})
    assert int(stats["purchases"]["count"].sum()) == len(summary)
    assert int(stats["holdout"]["count"].sum()) == len(summary)
    assert int(stats["spend"]["count"].sum()) == int((summary["frequency"] > 0).sum())
    assert len(stats["purchases"]) < len(summary)


# -- the local and the Spark engine agree ------------------------------------------------------------


def test_both_engines_give_the_same_statistics_parameters_and_scores(spark, log_path, tmp_path):
    local, remote = engines.get("local"), engines.get("spark")
    options = {"amount_col": "amount", "time_unit": "W", "merge": "D"}
    data = {"spark_master": spark.sparkContext.master}
    a = local.summarize(local.open(str(log_path), data, {}), options, calibration_end="2020-12-31")
    b = remote.summarize(remote.open(str(log_path), data, {}), options, calibration_end="2020-12-31")
    from clv_forecast.model import ClvModel

    inputs = ClvModel().inputs()
    sa, sb = local.statistics(a, inputs), remote.statistics(b, inputs)
    assert set(sa) == set(sb) == {"purchases", "spend", "holdout"}
    for role in sa:
        x, y = sa[role], sb[role]
        assert list(x.columns) == list(y.columns), role
        for column in x.columns:
            np.testing.assert_allclose(y[column].to_numpy(float), x[column].to_numpy(float), rtol=1e-12,
                                       err_msg=f"{role}.{column}")
    ma, mb = local.fit(ClvModel(), a), remote.fit(ClvModel(), b)
    for role in ("purchases_", "spend_"):
        np.testing.assert_allclose(getattr(mb, role).params_.to_numpy(), getattr(ma, role).params_.to_numpy(),
                                   rtol=1e-6)
    # the automatic choice ranks the same models the same way on both engines (holdout rows from the statistics)
    auto_a, auto_b = local.fit(ClvModel(purchases="auto"), a), remote.fit(ClvModel(purchases="auto"), b)
    assert auto_a.selection_.winner == auto_b.selection_.winner and auto_a.selection_.criterion == "holdout_rmse"
    ta, tb = auto_a.selection_.table, auto_b.selection_.table
    assert list(ta.index) == list(tb.index)
    for column in ("log_likelihood", "bic", "holdout_rmse", "holdout_mae", "by_frequency_error"):
        np.testing.assert_allclose(tb[column].to_numpy(float), ta[column].to_numpy(float), rtol=1e-6, err_msg=column)
    ha, hb = local.holdout(ma, a), remote.holdout(mb, b)
    assert hb.duration == ha.duration
    assert float(np.dot(hb.weights, hb.table["actual"])) == float(ha.table["actual"].sum())
    # per-customer scores: the one batch rule set on both engines, from the same RFM table
    table = tmp_path / "rfm.parquet"
    a.reset_index()[["customer_id", "frequency", "recency", "T", "monetary_value"]].to_parquet(table, index=False)
    mine = local.score(ma, table, tmp_path / "local.parquet", interval=0.9)
    report = remote.score(ma, table, tmp_path / "spark_scores", spark_master=spark.sparkContext.master, interval=0.9)
    expected = pd.read_parquet(tmp_path / "local.parquet").set_index("customer_id").sort_index()
    got = pd.read_parquet(tmp_path / "spark_scores").set_index("customer_id").sort_index()
    assert report.scored == len(expected) and list(got.columns) == list(expected.columns)
    for column in expected.columns:
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=RTOL,
                                   err_msg=column)
    # the band of the totals: the same on both engines (Spark merges its partitions' accumulators)
    assert report.portfolio["customers"] == mine.portfolio["customers"] == len(expected)
    for q in ("expected_purchases", "clv"):
        for side in ("total", "lower", "upper"):
            assert report.portfolio[q][side] == pytest.approx(mine.portfolio[q][side], rel=1e-9), (q, side)
        assert mine.portfolio[q]["lower"] < mine.portfolio[q]["total"] < mine.portfolio[q]["upper"]
    # the pipeline's per-customer table: the band's metrics on both engines
    value = {"horizon": "12M", "discount_rate": "10%/Y", "step": "1M", "margin": 1.0, "interval": 0.9,
             "interval_method": "delta"}
    pa_, pb_ = local.predict(ma, a, value), remote.predict(ma, b, value)
    ca, cb = local.value_coverage(pa_), remote.value_coverage(pb_)
    pb_.unpersist()
    for key in ("clv_total", "clv_total_lower", "clv_total_upper", "expected_purchases_total",
                "expected_purchases_total_lower", "expected_purchases_total_upper"):
        assert cb[key] == pytest.approx(ca[key], rel=1e-9), key
    assert ca["clv_total_lower"] < ca["clv_total"] < ca["clv_total_upper"] and cb["band_level"] == 0.9


# -- the one batch rule set -------------------------------------------------------------------------


def test_one_batch_rule_set_for_arrow_and_pandas_columns():
    """The verdicts and number parsing of a batch are one function: an Arrow batch (the local scorer) and
    the same rows as pandas columns (Spark's mapInPandas) get the same reasons, in the same precedence."""
    import pyarrow as pa

    from clv_forecast._score_batch import batch_verdicts

    text = {"frequency": ["1", " 2 ", "x", "nan", None, "3", "1"],
            "recency": ["1", "2", "1", "1", "1", "4", "oops"],
            "T": ["2", "3", "3", "3", "3", "2", "3"],
            "monetary_value": ["5", "5", "5", "5", "5", "5", "5"]}
    present = np.array([True, True, True, True, True, True, False])
    duplicate = np.array([False, True, False, False, False, False, True])
    arrow = {k: pa.array(v, pa.string()) for k, v in text.items()}
    frames = {k: pd.Series(v, dtype=object) for k, v in text.items()}
    va, ra = batch_verdicts(arrow, 7, present=present, duplicate=duplicate)
    vb, rb = batch_verdicts(frames, 7, present=present, duplicate=duplicate)
    assert list(ra) == list(rb)
    assert ra[0] == "" and ra[1] == "duplicate id" and ra[2] == "frequency not numeric"
    assert ra[5] != "" and "not numeric" not in ra[5]  # an RFM rule (recency > T)
    assert ra[6] == "missing id"  # missing beats duplicate and not numeric
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name])
