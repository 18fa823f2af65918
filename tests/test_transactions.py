"""Tests for clv_forecast.transactions.read_transactions: inputs, dates, and every validation error."""

from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from clv_forecast.errors import ClvInputError
from clv_forecast.transactions import read_transactions

CSV_TEXT = "cust,order_date,total\n1,1997-01-01,29.33\n1,1997-01-18,29.73\n2,1997-01-02,-5.0\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read(source, **kw):
    kw.setdefault("customer_col", "cust")
    kw.setdefault("date_col", "order_date")
    return read_transactions(source, **kw)


def error_of(source, **kw) -> str:
    with pytest.raises(ClvInputError) as info:
        read(source, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def assert_standard(out: pl.DataFrame, *, amount: bool = True) -> None:
    expected = ["customer_id", "timestamp", "amount"] if amount else ["customer_id", "timestamp"]
    assert out.columns == expected
    assert isinstance(out.schema["timestamp"], pl.Datetime)
    if amount:
        assert out.schema["amount"] == pl.Float64


# ----------------------------------------------------------------------------------------------
# happy paths
# ----------------------------------------------------------------------------------------------


def test_csv_with_column_mapping(tmp_path):
    out = read(write(tmp_path, "tx.csv", CSV_TEXT), amount_col="total", returns="net")
    assert_standard(out)
    assert out.schema["customer_id"] == pl.Int64
    assert out["customer_id"].to_list() == [1, 1, 2]
    assert out["timestamp"].to_list() == [dt.datetime(1997, 1, 1), dt.datetime(1997, 1, 18), dt.datetime(1997, 1, 2)]
    assert out["amount"].to_list() == [29.33, 29.73, -5.0]  # returns="net" keeps returns for summarize to net


def test_returns_are_dropped_and_counted_by_default(tmp_path):
    out, acc = read(write(tmp_path, "tx.csv", CSV_TEXT), amount_col="total", with_accounting=True)
    assert out["amount"].to_list() == [29.33, 29.73]
    assert (acc.n_transactions, acc.n_rows, acc.n_return_rows, acc.return_value) == (3, 2, 1, -5.0)
    assert acc.n_customers_returns_only == 1  # customer 2 has only a return
    message = error_of(write(tmp_path, "tx.csv", CSV_TEXT), amount_col="total", returns="error")
    assert message.startswith(f"{tmp_path / 'tx.csv'}: column 'total', row 3 (values: -5.0): negative amount")


def test_without_amount_column_there_is_no_amount(tmp_path):
    out = read(write(tmp_path, "tx.csv", CSV_TEXT))
    assert_standard(out, amount=False)


def test_default_column_names(tmp_path):
    path = write(tmp_path, "tx.csv", "customer_id,date,amount\n7,1997-03-04,1.5\n")
    out = read_transactions(path, amount_col="amount")
    assert out.row(0) == (7, dt.datetime(1997, 3, 4), 1.5)


def test_csv_gz_txt_and_tab_separator(tmp_path):
    gz = tmp_path / "tx.csv.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(CSV_TEXT)
    txt = write(tmp_path, "tx.txt", CSV_TEXT.replace(",", "\t"))
    for path in (gz, txt):
        out = read(path, amount_col="total", returns="net")
        assert out["amount"].to_list() == [29.33, 29.73, -5.0]


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet(tmp_path, suffix):
    frame = pl.DataFrame(
        {
            "cust": ["a", "b"],
            "order_date": [dt.date(1997, 1, 1), dt.date(1997, 2, 1)],
            "total": [1, 2],
            "other": [0, 0],
        }
    )
    path = tmp_path / f"tx{suffix}"
    frame.write_parquet(path)
    out = read(path, amount_col="total")
    assert_standard(out)
    assert out.schema["customer_id"] == pl.String
    assert out["customer_id"].to_list() == ["a", "b"]
    assert out["timestamp"].to_list() == [dt.datetime(1997, 1, 1), dt.datetime(1997, 2, 1)]
    assert out["amount"].to_list() == [1.0, 2.0]


def test_pandas_and_polars_inputs_agree():
    pdf = pd.DataFrame(
        {
            "cust": [3, 1, 2],
            "order_date": pd.to_datetime(["1997-01-01 10:30", "1997-01-02", "1997-01-03"], format="ISO8601"),
            "total": [1.0, 2.5, 3.0],
        }
    )
    outs = [
        read(pdf, amount_col="total"),
        read(pl.from_pandas(pdf), amount_col="total"),
        read(pl.from_pandas(pdf).lazy(), amount_col="total"),
        read(pdf.set_index("cust"), amount_col="total"),  # customer column as the index
    ]
    for out in outs:
        assert_standard(out)
        assert out["customer_id"].to_list() == [3, 1, 2]
        assert out["timestamp"].to_list()[0] == dt.datetime(1997, 1, 1, 10, 30)
        assert out["amount"].to_list() == [1.0, 2.5, 3.0]


def test_pandas_string_ids_stay_strings():
    pdf = pd.DataFrame({"cust": ["x1", "x2"], "order_date": ["1997-01-01", "1997-01-02"]})
    out = read(pdf)
    assert out.schema["customer_id"] == pl.String
    assert out["customer_id"].to_list() == ["x1", "x2"]


@pytest.mark.parametrize(
    "values, date_format",
    [
        ([19970101, 19970215], None),  # 8-digit integers are recognised
        ([19970101, 19970215], "%Y%m%d"),
        (["19970101", "19970215"], None),
        (["1997-01-01", "1997-02-15"], None),
        (["01/01/1997", "15/02/1997"], "%d/%m/%Y"),
        ([dt.date(1997, 1, 1), dt.date(1997, 2, 15)], None),
        ([dt.datetime(1997, 1, 1), dt.datetime(1997, 2, 15)], None),
    ],
)
def test_date_forms(values, date_format):
    frame = pl.DataFrame({"cust": [1, 2], "order_date": values})
    out = read(frame, date_format=date_format)
    assert out["timestamp"].to_list() == [dt.datetime(1997, 1, 1), dt.datetime(1997, 2, 15)]


def test_iso_strings_with_and_without_time():
    frame = pl.DataFrame({"cust": [1, 2], "order_date": ["1997-01-01", "1997-01-02 13:45:10"]})
    out = read(frame)
    assert out["timestamp"].to_list() == [dt.datetime(1997, 1, 1), dt.datetime(1997, 1, 2, 13, 45, 10)]


def test_datetime_column_kept_as_is():
    stamps = pd.to_datetime(["1997-01-01 00:00:00.123456789"]).astype("datetime64[ns]")
    out = read(pd.DataFrame({"cust": [1], "order_date": stamps}))
    assert out.schema["timestamp"] == pl.Datetime("ns")
    assert out["timestamp"].cast(pl.Int64).item() == stamps.astype("int64")[0]


def test_csv_yyyymmdd_integers(tmp_path):
    out = read(write(tmp_path, "tx.csv", "cust,order_date\n1,19970101\n2,19971231\n"))
    assert out["timestamp"].to_list() == [dt.datetime(1997, 1, 1), dt.datetime(1997, 12, 31)]


def test_csv_type_clash_beyond_inference_window_is_reported_with_its_row(tmp_path):
    rows = [f"{i},1997-01-01,{i}.5" for i in range(1, 20_001)]
    rows[19_999] = "20000,1997-01-01,abc"
    out_err = error_of(write(tmp_path, "big.csv", "cust,order_date,total\n" + "\n".join(rows) + "\n"), amount_col="total")
    assert "column 'total'" in out_err and "row 20000 " in out_err and "'abc'" in out_err
    assert "not a number" in out_err


def test_csv_string_ids_after_inference_window(tmp_path):
    rows = [f"{i},1997-01-01" for i in range(1, 20_001)] + ["A7,1997-01-02"]
    out = read(write(tmp_path, "ids.csv", "cust,order_date\n" + "\n".join(rows) + "\n"))
    assert out.schema["customer_id"] == pl.String
    assert out["customer_id"][-1] == "A7"


# ----------------------------------------------------------------------------------------------
# file errors
# ----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    message = error_of(path)
    assert str(path) in message and "not found" in message


def test_directory_is_not_a_file(tmp_path):
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "directory" in message


def test_unknown_extension(tmp_path):
    path = write(tmp_path, "tx.xlsx", CSV_TEXT)
    message = error_of(path)
    assert str(path) in message and "'.xlsx'" in message and ".parquet" in message


def test_unreadable_parquet(tmp_path):
    path = write(tmp_path, "broken.parquet", "this is not parquet")
    message = error_of(path)
    assert str(path) in message and "cannot read as Parquet" in message


def test_unreadable_path_is_a_directory(tmp_path):
    # (a permission test cannot fail as root, which CI runs as; a directory is unreadable for everyone)
    path = tmp_path / "tx.csv"
    path.mkdir()
    message = error_of(path)
    assert str(path) in message and "is a directory" in message


def test_source_name_replaces_the_path(tmp_path):
    message = error_of(tmp_path / "nope.csv", source_name="orders export")
    assert message.startswith("orders export:")


def test_unsupported_source_type():
    with pytest.raises(ClvInputError, match="unsupported transactions source of type list"):
        read_transactions([1, 2, 3])


# ----------------------------------------------------------------------------------------------
# structure errors
# ----------------------------------------------------------------------------------------------


def test_missing_column_lists_available_columns(tmp_path):
    path = write(tmp_path, "tx.csv", CSV_TEXT)
    message = error_of(path, amount_col="amount")
    assert str(path) in message
    assert "column 'amount'" in message and "not found" in message
    assert "available columns: 'cust', 'order_date', 'total'" in message


@pytest.mark.parametrize("make", [pd.DataFrame, pl.DataFrame])
def test_missing_column_in_frames(make):
    message = error_of(make({"customer": [1], "order_date": ["1997-01-01"]}))
    assert message.startswith("DataFrame: column 'cust'")
    assert "'customer', 'order_date'" in message


def test_header_only_csv_is_empty(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date,total\n")
    message = error_of(path, amount_col="total")
    assert str(path) in message and "no data rows" in message


def test_zero_byte_file(tmp_path):
    path = write(tmp_path, "tx.csv", "")
    message = error_of(path)
    assert str(path) in message and "empty" in message


def test_empty_frame():
    message = error_of(pd.DataFrame({"cust": pd.Series([], dtype="int64"), "order_date": pd.Series([], dtype="str")}))
    assert message.startswith("DataFrame:") and "no data rows" in message


# ----------------------------------------------------------------------------------------------
# value errors: rows are 1-based data rows (header not counted)
# ----------------------------------------------------------------------------------------------


def test_missing_customer_ids_in_csv(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date\n1,1997-01-01\n,1997-01-02\n3,1997-01-03\n,1997-01-04\n")
    message = error_of(path)
    assert message.startswith(f"{path}: column 'cust', rows 2, 4 ")
    assert "missing customer id" in message


def test_missing_customer_ids_in_pandas():
    frame = pd.DataFrame({"cust": ["a", None, "c"], "order_date": ["1997-01-01"] * 3})
    message = error_of(frame)
    assert message == ("DataFrame: column 'cust', row 2 (values: missing): missing customer id; "
                       "give missing_customer='drop' to leave such rows out (they are counted)")


def test_many_offending_rows_are_summarised():
    frame = pl.DataFrame({"cust": [None] * 12, "order_date": ["1997-01-01"] * 12}, schema={"cust": pl.Int64, "order_date": pl.String})
    message = error_of(frame)
    assert "rows 1, 2, 3, 4, 5 (and 7 more)" in message


def test_unparseable_dates(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date\n1,1997-01-01\n2,1997-13-45\n3,yesterday\n")
    message = error_of(path)
    assert message.startswith(f"{path}: column 'order_date', rows 2, 3 (values: '1997-13-45', 'yesterday')")
    assert "unparseable date" in message


def test_unparseable_dates_with_format():
    frame = pl.DataFrame({"cust": [1, 2], "order_date": ["01/02/1997", "1997-02-01"]})
    message = error_of(frame, date_format="%d/%m/%Y")
    assert "row 2 (values: '1997-02-01')" in message and "'%d/%m/%Y'" in message


def test_missing_dates(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date\n1,1997-01-01\n2,\n")
    message = error_of(path)
    assert f"{path}: column 'order_date', row 2 (values: missing): missing date" == message


def test_missing_datetime_values_in_pandas():
    frame = pd.DataFrame({"cust": [1, 2], "order_date": pd.to_datetime(["1997-01-01", None])})
    message = error_of(frame)
    assert "column 'order_date', row 2" in message and "missing date" in message


def test_integers_that_are_not_dates():
    frame = pl.DataFrame({"cust": [1, 2], "order_date": [19970101, 42]})
    message = error_of(frame)
    assert "column 'order_date', row 2 (values: 42)" in message and "date_format" in message


def test_invalid_yyyymmdd_integer():
    frame = pl.DataFrame({"cust": [1, 2], "order_date": [19970101, 19971340]})
    message = error_of(frame)
    assert "row 2 (values: 19971340)" in message and "unparseable date" in message


def test_float_dates_are_rejected():
    message = error_of(pl.DataFrame({"cust": [1], "order_date": [1.5]}))
    assert "column 'order_date'" in message and "not dates" in message


def test_non_numeric_amounts(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date,total\n1,1997-01-01,3\n2,1997-01-02,$4\n3,1997-01-03,five\n")
    message = error_of(path, amount_col="total")
    assert message.startswith(f"{path}: column 'total', rows 2, 3 (values: '$4', 'five')")
    assert "not a number" in message


def test_missing_amounts(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date,total\n1,1997-01-01,3\n2,1997-01-02,\n")
    message = error_of(path, amount_col="total")
    assert f"{path}: column 'total', row 2 (values: missing): missing amount" == message


def test_nan_amount_in_pandas_is_missing():
    frame = pd.DataFrame({"cust": [1, 2], "order_date": ["1997-01-01"] * 2, "total": [1.0, np.nan]})
    message = error_of(frame, amount_col="total")
    assert "column 'total', row 2" in message and "missing amount" in message


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_non_finite_amounts_in_csv(tmp_path, text):
    path = write(tmp_path, "tx.csv", f"cust,order_date,total\n1,1997-01-01,3\n2,1997-01-02,{text}\n")
    message = error_of(path, amount_col="total")
    assert "column 'total', row 2" in message and "not finite" in message


def test_non_finite_amounts_in_polars():
    frame = pl.DataFrame({"cust": [1, 2, 3], "order_date": ["1997-01-01"] * 3, "total": [1.0, float("inf"), float("nan")]})
    message = error_of(frame, amount_col="total", source_name="orders")
    assert message == "orders: column 'total', rows 2, 3 (values: inf, nan): amount is not finite (nan or inf)"


def test_boolean_amounts_are_rejected():
    message = error_of(pl.DataFrame({"cust": [1], "order_date": ["1997-01-01"], "total": [True]}), amount_col="total")
    assert "column 'total'" in message and "amounts must be numbers" in message


def test_messages_are_single_lines(tmp_path):
    # every error above is asserted to be one line in error_of; check a reader-level failure too
    path = write(tmp_path, "tx.csv", 'cust,order_date\n1,"1997-01-01\n')
    with pytest.raises(ClvInputError) as info:
        read(path)
    assert "\n" not in str(info.value) and re.match(re.escape(str(path)), str(info.value))


def test_csv_ids_with_leading_zeros_stay_distinct(tmp_path):
    path = write(tmp_path, "ids.csv", "cid,date\n007,2020-01-01\n7,2020-01-02\n007,2020-02-01\n")
    frame = read_transactions(path, customer_col="cid")
    assert frame["customer_id"].dtype == pl.String
    assert frame["customer_id"].to_list() == ["007", "7", "007"]


def test_csv_plain_integer_ids_are_integers(tmp_path):
    frame = read_transactions(write(tmp_path, "ids.csv", "cid,date\n12,2020-01-01\n-3,2020-01-02\n"), customer_col="cid")
    assert frame["customer_id"].dtype == pl.Int64
    assert frame["customer_id"].to_list() == [12, -3]


def test_dates_are_iso_only_without_a_format(tmp_path):
    # "05/01/2020" is 5 January or 1 May: never guessed
    message = error_of(write(tmp_path, "tx.csv", "cust,order_date\n1,05/01/2020\n"))
    assert "row 1" in message and "05/01/2020" in message and "ISO" in message
    frame = read(write(tmp_path, "ok.csv", "cust,order_date\n1,05/01/2020\n"), date_format="%d/%m/%Y")
    assert frame["timestamp"][0] == dt.datetime(2020, 1, 5)


def test_utc_offsets_keep_the_local_wall_clock(tmp_path):
    text = "cust,order_date\n1,2020-01-01T23:00+05:00\n1,2020-01-02T01:00:00Z\n1,2020-01-03 10:00\n"
    stamps = read(write(tmp_path, "tx.csv", text))["timestamp"].to_list()
    assert stamps == [dt.datetime(2020, 1, 1, 23), dt.datetime(2020, 1, 2, 1), dt.datetime(2020, 1, 3, 10)]


def test_padded_text_ids_are_one_customer(tmp_path):
    frame = read_transactions(write(tmp_path, "ids.csv", "cid,date\n 1,2020-01-01\n1 ,2020-01-02\n1,2020-01-03\n"),
                              customer_col="cid")
    assert frame["customer_id"].to_list() == [1, 1, 1]


def test_duplicate_column_names_are_an_error(tmp_path):
    message = error_of(write(tmp_path, "tx.csv", "cust,order_date,total,total\n1,2020-01-01,1,2\n"),
                       amount_col="total")
    assert "'total'" in message and "2 times" in message
    frame = pd.DataFrame([[1, "2020-01-01", 1.0, 2.0]], columns=["cust", "order_date", "total", "total"])
    message = error_of(frame, amount_col="total")
    assert "'total'" in message and "2 times" in message


def test_pandas_columns_with_non_text_labels(tmp_path):
    frame = pd.DataFrame({1: [7, 7], 2: pd.to_datetime(["2020-01-01", "2020-01-09"])})
    out = read_transactions(frame, customer_col="1", date_col="2")
    assert out["customer_id"].to_list() == [7, 7]


def test_float_ids_beyond_int64_are_an_error():
    frame = pd.DataFrame({"cust": [1e30, 2.0], "order_date": pd.to_datetime(["2020-01-01", "2020-01-02"])})
    message = error_of(frame)
    assert "'cust'" in message and "row 1" in message and "integers or strings" in message


def test_ragged_csv_row_is_named(tmp_path):
    message = error_of(write(tmp_path, "tx.csv", "cust,order_date,total\n1,2020-01-01,1\n1,2020-01-05,2,3\n"),
                       amount_col="total")
    assert "row 2 (line 3) has 4 fields, the header has 3" in message


# ----------------------------------------------------------------------------------------------
# messy exports: encodings, decimal commas, quantity x price, missing ids, duplicates
# ----------------------------------------------------------------------------------------------


def write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


LATIN = "cust,order_date,item,total\n1,2020-01-01,Caf\xe9,1.5\n2,2020-01-02,\xa3 tin,2.0\n"


def test_latin1_file_needs_its_encoding(tmp_path):
    path = write_bytes(tmp_path, "tx.csv", LATIN.encode("latin-1"))
    with pytest.raises(ClvInputError) as info:
        read(path, amount_col="total")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "line 2 " in message
    assert "give encoding='latin-1' (or cp1252)" in message and info.value.argument == "encoding"
    for encoding in ("latin-1", "cp1252", "ISO-8859-1"):
        out = read(path, amount_col="total", encoding=encoding)
        assert out["amount"].to_list() == [1.5, 2.0]


def test_gzipped_cp1252_file(tmp_path):
    path = tmp_path / "tx.csv.gz"
    with gzip.open(path, "wb") as handle:
        handle.write("cust;order_date;total\n1;2020-01-01;\u20ac 3\n".replace("\u20ac 3", "3").encode("cp1252"))
    assert read(path, amount_col="total", encoding="cp1252")["amount"].to_list() == [3.0]


def test_bytes_invalid_in_the_given_encoding_and_unknown_encodings(tmp_path):
    path = write_bytes(tmp_path, "tx.csv", b"cust,order_date\n1,2020-01-01\n2,2020-01-02\x81\n")
    with pytest.raises(ClvInputError) as info:
        read(path, encoding="cp1252")
    assert info.value.argument == "encoding" and "line 3" in str(info.value)
    with pytest.raises(ClvInputError) as info:
        read(path, encoding="klingon")
    assert info.value.argument == "encoding" and info.value.value == "klingon" and "latin-1" in info.value.reason


def test_decimal_commas(tmp_path):
    path = write(tmp_path, "tx.csv", 'cust;order_date;total\n1;2020-01-01;"1.234,56"\n2;2020-01-02;2,5\n3;2020-01-03;7\n')
    out = read(path, amount_col="total", decimal_comma=True)
    assert out["amount"].to_list() == [1234.56, 2.5, 7.0]
    message = error_of(path, amount_col="total")
    assert "rows 1, 2" in message and "give decimal_comma=True" in message
    bad = write(tmp_path, "bad.csv", "cust;order_date;total\n1;2020-01-01;1.5\n")  # a point is a thousands mark here
    assert "decimal comma" in error_of(bad, amount_col="total", decimal_comma=True)


def test_quantity_times_price(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date,qty,price\n1,2020-01-01,3,2.5\n1,2020-01-02,-1,2.5\n")
    out, acc = read(path, quantity_col="qty", price_col="price", with_accounting=True, returns="net")
    assert out["amount"].to_list() == [7.5, -2.5] and acc.n_return_rows == 1 and acc.return_value == -2.5
    for kw in ({"amount_col": "qty", "quantity_col": "qty", "price_col": "price"}, {"quantity_col": "qty"},
               {"price_col": "price"}):
        message = error_of(path, **kw)
        assert "quantity_col" in message and "price_col" in message


def test_integral_float_ids_become_integers(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date\n13904.0,2020-01-01\n12.00,2020-01-02\n13904,2020-01-03\n")
    out = read(path)
    assert out.schema["customer_id"] == pl.Int64 and out["customer_id"].to_list() == [13904, 12, 13904]
    mixed = read(write(tmp_path, "mixed.csv", "cust,order_date\n13904.0,2020-01-01\n12.5,2020-01-02\n"))
    assert mixed["customer_id"].to_list() == ["13904.0", "12.5"]


def test_missing_customers_dropped_and_counted_with_input_row_numbers(tmp_path):
    path = write(tmp_path, "tx.csv", "cust,order_date\n1,2020-01-01\n,2020-01-02\n  ,2020-01-03\n4,2020-13-01\n")
    message = error_of(path, missing_customer="drop")
    assert "row 4 (values: '2020-13-01')" in message  # the input row, not the row after dropping
    ok = write(tmp_path, "ok.csv", "cust,order_date\n1,2020-01-01\n,2020-01-02\n  ,2020-01-03\n4,2020-01-04\n")
    out, acc = read(ok, missing_customer="drop", with_accounting=True)
    assert out["customer_id"].to_list() == [1, 4]
    assert (acc.n_transactions, acc.n_rows_missing_customer, acc.n_rows) == (4, 2, 2)
    assert "missing_customer='drop'" in error_of(ok)


def test_duplicates_are_whole_identical_rows(tmp_path):
    text = ("invoice,item,cust,order_date,total\n"
            "1,A,7,2020-01-01 10:00,2.0\n"
            "1,B,7,2020-01-01 10:00,2.0\n"  # another item of the invoice with an equal amount: not a duplicate
            "1,A,7,2020-01-01 10:00,2.0\n"  # an exact copy of the first line
            "1,A,7,2020-01-01 10:00,2.0\n")  # and another
    path = write(tmp_path, "tx.csv", text)
    kept, acc = read(path, amount_col="total", with_accounting=True)
    assert kept.height == 4 and acc.n_duplicate_rows == 2 and acc.n_duplicate_rows_dropped == 0
    dropped, acc = read(path, amount_col="total", duplicates="drop", with_accounting=True)
    assert dropped["amount"].to_list() == [2.0, 2.0] and acc.n_duplicate_rows_dropped == 2
    narrow = write(tmp_path, "narrow.csv", "cust,order_date,total\n7,2020-01-01,2.0\n7,2020-01-01,2.0\n")
    assert read(narrow, amount_col="total", with_accounting=True)[1].n_duplicate_rows == 1
    frame = pd.read_csv(path)
    assert read(frame, amount_col="total", duplicates="drop", with_accounting=True)[1].n_duplicate_rows == 2


@pytest.mark.parametrize("kw", [{"missing_customer": "skip"}, {"duplicates": "remove"}, {"returns": "keep"},
                                {"date_format": "dd/mm/yyyy"}])
def test_option_values_are_checked(tmp_path, kw):
    with pytest.raises(ClvInputError) as info:
        read(write(tmp_path, "tx.csv", CSV_TEXT), **kw)
    (argument, value), = kw.items()
    assert info.value.argument == argument and info.value.value == value


def test_fast_and_general_csv_paths_agree(tmp_path):
    text = "cust,order_date,total,note\n" + "".join(
        f"{i % 7},2020-0{1 + i % 9}-1{i % 10} 0{i % 10}:{10 + i % 50}:0{i % 10},{i * 0.25},n{i % 3}\n" for i in range(200)
    )
    path = write(tmp_path, "tx.csv", text)
    fast = read(path, amount_col="total")
    general = read(pl.read_csv(path, schema_overrides={"order_date": pl.String}), amount_col="total")
    assert fast.equals(general)
    mixed = write(tmp_path, "mixed.csv", "cust,order_date\n1,2020-01-01\n1,2020-01-02 10:30\n1,2020-01-03T11:00:05.5\n")
    assert read(mixed)["timestamp"].to_list() == [
        dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 2, 10, 30), dt.datetime(2020, 1, 3, 11, 0, 5, 500000)]


def test_day_first_dates_without_a_format_suggest_one(tmp_path):
    message = error_of(write(tmp_path, "tx.csv", "cust,order_date\n1,13/09/2011 08:26\n"))
    assert "give date_format, e.g. '%d/%m/%Y %H:%M' (day first) or '%m/%d/%Y %H:%M' (month first)" in message


@pytest.mark.parametrize("order", ["shuffled", "by_time", "by_customer_time"])
def test_duplicate_count_is_exact_in_any_row_order(order):
    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame({
        "cust": rng.integers(0, 50, n),
        "order_date": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 40, n), unit="D"),
        "total": rng.integers(1, 4, n).astype(float),
        "item": rng.integers(0, 3, n),
    })
    frame = pd.concat([frame, frame.sample(200, random_state=1)], ignore_index=True)
    if order == "shuffled":
        frame = frame.sample(frac=1.0, random_state=2)
    elif order == "by_time":
        frame = frame.sort_values("order_date", kind="stable")
    else:
        frame = frame.sort_values(["cust", "order_date"], kind="stable")
    expected = int(frame.duplicated().sum())
    out, acc = read(frame, amount_col="total", duplicates="drop", with_accounting=True)
    assert acc.n_duplicate_rows == expected > 200 and out.height == len(frame) - expected


def test_repeated_names_of_unused_columns(tmp_path):
    text = "cust,order_date,total,note,note\n1,2020-01-01,2.5,a,b\n1,2020-01-01,2.5,a,c\n1,2020-01-01,2.5,a,c\n"
    out, acc = read(write(tmp_path, "tx.csv", text), amount_col="total", with_accounting=True)
    assert out.height == 3 and acc.n_duplicate_rows == 1  # the rows differ in the second 'note' only


def test_header_that_is_not_utf8(tmp_path):
    path = write_bytes(tmp_path, "tx.csv", "cust,order_date,caf\xe9\n1,2020-01-01,x\n".encode("latin-1"))
    message = error_of(path)
    assert "line 1 " in message and "encoding='latin-1'" in message
    assert read(path, encoding="latin-1")["customer_id"].to_list() == [1]
