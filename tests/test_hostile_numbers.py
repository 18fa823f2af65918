"""Issue 17, numbers: every score finite or rejected with its reason, parameters bounded where the
formulas are finite and fast, no hang or memory blow-up at extreme settings, one-line errors instead of
tracebacks (model files, amounts, intervals)."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from clv_forecast.btyd import bgnbd
from clv_forecast.btyd.bgnbd import BetaGeoModel
from clv_forecast.btyd.gamma_gamma import GammaGammaModel
from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError, UnreliableFitError
from clv_forecast.experiment import value_coverage
from clv_forecast.model import ClvModel
from clv_forecast.report import coverage_line
from clv_forecast.scoring import UNBOUNDED_SPEND, ZERO_SPEND, nonfinite_reasons, score_file

PURCHASES = {"r": 0.243, "alpha": 4.41, "a": 0.793, "b": 2.43}
SPEND = {"p": 6.25, "q": 3.74, "v": 15.44}
COV4 = np.diag([1e-4, 1e-2, 1e-3, 1e-2])
COV3 = np.diag([1e-2, 1e-2, 1e-1])


def _table(n=200, seed=0, one_time_share=0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.where(rng.uniform(size=n) < one_time_share, 0, rng.integers(1, 15, n)).astype(float)
    big_t = rng.integers(1, 70 * 7, n) / 7
    recency = np.where(x > 0, np.floor(big_t * rng.uniform(size=n) * 7) / 7, 0.0)
    m = np.where(x > 0, rng.uniform(5, 60, n).round(2), 0.0)
    return pd.DataFrame({"customer_id": np.arange(1, n + 1), "frequency": x, "recency": recency, "T": big_t,
                         "monetary_value": m})


def _model_file(tmp_path, purchases=PURCHASES, spend=SPEND, name="model.json", cov=False):
    model = ClvModel.from_params(purchases=purchases, spend=spend, time_unit="W",
                                 purchases_cov=COV4 if cov else None, spend_cov=COV3 if cov else None)
    return model.save(tmp_path / name)


def _edit_model(tmp_path, edit, name="edited.json") -> str:
    data = json.loads(_model_file(tmp_path).read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _one_line_error(capsys, *parts) -> str:
    err = capsys.readouterr().err
    assert err.startswith("clv-forecast: error: ") and err.count("\n") == 1, err[:2000]
    assert "Traceback" not in err
    for part in parts:
        assert part in err, err
    return err


# -- 1. non-finite scores are rejects --------------------------------------------------------------


def test_unbounded_spend_rows_are_rejects_not_scores(tmp_path, capsys):
    """Gamma-Gamma q <= 1 is a valid model; one-time buyers then have no finite expected spend: each such
    row is a reject with its reason, in the rejects file and the threshold, never a scored inf/NaN."""
    model = _model_file(tmp_path, spend={"p": 0.05, "q": 0.8, "v": 15.44})
    table = _table()
    table.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"
    rc = main(["score", "--model", str(model), "--input", str(tmp_path / "in.csv"), "--output", str(out)])
    assert rc == 4  # more than 1 % rejected: nothing published
    assert not out.exists()
    expected = (0.05 * table["frequency"] + 0.8 <= 1).sum()
    assert expected > 50
    rejects = pd.read_csv(tmp_path / "out.csv.rejects.csv")
    assert len(rejects) == expected and set(rejects["reason"]) == {UNBOUNDED_SPEND}
    assert list(rejects["row"]) == [i + 1 for i in np.flatnonzero(0.05 * table["frequency"] + 0.8 <= 1)]
    assert f"{expected} of 200 rows rejected" in capsys.readouterr().err

    rc = main(["score", "--model", str(model), "--input", str(tmp_path / "in.csv"), "--output", str(out),
               "--max-reject-share", "1"])
    assert rc == 0
    scores = pd.read_csv(out)
    assert len(scores) + expected == 200
    assert np.isfinite(scores.drop(columns="customer_id").to_numpy()).all()
    assert f"read 200, scored {200 - expected}, rejected {expected}" in capsys.readouterr().out


def test_zero_spend_and_overflowing_times_are_rejects(tmp_path):
    """A repeat buyer with a zero mean spend (NaN spend) and a T that overflows when converted to the
    model's unit (1e307 years in weeks) are rejects with their reasons; every other row is scored."""
    table = _table(n=50, one_time_share=0.0)
    table.loc[3, "monetary_value"] = 0.0
    table.loc[7, ["recency", "T"]] = [1e307, 1e307]
    table.to_parquet(tmp_path / "in.parquet", index=False)
    model = ClvModel.from_params(purchases=PURCHASES, spend=SPEND, time_unit="W")
    report = score_file(model, tmp_path / "in.parquet", tmp_path / "out.parquet", time_unit="Y",
                        max_reject_share=1.0)
    assert (report.read, report.scored, report.rejected) == (50, 48, 2)
    rejects = pd.read_csv(tmp_path / "out.parquet.rejects.csv")
    assert dict(zip(rejects["row"], rejects["reason"])) == {4: ZERO_SPEND, 8: "score not finite (expected_purchases)"}
    scores = pd.read_parquet(tmp_path / "out.parquet")
    assert np.isfinite(scores.drop(columns="customer_id").to_numpy()).all() and len(scores) == 48


