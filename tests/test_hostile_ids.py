"""Issue 17, "ids, dates and what we write into CSV": hostile inputs that once lost rows, made phantom
customers, wrote spreadsheet formulas or ended in a traceback. Each test asserts the exit code, the one
line (what it names) and that nothing was lost or written."""

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clv_forecast import ClvModel, simulate, summarize
from clv_forecast.cli import main
from clv_forecast.csv_guard import guard_frame, guard_table
from clv_forecast.errors import ClvInputError, DataWarning
from clv_forecast.experiment import SCHEMA
from clv_forecast.ids import CONTROL_REASON, id_state
from clv_forecast.scoring import score_file

NULL_SPELLINGS = ["NA", "N/A", "NULL", "null", "nan", "NaN", "#N/A", "None"]
FORMULAS = ['=HYPERLINK("http://x")', "=cmd|' /C calc'!A0", "+1+1", "@SUM(1)", "-2+3"]


def _log(ids_by_customer: dict | None = None, n: int = 150) -> pd.DataFrame:
    """A small simulated log (text ids ``c0``...), some customers renamed by ``ids_by_customer``."""
    tx = simulate(n, r=0.6, alpha=4, a=0.8, b=2.5, p=6, q=4, v=15, seed=11, end="2020-12-31")
    names = {c: f"c{c}" for c in tx["customer_id"].unique()}
    names.update(ids_by_customer or {})
    tx["customer_id"] = tx["customer_id"].map(names)
    return tx.rename(columns={"timestamp": "date"})


def _run(args, capsys):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


