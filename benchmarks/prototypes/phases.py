"""Phase timing of what `clv-forecast fit --json` does, step by step, in one fresh process.

    python benchmarks/prototypes/phases.py tx_1M.csv

Each import is timed on its own (in dependency order), then the steps of read_transactions and
summarize, then both fits twice (the second call shows whether the first pays a first-call cost).
Set OPENBLAS_NUM_THREADS=1 to see the fits without BLAS threads.
"""
import sys, time
T0 = time.perf_counter()
marks = []
def mark(name):
    marks.append((name, time.perf_counter()))
path = sys.argv[1]
import numpy; mark("import numpy")
import polars; mark("import polars")
import pandas; mark("import pandas")
import scipy.special; mark("import scipy.special")
import scipy.optimize; mark("import scipy.optimize")
import scipy.stats; mark("import scipy.stats")
import clv_forecast.model, clv_forecast.rfm; mark("import clv_forecast modules")
from clv_forecast import transactions as T, rfm
from clv_forecast.model import ClvModel
wanted = {"customer column": "customer_id", "date column": "date", "amount column": "amount"}
frame = T._read_csv(__import__("pathlib").Path(path), path, wanted); mark("read CSV (+ id check)")
ids = T._customer_ids(frame.get_column("customer_id"), path, "customer_id")
ts = T._timestamps(frame.get_column("date"), None, path, "date"); mark("parse dates")
am = T._amounts(frame.get_column("amount"), path, "amount")
tx = polars.DataFrame([ids, ts, am]); mark("ids/amount checks")
s = rfm.summarize(tx, amount_col="amount", time_unit="W", merge="D"); mark("summary (from standard frame)")
from clv_forecast.model import _compress_for_fit
from clv_forecast.btyd import BetaGeoModel, GammaGammaModel
from clv_forecast.btyd._data import rfm_arrays
rfm_arrays(s); mark("validate rfm")
c = _compress_for_fit(s); mark("compress")
bg = BetaGeoModel().fit(c, time_unit="W"); mark("BG/NBD fit (first)")
gg = GammaGammaModel().fit(s, time_unit="W"); mark("Gamma-Gamma fit (first)")
bg2 = BetaGeoModel().fit(c, time_unit="W"); mark("BG/NBD fit (second)")
gg2 = GammaGammaModel().fit(s, time_unit="W"); mark("Gamma-Gamma fit (second)")
prev = T0
for name, t in marks:
    print(f"{name:32s} {t - prev:7.3f}  (at {t - T0:6.3f})")
    prev = t