def test_nonfinite_interval_bound_is_a_reject():
    scores = pd.DataFrame({"expected_purchases": [1.0, 1.0, np.nan], "p_alive": [0.5, 0.5, 0.5],
                           "expected_spend": [3.0, 3.0, 3.0], "clv": [2.0, 2.0, 2.0],
                           "clv_lower": [1.0, 1.0, 1.0], "clv_upper": [3.0, np.inf, 3.0]})
    assert list(nonfinite_reasons(scores, list(scores.columns))) == [
        "", "score not finite (clv_upper)", "score not finite (expected_purchases)"]


def test_spark_scorer_rejects_nonfinite_rows_too():
    """The Spark engine's per-partition function (run here on pandas frames, without a JVM) gives the same
    reasons and null numbers for rows whose scores are not finite."""
    from clv_forecast.spark.scoring import _score_frames

    model = ClvModel.from_params(purchases=PURCHASES, spend={"p": 0.05, "q": 0.8, "v": 15.44}, time_unit="W")
    table = _table(n=40)
    fn = _score_frames(json.loads(model.to_json()), "customer_id", None,
                       dict(horizon="12M", discount_rate="0%/Y", step="1M", margin=1.0, interval=None))
    out = pd.concat(list(fn(iter([table]))))
    unbounded = (0.05 * table["frequency"] + 0.8 <= 1).to_numpy()
    assert (out["reject_reason"].to_numpy()[unbounded] == UNBOUNDED_SPEND).all()
    assert out["reject_reason"][~unbounded].isna().all()
    assert out.loc[unbounded, "clv"].isna().all() and np.isfinite(out.loc[~unbounded, "clv"]).all()


def test_per_customer_table_counts_every_nonfinite_value():
    """fit --predictions: the total-CLV line counts and explains the customers without a finite CLV and
    those whose other predictions (an interval bound) are not finite."""
    table = pd.DataFrame({"expected_purchases": [1.0, 1.0, 1.0, np.nan], "p_alive": [0.5] * 4,
                          "expected_spend": [3.0, np.inf, 3.0, 3.0], "clv": [2.0, np.inf, 2.0, np.nan],
                          "clv_lower": [1.0, 1.0, 1.0, 1.0], "clv_upper": [3.0, np.inf, np.inf, 3.0]})
    metrics = value_coverage(table)
    assert metrics["clv_missing"] == 2 and metrics["clv_missing_infinite_spend"] == 1
    assert metrics["clv_missing_other"] == 1 and metrics["scores_nonfinite"] == 1
    line = coverage_line(metrics, {"horizon": "12M", "discount_rate": "10%/Y", "margin": 1.0})
    assert "2 customers have no CLV" in line and "1 whose CLV is not a finite number" in line
    assert "1 customers with a CLV have another prediction that is not finite" in line


