"""Streaming batch scoring (clv_forecast.scoring) and the ``score`` command."""

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv_forecast.btyd._data import RFM_RULES, rfm_verdict, verdict_reasons
from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError
from clv_forecast.model import ClvModel
from clv_forecast.scoring import score_file
from helpers import kill_when_writing, simulated_rfm_table  # noqa: E402 (tests folder)

COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value"]


@pytest.fixture(scope="module")
def model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm)


@pytest.fixture(scope="module")
def table(cdnow_rfm):
    return cdnow_rfm.reset_index()[COLUMNS]


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("model") / "model.json")


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


# -- the verdict (seam 7) --------------------------------------------------------------------


def test_verdict_codes_follow_the_rules_in_order():
    x = np.array([1, np.nan, 1.5, 2, 2, 2, 0, 1, 1])
    t = np.array([1, 1, 1, -1, 1, 5, 1, 1, 1])
    big_t = np.array([2, 2, 2, 2, -1, 4, 2, 2, 2])
    m = np.array([5, 5, 5, 5, 5, 5, 5, -1, np.nan])
    codes = rfm_verdict(x, t, big_t, m)
    assert list(verdict_reasons(codes)) == [
        "", "frequency missing or non-finite value", "frequency not a non-negative whole number",
        "recency negative", "T negative", "recency greater than T", "recency non-zero for a customer with frequency 0",
        "monetary_value negative", "monetary_value missing or non-finite value"]
    assert rfm_verdict(x[:1], t[:1], big_t[:1]).tolist() == [0]
    assert len(RFM_RULES) == codes.max()  # the monetary rules last


def test_rfm_arrays_raises_from_the_verdict_with_all_rows_of_the_first_rule():
    from clv_forecast.btyd._data import rfm_arrays

    with pytest.raises(ClvInputError, match=r"column 'recency', rows 2, 3 .*greater than T"):
        rfm_arrays(frequency=[1, 1, 1, 0], recency=[1, 5, 6, 1], T=[2, 2, 2, 2])  # row 4 breaks a later rule


# -- scores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind_in, kind_out", [(".parquet", ".parquet"), (".csv", ".csv"),
                                               (".csv", ".parquet"), (".parquet", ".csv")])
def test_scores_equal_clv_model_on_cdnow(model, table, cdnow_rfm, tmp_path, kind_in, kind_out):
    source = _write(table, tmp_path / f"in{kind_in}")
    report = score_file(model, source, tmp_path / f"out{kind_out}", horizon="12M", discount_rate="10%/Y")
    assert (report.read, report.scored, report.rejected, report.reasons) == (len(table), len(table), 0, {})
    out = _read(tmp_path / f"out{kind_out}")
    expected = model.clv(cdnow_rfm, horizon="12M", discount_rate="10%/Y")
    assert list(out.columns) == ["customer_id", "expected_purchases", "p_alive", "expected_spend", "clv"]
    # ids keep their type; a CSV's ids are text (leading zeros kept)
    assert out["customer_id"].astype(str).tolist() == table["customer_id"].astype(str).tolist()
    for name in expected.columns:
        np.testing.assert_allclose(out[name].to_numpy(), expected[name].to_numpy(), rtol=1e-12, atol=1e-12)


def test_small_batches_give_the_one_batch_result_with_an_interval(model, table, tmp_path):
    source = _write(table, tmp_path / "in.parquet")
    one = score_file(model, source, tmp_path / "one.parquet", interval=0.9, batch_rows=10**6)
    many = score_file(model, source, tmp_path / "many.parquet", interval=0.9, batch_rows=97)
    assert one.read == many.read == len(table)
    a, b = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "many.parquet")
    assert {"clv_lower", "clv_upper"} <= set(a.columns)
    pd.testing.assert_frame_equal(a, b)
    csv_source = _write(table, tmp_path / "in.csv")
    score_file(model, csv_source, tmp_path / "many_csv.parquet", interval=0.9, batch_rows=50)
    from_csv = pd.read_parquet(tmp_path / "many_csv.parquet")
    assert from_csv["customer_id"].tolist() == a["customer_id"].astype(str).tolist()  # CSV ids are text
    pd.testing.assert_frame_equal(a.drop(columns="customer_id"), from_csv.drop(columns="customer_id"))


