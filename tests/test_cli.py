"""The clv-forecast command: outputs, JSON shape, saved model, and one-line user errors with exit code 2."""

import json
import re
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
    assert "left out: 2 rows of 1 customer first seen after the calibration end" in out


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


# --------------------------------------------------------------------------------------------
# the commands as a person sees them: progress, help, messages (issue 21)
# --------------------------------------------------------------------------------------------

STEP_LINE = re.compile(r"^  (.+): (\d+\.\d) s$", re.M)


@pytest.fixture
def terminal(monkeypatch):
    """Standard output taken for a terminal (the one tty check of the CLI, forced)."""
    from clv_forecast import cli

    monkeypatch.setattr(cli, "_is_terminal", lambda: True)


def test_fit_shows_its_steps_with_timings_on_a_terminal(cdnow_csv, capsys, terminal, tmp_path):
    out_file = tmp_path / "customers.csv"
    assert main([*FIT, "--transactions", str(cdnow_csv), "--no-tracking", "--predictions", str(out_file)]) == 0
    out = capsys.readouterr().out
    steps = [name for name, _ in STEP_LINE.findall(out)]
    assert steps == ["reading and summarising the data", "fitting the purchase model and the spend model",
                     "holdout check", "CLV of every customer", "writing the per-customer table"]
    assert out.index("writing the per-customer table:") < out.index("r = 0.242595")  # steps first, then results


