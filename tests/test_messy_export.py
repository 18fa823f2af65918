"""The ingest path on a realistic messy export ("Online Retail" style, tests/make_retail_export.py):
every injected category is counted exactly, every row is accounted for, the summary equals the clean
log's, and each missing option gives one clear line."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv_forecast.errors import ClvInputError
from clv_forecast.rfm import LEFT_OUT_ROWS, summarize
from clv_forecast.transactions import read_transactions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_retail_export import _FIRST_ID, make_retail_export, main  # noqa: E402

N_CUSTOMERS = 1500
COLUMNS = dict(customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity", price_col="UnitPrice")


@pytest.fixture(scope="module", params=["comma", "semicolon"])
def export(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("retail") / f"online_retail_{request.param}.csv"
    return make_retail_export(path, N_CUSTOMERS, seed=11, variant=request.param)


def options(truth, **kw):
    # returns="drop": these tests compare with the clean (gross) purchase log; the default for quantity x price
    # is "net" (tests/test_hostile_defaults.py)
    out = dict(COLUMNS, encoding=truth.encoding, decimal_comma=truth.decimal_comma, date_format=truth.date_format,
               missing_customer="drop", calibration_end=truth.calibration_end, observation_end=truth.observation_end,
               returns="drop")
    out.update(kw)
    return out


def assert_identity(attrs):
    left_out = sum(attrs[k] for k in LEFT_OUT_ROWS)
    assert attrs["n_transactions"] == attrs["n_transactions_summarised"] + left_out, attrs


@pytest.fixture(scope="module")
def summary(export):
    return summarize(export.path, **options(export, duplicates="drop"))


def test_every_injected_category_is_counted_exactly(export, summary):
    a = summary.attrs
    assert a["n_transactions"] == export.n_rows
    assert a["n_rows_missing_customer"] == export.n_rows_missing_customer > 0
    assert a["n_duplicate_rows"] == a["n_duplicate_rows_dropped"] == export.n_duplicate_rows > 0
    assert a["n_return_rows"] == export.n_return_rows > 0
    assert a["return_value"] == pytest.approx(export.return_value, rel=1e-12) and a["return_value"] < 0
    assert a["n_customers_returns_only"] == export.n_customers_returns_only > 0
    assert a["n_customers"] == export.n_customers
    assert_identity(a)


def test_duplicates_are_counted_when_kept(export):
    kept = summarize(export.path, **options(export))
    assert kept.attrs["n_duplicate_rows"] == export.n_duplicate_rows and kept.attrs["n_duplicate_rows_dropped"] == 0
    assert_identity(kept.attrs)


def test_summary_equals_the_clean_logs(export, summary):
    clean = summarize(export.clean, amount_col="amount", date_col="timestamp", calibration_end=dt.date(2011, 9, 8),
                      observation_end=dt.date(2011, 12, 1))
    assert summary.index.equals(clean.index)
    for column in ("frequency", "recency", "T", "frequency_holdout", "duration_holdout"):
        assert (summary[column].to_numpy() == clean[column].to_numpy()).all(), column
    # the line amounts (quantity x price) sum to the invoice totals up to float rounding
    for column in ("monetary_value", "monetary_value_holdout"):
        assert np.allclose(summary[column].to_numpy(), clean[column].to_numpy(), rtol=1e-12, atol=1e-9), column


def test_returns_only_customers_are_absent_and_counted(export, summary):
    only = set(export.returns["customer_id"]) - set(export.clean["customer_id"])
    assert len(only) == export.n_customers_returns_only
    assert not only & set(summary.index)
    assert summary.index.max() < _FIRST_ID + N_CUSTOMERS


def test_ends_are_read_day_first_with_the_date_format(export, summary):
    assert summary.attrs["calibration_end"] == "2011-09-08"  # not 9 August
    assert summary.attrs["observation_end"] == "2011-12-01"  # not 12 January
    for cal, obs in [(dt.date(2011, 9, 8), np.datetime64("2011-12-01")),
                     ("2011-09-08", pd.Timestamp("2011-12-01")),
                     ("08/09/2011 00:00", pd.Period("2011-12-01", "D"))]:
        again = summarize(export.path, **options(export, duplicates="drop", calibration_end=cal, observation_end=obs))
        pd.testing.assert_frame_equal(again, summary)


def test_net_returns_account_for_every_return(export):
    net = summarize(export.path, **options(export, duplicates="drop", returns="net"))
    a = net.attrs
    assert a["n_return_rows"] == export.n_return_rows
    assert (a["n_returns_netted"] + a["n_returns_unmatched"] + a["n_returns_across_calibration_end"]
            + a["n_returns_after_observation_end"]) == a["n_return_rows"]
    assert a["n_returns_netted"] > 0
    # returns of returns-only customers have no purchase to net against
    only_rows = export.returns[~export.returns["customer_id"].isin(export.clean["customer_id"])]
    assert a["n_returns_unmatched"] >= len(only_rows)
    assert a["n_customers_returns_only"] >= export.n_customers_returns_only
    assert_identity(a)
    # netting lowers spend, never raises it
    dropped = summarize(export.path, **options(export, duplicates="drop"))
    common = net.index.intersection(dropped.index)
    assert (net.loc[common, "monetary_value"] <= dropped.loc[common, "monetary_value"] + 1e-9).all()


def test_read_transactions_alone_accounts_for_every_row(export):
    frame, acc = read_transactions(export.path, **{k: v for k, v in options(export).items() if "_end" not in k},
                                   with_accounting=True)
    assert acc.n_transactions == export.n_rows
    assert acc.n_rows == frame.height
    assert acc.n_transactions == acc.n_rows + acc.n_rows_missing_customer + acc.n_duplicate_rows_dropped + acc.n_return_rows
    assert (frame["amount"] >= 0).all()
    assert frame["customer_id"].dtype.is_integer()  # "13904.0" / "13904,0" are customer 13904


# ------------------------------------------------------------------------------ one-line errors


def one_line(export, **kw) -> ClvInputError:
    with pytest.raises(ClvInputError) as info:
        summarize(export.path, **kw)
    assert "\n" not in str(info.value)
    return info.value


def test_without_encoding(export):
    kw = options(export)
    kw.pop("encoding")
    error = one_line(export, **kw)
    message = str(error)
    assert export.path in message and "line " in message and "encoding='latin-1' (or cp1252)" in message
    assert error.argument == "encoding"


def test_without_date_format(export):
    kw = options(export)
    kw.pop("date_format")
    message = str(one_line(export, **kw))
    assert message.startswith(f"{export.path}: column 'InvoiceDate', rows ")
    assert "unparseable date" in message and "give date_format, e.g. '%d/%m/%Y %H:%M' (day first)" in message


def test_without_missing_customer(export):
    kw = options(export)
    kw.pop("missing_customer")
    message = str(one_line(export, **kw))
    assert message.startswith(f"{export.path}: column 'CustomerID', rows ")
    assert "missing customer id; give missing_customer='drop'" in message


def test_wrong_decimal_comma(export):
    # without decimal_comma on the semicolon export; with it on the point-decimal export
    message = str(one_line(export, **options(export, decimal_comma=not export.decimal_comma)))
    assert "column 'UnitPrice'" in message
    if export.decimal_comma:
        assert "give decimal_comma=True" in message
    else:
        assert "not a number written with a decimal comma" in message


def test_returns_error_names_the_rows(export):
    message = str(one_line(export, **options(export, returns="error")))
    assert "column 'Quantity', rows " in message and "negative amount" in message


def test_month_first_end_in_the_wrong_format_is_refused(export):
    error = one_line(export, **options(export, calibration_end="2011/09/08"))
    assert error.argument == "calibration_end" and "date_format" in error.reason


def test_script_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "export.csv"
    main([str(out), "--customers", "200", "--seed", "3", "--variant", "semicolon"])
    counts = json.loads(capsys.readouterr().out)
    assert out.is_file() and counts["n_rows"] == len(out.read_bytes().splitlines()) - 1
    assert counts["separator"] == ";" and counts["encoding"] == "cp1252"


def test_a_boundary_fit_on_a_messy_export(tmp_path, capsys):
    """Issue 18's boundary on a messy export (cp1252, ``;``, decimal commas, day-first dates, guest rows,
    duplicates, returns): a population without dropout is given as the NBD, labelled, exit 0; insisting on
    BG/NBD is exit 3 with the row accounting and ``"reliable": false`` in ``--json``."""
    from clv_forecast.cli import main

    truth = make_retail_export(tmp_path / "nodrop.csv", 2000, seed=5, variant="semicolon",
                               population={"r": 0.8, "alpha": 5.0, "a": 1e-6, "b": 1e3})
    args = ["fit", "-t", truth.path, "--customer-col", "CustomerID", "--date-col", "InvoiceDate", "--quantity-col",
            "Quantity", "--price-col", "UnitPrice", "--date-format", truth.date_format, "--encoding", truth.encoding,
            "--decimal-comma", "--missing-customer", "drop", "--calibration-end", truth.calibration_end,
            "--no-tracking"]
    assert main([*args, "--output", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "BG/NBD maximum on a boundary (a -> 0: the data show no dropout); fitted the NBD instead" in out
    assert f"{truth.n_rows:,} rows read" in out
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["purchases"]["kind"] == "nbd" and saved["purchases"]["requested"]["kind"] == "bgnbd"

    assert main([*args, "--on-boundary", "refuse", "--json"]) == 3
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["reliable"] is False and any("a -> 0" in p for p in doc["problems"])
    assert doc["accounting"]["n_transactions"] == truth.n_rows
    assert doc["accounting"]["n_rows_missing_customer"] == truth.n_rows_missing_customer
    assert "--on-boundary nested" in captured.err and "Traceback" not in captured.err
