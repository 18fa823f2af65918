"""The clv-forecast command: outputs, JSON shape, saved model, and one-line user errors with exit code 2."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from clv_forecast.cli import main
from clv_forecast.datasets import load_cdnow_sample
from clv_forecast.model import ClvModel


FIT = ["fit", "--customer-col", "customer_id", "--date-col", "date", "--amount-col", "amount",
       "--freq", "W", "--calibration-end", "1997-09-30"]


def test_fit_json(cdnow_csv, capsys, tmp_path):
    out = tmp_path / "m.json"
    assert main([*FIT, "--transactions", str(cdnow_csv), "--json", "--output", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"bgnbd", "gamma_gamma", "n_customers"}
    assert data["n_customers"] == 2357
    assert data["bgnbd"]["r"] == pytest.approx(0.2425945, rel=1e-6)
    assert data["bgnbd"]["log_likelihood"] == pytest.approx(-9582.429, abs=1e-3)
    assert data["gamma_gamma"]["log_likelihood"] == pytest.approx(-4055.92, abs=5e-3)
    assert set(data["gamma_gamma"]) >= {"p", "q", "v", "log_likelihood"}
    model = ClvModel.load(out)
    assert model.time_unit_ == "W"
    assert model.purchases_.params_["alpha"] == pytest.approx(data["bgnbd"]["alpha"])


def test_fit_text(cdnow_csv, capsys):
    assert main([*FIT, "--transactions", str(cdnow_csv)]) == 0
    text = capsys.readouterr().out
    assert "r = 0.242595" in text and "log-likelihood = -9582.4292" in text and "se" in text


def test_run_default(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 0
    text = capsys.readouterr().out
    assert "2,357 customers" in text
    assert "holdout" in text and "actual 1,882" in text  # the real number of holdout purchases in CDNOW
    assert "top 10 customers by CLV" in text
    assert (tmp_path / "models" / "cdnow.json").exists()


def _error(args, capsys):
    rc = main(args)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--transactions", "nope.csv"], ["nope.csv", "not found"]),
        (["--transactions", "{csv}", "--customer-col", "cust"], ["'cust'", "not found", "customer_id"]),
        (["--transactions", "{csv}", "--calibration-end", "2005-01-01"], ["2005-01-01", "after"]),
        (["--transactions", "{csv}", "--freq", "fortnight"], ["--time-unit fortnight"]),
        (["--transactions", "{csv}", "--penalizer", "abc"], ["penalizer"]),
        (["--transactions", "{csv}", "--no-such-option"], ["no-such-option"]),
    ],
)
def test_user_errors_are_one_line_exit_2(cdnow_csv, capsys, args, fragments):
    args = [a.replace("{csv}", str(cdnow_csv)) for a in args]
    base = [a for a in FIT if a not in ()]
    full = base + args
    # later options override earlier ones in click; keep the test's values last
    rc, err = _error(full, capsys)
    assert rc == 2
    assert err.count("\n") == 0, err
    assert err.startswith("clv-forecast: error:")
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err


def test_bad_values_in_file(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"customer_id": [1, 1, 2], "date": ["1997-01-01", "1997-13-45", "1997-02-01"],
                  "amount": [1.0, 2.0, 3.0]}).to_csv(path, index=False)
    rc, err = _error([*FIT, "--transactions", str(path)], capsys)
    assert rc == 2 and "bad.csv" in err and "'date'" in err and "row 2" in err and "1997-13-45" in err


def test_console_script_exit_code(cdnow_csv):
    proc = subprocess.run([sys.executable, "-m", "clv_forecast.cli", "fit", "--transactions", "missing.csv"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


def test_fit_accounts_for_every_row(cdnow_with_late_customer, capsys):
    path = cdnow_with_late_customer
    rc = main([*FIT, "--transactions", str(path)])
    out = capsys.readouterr().out
    assert rc == 0
    # customer 99999 first buys after the calibration end: his 2 rows are reported, not silently dropped
    assert "6,921 rows read: 6,919 summarised for 2,357 customers" in out
    assert "left out: 2 of 1 customers first seen after the calibration end" in out


def test_bare_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out and "fit" in out and "run" in out


@pytest.mark.parametrize("command", [[], ["fit"], ["score"], ["compare"], ["retention"]])
def test_dash_h_is_help_everywhere(command, capsys):
    assert main(command + ["-h"]) == 0
    short = capsys.readouterr().out
    assert main(command + ["--help"]) == 0
    assert short == capsys.readouterr().out and short.startswith("Usage: clv-forecast")


def test_default_run_is_the_cdnow_experiment_file():
    from pathlib import Path

    from clv_forecast.experiment import load_spec

    root = Path(__file__).resolve().parents[1]
    from_file = load_spec(root / "experiments" / "cdnow.toml")
    built_in = load_spec(None)
    # the file's paths are relative to the file, the built-in ones to the working directory (the repo root)
    for key in ("model", "report"):
        assert Path(from_file["output"].pop(key)).resolve() == (root / built_in["output"].pop(key)).resolve()
    from_file.pop("spec_file")
    assert from_file == built_in


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--freq", "0W"], "--time-unit 0W:"),
        (["--time-unit", "fortnight"], "--time-unit fortnight:"),
        (["--calibration-end", "notadate"], "--calibration-end notadate:"),
        (["--merge", "fortnightly"], "--merge fortnightly:"),
    ],
)
def test_errors_name_the_command_line_option(cdnow_csv, capsys, extra, fragment):
    rc, err = _error(["fit", "--transactions", str(cdnow_csv), *extra], capsys)
    assert rc == 2 and fragment in err and err.count("\n") == 0


def test_unwritable_output_is_refused_before_fitting(cdnow_csv, capsys, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    rc, err = _error([*FIT, "--transactions", str(cdnow_csv), "--output", str(blocker / "m.json")], capsys)
    assert rc == 2 and "is a file, not a directory" in err
    rc, err = _error(["run", "--output", str(tmp_path)], capsys)
    assert rc == 2 and "is a directory" in err


@pytest.mark.parametrize(
    "rows, extra, fragments, python_names",
    [
        ([("1", "08/09/2011 10:15", "3.5"), ("2", "13/09/2011 11:00", "2.0")], [],
         ["--date-format", "day first"], ["date_format"]),
        ([("1", "2011-09-08", "3.5"), ("", "2011-09-09", "2.0")], [],
         ["--missing-customer drop", "row 2"], ["missing_customer"]),
        ([("1", "2011-09-08", "3,5"), ("2", "2011-09-09", "2,0")], [],
         ["--decimal-comma"], ["decimal_comma"]),
        ([("1", "2011-09-08", "3.5"), ("1", "2011-09-09", "-2.0")], ["--returns", "error"],
         ["--returns drop", "--returns net"], ["returns="]),
    ],
)
def test_fixes_name_the_command_line_options(tmp_path, capsys, rows, extra, fragments, python_names):
    path = tmp_path / "log.csv"
    path.write_text("customer_id;date;amount\n" + "".join(";".join(r) + "\n" for r in rows))
    rc, err = _error(["fit", "--transactions", str(path), "--amount-col", "amount", *extra], capsys)
    assert rc == 2 and err.count("\n") == 0, err
    for fragment in fragments:
        assert fragment in err, err
    for name in python_names:
        assert name not in err, err