# -- 2. parameters bounded at load -------------------------------------------------------------------


@pytest.mark.parametrize("field, value, bound", [("r", 1e308, "above 1000"), ("b", 1e300, "above 1e+15"),
                                                 ("alpha", 1e-300, "below 1e-08"), ("a", 1e-20, "below 1e-08")])
def test_model_file_parameters_outside_bounds_are_refused(tmp_path, capsys, field, value, bound):
    path = _edit_model(tmp_path, lambda d: d["purchases"]["params"].__setitem__(field, value))
    rc = main(["score", "--model", path, "--input", str(tmp_path / "none.csv"), "--output",
               str(tmp_path / "o.csv"), "--interval", "0.9"])
    assert rc == 2
    _one_line_error(capsys, path, f"purchases.params.{field}", bound)
    assert not (tmp_path / "o.csv").exists()


def test_from_params_bounds_and_q_below_one_is_valid():
    with pytest.raises(ClvInputError, match=r"BG/NBD parameter r = 1e\+308: above 1000"):
        ClvModel.from_params(purchases={**PURCHASES, "r": 1e308}, spend=SPEND)
    with pytest.raises(ClvInputError, match=r"Gamma-Gamma parameter v = 1e\+308: above 1e\+300"):
        GammaGammaModel.from_params({**SPEND, "v": 1e308})
    ClvModel.from_params(purchases=PURCHASES, spend={**SPEND, "q": 0.5})  # valid: rows rejected, not the model


def test_save_never_writes_what_load_refuses(tmp_path):
    model = ClvModel.from_params(purchases=PURCHASES, spend=SPEND)
    model.purchases_.params_["b"] = 4e15  # as a runaway fit could end
    with pytest.raises(UnreliableFitError, match=r"purchases\.params\.b = 4000000000000000\.0: above 1e\+15"):
        model.save(tmp_path / "m.json", allow_unreliable=True)
    assert not (tmp_path / "m.json").exists()


def test_fit_outside_bounds_is_unreliable():
    model = BetaGeoModel.from_params(PURCHASES)
    model.result_.source = "fit"
    model.result_.params["r"] = 5e3
    model.result_.cov = np.eye(4) * 1e-4
    assert any("outside the range a model file may hold" in p for p in model.problems_)


@pytest.mark.parametrize("unit", ["1e308Y", "1e-30s", "2000Y"])
def test_absurd_time_unit_is_one_line(tmp_path, capsys, unit):
    model = _model_file(tmp_path)
    _table(20).to_csv(tmp_path / "in.csv", index=False)
    rc = main(["score", "--model", str(model), "--input", str(tmp_path / "in.csv"), "--output",
               str(tmp_path / "o.csv"), "--time-unit", unit])
    assert rc == 2
    _one_line_error(capsys, f"--time-unit {unit}", "from 1ns to 1000Y")
    assert not (tmp_path / "o.csv").exists()