def test_run_shows_its_steps_on_a_terminal(tmp_path, capsys, terminal, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--no-save", "--no-tracking"]) == 0
    out = capsys.readouterr().out
    steps = [name for name, _ in STEP_LINE.findall(out)]
    assert steps[:2] == ["reading and summarising the data", "fitting the purchase model and the spend model"]
    assert "CLV of every customer" in steps and out.startswith("experiment cdnow")


def test_json_stays_pure_on_a_terminal(cdnow_csv, capsys, terminal):
    assert main([*FIT, "--transactions", str(cdnow_csv), "--no-tracking", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["n_customers"] == 2357  # standard output is one JSON object, nothing else
    assert "reading and summarising" not in out


def test_no_steps_through_a_pipe(cdnow_csv):
    from click.testing import CliRunner

    from clv_forecast import cli

    result = CliRunner().invoke(cli.app, [*FIT, "--transactions", str(cdnow_csv), "--no-tracking"])
    assert result.exit_code == 0
    assert "r = 0.242595" in result.output and not STEP_LINE.search(result.output)
    assert "reading and summarising" not in result.output


def test_the_pipeline_reports_its_steps_and_prints_nothing(cdnow_csv, capsys):
    from clv_forecast.experiment import run, spec_from_options

    spec = spec_from_options(transactions=str(cdnow_csv), amount_col="amount", calibration_end="1997-09-30")
    spec["value"] = None
    steps = []
    run(spec, save=False, on_step=steps.append)
    assert steps == ["reading and summarising the data", "fitting the purchase model and the spend model",
                     "holdout check"]
    assert capsys.readouterr().out == ""  # the library prints nothing: the front end shows the steps


def test_help_summaries_are_whole(monkeypatch):
    from click.testing import CliRunner

    from clv_forecast import cli

    monkeypatch.setenv("COLUMNS", "80")
    text = CliRunner().invoke(cli.app, ["--help"]).output
    commands = text.split("Commands:")[1]
    lines = [line for line in commands.splitlines() if line.strip()]
    assert len(lines) >= len(cli.app.commands)
    assert not [line for line in lines if line.rstrip().endswith("...")], commands
    for name, command in cli.app.commands.items():
        assert command.short_help and not command.short_help.endswith("..."), name
        assert " ".join(command.short_help.split()) in " ".join(commands.split()), name  # shown whole
    assert "(BG/NBD + Gamma-Gamma)" not in text and "Pareto/NBD" in text  # the group names the model family


def test_fit_without_amounts_says_the_spend_model_was_skipped(cdnow_csv, capsys):
    assert main(["fit", "--transactions", str(cdnow_csv), "--calibration-end", "1997-09-30", "--no-tracking"]) == 0
    out = capsys.readouterr().out
    skipped = [line for line in out.splitlines() if "spend model" in line]
    assert skipped == ["spend model (Gamma-Gamma) skipped: the data have no amounts (give --amount-col, or "
                       "--quantity-col and --price-col); expected purchases and P(alive) only, no spend and no CLV"]
    assert "Gamma-Gamma  p =" not in out
    # with amounts, no such line
    assert main([*FIT, "--transactions", str(cdnow_csv), "--no-tracking"]) == 0
    assert "skipped" not in capsys.readouterr().out


def test_run_names_the_experiment_key_for_the_skipped_spend_model(tmp_path, capsys, cdnow_csv):
    spec = tmp_path / "no_amounts.toml"
    spec.write_text(f'[data]\nsource = "{cdnow_csv.as_posix()}"\n[summary]\ncalibration_end = "1997-09-30"\n')
    assert main(["run", "--experiment", str(spec), "--no-tracking"]) == 0
    assert "skipped: the data have no amounts (give [data] amount_col" in capsys.readouterr().out


def test_kept_duplicates_are_not_listed_as_left_out():
    from clv_forecast.report import accounting_lines

    kept = accounting_lines({"n_transactions": 10, "n_transactions_summarised": 10, "n_duplicate_rows": 2}, 3)
    assert kept == ["10 rows read: 10 summarised for 3 customers",
                    "kept: 2 exact duplicate rows, each counted as a row of its own: --duplicates drop "
                    "(duplicates='drop') leaves them out"]
    dropped = accounting_lines({"n_transactions": 10, "n_transactions_summarised": 8, "n_duplicate_rows": 2,
                                "n_duplicate_rows_dropped": 2}, 3)
    assert dropped == ["10 rows read: 8 summarised for 3 customers", "left out: 2 exact duplicate rows (dropped)"]


def test_rows_of_late_customers_are_called_rows():
    from clv_forecast.report import accounting_lines

    lines = accounting_lines({"n_transactions": 50_000, "n_transactions_summarised": 8_177,
                              "n_transactions_first_purchase_after_calibration": 41_823,
                              "n_customers_first_purchase_after_calibration": 977}, 100)
    assert lines[1] == "left out: 41,823 rows of 977 customers first seen after the calibration end"


def test_score_without_the_id_column_suggests_id_col(tmp_path, capsys):
    model = ClvModel.from_params(purchases={"r": 0.243, "alpha": 4.41, "a": 0.793, "b": 2.43},
                                 spend={"p": 6.25, "q": 3.74, "v": 15.44}, time_unit="W")
    model_file = model.save(tmp_path / "m.json")
    table = tmp_path / "rfm.csv"
    pd.DataFrame({"id": [1, 2], "frequency": [2, 0], "recency": [30.0, 0.0], "T": [38.0, 38.0],
                  "monetary_value": [20.0, 0.0]}).to_csv(table, index=False)
    rc, err = _error(["score", "--model", str(model_file), "--input", str(table), "--output",
                      str(tmp_path / "s.csv"), "--no-tracking"], capsys)
    assert rc == 2 and err.count("\n") == 0, err
    assert "'customer_id' not found" in err and "columns are: id, frequency, recency, T, monetary_value" in err
    assert err.endswith("give the customer id column with --id-col id"), err
    # and the suggestion works; the rejects file heads its id column as the input does ("row" is its own column)
    pd.DataFrame({"id": [1, 2, 3], "frequency": [2, 0, 1], "recency": [30.0, 0.0, -1.0], "T": [38.0, 38.0, 38.0],
                  "monetary_value": [20.0, 0.0, 5.0]}).to_csv(table, index=False)
    assert main(["score", "--model", str(model_file), "--input", str(table), "--output", str(tmp_path / "s.csv"),
                 "--no-tracking", "--id-col", "id", "--max-reject-share", "0.5"]) == 0
    assert pd.read_csv(tmp_path / "s.csv")["id"].tolist() == [1, 2]
    assert pd.read_csv(tmp_path / "s.csv.rejects.csv").to_dict("list") == {"row": [3], "id": [3],
                                                                            "reason": ["recency negative"]}
    pd.read_csv(table).rename(columns={"id": "row"}).to_csv(table, index=False)
    assert main(["score", "--model", str(model_file), "--input", str(table), "--output", str(tmp_path / "r.csv"),
                 "--no-tracking", "--id-col", "row", "--max-reject-share", "0.5"]) == 0
    assert list(pd.read_csv(tmp_path / "r.csv.rejects.csv").columns) == ["row", "customer_id", "reason"]


def _readme_block_with(command: str) -> list[list[str]]:
    """The command lines of the README's bash block holding ``command`` (comments dropped, ``[--json]`` taken,
    other optional parts left out), each split into its arguments."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if command in b)
    lines = []
    for line in block.splitlines():
        line = re.sub(r"\[(--json)\]", r"\1", line.split("#")[0])
        line = re.sub(r"\[[^\]]*\]", "", line).strip()
        if line.startswith("clv-forecast "):
            lines.append(shlex.split(line)[1:])
    return lines


def _readme_row(prefix: str) -> list[float]:
    """The numbers of the README table row whose first cell starts with ``prefix``."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith(f"| {prefix}"))
    return [float(cell.strip().strip("*").replace(",", "")) for cell in row.strip().strip("|").split("|")[1:]]


def test_readme_compare_example_runs_as_written(tmp_path, capsys, monkeypatch, terminal):
    monkeypatch.chdir(tmp_path)  # (tests run without MLflow tracking: conftest)
    commands = _readme_block_with("clv-forecast compare")
    assert [c[0] for c in commands[:2]] == ["sample", "compare"]
    assert main(commands[0]) == 0 and (tmp_path / "cdnow.csv").exists()
    capsys.readouterr()
    assert main(commands[1]) == 0
    data = json.loads(capsys.readouterr().out)  # [--json]: pure JSON, even on a terminal
    for method, prefix in (("predictive", "predictive: BG/NBD + Gamma-Gamma |"), ("simple", "simple (")):
        got = data["methods"][method]
        shown = [round(got["mae"], 2), round(got["rmse"], 2), round(got["total_error_pct"], 1),
                 round(got["spearman"], 3), round(got["top10_share"], 3), round(got["top20_share"], 3),
                 round(got["gini"], 3)]
        assert shown == _readme_row(prefix), method  # the README's table is what its command prints


def test_compare_shows_its_steps_on_a_terminal(cdnow_csv, capsys, terminal):
    assert main(["compare", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--calibration-end",
                 "1997-09-30", "--no-tracking"]) == 0
    out = capsys.readouterr().out
    steps = [name for name, _ in STEP_LINE.findall(out)]
    assert steps == ["reading and summarising the data", "fitting the purchase model and the spend model",
                     "holdout check", "CLV of every customer", "historical formulas beside the model",
                     "backtest: every purchase model and formula on the holdout", "plots"]
    assert out.index("plots:") < out.index("backtest: each method")  # the steps, then the results


def test_sample_writes_a_csv_log_only(tmp_path, capsys):
    rc, err = _error(["sample", "--output", str(tmp_path / "cdnow.parquet")], capsys)
    assert rc == 2 and err.count("\n") == 0 and "give a path ending in .csv" in err
    assert main(["sample", "--output", str(tmp_path / "cdnow.csv")]) == 0
    log = pd.read_csv(tmp_path / "cdnow.csv")
    expected = load_cdnow_sample()
    assert list(log.columns) == ["customer_id", "date", "amount"] and len(log) == len(expected)
    assert (pd.to_datetime(log["date"]) == expected["date"]).all() and (log["amount"] == expected["amount"]).all()


def test_score_with_a_known_spend_needs_no_monetary_value_nor_spend_model(tmp_path, capsys, cdnow_rfm):
    import numpy as np

    model = ClvModel(spend=None).fit(cdnow_rfm[["frequency", "recency", "T"]])  # a purchase model only
    model_file = model.save(tmp_path / "purchases_only.json")
    table = cdnow_rfm[["frequency", "recency", "T"]].reset_index()
    table["known"] = 10.0 + (table["customer_id"] % 7)
    table.loc[3, "known"] = -1.0  # a negative spend: rejected, named by its column
    path = tmp_path / "rfm.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "scores.parquet"
    rc, err = _error(["score", "--model", str(model_file), "--input", str(path), "--output", str(out)], capsys)
    assert rc == 2 and "--spend-col" in err and err.count("\n") == 0  # no spend model: the option is named
    assert main(["score", "--model", str(model_file), "--input", str(path), "--output", str(out),
                 "--spend-col", "known"]) == 0
    assert "known negative: 1" in capsys.readouterr().out
    got = pd.read_parquet(out).set_index("customer_id")
    valid = table.drop(index=3).set_index("customer_id")
    expected = model.clv(valid, future_spend=valid["known"])
    assert got.index.astype(str).tolist() == expected.index.astype(str).tolist()  # (CSV ids are read as text)
    for name in ("expected_purchases", "p_alive", "expected_spend", "clv"):
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-12)
    assert (got["expected_spend"].to_numpy() == valid["known"].to_numpy()).all()
    rc, err = _error(["score", "--model", str(model_file), "--transactions", str(path), "--amount-col", "known",
                      "--output", str(out), "--spend-col", "known"], capsys)
    assert rc == 2 and "--spend-col: not used with --transactions" in err