def test_model_given_as_a_file_and_time_unit_converted(model, model_file, table, cdnow_rfm, tmp_path):
    days = table.assign(recency=table["recency"] * 7, T=table["T"] * 7)
    source = _write(days, tmp_path / "days.parquet")
    score_file(str(model_file), source, tmp_path / "out.parquet", time_unit="D")
    out = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_allclose(out["clv"], model.clv(cdnow_rfm)["clv"], rtol=1e-12)


# -- rejects ---------------------------------------------------------------------------------


def _with_bad_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    bad = table.head(40).copy().astype(object)
    expected = {}

    def spoil(row, column, value, reason):
        bad.loc[row, column] = value
        expected[row + 1] = reason

    spoil(1, "customer_id", None, "missing id")
    spoil(2, "customer_id", bad.loc[0, "customer_id"], "duplicate id")
    spoil(3, "recency", -1.0, "recency negative")
    spoil(4, "recency", 1000.0, "recency greater than T")
    spoil(5, "frequency", "abc", "frequency not numeric")
    spoil(6, "T", None, "T missing or non-finite value")
    spoil(7, "monetary_value", -3.0, "monetary_value negative")
    spoil(8, "frequency", 1.5, "frequency not a non-negative whole number")
    spoil(9, "T", -2.0, "T negative")
    spoil(10, "frequency", 0, "recency non-zero for a customer with frequency 0")
    spoil(11, "monetary_value", "inf", "monetary_value missing or non-finite value")
    return bad, expected


@pytest.mark.parametrize("kind", [".csv", ".parquet"])
def test_every_reject_reason_with_its_row(model, table, tmp_path, kind):
    bad, expected = _with_bad_rows(table)
    if kind == ".parquet":  # Parquet columns are typed: the non-numeric value is a CSV-only case
        bad.loc[5, "frequency"] = table.loc[5, "frequency"]
        del expected[6]
        for name in ["frequency", "recency", "T", "monetary_value"]:
            bad[name] = pd.to_numeric(bad[name])
        bad["customer_id"] = bad["customer_id"].astype("Int64")
    source = _write(bad, tmp_path / f"bad{kind}")
    report = score_file(model, source, tmp_path / "out.csv", max_reject_share=1.0, batch_rows=7)
    rejects = pd.read_csv(tmp_path / "out.csv.rejects.csv")
    assert dict(zip(rejects["row"], rejects["reason"])) == expected
    assert report.rejected == len(expected) and report.scored == len(bad) - len(expected)
    assert sum(report.reasons.values()) == report.rejected
    assert rejects.loc[rejects["row"] == 3, "customer_id"].tolist() == [bad.loc[0, "customer_id"]]
    scored = pd.read_csv(tmp_path / "out.csv")
    assert len(scored) == report.scored and scored["customer_id"].is_unique


