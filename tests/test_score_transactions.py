"""``score --transactions`` / :func:`clv_forecast.scoring.score_transactions`: a raw log summarised with the
model's settings and scored through the one scoring path; and the small defects of the ``score`` command
(integral float ids, option names in value errors)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv_forecast.cli import main
from clv_forecast.errors import ClvInputError
from clv_forecast.model import ClvModel
from clv_forecast.rfm import LEFT_OUT_ROWS, summarize
from clv_forecast.scoring import score_file, score_transactions, summary_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_retail_export import make_retail_export  # noqa: E402

SCORES = ["expected_purchases", "p_alive", "expected_spend", "clv",
          *(f"{q}_{side}" for q in ("expected_purchases", "p_alive", "expected_spend", "clv") for side in ("lower", "upper"))]
VALUE = ["--horizon", "12M", "--discount-rate", "10%/Y", "--interval", "0.9"]


def _fit_predictions(tmp_path, cdnow_csv, fit_options, as_of_options):
    """``clv-forecast fit --predictions ... --as-of observation-end``: the model file and its table."""
    model, table = tmp_path / "model.json", tmp_path / "fit.parquet"
    assert main(["fit", "--transactions", str(cdnow_csv), "--amount-col", "amount", "--calibration-end",
                 "1997-09-30", *fit_options, *as_of_options, "--output", str(model), "--predictions", str(table),
                 "--as-of", "observation-end", *VALUE]) == 0
    return model, pd.read_parquet(table).set_index("customer_id")


@pytest.mark.parametrize("fit_options, end", [
    ([], []),
    (["--merge", "W", "--week-start", "SUN", "--include-first-transaction", "--time-unit", "D"],
     ["--observation-end", "1998-03-31"]),
], ids=["defaults", "weekly-merge-sunday-first-purchase-days-end"])
def test_scoring_a_log_equals_fit_as_of_observation_end_on_cdnow(tmp_path, cdnow_csv, capsys, fit_options, end):
    model, expected = _fit_predictions(tmp_path, cdnow_csv, fit_options, end)
    capsys.readouterr()
    out = tmp_path / "scores.parquet"
    assert main(["score", "--model", str(model), "--transactions", str(cdnow_csv), "--amount-col", "amount",
                 *end, "--output", str(out), *VALUE, "--batch-rows", "500"]) == 0
    printed = capsys.readouterr().out
    got = pd.read_parquet(out).set_index("customer_id")
    assert list(got.columns) == SCORES and len(got) == len(expected) == 2357
    assert got.index.tolist() == expected.index.tolist()  # same customers, same order, integer ids
    for name in SCORES:
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-12, atol=0)
    # where every log row went, in the words fit uses, and the end used
    assert "6,919 rows read:" in printed
    assert "\nkept: 21 exact duplicate rows, each counted as a row of its own" in printed
    assert not [line for line in printed.splitlines() if line.startswith("left out") and "duplicate" in line]
    assert ("data to 1998-03-31" if end else "data to 1998-06-30") in printed
    assert f"read 2357, scored 2357, rejected 0" in printed


def test_the_model_settings_are_used_and_recorded_ones_only(cdnow_rfm):
    from clv_forecast.datasets import load_cdnow_sample

    weekly = summarize(load_cdnow_sample(), amount_col="amount", time_unit="D", merge="W", week_start="SUN",
                       include_first_transaction=True, calibration_end="1997-09-30")
    model = ClvModel().fit(weekly)
    assert summary_settings(model) == {"time_unit": "D", "merge": "W", "week_start": "SUN",
                                       "include_first_transaction": True}
    given = ClvModel.from_params(purchases={"r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4},
                                 spend={"p": 6.25, "q": 3.74, "v": 15.44}, time_unit="M")
    assert summary_settings(given) == {"time_unit": "M", "merge": "D", "week_start": "MON",
                                       "include_first_transaction": False}  # summarize's defaults


@pytest.fixture(scope="module")
def retail(tmp_path_factory):
    path = tmp_path_factory.mktemp("retail") / "retail.csv"
    return make_retail_export(path, 600, seed=5)


def _retail_options(truth):
    return dict(customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity", price_col="UnitPrice",
                encoding=truth.encoding, date_format=truth.date_format, missing_customer="drop", duplicates="drop")


def test_every_log_row_is_accounted_for_on_a_messy_export(retail, tmp_path):
    options = _retail_options(retail)
    rfm = summarize(retail.path, **options, calibration_end=retail.calibration_end)
    model = ClvModel().fit(rfm)
    report = score_transactions(model, retail.path, tmp_path / "s.csv", **options, discount_rate="10%/Y")
    attrs = report.summary
    assert attrs["n_transactions"] == retail.n_rows
    assert attrs["n_transactions"] == attrs["n_transactions_summarised"] + sum(attrs[k] for k in LEFT_OUT_ROWS)
    assert attrs["n_rows_missing_customer"] == retail.n_rows_missing_customer > 0
    assert attrs["n_duplicate_rows_dropped"] == retail.n_duplicate_rows > 0
    assert report.read == attrs["n_customers"] == report.scored + report.rejected
    scores = pd.read_csv(tmp_path / "s.csv")
    assert len(scores) == report.scored and scores["customer_id"].dtype.kind == "i"  # "13904.0" read as 13904
    assert report.clv_total == pytest.approx(scores["clv"].sum(), rel=1e-12)


def test_a_customer_with_only_returns_is_counted_not_scored(tmp_path, cdnow_csv):
    log = pd.read_csv(cdnow_csv)
    model = ClvModel().fit(summarize(cdnow_csv, amount_col="amount", calibration_end="1997-09-30"))
    returns = pd.DataFrame({"customer_id": [90001, 90001], "date": ["1998-01-05", "1998-01-09"],
                            "amount": [-5.0, -5.0], "master_id": 0, "cds": 1})
    path = tmp_path / "with_returns.csv"
    pd.concat([log, returns]).to_csv(path, index=False)
    report = score_transactions(model, path, tmp_path / "ok.parquet", amount_col="amount")
    attrs = report.summary
    assert attrs["n_return_rows"] == 2 and attrs["n_customers_returns_only"] == 1
    assert attrs["n_transactions"] == len(log) + 2 == attrs["n_transactions_summarised"] + sum(
        attrs[k] for k in LEFT_OUT_ROWS)
    assert report.read == report.scored == 2357
    assert 90001 not in pd.read_parquet(tmp_path / "ok.parquet")["customer_id"].tolist()


def test_score_command_refuses_mixed_or_missing_inputs(tmp_path, cdnow_csv, capsys):
    model = ClvModel().fit(summarize(cdnow_csv, amount_col="amount"))
    path = model.save(tmp_path / "m.json")
    table = tmp_path / "rfm.csv"
    summarize(cdnow_csv, amount_col="amount").reset_index().to_csv(table, index=False)
    cases = [
        ([], "give either --input (an RFM table) or --transactions"),
        (["--input", str(table), "--transactions", str(cdnow_csv)], "not both"),
        (["--input", str(table), "--amount-col", "amount", "--observation-end", "1998-01-01"],
         "--amount-col, --observation-end: not used with --input"),
        (["--transactions", str(cdnow_csv), "--amount-col", "amount", "--time-unit", "D"],
         "--time-unit: not used with --transactions"),
        (["--transactions", str(cdnow_csv)], "CLV needs the amounts: give --amount-col"),
        (["--transactions", str(cdnow_csv), "--amount-col", "amount", "--observation-end", "1990-01-01"],
         "--observation-end 1990-01-01"),
        (["--transactions", str(cdnow_csv), "--amount-col", "nope"], "nope"),
    ]
    for extra, message in cases:
        rc = main(["score", "--model", str(path), "--output", str(tmp_path / "o.csv"), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "o.csv").exists()


# -- small defects of score ------------------------------------------------------------------


def _rfm_table(cdnow_rfm):
    return cdnow_rfm.reset_index()[["customer_id", "frequency", "recency", "T", "monetary_value"]]


@pytest.fixture(scope="module")
def model(cdnow_rfm):
    return ClvModel().fit(cdnow_rfm)


@pytest.mark.parametrize("kind", [".csv", ".parquet"])
def test_integral_float_ids_are_written_as_integers(model, cdnow_rfm, tmp_path, kind):
    table = _rfm_table(cdnow_rfm).astype({"customer_id": "float64"})
    table.loc[5, "customer_id"] = np.nan  # a gap: pandas writes the column as floats ("7.0")
    source = tmp_path / f"in{kind}"
    table.to_csv(source, index=False) if kind == ".csv" else table.to_parquet(source, index=False)
    if kind == ".csv":
        assert "\n7.0," in source.read_text()
    report = score_file(model, source, tmp_path / "out.csv", batch_rows=300)
    assert report.rejected == 1 and report.reasons == {"missing id": 1}
    text = (tmp_path / "out.csv").read_text().splitlines()
    assert text[1].split(",")[0] == "1" and not any(line.split(",")[0].endswith('.0') for line in text[1:])
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["customer_id"].tolist() == [int(i) for i in table["customer_id"].dropna()]
    score_file(model, source, tmp_path / "out.parquet", batch_rows=300)
    assert pd.read_parquet(tmp_path / "out.parquet")["customer_id"].dtype == np.int64


@pytest.mark.parametrize("kind", [".csv", ".parquet"])
def test_ids_with_a_fraction_stay_as_they_are(model, cdnow_rfm, tmp_path, kind):
    table = _rfm_table(cdnow_rfm).astype({"customer_id": "float64"})
    table.loc[2000, "customer_id"] = 2000.5  # in a later batch: the whole column decides
    source = tmp_path / f"in{kind}"
    table.to_csv(source, index=False) if kind == ".csv" else table.to_parquet(source, index=False)
    score_file(model, source, tmp_path / "out.parquet", batch_rows=300)
    ids = pd.read_parquet(tmp_path / "out.parquet")["customer_id"]
    if kind == ".csv":  # the text as written
        assert ids.tolist()[:2] == ["1.0", "2.0"] and ids[2000] == "2000.5"
    else:  # the float column as it is
        assert ids.dtype == np.float64 and ids[2000] == 2000.5


def test_text_ids_and_a_repeat_written_two_ways(model, cdnow_rfm, tmp_path):
    table = _rfm_table(cdnow_rfm).astype({"customer_id": "float64"})
    table["customer_id"] = table["customer_id"].map(lambda v: f"{v:.1f}")
    table.loc[10, "customer_id"] = "1"  # the same customer as "1.0": a duplicate once both are 1
    source = tmp_path / "in.csv"
    table.to_csv(source, index=False)
    report = score_file(model, source, tmp_path / "out.csv", batch_rows=7)
    assert report.reasons == {"duplicate id": 1}
    rejects = pd.read_csv(tmp_path / "out.csv.rejects.csv")
    assert rejects.to_dict("list") == {"row": [11], "customer_id": [1], "reason": ["duplicate id"]}


@pytest.mark.parametrize("extra, message", [
    (["--horizon", "12"], "--horizon 12: not understood"),
    (["--step", "1"], "--step 1: not understood"),
    (["--discount-rate", "10"], "--discount-rate 10: give its period"),
    (["--horizon", "12M", "--step", "5M"], "--horizon 12M: must be a whole number (>= 1) of steps of 5M"),
    (["--step", "-1M"], "--step -1M"),
])
def test_value_errors_name_their_option(model, cdnow_rfm, tmp_path, capsys, extra, message):
    path = model.save(tmp_path / "m.json")
    source = tmp_path / "in.parquet"
    _rfm_table(cdnow_rfm).to_parquet(source)
    rc = main(["score", "--model", str(path), "--input", str(source), "--output", str(tmp_path / "o.csv"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err
    with pytest.raises(ClvInputError) as caught:
        score_file(model, source, tmp_path / "o.csv", **dict(zip([e.lstrip("-").replace("-", "_") for e in extra[::2]],
                                                                extra[1::2])))
    assert caught.value.argument in ("horizon", "step", "discount_rate")
