"""Issue 17, "one default, returns that match purchases, unreliable models, exit codes":

* one set of CLV value defaults (horizon 12M, 10 %/Y, step 1M, margin 1) for every door: the same model and
  data give the same total CLV through the API, ``fit --predictions``, ``score --input``, ``score
  --transactions`` and the pyfunc with no rate given; the settings are printed beside every total and recorded
  in the Parquet metadata of the per-customer table and of the scores;
* returns that match earlier purchases are counted and valued under ``--returns drop`` (a same-day
  cancellation of a whole order is no longer kept silently); invoice-line logs (quantity x price) net them by
  default;
* a model whose file says ``"reliable": false`` is refused by ``score`` (exit 2, one line naming
  ``--allow-unreliable``) and scored with one warning line when allowed; the pyfunc warns once;
* data that cannot identify the parameters exit 3 (the README's code), one line, nothing saved.
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clv_forecast import ClvModel, summarize
from clv_forecast.cli import main
from clv_forecast.datasets import load_cdnow_sample
from clv_forecast.errors import ClvInputError
from clv_forecast.units import DEFAULT_DISCOUNT_RATE, VALUE_DEFAULTS

SETTINGS = "12M, 10%/Y, step 1M, margin 1"


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------------ one default


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory):
    """The CDNOW sample as a CSV log, a model fitted on its calibration period (CLI, no rate given) and the
    per-customer table of every customer to the observation end (Parquet and CSV)."""
    folder = tmp_path_factory.mktemp("defaults")
    log = folder / "cdnow.csv"
    load_cdnow_sample().to_csv(log, index=False)
    common = ["fit", "-t", log, "--amount-col", "amount", "--calibration-end", "1997-09-30", "--as-of",
              "observation-end", "--no-tracking"]
    assert main([str(a) for a in [*common, "--output", folder / "m.json", "--predictions",
                                  folder / "customers.parquet"]]) == 0
    assert main([str(a) for a in [*common, "--predictions", folder / "customers.csv"]]) == 0
    return folder


def test_every_door_defaults_to_the_one_set():
    """Every function and option that computes a CLV reads its defaults from units.VALUE_DEFAULTS."""
    from clv_forecast import compare, scoring, value
    from clv_forecast.cli import app
    from clv_forecast.experiment import SCHEMA
    from clv_forecast.spark import scoring as spark_scoring

    functions = [ClvModel.clv, value.customer_lifetime_value, compare.side_by_side, scoring.score_file,
                 scoring.score_transactions, spark_scoring.score_spark, spark_scoring.score_spark_to_parquet]
    for function in functions:
        parameters = inspect.signature(function).parameters
        for key, default in VALUE_DEFAULTS.items():
            if key in parameters:  # (side_by_side has no step: monthly)
                assert parameters[key].default == default, (function.__qualname__, key)
    for key, default in VALUE_DEFAULTS.items():
        assert SCHEMA["value"][key][1] == default, key
    score = {p.name: p.default for p in app.commands["score"].params}
    assert {key: score[key] for key in VALUE_DEFAULTS} == VALUE_DEFAULTS
    assert DEFAULT_DISCOUNT_RATE == "10%/Y"


def test_same_total_through_every_door_with_no_rate_given(cdnow, tmp_path, capsys):
    model = ClvModel.load(cdnow / "m.json")
    log = cdnow / "cdnow.csv"
    rfm = summarize(log, amount_col="amount", time_unit="W")  # histories to the observation end
    api = float(model.clv(rfm)["clv"].sum())
    table = pd.read_parquet(cdnow / "customers.parquet")
    fit_total = float(table["clv"].sum())
    rc, out, _ = run(capsys, "score", "--model", cdnow / "m.json", "--input", cdnow / "customers.csv",
                     "--output", tmp_path / "from_table.parquet", "--no-tracking")
    assert rc == 0 and f"total CLV ({SETTINGS})" in out
    from_table = float(pd.read_parquet(tmp_path / "from_table.parquet")["clv"].sum())
    rc, out, _ = run(capsys, "score", "--model", cdnow / "m.json", "-t", log, "--amount-col", "amount",
                     "--output", tmp_path / "from_log.parquet", "--no-tracking")
    assert rc == 0 and f"total CLV ({SETTINGS})" in out
    from_log = float(pd.read_parquet(tmp_path / "from_log.parquet")["clv"].sum())
    # the pyfunc, as MLflow loads it (the stateless wrapper reading the JSON file), with no params given
    from clv_forecast import tracking

    class Context:
        artifacts = {"model_file": str(cdnow / "m.json")}

    pyfunc = tracking.ClvPyfunc()
    pyfunc.load_context(Context())
    pyfunc_total = float(pyfunc.predict(None, rfm.reset_index()[["frequency", "recency", "T", "monetary_value"]])
                         ["clv"].sum())
    for total in (fit_total, from_table, from_log, pyfunc_total):
        assert total == pytest.approx(api, rel=1e-9, abs=0)
    # and not the 0 %/Y total the score command used to give
    assert float(model.clv(rfm, discount_rate="0%/Y")["clv"].sum()) > api * 1.03


def test_pyfunc_signature_defaults_are_the_one_set_when_the_run_set_none():
    from clv_forecast import tracking

    class Result:
        spec = {"value": None}

    assert tracking._value_defaults(Result()) == {**VALUE_DEFAULTS, "margin": float(VALUE_DEFAULTS["margin"]),
                                                  "interval": 0.0, "interval_method": "delta"}


def test_parquet_outputs_carry_the_settings(cdnow, tmp_path, capsys):
    meta = pq.read_schema(cdnow / "customers.parquet").metadata
    assert meta[b"clv_forecast.discount_rate"] == b"10%/Y" and meta[b"clv_forecast.horizon"] == b"12M"
    assert meta[b"clv_forecast.step"] == b"1M" and meta[b"clv_forecast.margin"] == b"1"
    assert meta[b"clv_forecast.time_unit"] == b"W" and b"pandas" in meta  # pandas' own metadata kept
    rc, out, _ = run(capsys, "score", "--model", cdnow / "m.json", "--input", cdnow / "customers.parquet",
                     "--output", tmp_path / "s.parquet", "--no-tracking", "--discount-rate", "5%/Y",
                     "--interval", "0.8")
    assert rc == 0 and "total CLV (12M, 5%/Y, step 1M, margin 1)" in out
    meta = pq.read_schema(tmp_path / "s.parquet").metadata
    assert meta[b"clv_forecast.discount_rate"] == b"5%/Y" and meta[b"clv_forecast.interval"] == b"0.8"


def test_totals_are_printed_with_their_settings(cdnow, capsys):
    common = ["fit", "-t", cdnow / "cdnow.csv", "--amount-col", "amount", "--no-tracking",
              "--predictions", cdnow / "p.csv"]
    rc, out, _ = run(capsys, *common)
    assert rc == 0 and f"total CLV ({SETTINGS}):" in out
    rc, out, _ = run(capsys, *common, "--json")
    data = json.loads(out)
    assert rc == 0 and data["value_settings"] == {"horizon": "12M", "discount_rate": "10%/Y", "step": "1M",
                                                  "margin": "1", "interval": "none"}
    small = cdnow / "small.csv"  # (compare draws its plots: a smaller log keeps the test fast)
    log = pd.read_csv(cdnow / "cdnow.csv")
    log[log["customer_id"] < 600].to_csv(small, index=False)
    rc, out, _ = run(capsys, "compare", "-t", small, "--amount-col", "amount",
                     "--calibration-end", "1997-09-30", "--no-tracking")
    assert rc == 0 and f"total CLV ({SETTINGS}):" in out


def test_the_report_records_the_settings(tmp_path, capsys):
    from clv_forecast.experiment import cdnow_spec, run as run_pipeline
    from clv_forecast.experiment import _report_document

    spec = cdnow_spec()
    spec["value"].update(interval=None)
    result = run_pipeline(spec, save=False)
    document = _report_document(result)
    assert f"CLV settings: {SETTINGS}" in document and f"total CLV ({SETTINGS})" in document


# ------------------------------------------------------------------------------------------ returns


def invoice_lines(path: Path) -> Path:
    """An invoice-line export: customer 1 buys a huge order and cancels all of it the same day (a ``C``
    invoice with the negative quantity), customers 2-4 buy normally, customer 2 returns part of an order."""
    rows = [
        ("536365", 1, "2011-01-10 09:00", 2, 10.0), ("536400", 1, "2011-03-01 10:00", 1, 12.0),
        ("581483", 1, "2011-06-09 09:15", 80995, 2.08), ("C581484", 1, "2011-06-09 09:27", -80995, 2.08),
        ("536366", 2, "2011-01-11 10:00", 3, 5.0), ("536367", 2, "2011-02-11 10:00", 4, 5.0),
        ("C536368", 2, "2011-02-12 10:00", -1, 5.0), ("536369", 2, "2011-05-01 10:00", 2, 5.0),
        ("536370", 3, "2011-01-12 10:00", 1, 30.0), ("536371", 3, "2011-04-12 10:00", 1, 20.0),
        ("536372", 4, "2011-02-01 10:00", 5, 3.0), ("536373", 4, "2011-07-01 10:00", 5, 3.0),
    ]
    frame = pd.DataFrame(rows, columns=["InvoiceNo", "CustomerID", "InvoiceDate", "Quantity", "UnitPrice"])
    frame.to_csv(path, index=False)
    return path


LINES = ["--customer-col", "CustomerID", "--date-col", "InvoiceDate", "--quantity-col", "Quantity",
         "--price-col", "UnitPrice", "--no-tracking"]


def test_drop_says_which_returns_match_purchases_and_what_they_cancel(tmp_path, capsys):
    log = invoice_lines(tmp_path / "lines.csv")
    rc, out, _ = run(capsys, "fit", "-t", log, *LINES, "--returns", "drop", "--json", "--save-unreliable")
    assert rc == 0
    accounting = json.loads(out)["accounting"]
    assert accounting["n_returns_matching"] == 2 and accounting["n_purchases_cancelled"] == 1
    assert accounting["return_cancelled_purchase_value"] == pytest.approx(168469.6)
    assert accounting["return_value_matching"] == pytest.approx(-168474.6)
    rfm = summarize(log, customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity",
                    price_col="UnitPrice", returns="drop")
    assert rfm.loc[1, "frequency"] == 2 and rfm.loc[1, "monetary_value"] > 80000  # the cancelled order is kept
    from clv_forecast.report import accounting_lines

    line = " ".join(accounting_lines(dict(rfm.attrs), len(rfm)))
    assert ("2 of them (total -168,474.60) match an earlier purchase of the same customer and fully cancel 1 "
            "purchase rows (value 168,469.60) that are still counted as purchases: --returns net") in line


def test_quantity_price_logs_net_by_default(tmp_path):
    log = invoice_lines(tmp_path / "lines.csv")
    rfm = summarize(log, customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity",
                    price_col="UnitPrice")
    assert rfm.attrs["returns"] == "net"
    assert rfm.loc[1, "frequency"] == 1 and rfm.loc[1, "monetary_value"] == pytest.approx(12.0)
    assert rfm.attrs["n_purchases_fully_returned"] == 1 and rfm.attrs["n_returns_matching"] == 2
    # an amount column keeps "drop" (a negative amount is not known to cancel a purchase), and says what matched
    frame = pd.read_csv(log)
    frame["amount"] = frame["Quantity"] * frame["UnitPrice"]
    amounts = summarize(frame, customer_col="CustomerID", date_col="InvoiceDate", amount_col="amount")
    assert amounts.attrs["returns"] == "drop" and amounts.attrs["n_returns_matching"] == 2
    assert amounts.attrs["n_purchases_cancelled"] == 1


def test_matching_under_drop_is_what_net_nets(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_retail_export import make_retail_export

    truth = make_retail_export(tmp_path / "retail.csv", 400, seed=5)
    options = dict(customer_col="CustomerID", date_col="InvoiceDate", quantity_col="Quantity", price_col="UnitPrice",
                   encoding=truth.encoding, date_format=truth.date_format, missing_customer="drop",
                   calibration_end=truth.calibration_end)
    dropped = summarize(truth.path, returns="drop", **options).attrs
    netted = summarize(truth.path, **options).attrs  # the default for quantity x price
    assert netted["returns"] == "net" and dropped["returns"] == "drop"
    assert dropped["n_returns_matching"] == netted["n_returns_netted"] == netted["n_returns_matching"] > 0
    assert dropped["n_purchases_cancelled"] == netted["n_purchases_fully_returned"]
    assert dropped["return_value_matching"] == pytest.approx(netted["return_value_matching"], rel=1e-12)
    assert dropped["return_value_matching"] < 0


# ------------------------------------------------------------------------------------------ unreliable models


@pytest.fixture()
def unreliable(cdnow, tmp_path):
    data = json.loads((cdnow / "m.json").read_text())
    data["purchases"]["converged"] = False
    data["reliable"] = False
    path = tmp_path / "unreliable.json"
    path.write_text(json.dumps(data))
    return path


def test_score_refuses_an_unreliable_model_unless_allowed(cdnow, unreliable, tmp_path, capsys):
    out_path = tmp_path / "s.parquet"
    rc, out, err = run(capsys, "score", "--model", unreliable, "--input", cdnow / "customers.parquet",
                       "--output", out_path, "--no-tracking")
    assert rc == 2 and err.count("\n") == 1
    assert "not reliable" in err and "--allow-unreliable" in err and str(unreliable) in err
    assert not out_path.exists() and not Path(str(out_path) + ".rejects.csv").exists()
    rc, out, err = run(capsys, "score", "--model", unreliable, "--input", cdnow / "customers.parquet",
                       "--output", out_path, "--no-tracking", "--allow-unreliable")
    assert rc == 0 and out_path.exists()
    assert err.count("\n") == 1 and err.startswith("clv-forecast: warning:") and "unreliable model" in err


def test_score_api_refuses_and_records_the_problems(cdnow, unreliable, tmp_path):
    from clv_forecast.scoring import score_file, score_transactions

    with pytest.raises(ClvInputError, match="allow_unreliable=True"):
        score_file(unreliable, cdnow / "customers.parquet", tmp_path / "a.parquet")
    with pytest.raises(ClvInputError, match="allow_unreliable=True"):
        score_transactions(unreliable, cdnow / "cdnow.csv", tmp_path / "b.parquet", amount_col="amount")
    assert not (tmp_path / "a.parquet").exists() and not (tmp_path / "b.parquet").exists()
    with pytest.warns(UserWarning, match="unreliable model"):
        report = score_file(unreliable, cdnow / "customers.parquet", tmp_path / "a.parquet", allow_unreliable=True)
    assert report.model_problems and "did not converge" in report.model_problems[0]
    assert report.settings["discount_rate"] == "10%/Y"


def test_score_run_metadata_in_mlflow_says_unreliable(cdnow, unreliable, tmp_path, monkeypatch):
    from clv_forecast import tracking
    from clv_forecast.scoring import score_file

    logged = {}

    class Client:
        def __init__(self, tracking_uri=None):
            pass

        def get_experiment_by_name(self, name):
            return None

        def create_experiment(self, name, tags=None):
            return "1"

        def log_inputs(self, run_id, datasets=None, models=None):
            logged["datasets"] = datasets

        def create_run(self, experiment_id, run_name, tags):
            logged["tags"] = tags

            class Info:
                run_id = "r"

            return type("Run", (), {"info": Info})()

        def log_batch(self, run_id, params=(), metrics=()):
            logged.setdefault("params", {}).update({p.key: p.value for p in params})

        def log_artifact(self, *args, **kwargs):
            pass

        def set_terminated(self, run_id, status):
            pass

    import mlflow.tracking

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Client)
    with pytest.warns(UserWarning):
        report = score_file(unreliable, cdnow / "customers.parquet", tmp_path / "a.parquet", allow_unreliable=True)
    tracking.log_score_run(report, params={"model": str(unreliable)}, input_path=cdnow / "customers.parquet",
                           tracking_uri=f"sqlite:///{tmp_path / 'x.db'}")
    assert logged["tags"]["reliable"] == "false" and "did not converge" in logged["tags"]["problems"]
    assert logged["params"]["model_reliable"] == "false" and logged["params"]["discount_rate"] == "10%/Y"


def test_pyfunc_warns_once_for_an_unreliable_model(unreliable, cdnow):
    from clv_forecast import tracking

    class Context:
        artifacts = {"model_file": str(unreliable)}

    pyfunc = tracking.ClvPyfunc()
    pyfunc.load_context(Context())  # loads
    frame = pd.DataFrame({"frequency": [1, 0], "recency": [3.0, 0.0], "T": [10.0, 5.0],
                          "monetary_value": [20.0, 0.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = pyfunc.predict(None, frame)
        pyfunc.predict(None, frame)
    messages = [str(w.message) for w in caught if "not reliable" in str(w.message)]
    assert len(messages) == 1 and "did not converge" in messages[0]
    assert np.isfinite(first["clv"]).all()


# ------------------------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("kind", ["one-time buyers only", "every customer identical"])
def test_data_that_cannot_identify_the_parameters_exit_3(kind, tmp_path, capsys):
    if kind == "one-time buyers only":
        frame = pd.DataFrame({"customer_id": range(40), "date": ["2020-01-01"] * 40, "amount": [10.0] * 40})
    else:
        frame = pd.DataFrame([(c, day, 10.0) for c in range(40) for day in ("2020-01-01", "2020-02-01")],
                             columns=["customer_id", "date", "amount"])
    log = tmp_path / "log.csv"
    frame.to_csv(log, index=False)
    model = tmp_path / "m.json"
    rc, out, err = run(capsys, "fit", "-t", log, "--amount-col", "amount", "--no-tracking", "--output", model,
                       "--save-unreliable")
    assert rc == 3 and err.count("\n") == 1 and err.startswith("clv-forecast: error:")
    assert "cannot be identified" in err and "Traceback" not in err
    assert not model.exists()
    spec = tmp_path / "exp.toml"
    spec.write_text(f'[data]\nsource = "{log.name}"\namount_col = "amount"\n[output]\nmodel = "m2.json"\n')
    rc, out, err = run(capsys, "run", "--experiment", spec, "--no-tracking")
    assert rc == 3 and err.count("\n") == 1 and not (tmp_path / "m2.json").exists()


# ------------------------------------------------------------------------------------------ Spark


@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
def test_spark_scorer_same_default_metadata_and_refusal(spark, cdnow, unreliable, tmp_path):
    from clv_forecast.scoring import score_file
    from clv_forecast.spark import score_spark, score_spark_to_parquet

    table = pd.read_parquet(cdnow / "customers.parquet")[["customer_id", "frequency", "recency", "T",
                                                          "monetary_value"]]
    table.to_parquet(tmp_path / "rfm.parquet", index=False)
    report = score_spark_to_parquet(cdnow / "m.json", tmp_path / "rfm.parquet", tmp_path / "scores", spark=spark)
    local = score_file(cdnow / "m.json", tmp_path / "rfm.parquet", tmp_path / "local.parquet")
    scores = spark.read.parquet(str(tmp_path / "scores"))
    total = scores.toPandas()["clv"].sum()
    assert total == pytest.approx(pd.read_parquet(tmp_path / "local.parquet")["clv"].sum(), rel=1e-9)
    assert local.settings == report.settings and report.settings["discount_rate"] == "10%/Y"
    assert report.clv_total == pytest.approx(local.clv_total, rel=1e-9)  # printed with the settings
    meta = scores.schema["clv"].metadata  # from the Parquet footer Spark wrote
    assert meta["clv_forecast.discount_rate"] == "10%/Y" and meta["clv_forecast.horizon"] == "12M"
    with pytest.raises(ClvInputError, match="allow_unreliable=True"):
        score_spark(unreliable, spark.createDataFrame(table))


@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
@pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")
def test_spark_summary_counts_the_matching_returns_as_the_local_one(spark, tmp_path):
    from clv_forecast.spark import summarize_spark

    frame = pd.read_csv(invoice_lines(tmp_path / "lines.csv"))
    frame = pd.DataFrame({"customer_id": frame["CustomerID"], "amount": frame["Quantity"] * frame["UnitPrice"],
                          "date": pd.to_datetime(frame["InvoiceDate"]).astype("datetime64[us]")})
    local = summarize(frame, amount_col="amount").attrs
    remote = summarize_spark(spark.createDataFrame(frame), amount_col="amount").attrs
    keys = ("n_returns_matching", "return_value_matching", "n_purchases_cancelled", "return_cancelled_purchase_value")
    assert {k: remote[k] for k in keys} == pytest.approx({k: local[k] for k in keys})
    assert remote["n_purchases_cancelled"] == 1 and remote["return_cancelled_purchase_value"] == pytest.approx(168469.6)