def test_huge_time_unit_in_model_file_is_shortened(tmp_path, capsys):
    path = _edit_model(tmp_path, lambda d: d.__setitem__("time_unit", "W" * 5_000_000))
    rc = main(["score", "--model", path, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv")])
    assert rc == 2
    err = _one_line_error(capsys, path, "time_unit")
    assert len(err) < 400


# -- 3. extreme parameters cost what ordinary ones cost --------------------------------------------


def _scored_in(tmp_path, purchases, interval=False):
    model = _model_file(tmp_path, purchases=purchases, cov=interval, name="extreme.json")
    table = _table(n=10_000, seed=3)
    table["T"] += np.random.default_rng(4).uniform(0, 1, len(table))  # continuous T: every pair distinct
    table.to_parquet(tmp_path / "in.parquet", index=False)
    started = time.perf_counter()
    report = score_file(model, tmp_path / "in.parquet", tmp_path / "out.parquet",
                        interval=0.9 if interval else None)
    return time.perf_counter() - started, report, pd.read_parquet(tmp_path / "out.parquet"), table


@pytest.mark.parametrize("purchases", [{**PURCHASES, "a": 8.2e5, "b": 4.2e12}, {**PURCHASES, "b": 1e15},
                                       {**PURCHASES, "a": 1e15, "b": 1e15}])
def test_extreme_parameters_score_fast_and_finite(tmp_path, purchases):
    """b = 1e300 (now refused at load) and a = 8.2e5, b = 4.2e12 (saved by the tool itself) fell back to a
    per-row quadrature: 30 rows/s. 10k customers with distinct T now take a fraction of a second."""
    seconds, report, scores, _ = _scored_in(tmp_path, purchases)
    assert report.scored == 10_000 and seconds < 3.0, seconds
    assert np.isfinite(scores.drop(columns="customer_id").to_numpy()).all()


def test_extreme_parameters_with_interval_cost_what_ordinary_ones_cost():
    """With --interval (200 parameter draws) the extreme model gave no answer in 60 s; now it costs what the
    ordinary model costs on the same customers (every (x, T) pair distinct)."""
    table = _table(n=1_000, seed=3).set_index("customer_id")
    table["T"] += np.random.default_rng(4).uniform(0, 1, len(table))
    table.attrs["time_unit"] = "W"
    seconds = {}
    for name, purchases in (("ordinary", PURCHASES), ("extreme", {**PURCHASES, "a": 8.2e5, "b": 4.2e12})):
        model = ClvModel.from_params(purchases=purchases, spend=SPEND, time_unit="W", purchases_cov=COV4,
                                     spend_cov=COV3)
        started = time.perf_counter()
        out = model.clv(table, interval=0.9)
        seconds[name] = time.perf_counter() - started
        assert np.isfinite(out.to_numpy()).all()
        assert (out["clv_lower"] <= out["clv_upper"]).all()
    assert seconds["extreme"] < 3 * seconds["ordinary"] + 1.0, seconds


@pytest.mark.parametrize("a, b", [(8.2e5, 4.2e12), (0.8, 1e15), (5.0, 1e8), (0.3, 1e5)])
def test_extreme_parameters_agree_with_quadrature(a, b):
    """The values at the boundary agree with the integral over the dropout probability (quadrature)."""
    x, big_t = (v.ravel() for v in np.meshgrid([0.0, 1, 4, 30], [0.0, 0.5, 10, 80], indexing="ij"))
    for t in (1e-4, 4.3, 52.0, 520.0):
        got = bgnbd._expected_if_alive(t, x, big_t, 0.243, 4.41, a, b, dedupe=False)
        ref = bgnbd._if_alive_by_quadrature(np.full_like(x, t), x, big_t, 0.243, 4.41, a, b)
        np.testing.assert_allclose(got, ref, rtol=1e-7)


def test_no_dropout_limit():
    """b -> inf: no dropout, the expected purchases of an active customer are (r + x) t / (alpha + T)."""
    x, big_t, t = np.array([0.0, 3, 10]), np.array([0.0, 20, 50]), 52.0
    got = bgnbd._expected_if_alive(t, x, big_t, 0.243, 4.41, 0.8, 1e15, dedupe=False)
    np.testing.assert_allclose(got, (0.243 + x) * t / (4.41 + big_t), rtol=1e-6)


def test_geometric_limit():
    """a, b -> inf with a/(a+b) = mu fixed: the dropout probability is mu for everybody, and the expected
    purchases of an active customer are (1 - (1 + mu s)^-(r+x)) / mu with s = t / (alpha + T)."""
    x, big_t, t = np.array([0.0, 3, 10]), np.array([0.0, 20, 50]), 52.0
    got = bgnbd._expected_if_alive(t, x, big_t, 0.243, 4.41, 1e15, 3e15, dedupe=False)
    mu, s = 0.25, t / (4.41 + big_t)
    np.testing.assert_allclose(got, -np.expm1(-(0.243 + x) * np.log1p(mu * s)) / mu, rtol=1e-8)  # hyp2f1: ~1e-9 here


@settings(max_examples=60, deadline=None)
@given(x=st.integers(0, 50), big_t=st.floats(0, 200), t=st.floats(1e-6, 100),
       r=st.floats(0.01, 20), alpha=st.floats(0.01, 100), a=st.floats(0.05, 50), log_b=st.floats(3, 15))
def test_series_agrees_with_quadrature_where_it_serves(x, big_t, t, r, alpha, a, log_b):
    b = 10.0**log_b
    xa, ta, tt = np.array([float(x)]), np.array([big_t]), np.array([t])
    value, served = bgnbd._if_alive_series(tt, xa, ta, r, alpha, a, b)
    if served[0]:
        ref = bgnbd._if_alive_by_quadrature(tt, xa, ta, r, alpha, a, b)[0]
        assert value[0] == pytest.approx(ref, rel=1e-8)


# -- 4. the number of discount steps is bounded ------------------------------------------------------


@pytest.mark.parametrize("args, named", [(["--step", "1s"], "--step 1s: 12M in steps of 1s is 31,557,600 steps"),
                                         (["--horizon", "100000Y"], "--horizon 100000Y: 100000Y in steps of 1M is "
                                                                    "1,200,000 steps"),
                                         (["--horizon", "1e308Y"], "--horizon 1e308Y")])
def test_too_many_steps_is_one_line(tmp_path, capsys, args, named):
    model = _model_file(tmp_path)
    _table(20).to_csv(tmp_path / "in.csv", index=False)
    rc = main(["score", "--model", str(model), "--input", str(tmp_path / "in.csv"), "--output",
               str(tmp_path / "o.csv"), *args])
    assert rc == 2
    _one_line_error(capsys, named, "at most 10,000")
    assert not (tmp_path / "o.csv").exists()


def test_daily_steps_over_ten_years_pass_in_bounded_memory(monkeypatch):
    from clv_forecast import value

    model = ClvModel.from_params(purchases=PURCHASES, spend=SPEND, time_unit="W")
    table = _table(n=300).set_index("customer_id")
    table.attrs["time_unit"] = "W"
    seen = []
    real = bgnbd.BetaGeoModel._expected_if_alive  # the model's kernel k(params, times, x, T)

    def spy(params, t, x, *args, **kwargs):
        seen.append(np.size(t) * np.size(x))
        return real(params, t, x, *args, **kwargs)

    monkeypatch.setattr(bgnbd.BetaGeoModel, "_expected_if_alive", staticmethod(spy))
    monkeypatch.setattr(value, "_VALUES_PER_SLICE", 40_000)
    out = model.clv(table, horizon="3653D", step="1D")
    assert np.isfinite(out["clv"]).all() and max(seen) <= 40_000
    whole = model.clv(table, horizon="3653D", step="3653D")  # one step: the same total expected purchases
    assert out["expected_purchases"].to_numpy() == pytest.approx(whole["expected_purchases"].to_numpy(), rel=1e-12)


# -- 5. tracebacks become one line -------------------------------------------------------------------


@pytest.mark.parametrize("text, reason", [("[" * 100_000 + "]" * 100_000, "nested too deep"),
                                          ('{"format": ' + "1" * 100_000 + "}", "cannot read model file")])
def test_hostile_model_json_is_one_line(tmp_path, capsys, text, reason):
    path = tmp_path / "hostile.json"
    path.write_text(text)
    rc = main(["score", "--model", str(path), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv")])
    assert rc == 2
    err = _one_line_error(capsys, str(path), reason)
    assert len(err) < 400


def test_huge_amounts_fit_is_one_line_naming_the_column(tmp_path, capsys, cdnow_csv):
    log = pd.read_csv(cdnow_csv)
    log["amount"] = log["amount"] * 1e200
    log.to_csv(tmp_path / "huge.csv", index=False)
    rc = main(["fit", "--transactions", str(tmp_path / "huge.csv"), "--amount-col", "amount",
               "--output", str(tmp_path / "m.json")])
    assert rc == 2
    _one_line_error(capsys, "column 'monetary_value'", "rows ", "outside 1e-150 to 1e150")
    assert not (tmp_path / "m.json").exists()


def test_large_amounts_fit_in_their_own_unit(cdnow_rfm):
    """The Gamma-Gamma fit is equivariant in the unit of money: amounts x 2^200 give the same p, q and
    v x 2^200 (the fit runs on rescaled spends)."""
    base = GammaGammaModel().fit(cdnow_rfm)
    scaled = GammaGammaModel().fit(cdnow_rfm.assign(monetary_value=cdnow_rfm["monetary_value"] * 2.0**200))
    assert scaled.params_["p"] == pytest.approx(base.params_["p"], rel=1e-7)
    assert scaled.params_["q"] == pytest.approx(base.params_["q"], rel=1e-7)
    assert scaled.params_["v"] / 2.0**200 == pytest.approx(base.params_["v"], rel=1e-7)
    assert scaled.result_.bse["v"] / 2.0**200 == pytest.approx(base.result_.bse["v"], rel=1e-5)
    assert not scaled.problems_


def test_tiny_alpha_with_interval_is_one_line(tmp_path, capsys):
    path = _edit_model(tmp_path, lambda d: d["purchases"]["params"].__setitem__("alpha", 1e-300))
    _table(20).to_csv(tmp_path / "in.csv", index=False)
    rc = main(["score", "--model", path, "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o.csv"),
               "--interval", "0.9"])
    assert rc == 2
    _one_line_error(capsys, "purchases.params.alpha", "below 1e-08")


def test_interval_draws_stay_within_bounds():
    model = BetaGeoModel.from_params({**PURCHASES, "b": 9e14}, cov=np.diag([1e-4, 1e-2, 1e-3, 1e30]))
    draws = model.result_.draws(500, seed=1, bounds=model.param_bounds)
    assert np.isfinite(draws).all() and draws[:, 3].max() <= 1e15 and draws.min() > 0


def test_step_beyond_the_time_units_range_names_the_step():
    from clv_forecast.value import discount_schedule

    with pytest.raises(ClvInputError) as info:
        discount_schedule("W", "2000Y", "2000Y", "10%/Y")
    assert info.value.argument == "step" and "from 1ns to 1000Y" in str(info.value)


@pytest.mark.parametrize("spec_file", [False, True])
def test_too_many_steps_in_a_fit_are_refused_before_any_work(tmp_path, capsys, monkeypatch, spec_file):
    """fit and run check the CLV settings with the files, before the log is read (not after the fit)."""
    from clv_forecast import rfm

    def no_summary(*args, **kwargs):
        raise AssertionError("the log was read before the settings were checked")

    monkeypatch.setattr(rfm, "summarize", no_summary)
    log = tmp_path / "log.csv"
    log.write_text("customer_id,date,amount\n1,2020-01-01,5\n")
    if spec_file:
        spec = tmp_path / "spec.toml"
        spec.write_text('[data]\nsource = "log.csv"\namount_col = "amount"\n[value]\nstep = "1s"\n')
        rc = main(["run", "--experiment", str(spec)])
        named = "[value] step"
    else:
        rc = main(["fit", "-t", str(log), "--amount-col", "amount", "--step", "1s", "--horizon", "100000Y",
                   "--predictions", str(tmp_path / "p.csv")])
        named = "--step 1s"
    assert rc == 2
    _one_line_error(capsys, named, "at most 10,000")
