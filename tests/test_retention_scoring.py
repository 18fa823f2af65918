"""``clv-forecast score`` with a retention model: a table of customers (id, renewals, optionally churned) scored
through the engine interface with p_renew, expected_remaining_lifetime, derl and residual_value, every row scored
or rejected with its reason (clv_forecast/estimators/retention/_scoring.py). The expected values are the model's
own methods and the sBG closed forms (Fader & Hardie 2007, eq. 8; 2010, eq. 6)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clv_forecast import engines
from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError
from clv_forecast.estimators.retention import _scoring
from clv_forecast.estimators.retention._data import MAX_PERIODS
from clv_forecast.estimators.retention.sbg import ShiftedBetaGeometricModel

COLUMNS = ["p_renew", "expected_remaining_lifetime", "derl", "residual_value"]


def _sbg(alpha, beta, unit="M"):
    return ShiftedBetaGeometricModel.from_params({"alpha": alpha, "beta": beta}, time_unit=unit)


@pytest.fixture
def monthly(tmp_path):
    """A monthly model with alpha > 1 (a finite expected lifetime), saved."""
    model = _sbg(1.8, 5.0)
    return model, model.save(tmp_path / "sbg.json")


def _customers(n=500, seed=3):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"customer_id": rng.permutation(np.arange(10_000, 10_000 + n)),
                         "renewals": rng.geometric(0.15, n) - 1, "churned": (rng.uniform(size=n) < 0.2).astype(int)})


def _score(model_file, source, out, *args, code=0):
    assert main(["score", "--model", str(model_file), "--input", str(source), "--output", str(out), *args]) == code


# ---- the scores ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_equal_the_models_own_methods(monthly, tmp_path, capsys, suffix):
    model, model_file = monthly
    table = _customers()
    source = tmp_path / f"customers{suffix}"
    table.to_csv(source, index=False) if suffix == ".csv" else table.to_parquet(source)
    out = tmp_path / f"scores{suffix}"
    _score(model_file, source, out, "--discount-rate", "10%/Y", "--margin", "30")
    text = capsys.readouterr().out
    scores = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(scores.columns) == ["customer_id", *COLUMNS]
    assert scores["customer_id"].astype(int).tolist() == table["customer_id"].tolist()  # all scored, in order
    n, alpha, beta = table["renewals"].to_numpy(dtype=float), 1.8, 5.0
    active = table["churned"].to_numpy() == 0
    d = 1.1 ** (1 / 12) - 1  # 10 % a year, per month
    np.testing.assert_allclose(scores["p_renew"], np.where(active, (beta + n) / (alpha + beta + n), 0), rtol=1e-14)
    np.testing.assert_allclose(scores["expected_remaining_lifetime"], np.where(active, (beta + n) / (alpha - 1), 0),
                               rtol=1e-14)
    np.testing.assert_allclose(scores["derl"], np.where(active, model.derl("10%/Y", n), 0), rtol=1e-14)
    np.testing.assert_allclose(scores["derl"], np.where(active, model.derl(d, n), 0), rtol=1e-12)
    np.testing.assert_allclose(scores["residual_value"], 30 * scores["derl"], rtol=1e-15)
    # the model's predict gives the same numbers (one kernel for every door)
    predicted = model.predict(table, "10%/Y", margin=30.0)
    np.testing.assert_array_equal(predicted["derl"].to_numpy(), scores["derl"].to_numpy())
    assert f"read {len(table)}, scored {len(table)}, rejected 0" in text
    assert f"x margin 30): {30 * scores['derl'].sum():,.2f} over {len(table)} scored rows" in text
    if suffix == ".parquet":
        meta = pq.ParquetFile(out).schema_arrow.metadata
        assert meta[b"clv_forecast.discount_rate"] == b"10%/Y" and float(meta[b"clv_forecast.margin"]) == 30.0
        assert float(meta[b"clv_forecast.discount_rate_per_period"]) == pytest.approx(d, rel=1e-12)


def test_a_heavy_tail_is_an_infinite_lifetime_and_a_finite_derl(tmp_path, capsys):
    model = _sbg(0.704, 1.182, "Y")  # FH 2007's regular segment: alpha < 1
    model_file = model.save(tmp_path / "m.json")
    source, out = tmp_path / "c.csv", tmp_path / "s.csv"
    pd.DataFrame({"customer_id": ["a", "b", "c"], "renewals": [0, 7, 3], "churned": [0, 0, 1]}).to_csv(source,
                                                                                                     index=False)
    _score(model_file, source, out, "--discount-rate", "0.1")
    scores = pd.read_csv(out)
    assert scores["expected_remaining_lifetime"].tolist() == [math.inf, math.inf, 0.0]
    np.testing.assert_allclose(scores["derl"], [model.derl(0.1, 0)[()], model.derl(0.1, 7)[()], 0.0], rtol=1e-14)
    assert "expected remaining lifetime infinite for 2 scored rows" in capsys.readouterr().out


def test_every_row_is_scored_or_rejected_with_its_reason(monthly, tmp_path, capsys):
    _, model_file = monthly
    source = tmp_path / "customers.csv"
    source.write_text("customer_id,renewals,churned\n"
                      "1,0,0\n2, 3 ,0\n3,-1,0\n4,2.5,0\n5,abc,0\n1,4,0\n,4,0\n8,3,1\n9,3,2\n10,,0\n11,3,\n"
                      "12,1e7,0\n13,inf,0\n14,nan,0\n15,3.0,0\n16,2,yes\n17,-0,1\n")
    out = tmp_path / "scores.csv"
    _score(model_file, source, out, "--max-reject-share", "1")
    rejects = pd.read_csv(tmp_path / "scores.csv.rejects.csv", dtype={"customer_id": str})
    expected = {3: "renewals negative", 4: "renewals not a whole number", 5: "renewals not numeric",
                6: "duplicate id", 7: "missing id", 9: "churned not 0 or 1", 10: "renewals missing",
                11: "churned missing", 12: f"renewals above {MAX_PERIODS:,}", 13: f"renewals above {MAX_PERIODS:,}",
                14: "renewals missing", 16: "churned not numeric"}
    assert dict(zip(rejects["row"], rejects["reason"])) == expected
    assert rejects.loc[rejects["row"] == 6, "customer_id"].item() == "1" and rejects["customer_id"].isna().sum() == 1
    scores = pd.read_csv(out)
    assert scores["customer_id"].tolist() == [1, 2, 8, 15, 17]
    assert len(scores) + len(rejects) == 17  # every row scored or rejected
    text = capsys.readouterr().out
    assert "read 17, scored 5, rejected 12" in text and "renewals negative: 1" in text


def test_batches_do_not_change_the_scores_and_duplicates_span_batches(monthly, tmp_path):
    _, model_file = monthly
    table = _customers(300)
    table.loc[250, "customer_id"] = table.loc[5, "customer_id"]  # a repeat 245 rows later: another batch
    source = tmp_path / "c.parquet"
    table.to_parquet(source)
    _score(model_file, source, tmp_path / "one.parquet")
    _score(model_file, source, tmp_path / "many.parquet", "--batch-rows", "7")
    one, many = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "many.parquet")
    pd.testing.assert_frame_equal(one, many, check_exact=True)
    assert len(one) == 299 and one["customer_id"].dtype == np.int64
    rejects = pd.read_csv(tmp_path / "many.parquet.rejects.csv")
    assert rejects.to_dict("records") == [{"row": 251, "customer_id": table.loc[5, "customer_id"],
                                           "reason": "duplicate id"}]


def test_too_many_rejects_publishes_the_rejects_only(monthly, tmp_path, capsys):
    _, model_file = monthly
    table = _customers(100)
    table.loc[:9, "renewals"] = -1
    source, out = tmp_path / "c.csv", tmp_path / "s.csv"
    table.to_csv(source, index=False)
    _score(model_file, source, out, code=4)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "10 of 100 rows rejected" in err and "output not written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "s.csv.rejects.csv", "sbg.json"]


# ---- what does not apply ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--horizon", "2Y"], "--horizon: not used with a retention model (sBG)"),
    (["--step", "1Y"], "--step: not used with a retention model (sBG)"),
    (["--interval", "0.9"], "--interval: not used with a retention model (sBG)"),
    (["--time-unit", "W"], "--time-unit: not used with a retention model (sBG)"),
    (["--engine", "spark"], "the Spark engine scores the RFM tables of purchase models, not a retention model's "
                            "table; score it with --engine local"),
    (["--discount-rate", "0"], "--discount-rate 0.0: must be at least 1e-06 per period"),
    (["--margin", "nan"], "--margin nan: must be a finite number"),
])
def test_options_that_do_not_apply_are_one_line_and_nothing_is_written(monthly, tmp_path, capsys, args, fragment):
    _, model_file = monthly
    source = tmp_path / "c.csv"
    _customers(20).to_csv(source, index=False)
    _score(model_file, source, tmp_path / "s.csv", *args, code=2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "sbg.json"]


def test_a_log_and_a_table_without_renewals_are_refused(monthly, tmp_path, capsys):
    _, model_file = monthly
    log = tmp_path / "log.csv"
    log.write_text("customer_id,date\n1,2020-01-01\n")
    assert main(["score", "--model", str(model_file), "--transactions", str(log), "--output",
                 str(tmp_path / "s.csv")]) == 2
    assert "give --input (the id, renewals and optionally churned), not --transactions" in capsys.readouterr().err
    rfm = tmp_path / "rfm.csv"
    rfm.write_text("customer_id,frequency,recency,T\n1,2,3,4\n")
    _score(model_file, rfm, tmp_path / "s.csv", code=2)
    assert "column(s) 'renewals' not found" in capsys.readouterr().err


def test_a_rate_with_its_period_needs_the_models_period(tmp_path, capsys):
    model = ShiftedBetaGeometricModel.from_params({"alpha": 2.0, "beta": 3.0})  # no time unit
    model_file = model.save(tmp_path / "m.json")
    source = tmp_path / "c.csv"
    pd.DataFrame({"customer_id": [1, 2], "renewals": [0, 4]}).to_csv(source, index=False)
    _score(model_file, source, tmp_path / "s.csv", code=2)  # the default rate, 10%/Y
    err = capsys.readouterr().err
    assert "--discount-rate 10%/Y: the model's period has no time unit" in err and err.count("\n") == 1
    _score(model_file, source, tmp_path / "s.csv", "--discount-rate", "0.05")
    np.testing.assert_allclose(pd.read_csv(tmp_path / "s.csv")["derl"], model.derl(0.05, [0, 4]), rtol=1e-14)


def test_an_engine_that_cannot_score_a_retention_model_says_so(monthly, tmp_path):
    class Elsewhere(engines.Engine):
        name = "elsewhere"

    _, model_file = monthly
    with pytest.raises(ClvInputError, match="the elsewhere engine cannot score a retention model; use engine='local'"):
        Elsewhere().score_retention(model_file, tmp_path / "c.csv", tmp_path / "s.csv")
    assert engines.get("local").score_retention.__func__ is not engines.Engine.score_retention


# ---- the one kernel: verdicts and scores to the extremes ---------------------------------------------------------

_VALUES = st.one_of(st.integers(-5, 60), st.integers(MAX_PERIODS - 2, MAX_PERIODS + 2),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, -0.0, 1e300, 3.0]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(alpha=st.floats(-8, 12), beta=st.floats(-8, 12), log_d=st.floats(-6, 1),
       renewals=st.lists(_VALUES, min_size=1, max_size=12), flags=st.lists(st.sampled_from([0, 1, 2, np.nan]),
                                                                             min_size=12, max_size=12),
       margin=st.floats(-1e6, 1e6))
def test_every_value_is_a_finite_score_or_a_reason(alpha, beta, log_d, renewals, flags, margin):
    model = _sbg(10.0 ** alpha, 10.0 ** beta)
    d = 10.0 ** log_d
    r = pd.Series(np.asarray(renewals, dtype=float))
    c = pd.Series(np.asarray(flags[:len(renewals)], dtype=float))
    values, churned, reason = _scoring.renewal_verdicts(r, c)
    valid = reason == ""
    whole = np.isfinite(values) & (values >= 0) & (values == np.floor(values)) & (values <= MAX_PERIODS)
    assert np.array_equal(valid, whole & np.isin(churned, [0.0, 1.0]))
    assert all(text.split(" ")[0] in ("renewals", "churned") for text in reason[~valid])
    if not valid.any():
        return
    scores = _scoring.customer_scores(model, values[valid], churned[valid], d=d, margin=margin)
    for name in ("p_renew", "derl", "residual_value"):
        assert np.all(np.isfinite(scores[name])), name
    assert np.all((scores["p_renew"] >= 0) & (scores["p_renew"] <= 1)) and np.all(scores["derl"] >= 0)
    life = scores["expected_remaining_lifetime"].to_numpy()
    assert np.all(life >= 0) and not np.any(np.isnan(life))
    assert np.all(np.isfinite(life) | (10.0 ** alpha <= 1.0))
    np.testing.assert_array_equal(scores["residual_value"], margin * scores["derl"])
    active = churned[valid] == 0
    np.testing.assert_array_equal(scores["derl"].to_numpy()[active], model.derl(d, values[valid][active]))
    assert np.all(scores.to_numpy()[~active] == 0)


def test_the_pyfunc_frame_refuses_a_bad_row_in_one_line():
    model = _sbg(2.0, 3.0)
    frame = pd.DataFrame({"renewals": [0, 3, -2, 5, -1]})
    with pytest.raises(ClvInputError) as caught:
        _scoring.predict_frame(model, frame, "0.1")
    assert str(caught.value) == "model input: column 'renewals', rows 3, 5 (values: -2, -1): negative"
    with pytest.raises(ClvInputError, match="column 'renewals' not found"):
        _scoring.predict_frame(model, pd.DataFrame({"frequency": [1]}))
    got = _scoring.predict_frame(model, pd.DataFrame({"renewals": [0, 4], "churned": [0, 1]}), "0.1", 2.0)
    np.testing.assert_allclose(got["residual_value"], [2.0 * model.derl(0.1, 0)[()], 0.0], rtol=1e-15)


# ---- an interrupted run -------------------------------------------------------------------------------------


def test_sigterm_while_writing_leaves_no_file(monthly, tmp_path):
    _, model_file = monthly
    rng = np.random.default_rng(0)
    source = tmp_path / "big.parquet"
    pd.DataFrame({"customer_id": np.arange(3_000_000), "renewals": rng.geometric(0.1, 3_000_000) - 1}).to_parquet(
        source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = "from clv_forecast.cli import console_main; console_main()"
    process = subprocess.Popen([sys.executable, "-c", code, "score", "--model", str(model_file), "--input",
                                str(source), "--output", str(out_dir / "s.parquet"), "--batch-rows", "5000"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, CLV_FORECAST_TRACKING="off"))
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".s.parquet.") for p in out_dir.iterdir()):
            assert process.poll() is None, "the run ended before it could be signalled"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be signalled"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143 and err.strip() == "clv-forecast: terminated"
    assert list(out_dir.iterdir()) == []  # no scores, no rejects, no temporary file