def test_reject_share_threshold(model, table, tmp_path):
    bad = table.copy()
    bad.loc[:9, "recency"] = -1.0  # 10 of 2357 rows: 0.42%
    source = _write(bad, tmp_path / "in.parquet")
    share = 10 / len(bad)
    ok = score_file(model, source, tmp_path / "ok.parquet", max_reject_share=share + 1e-9)
    assert ok.rejected == 10 and (tmp_path / "ok.parquet").exists()
    with pytest.raises(ClvInputError, match=r"10 of 2357 rows rejected .*more than max_reject_share.*rejects\.csv"):
        score_file(model, source, tmp_path / "no.parquet", max_reject_share=share - 1e-9)
    assert not (tmp_path / "no.parquet").exists()
    assert (tmp_path / "no.parquet.rejects.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_user_errors(model, table, tmp_path):
    source = _write(table.drop(columns="T"), tmp_path / "in.csv")
    with pytest.raises(ClvInputError, match="column\\(s\\) 'T' not found"):
        score_file(model, source, tmp_path / "out.csv")
    with pytest.raises(ClvInputError, match="input file not found"):
        score_file(model, tmp_path / "nope.csv", tmp_path / "out.csv")
    with pytest.raises(ClvInputError, match=".csv or .parquet"):
        score_file(model, source, tmp_path / "out.json")
    with pytest.raises(ClvInputError, match="whole number"):
        score_file(model, _write(table, tmp_path / "ok.csv"), tmp_path / "out.csv", horizon="12M", step="5M")
    assert not (tmp_path / "out.csv").exists()


# -- crash safety ----------------------------------------------------------------------------


def test_killed_run_leaves_no_output(model_file, tmp_path):
    source = _write(simulated_rfm_table(400_000), tmp_path / "big.parquet")
    out = tmp_path / "out.parquet"
    code = ("import sys; from clv_forecast.scoring import score_file; "
            "score_file(sys.argv[1], sys.argv[2], sys.argv[3], batch_rows=2000)")
    process = subprocess.Popen([sys.executable, "-c", code, str(model_file), str(source), str(out)])
    kill_when_writing(process, tmp_path, ".out.parquet.", timeout=60, settle=0.2)
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()


# -- MLflow ----------------------------------------------------------------------------------


# local_store: conftest's (a copy of the session's migrated template store; the working directory is tmp_path)


def test_runs_uri_scores_like_the_model(local_store, tmp_path, monkeypatch):
    from clv_forecast import tracking
    from clv_forecast.experiment import cdnow_spec, run

    spec = cdnow_spec()
    spec["output"].update(model=None, report=None)
    result = run(spec, save=False)
    tracked = tracking.log_run(result, command="run", tracking_uri=local_store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", local_store)
    table = result.summary.reset_index()[COLUMNS]
    source = _write(table, tmp_path / "in.parquet")
    score_file(tracked.model_uri, source, tmp_path / "uri.parquet")
    score_file(result.model, source, tmp_path / "direct.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "uri.parquet"),
                                  pd.read_parquet(tmp_path / "direct.parquet"))
    with pytest.raises(ClvInputError, match="cannot download the model"):
        score_file("runs:/0123456789abcdef/model", source, tmp_path / "x.parquet")


# -- the score command -----------------------------------------------------------------------


def test_cli_counts_and_exit_codes(model_file, table, tmp_path, capsys):
    source = _write(table, tmp_path / "in.parquet")
    out = tmp_path / "out.csv"
    assert main(["score", "--model", str(model_file), "--input", str(source), "--output", str(out),
                 "--discount-rate", "10%/Y", "--interval", "0.9", "--batch-rows", "500"]) == 0
    printed = capsys.readouterr().out
    assert f"read {len(table)}, scored {len(table)}, rejected 0 (0.00%)" in printed
    assert "\x1b" not in printed  # no progress bar when stdout is not a terminal
    assert {"clv_lower", "clv_upper"} <= set(pd.read_csv(out).columns)

    bad, expected = _with_bad_rows(table)
    bad_source = _write(bad, tmp_path / "bad.csv")
    rc = main(["score", "--model", str(model_file), "--input", str(bad_source), "--output", str(tmp_path / "b.csv")])
    captured = capsys.readouterr()
    assert rc == 4 and not (tmp_path / "b.csv").exists()
    assert f"read 40, scored {40 - len(expected)}, rejected {len(expected)}" in captured.out
    assert "  recency greater than T: 1" in captured.out
    assert captured.err.count("\n") == 1 and "max_reject_share" in captured.err
    assert main(["score", "--model", str(model_file), "--input", str(bad_source), "--output", str(tmp_path / "b.csv"),
                 "--max-reject-share", "0.5"]) == 0
    assert (tmp_path / "b.csv").exists()


@pytest.mark.parametrize("extra, message", [
    (["--time-unit", "Q"], "--time-unit Q: unknown unit"),
    (["--horizon", "12M", "--step", "5M"], "whole number"),
    (["--batch-rows", "0"], "--batch-rows"),
])
def test_cli_user_errors_exit_2(model_file, table, tmp_path, capsys, extra, message):
    source = _write(table, tmp_path / "in.csv")
    rc = main(["score", "--model", str(model_file), "--input", str(source), "--output", str(tmp_path / "o.csv"),
               *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1
    assert main(["score", "--model", str(tmp_path / "none.json"), "--input", str(source),
                 "--output", str(tmp_path / "o.csv")]) == 2
    assert "model file not found" in capsys.readouterr().err