def _one_line_error(args, capsys):
    rc, out, err = _run(args, capsys)
    assert rc == 2, (rc, out, err)
    assert err.startswith("clv-forecast: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    log = _log()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel().fit(summarize(log, amount_col="amount"))
    return model.save(folder / "m.json")


# -- 1. one id rule: "NA", "NULL", "nan" are ids everywhere -------------------------------------


def test_id_rule_in_one_place():
    assert [id_state(v) for v in NULL_SPELLINGS] == ["ok"] * len(NULL_SPELLINGS)
    assert [id_state(v) for v in (None, float("nan"), "", "  \t ")] == ["missing"] * 4
    assert id_state("a\x00") == id_state("a\tb") == id_state("x\x9f") == "control"
    assert id_state(" 17 ") == "ok"


def test_fit_table_with_null_spelled_ids_is_scored_whole(tmp_path, capsys):
    renamed = dict(zip(range(len(NULL_SPELLINGS)), NULL_SPELLINGS))
    log = _log(renamed)
    log.to_csv(tmp_path / "log.csv", index=False)
    n = log["customer_id"].nunique()
    rc, out, err = _run(["fit", "-t", tmp_path / "log.csv", "--amount-col", "amount", "--predictions",
                         tmp_path / "t.csv", "--output", tmp_path / "m.json"], capsys)
    assert rc == 0, err
    table = pd.read_csv(tmp_path / "t.csv", keep_default_na=False, dtype={"customer_id": str})
    assert len(table) == n and set(NULL_SPELLINGS) <= set(table["customer_id"])
    rc, out, err = _run(["score", "--model", tmp_path / "m.json", "--input", tmp_path / "t.csv",
                         "--output", tmp_path / "s.csv"], capsys)
    assert rc == 0, err
    assert f"read {n}, scored {n}, rejected 0" in out
    scores = pd.read_csv(tmp_path / "s.csv", keep_default_na=False, dtype={"customer_id": str})
    assert sorted(scores["customer_id"]) == sorted(table["customer_id"])
    # Parquet in, the same rule
    table.to_parquet(tmp_path / "t.parquet")
    report = score_file(tmp_path / "m.json", tmp_path / "t.parquet", tmp_path / "s.parquet")
    assert report.scored == n and report.rejected == 0


def test_rejected_rows_keep_their_id_as_read(tmp_path, model_file):
    rows = pd.DataFrame({"customer_id": ["NULL", " NULL ", "N/A", "", "ok"],
                         "frequency": [1, 1, -1, 1, 1], "recency": [1.0, 1, 1, 1, 1], "T": [5.0, 5, 5, 5, 5],
                         "monetary_value": [10.0, 10, 10, 10, 10]})
    rows.to_csv(tmp_path / "in.csv", index=False)
    report = score_file(model_file, tmp_path / "in.csv", tmp_path / "out.csv", max_reject_share=1)
    assert (report.read, report.scored, report.rejected) == (5, 2, 3)
    rejects = pd.read_csv(report.rejects, keep_default_na=False, dtype={"customer_id": str})
    assert rejects["row"].tolist() == [2, 3, 4]
    assert rejects["customer_id"].tolist() == [" NULL ", "N/A", ""]  # as read, never blanked
    assert rejects["reason"].tolist()[0] == "duplicate id" and rejects["reason"].tolist()[2] == "missing id"


# -- 2. control characters in ids ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "parquet", "frame"])
@pytest.mark.parametrize("char", ["\x00", "\x1b", "\t", "\x85"])
def test_control_character_in_id_is_refused_with_its_rows(tmp_path, capsys, kind, char):
    log = _log()
    target = log["customer_id"] == "c10"
    log.loc[target, "customer_id"] = f"c1{char}0"
    rows = (np.flatnonzero(target.to_numpy()) + 1).tolist()
    code = f"U+{ord(char):04X}"
    if kind == "frame":
        with pytest.raises(ClvInputError) as info:
            summarize(log, amount_col="amount")
        message = str(info.value)
    else:
        path = tmp_path / f"log.{kind}"
        log.to_csv(path, index=False) if kind == "csv" else log.to_parquet(path)
        message = _one_line_error(["fit", "-t", path, "--amount-col", "amount", "--predictions",
                                   tmp_path / "p.csv"], capsys)
        assert str(path) in message
        assert not (tmp_path / "p.csv").exists()
    assert "'customer_id'" in message and f"row {rows[0]}" in message.replace("rows", "row") and code in message
    assert "control character" in message and "remove" in message


def test_control_character_in_id_is_a_reject_in_score(tmp_path, model_file, capsys):
    ids = ["a", "b\x00", "b", "c\x07d", "e"]
    rows = pd.DataFrame({"customer_id": ids, "frequency": [1] * 5, "recency": [1.0] * 5, "T": [5.0] * 5,
                         "monetary_value": [10.0] * 5})
    rows.to_csv(tmp_path / "in.csv", index=False)
    rc, out, err = _run(["score", "--model", model_file, "--input", tmp_path / "in.csv", "--output",
                         tmp_path / "out.csv", "--max-reject-share", "0.5"], capsys)
    assert rc == 0, err
    assert "read 5, scored 3, rejected 2" in out and f"{CONTROL_REASON}: 2" in out
    assert b"\x00" not in (tmp_path / "out.csv").read_bytes()
    scores = pd.read_csv(tmp_path / "out.csv")
    assert sorted(scores["customer_id"]) == ["a", "b", "e"]  # "b" is not a duplicate of "b\0"
    rejects = pd.read_csv(tmp_path / "out.csv.rejects.csv")
    assert rejects["row"].tolist() == [2, 4] and rejects["reason"].tolist() == [CONTROL_REASON] * 2
    assert rejects["customer_id"].tolist() == ["b\\x00", "c\\x07d"]  # shown, escaped


# -- 3. CSV formula injection ------------------------------------------------------------------


def test_guard_touches_only_text_cells_that_start_like_a_formula():
    table = pa.table({"id": FORMULAS + ["ok", None, "a=b", "\tx", "\rx"],
                      "value": [-1.5, 2, 3, 4, 5, 6, 7, 8, 9, 10]})
    guarded, count = guard_table(table)
    assert count == 7
    assert guarded.column("id").to_pylist() == ["'" + f for f in FORMULAS] + ["ok", None, "a=b", "'\tx", "'\rx"]
    assert guarded.column("value").equals(table.column("value"))
    assert guard_table(table, verbatim=True) == (table, 0)
    frame = pd.DataFrame({"id": ["+1", "x"], "n": [-1, 2], "mixed": [1, "=1"]})
    out, count = guard_frame(frame)
    assert count == 1 and out["id"].tolist() == ["'+1", "x"] and out["n"].tolist() == [-1, 2]
    assert frame["id"].tolist() == ["+1", "x"]  # the caller's frame is not changed


def test_fit_predictions_csv_is_guarded_and_verbatim_keeps_it(tmp_path, capsys):
    log = _log(dict(zip(range(len(FORMULAS)), FORMULAS)))
    log.to_csv(tmp_path / "log.csv", index=False)
    base = ["fit", "-t", tmp_path / "log.csv", "--amount-col", "amount"]
    rc, out, err = _run(base + ["--predictions", tmp_path / "p.csv"], capsys)
    assert rc == 0, err
    assert (f"{len(FORMULAS)} text cells starting with = + - @ written with a leading ' (spreadsheet formula "
            "guard); --verbatim-csv keeps them") in out
    ids = pd.read_csv(tmp_path / "p.csv")["customer_id"].tolist()
    assert all("'" + f in ids for f in FORMULAS) and not any(f in ids for f in FORMULAS)
    rc, out, err = _run(base + ["--predictions", tmp_path / "v.csv", "--verbatim-csv"], capsys)
    assert rc == 0 and "spreadsheet formula guard" not in out
    assert set(FORMULAS) <= set(pd.read_csv(tmp_path / "v.csv")["customer_id"])
    rc, out, err = _run(base + ["--predictions", tmp_path / "p.parquet"], capsys)
    assert rc == 0 and "spreadsheet formula guard" not in out  # Parquet is never altered
    assert set(FORMULAS) <= set(pd.read_parquet(tmp_path / "p.parquet")["customer_id"])


def test_score_and_rejects_csv_are_guarded(tmp_path, model_file, capsys):
    rows = pd.DataFrame({"customer_id": FORMULAS + ["=bad"], "frequency": [1] * 5 + [-1],
                         "recency": [1.0] * 6, "T": [5.0] * 6, "monetary_value": [10.0] * 6})
    rows.to_csv(tmp_path / "in.csv", index=False)
    args = ["score", "--model", model_file, "--input", tmp_path / "in.csv", "--max-reject-share", "0.5"]
    rc, out, err = _run(args + ["--output", tmp_path / "out.csv"], capsys)
    assert rc == 0, err
    assert "6 text cells starting with = + - @ written with a leading '" in out
    assert pd.read_csv(tmp_path / "out.csv")["customer_id"].tolist() == ["'" + f for f in FORMULAS]
    assert pd.read_csv(tmp_path / "out.csv.rejects.csv")["customer_id"].tolist() == ["'=bad"]
    rc, out, err = _run(args + ["--output", tmp_path / "raw.csv", "--verbatim-csv"], capsys)
    assert rc == 0 and "formula guard" not in out
    assert pd.read_csv(tmp_path / "raw.csv")["customer_id"].tolist() == FORMULAS


def test_compare_tables_are_guarded(tmp_path, capsys):
    log = _log(dict(zip(range(len(FORMULAS)), FORMULAS)), n=300)
    log.to_csv(tmp_path / "log.csv", index=False)
    rc, out, err = _run(["compare", "-t", tmp_path / "log.csv", "--amount-col", "amount", "--calibration-end",
                         "2020-09-30", "--output", tmp_path / "cmp"], capsys)
    assert rc == 0, err
    assert "spreadsheet formula guard" in out
    for csv in (tmp_path / "cmp").glob("*.csv"):
        text = csv.read_text()
        assert not any(f"\n{f}," in text or f'\n"{f}' in text for f in ("=", "+", "@"))
    customers = pd.read_parquet(tmp_path / "cmp" / "customers.parquet")
    assert set(FORMULAS) <= set(customers["customer_id"])  # Parquet as it is


def test_experiment_key_verbatim_csv(tmp_path, capsys):
    assert SCHEMA["output"]["verbatim_csv"][1] is False
    log = _log({0: "@SUM(1)"})
    log.to_csv(tmp_path / "log.csv", index=False)
    spec = tmp_path / "e.toml"
    spec.write_text('[data]\nsource = "log.csv"\namount_col = "amount"\n[output]\npredictions = "p.csv"\n'
                    "verbatim_csv = true\n")
    rc, out, err = _run(["run", "--experiment", spec, "--no-tracking"], capsys)
    assert rc == 0, err
    assert "@SUM(1)" in pd.read_csv(tmp_path / "p.csv")["customer_id"].tolist()


# -- 4. dates outside pandas' range, two-digit years --------------------------------------------


def _far_log(tmp_path, kind, when):
    log = _log()
    log["date"] = log["date"].astype("datetime64[us]")
    log.loc[3, "date"] = when
    path = tmp_path / f"far.{kind}"
    if kind == "csv":
        log.to_csv(path, index=False)
    else:
        pq.write_table(pa.Table.from_pandas(log, preserve_index=False), path)
    return path


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("when", [dt.datetime(3000, 1, 2), dt.datetime(1000, 5, 1)])
def test_dates_outside_the_range_name_file_column_row(tmp_path, capsys, kind, when):
    path = _far_log(tmp_path, kind, when)
    message = _one_line_error(["fit", "-t", path, "--amount-col", "amount", "--output", tmp_path / "m.json"], capsys)
    assert str(path) in message and "'date'" in message and "row 4 " in message
    assert "outside the supported range 1678-01-01 to 2261-12-31" in message
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("option", ["--calibration-end", "--observation-end"])
def test_period_end_outside_the_range_names_the_option(tmp_path, capsys, option):
    _log().to_csv(tmp_path / "log.csv", index=False)
    message = _one_line_error(["fit", "-t", tmp_path / "log.csv", "--amount-col", "amount", option, "3000-09-30"],
                              capsys)
    assert f"{option} 3000-09-30: outside the supported range" in message
    with pytest.raises(ClvInputError, match="calibration_end=Period"):
        summarize(_log(), amount_col="amount", calibration_end=pd.Period("3000-01", "M"))


def test_two_digit_years_read_with_four_digit_format(tmp_path, capsys):
    log = _log()
    log["date"] = log["date"].dt.strftime("%m/%d/%y %H:%M")
    log.to_csv(tmp_path / "log.csv", index=False)
    message = _one_line_error(["fit", "-t", tmp_path / "log.csv", "--amount-col", "amount",
                               "--date-format", "%m/%d/%Y %H:%M"], capsys)
    assert "log.csv" in message and "'date'" in message and "rows 1, 2" in message
    assert "the year is 2 digits" in message and "use %y" in message and "--date-format %m/%d/%y %H:%M" in message


# -- 5. Parquet shapes -------------------------------------------------------------------------


@pytest.mark.parametrize("column, values, expected", [
    ("customer_id", pa.array([[1], [2]]), "list<element: int64>"),
    ("frequency", pa.array([{"a": 1}, {"a": 2}]), "struct<a: int64>"),
])
def test_score_parquet_column_of_another_shape(tmp_path, model_file, capsys, column, values, expected):
    data = {"customer_id": pa.array([1, 2]), "frequency": pa.array([1.0, 2]), "recency": pa.array([1.0, 2]),
            "T": pa.array([3.0, 4]), "monetary_value": pa.array([3.0, 4])}
    data[column] = values
    pq.write_table(pa.table(data), tmp_path / "in.parquet")
    message = _one_line_error(["score", "--model", model_file, "--input", tmp_path / "in.parquet", "--output",
                               tmp_path / "out.parquet"], capsys)
    assert "in.parquet" in message and f"column {column!r} has type {expected}" in message
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize("column", ["customer_id", "date", "amount"])
def test_transactions_parquet_struct_column(tmp_path, capsys, column):
    data = {"customer_id": pa.array([1, 2]), "date": pa.array(["2020-01-01", "2020-02-01"]),
            "amount": pa.array([1.0, 2.0])}
    data[column] = pa.array([{"a": 1}, {"a": 2}])
    pq.write_table(pa.table(data), tmp_path / "log.parquet")
    message = _one_line_error(["fit", "-t", tmp_path / "log.parquet", "--amount-col", "amount"], capsys)
    assert "log.parquet" in message and f"column {column!r} has type Struct" in message


# -- 6. messages name the input's rows or ids, never internal positions --------------------------


def test_sum_overflow_names_file_and_customer(tmp_path, capsys):
    text = ("customer_id,date,amount\nA,2020-01-01,5\nA,2020-01-02,6\nB,2020-02-01,7\n"
            "B,2020-03-01,1e308\nB,2020-03-05,1e308\n")
    (tmp_path / "log.csv").write_text(text)
    message = _one_line_error(["fit", "-t", tmp_path / "log.csv", "--amount-col", "amount"], capsys)
    assert "log.csv" in message and "'amount'" in message and "customer 'B'" in message
    assert "RFM table" not in message


def test_zero_spend_warning_of_score_names_input_rows(tmp_path, model_file):
    n = 30
    rows = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "frequency": [1.0] * n,
                         "recency": [1.0] * n, "T": [5.0] * n, "monetary_value": [10.0] * n})
    rows.loc[25, "monetary_value"] = 0.0
    rows.to_csv(tmp_path / "in.csv", index=False)
    with pytest.warns(DataWarning, match=r"row 26 of the input"):
        score_file(model_file, tmp_path / "in.csv", tmp_path / "out.csv", batch_rows=10, max_reject_share=1)


