"""Prototype of `clv-forecast fit --json` with the changes proposed for cli.py and transactions.py.

    FLAGS=warm,iso,blas1 python benchmarks/prototypes/proto_fit.py tx_1M.csv

It prints what `clv-forecast fit ... --json` prints (same output for every FLAGS, up to the last
digits with blas1). FLAGS is a comma list of
order  rfm first, summarize, then model (cli.fit imports model first today)
warm   _warmup.start() right after importing rfm (implies order)
iso    the faster _parse_iso (fast_iso.py)
blas1  OPENBLAS_NUM_THREADS=1 set before numpy is imported
"""
import os, sys
flags = set(filter(None, os.environ.get("FLAGS", "").split(",")))
if "blas1" in flags:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import json
import click  # noqa: F401  (as the CLI pays it)
from clv_forecast import cli  # noqa: F401
sys.path.insert(0, os.path.dirname(__file__))

path = sys.argv[1]
kw = dict(customer_col="customer_id", date_col="date", amount_col="amount", date_format=None, time_unit="W",
          merge="D", calibration_end=None, observation_end=None)
if not flags & {"order", "warm"}:
    from clv_forecast.model import ClvModel, json_safe
from clv_forecast.rfm import summarize
if "warm" in flags:
    from clv_forecast import _warmup
    _warmup.start()
if "iso" in flags:
    import fast_iso
    fast_iso.install()
rfm = summarize(path, **kw)
from clv_forecast.model import ClvModel, json_safe
model = ClvModel().fit(rfm)
print(json.dumps(json_safe(cli._model_json(model, len(rfm))), allow_nan=False))