def test_ragged_row_in_score_counts_data_records(tmp_path, model_file, capsys):
    (tmp_path / "in.csv").write_text('customer_id,frequency,recency,T,monetary_value\na,1,1,2,3\nb,"1\n",1,2,3\n'
                                     "c,1,1,2,3,4\n")
    message = _one_line_error(["score", "--model", model_file, "--input", tmp_path / "in.csv", "--output",
                               tmp_path / "out.csv"], capsys)
    assert "in.csv" in message and "row 3 (line 5) has 6 fields, the header has 5" in message
    assert not (tmp_path / "out.csv").exists()


# -- Spark: the same id and date rules -----------------------------------------------------------


def test_spark_id_and_date_rules(spark, tmp_path):
    from clv_forecast.spark import score_spark, summarize_spark

    log = _log({0: "NA", 1: " NULL "})
    log["date"] = log["date"].astype("datetime64[us]")
    local = summarize(log, amount_col="amount")
    frame = spark.createDataFrame(log)
    remote = summarize_spark(frame, amount_col="amount").to_pandas()
    assert len(remote) == len(local) and {"NA", "NULL"} <= set(remote.index)
    bad = log.copy()
    bad.loc[bad["customer_id"] == "c7", "customer_id"] = "c7\x00"
    with pytest.raises(ClvInputError, match=r"'customer_id': \d+ row\(s\) whose customer id holds a control "
                                            r"character \(U\+0000\)"):
        summarize_spark(spark.createDataFrame(bad), amount_col="amount")
    far = log.copy()
    far.loc[3, "date"] = dt.datetime(3000, 1, 2)
    with pytest.raises(ClvInputError, match=r"'date': 1 row\(s\) with a date outside the supported range"):
        summarize_spark(spark.createDataFrame(far), amount_col="amount")
    rows = pd.DataFrame({"customer_id": ["NA", "b\x00", "b", " "], "frequency": [1.0] * 4, "recency": [1.0] * 4,
                         "T": [5.0] * 4, "monetary_value": [10.0] * 4})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ClvModel().fit(local)
    out = score_spark(model, spark.createDataFrame(rows)).toPandas().set_index("customer_id")
    assert pd.isna(out.loc["NA", "reject_reason"]) and pd.isna(out.loc["b", "reject_reason"])
    assert out.loc["b\x00", "reject_reason"] == CONTROL_REASON and out.loc[" ", "reject_reason"] == "missing id"


def test_time_zone_aware_dates_outside_the_range():
    log = _log()
    log["date"] = log["date"].astype("datetime64[us]").dt.tz_localize("UTC")
    log.loc[5, "date"] = pd.Timestamp("3000-01-02", tz="UTC").as_unit("us")
    with pytest.raises(ClvInputError, match=r"'date', row 6 .*outside the supported range"):
        summarize(log, amount_col="amount")
    assert len(summarize(log.drop(index=5), amount_col="amount")) > 0  # the wall-clock time of the others is read
